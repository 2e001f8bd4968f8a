//! Training data: WildFB JSONL (pointwise levels) and preference pairs, read with errors naming the
//! file and line, rendered with the shared RM template and tokenised so that the part that matters
//! survives truncation.
//!
//! The reference truncates on the right at 4096 tokens, cutting off the response it is judging. Here
//! an input that is too long loses its **history** first (oldest message first), then the middle of
//! the query, and only as a last resort the middle of the response, so the template's header, the
//! response's end and the footer always survive. That rule is [`wildreward_model::TurnEncoder`],
//! shared with every scoring path, so served rewards read the inputs training saw.

use crate::error::{Result, TrainError};
use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;
use wildreward_model::TurnEncoder;
use wildreward_types::chat::{Message, Role};
use wildreward_types::template::EmptyHistory;

/// A conversation turn to score: what came before, the user's query and the assistant's response.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Messages before the query.
    pub history: Vec<Message>,
    /// The user's message.
    pub query: String,
    /// The assistant's answer being judged.
    pub response: String,
}

/// What one training line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A turn with its level (1..=4): WildFB.
    Pointwise {
        /// The turn.
        turn: Turn,
        /// The training level.
        label: u8,
    },
    /// Two answers to the same prompt, the first preferred.
    Pair {
        /// The preferred turn.
        chosen: Turn,
        /// The other turn.
        rejected: Turn,
    },
}

/// An example ready for the model: token ids (one sequence, or two for a pair).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids of the text, or of the chosen text for a pair.
    pub ids: Vec<u32>,
    /// Token ids of the rejected text (pairs only).
    pub rejected_ids: Option<Vec<u32>>,
    /// The level (pointwise only; 0 for pairs).
    pub label: u8,
    /// Whether truncation cut anything.
    pub truncated: bool,
}

impl Encoded {
    /// Tokens this example costs in a batch.
    pub fn tokens(&self) -> usize {
        self.ids.len() + self.rejected_ids.as_ref().map_or(0, Vec::len)
    }
}

fn field<'a>(obj: &'a Value, name: &str, at: &str) -> Result<&'a Value> {
    obj.get(name)
        .ok_or_else(|| TrainError::input(format!("{at}: missing field `{name}`")))
}

fn string(obj: &Value, name: &str, at: &str) -> Result<String> {
    field(obj, name, at)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| TrainError::input(format!("{at}: field `{name}` must be a string")))
}

fn messages(v: &Value, name: &str, at: &str) -> Result<Vec<Message>> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(_) => serde_json::from_value(v.clone()).map_err(|e| {
            TrainError::input(format!(
                "{at}: field `{name}` is not a list of {{role, content}} messages: {e}"
            ))
        }),
        _ => Err(TrainError::input(format!(
            "{at}: field `{name}` must be a list of messages"
        ))),
    }
}

/// A WildFB line: `history`, `messages` `[user query, assistant response]`, `label` 1..=4.
fn pointwise(obj: &Value, at: &str) -> Result<Example> {
    let label = field(obj, "label", at)?;
    let label = label
        .as_u64()
        .filter(|l| (1..=4).contains(l))
        .ok_or_else(|| TrainError::input(format!("{at}: `label` must be 1..4, got {label}")))?
        as u8;
    let pair = messages(field(obj, "messages", at)?, "messages", at)?;
    let [query, response] = pair.as_slice() else {
        return Err(TrainError::input(format!(
            "{at}: `messages` must hold [user query, assistant response], got {} messages",
            pair.len()
        )));
    };
    if query.role != Role::User || response.role != Role::Assistant {
        return Err(TrainError::input(format!(
            "{at}: `messages` must be [user, assistant]"
        )));
    }
    let history = messages(obj.get("history").unwrap_or(&Value::Null), "history", at)?;
    Ok(Example::Pointwise {
        turn: Turn {
            history,
            query: query.content.clone(),
            response: response.content.clone(),
        },
        label,
    })
}

/// A preference line: `prompt`, `chosen`, `rejected`, optional `history`.
fn pair(obj: &Value, at: &str) -> Result<Example> {
    let prompt = string(obj, "prompt", at)?;
    let history = messages(obj.get("history").unwrap_or(&Value::Null), "history", at)?;
    let turn = |response: String| Turn {
        history: history.clone(),
        query: prompt.clone(),
        response,
    };
    Ok(Example::Pair {
        chosen: turn(string(obj, "chosen", at)?),
        rejected: turn(string(obj, "rejected", at)?),
    })
}

/// Reads a JSONL split: pointwise WildFB lines, or preference pairs when `pairs`. At most `limit`
/// examples when `limit > 0`. An empty split is an error.
pub fn read_split(path: &Path, pairs: bool, limit: usize) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        let obj: Value = serde_json::from_str(line)
            .map_err(|e| TrainError::input(format!("{at}: not valid JSON: {e}")))?;
        if !obj.is_object() {
            return Err(TrainError::input(format!("{at}: expected a JSON object")));
        }
        out.push(if pairs {
            pair(&obj, &at)?
        } else {
            pointwise(&obj, &at)?
        });
        if limit > 0 && out.len() == limit {
            break;
        }
    }
    if out.is_empty() {
        return Err(TrainError::input(format!(
            "{}: the split is empty (no examples)",
            path.display()
        )));
    }
    Ok(out)
}

/// Renders turns with the RM template and tokenises them within a token budget: the model crate's
/// [`TurnEncoder`], the one encoding that scoring uses too.
pub struct Encoder<'a> {
    inner: TurnEncoder<'a>,
}

impl<'a> Encoder<'a> {
    /// An encoder with this budget.
    pub fn new(tokenizer: &'a Tokenizer, max_length: usize, empty: EmptyHistory) -> Self {
        Self {
            inner: TurnEncoder::new(tokenizer, max_length, empty),
        }
    }

    /// The ids of `turn` within the budget, and whether anything was cut.
    pub fn encode_turn(&self, turn: &Turn) -> Result<(Vec<u32>, bool)> {
        self.inner
            .encode(&turn.history, &turn.query, &turn.response)
            .map_err(|e| TrainError::input(e.to_string()))
    }

    /// Encodes one example.
    pub fn encode(&self, example: &Example) -> Result<Encoded> {
        Ok(match example {
            Example::Pointwise { turn, label } => {
                let (ids, truncated) = self.encode_turn(turn)?;
                Encoded {
                    ids,
                    rejected_ids: None,
                    label: *label,
                    truncated,
                }
            }
            Example::Pair { chosen, rejected } => {
                let (c, tc) = self.encode_turn(chosen)?;
                let (r, tr) = self.encode_turn(rejected)?;
                Encoded {
                    ids: c,
                    rejected_ids: Some(r),
                    label: 0,
                    truncated: tc || tr,
                }
            }
        })
    }
}
