//! `wildreward serve`: the command line of the worker fleet and router (the logic is in
//! `wildreward-serve`).

use clap::{Args, Subcommand};
use std::path::PathBuf;
use wildreward_types::exit::StageNotBuilt;

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
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Router port.
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// First worker port.
    #[arg(long, default_value_t = 8004)]
    pub worker_port: u16,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// GPUs to place workers on, one each.
    #[arg(long, value_delimiter = ',')]
    pub gpus: Vec<u32>,
    /// Bearer token required on every route but /health.
    #[arg(long, env = "WILDREWARD_API_KEY")]
    pub api_key: Option<String>,
    /// Token budget of one batch.
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Texts in one batch.
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    /// How /get_reward reads its queries: raw RM texts, or OpenRLHF prompt+response.
    #[arg(long, default_value = "raw")]
    pub query_format: String,
}

#[derive(Subcommand)]
pub enum ServeRole {
    /// One scoring worker.
    Worker {
        /// Reward model: HF directory or GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// Port to listen on.
        #[arg(long)]
        port: u16,
    },
    /// A router in front of workers started elsewhere.
    Router {
        /// Worker base URLs, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        worker_urls: Vec<String>,
        /// Port to listen on.
        #[arg(long, default_value_t = 9000)]
        port: u16,
    },
}

/// Runs `wildreward serve [worker|router]`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (command, title) = match args.role {
        Some(ServeRole::Worker { .. }) => ("wildreward serve worker", "the scoring worker fleet"),
        Some(ServeRole::Router { .. }) => ("wildreward serve router", "the failover router"),
        None => ("wildreward serve", "the scoring worker fleet and router"),
    };
    Err(StageNotBuilt {
        command,
        issue: 6,
        title,
    }
    .into())
}
