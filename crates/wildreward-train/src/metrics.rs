//! What evaluation on the test split reports while training: accuracy of the rounded expected level,
//! MAE, per-threshold accuracy, ECE (10 bins) of the threshold probabilities and the pairwise
//! ordering AUC for pointwise data; accuracy and mean margin for preference pairs.

use serde::Serialize;
use wildreward_model::head::reward_of;
use wildreward_model::HeadKind;
use wildreward_types::metrics::{ece, pair_outcome, reliability};

/// `P(y > k)` for each threshold k, as the head defines it.
pub fn above_probs(kind: HeadKind, logits: &[f32]) -> Vec<f32> {
    let sigmoid = wildreward_types::ordinal::sigmoid;
    match kind {
        HeadKind::Corn => logits
            .iter()
            .scan(1.0f32, |p, &z| {
                *p *= sigmoid(z);
                Some(*p)
            })
            .collect(),
        _ => logits.iter().map(|&z| sigmoid(z)).collect(),
    }
}

/// Pointwise evaluation results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointwiseMetrics {
    /// Examples evaluated.
    pub n: usize,
    /// Mean loss on the split.
    pub loss: f64,
    /// Fraction whose rounded expected level equals the label.
    pub accuracy: f64,
    /// Mean |expected level − label|.
    pub mae: f64,
    /// Per threshold k: fraction where `P(y > k) > 0.5` agrees with `label > k`.
    pub threshold_accuracy: Vec<f64>,
    /// Expected calibration error of the threshold probabilities (10 equal-width bins).
    pub ece: f64,
    /// Over pairs of examples with different labels: how often the higher label has the higher
    /// reward (ties count half).
    pub pairwise_auc: f64,
}

/// How often the example with the higher label has the higher score, over all pairs with
/// different labels (ties in score count half); 0.5 when no such pair exists.
pub fn pairwise_auc(scores: &[f32], labels: &[u8]) -> f64 {
    let (mut good, mut total) = (0f64, 0u64);
    for i in 0..scores.len() {
        for j in 0..scores.len() {
            if labels[i] > labels[j] {
                total += 1;
                good += match scores[i].partial_cmp(&scores[j]) {
                    Some(std::cmp::Ordering::Greater) => 1.0,
                    Some(std::cmp::Ordering::Equal) => 0.5,
                    _ => 0.0,
                };
            }
        }
    }
    if total == 0 {
        0.5
    } else {
        good / total as f64
    }
}

/// Metrics of a head's logits (one row per example) against levels 1..=K.
pub fn pointwise(
    kind: HeadKind,
    logits: &[Vec<f32>],
    labels: &[u8],
    loss: f64,
) -> PointwiseMetrics {
    let n = logits.len();
    let k = logits.first().map_or(0, Vec::len);
    let mut correct = 0usize;
    let mut abs = 0f64;
    let mut thr = vec![0usize; k];
    let mut points = Vec::with_capacity(n * k);
    let mut rewards = Vec::with_capacity(n);
    for (row, &label) in logits.iter().zip(labels) {
        let (reward, _) = reward_of(kind, row);
        rewards.push(reward);
        let level = reward.round().clamp(1.0, (k + 1) as f32) as u8;
        correct += usize::from(level == label);
        abs += (reward - label as f32).abs() as f64;
        for (t, p) in above_probs(kind, row).into_iter().enumerate() {
            let y = label as usize > t + 1;
            thr[t] += usize::from((p > 0.5) == y);
            points.push((p as f64, y));
        }
    }
    let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    PointwiseMetrics {
        n,
        loss,
        accuracy: frac(correct),
        mae: if n == 0 { 0.0 } else { abs / n as f64 },
        threshold_accuracy: thr.into_iter().map(frac).collect(),
        ece: ece(&reliability(&points, 10)).unwrap_or(0.0),
        pairwise_auc: pairwise_auc(&rewards, labels),
    }
}

/// Preference-pair evaluation results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairMetrics {
    /// Pairs evaluated.
    pub n: usize,
    /// Mean loss on the split.
    pub loss: f64,
    /// Fraction where the chosen answer scores higher (ties count half).
    pub accuracy: f64,
    /// Mean chosen − rejected reward.
    pub mean_margin: f64,
}

/// Metrics of (chosen, rejected) rewards.
pub fn pairs(chosen: &[f32], rejected: &[f32], loss: f64) -> PairMetrics {
    let n = chosen.len();
    let mut acc = 0f64;
    let mut margin = 0f64;
    for (c, r) in chosen.iter().zip(rejected) {
        acc += pair_outcome(*c as f64, *r as f64);
        margin += (c - r) as f64;
    }
    let d = n.max(1) as f64;
    PairMetrics {
        n,
        loss,
        accuracy: acc / d,
        mean_margin: margin / d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(pairwise_auc(&[3.0, 2.0, 1.0], &[3, 2, 1]), 1.0);
        assert_eq!(pairwise_auc(&[1.0, 2.0, 3.0], &[3, 2, 1]), 0.0);
        assert_eq!(pairwise_auc(&[1.0, 1.0], &[2, 1]), 0.5);
        assert_eq!(pairwise_auc(&[1.0, 1.0], &[2, 2]), 0.5);
    }

    #[test]
    fn pointwise_metrics_by_hand() {
        // Ordinal, K-1 = 3. Row 1: all logits +10 → reward ≈ 4, label 4. Row 2: all −10 → ≈ 1,
        // label 2 (wrong by one).
        let logits = vec![vec![10.0; 3], vec![-10.0; 3]];
        let m = pointwise(HeadKind::Ordinal, &logits, &[4, 2], 0.0);
        assert_eq!(m.accuracy, 0.5);
        assert!((m.mae - 0.5).abs() < 1e-3);
        assert_eq!(m.threshold_accuracy, vec![0.5, 1.0, 1.0]);
        assert_eq!(m.pairwise_auc, 1.0);
        // CORN chains: logits [10, -10, -10] → P(>1) ≈ 1, P(>2) ≈ 0 → reward ≈ 2.
        let p = above_probs(HeadKind::Corn, &[10.0, -10.0, 10.0]);
        assert!(p[0] > 0.99 && p[1] < 0.01 && p[2] < 0.01);
    }

    #[test]
    fn pair_metrics() {
        let m = pairs(&[2.0, 1.0, 0.5], &[1.0, 1.0, 1.0], 0.1);
        assert_eq!(m.accuracy, 0.5);
        assert!((m.mean_margin - (1.0 + 0.0 - 0.5) / 3.0).abs() < 1e-9);
    }
}
