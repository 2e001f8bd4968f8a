//! The scoring endpoints' wire types, shared by the server, the DPO client and `eval --endpoint`.
//!
//! `/get_reward` is the WildReward / OpenRLHF remote-RM format and must stay byte-compatible with their
//! clients; `/score` is our structured form where the server applies the RM template.

use crate::chat::Message;
use serde::{Deserialize, Serialize};

/// `POST /get_reward` request: `{"query": [text, …]}`, optionally with OpenRLHF's `prompts` / `labels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetRewardRequest {
    /// The texts to score (already in the RM template for the reference's client; prompt + response
    /// with chat markup for OpenRLHF's).
    pub query: Vec<String>,
    /// OpenRLHF sends the prompt of each query beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<String>>,
    /// OpenRLHF sends ground-truth labels (any JSON) beside each query; ignored by the RM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<serde_json::Value>>,
}

/// `POST /get_reward` response: one reward per query, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetRewardResponse {
    /// `1 + Σσ(z)` per query.
    pub rewards: Vec<f32>,
    /// The same values: OpenRLHF's client reads `scores` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f32>>,
    /// OpenRLHF's free-form per-batch logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_logs: Option<serde_json::Map<String, serde_json::Value>>,
}

impl GetRewardResponse {
    /// A response carrying `rewards` in both the WildReward and the OpenRLHF fields.
    pub fn new(rewards: Vec<f32>) -> Self {
        Self {
            scores: Some(rewards.clone()),
            rewards,
            extra_logs: Some(serde_json::Map::new()),
        }
    }
}

/// One item of a structured `/score` request: the server builds the RM text from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreItem {
    /// The user query.
    pub query: String,
    /// The assistant response to judge.
    pub response: String,
    /// Earlier messages, if any.
    #[serde(default)]
    pub history: Vec<Message>,
}

/// `POST /score` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// The items to score.
    pub items: Vec<ScoreItem>,
}

/// `POST /score` response: a reward and the per-level probabilities for each item, in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreResponse {
    /// `1 + Σσ(z)` per item.
    pub rewards: Vec<f32>,
    /// K per-level probabilities per item (see [`crate::ordinal::level_probs`]).
    pub probs: Vec<Vec<f32>>,
}

/// The JSON body of every error response (`{"error", "error_type"}`, as text-embeddings-inference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// A stable machine-readable kind (`validation`, `overloaded`, `unhealthy`, …).
    pub error_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reward_reads_the_reference_client_body() {
        let req: GetRewardRequest = serde_json::from_str(r#"{"query": ["a", "b"]}"#).unwrap();
        assert_eq!(req.query, vec!["a", "b"]);
        assert!(req.prompts.is_none());
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"query":["a","b"]}"#
        );
    }

    #[test]
    fn get_reward_reads_the_openrlhf_body() {
        let body = r#"{"query": ["p r"], "prompts": ["p"], "labels": [null]}"#;
        let req: GetRewardRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.prompts.as_deref(), Some(&["p".to_string()][..]));
        assert_eq!(req.labels.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn get_reward_response_carries_rewards_and_scores() {
        let v = serde_json::to_value(GetRewardResponse::new(vec![2.5])).unwrap();
        assert_eq!(v["rewards"][0], 2.5);
        assert_eq!(v["scores"][0], 2.5);
        let plain: GetRewardResponse = serde_json::from_str(r#"{"rewards":[1.5]}"#).unwrap();
        assert_eq!(plain.rewards, vec![1.5]);
    }

    #[test]
    fn score_request_history_is_optional() {
        let req: ScoreRequest =
            serde_json::from_str(r#"{"items":[{"query":"q","response":"r"}]}"#).unwrap();
        assert!(req.items[0].history.is_empty());
    }
}
