//! Types every WildReward crate shares, with light dependencies only (serde): chat messages,
//! WildChat rows, WildFB records, the two label spaces, the ordinal reward maths, the reward model's
//! text template and the scoring endpoints' wire format.
//!
//! One template, one reward formula and one wire format live here so that the data pipeline, the
//! trainer, the server, the evaluator and online DPO cannot drift apart.

pub mod chat;
pub mod exit;
pub mod files;
pub mod label;
pub mod metrics;
pub mod ordinal;
pub mod record;
pub mod template;
pub mod wildchat;
pub mod wire;

pub use chat::{Message, Role};
pub use label::{FeedbackCategory, TrainingLabel};
pub use record::{Instance, WildFbRecord};
pub use template::{build_text, EmptyHistory};

/// Errors from validating shared types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A numeric label outside its space.
    #[error("{what} {value} is out of range {min}..={max}")]
    LabelOutOfRange {
        /// Which label space.
        what: &'static str,
        /// The value found.
        value: i64,
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
    },
    /// A role name that is not system / user / assistant / tool.
    #[error("unknown chat role {0:?} (expected system, user, assistant or tool)")]
    UnknownRole(String),
    /// An id not of the form `<conversation_hash>_turn<k>`.
    #[error("instance id {0:?} is not of the form <conversation_hash>_turn<k>")]
    BadInstanceId(String),
}
