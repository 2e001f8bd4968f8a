//! The records the steps pass to each other, one JSON object per line: an [`Instance`] plus what each
//! step has learnt about it. Every intermediate file keeps the full instance so any step can be re-run
//! (or audited) from the file before it.

use super::users::UserTag;
use serde::{Deserialize, Serialize};
use wildreward_types::{FeedbackCategory, Instance};

/// Who gave a turn its feedback category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// The offline rules (`rules.toml`).
    Rules,
    /// The `cues` annotator (`cues.toml`), a decision or an abstention.
    Cues,
    /// The LLM annotator.
    Llm,
}

/// A hindsight relabel: the neutral turn took the label of a later positive turn on the same topic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HindsightRelabel {
    /// The category the annotator gave this turn (always neutral).
    pub original: FeedbackCategory,
    /// The later turn whose label was taken.
    pub from_turn: usize,
    /// Cosine similarity of the two feedback messages' embeddings.
    pub similarity: f32,
}

/// The refusal adjudication of a short response that contains a refusal phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalVerdict {
    /// `0` false refusal (the query was safe), `1` justified refusal, `2` not a refusal.
    pub verdict: u8,
    /// Who adjudicated.
    pub source: LabelSource,
    /// The category before the verdict was applied.
    pub original: FeedbackCategory,
}

/// A turn with its feedback category (the output of `classify`, `hindsight` and `refusal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledTurn {
    /// The turn.
    #[serde(flatten)]
    pub instance: Instance,
    /// Who wrote it (`user`, `user_key`; absent in files written before user keys existed).
    #[serde(flatten)]
    pub user: UserTag,
    /// The current raw category (1..5).
    pub label: FeedbackCategory,
    /// Who classified the user's reaction.
    pub label_source: LabelSource,
    /// The offline rule that decided (absent for LLM labels and the neutral default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The `cues` annotator abstained: the label is the neutral default, not a reading of the reaction.
    /// `wildfb agree` counts these as abstentions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abstained: bool,
    /// Set when hindsight mining relabelled this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hindsight: Option<HindsightRelabel>,
    /// Set when refusal validation looked at this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<RefusalVerdict>,
}

/// The conversation hash of an instance id (`<hash>_turn<k>`), or the whole id if it has no turn.
pub fn conversation_of(id: &str) -> &str {
    wildreward_types::record::parse_instance_id(id)
        .map(|(hash, _)| hash)
        .unwrap_or(id)
}
