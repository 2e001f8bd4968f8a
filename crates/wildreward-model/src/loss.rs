//! Reward-model losses in numerically stable log-sigmoid form (candle's
//! `binary_cross_entropy_with_logit` takes `log(sigmoid(z))`, which is `log 0` for large |z|).

use candle_core::{DType, Result, Tensor};

/// `log σ(z) = min(z, 0) − log(1 + e^{−|z|})`, finite for every z, differentiable.
pub fn log_sigmoid(z: &Tensor) -> Result<Tensor> {
    let neg_abs = z.abs()?.neg()?;
    z.minimum(0.0)? - (neg_abs.exp()? + 1.0)?.log()?
}

/// Ordinal targets `[batch, K-1]` (`1` where `label > k`) for labels in `1..=K`.
pub fn threshold_targets(
    labels: &[u8],
    thresholds: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let data: Vec<f32> = labels
        .iter()
        .flat_map(|&y| (1..=thresholds).map(move |k| if usize::from(y) > k { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (labels.len(), thresholds), device)
}

/// `−[t·log σ(z) + (1−t)·log(1−σ(z))]` per element, with `log(1−σ(z)) = log σ(z) − z`.
fn bce_terms(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let ls = log_sigmoid(logits)?;
    let pos = (&ls * targets)?;
    let neg = ((&ls - logits)? * (1.0 - targets)?)?;
    (pos + neg)?.neg()
}

/// The reference's loss: mean binary cross-entropy over batch × K-1 thresholds (HF's
/// `BCEWithLogitsLoss` under `multi_label_classification`). `logits` `[batch, K-1]` f32, labels 1..=K.
pub fn ordinal_bce(logits: &Tensor, labels: &[u8]) -> Result<Tensor> {
    let t = threshold_targets(labels, logits.dim(1)?, logits.device())?.to_dtype(logits.dtype())?;
    bce_terms(logits, &t)?.mean_all()
}

/// coral-pytorch's `coral_loss`: the per-example sum over thresholds, averaged over the batch.
pub fn coral(logits: &Tensor, labels: &[u8]) -> Result<Tensor> {
    let t = threshold_targets(labels, logits.dim(1)?, logits.device())?.to_dtype(logits.dtype())?;
    bce_terms(logits, &t)?.sum(1)?.mean_all()
}

/// coral-pytorch's `corn_loss`: threshold k is trained only on examples with label ≥ k (0-based: y ≥
/// k), target `y > k`; the sum is divided by the number of (example, threshold) pairs used. Labels
/// here are 1..=K (so y = label − 1).
pub fn corn(logits: &Tensor, labels: &[u8]) -> Result<Tensor> {
    let thresholds = logits.dim(1)?;
    let (mut mask, mut target) = (vec![], vec![]);
    for &label in labels {
        let y = usize::from(label) - 1;
        for k in 0..thresholds {
            mask.push(if y >= k { 1f32 } else { 0.0 });
            target.push(if y > k { 1f32 } else { 0.0 });
        }
    }
    let dev = logits.device();
    let shape = (labels.len(), thresholds);
    let used: f32 = mask.iter().sum();
    let mask = Tensor::from_vec(mask, shape, dev)?.to_dtype(logits.dtype())?;
    let target = Tensor::from_vec(target, shape, dev)?.to_dtype(logits.dtype())?;
    (bce_terms(logits, &target)? * mask)?.sum_all()? / f64::from(used.max(1.0))
}

/// Bradley-Terry: `mean(−log σ(r_chosen − r_rejected))`.
pub fn bradley_terry(chosen: &Tensor, rejected: &Tensor) -> Result<Tensor> {
    log_sigmoid(&(chosen - rejected)?)?.neg()?.mean_all()
}

/// The f32 scalar of a 0-d tensor.
pub fn scalar(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?.to_scalar::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn golden_logits() -> Tensor {
        Tensor::new(
            &[
                [2.1f32, 1.8, -2.1, -1.8],
                [1.9, -1.0, -1.5, -1.3],
                [1.9, 1.8, 1.7, 1.6],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn coral_matches_coral_pytorch_golden_values() {
        // anchors.md §4: levels [[1,1,0,0],[1,0,0,0],[1,1,1,1]] → mean 0.6920 (labels 3, 2, 5 of K=5).
        let loss = scalar(&coral(&golden_logits(), &[3, 2, 5]).unwrap()).unwrap();
        assert!((loss - 0.6920).abs() < 1e-4, "{loss}");
        // The reference's mean BCE is the same sum divided by K-1.
        let bce = scalar(&ordinal_bce(&golden_logits(), &[3, 2, 5]).unwrap()).unwrap();
        assert!((bce - 0.6920 / 4.0).abs() < 1e-4, "{bce}");
    }

    #[test]
    fn corn_matches_coral_pytorch_golden_value() {
        // corn_loss(logits, y=[0,1,2], K=5) = 0.8047 → labels 1, 2, 3 here.
        let loss = scalar(&corn(&golden_logits(), &[1, 2, 3]).unwrap()).unwrap();
        assert!((loss - 0.8047).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn losses_stay_finite_at_extreme_logits() {
        let z = Tensor::new(&[[1e4f32, -1e4, 80.0]], &Device::Cpu).unwrap();
        for loss in [
            ordinal_bce(&z, &[1]).unwrap(),
            coral(&z, &[4]).unwrap(),
            corn(&z, &[2]).unwrap(),
        ] {
            let v = scalar(&loss).unwrap();
            assert!(v.is_finite(), "{v}");
        }
        let ls = log_sigmoid(&Tensor::new(&[-1e4f32, 0.0, 1e4], &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ls[0], -1e4);
        assert!((ls[1] + std::f32::consts::LN_2).abs() < 1e-6);
        assert_eq!(ls[2], 0.0);
    }

    #[test]
    fn bradley_terry_is_log_two_at_a_tie() {
        let c = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        let loss = scalar(&bradley_terry(&c, &c).unwrap()).unwrap();
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-6);
    }
}
