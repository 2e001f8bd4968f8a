//! `wildfb collect`: the whole WildFB data pipeline, as five resumable steps.
//!
//! | step | reads | writes |
//! |---|---|---|
//! | `preprocess` | WildChat parquet | `instances.jsonl`: one instance per assistant turn a user answered |
//! | `classify` | `instances.jsonl` | `classified.jsonl`: the user's reaction as a raw category 1..5 |
//! | `hindsight` | `classified.jsonl` | `hindsight.jsonl`: neutral turns relabelled from later positives |
//! | `refusal` | `hindsight.jsonl` | `refusal.jsonl`: short refusals adjudicated |
//! | `split` | `refusal.jsonl` | `train.jsonl`, `test.jsonl`: filtered WildFB records |
//!
//! Each output is written under a temporary name and renamed into place; `stats.json` records each
//! finished step with a fingerprint of its settings, so a re-run skips finished steps and a killed run
//! resumes at the step it was in (with the LLM journal, `llm-journal.jsonl`, no answer is paid twice).
//!
//! Where this differs from the reference (THU-KEG/WildReward `collect_rm_data/`), on purpose:
//! - the classification prompt holds the feedback message's *content* (the reference pasted Python's
//!   repr of the whole message dict); prompts are our own wording with the same `[[n]]` contract, and
//!   only the first `[[d]]` after any `</think>` counts;
//! - an unparseable or failed LLM answer drops the turn, in classification and in refusal validation
//!   (the reference turned a failed refusal adjudication, `"NA"`, into label 1);
//! - hindsight mining relabels a turn at most once, from the nearest qualifying later turn (the
//!   reference appended duplicates carrying the farther turn's label), measures "within 2 turns" in
//!   turn numbers rather than positions among surviving turns, and keeps the turn's real history;
//! - the refusal keywords have the reference's missing comma restored (`"sorry"`, `"我无法"`) and match
//!   curly apostrophes; neutral turns are not adjudicated (their verdict could never be used);
//! - filters match phrases on word boundaries (not raw substrings: "drawback" is not "draw");
//! - the 4096-word context limit applies before classification, so over-long turns cost no call;
//! - the last assistant turn of a conversation that ends with a user message is an instance too;
//! - records are deduplicated by id and conversations by hash, and the split is seeded and by
//!   conversation (the reference shuffled without a seed, so one conversation could straddle both).

pub mod classify;
pub mod config;
pub mod filters;
pub mod hindsight;
pub mod io;
pub mod journal;
pub mod llm;
pub mod preprocess;
pub mod prompt;
pub mod records;
pub mod refusal;
pub mod rules;
pub mod split;
pub mod stats;
pub mod users;

use crate::embed::SentenceEmbedder;
use crate::error::{Error, Result};
use config::{fingerprint, CollectConfig};
use filters::Filters;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use journal::Journal;
use llm::{LlmClient, LlmSettings};
use prompt::Prompts;
use rules::Rules;
use stats::{RunStats, StepStats};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who classifies the users' reactions (and adjudicates refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotator {
    /// The original offline rules only (`rules.toml`).
    Rules,
    /// The `cues` rules only (`cues.toml`): abstentions are written as neutral and marked.
    Cues,
    /// The LLM only.
    Openai,
    /// The `cues` rules where they decide, the LLM for their abstentions (and for refusals).
    Cascade,
}

impl Annotator {
    /// The name used on the command line and in `stats.json`.
    pub fn name(self) -> &'static str {
        match self {
            Annotator::Rules => "rules",
            Annotator::Cues => "cues",
            Annotator::Openai => "openai",
            Annotator::Cascade => "cascade",
        }
    }

    /// Whether this annotator calls the LLM (and so needs an endpoint and a journal).
    pub fn uses_llm(self) -> bool {
        matches!(self, Annotator::Openai | Annotator::Cascade)
    }
}

/// The pipeline's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Parquet → instances.
    Preprocess,
    /// Instances → raw categories.
    Classify,
    /// Hindsight mining.
    Hindsight,
    /// Refusal validation.
    Refusal,
    /// Filters, labels, text, dedup, split.
    Split,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Preprocess,
        Step::Classify,
        Step::Hindsight,
        Step::Refusal,
        Step::Split,
    ];

    /// The step's name (`--step NAME`, keys of `stats.json`).
    pub fn name(self) -> &'static str {
        match self {
            Step::Preprocess => "preprocess",
            Step::Classify => "classify",
            Step::Hindsight => "hindsight",
            Step::Refusal => "refusal",
            Step::Split => "split",
        }
    }

    /// The files the step writes under `out`.
    pub fn outputs(self, out: &Path) -> Vec<PathBuf> {
        match self {
            Step::Preprocess => vec![out.join("instances.jsonl")],
            Step::Classify => vec![out.join("classified.jsonl")],
            Step::Hindsight => vec![out.join("hindsight.jsonl")],
            Step::Refusal => vec![out.join("refusal.jsonl")],
            Step::Split => vec![out.join("train.jsonl"), out.join("test.jsonl")],
        }
    }

    fn previous(self) -> Option<Step> {
        Step::ALL
            .iter()
            .position(|s| *s == self)
            .and_then(|i| i.checked_sub(1))
            .map(|i| Step::ALL[i])
    }
}

/// Everything one `wildfb collect` needs.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// A parquet file or a directory of them.
    pub input: PathBuf,
    /// The output directory.
    pub out: PathBuf,
    /// Who annotates.
    pub annotator: Annotator,
    /// Settings (with command-line overrides applied).
    pub config: CollectConfig,
    /// The MiniLM directory.
    pub embedder_dir: PathBuf,
    /// Run only this step (again, even if finished).
    pub step: Option<Step>,
    /// Hide progress bars.
    pub quiet: bool,
}

/// The LLM side of a run: a runtime and a client, built only for `openai` / `cascade`.
pub struct LlmRuntime {
    /// Drives the concurrent calls.
    pub runtime: tokio::runtime::Runtime,
    /// The client.
    pub client: Arc<LlmClient>,
    /// `max_tokens` of a classification call.
    pub feedback_max_tokens: u32,
    /// `max_tokens` of a refusal call.
    pub refusal_max_tokens: u32,
}

/// What the steps share.
pub struct StepEnv<'a> {
    /// Settings.
    pub config: &'a CollectConfig,
    /// The annotator.
    pub annotator: Annotator,
    /// The offline rules (also the refusal candidates' keywords).
    pub rules: &'a Rules,
    /// The `cues` annotator's rules (`cues` and `cascade`).
    pub cues: &'a Rules,
    /// The prompts.
    pub prompts: &'a Prompts,
    /// The output directory.
    pub out: &'a Path,
    llm: Option<LlmRuntime>,
}

impl StepEnv<'_> {
    /// The LLM runtime; an error when the annotator is `rules`.
    pub fn llm(&self) -> Result<&LlmRuntime> {
        self.llm.as_ref().ok_or_else(|| Error::Step {
            path: self.out.to_path_buf(),
            message: "this step needs the LLM annotator (--annotator openai or cascade)".into(),
        })
    }

    /// Opens the LLM answer journal of this output directory.
    pub fn journal(&self) -> Result<Journal> {
        Journal::open(&self.out.join("llm-journal.jsonl"))
    }
}

fn progress_bar(quiet: bool, name: &str, len: Option<u64>) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr_with_hz(4));
    let template = if len.is_some() {
        "{prefix:>10} {bar:30} {human_pos}/{human_len} {per_sec} ETA {eta}"
    } else {
        "{prefix:>10} {spinner} {human_pos} {per_sec} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn file_identity(files: &[PathBuf]) -> Result<String> {
    let mut parts = Vec::new();
    for f in files {
        let len = std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len();
        parts.push(format!("{}:{len}", f.display()));
    }
    Ok(parts.join("\n"))
}

/// Part of the preprocess fingerprint: how instances are given their user. An output directory made
/// before instances carried a user key reruns from `preprocess` (the LLM journal keeps answers paid).
const USER_KEY_VERSION: &str = "user: hashed_ip, else conversation";

/// The fingerprint of each step: its settings chained with the previous step's fingerprint.
fn fingerprints(opts: &CollectOptions, files: &[PathBuf]) -> Result<Vec<String>> {
    let c = &opts.config;
    let llm = opts.annotator.uses_llm();
    let a = &c.annotator;
    let pre = fingerprint([
        file_identity(files)?.as_str(),
        USER_KEY_VERSION,
        &c.preprocess.languages.join(","),
        &c.preprocess.min_messages.to_string(),
        &c.preprocess.max_context_words.to_string(),
    ]);
    let llm_part = |prompt: &str, max_tokens: u32| {
        if llm {
            format!("{}|{}|{}|{prompt}", a.model, a.temperature, max_tokens)
        } else {
            String::new()
        }
    };
    let cls = fingerprint([
        pre.as_str(),
        opts.annotator.name(),
        &c.rules.text,
        if opts.annotator == Annotator::Rules {
            ""
        } else {
            &c.cues.text
        },
        &llm_part(&c.feedback_prompt.text, a.feedback_max_tokens),
    ]);
    let hind = fingerprint([
        cls.as_str(),
        &format!("{:?}", c.hindsight),
        &opts.embedder_dir.display().to_string(),
    ]);
    let refu = fingerprint([
        hind.as_str(),
        &c.refusal.max_response_chars.to_string(),
        &llm_part(&c.refusal_prompt.text, a.refusal_max_tokens),
    ]);
    let split = fingerprint([refu.as_str(), &c.filters.text, &format!("{:?}", c.split)]);
    Ok(vec![pre, cls, hind, refu, split])
}

fn llm_runtime(opts: &CollectOptions) -> Result<LlmRuntime> {
    llm_runtime_of(&opts.config)
}

fn llm_runtime_of(config: &CollectConfig) -> Result<LlmRuntime> {
    let a = &config.annotator;
    let api_key = std::env::var(&a.api_key_env).ok().filter(|k| !k.is_empty());
    let settings = LlmSettings {
        api_base: a.api_base.clone(),
        model: a.model.clone(),
        api_key,
        temperature: a.temperature,
        concurrency: a.concurrency,
        requests_per_minute: a.requests_per_minute,
        timeout: Duration::from_secs_f64(a.timeout_secs),
        max_retries: a.max_retries,
        backoff_initial: Duration::from_millis(a.backoff_initial_ms),
        backoff_max: Duration::from_millis(a.backoff_max_ms),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Api {
            url: a.api_base.clone(),
            message: format!("cannot start the async runtime: {e}"),
        })?;
    // reqwest's client must be built inside the runtime it is used from.
    let client = runtime.block_on(async { LlmClient::new(settings) })?;
    Ok(LlmRuntime {
        runtime,
        client: Arc::new(client),
        feedback_max_tokens: a.feedback_max_tokens,
        refusal_max_tokens: a.refusal_max_tokens,
    })
}

fn settings_of(opts: &CollectOptions) -> std::collections::BTreeMap<String, serde_json::Value> {
    let c = &opts.config;
    let mut s = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: serde_json::Value| {
        s.insert(k.to_string(), v);
    };
    put("annotator", opts.annotator.name().into());
    put("config", c.source.display().to_string().into());
    put("languages", c.preprocess.languages.clone().into());
    put("seed", c.split.seed.into());
    put("test_count", c.split.test_count.into());
    put("embedder", opts.embedder_dir.display().to_string().into());
    if opts.annotator.uses_llm() {
        put("api_base", c.annotator.api_base.clone().into());
        put("model", c.annotator.model.clone().into());
        put("concurrency", c.annotator.concurrency.into());
    }
    s
}

/// Runs the pipeline (or one step of it) and returns the updated `stats.json`.
pub fn run(opts: &CollectOptions) -> Result<RunStats> {
    let cfg = &opts.config;
    cfg.validate()?;
    let files = preprocess::input_files(&opts.input)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let rules = Rules::from_config(&cfg.rules)?;
    let cues = Rules::from_config(&cfg.cues)?;
    let filters = Filters::from_config(&cfg.filters)?;
    let prompts = Prompts::new(&cfg.feedback_prompt, &cfg.refusal_prompt)?;
    let stats_path = opts.out.join("stats.json");
    let mut run_stats: RunStats = io::read_json_if_exists(&stats_path)?.unwrap_or_default();
    run_stats.inputs = files.iter().map(|f| f.display().to_string()).collect();
    run_stats.settings = settings_of(opts);
    let fps = fingerprints(opts, &files)?;
    let llm = if opts.annotator.uses_llm() {
        Some(llm_runtime(opts)?)
    } else {
        None
    };
    let env = StepEnv {
        config: cfg,
        annotator: opts.annotator,
        rules: &rules,
        cues: &cues,
        prompts: &prompts,
        out: &opts.out,
        llm,
    };
    let mut embedder: Option<SentenceEmbedder> = None;
    for (index, step) in Step::ALL.into_iter().enumerate() {
        if opts.step.is_some_and(|only| only != step) {
            continue;
        }
        let finished = run_stats
            .steps
            .get(step.name())
            .is_some_and(|s| s.fingerprint == fps[index])
            && step.outputs(&opts.out).iter().all(|p| p.exists());
        if finished && opts.step.is_none() {
            eprintln!("wildfb collect: {}: finished earlier, skipped", step.name());
            continue;
        }
        if let Some(prev) = step.previous() {
            let ready = run_stats
                .steps
                .get(prev.name())
                .is_some_and(|s| s.fingerprint == fps[index - 1]);
            let input = &prev.outputs(&opts.out)[0];
            if !ready || !input.exists() {
                return Err(Error::Step {
                    path: input.clone(),
                    message: format!(
                        "step `{}` needs the output of `{}` made with these settings; run `wildfb collect` without --step first",
                        step.name(),
                        prev.name()
                    ),
                });
            }
        }
        let total = match step.previous() {
            None => None,
            Some(prev) => run_stats.steps.get(prev.name()).map(|s| s.rows_out),
        };
        let bar = progress_bar(opts.quiet, step.name(), total);
        let start = Instant::now();
        let out = &opts.out;
        let input = |s: Step| s.outputs(out).remove(0);
        let mut s: StepStats = match step {
            Step::Preprocess => preprocess::run(&files, &cfg.preprocess, &input(step), &bar)?,
            Step::Classify => classify::run(&env, &input(Step::Preprocess), &input(step), &bar)?,
            Step::Hindsight => {
                let e = match embedder.take() {
                    Some(e) => e,
                    None => SentenceEmbedder::load(
                        &opts.embedder_dir,
                        cfg.hindsight.max_tokens,
                        cfg.hindsight.batch_size,
                    )?,
                };
                let s = hindsight::run(
                    &input(Step::Classify),
                    &input(step),
                    &cfg.hindsight,
                    &e,
                    &bar,
                )?;
                embedder = Some(e);
                s
            }
            Step::Refusal => refusal::run(&env, &input(Step::Hindsight), &input(step), &bar)?,
            Step::Split => {
                let [train, test] = [out.join("train.jsonl"), out.join("test.jsonl")];
                split::run(
                    &input(Step::Refusal),
                    &train,
                    &test,
                    &filters,
                    &cfg.split,
                    &bar,
                )?
            }
        };
        bar.finish_and_clear();
        s.fingerprint = fps[index].clone();
        s.seconds = start.elapsed().as_secs_f64();
        eprintln!(
            "wildfb collect: {}: {} in, {} out, dropped {:?}, {:.1}s",
            step.name(),
            s.rows_in,
            s.rows_out,
            s.drops,
            s.seconds
        );
        run_stats.steps.insert(step.name().to_string(), s);
        for later in &Step::ALL[index + 1..] {
            run_stats.steps.remove(later.name());
        }
        io::write_json_atomic(&stats_path, &run_stats)?;
    }
    Ok(run_stats)
}

/// Everything one `wildfb classify` needs: label a file of turns with one annotator, without the rest of
/// the pipeline (to measure an annotator with `wildfb agree`, or to label a sample).
#[derive(Debug, Clone)]
pub struct ClassifyOptions {
    /// JSONL of instances (`instances.jsonl`) or of items `{id, query, response, feedback}` (the dev
    /// set's `items.jsonl`; `history` optional).
    pub input: PathBuf,
    /// Output directory: `instances.jsonl`, `classified.jsonl`, `stats.json`, the LLM journal.
    pub out: PathBuf,
    /// Who annotates.
    pub annotator: Annotator,
    /// Settings (rules, prompts, the LLM endpoint).
    pub config: CollectConfig,
    /// Hide progress bars.
    pub quiet: bool,
}

/// A labelling sheet's item (the dev set's `items.jsonl`).
#[derive(serde::Deserialize)]
struct SheetItem {
    id: String,
    query: String,
    response: String,
    feedback: String,
    #[serde(default)]
    history: Vec<wildreward_types::Message>,
}

/// One line of a `wildfb classify` input: an instance (with its user, if it has one) if it has
/// `messages`, else a sheet item (which has no user).
fn turn_of_line(value: serde_json::Value) -> serde_json::Result<users::KeyedInstance> {
    use wildreward_types::{Instance, Message, Role};
    if value.get("messages").is_some() {
        return serde_json::from_value(value);
    }
    let item: SheetItem = serde_json::from_value(value)?;
    let instance = Instance {
        turn: wildreward_types::record::parse_instance_id(&item.id).map_or(0, |(_, t)| t),
        id: item.id,
        model: String::new(),
        history: item.history,
        messages: [
            Message::new(Role::User, item.query),
            Message::new(Role::Assistant, item.response),
        ],
        user_feedback: Message::new(Role::User, item.feedback),
        language: String::new(),
    };
    Ok(users::KeyedInstance {
        instance,
        user: users::UserTag::default(),
    })
}

/// Runs the classify step alone on `opts.input`; returns its statistics (also in `stats.json`).
pub fn classify_only(opts: &ClassifyOptions) -> Result<StepStats> {
    let cfg = &opts.config;
    cfg.validate()?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let instances = opts.out.join("instances.jsonl");
    let mut writer = io::AtomicWriter::create(&instances)?;
    let file = std::fs::File::open(&opts.input).map_err(|e| Error::io(&opts.input, e))?;
    for (i, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
        let line = line.map_err(|e| Error::io(&opts.input, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |e: serde_json::Error| Error::Json {
            path: opts.input.clone(),
            line: i + 1,
            column: e.column(),
            message: format!(
                "{e} (expected an instance with `messages`, or {{id, query, response, feedback}})"
            ),
        };
        let value: serde_json::Value = serde_json::from_str(&line).map_err(bad)?;
        writer.write_json(&turn_of_line(value).map_err(bad)?)?;
    }
    let total = writer.commit()?;
    let rules = Rules::from_config(&cfg.rules)?;
    let cues = Rules::from_config(&cfg.cues)?;
    let prompts = Prompts::new(&cfg.feedback_prompt, &cfg.refusal_prompt)?;
    let llm = if opts.annotator.uses_llm() {
        Some(llm_runtime_of(cfg)?)
    } else {
        None
    };
    let env = StepEnv {
        config: cfg,
        annotator: opts.annotator,
        rules: &rules,
        cues: &cues,
        prompts: &prompts,
        out: &opts.out,
        llm,
    };
    let bar = progress_bar(opts.quiet, "classify", Some(total));
    let start = Instant::now();
    let mut stats = classify::run(&env, &instances, &opts.out.join("classified.jsonl"), &bar)?;
    bar.finish_and_clear();
    stats.seconds = start.elapsed().as_secs_f64();
    stats.detail("annotator", opts.annotator.name());
    io::write_json_atomic(&opts.out.join("stats.json"), &stats)?;
    Ok(stats)
}
