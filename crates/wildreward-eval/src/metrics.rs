//! The metrics, as plain functions over numbers (no model, no I/O), each pinned by hand-computed
//! cases below: pairwise accuracy with ties counted half, RM-Bench's 3×3 style matrix, bootstrap
//! intervals, the paper's threshold curve, ECE and reliability bins, ROC-AUC, confusion matrices.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

// Shared with the trainer's evaluation (one implementation of each statistic).
pub use wildreward_types::metrics::{ece, pair_outcome, reliability, roc_auc, ReliabilityBin};

/// The mean, or `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// How units are pooled into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over all units together (JudgeBench's official micro-average, HH overall).
    Micro,
    /// The mean of the groups' means (RM-Bench's overall: the mean of its domain scores).
    Macro,
}

/// The pooled statistic of `groups` (each a list of per-unit scores); empty groups are ignored.
pub fn pooled(groups: &[Vec<f64>], pooling: Pooling) -> Option<f64> {
    match pooling {
        Pooling::Micro => mean(&groups.concat()),
        Pooling::Macro => mean(&groups.iter().filter_map(|g| mean(g)).collect::<Vec<_>>()),
    }
}

/// A 95% percentile-bootstrap interval of [`pooled`]: each resample draws every group's units with
/// replacement within that group (stratified, so group sizes stay fixed). Seeded: same input, same
/// interval. `None` when there are no units.
pub fn bootstrap_ci(
    groups: &[Vec<f64>],
    pooling: Pooling,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    pooled(groups, pooling)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    let mut drawn: Vec<Vec<f64>> = groups.iter().map(|g| Vec::with_capacity(g.len())).collect();
    for _ in 0..resamples.max(1) {
        for (group, out) in groups.iter().zip(drawn.iter_mut()) {
            out.clear();
            out.extend((0..group.len()).map(|_| group[rng.random_range(0..group.len())]));
        }
        stats.extend(pooled(&drawn, pooling));
    }
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((stats.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// One point of the threshold curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdPoint {
    /// Pairs count only when |r_chosen − r_rejected| ≥ this.
    pub threshold: f64,
    /// Accuracy over those pairs (`None` when none is left).
    pub accuracy: Option<f64>,
    /// Share of all pairs that are left.
    pub coverage: f64,
    /// How many pairs are left.
    pub pairs: usize,
}

/// The paper's calibration curve: for t = 0, step, 2·step, … up to `max`, the accuracy and coverage
/// of the pairs whose reward gap `|Δ|` is at least t. `deltas` are `r_chosen − r_rejected`.
pub fn threshold_curve(deltas: &[f64], step: f64, max: f64) -> Vec<ThresholdPoint> {
    let points = (max / step).round() as usize;
    (0..=points)
        .map(|k| {
            // From the integer k, so 0.02·k does not drift; a hair of slack for 0.1 + 0.2 style sums.
            let threshold = (k as f64 * step * 1e6).round() / 1e6;
            let kept: Vec<f64> = deltas
                .iter()
                .filter(|d| d.abs() >= threshold - 1e-12)
                .map(|&d| pair_outcome(d, 0.0))
                .collect();
            ThresholdPoint {
                threshold,
                accuracy: mean(&kept),
                coverage: if deltas.is_empty() {
                    0.0
                } else {
                    kept.len() as f64 / deltas.len() as f64
                },
                pairs: kept.len(),
            }
        })
        .collect()
}

/// RM-Bench's accuracy matrix: `cells[i][j]` = share of prompts where chosen style i beats rejected
/// style j (0 concise, 1 detailed plain, 2 detailed markdown; ties half).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StyleMatrix {
    /// The 3×3 accuracies.
    pub cells: [[f64; 3]; 3],
    /// Prompts averaged.
    pub prompts: usize,
}

/// The 9 outcomes of one RM-Bench prompt from its 3 chosen and 3 rejected rewards.
pub fn prompt_outcomes(chosen: [f64; 3], rejected: [f64; 3]) -> [[f64; 3]; 3] {
    let mut cells = [[0.0; 3]; 3];
    for (i, row) in cells.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = pair_outcome(chosen[i], rejected[j]);
        }
    }
    cells
}

/// Hard: the chosen answer is plainer than the rejected one (upper-right triangle, j > i).
pub fn hard(cells: &[[f64; 3]; 3]) -> f64 {
    (cells[0][1] + cells[0][2] + cells[1][2]) / 3.0
}

/// Normal: the same style on both sides (the diagonal).
pub fn normal(cells: &[[f64; 3]; 3]) -> f64 {
    (cells[0][0] + cells[1][1] + cells[2][2]) / 3.0
}

/// Easy: the chosen answer is more stylish (lower-left triangle, j < i).
pub fn easy(cells: &[[f64; 3]; 3]) -> f64 {
    (cells[1][0] + cells[2][0] + cells[2][1]) / 3.0
}

impl StyleMatrix {
    /// The mean matrix of per-prompt outcome matrices.
    pub fn of(prompts: &[[[f64; 3]; 3]]) -> Self {
        let mut cells = [[0.0; 3]; 3];
        for p in prompts {
            for i in 0..3 {
                for j in 0..3 {
                    cells[i][j] += p[i][j];
                }
            }
        }
        if !prompts.is_empty() {
            for row in &mut cells {
                for c in row.iter_mut() {
                    *c /= prompts.len() as f64;
                }
            }
        }
        Self {
            cells,
            prompts: prompts.len(),
        }
    }

    /// See [`easy`].
    pub fn easy(&self) -> f64 {
        easy(&self.cells)
    }

    /// See [`normal`].
    pub fn normal(&self) -> f64 {
        normal(&self.cells)
    }

    /// See [`hard`].
    pub fn hard(&self) -> f64 {
        hard(&self.cells)
    }

    /// The mean of all 9 cells (= the mean of easy, normal and hard).
    pub fn average(&self) -> f64 {
        self.cells.iter().flatten().sum::<f64>() / 9.0
    }
}

/// `matrix[actual - 1][predicted - 1]` counts over levels 1..=k (values outside are ignored).
pub fn confusion(pairs: &[(u8, u8)], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; k]; k];
    for &(actual, predicted) in pairs {
        let (a, p) = (actual as usize, predicted as usize);
        if (1..=k).contains(&a) && (1..=k).contains(&p) {
            m[a - 1][p - 1] += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ties_count_half() {
        let outcomes: Vec<f64> = [(2.0, 1.0), (1.0, 2.0), (1.5, 1.5), (3.0, 0.0)]
            .iter()
            .map(|&(c, r)| pair_outcome(c, r))
            .collect();
        assert_eq!(outcomes, vec![1.0, 0.0, 0.5, 1.0]);
        assert!(close(mean(&outcomes).unwrap(), 2.5 / 4.0));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn micro_and_macro_pooling_differ_as_by_hand() {
        let groups = vec![vec![1.0, 1.0, 1.0, 0.0], vec![0.0, 1.0]];
        assert!(close(pooled(&groups, Pooling::Micro).unwrap(), 4.0 / 6.0));
        assert!(close(
            pooled(&groups, Pooling::Macro).unwrap(),
            (0.75 + 0.5) / 2.0
        ));
    }

    #[test]
    fn bootstrap_bounds_contain_the_estimate_and_are_seeded() {
        let units: Vec<f64> = (0..200)
            .map(|i| if i % 10 < 7 { 1.0 } else { 0.0 })
            .collect();
        let groups = vec![units.clone(), vec![0.5, 1.0, 0.0]];
        for pooling in [Pooling::Micro, Pooling::Macro] {
            let point = pooled(&groups, pooling).unwrap();
            let (lo, hi) = bootstrap_ci(&groups, pooling, 1000, 7).unwrap();
            assert!(lo <= point && point <= hi, "{lo} {point} {hi}");
            assert!(lo < hi);
            assert_eq!(bootstrap_ci(&groups, pooling, 1000, 7), Some((lo, hi)));
        }
        // 200 Bernoulli(0.7) units: the normal-approximation half-width is 1.96·√(.21/200) ≈ 0.064.
        let (lo, hi) = bootstrap_ci(&[units], Pooling::Micro, 2000, 1).unwrap();
        assert!((hi - lo - 0.127).abs() < 0.03, "{lo} {hi}");
        assert_eq!(
            bootstrap_ci(&[vec![1.0; 5]], Pooling::Micro, 100, 0),
            Some((1.0, 1.0))
        );
        assert_eq!(bootstrap_ci(&[vec![]], Pooling::Micro, 100, 0), None);
    }

    #[test]
    fn threshold_curve_keeps_pairs_with_large_gaps() {
        // Δ: a tie, two small wins, a small loss, a big win.
        let deltas = [0.0, 0.01, 0.03, -0.05, 0.5];
        let curve = threshold_curve(&deltas, 0.02, 1.0);
        assert_eq!(curve.len(), 51);
        assert_eq!(curve[0].pairs, 5);
        assert!(close(
            curve[0].accuracy.unwrap(),
            (0.5 + 1.0 + 1.0 + 0.0 + 1.0) / 5.0
        ));
        assert!(close(curve[0].coverage, 1.0));
        // t = 0.02: 0.03, -0.05, 0.5 remain.
        assert_eq!(curve[1].pairs, 3);
        assert!(close(curve[1].accuracy.unwrap(), 2.0 / 3.0));
        // t = 0.06 … 0.5: only the big win; exactly 0.5 still counts (≥).
        assert!(close(curve[3].accuracy.unwrap(), 1.0));
        assert_eq!(curve[25].threshold, 0.5);
        assert_eq!(curve[25].pairs, 1);
        assert_eq!(curve[26].pairs, 0);
        assert_eq!(curve[26].accuracy, None);
        assert!(close(curve[26].coverage, 0.0));
    }

    #[test]
    fn rm_bench_matrix_splits_into_easy_normal_hard() {
        // Rewards where style dominates: detailed markdown always wins.
        let chosen = [1.0, 2.0, 3.0];
        let rejected = [0.5, 1.5, 2.5];
        let cells = prompt_outcomes(chosen, rejected);
        assert_eq!(
            cells,
            [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]],
            "cells[i][j] = chosen style i vs rejected style j"
        );
        assert!(close(easy(&cells), 1.0));
        assert!(close(normal(&cells), 1.0));
        assert!(close(hard(&cells), 0.0));
        // A second prompt where every comparison ties: all cells ½.
        let tie = prompt_outcomes([1.0; 3], [1.0; 3]);
        let m = StyleMatrix::of(&[cells, tie]);
        assert_eq!(m.prompts, 2);
        assert!(close(m.cells[0][1], 0.25));
        assert!(close(m.easy(), 0.75));
        assert!(close(m.normal(), 0.75));
        assert!(close(m.hard(), 0.25));
        assert!(close(m.average(), (0.75 + 0.75 + 0.25) / 3.0));
    }

    #[test]
    fn confusion_matrix_rows_are_actual_levels() {
        let m = confusion(&[(1, 1), (1, 2), (4, 3), (4, 3), (2, 9)], 4);
        assert_eq!(m[0], vec![1, 1, 0, 0]);
        assert_eq!(m[3], vec![0, 0, 2, 0]);
        assert_eq!(
            m.iter().flatten().sum::<usize>(),
            4,
            "out-of-range levels are dropped"
        );
    }
}
