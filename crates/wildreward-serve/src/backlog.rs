//! Admission by work, not by count: a worker knows how many tokens it has admitted and not yet
//! answered, and how long a token takes (an EWMA of seconds per token, updated after every batch,
//! started from the warm-up pass or a prior), so it can tell a request how long it would wait.
//! Admitting a request whose expected wait — the backlog's tokens plus its own, times seconds per
//! token — passes `--max-queue-seconds` is refused with 429 and a `Retry-After` of the seconds
//! until it would fit (for a request bigger than the bound, until the worker is idle). An idle
//! worker admits any request, so one larger than the bound is still served (alone), never refused
//! forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Weight of the newest batch in the seconds-per-token average.
const EWMA_WEIGHT: f64 = 0.3;

/// Seconds per token assumed until a pass has been timed: SmolLM2-135M's order on one CPU core
/// (about 1,000 tokens/s); the warm-up pass replaces it before the first request.
pub const PRIOR_SECONDS_PER_TOKEN: f64 = 1e-3;

/// A worker's queued work and its measured speed.
#[derive(Debug)]
pub struct Backlog {
    queued_tokens: AtomicU64,
    seconds_per_token: AtomicU64,
    max_wait: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub struct TooMuchWork {
    /// Expected seconds until the request would be answered if admitted now.
    pub expected_wait_s: f64,
    /// Seconds the backlog needs to drain to where the request would fit (at least 1).
    pub retry_after_s: u64,
    /// Tokens queued when it was refused.
    pub queued_tokens: u64,
}

impl Backlog {
    /// An empty backlog that refuses work past `max_wait`.
    pub fn new(max_wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            queued_tokens: AtomicU64::new(0),
            seconds_per_token: AtomicU64::new(PRIOR_SECONDS_PER_TOKEN.to_bits()),
            max_wait,
        })
    }

    /// Tokens admitted and not yet answered.
    pub fn queued_tokens(&self) -> u64 {
        self.queued_tokens.load(Ordering::SeqCst)
    }

    /// The current seconds-per-token estimate.
    pub fn seconds_per_token(&self) -> f64 {
        f64::from_bits(self.seconds_per_token.load(Ordering::Relaxed))
    }

    /// Expected seconds to answer everything queued now.
    pub fn expected_wait_s(&self) -> f64 {
        self.queued_tokens() as f64 * self.seconds_per_token()
    }

    /// The bound.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Admits `tokens` of work if the expected wait stays within the bound (or the worker is idle);
    /// the ticket gives them back when dropped (when the text is answered, fails or is dropped).
    pub fn admit(self: &Arc<Self>, tokens: u64) -> Result<Ticket, TooMuchWork> {
        let spt = self.seconds_per_token();
        let bound = self.max_wait.as_secs_f64();
        let fits = |queued: u64| queued == 0 || (queued + tokens) as f64 * spt <= bound;
        match self
            .queued_tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                fits(q).then_some(q + tokens)
            }) {
            Ok(_) => Ok(Ticket {
                backlog: self.clone(),
                tokens,
            }),
            Err(queued) => {
                let expected_wait_s = (queued + tokens) as f64 * spt;
                // It fits once the backlog is down to what the bound leaves beside the request's
                // own work; a request bigger than the bound fits only an idle worker.
                let room = (bound - tokens as f64 * spt).max(0.0);
                let drain_s = queued as f64 * spt - room;
                Err(TooMuchWork {
                    expected_wait_s,
                    retry_after_s: drain_s.ceil().max(1.0) as u64,
                    queued_tokens: queued,
                })
            }
        }
    }

    /// Refuses at once, before the request is even tokenised, when the backlog alone already
    /// fills the bound (under a flood most requests are refused here, for almost no CPU).
    pub fn precheck(&self) -> Result<(), TooMuchWork> {
        let queued = self.queued_tokens();
        let wait = queued as f64 * self.seconds_per_token();
        let bound = self.max_wait.as_secs_f64();
        if queued > 0 && wait >= bound {
            return Err(TooMuchWork {
                expected_wait_s: wait,
                retry_after_s: (wait - bound).ceil().max(1.0) as u64,
                queued_tokens: queued,
            });
        }
        Ok(())
    }

    /// Takes a finished pass into the average: `tokens` real tokens in `elapsed`.
    pub fn observe(&self, tokens: usize, elapsed: Duration) {
        if tokens == 0 {
            return;
        }
        let sample = elapsed.as_secs_f64() / tokens as f64;
        if !sample.is_finite() || sample <= 0.0 {
            return;
        }
        let _ = self
            .seconds_per_token
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                Some((EWMA_WEIGHT * sample + (1.0 - EWMA_WEIGHT) * old).to_bits())
            });
    }

    /// Starts the average from a timed pass (the warm-up), replacing the prior.
    pub fn calibrate(&self, tokens: usize, elapsed: Duration) {
        if tokens > 0 && !elapsed.is_zero() {
            let spt = elapsed.as_secs_f64() / tokens as f64;
            self.seconds_per_token
                .store(spt.to_bits(), Ordering::Relaxed);
        }
    }
}

/// Admitted work; returned to the backlog when dropped.
#[derive(Debug)]
pub struct Ticket {
    backlog: Arc<Backlog>,
    tokens: u64,
}

impl Ticket {
    /// Splits `tokens` off into a ticket of their own (one per text, so each is returned as soon
    /// as its batch is done).
    pub fn split(&mut self, tokens: u64) -> Ticket {
        let tokens = tokens.min(self.tokens);
        self.tokens -= tokens;
        Ticket {
            backlog: self.backlog.clone(),
            tokens,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.tokens > 0 {
            self.backlog
                .queued_tokens
                .fetch_sub(self.tokens, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_past_the_bound_is_refused_with_the_seconds_until_it_fits() {
        let b = Backlog::new(Duration::from_secs(2));
        b.calibrate(1000, Duration::from_secs(1)); // 1 ms per token
        let first = b.admit(1500).unwrap(); // 1.5 s: fits
        assert_eq!(b.queued_tokens(), 1500);
        let refused = b.admit(1000).unwrap_err(); // 2.5 s > 2 s
        assert_eq!(refused.queued_tokens, 1500);
        assert!((refused.expected_wait_s - 2.5).abs() < 1e-9);
        assert_eq!(refused.retry_after_s, 1);
        let big = b.admit(9000).unwrap_err(); // 9 s alone: fits only once the 1.5 s drained
        assert_eq!(big.retry_after_s, 2);
        let near = b.admit(1800).unwrap_err(); // 1.8 s: fits once 1.3 s of the 1.5 s drained
        assert_eq!(near.retry_after_s, 2);
        assert!((near.expected_wait_s - 3.3).abs() < 1e-9);
        assert!(b.precheck().is_ok(), "1.5 s queued leaves room");
        let second = b.admit(400).unwrap(); // 1.9 s
        assert_eq!(b.admit(101).unwrap_err().queued_tokens, 1900);
        let third = b.admit(100).unwrap(); // exactly 2 s: fits
        assert!(b.precheck().is_err(), "full: refused before tokenising");
        drop(third);
        drop(second);
        drop(first);
        assert_eq!(b.queued_tokens(), 0);
        // An idle worker takes a request larger than the bound, alone.
        let alone = b.admit(9000).unwrap();
        assert!(b.admit(1).is_err());
        drop(alone);
        assert!(b.admit(1).is_ok());
    }

    #[test]
    fn split_tickets_give_back_exactly_what_was_admitted() {
        let b = Backlog::new(Duration::from_secs(100));
        let mut t = b.admit(30).unwrap();
        let a = t.split(10);
        let c = t.split(25); // only 20 left
        assert_eq!(b.queued_tokens(), 30);
        drop(a);
        assert_eq!(b.queued_tokens(), 20);
        drop(t);
        assert_eq!(b.queued_tokens(), 20);
        drop(c);
        assert_eq!(b.queued_tokens(), 0);
    }

    #[test]
    fn the_average_follows_the_measured_speed() {
        let b = Backlog::new(Duration::from_secs(1));
        assert_eq!(b.seconds_per_token(), PRIOR_SECONDS_PER_TOKEN);
        b.calibrate(100, Duration::from_millis(100));
        assert!((b.seconds_per_token() - 1e-3).abs() < 1e-12);
        for _ in 0..40 {
            b.observe(100, Duration::from_millis(500));
        }
        assert!((b.seconds_per_token() - 5e-3).abs() < 1e-6);
        b.observe(0, Duration::from_secs(9));
        assert!((b.seconds_per_token() - 5e-3).abs() < 1e-6);
    }
}
