//! Rewards for sampled answers from the scoring endpoint, through the project's one scoring client.
//! An answer whose reward cannot be obtained gets `None` and is counted — never a constant (the
//! reference turned every failed call into a reward of 2).
//!
//! A `/get_reward` URL gets ready-made RM texts (the reference's wire, which any server speaks); a
//! server root or `/score` URL gets structured items through `POST /score`, which our server
//! encodes with the training encoder (an over-long prompt loses its middle, not the template's
//! header and BOS).

use crate::error::{DpoError, Result};
use std::time::Duration;
use wildreward_client::{BlockingClient, ClientError, ClientOptions, ItemError};
use wildreward_types::template::{build_text, EmptyHistory};
use wildreward_types::wire::ScoreItem;

/// Scores (prompt, answer) pairs with the WildReward template.
pub struct RewardSource {
    client: BlockingClient,
    empty: EmptyHistory,
    structured: bool,
}

/// Rewards of one batch of answers.
#[derive(Debug, Clone, Default)]
pub struct Rewards {
    /// One per answer; `None` where the endpoint gave no reward.
    pub values: Vec<Option<f32>>,
    /// How many are `None`.
    pub failed: usize,
    /// The last failure's message, for the log.
    pub last_error: Option<String>,
}

impl RewardSource {
    /// A source talking to `endpoint`: a `/get_reward` URL (texts), or a server root or `/score`
    /// URL (structured items).
    pub fn new(
        endpoint: &str,
        chunk_size: usize,
        concurrency: usize,
        timeout_s: f64,
        retries: u32,
        api_key: Option<String>,
        empty: EmptyHistory,
    ) -> Result<Self> {
        let opts = ClientOptions {
            chunk_size: chunk_size.max(1),
            concurrency: concurrency.max(1),
            timeout: Duration::from_secs_f64(timeout_s.max(0.001)),
            retries,
            bearer_token: api_key,
            ..ClientOptions::default()
        };
        let client = BlockingClient::new(endpoint, opts)
            .map_err(|e| DpoError::input(format!("reward endpoint `{endpoint}`: {e}")))?;
        let structured = !endpoint.trim_end_matches('/').ends_with("/get_reward");
        Ok(Self {
            client,
            empty,
            structured,
        })
    }

    /// Rewards of `answers[i]` to `prompts[i]` (the clean user message, not the chat markup).
    pub fn score(&self, prompts: &[&str], answers: &[&str]) -> Result<Rewards> {
        let client_error = |e: ClientError| DpoError::Rewards(format!("reward client: {e}"));
        let results: Vec<std::result::Result<f32, ItemError>> = if self.structured {
            let items: Vec<ScoreItem> = prompts
                .iter()
                .zip(answers)
                .map(|(p, a)| ScoreItem {
                    query: p.to_string(),
                    response: a.to_string(),
                    history: vec![],
                })
                .collect();
            self.client
                .score_items(&items, &mut |_| {})
                .map_err(client_error)?
                .into_iter()
                .map(|r| r.map(|s| s.reward))
                .collect()
        } else {
            let texts: Vec<String> = prompts
                .iter()
                .zip(answers)
                .map(|(p, a)| build_text(&[], p, a, self.empty))
                .collect();
            self.client
                .get_rewards(&texts, &mut |_| {})
                .map_err(client_error)?
        };
        let mut out = Rewards::default();
        for r in results {
            match r {
                Ok(v) if v.is_finite() => out.values.push(Some(v)),
                Ok(v) => {
                    out.values.push(None);
                    out.failed += 1;
                    out.last_error = Some(format!("non-finite reward {v}"));
                }
                Err(e) => {
                    out.values.push(None);
                    out.failed += 1;
                    out.last_error = Some(e.to_string());
                }
            }
        }
        Ok(out)
    }
}
