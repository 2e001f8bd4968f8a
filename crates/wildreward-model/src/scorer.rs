//! The scorer used by `serve`, `eval` and `wildreward score`: texts → rewards (+ per-level
//! probabilities), tokenised, sorted by length, packed into token-budgeted padded batches, and
//! returned in input order. Rewards are computed in f32 whatever the backbone's dtype.

use crate::error::{ModelError, Result};
use crate::head::reward_of;
use crate::model::RewardModel;

/// Which part of an over-long text to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Keep the end (the reward is read at the last token; the response and template footer stay).
    #[default]
    Left,
    /// Keep the beginning (the reference's behaviour: loses the response's end and the footer).
    Right,
    /// Refuse over-long texts with an error.
    Error,
}

/// Batching and length limits.
#[derive(Debug, Clone)]
pub struct ScorerOptions {
    /// Longest input in tokens.
    pub max_length: usize,
    /// Most padded tokens (rows × longest row) in one forward pass.
    pub max_batch_tokens: usize,
    /// Most texts in one forward pass.
    pub max_batch_size: usize,
    /// What to do with texts over `max_length`.
    pub truncation: Truncation,
}

impl Default for ScorerOptions {
    fn default() -> Self {
        Self {
            max_length: 4096,
            max_batch_tokens: 16_384,
            max_batch_size: 32,
            truncation: Truncation::Left,
        }
    }
}

/// One text's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// `1 + Σσ(z)` (or the raw logit of a scalar head).
    pub reward: f32,
    /// Per-level probabilities (K values; empty for a scalar head).
    pub probs: Vec<f32>,
    /// The head's raw logits.
    pub logits: Vec<f32>,
    /// Tokens scored (after truncation).
    pub tokens: usize,
    /// Whether the text was cut to `max_length`.
    pub truncated: bool,
}

/// Scores texts with a reward model.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: RewardModel,
    opts: ScorerOptions,
}

impl Scorer {
    /// A scorer over `model`.
    pub fn new(model: RewardModel, opts: ScorerOptions) -> Self {
        Self { model, opts }
    }

    /// The model.
    pub fn model(&self) -> &RewardModel {
        &self.model
    }

    /// Whether batches run packed (no padding; [`crate::packed`]) rather than right-padded.
    pub fn packs_rows(&self) -> bool {
        crate::packed::supports(self.model.backbone())
    }

    /// The options.
    pub fn options(&self) -> &ScorerOptions {
        &self.opts
    }

    /// Token ids of each text (special tokens as the tokenizer adds them), truncated per the options.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, bool)>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let enc =
                    self.model.tokenizer().encode(*text, true).map_err(|e| {
                        ModelError::Input(format!("text {i}: cannot tokenise: {e}"))
                    })?;
                let ids = enc.get_ids();
                if ids.is_empty() {
                    return Err(ModelError::Input(format!("text {i} is empty")));
                }
                let max = self
                    .opts
                    .max_length
                    .min(self.model.backbone().max_positions());
                if ids.len() <= max {
                    return Ok((ids.to_vec(), false));
                }
                match self.opts.truncation {
                    Truncation::Left => Ok((ids[ids.len() - max..].to_vec(), true)),
                    Truncation::Right => Ok((ids[..max].to_vec(), true)),
                    Truncation::Error => Err(ModelError::Input(format!(
                        "text {i} has {} tokens, over the limit of {max}",
                        ids.len()
                    ))),
                }
            })
            .collect()
    }

    /// Scores texts; results are in input order.
    pub fn score(&self, texts: &[&str]) -> Result<Vec<Scored>> {
        let tokenized = self.tokenize(texts)?;
        let ids: Vec<Vec<u32>> = tokenized.iter().map(|(ids, _)| ids.clone()).collect();
        let mut out = self.score_ids(&ids)?;
        for (s, (_, truncated)) in out.iter_mut().zip(&tokenized) {
            s.truncated = *truncated;
        }
        Ok(out)
    }

    /// Scores pre-tokenised inputs; results are in input order.
    pub fn score_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Scored>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let mut out: Vec<Option<Scored>> = vec![None; ids.len()];
        let padded = !self.packs_rows();
        for batch in plan_batches(
            &order,
            ids,
            self.opts.max_batch_tokens,
            self.opts.max_batch_size,
            padded,
        ) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, scored) in batch.iter().zip(self.score_batch(&rows)?) {
                out[i] = Some(scored);
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, s)| s.ok_or_else(|| ModelError::Input(format!("input {i} was not scored"))))
            .collect()
    }

    /// One forward pass over `rows` (packed, or right-padded where the packed path cannot run).
    fn score_batch(&self, rows: &[&[u32]]) -> Result<Vec<Scored>> {
        let lengths: Vec<usize> = rows.iter().map(|r| r.len()).collect();
        let logits: Vec<Vec<f32>> = self.model.logits_of_rows(rows)?.to_vec2()?;
        let kind = self.model.head().kind();
        Ok(logits
            .into_iter()
            .zip(&lengths)
            .map(|(logits, &tokens)| {
                let (reward, probs) = reward_of(kind, &logits);
                Scored {
                    reward,
                    probs,
                    logits,
                    tokens,
                    truncated: false,
                }
            })
            .collect())
    }
}

/// Groups indexes (already sorted longest first) into batches of at most `max_rows` rows whose size
/// stays within `max_tokens`: the padded size (rows × longest) when `padded`, the real tokens
/// otherwise (the packed forward). A single over-budget row still gets its own batch.
pub fn plan_batches(
    order: &[usize],
    ids: &[Vec<u32>],
    max_tokens: usize,
    max_rows: usize,
    padded: bool,
) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut longest, mut total) = (0, 0);
    for &i in order {
        let len = ids[i].len();
        let size = if padded {
            longest.max(len) * (current.len() + 1)
        } else {
            total + len
        };
        if !current.is_empty() && (current.len() + 1 > max_rows || size > max_tokens) {
            batches.push(std::mem::take(&mut current));
            (longest, total) = (0, 0);
        }
        longest = longest.max(len);
        total += len;
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_budgets_and_keep_every_index() {
        let ids: Vec<Vec<u32>> = [10usize, 9, 8, 3, 3, 2, 1, 50]
            .iter()
            .map(|&n| vec![0; n])
            .collect();
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        let batches = plan_batches(&order, &ids, 20, 3, true);
        for b in &batches {
            let longest = b.iter().map(|&i| ids[i].len()).max().unwrap();
            assert!(b.len() <= 3);
            assert!(b.len() == 1 || longest * b.len() <= 20, "{b:?}");
        }
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..ids.len()).collect::<Vec<_>>());
        assert_eq!(batches[0], vec![7], "the 50-token row goes alone");
        // Packed: real tokens count, not padding.
        let packed = plan_batches(&order, &ids, 20, 8, false);
        assert_eq!(packed, vec![vec![7], vec![0, 1], vec![2, 3, 4, 5, 6]]);
    }
}
