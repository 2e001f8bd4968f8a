//! WildChat's conversation row, as the `allenai/WildChat-4.8M` parquet files hold it.
//!
//! The pipeline reads `conversation_hash`, `model`, `language` and each message's `role` and `content`;
//! the other fields are carried so that rows we write (ShareGPT adapted into this schema, hand-written
//! fixtures) have WildChat's columns. The moderation columns (`openai_moderation`,
//! `detoxify_moderation`) are not modelled: nothing reads them.

use serde::{Deserialize, Serialize};

/// Column names of the WildChat parquet schema, in the dataset's order.
pub mod columns {
    /// Hex hash identifying the conversation.
    pub const CONVERSATION_HASH: &str = "conversation_hash";
    /// The OpenAI model that answered.
    pub const MODEL: &str = "model";
    /// Time of the last turn (UTC).
    pub const TIMESTAMP: &str = "timestamp";
    /// The list of message structs.
    pub const CONVERSATION: &str = "conversation";
    /// Number of user turns.
    pub const TURN: &str = "turn";
    /// Language detected for the conversation (full English name).
    pub const LANGUAGE: &str = "language";
    /// Whether any message was flagged toxic.
    pub const TOXIC: &str = "toxic";
    /// Whether PII was redacted.
    pub const REDACTED: &str = "redacted";
    /// Coarse user location.
    pub const STATE: &str = "state";
    /// Coarse user location.
    pub const COUNTRY: &str = "country";
    /// Hashed IP address.
    pub const HASHED_IP: &str = "hashed_ip";
    /// Request headers (`accept-language`, `user-agent`).
    pub const HEADER: &str = "header";
    /// Not WildChat: the dataset a converted row was adapted from (`sharegpt`), null for real rows.
    pub const ADAPTED_FROM: &str = "adapted_from";
    /// Not WildChat: the row's id in the dataset it was adapted from.
    pub const SOURCE_ID: &str = "source_id";
}

/// The request headers WildChat records per conversation and per message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WildChatHeader {
    /// `Accept-Language`.
    #[serde(rename = "accept-language", default)]
    pub accept_language: Option<String>,
    /// `User-Agent`.
    #[serde(rename = "user-agent", default)]
    pub user_agent: Option<String>,
}

/// One message of a WildChat conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WildChatMessage {
    /// The text.
    pub content: String,
    /// `user` or `assistant` (kept as a string: real data may hold other values, which the pipeline
    /// counts and skips rather than failing the whole file).
    pub role: String,
    /// Language detected for this message.
    #[serde(default)]
    pub language: Option<String>,
    /// WildChat's per-turn identifier.
    #[serde(default)]
    pub turn_identifier: Option<i64>,
    /// Time of the message, RFC 3339 / ISO 8601 in JSON, microseconds UTC in parquet.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Whether this message was flagged toxic.
    #[serde(default)]
    pub toxic: Option<bool>,
    /// Whether PII was redacted in this message.
    #[serde(default)]
    pub redacted: Option<bool>,
    /// Coarse user location.
    #[serde(default)]
    pub country: Option<String>,
    /// Coarse user location.
    #[serde(default)]
    pub state: Option<String>,
    /// Hashed IP address.
    #[serde(default)]
    pub hashed_ip: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub header: Option<WildChatHeader>,
}

/// One WildChat row: a whole conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WildChatConversation {
    /// Hex hash identifying the conversation.
    pub conversation_hash: String,
    /// The model that answered.
    pub model: String,
    /// Time of the last turn, RFC 3339 in JSON.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The messages, in order.
    pub conversation: Vec<WildChatMessage>,
    /// Number of user turns.
    pub turn: i64,
    /// Language of the conversation (full English name, e.g. `English`, `Chinese`).
    pub language: String,
    /// Whether any message was flagged toxic.
    #[serde(default)]
    pub toxic: Option<bool>,
    /// Whether PII was redacted.
    #[serde(default)]
    pub redacted: Option<bool>,
    /// Coarse user location.
    #[serde(default)]
    pub state: Option<String>,
    /// Coarse user location.
    #[serde(default)]
    pub country: Option<String>,
    /// Hashed IP address.
    #[serde(default)]
    pub hashed_ip: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub header: Option<WildChatHeader>,
    /// Not WildChat: set on rows adapted from another dataset (e.g. `sharegpt`).
    #[serde(default)]
    pub adapted_from: Option<String>,
    /// Not WildChat: the row's id in the dataset it was adapted from.
    #[serde(default)]
    pub source_id: Option<String>,
}
