//! Prometheus metrics, one registry per server (tests run several servers in one process), named
//! after text-embeddings-inference's: request counts by route and status, failures by kind, queue /
//! tokenisation / inference time, batch sizes and tokens; on the router, tries per worker and
//! outcome, healthy workers and restarts.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

/// Seconds, 0.5 ms to about 65 s, doubling.
fn duration_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 18).unwrap_or_default()
}

/// Counts, 1 to 65,536, doubling.
fn size_buckets() -> Vec<f64> {
    exponential_buckets(1.0, 2.0, 17).unwrap_or_default()
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
) -> prometheus::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// What every server counts about its HTTP side.
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    /// Requests by route and status code.
    pub requests: IntCounterVec,
    /// Failed requests by `error_type`.
    pub failures: IntCounterVec,
    /// Time from request to response, by route.
    pub duration: HistogramVec,
}

impl HttpMetrics {
    fn new(registry: Registry) -> prometheus::Result<Self> {
        let requests = counter_vec(
            &registry,
            "wildreward_request_count",
            "HTTP requests by route and status code",
            &["route", "status"],
        )?;
        let failures = counter_vec(
            &registry,
            "wildreward_request_failure",
            "Failed requests by error_type",
            &["error_type"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wildreward_request_duration_seconds",
                "Time from request to response",
            )
            .buckets(duration_buckets()),
            &["route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            requests,
            failures,
            duration,
        })
    }

    /// The Prometheus text exposition of everything registered.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// A worker's metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Requests and failures.
    pub http: HttpMetrics,
    /// Time tokenising one request.
    pub tokenization: Histogram,
    /// Time a text waits in the queue before its batch starts.
    pub queue: Histogram,
    /// Time of one forward pass.
    pub inference: Histogram,
    /// Texts per forward pass.
    pub batch_size: Histogram,
    /// Padded tokens (rows × longest) per forward pass.
    pub batch_tokens: Histogram,
    /// Tokens per text after truncation.
    pub input_length: Histogram,
    /// Texts waiting in the queue.
    pub queue_size: IntGauge,
    /// Texts admitted and not yet answered.
    pub in_flight: IntGauge,
    /// Texts dropped from the queue because their client went away.
    pub dropped: IntCounter,
    /// Requests refused (429) because their expected wait passed `--max-queue-seconds`.
    pub refused_for_work: IntCounter,
    /// 1 when the served head is a seeded random one (`--allow-untrained-head`), else 0.
    pub head_initialised: IntGauge,
}

impl WorkerMetrics {
    /// Fresh metrics in a registry of their own.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let dropped = IntCounter::new(
            "wildreward_queue_dropped",
            "Texts dropped from the queue because their client went away",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let refused_for_work = IntCounter::new(
            "wildreward_queue_refused_for_work",
            "Requests refused because their expected wait passed --max-queue-seconds",
        )?;
        registry.register(Box::new(refused_for_work.clone()))?;
        Ok(Self {
            tokenization: histogram(
                &registry,
                "wildreward_tokenization_duration_seconds",
                "Time tokenising one request",
                duration_buckets(),
            )?,
            queue: histogram(
                &registry,
                "wildreward_queue_duration_seconds",
                "Time a text waits before its batch runs",
                duration_buckets(),
            )?,
            inference: histogram(
                &registry,
                "wildreward_inference_duration_seconds",
                "Time of one forward pass",
                duration_buckets(),
            )?,
            batch_size: histogram(
                &registry,
                "wildreward_batch_next_size",
                "Texts per forward pass",
                size_buckets(),
            )?,
            batch_tokens: histogram(
                &registry,
                "wildreward_batch_next_tokens",
                "Padded tokens per forward pass",
                size_buckets(),
            )?,
            input_length: histogram(
                &registry,
                "wildreward_request_input_length",
                "Tokens per text after truncation",
                size_buckets(),
            )?,
            queue_size: int_gauge(
                &registry,
                "wildreward_queue_size",
                "Texts waiting in the queue",
            )?,
            in_flight: int_gauge(
                &registry,
                "wildreward_in_flight",
                "Texts admitted and not yet answered",
            )?,
            head_initialised: int_gauge(
                &registry,
                "wildreward_head_initialised",
                "1 when the served reward head is a seeded random one, not a trained one",
            )?,
            dropped,
            refused_for_work,
            http: HttpMetrics::new(registry)?,
        })
    }
}

/// The router's metrics.
#[derive(Clone)]
pub struct RouterMetrics {
    /// Requests and failures.
    pub http: HttpMetrics,
    /// Tries on workers by worker and outcome (`ok`, `connect`, `timeout`, `server_error`,
    /// `overloaded`, `client_error`).
    pub attempts: IntCounterVec,
    /// Workers currently healthy.
    pub healthy_workers: IntGauge,
    /// Spawned workers restarted after they died, by worker index.
    pub restarts: IntCounterVec,
}

impl RouterMetrics {
    /// Fresh metrics in a registry of their own.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        Ok(Self {
            attempts: counter_vec(
                &registry,
                "wildreward_router_attempts",
                "Tries on workers by worker and outcome",
                &["worker", "outcome"],
            )?,
            healthy_workers: int_gauge(
                &registry,
                "wildreward_router_healthy_workers",
                "Workers currently healthy",
            )?,
            restarts: counter_vec(
                &registry,
                "wildreward_router_worker_restarts",
                "Spawned workers restarted after they died",
                &["worker"],
            )?,
            http: HttpMetrics::new(registry)?,
        })
    }
}
