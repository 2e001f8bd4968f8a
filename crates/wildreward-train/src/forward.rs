//! Running the model on encoded examples: padding, the head-only feature cache, losses and
//! evaluation logits.

use crate::config::{LossKind, TrainMode};
use crate::data::Encoded;
use crate::error::Result;
use crate::params::TrainableModel;
use candle_core::{Device, Tensor};
use wildreward_model::loss;
use wildreward_model::scorer::plan_batches;

/// Sequences per feature-extraction batch and its token budget.
const FEATURE_BATCH_ROWS: usize = 16;
const FEATURE_BATCH_TOKENS: usize = 8192;

/// A right-padded id matrix and the real lengths.
pub fn pad(seqs: &[&[u32]], pad_id: u32, device: &Device) -> Result<(Tensor, Vec<usize>)> {
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut data = Vec::with_capacity(seqs.len() * longest);
    for s in seqs {
        data.extend_from_slice(s);
        data.extend(std::iter::repeat_n(pad_id, longest - s.len()));
    }
    let lengths = seqs.iter().map(|s| s.len()).collect();
    Ok((
        Tensor::from_vec(data, (seqs.len(), longest), device)?,
        lengths,
    ))
}

/// The sequences of a set of examples: each example's text, then (pairs) each rejected text, so
/// the first half of the logits are the chosen answers.
fn sequences<'a>(examples: &'a [Encoded], idx: &[usize]) -> Vec<&'a [u32]> {
    let mut seqs: Vec<&[u32]> = idx.iter().map(|&i| examples[i].ids.as_slice()).collect();
    seqs.extend(
        idx.iter()
            .filter_map(|&i| examples[i].rejected_ids.as_deref()),
    );
    seqs
}

/// The frozen backbone's pooled features of every sequence of a split, computed once in a fixed
/// order (longest first, token-budgeted batches) so they do not depend on the training order —
/// a resumed run gets bit-identical features.
pub struct FeatureCache {
    /// `[sequences, hidden]`: example i's text at row i; pairs' rejected texts at row n + i.
    features: Tensor,
    /// Row of each example's rejected text (pairs only).
    rejected_row: Vec<Option<u32>>,
}

impl FeatureCache {
    /// Runs the backbone over all of `examples` (no gradient: nothing it touches is trainable).
    pub fn build(
        model: &TrainableModel,
        examples: &[Encoded],
        mut progress: impl FnMut(usize),
    ) -> Result<Self> {
        let all: Vec<usize> = (0..examples.len()).collect();
        let seqs = sequences(examples, &all);
        let owned: Vec<Vec<u32>> = seqs.iter().map(|s| s.to_vec()).collect();
        let mut order: Vec<usize> = (0..owned.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(owned[i].len()));
        // Nothing here is differentiated: an inference forward gives the same numbers, faster.
        let forward = model.model.inference_forward(None)?;
        let mut rows: Vec<Option<Tensor>> = vec![None; owned.len()];
        let padded = forward.pads_rows();
        for batch in plan_batches(
            &order,
            &owned,
            FEATURE_BATCH_TOKENS,
            FEATURE_BATCH_ROWS,
            padded,
        ) {
            let refs: Vec<&[u32]> = batch.iter().map(|&i| owned[i].as_slice()).collect();
            // The packed CPU forward where it runs (no padding), else a padded batch.
            let pooled = forward.last_hidden(&refs)?.detach();
            for (row, &i) in batch.iter().enumerate() {
                rows[i] = Some(pooled.get(row)?);
            }
            progress(batch.len());
        }
        let rows: Vec<Tensor> = rows.into_iter().flatten().collect();
        let mut next = examples.len() as u32;
        let rejected_row = examples
            .iter()
            .map(|e| {
                e.rejected_ids.as_ref().map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        Ok(Self {
            features: Tensor::stack(&rows, 0)?,
            rejected_row,
        })
    }

    fn gather(&self, idx: &[usize]) -> Result<Tensor> {
        let mut rows: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        rows.extend(idx.iter().filter_map(|&i| self.rejected_row[i]));
        let index = Tensor::from_vec(rows.clone(), rows.len(), self.features.device())?;
        Ok(self.features.index_select(&index, 0)?)
    }
}

/// Reward logits `[sequences, outputs]` for examples `idx` (pairs: chosen rows then rejected rows).
pub fn logits(
    model: &TrainableModel,
    examples: &[Encoded],
    idx: &[usize],
    cache: Option<&FeatureCache>,
) -> Result<Tensor> {
    if let Some(cache) = cache {
        return Ok(model.model.head().forward(&cache.gather(idx)?)?);
    }
    let seqs = sequences(examples, idx);
    let (ids, lengths) = pad(&seqs, model.model.pad_id(), model.model.backbone().device())?;
    Ok(model.model.logits(&ids, &lengths)?)
}

/// The loss of a micro-batch given its logits.
pub fn loss_of(
    kind: LossKind,
    logits: &Tensor,
    examples: &[Encoded],
    idx: &[usize],
) -> Result<Tensor> {
    if kind == LossKind::Bt {
        let n = idx.len();
        let scores = logits.squeeze(1)?;
        return Ok(loss::bradley_terry(
            &scores.narrow(0, 0, n)?,
            &scores.narrow(0, n, n)?,
        )?);
    }
    let labels: Vec<u8> = idx.iter().map(|&i| examples[i].label).collect();
    Ok(match kind {
        LossKind::Ordinal => loss::ordinal_bce(logits, &labels)?,
        LossKind::Coral => loss::coral(logits, &labels)?,
        LossKind::Corn | LossKind::Bt => loss::corn(logits, &labels)?,
    })
}

/// Whether a mode trains only the head (and so can use a [`FeatureCache`]).
pub fn caches_features(mode: TrainMode) -> bool {
    mode == TrainMode::Head
}
