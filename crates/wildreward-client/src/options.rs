//! The client's knobs, with the defaults of the reference's online-DPO client where it had them
//! (chunks of 32) and bounded everything it left unbounded.

use std::time::Duration;

/// How the client splits, sends and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Items per request (the reference client sends 32).
    pub chunk_size: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Limit on one request, connect to last byte.
    pub timeout: Duration,
    /// Extra tries of a chunk after a retryable failure (connect error, timeout, 5xx, 429).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Longest wait between tries, also the cap on a server's `Retry-After`.
    pub max_backoff: Duration,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            chunk_size: 32,
            concurrency: 8,
            timeout: Duration::from_secs(600),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            bearer_token: None,
        }
    }
}

impl ClientOptions {
    /// The wait before retry number `retry` (1-based) when the server gave no `Retry-After`.
    pub fn backoff_for(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = ClientOptions {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..ClientOptions::default()
        };
        let waits: Vec<u128> = (1..=4).map(|r| o.backoff_for(r).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 350, 350]);
    }
}
