//! `wildreward score`: JSONL in, JSONL out with `reward` and `probs` added to each line.
//!
//! Each input line holds either `text` (scored as it is) or `messages` ending with the assistant's
//! response after a user query (plus optional `history`, and any earlier messages count as history);
//! those are encoded by the training encoder ([`wildreward_model::TurnEncoder`]): the same template
//! and, when over-long, the same cuts as training (history first, then the query's middle).

use crate::BadInput;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wildreward_model::{LoadOptions, Precision, RewardModel, Scorer, ScorerOptions};
use wildreward_serve::config::DeviceSpec;
use wildreward_types::{build_text, EmptyHistory, Message, Role};

/// Options of a scoring run.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// The reward model.
    pub model: PathBuf,
    /// Input JSONL.
    pub input: PathBuf,
    /// Output JSONL (stdout when `None`).
    pub output: Option<PathBuf>,
    /// Longest input in tokens.
    pub max_length: usize,
    /// Context placeholder for empty histories.
    pub empty_history: EmptyHistory,
    /// Score a GGUF straight from its quantized weights ([`LoadOptions::quantized`]).
    pub quantized: bool,
    /// Where the model runs.
    pub device: DeviceSpec,
    /// Backbone precision (the model crate's one rule: bf16 on CUDA unless asked).
    pub precision: Precision,
    /// Where to write the JSON run report, if anywhere.
    pub report: Option<PathBuf>,
}

/// What a scoring run did, written by `--report` (what the GPU check and benchmarks read).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreReport {
    /// Lines scored.
    pub texts: usize,
    /// Token ids scored (after truncation).
    pub tokens: usize,
    /// Lines cut to `--max-length`.
    pub truncated: usize,
    /// Seconds to load the model.
    pub load_seconds: f64,
    /// Seconds of encoding and scoring (no loading, no writing).
    pub score_seconds: f64,
    /// `texts / score_seconds`.
    pub texts_per_s: f64,
    /// `tokens / score_seconds`.
    pub tokens_per_s: f64,
    /// Mean reward over the lines.
    pub mean_reward: f64,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The backbone dtype used.
    pub dtype: String,
    /// The product the projections ran (`f32`, `avx512bf16`, …; the dtype on CUDA).
    pub matmul: String,
}

/// What one input line asks to score.
#[derive(Debug, Clone, PartialEq)]
pub enum LineInput {
    /// `text`: a ready-made RM text, scored as it is (cut in the middle when over-long, keeping
    /// BOS and the template header).
    Text(String),
    /// `messages` (+ `history`): a turn, encoded exactly as training encodes it.
    Turn {
        /// Messages before the query (`history`, then any earlier `messages`).
        history: Vec<Message>,
        /// The last user message.
        query: String,
        /// The assistant's response to it.
        response: String,
    },
}

impl LineInput {
    /// The RM text (the template applied to a turn).
    pub fn text(&self, empty: EmptyHistory) -> String {
        match self {
            LineInput::Text(t) => t.clone(),
            LineInput::Turn {
                history,
                query,
                response,
            } => build_text(history, query, response, empty),
        }
    }
}

/// What one input line holds.
pub fn input_of(line: &Map<String, Value>) -> Result<LineInput, String> {
    if let Some(t) = line.get("text") {
        return t
            .as_str()
            .map(|t| LineInput::Text(t.to_string()))
            .ok_or_else(|| "`text` is not a string".to_string());
    }
    let messages: Vec<Message> = match line.get("messages") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|e| format!("`messages`: {e}"))?,
        None => return Err("neither `text` nor `messages`".into()),
    };
    let mut history: Vec<Message> = match line.get("history") {
        Some(h) => serde_json::from_value(h.clone()).map_err(|e| format!("`history`: {e}"))?,
        None => vec![],
    };
    let n = messages.len();
    if n < 2 || messages[n - 1].role != Role::Assistant || messages[n - 2].role != Role::User {
        return Err("`messages` must end with a user query and the assistant's response".into());
    }
    history.extend_from_slice(&messages[..n - 2]);
    Ok(LineInput::Turn {
        history,
        query: messages[n - 2].content.clone(),
        response: messages[n - 1].content.clone(),
    })
}

/// One input line: its line number, its JSON object and what it asks to score.
type InputLine = (usize, Map<String, Value>, LineInput);

/// Reads and validates every line first (nothing is scored if one is bad).
fn read_lines(path: &Path) -> Result<Vec<InputLine>, BadInput> {
    let text =
        std::fs::read_to_string(path).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| BadInput(format!("{}:{}: {m}", path.display(), i + 1));
        let obj: Map<String, Value> = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let input = input_of(&obj).map_err(at)?;
        if input == LineInput::Text(String::new()) {
            return Err(at("empty text".into()));
        }
        out.push((i + 1, obj, input));
    }
    if out.is_empty() {
        return Err(BadInput(format!("{}: no input lines", path.display())));
    }
    Ok(out)
}

/// The ids of each line of a chunk: texts per the scorer's truncation, turns by the training
/// encoder. An error names the input file's line.
fn encode_chunk(
    scorer: &Scorer,
    chunk: &[InputLine],
    path: &Path,
    empty: EmptyHistory,
) -> anyhow::Result<Vec<(Vec<u32>, bool)>> {
    chunk
        .iter()
        .map(|(line_no, _, input)| {
            let encoded = match input {
                LineInput::Text(t) => scorer.tokenize(&[t.as_str()]).map(|mut v| v.remove(0)),
                LineInput::Turn {
                    history,
                    query,
                    response,
                } => scorer.encode_turn(history, query, response, empty),
            };
            encoded.map_err(|e| {
                anyhow::Error::from(BadInput(format!("{}:{line_no}: {e}", path.display())))
            })
        })
        .collect()
}

/// Scores every line; returns how many were scored.
pub fn run(opts: &ScoreOptions) -> anyhow::Result<usize> {
    let lines = read_lines(&opts.input)?;
    let started = Instant::now();
    let device = opts.device.open()?;
    // Quantized scoring multiplies f32 activations by the GGUF's blocks: `auto` means f32 there.
    let precision = if opts.quantized && opts.precision == Precision::Auto {
        Precision::F32
    } else {
        opts.precision
    };
    let dtype = precision.check(&device).map_err(BadInput)?;
    let load = LoadOptions {
        device,
        dtype: Some(dtype),
        quantized: opts.quantized,
        ..LoadOptions::inference()
    };
    let model = RewardModel::load(&opts.model, &load)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let matmul = model.forward().matmul_name().to_string();
    if model.head_was_initialised() {
        eprintln!(
            "wildreward: {} has no reward head: scoring with a seeded random 3-output head (seed 0); \
             these rewards are not meaningful until it is trained",
            opts.model.display()
        );
    }
    let scorer = Scorer::new(
        model,
        ScorerOptions {
            max_length: opts.max_length,
            ..ScorerOptions::default()
        },
    );
    let bar = ProgressBar::new(lines.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rendered = Vec::with_capacity(lines.len());
    let (mut tokens, mut truncated, mut reward_sum) = (0usize, 0usize, 0f64);
    let scoring = Instant::now();
    for chunk in lines.chunks(64) {
        let encoded = encode_chunk(&scorer, chunk, &opts.input, opts.empty_history)?;
        tokens += encoded.iter().map(|(ids, _)| ids.len()).sum::<usize>();
        for ((_, obj, _), s) in chunk.iter().zip(scorer.score_encoded(encoded)?) {
            truncated += usize::from(s.truncated);
            reward_sum += f64::from(s.reward);
            let mut obj = obj.clone();
            obj.insert("reward".into(), s.reward.into());
            obj.insert("probs".into(), s.probs.into());
            if s.truncated {
                obj.insert("truncated".into(), true.into());
            }
            rendered.push(serde_json::to_string(&obj)?);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let score_seconds = scoring.elapsed().as_secs_f64();
    if let Some(path) = &opts.report {
        let n = rendered.len();
        let report = ScoreReport {
            texts: n,
            tokens,
            truncated,
            load_seconds,
            score_seconds,
            texts_per_s: n as f64 / score_seconds.max(1e-9),
            tokens_per_s: tokens as f64 / score_seconds.max(1e-9),
            mean_reward: reward_sum / n.max(1) as f64,
            device: opts.device.to_string(),
            dtype: dtype.as_str().to_string(),
            matmul,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let body = rendered.join("\n") + "\n";
    match &opts.output {
        Some(path) => {
            let tmp = path.with_extension("jsonl.partial");
            std::fs::write(&tmp, body).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        None => std::io::stdout().write_all(body.as_bytes())?,
    }
    Ok(rendered.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn messages_and_history_build_the_template() {
        let t = input_of(&obj(
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},
                {"role":"user","content":"q"},{"role":"assistant","content":"r"}],
                "history":[{"role":"user","content":"first"}]}"#,
        ))
        .unwrap()
        .text(EmptyHistory::Training);
        assert!(t.contains("user: first\nuser: hi\nassistant: hello\n\n\n## User Query\nq\n"));
        assert!(t.contains("## Assistant Response\nr\n"));
    }

    #[test]
    fn malformed_lines_are_explained() {
        for (line, want) in [
            (r#"{"foo":1}"#, "neither"),
            (r#"{"text":3}"#, "not a string"),
            (
                r#"{"messages":[{"role":"assistant","content":"r"}]}"#,
                "must end",
            ),
            (
                r#"{"messages":[{"role":"robot","content":"r"}]}"#,
                "unknown variant",
            ),
        ] {
            let err = input_of(&obj(line)).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
