//! The score cache: one append-only JSON Lines file per (model, max length) under the cache
//! directory, one line `{"h": text hash, "reward", "probs"}` per scored text. A second report over the
//! same model scores nothing it has seen; a run killed half-way keeps what it scored. The model's
//! identity is its canonical path and the size and modification time of each of its files, so a
//! retrained checkpoint in the same place gets a fresh cache. Version 2: candidates are encoded by
//! the training encoder (v1 scores kept a long text's last tokens), so v1 files are not read.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One candidate's score.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Score {
    /// `1 + Σσ(z)` (or the raw value of a scalar head).
    pub reward: f32,
    /// Per-level probabilities (empty for a scalar head or through `/get_reward`).
    pub probs: Vec<f32>,
}

impl From<wildreward_model::Scored> for Score {
    fn from(s: wildreward_model::Scored) -> Self {
        Self {
            reward: s.reward,
            probs: s.probs,
        }
    }
}

/// Environment variable overriding the default cache directory.
pub const CACHE_ENV: &str = "WILDREWARD_CACHE";

/// `$WILDREWARD_CACHE`, else `$XDG_CACHE_HOME/wildreward/scores`, else `~/.cache/wildreward/scores`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wildreward").join("scores"))
}

#[derive(Serialize, Deserialize)]
struct Line {
    h: String,
    #[serde(flatten)]
    score: Score,
}

/// What the cache knows about the model beside its scores.
#[derive(Serialize, Deserialize)]
struct Meta {
    head_initialised: bool,
}

/// Scores of one model, read from and appended to its cache file.
pub struct ScoreCache {
    path: PathBuf,
    meta_path: PathBuf,
    head_initialised: Option<bool>,
    scores: HashMap<String, Score>,
    file: Option<std::fs::File>,
}

fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache key of a model at `path` scored with `max_length`.
pub fn model_key(path: &Path, max_length: usize) -> std::io::Result<String> {
    let files = wildreward_types::files::identity(path)?;
    // v2's layout: the canonical path, the length, then the files (the identity's first line is
    // the path again, so a v2 key is unchanged by sharing the identity).
    let (canonical, rest) = files.split_once('\n').unwrap_or((files.as_str(), ""));
    let identity = format!("wildreward-eval-cache v2\n{canonical}\n{max_length}\n{rest}");
    Ok(hash_hex(identity.as_bytes()))
}

impl ScoreCache {
    /// Opens (creating) the cache of the model at `model` under `dir`. Lines that do not parse (a
    /// torn last line after a kill) are skipped.
    pub fn open(dir: &Path, model: &Path, max_length: usize) -> anyhow::Result<Self> {
        let key = model_key(model, max_length)
            .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("score cache {}: {e}", dir.display()))?;
        let path = dir.join(format!("{key}.jsonl"));
        let meta_path = dir.join(format!("{key}.meta.json"));
        let head_initialised = std::fs::read_to_string(&meta_path)
            .ok()
            .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
            .map(|m| m.head_initialised);
        let mut scores = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<Line>(line) {
                    scores.insert(l.h, l.score);
                }
            }
        }
        Ok(Self {
            path,
            meta_path,
            head_initialised,
            scores,
            file: None,
        })
    }

    /// Whether the model's head was a seeded random one, if a run that loaded it said so.
    pub fn head_initialised(&self) -> Option<bool> {
        self.head_initialised
    }

    /// Records whether the model's head was a seeded random one (a small `<key>.meta.json`).
    pub fn set_head_initialised(&mut self, initialised: bool) -> anyhow::Result<()> {
        let text = serde_json::to_string(&Meta {
            head_initialised: initialised,
        })?;
        std::fs::write(&self.meta_path, text)
            .map_err(|e| anyhow::anyhow!("score cache {}: {e}", self.meta_path.display()))?;
        self.head_initialised = Some(initialised);
        Ok(())
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many scores it holds.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// The cached score of an RM text.
    pub fn get(&self, text: &str) -> Option<&Score> {
        self.scores.get(&hash_hex(text.as_bytes()))
    }

    /// Records a score (appended to the file at once).
    pub fn put(&mut self, text: &str, score: &Score) -> anyhow::Result<()> {
        let h = hash_hex(text.as_bytes());
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| anyhow::anyhow!("score cache {}: {e}", self.path.display()))?;
            self.file = Some(f);
        }
        let line = serde_json::to_string(&Line {
            h: h.clone(),
            score: score.clone(),
        })?;
        if let Some(f) = self.file.as_mut() {
            writeln!(f, "{line}")
                .map_err(|e| anyhow::anyhow!("score cache {}: {e}", self.path.display()))?;
        }
        self.scores.insert(h, score.clone());
        Ok(())
    }
}
