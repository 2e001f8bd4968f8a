//! `wildreward eval`: makes the paper's quality claims checkable for any model we train or load —
//! pairwise accuracy on RM-Bench (easy / normal / hard), JudgeBench and HH-RLHF (or any pairs file),
//! the calibration curve (accuracy of pairs whose reward gap is at least t), ECE and a reliability
//! diagram on labelled WildFB data, and cross-sample consistency (ROC-AUC of raw rewards pooled
//! across prompts). Each response is scored pointwise with the shared RM template.
//!
//! Layout: [`bench`] reads benchmark files into candidates and units; [`scoring`] scores them with a
//! local [`wildreward_model::Scorer`] or through a scoring endpoint ([`wildreward_client`]), with a
//! [`cache`] keyed by model and text hash; [`metrics`] holds the formulas; [`report`] turns scores
//! into `report.json`, [`markdown`] into `report.md`, [`plots`] into PNGs. [`run`] does it all;
//! [`run_models`] does it for several local models at once, running the blocks they share once
//! ([`together`]).
//!
//! Dependencies and why: `wildreward-model` (local scoring), `wildreward-client` (endpoint scoring),
//! `serde`/`serde_json` (files and report), `flate2` (gzip benchmark files), `sha2` (cache keys),
//! `rand` (seeded bootstrap), `indicatif` (progress bar), `plotters` + `dejavu` (PNG plots with an
//! embedded font, no system font libraries), `anyhow`/`thiserror` (errors).

pub mod bench;
pub mod cache;
pub mod markdown;
pub mod metrics;
pub mod plots;
pub mod report;
pub mod scoring;
pub mod together;

use std::path::{Path, PathBuf};
use wildreward_types::exit::BadInput;

pub use report::Report;
pub use scoring::ScorerSpec;
pub use wildreward_client::ClientOptions;

/// Options of one evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// What scores.
    pub scorer: ScorerSpec,
    /// The `--bench` value (see [`bench::load`]).
    pub bench: String,
    /// Output directory.
    pub out: PathBuf,
    /// Evaluate at most this many units, spread evenly over the data.
    pub limit: Option<usize>,
    /// Longest scored input in tokens (local models; longer ones are cut as training cuts them).
    pub max_length: usize,
    /// Score a local model whose head is untrained (refused otherwise).
    pub allow_untrained_head: bool,
    /// Score cache directory (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// How an endpoint is called (chunks, concurrency, retries, bearer token).
    pub client: ClientOptions,
}

/// Loads the benchmark, scores it, and writes `report.json`, `report.md` and the plots into
/// `opts.out`.
pub fn run(opts: &EvalOptions) -> anyhow::Result<Report> {
    let dataset = load_dataset(opts)?;
    let mut source = open_source(opts, &opts.scorer)?;
    evaluate(&dataset, &mut source, opts, &opts.out)
}

/// [`run`] for several local models on one benchmark: each model's report goes to
/// `opts.out/<label>` (the model directory's name, or a GGUF file's stem; labels must differ), and
/// the texts are scored in one pass in which the blocks the models share run once
/// ([`together::score_together`]). `opts.scorer` is ignored.
pub fn run_models(opts: &EvalOptions, models: &[PathBuf]) -> anyhow::Result<Vec<(String, Report)>> {
    let labels = model_labels(models)?;
    let dataset = load_dataset(opts)?;
    let mut sources = models
        .iter()
        .map(|m| open_source(opts, &ScorerSpec::Model(m.clone())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let note = together::score_together(&mut sources, &dataset.candidates)?;
    let mut reports = Vec::with_capacity(models.len());
    for (label, mut source) in labels.into_iter().zip(sources) {
        if let Some(note) = &note {
            source.notes.push(note.clone());
        }
        let report = evaluate(&dataset, &mut source, opts, &opts.out.join(&label))?;
        reports.push((label, report));
    }
    Ok(reports)
}

/// Each model's label: its directory's name or a GGUF file's stem; an error when two coincide.
fn model_labels(models: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut labels: Vec<String> = Vec::with_capacity(models.len());
    for m in models {
        let name = if m.is_dir() {
            m.file_name()
        } else {
            m.file_stem()
        };
        let label = name
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .ok_or_else(|| BadInput(format!("{}: cannot name a report after it", m.display())))?;
        if labels.contains(&label) {
            return Err(BadInput(format!(
                "two models are named {label}: their reports would share a directory"
            ))
            .into());
        }
        labels.push(label);
    }
    Ok(labels)
}

/// The benchmark, cut to `opts.limit` units.
fn load_dataset(opts: &EvalOptions) -> anyhow::Result<bench::Dataset> {
    let mut dataset = bench::load(&opts.bench)?;
    if let Some(limit) = opts.limit {
        if limit == 0 {
            return Err(BadInput("--limit must be at least 1".into()).into());
        }
        dataset.limit(limit);
    }
    Ok(dataset)
}

fn open_source(opts: &EvalOptions, spec: &ScorerSpec) -> anyhow::Result<scoring::ScoreSource> {
    scoring::ScoreSource::open(
        spec,
        opts.max_length,
        opts.cache_dir.as_deref(),
        &opts.client,
        opts.allow_untrained_head,
    )
}

/// Scores `dataset` with `source` (what is not known yet) and writes the report into `out`.
fn evaluate(
    dataset: &bench::Dataset,
    source: &mut scoring::ScoreSource,
    opts: &EvalOptions,
    out: &Path,
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    eprintln!(
        "wildreward eval: {}: {} units, {} responses to score",
        dataset.name,
        dataset.units(),
        dataset.candidates.len()
    );
    let (scores, stats) = source.score(&dataset.candidates)?;
    let base = Report {
        bench: String::new(),
        scorer: source.description.clone(),
        files: Vec::new(),
        max_length: opts.max_length,
        accuracy_kind: String::new(),
        accuracy: 0.0,
        accuracy_ci95: [0.0, 0.0],
        macro_accuracy: None,
        units: 0,
        dropped: 0,
        subsets: Default::default(),
        sources: Default::default(),
        rm_bench: None,
        threshold_curve: Vec::new(),
        consistency_auc: None,
        calibration: None,
        scoring: stats,
        plots: Vec::new(),
        notes: source.notes.clone(),
    };
    let mut report = report::compute(dataset, &scores, base)?;
    if report.dropped > 0 {
        let note = format!(
            "{} of {} units dropped: the endpoint failed to score one of their responses",
            report.dropped,
            report.dropped + report.units
        );
        eprintln!("wildreward eval: {note}");
        report.notes.push(note);
    }
    report.plots = plots::write_all(&report, out)?;
    write_atomic(
        &out.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    write_atomic(&out.join("report.md"), &markdown::render(&report))?;
    Ok(report)
}

/// Writes through a temporary name and renames, so a half-written report is never mistaken for one.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}
