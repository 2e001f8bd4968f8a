//! Evaluation statistics shared by the trainer's periodic evaluation and `wildreward eval`, so both
//! report the same numbers: pair credit with ties counted half, reliability bins and expected
//! calibration error, ROC-AUC.

use serde::Serialize;

/// Credit of one pair: 1 when the chosen response scores higher, 0 when lower, ½ for a tie.
pub fn pair_outcome(chosen: f64, rejected: f64) -> f64 {
    if chosen > rejected {
        1.0
    } else if chosen < rejected {
        0.0
    } else {
        0.5
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower edge of the predicted-probability bin.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Their mean predicted probability (`None` when empty).
    pub confidence: Option<f64>,
    /// How often the event happened for them (`None` when empty).
    pub observed: Option<f64>,
}

/// `bins` equal-width bins over [0, 1] of (predicted probability, whether the event happened); a
/// probability of exactly 1 falls in the last bin.
pub fn reliability(predictions: &[(f64, bool)], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut members: Vec<Vec<(f64, bool)>> = vec![Vec::new(); bins];
    for &(p, happened) in predictions {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        members[b].push((p, happened));
    }
    members
        .into_iter()
        .enumerate()
        .map(|(b, m)| {
            let ps: Vec<f64> = m.iter().map(|x| x.0).collect();
            let hits: Vec<f64> = m.iter().map(|x| if x.1 { 1.0 } else { 0.0 }).collect();
            ReliabilityBin {
                lo: b as f64 / bins as f64,
                hi: (b + 1) as f64 / bins as f64,
                count: m.len(),
                confidence: mean(&ps),
                observed: mean(&hits),
            }
        })
        .collect()
}

/// Expected calibration error: Σ_b (n_b / N) · |observed_b − confidence_b| over non-empty bins.
pub fn ece(bins: &[ReliabilityBin]) -> Option<f64> {
    let total: usize = bins.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    Some(
        bins.iter()
            .filter_map(|b| Some(b.count as f64 * (b.observed? - b.confidence?).abs()))
            .sum::<f64>()
            / total as f64,
    )
}

/// ROC-AUC of scores against binary labels: the chance that a random positive outscores a random
/// negative, ties counted half (the Mann–Whitney statistic with average ranks). `None` unless both
/// classes are present.
pub fn roc_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let average_rank = (i + j + 2) as f64 / 2.0;
        rank_sum += average_rank * sorted[i..=j].iter().filter(|s| s.1).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn pair_credit_counts_ties_half() {
        assert_eq!(pair_outcome(2.0, 1.0), 1.0);
        assert_eq!(pair_outcome(1.0, 2.0), 0.0);
        assert_eq!(pair_outcome(1.0, 1.0), 0.5);
    }

    #[test]
    fn ece_of_hand_made_bins() {
        // Bin [0.1, 0.2): predictions 0.1 and 0.15 (mean 0.125), one hit → |0.5 − 0.125| = 0.375.
        // Bin [0.9, 1.0]: 0.9 and 1.0 (mean 0.95), both hit → 0.05.
        let preds = [(0.1, true), (0.15, false), (0.9, true), (1.0, true)];
        let bins = reliability(&preds, 10);
        assert_eq!(bins.len(), 10);
        assert_eq!(bins[1].count, 2);
        assert_eq!(bins[9].count, 2, "p = 1 falls in the last bin");
        assert!(close(bins[1].confidence.unwrap(), 0.125));
        assert!(close(bins[1].observed.unwrap(), 0.5));
        assert_eq!(bins[5].observed, None);
        assert!(close(ece(&bins).unwrap(), (2.0 * 0.375 + 2.0 * 0.05) / 4.0));
        // Perfect calibration: ECE 0.
        let perfect = [(0.25, true), (0.25, false), (0.25, false), (0.25, false)];
        assert!(close(ece(&reliability(&perfect, 10)).unwrap(), 0.0));
        assert_eq!(ece(&reliability(&[], 10)), None);
    }

    #[test]
    fn auc_counts_ordered_pairs_and_half_ties() {
        assert_eq!(roc_auc(&[(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(roc_auc(&[(2.0, false), (1.0, true)]), Some(0.0));
        // Positives {3, 1}, negatives {2, 1}: 3>2 ✓, 3>1 ✓, 1<2 ✗, 1=1 ½ → 2.5 / 4.
        let s = [(3.0, true), (1.0, true), (2.0, false), (1.0, false)];
        assert!(close(roc_auc(&s).unwrap(), 0.625));
        assert_eq!(roc_auc(&[(1.0, true)]), None);
    }
}
