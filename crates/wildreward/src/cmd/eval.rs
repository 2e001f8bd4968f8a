//! `wildreward eval`: the command line of the evaluator (the logic is in `wildreward-eval`).

use clap::Args;
use std::path::PathBuf;
use wildreward_eval::{cache, ClientOptions, EvalOptions, ScorerSpec};

/// Environment variable with the bearer token sent to `--endpoint`.
pub const API_KEY_ENV: &str = "WILDREWARD_API_KEY";

/// `wildreward eval` flags.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("scorer").required(true).args(["model", "endpoint"])))]
pub struct EvalArgs {
    /// Reward model: HF directory or GGUF file. Repeat it to evaluate several models in one pass
    /// (reports in OUT/<model directory name>/): the decoder blocks they share (copies of one
    /// backbone trained with the lower blocks frozen) run once for all of them.
    #[arg(long)]
    pub model: Vec<PathBuf>,
    /// A running scoring endpoint instead of a local model (its root or /score URL uses /score;
    /// a /get_reward URL uses that route, rewards only). A bearer token is read from
    /// $WILDREWARD_API_KEY.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// rm-bench, judgebench, hh (shipped slices, or NAME:<dir|file>), wildfb:<test.jsonl> or
    /// pairs:<file.jsonl>.
    #[arg(long)]
    pub bench: String,
    /// Output directory (report.json, report.md, plots).
    #[arg(long)]
    pub out: PathBuf,
    /// Evaluate at most N items (pairs, prompts or examples), spread evenly over the data.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Maximum tokens per scored input (longer ones are cut as training cuts them: history
    /// first, then the middle of the query).
    #[arg(long, default_value_t = 4096)]
    pub max_length: usize,
    /// Evaluate a local model whose reward head is untrained (none, or a random one from
    /// `convert`): refused without it; with it, a warning and a note in the report.
    #[arg(long)]
    pub allow_untrained_head: bool,
    /// Score cache directory [default: $WILDREWARD_CACHE, else ~/.cache/wildreward/scores].
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Score everything afresh and cache nothing.
    #[arg(long)]
    pub no_cache: bool,
}

/// Runs `wildreward eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let scorer = match (args.model.first(), args.endpoint.clone()) {
        (Some(model), _) => ScorerSpec::Model(model.clone()),
        (None, Some(url)) => ScorerSpec::Endpoint(url),
        (None, None) => anyhow::bail!("--model or --endpoint is required"),
    };
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.or_else(cache::default_cache_dir)
    };
    let models = args.model.clone();
    let opts = EvalOptions {
        scorer,
        bench: args.bench,
        out: args.out,
        limit: args.limit,
        max_length: args.max_length,
        allow_untrained_head: args.allow_untrained_head,
        cache_dir,
        client: ClientOptions {
            concurrency: 4,
            bearer_token: std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()),
            ..ClientOptions::default()
        },
    };
    if models.len() > 1 {
        for (label, report) in wildreward_eval::run_models(&opts, &models)? {
            summary(&report, &opts.out.join(label));
        }
        return Ok(());
    }
    let report = wildreward_eval::run(&opts)?;
    summary(&report, &opts.out);
    Ok(())
}

/// The one-line result on stderr.
fn summary(report: &wildreward_eval::Report, out: &std::path::Path) {
    eprintln!(
        "wildreward eval: {} accuracy {:.4} ({}, 95% CI {:.4}-{:.4}) over {} units; report in {}",
        report.bench,
        report.accuracy,
        report.accuracy_kind,
        report.accuracy_ci95[0],
        report.accuracy_ci95[1],
        report.units,
        out.join("report.md").display()
    );
}
