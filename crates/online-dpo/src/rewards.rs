//! Rewards for sampled answers from the scoring endpoint, through the project's one scoring client.
//! An answer whose reward cannot be obtained gets `None` and is counted — never a constant (the
//! reference turned every failed call into a reward of 2).

use crate::error::{DpoError, Result};
use std::time::Duration;
use wildreward_client::{BlockingClient, ClientOptions};
use wildreward_types::template::{build_text, EmptyHistory};

/// Scores (prompt, answer) pairs with the WildReward template.
pub struct RewardSource {
    client: BlockingClient,
    empty: EmptyHistory,
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
    /// A source talking to `endpoint` (a `/get_reward` URL).
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
        Ok(Self { client, empty })
    }

    /// Rewards of `answers[i]` to `prompts[i]` (the clean user message, not the chat markup).
    pub fn score(&self, prompts: &[&str], answers: &[&str]) -> Result<Rewards> {
        let texts: Vec<String> = prompts
            .iter()
            .zip(answers)
            .map(|(p, a)| build_text(&[], p, a, self.empty))
            .collect();
        let results = self
            .client
            .get_rewards(&texts, &mut |_| {})
            .map_err(|e| DpoError::Rewards(format!("reward client: {e}")))?;
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
