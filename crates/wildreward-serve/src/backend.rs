//! The model behind a worker, as a trait (text-embeddings-inference's backend split): the batching
//! queue only needs "score these token rows", so another backend (another device, another runtime)
//! slots in without touching the queue or the HTTP side. [`CandleBackend`] is the real one: the
//! model core's [`Scorer`] on CPU (f32) or CUDA (bf16 backbone unless `--dtype f16`, f32 reward head).

use crate::config::{truncation_name, DeviceSpec, WorkerConfig};
use serde::Serialize;
use std::sync::Arc;
use wildreward_model::{LoadOptions, RewardModel, Scored, Scorer, ScorerOptions};
use wildreward_types::exit::BadInput;
use wildreward_types::template::EmptyHistory;
use wildreward_types::wire::ScoreItem;

/// What `GET /` says about the model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Where it was loaded from.
    pub model: String,
    /// The reward head (`ordinal`, `coral`, `corn`, `scalar`).
    pub head: String,
    /// Ordinal levels K (0 for a scalar head), written as `k`.
    #[serde(rename = "k")]
    pub levels: usize,
    /// Logits of the head (K-1 for ordinal heads).
    pub logits: usize,
    /// True when the checkpoint had no head and a seeded random one was made (scores are not a
    /// trained model's then).
    pub head_initialised: bool,
    /// Backbone dtype (`bf16` on a CPU whose projections run the bf16 kernel).
    pub dtype: String,
    /// The product the projections run: `f32`, `amx`, `avx512bf16`, `bf16-portable` (CPU), or the
    /// backbone dtype on CUDA.
    pub matmul: String,
    /// The inference forward that runs: `packed-cpu` or `candle` (CUDA, LoRA, GGUF-quantized).
    pub forward: String,
    /// Device.
    pub device: String,
    /// Longest text in tokens.
    pub max_length: usize,
    /// Padded tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Texts in one forward pass.
    pub max_batch_size: usize,
    /// What happens to longer texts (`left`, `right`, `error`).
    pub truncation: String,
}

/// One thing a request asks to score: a ready-made text (`/get_reward`) or a structured turn
/// (`/score`), which is encoded exactly as training encodes it.
#[derive(Debug, Clone)]
pub enum ScoreInput {
    /// A text scored as sent (cut in the middle, keeping BOS and the template header, when long).
    Text(String),
    /// A turn rendered with the RM template by the training encoder.
    Turn(ScoreItem, EmptyHistory),
}

impl ScoreInput {
    /// Whether there is nothing to score (an empty text; a turn always has the template).
    pub fn is_empty(&self) -> bool {
        matches!(self, ScoreInput::Text(t) if t.is_empty())
    }
}

/// Tokenises inputs the way the backend's model scores them (shared by the tokenisation threads).
#[derive(Clone)]
pub struct TextTokenizer {
    scorer: Arc<Scorer>,
}

impl TextTokenizer {
    /// A tokeniser with the scorer's length limit and truncation rule.
    pub fn new(scorer: Arc<Scorer>) -> Self {
        Self { scorer }
    }

    /// Token ids of one text (truncated per the options), or why it cannot be scored, worded to
    /// follow the text's name (`" is empty"`, `" has 9000 tokens, over the limit of 4096"`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.encode_input(&ScoreInput::Text(text.to_string()))
    }

    /// Token ids of one input (see [`ScoreInput`]), or why it cannot be scored, worded as
    /// [`Self::encode`]'s.
    pub fn encode_input(&self, input: &ScoreInput) -> Result<Vec<u32>, String> {
        let result = match input {
            ScoreInput::Text(text) => self.scorer.tokenize(&[text]),
            ScoreInput::Turn(item, empty) => self
                .scorer
                .encode_turn(&item.history, &item.query, &item.response, *empty)
                .map(|encoded| vec![encoded]),
        };
        match result {
            Ok(mut v) => Ok(v.pop().map(|(ids, _)| ids).unwrap_or_default()),
            // The scorer numbers texts within its call ("text 0 …"); the caller names the field.
            Err(e) => {
                let message = e.to_string();
                Err(match message.strip_prefix("text 0") {
                    Some(rest) => rest.to_string(),
                    None if message.starts_with(' ') => message,
                    None => format!(": {message}"),
                })
            }
        }
    }
}

/// A model that scores padded batches of token rows. Owned by the one inference thread.
pub trait Backend: Send + 'static {
    /// What `GET /` reports.
    fn info(&self) -> ModelInfo;
    /// The tokeniser requests go through before they are queued.
    fn tokenizer(&self) -> TextTokenizer;
    /// Most padded tokens (rows × longest row) and most rows in one [`Backend::forward`].
    fn batch_limits(&self) -> (usize, usize);
    /// Whether a batch runs packed (its cost is its real tokens) rather than padded to its longest
    /// row (rows × longest): decides how the queue fills the token budget.
    fn packs_rows(&self) -> bool {
        false
    }
    /// Scores one batch the queue planned within [`Backend::batch_limits`] (one forward pass, no
    /// second plan); results in row order.
    fn forward(&mut self, rows: &[Vec<u32>]) -> Result<Vec<Scored>, String>;
    /// One forward pass at full batch size, run before the worker reports ready; returns the
    /// tokens it ran (the queue times it to start its seconds-per-token estimate).
    fn warmup(&mut self) -> Result<usize, String>;
    /// A one-token forward pass: does the model still run?
    fn health(&mut self) -> Result<(), String> {
        self.forward(&[vec![0]]).map(|_| ())
    }
}

/// Refuses a model whose head is a seeded random one (no head in the checkpoint, or one marked
/// `wildreward_head_initialised` by `convert`) unless `allowed`, and warns loudly when allowed:
/// its rewards are noise, and a policy optimised on them learns nothing.
pub fn check_head(model: &RewardModel, allowed: bool) -> Result<(), BadInput> {
    if !model.head_was_initialised() {
        return Ok(());
    }
    let source = model.source().display();
    if !allowed {
        return Err(BadInput(format!(
            "{source} has no trained reward head (none in the checkpoint, or one `convert` made at \
             random): its rewards would be noise. Train one (`wildreward train`), or pass \
             --allow-untrained-head to serve it anyway (for smoke tests)"
        )));
    }
    eprintln!(
        "wildreward: WARNING: serving {source} with a seeded RANDOM reward head \
         (--allow-untrained-head): rewards are not meaningful; /info and /metrics say \
         head_initialised"
    );
    Ok(())
}

/// The model core's [`Scorer`] on a candle device.
pub struct CandleBackend {
    scorer: Arc<Scorer>,
    device: DeviceSpec,
}

impl CandleBackend {
    /// Loads the worker's model on its device (bf16 backbone on CUDA unless `--dtype` says
    /// otherwise; rewards in f32).
    pub fn load(cfg: &WorkerConfig) -> anyhow::Result<Self> {
        let device = cfg.device.open()?;
        let dtype = cfg
            .precision
            .check(&device)
            .map_err(wildreward_types::exit::BadInput)?;
        let opts = LoadOptions {
            device,
            dtype: Some(dtype),
            ..LoadOptions::inference()
        };
        let model = RewardModel::load(&cfg.model, &opts)?;
        check_head(&model, cfg.allow_untrained_head)?;
        Ok(Self::new(model, cfg.scorer.clone(), cfg.device))
    }

    /// A backend over an already loaded model (tests share one load between several workers).
    pub fn new(model: RewardModel, opts: ScorerOptions, device: DeviceSpec) -> Self {
        Self {
            scorer: Arc::new(Scorer::new(model, opts)),
            device,
        }
    }
}

impl Backend for CandleBackend {
    fn info(&self) -> ModelInfo {
        let model = self.scorer.model();
        let head = model.head();
        let opts = self.scorer.options();
        let scalar = head.kind() == wildreward_model::HeadKind::Scalar;
        let backbone = model.backbone();
        let forward = model.forward();
        let packed_bf16 = forward.matmul_name() != backbone.dtype().as_str();
        ModelInfo {
            model: model.source().display().to_string(),
            head: head.kind().name().to_string(),
            levels: if scalar { 0 } else { head.outputs() + 1 },
            logits: head.outputs(),
            head_initialised: model.head_was_initialised(),
            dtype: if packed_bf16 {
                "bf16"
            } else {
                backbone.dtype().as_str()
            }
            .to_string(),
            matmul: forward.matmul_name().to_string(),
            forward: forward.name().to_string(),
            device: self.device.to_string(),
            max_length: opts.max_length.min(model.backbone().max_positions()),
            max_batch_tokens: opts.max_batch_tokens,
            max_batch_size: opts.max_batch_size,
            truncation: truncation_name(opts.truncation).to_string(),
        }
    }

    fn tokenizer(&self) -> TextTokenizer {
        TextTokenizer::new(self.scorer.clone())
    }

    fn batch_limits(&self) -> (usize, usize) {
        let o = self.scorer.options();
        (o.max_batch_tokens, o.max_batch_size)
    }

    fn packs_rows(&self) -> bool {
        self.scorer.packs_rows()
    }

    fn forward(&mut self, rows: &[Vec<u32>]) -> Result<Vec<Scored>, String> {
        // The queue planned this batch; one forward pass, no second plan.
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        self.scorer.score_batch(&rows).map_err(|e| e.to_string())
    }

    fn warmup(&mut self) -> Result<usize, String> {
        let (max_tokens, max_rows) = self.batch_limits();
        let max_length = self.info().max_length;
        // A GPU is warmed at the full token budget, so an out-of-memory shows now rather than on a
        // client's batch. On CPU memory is not the question and a full-budget pass costs seconds,
        // so the warm-up is a full batch of short rows (TEI warms CPU models minimally too).
        let row_len = match self.device {
            DeviceSpec::Cuda(_) => (max_tokens / max_rows).clamp(1, max_length),
            DeviceSpec::Cpu => (max_tokens / max_rows).clamp(1, max_length.min(16)),
        };
        // Rows that differ from their first token: the CPU forward runs a prefix the rows share
        // once, and identical rows would time as one (the backlog calibrates on this pass).
        let rows: Vec<Vec<u32>> = (0..max_rows).map(|r| vec![r as u32 + 1; row_len]).collect();
        self.forward(&rows).map(|_| row_len * max_rows)
    }
}
