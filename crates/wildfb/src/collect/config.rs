//! `wildfb collect`'s settings: `configs/wildfb/collect.toml` and the files it names (rules, filters,
//! prompts). The repository's copies are embedded in the binary as the defaults; `--config FILE` reads
//! an edited copy instead (paths inside it are relative to it), and command-line flags override both.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const COLLECT_TOML: &str = include_str!("../../../../configs/wildfb/collect.toml");
const RULES_TOML: &str = include_str!("../../../../configs/wildfb/rules.toml");
const CUES_TOML: &str = include_str!("../../../../configs/wildfb/cues.toml");
const FILTERS_TOML: &str = include_str!("../../../../configs/wildfb/filters.toml");
const FEEDBACK_PROMPT: &str = include_str!("../../../../configs/wildfb/prompts/feedback.txt");
const REFUSAL_PROMPT: &str = include_str!("../../../../configs/wildfb/prompts/refusal.txt");

/// `[preprocess]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    /// Conversation languages kept (WildChat's full names).
    pub languages: Vec<String>,
    /// Conversations with fewer messages are dropped.
    pub min_messages: usize,
    /// Instances whose history + judged pair has more whitespace-separated words are dropped.
    pub max_context_words: usize,
}

/// `[annotator]`: the LLM endpoint and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotatorConfig {
    /// File of the feedback-classification prompt (relative to the config file).
    pub feedback_prompt: String,
    /// File of the refusal-validation prompt.
    pub refusal_prompt: String,
    /// Base URL of the OpenAI-compatible API (`…/v1`).
    pub api_base: String,
    /// Model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key (absent or empty: no `Authorization` header).
    pub api_key_env: String,
    /// Sampling temperature.
    pub temperature: f32,
    /// `max_tokens` of a classification request.
    pub feedback_max_tokens: u32,
    /// `max_tokens` of a refusal-validation request.
    pub refusal_max_tokens: u32,
    /// Requests in flight.
    pub concurrency: usize,
    /// Requests per minute, 0 for no limit.
    pub requests_per_minute: u32,
    /// Per-request timeout.
    pub timeout_secs: f64,
    /// Retries after the first attempt (429, 5xx, timeouts, transport errors).
    pub max_retries: u32,
    /// First backoff delay; doubles with each retry (with jitter).
    pub backoff_initial_ms: u64,
    /// Longest backoff delay.
    pub backoff_max_ms: u64,
}

/// `[hindsight]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HindsightConfig {
    /// How many turns ahead a positive reaction may be.
    pub lookahead: usize,
    /// Cosine similarity at or above which two feedback messages are on the same topic.
    pub similarity_threshold: f32,
    /// Sentences per embedder batch.
    pub batch_size: usize,
    /// Tokens per sentence the embedder reads (longer ones are truncated).
    pub max_tokens: usize,
}

/// `[refusal]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalConfig {
    /// Responses shorter than this many characters are candidates.
    pub max_response_chars: usize,
}

/// `[split]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Seed of the split and of the output order.
    pub seed: u64,
    /// Records to hold out for test.
    pub test_count: usize,
    /// Largest share of the records the test set may take.
    pub max_test_fraction: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectFile {
    rules: String,
    /// Absent in settings files written before the `cues` annotator: the embedded copy is used.
    #[serde(default)]
    cues: Option<String>,
    filters: String,
    preprocess: PreprocessConfig,
    annotator: AnnotatorConfig,
    hindsight: HindsightConfig,
    refusal: RefusalConfig,
    split: SplitConfig,
}

/// A text file the settings name: where it came from and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigText {
    /// The file (or `<embedded>/…` for the built-in copy).
    pub path: PathBuf,
    /// Its content.
    pub text: String,
}

impl ConfigText {
    fn embedded(name: &str, text: &str) -> Self {
        Self {
            path: PathBuf::from(format!("<embedded>/configs/wildfb/{name}")),
            text: text.to_string(),
        }
    }

    fn read(base: &Path, name: &str) -> Result<Self> {
        let path = base.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, text })
    }
}

/// Every setting of `wildfb collect`, with the texts of the files they name.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    /// The settings file itself.
    pub source: PathBuf,
    /// `[preprocess]`.
    pub preprocess: PreprocessConfig,
    /// `[annotator]`.
    pub annotator: AnnotatorConfig,
    /// `[hindsight]`.
    pub hindsight: HindsightConfig,
    /// `[refusal]`.
    pub refusal: RefusalConfig,
    /// `[split]`.
    pub split: SplitConfig,
    /// The rules file (feedback rules, refusal heuristic).
    pub rules: ConfigText,
    /// The `cues` annotator's rules file (same format; decides or abstains).
    pub cues: ConfigText,
    /// The filters file.
    pub filters: ConfigText,
    /// The classification prompt.
    pub feedback_prompt: ConfigText,
    /// The refusal-validation prompt.
    pub refusal_prompt: ConfigText,
}

impl CollectConfig {
    /// The defaults built into the binary (the repository's `configs/wildfb`).
    pub fn embedded() -> Result<Self> {
        let source = PathBuf::from("<embedded>/configs/wildfb/collect.toml");
        let file = parse(&source, COLLECT_TOML)?;
        Ok(Self {
            source,
            preprocess: file.preprocess,
            annotator: file.annotator,
            hindsight: file.hindsight,
            refusal: file.refusal,
            split: file.split,
            rules: ConfigText::embedded("rules.toml", RULES_TOML),
            cues: ConfigText::embedded("cues.toml", CUES_TOML),
            filters: ConfigText::embedded("filters.toml", FILTERS_TOML),
            feedback_prompt: ConfigText::embedded("prompts/feedback.txt", FEEDBACK_PROMPT),
            refusal_prompt: ConfigText::embedded("prompts/refusal.txt", REFUSAL_PROMPT),
        })
    }

    /// Reads `path` and the files it names (relative to its directory).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file = parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            source: path.to_path_buf(),
            rules: ConfigText::read(base, &file.rules)?,
            cues: match &file.cues {
                Some(name) => ConfigText::read(base, name)?,
                None => ConfigText::embedded("cues.toml", CUES_TOML),
            },
            filters: ConfigText::read(base, &file.filters)?,
            feedback_prompt: ConfigText::read(base, &file.annotator.feedback_prompt)?,
            refusal_prompt: ConfigText::read(base, &file.annotator.refusal_prompt)?,
            preprocess: file.preprocess,
            annotator: file.annotator,
            hindsight: file.hindsight,
            refusal: file.refusal,
            split: file.split,
        })
    }

    /// Checks values that would make a step misbehave rather than fail.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Config {
                path: self.source.clone(),
                message,
            })
        };
        if self.preprocess.languages.is_empty() {
            return bad("preprocess.languages is empty: no conversation would be kept".into());
        }
        if self.annotator.concurrency == 0 {
            return bad("annotator.concurrency must be at least 1".into());
        }
        if self.annotator.timeout_secs.is_nan() || self.annotator.timeout_secs <= 0.0 {
            return bad("annotator.timeout_secs must be positive".into());
        }
        if self.hindsight.batch_size == 0 || self.hindsight.max_tokens < 2 {
            return bad("hindsight.batch_size must be >= 1 and hindsight.max_tokens >= 2".into());
        }
        if !(0.0..=1.0).contains(&self.split.max_test_fraction) {
            return bad("split.max_test_fraction must be within 0..=1".into());
        }
        Ok(())
    }
}

fn parse(path: &Path, text: &str) -> Result<CollectFile> {
    toml::from_str(text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Hex SHA-256 of the parts, each length-prefixed so that boundaries count.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_repository_files_are_the_embedded_defaults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/wildfb/collect.toml");
        let loaded = CollectConfig::load(&dir).unwrap();
        let embedded = CollectConfig::embedded().unwrap();
        assert_eq!(loaded.annotator, embedded.annotator);
        assert_eq!(loaded.split, embedded.split);
        assert_eq!(loaded.rules.text, embedded.rules.text);
        assert_eq!(loaded.cues.text, embedded.cues.text);
        assert_eq!(loaded.feedback_prompt.text, embedded.feedback_prompt.text);
        embedded.validate().unwrap();
        assert_eq!(embedded.hindsight.similarity_threshold, 0.5);
        assert_eq!(embedded.hindsight.lookahead, 2);
    }

    #[test]
    fn a_typo_in_the_settings_names_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collect.toml");
        std::fs::write(&path, COLLECT_TOML.replace("min_messages", "min_mesages")).unwrap();
        let err = CollectConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("collect.toml") && err.contains("min_mesages"),
            "{err}"
        );
    }
}
