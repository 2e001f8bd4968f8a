//! The one scoring client of the project: it talks to `POST /get_reward` (the reference's and
//! OpenRLHF's wire, `{"query": [text…]}` → `{"rewards": [f32…]}`) and `POST /score` (structured items
//! `{query, response, history}` → rewards and level probabilities) of `wildreward serve`, or of any
//! server speaking the same wire. `wildreward eval --endpoint` and `online-dpo` use it.
//!
//! What it guarantees, where the reference's client did not:
//! - **One result per item.** Items are sent in chunks ([`ClientOptions::chunk_size`], 32 by
//!   default), at most [`ClientOptions::concurrency`] requests at once, each with a timeout. A chunk
//!   that fails for good yields an [`ItemError`] for each of its items, never a placeholder reward
//!   (the reference's client returned 2.0 for every item of a failed batch), so callers drop and
//!   count what has no score.
//! - **Retries that help.** Connect errors, timeouts, 5xx and 429 are retried
//!   ([`ClientOptions::retries`]) with doubling backoff, or after the server's `Retry-After`
//!   (capped at [`ClientOptions::max_backoff`]); other 4xx and malformed answers are final.
//! - **Optional bearer token** ([`ClientOptions::bearer_token`]).
//!
//! Two faces: [`ScoringClient`] for async code, [`BlockingClient`] for synchronous code — it owns a
//! single-threaded tokio runtime, so a plain loop gets concurrent chunks without knowing about async.
//!
//! ```no_run
//! use wildreward_client::{BlockingClient, ClientOptions};
//! let client = BlockingClient::new("http://127.0.0.1:9000/get_reward", ClientOptions::default())?;
//! let results = client.get_rewards(&["text one", "text two"], &mut |done| eprintln!("+{done}"))?;
//! let (scored, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
//! eprintln!("{} scored, {} failed", scored.len(), failed.len());
//! # Ok::<(), wildreward_client::ClientError>(())
//! ```
//!
//! Dependencies and why: `reqwest` (HTTP with rustls, connection pooling, timeouts), `tokio`
//! (concurrency limit, backoff sleeps, the blocking face's runtime), `serde`/`serde_json` (the wire
//! types from `wildreward-types`), `thiserror` (error types). With the `test-server` feature only:
//! `axum` and `wildreward-model` for [`test_server`], a real scoring server with fault injection.

mod blocking;
mod client;
mod error;
mod options;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use blocking::BlockingClient;
pub use client::{endpoint_root, ItemResults, ItemScore, ScoringClient};
pub use error::{ClientError, FailureKind, ItemError};
pub use options::ClientOptions;
