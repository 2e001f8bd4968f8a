//! The scorer used by `serve`, `eval` and `wildreward score`: texts → rewards (+ per-level
//! probabilities), tokenised, sorted by length, packed into token-budgeted padded batches, and
//! returned in input order. Rewards are computed in f32 whatever the backbone's dtype.

use crate::encode::{cut_text_ids, TurnEncoder};
use crate::error::{ModelError, Result};
use crate::head::reward_of;
use crate::model::RewardModel;
use wildreward_types::chat::Message;
use wildreward_types::template::EmptyHistory;

/// Which part of an over-long input to drop. Structured turns ([`Scorer::score_turns`]) are always
/// cut as training cuts them ([`crate::encode::TurnEncoder`]) unless the rule is [`Truncation::Error`];
/// the rule chooses how a ready-made text is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Keep BOS and the template header, then the end; drop the middle ([`cut_text_ids`]): what
    /// the model saw in training survives (the default).
    #[default]
    Middle,
    /// Keep the end only (the reward is read at the last token; loses BOS and the header).
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
            truncation: Truncation::Middle,
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
        !self.model.forward().pads_rows()
    }

    /// The options.
    pub fn options(&self) -> &ScorerOptions {
        &self.opts
    }

    /// Longest input in tokens: the option, capped by the backbone's positions.
    pub fn max_length(&self) -> usize {
        self.opts
            .max_length
            .min(self.model.backbone().max_positions())
    }

    /// Token ids of each text (special tokens as the tokenizer adds them), truncated per the options.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<(Vec<u32>, bool)>> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                self.tokenize_text(text)
                    .map_err(|e| ModelError::Input(format!("text {i}{}", describe(&e))))
            })
            .collect()
    }

    /// Token ids of one text, truncated per the options; errors read after the text's name.
    fn tokenize_text(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let tokenizer = self.model.tokenizer();
        let max = self.max_length();
        let enc = tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Input(format!(": cannot tokenise: {e}")))?;
        let ids = enc.get_ids();
        if ids.is_empty() {
            return Err(ModelError::Input(" is empty".into()));
        }
        if ids.len() <= max {
            return Ok((ids.to_vec(), false));
        }
        match self.opts.truncation {
            Truncation::Middle => cut_text_ids(tokenizer, text, max),
            Truncation::Left => Ok((ids[ids.len() - max..].to_vec(), true)),
            Truncation::Right => Ok((ids[..max].to_vec(), true)),
            Truncation::Error => Err(over_limit(ids.len(), max)),
        }
    }

    /// The training encoder at this scorer's length limit.
    pub fn turn_encoder(&self, empty: EmptyHistory) -> TurnEncoder<'_> {
        TurnEncoder::new(self.model.tokenizer(), self.max_length(), empty)
    }

    /// Token ids of one turn, exactly as training encodes it ([`TurnEncoder::encode`]), or an
    /// error under [`Truncation::Error`] when it is over the limit. Errors read after the turn's
    /// name (`" has 9000 tokens, over the limit of 4096"`).
    pub fn encode_turn(
        &self,
        history: &[Message],
        query: &str,
        response: &str,
        empty: EmptyHistory,
    ) -> Result<(Vec<u32>, bool)> {
        let encoder = self.turn_encoder(empty);
        let described = |e: ModelError| ModelError::Input(describe(&e));
        if self.opts.truncation == Truncation::Error {
            let ids = encoder
                .encode_whole(history, query, response)
                .map_err(described)?;
            if ids.len() > encoder.max_length() {
                return Err(over_limit(ids.len(), encoder.max_length()));
            }
            return Ok((ids, false));
        }
        encoder.encode(history, query, response).map_err(described)
    }

    /// Token ids of each turn (history, query, response) with whether it was cut, as training
    /// encodes them ([`Self::encode_turn`]); an error names the turn.
    pub fn encode_turns(
        &self,
        turns: &[(&[Message], &str, &str)],
        empty: EmptyHistory,
    ) -> Result<Vec<(Vec<u32>, bool)>> {
        turns
            .iter()
            .enumerate()
            .map(|(i, (h, q, r))| {
                self.encode_turn(h, q, r, empty)
                    .map_err(|e| ModelError::Input(format!("item {i}{}", describe(&e))))
            })
            .collect()
    }

    /// Scores turns (history, query, response) encoded as training encodes them; results are in
    /// input order.
    pub fn score_turns(
        &self,
        turns: &[(&[Message], &str, &str)],
        empty: EmptyHistory,
    ) -> Result<Vec<Scored>> {
        self.score_encoded(self.encode_turns(turns, empty)?)
    }

    /// Scores texts; results are in input order.
    pub fn score(&self, texts: &[&str]) -> Result<Vec<Scored>> {
        self.score_encoded(self.tokenize(texts)?)
    }

    /// Scores inputs already encoded ([`Self::tokenize`], [`Self::encode_turn`]) with whether each
    /// was cut; results are in input order.
    pub fn score_encoded(&self, encoded: Vec<(Vec<u32>, bool)>) -> Result<Vec<Scored>> {
        let (ids, truncated): (Vec<Vec<u32>>, Vec<bool>) = encoded.into_iter().unzip();
        let mut out = self.score_ids(&ids)?;
        mark_truncated(&mut out, &truncated);
        Ok(out)
    }

    /// Scores pre-tokenised inputs; results are in input order.
    pub fn score_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Scored>> {
        let mut out: Vec<Option<Scored>> = vec![None; ids.len()];
        for batch in self.plan(ids) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            for (&i, scored) in batch.iter().zip(self.score_batch(&rows)?) {
                out[i] = Some(scored);
            }
        }
        all_scored(out)
    }

    /// The batches [`Self::score_ids`] runs `ids` in: longest first, within this scorer's token and
    /// row budgets, sized as its forward costs them ([`plan_batches`]).
    pub fn plan(&self, ids: &[Vec<u32>]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        plan_batches(
            &order,
            ids,
            self.opts.max_batch_tokens,
            self.opts.max_batch_size,
            !self.packs_rows(),
        )
    }

    /// One forward pass over `rows`, already planned as one batch (by [`plan_batches`], as the
    /// serve queue does): packed, or right-padded where the packed path cannot run. Results are in
    /// `rows`' order.
    pub fn score_batch(&self, rows: &[&[u32]]) -> Result<Vec<Scored>> {
        self.scored_from_logits(&self.model.logits_of_rows(rows)?, rows)
    }

    /// The scores of `rows` from their reward logits `[rows, outputs]`: rewards and level
    /// probabilities in f32, or [`ModelError::NonFinite`] for a row whose logits are not finite.
    pub fn scored_from_logits(
        &self,
        logits: &candle_core::Tensor,
        rows: &[&[u32]],
    ) -> Result<Vec<Scored>> {
        let logits: Vec<Vec<f32>> = logits.to_dtype(candle_core::DType::F32)?.to_vec2()?;
        if let Some(row) = logits.iter().position(|l| l.iter().any(|v| !v.is_finite())) {
            let dtype = self.model.backbone().dtype();
            return Err(ModelError::NonFinite(format!(
                "row {row} of a batch of {}: the model gave a non-finite reward logit ({} weights{}); \
                 refusing to return it as a reward",
                rows.len(),
                dtype.as_str(),
                if dtype == candle_core::DType::F16 {
                    ", which overflow past 65,504: use --dtype bf16"
                } else {
                    ""
                }
            )));
        }
        let kind = self.model.head().kind();
        Ok(logits
            .into_iter()
            .zip(rows)
            .map(|(logits, row)| {
                let (reward, probs) = reward_of(kind, &logits);
                Scored {
                    reward,
                    probs,
                    logits,
                    tokens: row.len(),
                    truncated: false,
                }
            })
            .collect())
    }
}

/// Sets each score's `truncated` from whether its input was cut.
pub(crate) fn mark_truncated(scores: &mut [Scored], truncated: &[bool]) {
    for (s, &cut) in scores.iter_mut().zip(truncated) {
        s.truncated = cut;
    }
}

/// Every input's score, or an error naming the first input a planned batch left out.
pub(crate) fn all_scored(out: Vec<Option<Scored>>) -> Result<Vec<Scored>> {
    out.into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| ModelError::Input(format!("input {i} was not scored"))))
        .collect()
}

/// An input's error worded to follow its name: `" is empty"`, `": cannot tokenise: …"`.
fn describe(e: &ModelError) -> String {
    match e {
        ModelError::Input(m) if m.starts_with(' ') || m.starts_with(':') => m.clone(),
        other => format!(": {other}"),
    }
}

fn over_limit(tokens: usize, max: usize) -> ModelError {
    ModelError::Input(format!(" has {tokens} tokens, over the limit of {max}"))
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
