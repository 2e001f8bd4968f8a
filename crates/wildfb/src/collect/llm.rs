//! The LLM annotator's client: any OpenAI-compatible `/chat/completions` endpoint, called concurrently
//! (bounded), optionally rate-limited, each request with a timeout, retried with exponential backoff and
//! jitter that honours `Retry-After` on 429 / 503. [`run_jobs`] drives a stream of prompts through it,
//! journalling every answer before it is used and delivering results in input order.

use super::journal::{journal_key, Journal, JournalEntry};
use super::stats::{ApiCounters, ApiStats};
use crate::error::{Error, Result};
use indicatif::ProgressBar;
use rand::Rng;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How to reach the endpoint and how hard to try.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Base URL, e.g. `http://localhost:8001/v1`.
    pub api_base: String,
    /// Model name sent with each request (and part of the journal key).
    pub model: String,
    /// Bearer token, if any.
    pub api_key: Option<String>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Requests in flight.
    pub concurrency: usize,
    /// Requests per minute (0: no limit).
    pub requests_per_minute: u32,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff delay.
    pub backoff_initial: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `choices[0].message.content` (empty when the endpoint sent none).
    pub content: String,
    /// Reported prompt tokens.
    pub prompt_tokens: u64,
    /// Reported completion tokens.
    pub completion_tokens: u64,
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The endpoint rejects the run's configuration (401, 403, 404): no call can succeed, stop.
    Fatal(String),
    /// This call failed (after its retries, or with a status that is not worth retrying).
    Failed(String),
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    async fn acquire(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// A client for one endpoint and model.
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    settings: LlmSettings,
    limiter: Option<RateLimiter>,
    /// HTTP-level counters, shared with the tasks.
    pub counters: ApiCounters,
}

enum Attempt {
    Retry(Option<Duration>, String),
    Done(std::result::Result<Completion, CallError>),
}

impl LlmClient {
    /// A client for `settings`.
    pub fn new(settings: LlmSettings) -> Result<Self> {
        let url = format!(
            "{}/chat/completions",
            settings.api_base.trim_end_matches('/')
        );
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.concurrency)
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| Error::Api {
                url: url.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let limiter = (settings.requests_per_minute > 0).then(|| RateLimiter {
            interval: Duration::from_secs_f64(60.0 / f64::from(settings.requests_per_minute)),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        });
        Ok(Self {
            http,
            url,
            settings,
            limiter,
            counters: ApiCounters::default(),
        })
    }

    /// The chat-completions URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// Sends `prompt` as one user message, retrying as configured.
    pub async fn complete(
        &self,
        prompt: &str,
        max_tokens: u32,
    ) -> std::result::Result<Completion, CallError> {
        let body = serde_json::json!({
            "model": self.settings.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.settings.temperature,
            "max_tokens": max_tokens,
        });
        let mut attempt: u32 = 0;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.acquire().await;
            }
            ApiCounters::bump(&self.counters.requests);
            let (after, last) = match self.attempt(&body).await {
                Attempt::Done(result) => return result,
                Attempt::Retry(after, why) => (after, why),
            };
            if attempt >= self.settings.max_retries {
                return Err(CallError::Failed(format!(
                    "gave up after {} attempts: {last}",
                    attempt + 1
                )));
            }
            attempt += 1;
            ApiCounters::bump(&self.counters.retries);
            tokio::time::sleep(self.backoff(attempt, after)).await;
        }
    }

    async fn attempt(&self, body: &serde_json::Value) -> Attempt {
        let c = &self.counters;
        let mut req = self
            .http
            .post(&self.url)
            .timeout(self.settings.timeout)
            .json(body);
        if let Some(key) = &self.settings.api_key {
            req = req.bearer_auth(key);
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ApiCounters::bump(&c.timeouts);
                Attempt::Retry(None, "timed out".into())
            } else {
                ApiCounters::bump(&c.transport_errors);
                Attempt::Retry(None, format!("transport error: {e}"))
            }
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return transport(e),
        };
        let excerpt = || {
            let text = String::from_utf8_lossy(&bytes);
            let cut: String = text.chars().take(200).collect();
            format!("HTTP {status}: {cut}")
        };
        match status.as_u16() {
            200..=299 => match serde_json::from_slice::<ChatResponse>(&bytes) {
                Ok(r) if !r.choices.is_empty() => {
                    let usage = r.usage.unwrap_or(Usage {
                        prompt_tokens: 0,
                        completion_tokens: 0,
                    });
                    c.prompt_tokens
                        .fetch_add(usage.prompt_tokens, std::sync::atomic::Ordering::Relaxed);
                    c.completion_tokens.fetch_add(
                        usage.completion_tokens,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let content = r
                        .choices
                        .into_iter()
                        .next()
                        .and_then(|ch| ch.message.content)
                        .unwrap_or_default();
                    Attempt::Done(Ok(Completion {
                        content,
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                    }))
                }
                _ => {
                    ApiCounters::bump(&c.bad_bodies);
                    Attempt::Retry(None, format!("not a chat completion: {}", excerpt()))
                }
            },
            429 => {
                ApiCounters::bump(&c.http_429);
                Attempt::Retry(retry_after, excerpt())
            }
            500..=599 => {
                ApiCounters::bump(&c.http_5xx);
                Attempt::Retry(if status == 503 { retry_after } else { None }, excerpt())
            }
            401 | 403 | 404 => Attempt::Done(Err(CallError::Fatal(excerpt()))),
            _ => {
                ApiCounters::bump(&c.http_other);
                Attempt::Done(Err(CallError::Failed(excerpt())))
            }
        }
    }

    /// The wait before retry number `attempt` (1-based): what `Retry-After` asked for (plus up to 10 %),
    /// else the exponential delay with jitter in its upper half.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        if let Some(after) = retry_after {
            let extra = after.as_secs_f64() * 0.1 * rng.random::<f64>();
            return after + Duration::from_secs_f64(extra);
        }
        let base = self.settings.backoff_initial.as_secs_f64()
            * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let capped = base.min(self.settings.backoff_max.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * rng.random::<f64>()))
    }
}

/// `Retry-After` as seconds or an HTTP date; capped at ten minutes.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let cap = Duration::from_secs(600);
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs).min(cap));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(wait.max(0) as u64).min(cap))
}

/// A run whose first calls all fail is misconfigured (a prompt too long for the model's context, a
/// proxy in the way…), not unlucky: it stops instead of dropping every record.
pub const FAILURES_BEFORE_GIVING_UP: u64 = 20;

/// One unit of work for [`run_jobs`]: an item and, if it needs the LLM, its prompt.
pub struct Job<T> {
    /// Carried through to the sink.
    pub item: T,
    /// `None`: the item needs no call (it is passed through in order).
    pub prompt: Option<String>,
}

/// What the LLM said about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The answer's text (from the endpoint or the journal).
    Answer(String),
    /// The call failed; the item must not be labelled.
    Failed(String),
}

/// Runs `jobs` through `client` with at most `settings.concurrency` calls in flight, journalling each
/// answer before handing it to `sink`, which receives every job in input order (`None` for jobs that
/// needed no call). Prompts already in the journal, or already in flight, are not sent again.
pub async fn run_jobs<T, I, F>(
    client: Arc<LlmClient>,
    journal: &mut Journal,
    max_tokens: u32,
    jobs: I,
    mut sink: F,
    progress: &ProgressBar,
) -> Result<ApiStats>
where
    T: Send + 'static,
    I: Iterator<Item = Result<Job<T>>>,
    F: FnMut(T, Option<Outcome>) -> Result<()>,
{
    let start = Instant::now();
    let before = client.counters.snapshot();
    let concurrency = client.settings.concurrency.max(1);
    let window = concurrency * 16 + 1024;
    let mut stats = ApiStats::default();
    let mut jobs = jobs.fuse();
    let mut exhausted = false;
    let mut next_index = 0usize;
    let mut next_emit = 0usize;
    let mut ready: BTreeMap<usize, (T, Option<Outcome>)> = BTreeMap::new();
    let mut waiting: HashMap<usize, T> = HashMap::new();
    let mut in_flight: HashMap<String, Vec<usize>> = HashMap::new();
    let mut tasks: JoinSet<(String, std::result::Result<Completion, CallError>)> = JoinSet::new();
    loop {
        while !exhausted && tasks.len() < concurrency && next_index - next_emit < window {
            let Some(job) = jobs.next() else {
                exhausted = true;
                break;
            };
            let job = job?;
            let index = next_index;
            next_index += 1;
            let Some(prompt) = job.prompt else {
                ready.insert(index, (job.item, None));
                continue;
            };
            let key = journal_key(client.model(), &prompt);
            if let Some(entry) = journal.get(&key)? {
                stats.journal_hits += 1;
                ready.insert(index, (job.item, Some(Outcome::Answer(entry.content))));
            } else if let Some(indices) = in_flight.get_mut(&key) {
                stats.deduplicated += 1;
                indices.push(index);
                waiting.insert(index, job.item);
            } else {
                stats.calls += 1;
                in_flight.insert(key.clone(), vec![index]);
                waiting.insert(index, job.item);
                let client = Arc::clone(&client);
                tasks.spawn(async move {
                    let result = client.complete(&prompt, max_tokens).await;
                    (key, result)
                });
            }
        }
        while let Some(entry) = ready.first_entry() {
            if *entry.key() != next_emit {
                break;
            }
            let (item, outcome) = entry.remove();
            sink(item, outcome)?;
            progress.inc(1);
            next_emit += 1;
        }
        if tasks.is_empty() {
            if !exhausted {
                continue;
            }
            if ready.is_empty() && waiting.is_empty() {
                break;
            }
            return Err(Error::Api {
                url: client.url().to_string(),
                message: format!(
                    "internal error: {} results left undelivered",
                    ready.len() + waiting.len()
                ),
            });
        }
        let Some(joined) = tasks.join_next().await else {
            continue;
        };
        let (key, result) = joined.map_err(|e| Error::Api {
            url: client.url().to_string(),
            message: format!("a request task failed: {e}"),
        })?;
        let outcome = match result {
            Ok(c) => {
                // Journal first: from here on this answer is never paid for again.
                journal.append(JournalEntry {
                    key: key.clone(),
                    content: c.content.clone(),
                    prompt_tokens: c.prompt_tokens,
                    completion_tokens: c.completion_tokens,
                })?;
                stats.succeeded += 1;
                Outcome::Answer(c.content)
            }
            Err(CallError::Fatal(message)) => {
                tasks.abort_all();
                journal.sync()?;
                return Err(Error::Api {
                    url: client.url().to_string(),
                    message: format!(
                        "{message} (check --api-base, --model and the API key; answers so far are kept in the journal)"
                    ),
                });
            }
            Err(CallError::Failed(message)) => {
                stats.failed += 1;
                if stats.succeeded == 0 && stats.failed >= FAILURES_BEFORE_GIVING_UP {
                    tasks.abort_all();
                    journal.sync()?;
                    return Err(Error::Api {
                        url: client.url().to_string(),
                        message: format!(
                            "the first {} calls all failed, the last with: {message}",
                            stats.failed
                        ),
                    });
                }
                Outcome::Failed(message)
            }
        };
        for index in in_flight.remove(&key).unwrap_or_default() {
            if let Some(item) = waiting.remove(&index) {
                ready.insert(index, (item, Some(outcome.clone())));
            }
        }
    }
    journal.sync()?;
    client.counters.fill_since(&before, &mut stats);
    stats.seconds = start.elapsed().as_secs_f64();
    stats.requests_per_second = if stats.seconds > 0.0 {
        stats.requests as f64 / stats.seconds
    } else {
        0.0
    };
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("99999"), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
