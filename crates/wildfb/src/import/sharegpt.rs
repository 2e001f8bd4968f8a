//! ShareGPT conversations (`{"id", "conversations": [{"from", "value"}]}`) mapped into WildChat's row
//! shape, marked as adapted (`adapted_from = "sharegpt"`, `source_id`), never passed off as WildChat.

use crate::lang::{conversation_language, detect_language};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wildreward_types::wildchat::{WildChatConversation, WildChatMessage};

/// The `model` written for ShareGPT rows: the conversations are ChatGPT's, the exact model unknown.
pub const SHAREGPT_MODEL: &str = "chatgpt (sharegpt)";

/// One ShareGPT conversation as the public dumps hold it.
#[derive(Debug, Clone, Deserialize)]
pub struct ShareGptConversation {
    /// ShareGPT's id (e.g. `00ewKo3_0`).
    pub id: String,
    /// The turns.
    pub conversations: Vec<ShareGptTurn>,
}

/// One ShareGPT turn.
#[derive(Debug, Clone, Deserialize)]
pub struct ShareGptTurn {
    /// `human`, `gpt`, and in some dumps `system`, `chatgpt`, `bing`, `bard`, `user`, `assistant`.
    pub from: String,
    /// The text.
    pub value: String,
}

/// Why a ShareGPT conversation could not be represented as a WildChat row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// No turns at all.
    Empty,
    /// A speaker name we cannot map to a chat role.
    UnknownSpeaker(String),
}

/// WildChat's role for a ShareGPT speaker.
fn role_of(from: &str) -> Option<&'static str> {
    match from.to_ascii_lowercase().as_str() {
        "human" | "user" => Some("user"),
        "gpt" | "chatgpt" | "assistant" | "bing" | "bard" | "model" => Some("assistant"),
        "system" => Some("system"),
        _ => None,
    }
}

/// A stable 32-hex-digit hash for the row (WildChat's hashes are 32 hex digits), derived from the
/// ShareGPT id so re-imports give the same ids.
pub fn conversation_hash(source: &str, id: &str) -> String {
    let digest = Sha256::digest(format!("{source}:{id}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Maps one ShareGPT conversation to a WildChat row.
///
/// Languages are detected per message and, for the conversation, from its user messages (see
/// [`conversation_language`]; WildChat's own come from lingua, ours from whatlang, named the same way). Fields ShareGPT does not have
/// (timestamps, location, headers, toxicity) are null; `redacted` is false because nothing was.
/// `turn_identifier` numbers the user turns, shared by the user message and the answer after it.
pub fn to_wildchat(conv: &ShareGptConversation) -> Result<WildChatConversation, Skip> {
    if conv.conversations.is_empty() {
        return Err(Skip::Empty);
    }
    let mut messages = Vec::with_capacity(conv.conversations.len());
    let mut user_turns = 0i64;
    for turn in &conv.conversations {
        let role = role_of(&turn.from).ok_or_else(|| Skip::UnknownSpeaker(turn.from.clone()))?;
        if role == "user" {
            user_turns += 1;
        }
        messages.push(WildChatMessage {
            content: turn.value.clone(),
            role: role.to_string(),
            language: detect_language(&turn.value),
            turn_identifier: Some(user_turns.max(1) - 1),
            timestamp: None,
            toxic: None,
            redacted: Some(false),
            country: None,
            state: None,
            hashed_ip: None,
            header: None,
        });
    }
    Ok(WildChatConversation {
        conversation_hash: conversation_hash("sharegpt", &conv.id),
        model: SHAREGPT_MODEL.to_string(),
        timestamp: None,
        conversation: messages,
        turn: user_turns,
        language: conversation_language(
            conv.conversations
                .iter()
                .filter(|t| role_of(&t.from) == Some("user"))
                .map(|t| t.value.as_str()),
        )
        .unwrap_or_else(|| "Unknown".to_string()),
        toxic: None,
        redacted: Some(false),
        state: None,
        country: None,
        // ShareGPT records no user: `wildfb collect` keys every conversation as its own user (the
        // import report and stats.json say so), nothing is made up.
        hashed_ip: None,
        header: None,
        adapted_from: Some("sharegpt".to_string()),
        source_id: Some(conv.id.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(turns: &[(&str, &str)]) -> ShareGptConversation {
        ShareGptConversation {
            id: "abc_0".into(),
            conversations: turns
                .iter()
                .map(|(f, v)| ShareGptTurn {
                    from: f.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn maps_roles_turns_and_marks_the_row_as_adapted() {
        let c = conv(&[
            ("human", "How do I reverse a list in Python?"),
            ("gpt", "Use my_list.reverse() or my_list[::-1]."),
            ("human", "Thanks, that works perfectly for my use case!"),
            ("gpt", "You're welcome!"),
        ]);
        let row = to_wildchat(&c).unwrap();
        let roles: Vec<_> = row.conversation.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        let turn_ids: Vec<_> = row.conversation.iter().map(|m| m.turn_identifier).collect();
        assert_eq!(turn_ids, [Some(0), Some(0), Some(1), Some(1)]);
        assert_eq!(row.turn, 2);
        assert_eq!(row.language, "English");
        assert_eq!(row.adapted_from.as_deref(), Some("sharegpt"));
        assert_eq!(row.source_id.as_deref(), Some("abc_0"));
        assert_eq!(row.conversation_hash.len(), 32);
        assert_eq!(
            row.conversation_hash,
            conversation_hash("sharegpt", "abc_0")
        );
        assert_ne!(
            row.conversation_hash,
            conversation_hash("sharegpt", "abc_1")
        );
    }

    #[test]
    fn unmappable_conversations_are_skipped_with_a_reason() {
        assert_eq!(to_wildchat(&conv(&[])).unwrap_err(), Skip::Empty);
        assert_eq!(
            to_wildchat(&conv(&[("human", "hi"), ("robot", "beep")])).unwrap_err(),
            Skip::UnknownSpeaker("robot".into())
        );
    }
}
