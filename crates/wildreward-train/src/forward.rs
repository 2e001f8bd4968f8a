//! Running the model on encoded examples: padding, the frozen part's feature cache, losses and
//! evaluation logits.

use crate::config::{LossKind, TrainMode};
use crate::data::Encoded;
use crate::error::Result;
use crate::feature_store::Entry;
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

/// What the frozen part of the model makes of every sequence of a split, computed once in a fixed
/// order (longest first, token-budgeted batches) so it does not depend on the training order — a
/// resumed run gets bit-identical inputs. Head-only training caches the pooled features (the
/// steps then cost the head alone); last-N-layers training caches the residual stream entering the
/// first trained block (the steps run only the trained blocks, forward and backward).
pub struct FeatureCache {
    frozen: Frozen,
    /// Row of each example's rejected text (pairs only): example i's text is row i.
    rejected_row: Vec<Option<u32>>,
}

enum Frozen {
    /// `[sequences, hidden]` final-norm states at the last token.
    Pooled(Tensor),
    /// Each sequence's residual stream `[tokens, hidden]` after the first `layer` blocks.
    Trunk { layer: usize, rows: Vec<Tensor> },
}

impl FeatureCache {
    /// Runs the frozen part of the model over all of `examples` (no gradient: nothing it touches
    /// is trainable): the whole backbone for head-only training, the blocks below the trained
    /// ones for last-N training.
    pub fn build(
        model: &TrainableModel,
        mode: TrainMode,
        examples: &[Encoded],
        store: Option<&FeatureStore>,
        mut progress: impl FnMut(usize),
    ) -> Result<Self> {
        let all: Vec<usize> = (0..examples.len()).collect();
        let seqs = sequences(examples, &all);
        let owned: Vec<Vec<u32>> = seqs.iter().map(|s| s.to_vec()).collect();
        let trunk_layer = match mode {
            TrainMode::LastN(n) => Some(model.model.config().num_hidden_layers.saturating_sub(n)),
            _ => None,
        };
        let what = trunk_layer.map_or("pooled".to_string(), |l| format!("trunk-{l}"));
        let entry = store.map(|s| Entry::new(&s.dir, &s.model_identity, &what, &owned));
        let rows = match entry.as_ref().and_then(Entry::load) {
            Some(rows) => {
                progress(owned.len());
                rows
            }
            None => {
                let rows = frozen_rows(model, &owned, trunk_layer, &mut progress)?;
                if let Some(entry) = &entry {
                    if let Err(e) = entry.save(&rows) {
                        eprintln!(
                            "wildreward train: WARNING: cannot keep the features in {}: {e} \
                             (training goes on; the next run computes them again)",
                            entry.path().display()
                        );
                    }
                }
                rows
            }
        };
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
        let device = model.model.backbone().device();
        let frozen = match trunk_layer {
            None => Frozen::Pooled(Tensor::stack(&rows, 0)?.to_device(device)?),
            Some(layer) => {
                let rows = rows
                    .into_iter()
                    .map(|t| t.to_device(device))
                    .collect::<candle_core::Result<_>>()?;
                Frozen::Trunk { layer, rows }
            }
        };
        Ok(Self {
            frozen,
            rejected_row,
        })
    }

    /// The cached rows of examples `idx` (pairs: chosen rows then rejected rows).
    fn rows(&self, idx: &[usize]) -> Vec<u32> {
        let mut rows: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        rows.extend(idx.iter().filter_map(|&i| self.rejected_row[i]));
        rows
    }

    /// Reward logits of examples `idx` from the cache: the head on the pooled features, or the
    /// trained blocks, the final norm and the head on the cached residual streams.
    fn logits(&self, model: &TrainableModel, idx: &[usize]) -> Result<Tensor> {
        let rows = self.rows(idx);
        match &self.frozen {
            Frozen::Pooled(features) => {
                let index = Tensor::from_vec(rows.clone(), rows.len(), features.device())?;
                Ok(model
                    .model
                    .head()
                    .forward(&features.index_select(&index, 0)?)?)
            }
            Frozen::Trunk {
                layer,
                rows: cached,
            } => {
                let picked: Vec<&Tensor> = rows.iter().map(|&r| &cached[r as usize]).collect();
                let lengths: Vec<usize> = picked
                    .iter()
                    .map(|t| t.dim(0))
                    .collect::<candle_core::Result<_>>()?;
                let longest = lengths.iter().copied().max().unwrap_or(1);
                let padded = picked
                    .iter()
                    .zip(&lengths)
                    .map(|(t, &n)| t.pad_with_zeros(0, 0, longest - n))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let x = Tensor::stack(&padded, 0)?;
                let backbone = model.model.backbone();
                let x = x.to_dtype(backbone.dtype())?;
                let pooled = backbone.forward_last_from(&x, &lengths, *layer)?;
                Ok(model.model.head().forward(&pooled)?)
            }
        }
    }
}

/// Where [`FeatureCache::build`] keeps what it computes between runs ([`crate::feature_store`]).
#[derive(Debug, Clone)]
pub struct FeatureStore {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// The frozen model's identity ([`wildreward_types::files::identity`]).
    pub model_identity: String,
}

/// The frozen part's output for each of `seqs` in their order: pooled features `[hidden]`, or the
/// stream `[tokens, hidden]` after `trunk_layer` blocks; computed longest first in token-budgeted
/// batches (a fixed order, so the numbers do not depend on the training order).
fn frozen_rows(
    model: &TrainableModel,
    seqs: &[Vec<u32>],
    trunk_layer: Option<usize>,
    progress: &mut impl FnMut(usize),
) -> Result<Vec<Tensor>> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
    // Nothing here is differentiated: an inference forward gives the same numbers, faster.
    let forward = model.model.inference_forward(None)?;
    let mut rows: Vec<Option<Tensor>> = vec![None; seqs.len()];
    let padded = forward.pads_rows();
    for batch in plan_batches(
        &order,
        seqs,
        FEATURE_BATCH_TOKENS,
        FEATURE_BATCH_ROWS,
        padded,
    ) {
        let refs: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
        match trunk_layer {
            // The packed CPU forward where it runs (no padding), else a padded batch.
            None => {
                let pooled = forward.last_hidden(&refs)?.detach();
                for (row, &i) in batch.iter().enumerate() {
                    rows[i] = Some(pooled.get(row)?);
                }
            }
            Some(layer) => {
                let trunk = forward.trunk(&refs, layer)?;
                for (row, &i) in batch.iter().enumerate() {
                    let shape = (trunk.row_len(row), trunk.hidden);
                    rows[i] = Some(Tensor::from_vec(trunk.row(row), shape, &Device::Cpu)?);
                }
            }
        }
        progress(batch.len());
    }
    Ok(rows.into_iter().flatten().collect())
}

/// Reward logits `[sequences, outputs]` for examples `idx` (pairs: chosen rows then rejected rows).
pub fn logits(
    model: &TrainableModel,
    examples: &[Encoded],
    idx: &[usize],
    cache: Option<&FeatureCache>,
) -> Result<Tensor> {
    if let Some(cache) = cache {
        return cache.logits(model, idx);
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

/// Whether a mode leaves a frozen part whose outputs a [`FeatureCache`] holds: head-only (the
/// pooled features) and last-N layers (the stream entering the first trained block).
pub fn caches_features(mode: TrainMode) -> bool {
    matches!(mode, TrainMode::Head | TrainMode::LastN(_))
}
