//! vLLM's pooling wire, which verl's reward loop speaks to a discriminative reward model:
//! `POST /classify` `{"model", "input": text | [text…]}` → `{"id", "object": "list", "created",
//! "model", "data": [{"index", "label", "probs", "num_classes"}], "usage"}` and `POST /pooling`
//! with `"task": "classify"` → `{"data": [{"index", "object": "pooling", "data": [floats]}], …}`
//! (vLLM's `ClassificationResponse` and `PoolingResponse`, field for field).
//!
//! verl sends each conversation rendered by the reward model tokenizer's chat template and reads
//! `data[-1].probs[-1]`. For an ordinal (CORAL) head the last level's probability is not the
//! reward, so `--classify-output reward` answers `probs: [reward]` (`num_classes: 1`, as vLLM shows
//! a one-output reward model), which puts the reward where verl reads it.

use crate::backend::ScoreInput;
use crate::error::ServeError;
use crate::query_format::chat_item;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use wildreward_model::Scored;
use wildreward_types::exit::BadInput;
use wildreward_types::EmptyHistory;

/// What `/classify` and `/pooling` put in `probs` / `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassifyOutput {
    /// The K level probabilities (the head's logits with `"activation": false`), as vLLM answers
    /// for a K-class classifier.
    #[default]
    Probs,
    /// One value, the reward (`1 + Σσ(z)` for an ordinal head): what verl's `probs[-1]` should be.
    Reward,
}

impl FromStr for ClassifyOutput {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, BadInput> {
        match s {
            "probs" => Ok(ClassifyOutput::Probs),
            "reward" => Ok(ClassifyOutput::Reward),
            _ => Err(BadInput(format!(
                "--classify-output {s:?}: expected probs or reward"
            ))),
        }
    }
}

impl ClassifyOutput {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            ClassifyOutput::Probs => "probs",
            ClassifyOutput::Reward => "reward",
        }
    }
}

/// How `/classify` and `/pooling` read their `input` texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassifyInput {
    /// A conversation rendered by a chat template (ChatML, Qwen, Llama-3), ending in the assistant
    /// turn being scored (what verl sends): parsed into messages and put in the WildReward template.
    #[default]
    Chat,
    /// Texts already in the WildReward template, scored as sent.
    Raw,
}

impl FromStr for ClassifyInput {
    type Err = BadInput;

    fn from_str(s: &str) -> Result<Self, BadInput> {
        match s {
            "chat" => Ok(ClassifyInput::Chat),
            "raw" => Ok(ClassifyInput::Raw),
            _ => Err(BadInput(format!(
                "--classify-input {s:?}: expected chat or raw"
            ))),
        }
    }
}

impl ClassifyInput {
    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            ClassifyInput::Chat => "chat",
            ClassifyInput::Raw => "raw",
        }
    }
}

/// A `/classify` or `/pooling` request (fields vLLM takes and this server does not use, such as
/// `user`, `priority` or `truncate_prompt_tokens`, are accepted and ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifyRequest {
    /// Echoed in the response (the served model's path when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One text or a list of texts (token ids are refused: the server tokenises).
    pub input: serde_json::Value,
    /// vLLM's older name for `use_activation`; `false` gives logits instead of probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<bool>,
    /// `false` gives logits instead of probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_activation: Option<bool>,
    /// `/pooling` only: must be `classify` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

impl ClassifyRequest {
    /// The input texts as sent (`input[i]` names them in errors).
    pub fn inputs(&self) -> Result<Vec<String>, ServeError> {
        let token_ids = || {
            ServeError::Validation(
                "`input` holds token ids; this server tokenises itself: send text".into(),
            )
        };
        match &self.input {
            serde_json::Value::String(s) => Ok(vec![s.clone()]),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    serde_json::Value::Number(_) | serde_json::Value::Array(_) => Err(token_ids()),
                    _ => Err(ServeError::Validation(format!(
                        "input[{i}] is not a string"
                    ))),
                })
                .collect(),
            _ => Err(ServeError::Validation(
                "`input` must be a string or a list of strings".into(),
            )),
        }
    }

    /// The same request over `texts` (a part of its inputs the router sends one worker).
    pub fn part(&self, texts: &[String]) -> Self {
        Self {
            model: self.model.clone(),
            input: serde_json::Value::from(texts.to_vec()),
            activation: self.activation,
            use_activation: self.use_activation,
            task: self.task.clone(),
        }
    }

    /// What to score for each input, read per `format` (raw: the text as sent; chat: the turn the
    /// conversation ends in, encoded as training encodes it); `offset` shifts the indexes in errors.
    pub fn texts(
        &self,
        format: ClassifyInput,
        empty: EmptyHistory,
        offset: usize,
    ) -> Result<Vec<ScoreInput>, ServeError> {
        if let Some(task) = self.task.as_deref().filter(|t| *t != "classify") {
            return Err(ServeError::Validation(format!(
                "task {task:?}: this reward model serves only \"classify\""
            )));
        }
        let inputs = self.inputs()?;
        match format {
            ClassifyInput::Raw => Ok(inputs.into_iter().map(ScoreInput::Text).collect()),
            ClassifyInput::Chat => inputs
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    chat_item(text)
                        .map(|item| ScoreInput::Turn(item, empty))
                        .map_err(|m| {
                            ServeError::Validation(format!(
                                "input[{}]: {m} (this server reads chat-templated conversations, \
                             --classify-input chat; run it with --classify-input raw for \
                             WildReward-templated texts)",
                                i + offset
                            ))
                        })
                })
                .collect(),
        }
    }

    /// Whether probabilities (rather than logits) were asked for.
    fn activation(&self) -> bool {
        self.use_activation.or(self.activation).unwrap_or(true)
    }
}

/// vLLM's `UsageInfo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens scored.
    pub prompt_tokens: usize,
    /// The same (nothing is generated).
    pub total_tokens: usize,
    /// Always 0.
    pub completion_tokens: usize,
    /// Always null.
    pub prompt_tokens_details: Option<serde_json::Value>,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.total_tokens += other.total_tokens;
    }
}

/// One input's classification (vLLM's `ClassificationData`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassificationData {
    /// Its place in `input`.
    pub index: usize,
    /// The most likely level (`"1"`…`"K"`); null for `--classify-output reward`.
    pub label: Option<String>,
    /// Level probabilities, logits, or `[reward]` (see [`ClassifyOutput`]).
    pub probs: Vec<f32>,
    /// `probs.len()`.
    pub num_classes: usize,
}

/// vLLM's `ClassificationResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassificationResponse {
    /// `classify-<hex>`.
    pub id: String,
    /// Always `list`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The request's model (or the served path).
    pub model: String,
    /// One per input, in order.
    pub data: Vec<ClassificationData>,
    /// Token counts.
    pub usage: Usage,
}

/// One input's pooled output (vLLM's `PoolingResponseData`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolingData {
    /// Its place in `input`.
    pub index: usize,
    /// Always `pooling`.
    pub object: String,
    /// What `probs` would hold on `/classify`.
    pub data: Vec<f32>,
}

/// vLLM's `PoolingResponse`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolingResponse {
    /// `pool-<hex>`.
    pub id: String,
    /// Always `list`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The request's model (or the served path).
    pub model: String,
    /// One per input, in order.
    pub data: Vec<PoolingData>,
    /// Token counts.
    pub usage: Usage,
}

fn now() -> (u64, String) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (
        t.as_secs(),
        format!("{:x}{:08x}", t.as_secs(), t.subsec_nanos()),
    )
}

/// The values `/classify` reports for one text.
fn outputs(s: &Scored, output: ClassifyOutput, activation: bool) -> (Option<String>, Vec<f32>) {
    if output == ClassifyOutput::Reward || s.probs.is_empty() {
        // A scalar head has no levels: its one output is the reward either way.
        return (None, vec![s.reward]);
    }
    let values = if activation {
        s.probs.clone()
    } else {
        s.logits.clone()
    };
    let label = s
        .probs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| (i + 1).to_string());
    (label, values)
}

impl ClassificationResponse {
    /// The response to `req` for its scores.
    pub fn new(
        req: &ClassifyRequest,
        served: &str,
        scored: &[Scored],
        output: ClassifyOutput,
    ) -> Self {
        let activation = req.activation();
        let (created, hex) = now();
        let tokens = scored.iter().map(|s| s.tokens).sum();
        Self {
            id: format!("classify-{hex}"),
            object: "list".into(),
            created,
            model: req.model.clone().unwrap_or_else(|| served.to_string()),
            data: scored
                .iter()
                .enumerate()
                .map(|(index, s)| {
                    let (label, probs) = outputs(s, output, activation);
                    ClassificationData {
                        index,
                        label,
                        num_classes: probs.len(),
                        probs,
                    }
                })
                .collect(),
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
                ..Usage::default()
            },
        }
    }

    /// The answers to a request's parts, in part order, as one response (the router's merge).
    pub fn merge(parts: Vec<Self>) -> Option<Self> {
        let mut parts = parts.into_iter();
        let mut out = parts.next()?;
        for p in parts {
            out.usage.add(&p.usage);
            out.data.extend(p.data);
        }
        for (i, d) in out.data.iter_mut().enumerate() {
            d.index = i;
        }
        Some(out)
    }
}

impl PoolingResponse {
    /// The `/pooling` form of a classification.
    pub fn from_classification(c: ClassificationResponse) -> Self {
        let (_, hex) = now();
        Self {
            id: format!("pool-{hex}"),
            object: "list".into(),
            created: c.created,
            model: c.model,
            data: c
                .data
                .into_iter()
                .map(|d| PoolingData {
                    index: d.index,
                    object: "pooling".into(),
                    data: d.probs,
                })
                .collect(),
            usage: c.usage,
        }
    }

    /// The answers to a request's parts, in part order, as one response (the router's merge).
    pub fn merge(parts: Vec<Self>) -> Option<Self> {
        let mut parts = parts.into_iter();
        let mut out = parts.next()?;
        for p in parts {
            out.usage.add(&p.usage);
            out.data.extend(p.data);
        }
        for (i, d) in out.data.iter_mut().enumerate() {
            d.index = i;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(reward: f32, probs: &[f32], logits: &[f32]) -> Scored {
        Scored {
            reward,
            probs: probs.to_vec(),
            logits: logits.to_vec(),
            tokens: 7,
            truncated: false,
        }
    }

    fn request(body: &str) -> ClassifyRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn inputs_are_one_text_or_many_and_token_ids_are_refused() {
        assert_eq!(request(r#"{"input":"a"}"#).inputs().unwrap(), vec!["a"]);
        assert_eq!(
            request(r#"{"model":"m","input":["a","b"],"user":"u"}"#)
                .inputs()
                .unwrap(),
            vec!["a", "b"]
        );
        let e = request(r#"{"input":[1,2,3]}"#).inputs().unwrap_err();
        assert!(e.to_string().contains("token ids"), "{e}");
        let e = request(r#"{"input":"x","task":"embed"}"#)
            .texts(ClassifyInput::Raw, EmptyHistory::Training, 0)
            .unwrap_err();
        assert!(e.to_string().contains("classify"), "{e}");
    }

    #[test]
    fn the_response_has_vllms_fields_and_reward_mode_puts_the_reward_last() {
        let s = [
            scored(2.5, &[0.1, 0.2, 0.6, 0.1], &[1.0, 0.5, -2.0]),
            scored(1.2, &[0.7, 0.1, 0.1, 0.1], &[-1.0, -2.0, -3.0]),
        ];
        let req = request(r#"{"model":"rm","input":["a","b"]}"#);
        let r = ClassificationResponse::new(&req, "/m", &s, ClassifyOutput::Probs);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "rm");
        assert!(v["id"].as_str().unwrap().starts_with("classify-"));
        assert_eq!(v["data"][0]["label"], "3");
        assert_eq!(v["data"][0]["num_classes"], 4);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 14);
        assert_eq!(v["usage"]["completion_tokens"], 0);
        assert!(v["usage"]["prompt_tokens_details"].is_null());
        let logits = request(r#"{"input":["a","b"],"activation":false}"#);
        let r = ClassificationResponse::new(&logits, "/m", &s, ClassifyOutput::Probs);
        assert_eq!(r.data[0].probs, vec![1.0, 0.5, -2.0]);
        assert_eq!(r.model, "/m");
        let r = ClassificationResponse::new(&req, "/m", &s, ClassifyOutput::Reward);
        assert_eq!(r.data[1].probs.last(), Some(&1.2));
        assert_eq!(r.data[1].num_classes, 1);
        let merged = ClassificationResponse::merge(vec![r.clone(), r]).unwrap();
        assert_eq!(merged.data.len(), 4);
        assert_eq!(merged.data[3].index, 3);
        assert_eq!(merged.usage.total_tokens, 28);
        let p = PoolingResponse::from_classification(merged);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["data"][2]["object"], "pooling");
        assert_eq!(v["data"][2]["data"][0], 2.5);
        assert!(v["id"].as_str().unwrap().starts_with("pool-"));
    }
}
