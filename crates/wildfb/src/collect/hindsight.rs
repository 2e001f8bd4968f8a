//! Step `hindsight`: implicit-feedback mining. A neutral turn followed within `lookahead` turns by a
//! positive one (4 or 5) takes that label when the two feedback messages are on the same topic: cosine
//! of their MiniLM sentence embeddings at or above the threshold. The nearest qualifying turn wins and a
//! turn is relabelled at most once (the reference appended duplicates); labels never chain, since the
//! decision reads the labels as the annotator gave them. Rejections that follow a neutral turn are only
//! counted, as in the reference.
//!
//! Every turn is written (relabelled ones carry a `hindsight` note); turns keep their own full history.

use super::config::HindsightConfig;
use super::io::{AtomicWriter, JsonlReader};
use super::records::{conversation_of, HindsightRelabel, LabelledTurn};
use super::stats::StepStats;
use crate::embed::{cosine, SentenceEmbedder};
use crate::error::Result;
use indicatif::ProgressBar;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;
use wildreward_types::FeedbackCategory;

/// Turns processed per embedding round (whole conversations are kept together).
const CHUNK_TURNS: usize = 2048;
/// Embeddings kept for reuse across rounds (short reactions such as "thanks" recur constantly).
const CACHE_LIMIT: usize = 200_000;

/// Sentence embeddings by text, bounded: when a round would push it past its limit, every entry the
/// round does not need is evicted first, so a text counted as a hit is still there when the round
/// reads it (clearing everything would turn those hits into "blocked by topic").
struct EmbeddingCache {
    vectors: HashMap<String, Vec<f32>>,
    limit: usize,
    computed: u64,
    hits: u64,
    evictions: u64,
    seconds: f64,
}

impl EmbeddingCache {
    fn new(limit: usize) -> Self {
        Self {
            vectors: HashMap::new(),
            limit,
            computed: 0,
            hits: 0,
            evictions: 0,
            seconds: 0.0,
        }
    }

    /// Makes sure every text of `texts` has an embedding, computing the missing ones with `embed`
    /// in one call.
    fn ensure(
        &mut self,
        texts: &[&str],
        embed: impl FnOnce(&[&str]) -> Result<Vec<Vec<f32>>>,
    ) -> Result<()> {
        let mut missing: Vec<&str> = Vec::new();
        let mut queued: HashSet<&str> = HashSet::new();
        for t in texts {
            if self.vectors.contains_key(*t) || !queued.insert(t) {
                self.hits += 1;
            } else {
                missing.push(t);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if self.vectors.len() + missing.len() > self.limit {
            let needed: HashSet<&str> = texts.iter().copied().collect();
            let before = self.vectors.len();
            self.vectors
                .retain(|text, _| needed.contains(text.as_str()));
            self.evictions += (before - self.vectors.len()) as u64;
        }
        let start = Instant::now();
        let vectors = embed(&missing)?;
        self.seconds += start.elapsed().as_secs_f64();
        self.computed += missing.len() as u64;
        for (t, v) in missing.into_iter().zip(vectors) {
            self.vectors.insert(t.to_string(), v);
        }
        Ok(())
    }

    fn similarity(&self, a: &str, b: &str) -> Option<f32> {
        Some(cosine(self.vectors.get(a)?, self.vectors.get(b)?))
    }
}

/// The (earlier, later) index pairs to compare within one conversation's turns (sorted by turn): each
/// neutral turn against the positive turns at most `lookahead` turns later, nearest first.
pub fn candidate_pairs(turns: &[LabelledTurn], lookahead: usize) -> Vec<(usize, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, t) in turns.iter().enumerate() {
        if t.label != FeedbackCategory::NeutralAmbiguity {
            continue;
        }
        let later: Vec<usize> = (i + 1..turns.len())
            .take_while(|&j| turns[j].instance.turn <= t.instance.turn + lookahead)
            .filter(|&j| turns[j].label.is_positive())
            .collect();
        if !later.is_empty() {
            out.push((i, later));
        }
    }
    out
}

struct Counters {
    neutral: u64,
    candidates: u64,
    relabelled: u64,
    blocked_by_topic: u64,
    negative_followups: u64,
}

fn mine(
    group: &mut [LabelledTurn],
    cfg: &HindsightConfig,
    cache: &EmbeddingCache,
    n: &mut Counters,
) {
    group.sort_by_key(|t| t.instance.turn);
    let original: Vec<FeedbackCategory> = group.iter().map(|t| t.label).collect();
    for (i, t) in group.iter().enumerate() {
        if t.label == FeedbackCategory::NeutralAmbiguity {
            n.neutral += 1;
            let negative = group[i + 1..]
                .iter()
                .take_while(|u| u.instance.turn <= t.instance.turn + cfg.lookahead)
                .any(|u| u.label == FeedbackCategory::Rejection);
            n.negative_followups += u64::from(negative);
        }
    }
    for (i, later) in candidate_pairs(group, cfg.lookahead) {
        n.candidates += 1;
        for j in later {
            let a = &group[i].instance.user_feedback.content;
            let b = &group[j].instance.user_feedback.content;
            let sim = cache.similarity(a, b).unwrap_or(f32::NEG_INFINITY);
            if sim >= cfg.similarity_threshold {
                let from_turn = group[j].instance.turn;
                let t = &mut group[i];
                t.hindsight = Some(HindsightRelabel {
                    original: t.label,
                    from_turn,
                    similarity: sim,
                });
                t.label = original[j];
                n.relabelled += 1;
                break;
            }
            n.blocked_by_topic += 1;
        }
    }
}

/// Runs the step from `input` to `output` with `embedder`; `progress` counts turns.
pub fn run(
    input: &Path,
    output: &Path,
    cfg: &HindsightConfig,
    embedder: &SentenceEmbedder,
    progress: &ProgressBar,
) -> Result<StepStats> {
    let mut stats = StepStats::default();
    let mut writer = AtomicWriter::create(output)?;
    let mut cache = EmbeddingCache::new(CACHE_LIMIT);
    let mut n = Counters {
        neutral: 0,
        candidates: 0,
        relabelled: 0,
        blocked_by_topic: 0,
        negative_followups: 0,
    };
    let mut groups: Vec<Vec<LabelledTurn>> = Vec::new();
    let mut buffered = 0usize;
    let mut flush = |groups: &mut Vec<Vec<LabelledTurn>>,
                     cache: &mut EmbeddingCache,
                     n: &mut Counters,
                     stats: &mut StepStats|
     -> Result<()> {
        let mut texts: Vec<&str> = Vec::new();
        for g in groups.iter() {
            for (i, later) in candidate_pairs(g, cfg.lookahead) {
                texts.push(&g[i].instance.user_feedback.content);
                texts.extend(
                    later
                        .iter()
                        .map(|&j| g[j].instance.user_feedback.content.as_str()),
                );
            }
        }
        cache.ensure(&texts, |missing| embedder.embed(missing))?;
        for mut g in groups.drain(..) {
            mine(&mut g, cfg, cache, n);
            for t in &g {
                stats.label(t.label.value());
                writer.write_json(t)?;
            }
            progress.inc(g.len() as u64);
        }
        Ok(())
    };
    for turn in JsonlReader::<LabelledTurn>::open(input)? {
        let turn = turn?;
        stats.rows_in += 1;
        let same = groups.last().and_then(|g| g.last()).is_some_and(|last| {
            conversation_of(&last.instance.id) == conversation_of(&turn.instance.id)
        });
        if same {
            if let Some(g) = groups.last_mut() {
                g.push(turn);
            }
        } else {
            if buffered >= CHUNK_TURNS {
                flush(&mut groups, &mut cache, &mut n, &mut stats)?;
                buffered = 0;
            }
            groups.push(vec![turn]);
        }
        buffered += 1;
    }
    flush(&mut groups, &mut cache, &mut n, &mut stats)?;
    stats.rows_out = writer.commit()?;
    stats.detail("neutral_turns", n.neutral);
    stats.detail("candidates", n.candidates);
    stats.detail("relabelled", n.relabelled);
    stats.detail("blocked_by_topic", n.blocked_by_topic);
    stats.detail("negative_followups_not_relabelled", n.negative_followups);
    stats.detail("embeddings_computed", cache.computed);
    stats.detail("embedding_cache_hits", cache.hits);
    stats.detail("embedding_cache_evictions", cache.evictions);
    stats.detail("embedding_seconds", cache.seconds);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A deterministic stand-in embedding: the text's length and first byte, normalised.
    fn embed(texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts
            .iter()
            .map(|t| {
                let v = [t.len() as f32, f32::from(t.bytes().next().unwrap_or(0))];
                let norm = (v[0] * v[0] + v[1] * v[1]).sqrt();
                vec![v[0] / norm, v[1] / norm]
            })
            .collect())
    }

    #[test]
    fn crossing_the_limit_keeps_what_the_round_needs() {
        let mut cache = EmbeddingCache::new(4);
        cache.ensure(&["thanks", "a", "bb"], embed).unwrap();
        assert_eq!(cache.computed, 3);
        // Round two: "thanks" is a hit, two texts are new; 3 + 2 > 4, so something must go — but
        // not "thanks", which this round reads.
        let round = ["thanks", "ccc", "dddd"];
        cache.ensure(&round, embed).unwrap();
        assert_eq!((cache.computed, cache.hits), (5, 1));
        for a in round {
            for b in round {
                assert!(cache.similarity(a, b).is_some(), "{a} / {b} lost");
            }
        }
        assert_eq!(cache.evictions, 2);
        assert!(cache.similarity("a", "bb").is_none());
        // A round larger than the limit is kept whole (the limit bounds reuse, not correctness).
        let big = ["e1", "e22", "e333", "e4444", "e55555", "thanks"];
        cache.ensure(&big, embed).unwrap();
        assert!(big.iter().all(|t| cache.similarity(t, "thanks").is_some()));
    }
}
