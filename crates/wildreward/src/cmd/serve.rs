//! `wildreward serve`: the command line of the worker fleet and router (the logic is in
//! `wildreward-serve`).

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wildreward_serve::config::{parse_empty_history, parse_truncation};
use wildreward_serve::{
    DeviceSpec, HttpLimits, Listen, RouterConfig, WorkerConfig, WorkerLauncher,
};
use wildreward_types::exit::BadInput;

/// `wildreward serve` flags: with no role, spawn workers and a router in front of them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub role: Option<ServeRole>,
    /// Reward model: HF directory or GGUF file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Scoring workers to spawn.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Address the router binds (workers always bind 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Router port (0: any free port, printed on stdout).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// First worker port; worker i listens on this + i (0: any free ports).
    #[arg(long, default_value_t = 8004)]
    pub worker_port: u16,
    /// Device of every worker: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// GPUs to place workers on, one each (worker i on the i-th); overrides --device.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    #[command(flatten)]
    pub scoring: ScoringFlags,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub routing: RoutingFlags,
}

#[derive(Subcommand)]
pub enum ServeRole {
    /// One scoring worker.
    Worker(WorkerArgs),
    /// A router in front of workers started elsewhere.
    Router(RouterArgs),
}

/// `wildreward serve worker`.
#[derive(Args)]
pub struct WorkerArgs {
    /// Reward model: HF directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// Port to listen on (0: any free port, printed on stdout).
    #[arg(long)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Device: cpu or cuda:N (bf16 backbone on CUDA unless --dtype, rewards in f32).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub scoring: ScoringFlags,
    #[command(flatten)]
    pub http: HttpFlags,
    /// Stop (draining) when standard input closes: how a fleet stops the workers it spawned.
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// `wildreward serve router`.
#[derive(Args)]
pub struct RouterArgs {
    /// Worker base URLs, comma-separated (`http://host:port`; the reference's
    /// `http://host:port/get_reward` form is accepted too).
    #[arg(long, value_delimiter = ',', required = true)]
    pub worker_urls: Vec<String>,
    /// Port to listen on (0: any free port, printed on stdout).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[command(flatten)]
    pub http: HttpFlags,
    #[command(flatten)]
    pub routing: RoutingFlags,
}

/// How a worker tokenises, batches and reads its texts.
#[derive(Args, Clone)]
pub struct ScoringFlags {
    /// Token budget of one batch: real tokens on CPU (rows run packed), rows × longest row elsewhere
    /// [default: 8192 on CPU, 16384 on CUDA].
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Texts in one batch [default: 16 on CPU, 32 on CUDA].
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    /// Longest text in tokens.
    #[arg(long, default_value_t = 4096)]
    pub max_length: usize,
    /// Longer inputs: `middle` cuts them as training does (`/score` items lose history, then the
    /// query's middle; raw texts keep BOS and the template header, then their end), `left` keeps a
    /// raw text's end only, `right` its start (the reference), `error` refuses them with 422.
    #[arg(long, default_value = "middle")]
    pub truncation: String,
    /// Serve a checkpoint whose reward head is untrained (none, or a random one from `convert`):
    /// refused without it; with it, a warning and `"head_initialised": true` in /info and metrics.
    #[arg(long)]
    pub allow_untrained_head: bool,
    /// How /get_reward reads its queries: raw RM texts, or OpenRLHF prompt+response.
    #[arg(long, default_value = "raw")]
    pub query_format: String,
    /// Context section of templated texts without history: `training` ("No previous context.")
    /// or `inference` (empty, as the reference's DPO client sends it).
    #[arg(long, default_value = "training")]
    pub empty_history: String,
    /// Threads tokenising requests.
    #[arg(long, default_value_t = 2)]
    pub tokenization_workers: usize,
    /// Longest expected wait a request is admitted into (queued tokens × measured seconds per
    /// token); 429 with the seconds until it fits beyond [default: 4 on CPU, 2 on CUDA].
    #[arg(long)]
    pub max_queue_seconds: Option<f64>,
    /// How /classify and /pooling read their input: `chat` (a conversation rendered by a chat
    /// template, ending in the assistant turn to score, as verl sends it) or `raw` (WildReward texts).
    #[arg(long, default_value = "chat")]
    pub classify_input: String,
    /// What /classify's probs (and /pooling's data) hold: `probs` (K level probabilities, as vLLM)
    /// or `reward` (`[reward]`, where verl's reward loop reads `probs[-1]`).
    #[arg(long, default_value = "probs")]
    pub classify_output: String,
    /// Backbone precision: `auto` (bf16 on CUDA and on CPUs with AVX512_BF16 or AMX, else f32),
    /// `f32`, `bf16`, or `f16` (CUDA only, when asked). The head and the rewards are f32 whatever
    /// this says.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}

/// Auth and limits of a server's HTTP side.
#[derive(Args, Clone)]
pub struct HttpFlags {
    /// Bearer token required on every route but /health.
    #[arg(long, env = "WILDREWARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub payload_limit: usize,
    /// Most texts in one request [default: 1024 on a worker, 16384 on the router].
    #[arg(long)]
    pub max_client_batch: Option<usize>,
    /// Most texts in flight before 429 [default: 4096 on a worker, 65536 on the router].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Retry-After seconds sent with a 429 for texts in flight (a 429 for work says how long the
    /// backlog needs).
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Seconds a request's head, and then its body, may take to arrive (slow clients are cut off:
    /// the connection closed, or 408).
    #[arg(long, default_value_t = 30)]
    pub read_timeout: u64,
}

/// How the router spreads requests over workers.
#[derive(Args, Clone)]
pub struct RoutingFlags {
    /// Worker selection: round-robin or least-in-flight.
    #[arg(long, default_value = "round-robin")]
    pub policy: String,
    /// Tries of a request (or of one part of a split batch) across workers.
    #[arg(long, default_value_t = 4)]
    pub max_attempts: usize,
    /// Deadline of a whole request, in seconds.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// Deadline of one try on one worker, in seconds.
    #[arg(long, default_value_t = 300)]
    pub attempt_timeout: u64,
    /// Milliseconds between health checks of each worker.
    #[arg(long, default_value_t = 1000)]
    pub health_interval_ms: u64,
    /// Split a batch across workers into parts of at least this many texts (small, so a request
    /// of a few long texts is spread over idle workers instead of taking its whole service time on
    /// one: its latency, and so the admission bound, is what the split keeps down).
    #[arg(long, default_value_t = 4)]
    pub min_split: usize,
    /// Largest part sent to one worker (keep it within the workers' --max-client-batch).
    #[arg(long, default_value_t = 1024)]
    pub max_part: usize,
}

impl HttpFlags {
    fn limits(&self, defaults: HttpLimits) -> HttpLimits {
        HttpLimits {
            max_body_bytes: self.payload_limit,
            max_client_batch: self.max_client_batch.unwrap_or(defaults.max_client_batch),
            max_in_flight: self.max_in_flight.unwrap_or(defaults.max_in_flight),
            retry_after_s: self.retry_after,
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            read_timeout: Duration::from_secs(self.read_timeout),
        }
    }
}

impl RoutingFlags {
    fn config(&self, http: &HttpFlags) -> Result<RouterConfig, BadInput> {
        let defaults = RouterConfig::default();
        Ok(RouterConfig {
            policy: self.policy.parse()?,
            limits: http.limits(defaults.limits),
            request_timeout: Duration::from_secs(self.request_timeout),
            attempt_timeout: Duration::from_secs(self.attempt_timeout),
            max_attempts: self.max_attempts,
            health_interval: Duration::from_millis(self.health_interval_ms),
            min_split: self.min_split,
            max_part: self.max_part,
        })
    }
}

fn worker_config(
    model: PathBuf,
    device: &str,
    scoring: &ScoringFlags,
    http: &HttpFlags,
) -> Result<WorkerConfig, BadInput> {
    let device: DeviceSpec = device.parse()?;
    let mut cfg = WorkerConfig::new(model, device);
    if let Some(n) = scoring.max_batch_tokens {
        cfg.scorer.max_batch_tokens = n;
    }
    if let Some(n) = scoring.max_batch_size {
        cfg.scorer.max_batch_size = n;
    }
    cfg.scorer.max_length = scoring.max_length;
    cfg.scorer.truncation = parse_truncation(&scoring.truncation)?;
    cfg.query_format = scoring.query_format.parse()?;
    cfg.empty_history = parse_empty_history(&scoring.empty_history)?;
    cfg.tokenization_workers = scoring.tokenization_workers;
    cfg.classify_input = scoring.classify_input.parse()?;
    cfg.classify_output = scoring.classify_output.parse()?;
    cfg.allow_untrained_head = scoring.allow_untrained_head;
    cfg.precision = scoring.dtype.parse().map_err(BadInput)?;
    cfg.limits = http.limits(HttpLimits::default());
    if let Some(s) = scoring.max_queue_seconds {
        cfg.max_queue = Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                BadInput(format!(
                    "--max-queue-seconds {s}: expected a positive number of seconds"
                ))
            })?;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The HTTP limits a fleet gives the workers it spawns: the flags it was given, with the client
/// batch at least the largest part the router sends one worker (so a worker never answers 413
/// for what the router accepted) and the in-flight bound at least that.
fn spawned_worker_http(http: &HttpFlags, router: &RouterConfig) -> HttpFlags {
    let largest_part = router.limits.max_client_batch.min(router.max_part);
    let in_flight = http
        .max_in_flight
        .unwrap_or(HttpLimits::default().max_in_flight)
        .max(largest_part);
    HttpFlags {
        max_client_batch: Some(largest_part),
        max_in_flight: Some(in_flight),
        ..http.clone()
    }
}

fn existing(model: &Path) -> Result<(), BadInput> {
    if model.exists() {
        Ok(())
    } else {
        Err(BadInput(format!(
            "--model {}: no such file or directory",
            model.display()
        )))
    }
}

/// Runs `wildreward serve [worker|router]`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    match args.role {
        Some(ServeRole::Worker(w)) => {
            let cfg = worker_config(w.model, &w.device, &w.scoring, &w.http)?;
            existing(&cfg.model)?;
            let listen = Listen {
                host: w.host,
                port: w.port,
            };
            wildreward_serve::run_worker(cfg, listen, w.exit_on_stdin_eof)
        }
        Some(ServeRole::Router(r)) => {
            let cfg = r.routing.config(&r.http)?;
            let listen = Listen {
                host: r.host,
                port: r.port,
            };
            wildreward_serve::run_router(cfg, &r.worker_urls, listen)
        }
        None => run_fleet(args),
    }
}

/// `wildreward serve --workers N`: this binary, spawned N times as `serve worker`.
fn run_fleet(args: ServeArgs) -> anyhow::Result<()> {
    let model = args
        .model
        .clone()
        .ok_or_else(|| BadInput("wildreward serve needs --model".into()))?;
    existing(&model)?;
    if args.workers == 0 {
        return Err(BadInput("--workers must be at least 1".into()).into());
    }
    let devices: Vec<String> = if args.gpus.is_empty() {
        vec![args.device.clone(); args.workers]
    } else if args.gpus.len() < args.workers {
        return Err(BadInput(format!(
            "--gpus names {} GPUs for {} workers: give one per worker",
            args.gpus.len(),
            args.workers
        ))
        .into());
    } else {
        args.gpus.iter().map(|g| format!("cuda:{g}")).collect()
    };
    let cfg = args.routing.config(&args.http)?;
    cfg.validate()?;
    let worker_http = spawned_worker_http(&args.http, &cfg);
    // Check every worker's settings here, so a bad flag is one error rather than N crashed workers.
    for d in &devices {
        worker_config(model.clone(), d, &args.scoring, &worker_http)?;
    }
    let ports: Vec<u16> = (0..args.workers)
        .map(|i| match args.worker_port {
            0 => Ok(0),
            p => u16::try_from(usize::from(p) + i).map_err(|_| {
                BadInput(format!(
                    "--worker-port {p} + {} workers passes 65535",
                    args.workers
                ))
            }),
        })
        .collect::<Result<_, _>>()?;

    let mut env = Vec::new();
    if let Some(key) = args.http.api_key.clone() {
        env.push(("WILDREWARD_API_KEY".to_string(), key));
    }
    // CPU workers share the cores rather than each starting a thread per core.
    if args.gpus.is_empty()
        && args.device == "cpu"
        && std::env::var_os("RAYON_NUM_THREADS").is_none()
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        env.push((
            "RAYON_NUM_THREADS".to_string(),
            (cores / args.workers).max(1).to_string(),
        ));
    }
    let s = args.scoring.clone();
    let payload_limit = worker_http.payload_limit;
    let limit_flags: Vec<(&str, String)> = vec![
        (
            "--max-client-batch",
            worker_http.max_client_batch.unwrap_or_default().to_string(),
        ),
        (
            "--max-in-flight",
            worker_http.max_in_flight.unwrap_or_default().to_string(),
        ),
        ("--retry-after", worker_http.retry_after.to_string()),
        ("--read-timeout", worker_http.read_timeout.to_string()),
    ];
    let launcher = WorkerLauncher {
        program: std::env::current_exe()?,
        args: Box::new(move |i| {
            let mut a: Vec<String> = vec![
                "serve".into(),
                "worker".into(),
                "--model".into(),
                model.display().to_string(),
                "--port".into(),
                ports[i].to_string(),
                "--device".into(),
                devices[i].clone(),
                "--max-length".into(),
                s.max_length.to_string(),
                "--truncation".into(),
                s.truncation.clone(),
                "--query-format".into(),
                s.query_format.clone(),
                "--empty-history".into(),
                s.empty_history.clone(),
                "--tokenization-workers".into(),
                s.tokenization_workers.to_string(),
                "--classify-input".into(),
                s.classify_input.clone(),
                "--classify-output".into(),
                s.classify_output.clone(),
                "--dtype".into(),
                s.dtype.clone(),
                "--payload-limit".into(),
                payload_limit.to_string(),
                "--exit-on-stdin-eof".into(),
            ];
            for (flag, value) in [
                ("--max-batch-tokens", s.max_batch_tokens),
                ("--max-batch-size", s.max_batch_size),
            ] {
                if let Some(v) = value {
                    a.extend([flag.to_string(), v.to_string()]);
                }
            }
            if let Some(q) = s.max_queue_seconds {
                a.extend(["--max-queue-seconds".to_string(), q.to_string()]);
            }
            for (flag, value) in &limit_flags {
                a.extend([flag.to_string(), value.clone()]);
            }
            if s.allow_untrained_head {
                a.push("--allow-untrained-head".into());
            }
            a
        }),
        env,
    };
    let listen = Listen {
        host: args.host,
        port: args.port,
    };
    wildreward_serve::run_fleet(launcher, args.workers, cfg, listen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(max_client_batch: Option<usize>, max_in_flight: Option<usize>) -> HttpFlags {
        HttpFlags {
            api_key: None,
            payload_limit: 1 << 20,
            max_client_batch,
            max_in_flight,
            retry_after: 2,
            read_timeout: 30,
        }
    }

    #[test]
    fn spawned_workers_take_every_part_the_router_may_send_them() {
        let router = |f: &HttpFlags, max_part: usize| RouterConfig {
            max_part,
            limits: f.limits(RouterConfig::default().limits),
            ..RouterConfig::default()
        };
        // Defaults: the router splits into parts of at most --max-part 1024, the worker's default.
        let f = flags(None, None);
        let w = spawned_worker_http(&f, &router(&f, 1024));
        assert_eq!(
            (w.max_client_batch, w.max_in_flight),
            (Some(1024), Some(4096))
        );
        // A bigger --max-part raises the workers' bound with it (no 413 for an accepted part).
        let w = spawned_worker_http(&f, &router(&f, 8192));
        assert_eq!(
            (w.max_client_batch, w.max_in_flight),
            (Some(8192), Some(8192))
        );
        // Explicit limits are passed down as given.
        let f = flags(Some(8), Some(16));
        let w = spawned_worker_http(&f, &router(&f, 1024));
        assert_eq!(
            (w.max_client_batch, w.max_in_flight, w.retry_after),
            (Some(8), Some(16), 2)
        );
        let cfg = worker_config(
            PathBuf::from("m.gguf"),
            "cpu",
            &ScoringFlags {
                max_batch_tokens: None,
                max_batch_size: None,
                max_length: 64,
                truncation: "left".into(),
                query_format: "raw".into(),
                empty_history: "training".into(),
                tokenization_workers: 1,
                max_queue_seconds: Some(1.5),
                classify_input: "chat".into(),
                classify_output: "reward".into(),
                allow_untrained_head: true,
                dtype: "f32".into(),
            },
            &w,
        )
        .unwrap();
        assert_eq!(cfg.limits.max_client_batch, 8);
        assert_eq!(cfg.max_queue, Duration::from_millis(1500));
        assert!(cfg.allow_untrained_head);
        assert_eq!(cfg.precision, wildreward_model::Precision::F32);
    }
}
