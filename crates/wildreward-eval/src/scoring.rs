//! Scores a dataset's candidates with a local model ([`Scorer`]) or a scoring endpoint (the shared
//! client), through a cache of scores keyed by model and text hash, with a progress bar.

use crate::bench::Candidate;
pub use crate::cache::Score;
use crate::cache::ScoreCache;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wildreward_client::{BlockingClient, ClientError, ClientOptions};
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions};
use wildreward_types::exit::BadInput;
use wildreward_types::wire::ScoreItem;
use wildreward_types::EmptyHistory;

/// Where scores come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ScorerSpec {
    /// A local HF directory or GGUF file.
    Model(PathBuf),
    /// A running endpoint: its root or `/score` URL uses `/score` (rewards and level probabilities);
    /// a URL ending in `/get_reward` uses that route (rewards only, texts built here).
    Endpoint(String),
}

/// What scoring cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScoringStats {
    /// Distinct texts scored now.
    pub scored: usize,
    /// Distinct texts found in the cache.
    pub from_cache: usize,
    /// Texts the endpoint failed to score (after retries); their units are dropped.
    pub failed: usize,
    /// Wall time of scoring.
    pub seconds: f64,
    /// Texts per second over the texts scored now.
    pub texts_per_second: Option<f64>,
}

enum Backend {
    /// The model is loaded only when something is not in the cache.
    Local {
        path: PathBuf,
        max_length: usize,
        scorer: Option<Box<Scorer>>,
    },
    Structured(BlockingClient),
    Texts(BlockingClient),
}

/// Where a source keeps scores: its cache (if any) and the scores handed in.
pub(crate) type Store = (Option<ScoreCache>, HashMap<String, Score>);

/// A scorer plus its cache.
pub struct ScoreSource {
    backend: Backend,
    cache: Option<ScoreCache>,
    /// Scores handed in by a run that scored several models together ([`score_together`]), for
    /// a run without a cache.
    known: HashMap<String, Score>,
    /// A line saying what scores (model path or endpoint) and, for an untrained head, that it is so.
    pub description: String,
    /// Notes for the report (e.g. a seeded random head).
    pub notes: Vec<String>,
    /// Score with a seeded random head (refused otherwise).
    allow_untrained_head: bool,
}

/// Texts scored per call to the local scorer: big enough for its length-sorted batching, small
/// enough that progress and the cache advance steadily.
pub(crate) const LOCAL_CHUNK: usize = 64;

impl ScoreSource {
    /// Loads the model (or connects the client) and opens the cache (local models only: an
    /// endpoint's model can change behind the same URL, so its scores are not cached).
    /// `client` sets chunking, concurrency, retries and the bearer token of an endpoint. A local
    /// model without a trained head is refused unless `allow_untrained_head`.
    pub fn open(
        spec: &ScorerSpec,
        max_length: usize,
        cache_dir: Option<&Path>,
        client: &ClientOptions,
        allow_untrained_head: bool,
    ) -> anyhow::Result<Self> {
        match spec {
            ScorerSpec::Model(path) => {
                let cache = match cache_dir {
                    Some(dir) => Some(ScoreCache::open(dir, path, max_length)?),
                    None => None,
                };
                let known = cache.as_ref().and_then(ScoreCache::head_initialised);
                let mut source = Self {
                    backend: Backend::Local {
                        path: path.clone(),
                        max_length,
                        scorer: None,
                    },
                    cache,
                    known: HashMap::new(),
                    description: path.display().to_string(),
                    notes: Vec::new(),
                    allow_untrained_head,
                };
                match known {
                    Some(initialised) => source.note_head(initialised)?,
                    None => {
                        source.local_scorer()?;
                    }
                }
                Ok(source)
            }
            ScorerSpec::Endpoint(url) => {
                let client = BlockingClient::new(url, client.clone()).map_err(|e| match e {
                    ClientError::BadEndpoint { .. } => anyhow::Error::from(BadInput(e.to_string())),
                    other => other.into(),
                })?;
                let texts_only = url.trim_end_matches('/').ends_with("/get_reward");
                let mut notes = vec![format!(
                    "scored through {url} (route {}); --max-length is the server's setting there",
                    if texts_only { "/get_reward" } else { "/score" }
                )];
                if texts_only {
                    notes.push("/get_reward returns no level probabilities: no calibration".into());
                }
                Ok(Self {
                    backend: if texts_only {
                        Backend::Texts(client)
                    } else {
                        Backend::Structured(client)
                    },
                    cache: None,
                    known: HashMap::new(),
                    description: url.clone(),
                    notes,
                    allow_untrained_head,
                })
            }
        }
    }

    /// Refuses a local model whose head is a seeded random one unless allowed; then records (once)
    /// that it is.
    fn note_head(&mut self, initialised: bool) -> Result<(), BadInput> {
        if initialised && !self.allow_untrained_head {
            return Err(BadInput(format!(
                "{} has no trained reward head (none in the checkpoint, or one `convert` made at \
                 random): its scores would be noise. Train one, or pass --allow-untrained-head",
                self.description
            )));
        }
        let note = format!(
            "{} has no reward head: scored with a seeded random head (seed 0); these numbers \
             describe an untrained head",
            self.description
        );
        if initialised && !self.notes.contains(&note) {
            eprintln!("wildreward eval: WARNING: {note}");
            self.notes.push(note);
        }
        Ok(())
    }

    /// The local scorer, loading the model on first use (and recording in the cache whether its
    /// head is untrained, so a fully cached report needs no model at all).
    pub(crate) fn local_scorer(&mut self) -> anyhow::Result<&Scorer> {
        let Backend::Local {
            path,
            max_length,
            scorer,
        } = &mut self.backend
        else {
            anyhow::bail!("not a local model");
        };
        if scorer.is_none() {
            let model = RewardModel::load(path, &LoadOptions::inference())?;
            let initialised = model.head_was_initialised();
            *scorer = Some(Box::new(Scorer::new(
                model,
                ScorerOptions {
                    max_length: *max_length,
                    ..ScorerOptions::default()
                },
            )));
            if let Some(cache) = self.cache.as_mut() {
                cache.set_head_initialised(initialised)?;
            }
            self.note_head(initialised)?;
        }
        match &self.backend {
            Backend::Local {
                scorer: Some(s), ..
            } => Ok(s.as_ref()),
            _ => anyhow::bail!("the model did not load"),
        }
    }

    /// The loaded local scorer, if any.
    pub(crate) fn loaded_scorer(&self) -> Option<&Scorer> {
        match &self.backend {
            Backend::Local {
                scorer: Some(s), ..
            } => Some(s.as_ref()),
            _ => None,
        }
    }

    /// Takes the cache and the handed-in scores out (to fill while the scorer is borrowed).
    pub(crate) fn take_store(&mut self) -> Store {
        (self.cache.take(), std::mem::take(&mut self.known))
    }

    /// Puts back what [`ScoreSource::take_store`] took.
    pub(crate) fn put_store(&mut self, store: Store) {
        (self.cache, self.known) = store;
    }

    /// Whether `text`'s score is known (handed in or cached).
    pub(crate) fn knows(&self, text: &str) -> bool {
        self.lookup(text).is_some()
    }

    /// A score already known for `text`: handed in, or in the cache.
    fn lookup(&self, text: &str) -> Option<&Score> {
        self.known
            .get(text)
            .or_else(|| self.cache.as_ref().and_then(|c| c.get(text)))
    }

    /// Scores every candidate (each distinct RM text once); `None` where an endpoint failed.
    pub fn score(
        &mut self,
        candidates: &[Candidate],
    ) -> anyhow::Result<(Vec<Option<Score>>, ScoringStats)> {
        let start = Instant::now();
        let texts: Vec<String> = candidates.iter().map(Candidate::text).collect();
        let mut scores: Vec<Option<Score>> = vec![None; texts.len()];
        let mut stats = ScoringStats::default();
        // Distinct texts not in the cache, longest first (homogeneous batches).
        let mut todo: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut duplicates: Vec<(usize, usize)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if let Some(&first) = seen.get(text.as_str()) {
                duplicates.push((i, first));
                continue;
            }
            seen.insert(text.as_str(), i);
            match self.lookup(text) {
                Some(s) => {
                    scores[i] = Some(s.clone());
                    stats.from_cache += 1;
                }
                None => todo.push(i),
            }
        }
        todo.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let bar = progress_bar(todo.len());
        let mut first_error: Option<String> = None;
        if matches!(self.backend, Backend::Local { .. }) && !todo.is_empty() {
            self.local_scorer()?;
        }
        match &self.backend {
            Backend::Local { scorer, .. } => {
                for chunk in todo.chunks(LOCAL_CHUNK) {
                    let Some(scorer) = scorer else { break };
                    // Turns, not texts: encoded (and cut when over-long) exactly as training does.
                    let turns: Vec<_> = chunk.iter().map(|&i| candidates[i].turn()).collect();
                    for (&i, s) in chunk
                        .iter()
                        .zip(scorer.score_turns(&turns, EmptyHistory::Training)?)
                    {
                        let score = Score::from(s);
                        if let Some(cache) = self.cache.as_mut() {
                            cache.put(&texts[i], &score)?;
                        }
                        scores[i] = Some(score);
                    }
                    bar.inc(chunk.len() as u64);
                }
            }
            Backend::Structured(client) => {
                let items: Vec<ScoreItem> = todo
                    .iter()
                    .map(|&i| ScoreItem {
                        query: candidates[i].query.clone(),
                        response: candidates[i].response.clone(),
                        history: candidates[i].history.clone(),
                    })
                    .collect();
                let results = client.score_items(&items, &mut |n| bar.inc(n as u64))?;
                for (&i, r) in todo.iter().zip(results) {
                    match r {
                        Ok(s) => {
                            scores[i] = Some(Score {
                                reward: s.reward,
                                probs: s.probs,
                            })
                        }
                        Err(e) => {
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
            }
            Backend::Texts(client) => {
                let batch: Vec<&str> = todo.iter().map(|&i| texts[i].as_str()).collect();
                let results = client.get_rewards(&batch, &mut |n| bar.inc(n as u64))?;
                for (&i, r) in todo.iter().zip(results) {
                    match r {
                        Ok(reward) => {
                            scores[i] = Some(Score {
                                reward,
                                probs: vec![],
                            })
                        }
                        Err(e) => {
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
            }
        }
        bar.finish_and_clear();
        for (i, first) in duplicates {
            scores[i] = scores[first].clone();
        }
        stats.failed = todo.iter().filter(|&&i| scores[i].is_none()).count();
        stats.scored = todo.len() - stats.failed;
        if let Some(error) = first_error {
            if stats.scored == 0 {
                anyhow::bail!(
                    "{} scored none of {} texts: {error}",
                    self.description,
                    stats.failed
                );
            }
            eprintln!(
                "wildreward eval: {} of {} texts could not be scored (first error: {error})",
                stats.failed,
                todo.len()
            );
        }
        stats.seconds = start.elapsed().as_secs_f64();
        stats.texts_per_second =
            (stats.scored > 0 && stats.seconds > 0.0).then(|| stats.scored as f64 / stats.seconds);
        Ok((scores, stats))
    }
}

pub(crate) fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}
