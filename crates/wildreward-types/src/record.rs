//! The per-turn records the data pipeline produces: the unlabelled [`Instance`] cut out of a
//! conversation and the final [`WildFbRecord`] in the released WildFB format.

use crate::chat::Message;
use crate::label::TrainingLabel;
use serde::{Deserialize, Serialize};

/// Builds an instance id, `<conversation_hash>_turn<k>`, as the reference and WildFB write it.
pub fn instance_id(conversation_hash: &str, turn: usize) -> String {
    format!("{conversation_hash}_turn{turn}")
}

/// Splits an instance id into the conversation hash and the 0-based turn.
///
/// The split is at the *last* `_turn`, so a hash containing underscores still parses (the reference's
/// `id.split("_")[0]` would not).
pub fn parse_instance_id(id: &str) -> Result<(&str, usize), crate::Error> {
    let bad = || crate::Error::BadInstanceId(id.to_string());
    let (hash, turn) = id.rsplit_once("_turn").ok_or_else(bad)?;
    if hash.is_empty() || turn.is_empty() || !turn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok((hash, turn.parse().map_err(|_| bad())?))
}

/// One assistant turn that a user reacted to: what the annotator classifies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// `<conversation_hash>_turn<k>`.
    pub id: String,
    /// The chat model that wrote the response (WildChat's `model`).
    pub model: String,
    /// 0-based index of the judged user/assistant pair within the conversation.
    pub turn: usize,
    /// Every message before the judged pair.
    pub history: Vec<Message>,
    /// The judged pair: `[user query, assistant response]`.
    pub messages: [Message; 2],
    /// The user's next message: the reaction the label is read from.
    pub user_feedback: Message,
    /// The conversation's language (WildChat's full name, e.g. `English`).
    pub language: String,
}

impl Instance {
    /// The user query being answered.
    pub fn query(&self) -> &str {
        &self.messages[0].content
    }

    /// The assistant response being judged.
    pub fn response(&self) -> &str {
        &self.messages[1].content
    }
}

/// A final WildFB example (`train.jsonl` / `test.jsonl`), field for field as the released dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WildFbRecord {
    /// `<conversation_hash>_turn<k>`.
    pub id: String,
    /// Every message before the judged pair.
    pub history: Vec<Message>,
    /// The RM input text built with [`crate::template::build_text`].
    pub text: String,
    /// The judged pair: `[user query, assistant response]`.
    pub messages: [Message; 2],
    /// The user's next message.
    pub user_feedback: Message,
    /// The training level, 1..=4.
    pub label: TrainingLabel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = instance_id("ab_cd", 7);
        assert_eq!(id, "ab_cd_turn7");
        assert_eq!(parse_instance_id(&id).unwrap(), ("ab_cd", 7));
        for bad in ["abc", "_turn1", "abc_turn", "abc_turnx", "abc_turn-1"] {
            assert!(parse_instance_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildfb_record_reads_the_released_shape() {
        let line = r#"{"id":"h_turn1","history":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"text":"t","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"r"}],"user_feedback":{"role":"user","content":"thanks!"},"label":4}"#;
        let rec: WildFbRecord = serde_json::from_str(line).unwrap();
        assert_eq!(rec.label.value(), 4);
        assert_eq!(rec.history.len(), 2);
        assert_eq!(serde_json::to_string(&rec).unwrap(), line);
        let bad = line.replace("\"label\":4", "\"label\":5");
        assert!(serde_json::from_str::<WildFbRecord>(&bad).is_err());
    }
}
