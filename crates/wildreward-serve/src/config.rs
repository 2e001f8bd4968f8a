//! Settings of the worker, the router and the fleet, with the parsers of the command-line values
//! they take (`--device`, `--query-format`, `--policy`). Bad values are [`BadInput`] (exit 65).

use crate::vllm::{ClassifyInput, ClassifyOutput};
use candle_core::Device;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use wildreward_model::{Precision, ScorerOptions, Truncation};
use wildreward_types::exit::BadInput;
use wildreward_types::EmptyHistory;

/// Where a worker runs its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU, f32.
    Cpu,
    /// CUDA GPU `N`, bf16 backbone unless `--dtype f16` (the reward head stays f32).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, BadInput> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| BadInput(format!("--device {s:?}: expected cpu or cuda:N"))),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device (a CUDA device needs the `cuda` feature and a GPU).
    pub fn open(self) -> Result<Device, BadInput> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| {
                BadInput(format!(
                    "--device cuda:{n}: {e} (CUDA needs a build with `--features cuda` and a GPU)"
                ))
            }),
        }
    }

    /// Batching defaults for this device. The CPU scorer packs rows without padding and runs a prefix
    /// shared by a batch's texts (the template header) once, so on CPU larger batches now help: on
    /// SmolLM2 with templated texts, batches of up to 16 rows / 8,192 tokens served 1.24x the texts/s of
    /// batches of 4 at a lower p99 (`scripts/bench/serve.sh`). A GPU wants larger batches still.
    pub fn default_scorer_options(self) -> ScorerOptions {
        match self {
            DeviceSpec::Cpu => ScorerOptions {
                max_batch_tokens: 8192,
                max_batch_size: 16,
                ..ScorerOptions::default()
            },
            DeviceSpec::Cuda(_) => ScorerOptions::default(),
        }
    }

    /// The default bound on a request's expected wait (`--max-queue-seconds`): a few seconds on a
    /// CPU, where one 16-text request of mid-length texts is itself about a second of work; less
    /// on a GPU, which clears its queue faster.
    pub fn default_max_queue(self) -> Duration {
        match self {
            DeviceSpec::Cpu => Duration::from_secs(4),
            DeviceSpec::Cuda(_) => Duration::from_secs(2),
        }
    }
}

/// How `/get_reward` reads its `query` texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryFormat {
    /// Texts already in the WildReward template, scored as sent (the reference's client).
    #[default]
    Raw,
    /// OpenRLHF's prompt + response with chat-template markup, `prompts` beside them: the server
    /// cuts the response after its prompt, strips the markup and applies the WildReward template.
    OpenRlhf,
}

impl FromStr for QueryFormat {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, BadInput> {
        match s {
            "raw" => Ok(QueryFormat::Raw),
            "openrlhf" => Ok(QueryFormat::OpenRlhf),
            _ => Err(BadInput(format!(
                "--query-format {s:?}: expected raw or openrlhf"
            ))),
        }
    }
}

impl QueryFormat {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            QueryFormat::Raw => "raw",
            QueryFormat::OpenRlhf => "openrlhf",
        }
    }
}

/// Parses `--truncation middle|left|right|error`.
pub fn parse_truncation(s: &str) -> Result<Truncation, BadInput> {
    match s {
        "middle" => Ok(Truncation::Middle),
        "left" => Ok(Truncation::Left),
        "right" => Ok(Truncation::Right),
        "error" => Ok(Truncation::Error),
        _ => Err(BadInput(format!(
            "--truncation {s:?}: expected middle, left, right or error"
        ))),
    }
}

/// The flag value of a truncation rule.
pub fn truncation_name(t: Truncation) -> &'static str {
    match t {
        Truncation::Middle => "middle",
        Truncation::Left => "left",
        Truncation::Right => "right",
        Truncation::Error => "error",
    }
}

/// Parses `--empty-history training|inference`.
pub fn parse_empty_history(s: &str) -> Result<EmptyHistory, BadInput> {
    match s {
        "training" => Ok(EmptyHistory::Training),
        "inference" => Ok(EmptyHistory::Inference),
        _ => Err(BadInput(format!(
            "--empty-history {s:?}: expected training or inference"
        ))),
    }
}

/// How the router picks a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The next healthy worker in turn.
    #[default]
    RoundRobin,
    /// The healthy worker with the fewest requests in flight (ties go round-robin).
    LeastInFlight,
}

impl FromStr for Policy {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, BadInput> {
        match s {
            "round-robin" => Ok(Policy::RoundRobin),
            "least-in-flight" => Ok(Policy::LeastInFlight),
            _ => Err(BadInput(format!(
                "--policy {s:?}: expected round-robin or least-in-flight"
            ))),
        }
    }
}

impl Policy {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::LeastInFlight => "least-in-flight",
        }
    }
}

/// Limits every server enforces on its HTTP side.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body in bytes (413 above).
    pub max_body_bytes: usize,
    /// Most texts in one request (413 above).
    pub max_client_batch: usize,
    /// Most texts admitted at once, queued or running (429 above): bounds memory under overload.
    pub max_in_flight: usize,
    /// `Retry-After` seconds sent with a 429.
    pub retry_after_s: u64,
    /// Bearer token required on every route but `/health`.
    pub api_key: Option<String>,
    /// How long a request's head, and then its body, may take to arrive (slow clients get their
    /// connection closed / a 408 after).
    pub read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_client_batch: 1024,
            max_in_flight: 4096,
            retry_after_s: 1,
            api_key: None,
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything a scoring worker needs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The reward model (HF directory or GGUF file).
    pub model: PathBuf,
    /// Where it runs.
    pub device: DeviceSpec,
    /// Length limit, truncation and batch budgets.
    pub scorer: ScorerOptions,
    /// How `/get_reward` reads its texts.
    pub query_format: QueryFormat,
    /// The Context section of templated texts with no history.
    pub empty_history: EmptyHistory,
    /// Threads that tokenise requests.
    pub tokenization_workers: usize,
    /// HTTP limits and auth.
    pub limits: HttpLimits,
    /// Longest expected wait (queued tokens × measured seconds per token) a request is admitted
    /// into; 429 with the seconds until it fits beyond (`--max-queue-seconds`).
    pub max_queue: Duration,
    /// How `/classify` and `/pooling` read their texts.
    pub classify_input: ClassifyInput,
    /// What `/classify` and `/pooling` report per text.
    pub classify_output: ClassifyOutput,
    /// Serve a checkpoint whose head is a seeded random one (refused otherwise).
    pub allow_untrained_head: bool,
    /// Backbone precision (`--dtype`): the model crate's one rule, bf16 on CUDA unless asked.
    pub precision: Precision,
}

impl WorkerConfig {
    /// A configuration with this device's batching defaults.
    pub fn new(model: PathBuf, device: DeviceSpec) -> Self {
        Self {
            model,
            device,
            scorer: device.default_scorer_options(),
            query_format: QueryFormat::Raw,
            empty_history: EmptyHistory::Training,
            tokenization_workers: 2,
            limits: HttpLimits::default(),
            max_queue: device.default_max_queue(),
            classify_input: ClassifyInput::default(),
            classify_output: ClassifyOutput::default(),
            allow_untrained_head: false,
            precision: Precision::Auto,
        }
    }

    /// Refuses settings that cannot work (zero budgets, an in-flight bound below the client batch).
    pub fn validate(&self) -> Result<(), BadInput> {
        if self.device == DeviceSpec::Cpu {
            self.precision.check(&Device::Cpu).map_err(BadInput)?;
        }
        let s = &self.scorer;
        if s.max_length == 0 || s.max_batch_tokens == 0 || s.max_batch_size == 0 {
            return Err(BadInput(
                "--max-length, --max-batch-tokens and --max-batch-size must be at least 1".into(),
            ));
        }
        if self.tokenization_workers == 0 {
            return Err(BadInput("--tokenization-workers must be at least 1".into()));
        }
        if self.max_queue.is_zero() {
            return Err(BadInput("--max-queue-seconds must be positive".into()));
        }
        self.limits.validate()
    }
}

impl HttpLimits {
    /// Refuses limits that would reject every request.
    pub fn validate(&self) -> Result<(), BadInput> {
        if self.read_timeout.is_zero() {
            return Err(BadInput("--read-timeout must be positive".into()));
        }
        if self.max_body_bytes == 0 || self.max_client_batch == 0 {
            return Err(BadInput(
                "--payload-limit and --max-client-batch must be at least 1".into(),
            ));
        }
        if self.max_in_flight < self.max_client_batch {
            return Err(BadInput(format!(
                "--max-in-flight ({}) must be at least --max-client-batch ({}), or a full batch could never be admitted",
                self.max_in_flight, self.max_client_batch
            )));
        }
        Ok(())
    }
}

/// Everything the router needs besides its workers.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How a worker is picked.
    pub policy: Policy,
    /// HTTP limits and auth (the same bearer token is sent to the workers).
    pub limits: HttpLimits,
    /// Deadline of a whole client request (504 after).
    pub request_timeout: Duration,
    /// Deadline of one try on one worker (then the next worker is tried).
    pub attempt_timeout: Duration,
    /// Tries of one request (or one split of it) across workers.
    pub max_attempts: usize,
    /// How often each worker's `/health` is polled.
    pub health_interval: Duration,
    /// A batch is split across workers into parts of at least this many texts.
    pub min_split: usize,
    /// Largest part sent to one worker (within the workers' `max_client_batch`).
    pub max_part: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::RoundRobin,
            limits: HttpLimits {
                max_client_batch: 16_384,
                max_in_flight: 65_536,
                ..HttpLimits::default()
            },
            request_timeout: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(300),
            max_attempts: 4,
            health_interval: Duration::from_secs(1),
            min_split: 4,
            max_part: 1024,
        }
    }
}

impl RouterConfig {
    /// Refuses settings that cannot work.
    pub fn validate(&self) -> Result<(), BadInput> {
        if self.max_attempts == 0 || self.min_split == 0 || self.max_part == 0 {
            return Err(BadInput(
                "--max-attempts, --min-split and --max-part must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero()
            || self.attempt_timeout.is_zero()
            || self.health_interval.is_zero()
        {
            return Err(BadInput("timeouts and intervals must be positive".into()));
        }
        self.limits.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_parse_and_bad_ones_are_named() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        let e = "gpu".parse::<DeviceSpec>().unwrap_err();
        assert!(e.0.contains("--device"), "{e}");
        assert_eq!(
            "openrlhf".parse::<QueryFormat>().unwrap(),
            QueryFormat::OpenRlhf
        );
        assert!("json".parse::<QueryFormat>().is_err());
        assert_eq!(
            "least-in-flight".parse::<Policy>().unwrap(),
            Policy::LeastInFlight
        );
        assert!(parse_truncation("centre").is_err());
        assert_eq!(parse_truncation("middle").unwrap(), Truncation::Middle);
        assert_eq!(parse_truncation("error").unwrap(), Truncation::Error);
    }

    #[test]
    fn cuda_is_refused_clearly_without_the_feature() {
        if cfg!(not(feature = "cuda")) {
            let e = DeviceSpec::Cuda(0).open().unwrap_err();
            assert!(e.0.contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn limits_that_reject_everything_are_refused() {
        let limits = HttpLimits {
            max_in_flight: 4,
            max_client_batch: 8,
            ..HttpLimits::default()
        };
        assert!(limits.validate().is_err());
        assert!(RouterConfig::default().validate().is_ok());
    }
}
