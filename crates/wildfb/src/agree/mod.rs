//! `wildfb agree`: how well an annotator's raw labels (1..5) agree with people's.
//!
//! Gold and predicted labels are JSON Lines joined by a key (`id` by default, or `n`). A gold line is
//! `{"id": …, "label": 1..5}`; a predicted line is the same, or a `classified.jsonl` record of
//! `wildfb collect` / `wildfb classify` (where `"abstained": true` marks an abstention), and
//! `"label": null` is an abstention too. The report gives, side by side:
//! - the annotator on the items it decided (its precision where it speaks: what `cascade` trusts),
//! - the annotator used alone, abstentions read as neutral (what `collect --annotator cues` trains on),
//! - the always-neutral baseline (the majority class) on the same items,
//!
//! and writes `agreement.json` and a PNG confusion matrix.

pub mod metrics;
mod plot;

use crate::error::{Error, Result};
use metrics::{Confusion, Scores};
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Which field joins gold and predicted lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKey {
    /// The instance id (`<conversation hash>_turn<k>`).
    Id,
    /// The item number of a labelling sheet (the dev set's `n`).
    N,
}

impl JoinKey {
    fn field(self) -> &'static str {
        match self {
            JoinKey::Id => "id",
            JoinKey::N => "n",
        }
    }
}

/// What `wildfb agree` needs.
#[derive(Debug, Clone)]
pub struct AgreeOptions {
    /// People's labels.
    pub gold: PathBuf,
    /// The annotator's labels: a JSONL file, or a directory holding `classified.jsonl`.
    pub pred: PathBuf,
    /// Where `agreement.json` and `agreement.png` go.
    pub out: PathBuf,
    /// The join field.
    pub key: JoinKey,
    /// Count gold items the annotator has no line for as not covered, instead of failing.
    pub allow_missing: bool,
}

/// One label read from a file: its key, its category (`None`: abstained) and its line.
#[derive(Debug, Clone, PartialEq)]
struct Label {
    key: String,
    label: Option<u8>,
    line: usize,
}

fn bad(path: &Path, line: usize, message: String) -> Error {
    Error::Labels {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads one label file; `abstentions` says whether `null` / `"abstained": true` are allowed.
fn read_labels(path: &Path, key: JoinKey, abstentions: bool) -> Result<Vec<Label>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            line: n,
            column: e.column(),
            message: e.to_string(),
        })?;
        let field = key.field();
        let k = match value.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            _ => {
                return Err(bad(
                    path,
                    n,
                    format!("no `{field}` (a string or number) to join on"),
                ))
            }
        };
        let abstained = value.get("abstained").and_then(serde_json::Value::as_bool) == Some(true);
        let label = match value.get("label") {
            None => return Err(bad(path, n, "no `label`".into())),
            Some(serde_json::Value::Null) if abstentions => None,
            Some(v) => match v.as_u64() {
                Some(x @ 1..=5) => (!(abstentions && abstained)).then_some(x as u8),
                _ => {
                    return Err(bad(
                        path,
                        n,
                        format!("`label` must be an integer 1..5 (the raw category), found {v}"),
                    ))
                }
            },
        };
        if let Some(first) = seen.insert(k.clone(), n) {
            return Err(bad(
                path,
                n,
                format!("duplicate {field} {k:?} (first on line {first})"),
            ));
        }
        out.push(Label {
            key: k,
            label,
            line: n,
        });
    }
    Ok(out)
}

/// The predicted-labels file for `pred`: the file itself, or `classified.jsonl` in a directory.
fn prediction_file(pred: &Path) -> Result<PathBuf> {
    if pred.is_dir() {
        let file = pred.join("classified.jsonl");
        if file.exists() {
            Ok(file)
        } else {
            Err(Error::Step {
                path: pred.to_path_buf(),
                message: "no classified.jsonl here (the output of `wildfb classify` or of collect's classify step)".into(),
            })
        }
    } else {
        Ok(pred.to_path_buf())
    }
}

/// The whole comparison, as written to `agreement.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// The gold file.
    pub gold: String,
    /// The predicted-labels file.
    pub pred: String,
    /// The join field.
    pub key: String,
    /// Gold items.
    pub items: u64,
    /// Gold items the annotator decided.
    pub decided: u64,
    /// Gold items it abstained on.
    pub abstained: u64,
    /// Gold items it has no line for (only with `--allow-missing`).
    pub missing: u64,
    /// `decided / items`.
    pub coverage: f64,
    /// Predicted lines with no gold label (not compared).
    pub unmatched_predictions: u64,
    /// The annotator on the items it decided.
    pub decided_only: Scores,
    /// The annotator on every gold item, abstentions and missing items read as neutral.
    pub abstain_as_neutral: Scores,
    /// Always neutral (3) on every gold item.
    pub always_neutral: Scores,
}

/// Joins the two files and computes every figure.
pub fn compare(opts: &AgreeOptions) -> Result<Agreement> {
    let pred_path = prediction_file(&opts.pred)?;
    let gold = read_labels(&opts.gold, opts.key, false)?;
    let pred = read_labels(&pred_path, opts.key, true)?;
    let by_key: HashMap<&str, Option<u8>> =
        pred.iter().map(|l| (l.key.as_str(), l.label)).collect();
    let (mut decided, mut alone, mut baseline) = (Vec::new(), Vec::new(), Vec::new());
    let (mut abstained, mut missing) = (0u64, 0u64);
    for g in &gold {
        let Some(gl) = g.label else { continue };
        baseline.push((gl, 3));
        match by_key.get(g.key.as_str()) {
            Some(Some(p)) => {
                decided.push((gl, *p));
                alone.push((gl, *p));
            }
            Some(None) => {
                abstained += 1;
                alone.push((gl, 3));
            }
            None if opts.allow_missing => {
                missing += 1;
                alone.push((gl, 3));
            }
            None => {
                return Err(bad(
                    &opts.gold,
                    g.line,
                    format!(
                    "{} {:?} has no label in {} (pass --allow-missing to count it as not covered)",
                    opts.key.field(),
                    g.key,
                    pred_path.display()
                ),
                ))
            }
        }
    }
    let gold_keys: std::collections::HashSet<&str> = gold.iter().map(|l| l.key.as_str()).collect();
    let unmatched = pred
        .iter()
        .filter(|l| !gold_keys.contains(l.key.as_str()))
        .count() as u64;
    let items = gold.len() as u64;
    Ok(Agreement {
        gold: opts.gold.display().to_string(),
        pred: pred_path.display().to_string(),
        key: opts.key.field().to_string(),
        items,
        decided: decided.len() as u64,
        abstained,
        missing,
        coverage: if items > 0 {
            decided.len() as f64 / items as f64
        } else {
            0.0
        },
        unmatched_predictions: unmatched,
        decided_only: Scores::of(Confusion::from_pairs(decided)),
        abstain_as_neutral: Scores::of(Confusion::from_pairs(alone)),
        always_neutral: Scores::of(Confusion::from_pairs(baseline)),
    })
}

/// Runs the comparison, writes `agreement.json` and `agreement.png` under `opts.out`, and returns the
/// report with its Markdown rendering.
pub fn run(opts: &AgreeOptions) -> Result<(Agreement, String)> {
    let report = compare(opts)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    crate::collect::io::write_json_atomic(&opts.out.join("agreement.json"), &report)?;
    let png = opts.out.join("agreement.png");
    plot::confusion_png(
        &report.decided_only,
        &report.abstain_as_neutral,
        report.coverage,
        &png,
    )
    .map_err(|message| Error::Step {
        path: png.clone(),
        message,
    })?;
    let text = markdown(&report);
    std::fs::write(opts.out.join("agreement.md"), &text)
        .map_err(|e| Error::io(opts.out.join("agreement.md"), e))?;
    Ok((report, text))
}

/// One cell of the summary table: a figure of one view, formatted.
type ScoreCell = fn(&Scores) -> String;

fn fmt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

/// The report as Markdown: the three columns side by side, per-class F1, and the confusion matrix.
pub fn markdown(r: &Agreement) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let cols = [
        ("decided only", &r.decided_only),
        ("abstain → 3", &r.abstain_as_neutral),
        ("always 3", &r.always_neutral),
    ];
    let _ = writeln!(
        s,
        "gold {} · pred {} · {} items, {} decided ({:.1} %), {} abstained, {} missing\n",
        r.gold,
        r.pred,
        r.items,
        r.decided,
        100.0 * r.coverage,
        r.abstained,
        r.missing
    );
    let _ = writeln!(s, "| | {} | {} | {} |", cols[0].0, cols[1].0, cols[2].0);
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let rows: [(&str, ScoreCell); 6] = [
        ("items", |x| x.n.to_string()),
        ("accuracy", |x| fmt(x.accuracy)),
        ("Cohen's κ", |x| fmt(x.kappa)),
        ("κ, linear weights", |x| fmt(x.kappa_linear)),
        ("macro F1", |x| fmt(x.macro_f1)),
        ("precision of non-neutral labels", |x| {
            format!(
                "{} (n={})",
                fmt(x.non_neutral_precision),
                x.non_neutral_predicted
            )
        }),
    ];
    for (name, f) in rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            f(cols[0].1),
            f(cols[1].1),
            f(cols[2].1)
        );
    }
    let _ = writeln!(
        s,
        "\nper class (abstain → 3): precision / recall / F1, gold and predicted counts\n"
    );
    let _ = writeln!(s, "| class | precision | recall | F1 | gold | predicted |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for c in &r.abstain_as_neutral.per_class {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            c.class,
            fmt(c.precision),
            fmt(c.recall),
            fmt(c.f1),
            c.gold,
            c.predicted
        );
    }
    let _ = writeln!(
        s,
        "\nconfusion (rows gold, columns predicted; decided items only)\n"
    );
    let _ = writeln!(s, "| gold \\ pred | 1 | 2 | 3 | 4 | 5 |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for (i, row) in r.decided_only.confusion.counts.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        let _ = writeln!(s, "| {} | {} |", i + 1, cells.join(" | "));
    }
    s
}
