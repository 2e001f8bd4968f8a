//! What can go wrong: [`ClientError`] for the client as a whole (a bad endpoint URL, a blocking call
//! from async code), [`ItemError`] for one scored item whose chunk finally failed.

use std::fmt;

/// An error of the client as a whole (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL cannot be used.
    #[error("bad scoring endpoint `{url}`: {why}")]
    BadEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The HTTP client or the blocking client's runtime could not be built.
    #[error("cannot start the scoring client: {0}")]
    Setup(String),
    /// A blocking call was made from inside an async runtime (it would deadlock or panic there).
    #[error(
        "the blocking scoring client was called from inside an async runtime; use `ScoringClient` there"
    )]
    InsideRuntime,
}

/// Why a chunk failed for good (after its retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made (refused, DNS, reset before a response).
    Connect,
    /// No complete response within the per-request timeout.
    Timeout,
    /// The server answered with this non-success status (5xx and 429 after retries; other 4xx at once).
    Status(u16),
    /// The server answered 2xx with a body that is not the wire format, or with the wrong number of
    /// results for the chunk.
    BadResponse,
    /// Any other transport failure.
    Transport,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Connect => f.write_str("connect"),
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Status(code) => write!(f, "http {code}"),
            FailureKind::BadResponse => f.write_str("bad response"),
            FailureKind::Transport => f.write_str("transport"),
        }
    }
}

/// The error of one item: its chunk failed after `attempts` tries. Every item of a failed chunk gets
/// its own copy, so callers can drop and count exactly the items that have no score (never a
/// placeholder reward).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scoring failed after {attempts} attempt(s): {kind}: {detail}")]
pub struct ItemError {
    /// The class of the last failure.
    pub kind: FailureKind,
    /// The last failure in words (the server's `error` field when it sent one).
    pub detail: String,
    /// How many requests were made for the chunk.
    pub attempts: u32,
}

impl ItemError {
    /// Whether another try could succeed (connect errors, timeouts, 5xx, 429).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            FailureKind::Connect | FailureKind::Timeout | FailureKind::Transport => true,
            FailureKind::Status(code) => code == 429 || code >= 500,
            FailureKind::BadResponse => false,
        }
    }
}
