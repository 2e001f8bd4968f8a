//! `stats.json`: what each step read, wrote and dropped (by reason), its label histogram, its API calls
//! and tokens, and its time. A step's entry is written only once its output is in place, so the file
//! also records which steps are finished (and with which settings) for a resumed run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Fingerprint of the settings and inputs the step ran with (chained through earlier steps).
    pub fingerprint: String,
    /// Records read (conversations for `preprocess`, turns for the others).
    pub rows_in: u64,
    /// Records written.
    pub rows_out: u64,
    /// Records not written, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Labels of the records written (raw categories 1..5, or training labels 1..4 for `split`).
    pub label_histogram: BTreeMap<String, u64>,
    /// Calls to the LLM endpoint, when the step made any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiStats>,
    /// Per-user statistics of the records written (the `split` step: the labelled set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<super::users::UserStats>,
    /// Step-specific figures (how many relabelled, calls saved, test-set size, …).
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl StepStats {
    /// Counts one dropped record.
    pub fn drop(&mut self, reason: &str) {
        *self.drops.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts one written record with `label`.
    pub fn label(&mut self, label: impl ToString) {
        *self.label_histogram.entry(label.to_string()).or_default() += 1;
    }

    /// Sets a detail.
    pub fn detail(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.details.insert(key.to_string(), value.into());
    }
}

/// What talking to the LLM endpoint cost and how it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiStats {
    /// Prompts that needed an answer from the endpoint (not found in the journal).
    pub calls: u64,
    /// Prompts answered from the journal of an earlier (killed) run: not paid again.
    pub journal_hits: u64,
    /// Prompts that were the same as one already in flight in this run (answered once, used twice).
    pub deduplicated: u64,
    /// HTTP requests sent (calls plus retries).
    pub requests: u64,
    /// Calls that got an answer.
    pub succeeded: u64,
    /// Calls that failed after every retry (their records are dropped, never labelled).
    pub failed: u64,
    /// Requests retried.
    pub retries: u64,
    /// 429 Too Many Requests answers.
    pub http_429: u64,
    /// 5xx answers.
    pub http_5xx: u64,
    /// Other non-success statuses (not retried).
    pub http_other: u64,
    /// Requests that ran past the per-request timeout.
    pub timeouts: u64,
    /// Connection or transport errors.
    pub transport_errors: u64,
    /// 200 answers whose body was not a chat completion.
    pub bad_bodies: u64,
    /// Answers whose text held no valid `[[n]]`.
    pub unparseable: u64,
    /// Prompt tokens the endpoint reported.
    pub prompt_tokens: u64,
    /// Completion tokens the endpoint reported.
    pub completion_tokens: u64,
    /// Seconds spent in the API phase.
    pub seconds: f64,
    /// Requests per second achieved in the API phase.
    pub requests_per_second: f64,
}

/// Lock-free counters the concurrent client updates; turned into [`ApiStats`] at the end.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// See [`ApiStats::requests`].
    pub requests: AtomicU64,
    /// See [`ApiStats::retries`].
    pub retries: AtomicU64,
    /// See [`ApiStats::http_429`].
    pub http_429: AtomicU64,
    /// See [`ApiStats::http_5xx`].
    pub http_5xx: AtomicU64,
    /// See [`ApiStats::http_other`].
    pub http_other: AtomicU64,
    /// See [`ApiStats::timeouts`].
    pub timeouts: AtomicU64,
    /// See [`ApiStats::transport_errors`].
    pub transport_errors: AtomicU64,
    /// See [`ApiStats::bad_bodies`].
    pub bad_bodies: AtomicU64,
    /// See [`ApiStats::prompt_tokens`].
    pub prompt_tokens: AtomicU64,
    /// See [`ApiStats::completion_tokens`].
    pub completion_tokens: AtomicU64,
}

impl ApiCounters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn values(&self) -> [u64; 10] {
        [
            &self.requests,
            &self.retries,
            &self.http_429,
            &self.http_5xx,
            &self.http_other,
            &self.timeouts,
            &self.transport_errors,
            &self.bad_bodies,
            &self.prompt_tokens,
            &self.completion_tokens,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }

    /// The counters now, to be passed to [`ApiCounters::fill_since`] at the end of a phase.
    pub fn snapshot(&self) -> [u64; 10] {
        self.values()
    }

    /// Copies into `stats` what the HTTP-level counters counted since `before` (one client serves
    /// several steps, each reports its own calls).
    pub fn fill_since(&self, before: &[u64; 10], stats: &mut ApiStats) {
        let now = self.values();
        let d = |i: usize| now[i].saturating_sub(before[i]);
        stats.requests = d(0);
        stats.retries = d(1);
        stats.http_429 = d(2);
        stats.http_5xx = d(3);
        stats.http_other = d(4);
        stats.timeouts = d(5);
        stats.transport_errors = d(6);
        stats.bad_bodies = d(7);
        stats.prompt_tokens = d(8);
        stats.completion_tokens = d(9);
    }
}

/// The whole `stats.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// The parquet files read.
    pub inputs: Vec<String>,
    /// The settings the last run used (annotator, model, seed, …).
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Finished steps, by name.
    pub steps: BTreeMap<String, StepStats>,
}
