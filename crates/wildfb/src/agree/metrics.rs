//! Agreement between two labellings of the five raw categories: the confusion matrix, accuracy,
//! Cohen's κ (unweighted and linearly weighted, since the categories are ordered), and per-class
//! precision, recall and F1. Undefined figures (a class nobody predicted, κ when both sides put
//! everything in one class) are `None`, never a made-up 0 or 1.

use serde::Serialize;

/// The number of raw categories.
pub const K: usize = 5;

/// `counts[gold - 1][predicted - 1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// Rows are the gold category, columns the predicted one.
    pub counts: [[u64; K]; K],
}

impl Confusion {
    /// Counts `(gold, predicted)` pairs, both in 1..=5 (anything else is ignored: callers validate).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u8, u8)>) -> Self {
        let mut c = Self::default();
        for (g, p) in pairs {
            if (1..=K as u8).contains(&g) && (1..=K as u8).contains(&p) {
                c.counts[usize::from(g) - 1][usize::from(p) - 1] += 1;
            }
        }
        c
    }

    /// Pairs counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    fn row(&self, i: usize) -> u64 {
        self.counts[i].iter().sum()
    }

    fn column(&self, j: usize) -> u64 {
        self.counts.iter().map(|r| r[j]).sum()
    }

    /// Share of pairs on the diagonal; `None` with no pairs.
    pub fn accuracy(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| (0..K).map(|i| self.counts[i][i]).sum::<u64>() as f64 / n as f64)
    }

    /// Cohen's κ with disagreement weights `w(i, j)`: `1 - Σ w·observed / Σ w·expected`, the expected
    /// counts being the product of the margins. `None` when the expected disagreement is zero.
    fn kappa_with(&self, weight: impl Fn(usize, usize) -> f64) -> Option<f64> {
        let n = self.total() as f64;
        if n == 0.0 {
            return None;
        }
        let (mut observed, mut expected) = (0.0, 0.0);
        for i in 0..K {
            for j in 0..K {
                let w = weight(i, j);
                observed += w * self.counts[i][j] as f64;
                expected += w * self.row(i) as f64 * self.column(j) as f64 / n;
            }
        }
        (expected > 0.0).then(|| 1.0 - observed / expected)
    }

    /// Unweighted κ: every disagreement counts the same.
    pub fn kappa(&self) -> Option<f64> {
        self.kappa_with(|i, j| if i == j { 0.0 } else { 1.0 })
    }

    /// Linearly weighted κ: a disagreement costs `|i - j| / (K - 1)`, so 2-vs-3 costs less than 1-vs-5.
    pub fn kappa_linear(&self) -> Option<f64> {
        self.kappa_with(|i, j| i.abs_diff(j) as f64 / (K - 1) as f64)
    }

    /// Precision, recall and F1 of category `class` (1..=5).
    pub fn class(&self, class: u8) -> ClassScores {
        let k = usize::from(class.clamp(1, K as u8)) - 1;
        let tp = self.counts[k][k];
        let (gold, predicted) = (self.row(k), self.column(k));
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, gold);
        let f1 = match (gold + predicted, precision, recall) {
            (0, _, _) => None,
            (_, Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            _ => Some(0.0),
        };
        ClassScores {
            class,
            gold,
            predicted,
            precision,
            recall,
            f1,
        }
    }
}

/// One category's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScores {
    /// The raw category, 1..=5.
    pub class: u8,
    /// Items whose gold label is this category.
    pub gold: u64,
    /// Items predicted as this category.
    pub predicted: u64,
    /// Correct share of the predictions (`None`: never predicted).
    pub precision: Option<f64>,
    /// Found share of the gold items (`None`: no gold item).
    pub recall: Option<f64>,
    /// Harmonic mean of the two; 0 when one side exists and none is right, `None` when neither does.
    pub f1: Option<f64>,
}

/// The summary of one labelling against gold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// Items compared.
    pub n: u64,
    /// Exact agreement.
    pub accuracy: Option<f64>,
    /// Cohen's κ, unweighted.
    pub kappa: Option<f64>,
    /// Cohen's κ, linear weights.
    pub kappa_linear: Option<f64>,
    /// Mean F1 over the categories that occur (in gold or predictions).
    pub macro_f1: Option<f64>,
    /// Of the items predicted non-neutral, the share whose gold label is that same category.
    pub non_neutral_precision: Option<f64>,
    /// Items predicted non-neutral.
    pub non_neutral_predicted: u64,
    /// Per category, 1..=5.
    pub per_class: Vec<ClassScores>,
    /// The confusion matrix.
    pub confusion: Confusion,
}

impl Scores {
    /// Every figure of `confusion`.
    pub fn of(confusion: Confusion) -> Self {
        let per_class: Vec<ClassScores> = (1..=K as u8).map(|c| confusion.class(c)).collect();
        let f1s: Vec<f64> = per_class.iter().filter_map(|c| c.f1).collect();
        let neutral = 2;
        let (mut right, mut predicted) = (0, 0);
        for j in (0..K).filter(|&j| j != neutral) {
            predicted += confusion.column(j);
            right += confusion.counts[j][j];
        }
        Self {
            n: confusion.total(),
            accuracy: confusion.accuracy(),
            kappa: confusion.kappa(),
            kappa_linear: confusion.kappa_linear(),
            macro_f1: (!f1s.is_empty()).then(|| f1s.iter().sum::<f64>() / f1s.len() as f64),
            non_neutral_precision: (predicted > 0).then(|| right as f64 / predicted as f64),
            non_neutral_predicted: predicted,
            per_class,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    /// Worked by hand: 10 items, gold 1,1,2,2,3,3,3,3,4,5 against predictions 1,2,2,2,3,3,3,4,4,4.
    /// Diagonal 7 → accuracy 0.7. Margins gold (2,2,4,1,1), predicted (1,3,3,3,0):
    /// p_e = (2·1 + 2·3 + 4·3 + 1·3 + 1·0) / 100 = 0.23, κ = (0.7 − 0.23) / 0.77 = 0.61039.
    /// Linear weights: observed Σ|i−j|/4 over the three misses (1→2, 3→4, 5→4) = 3/4 → 0.075 per item;
    /// expected Σ_ij r_i c_j |i−j| / 4 / n² = 122/400 = 0.305 → κ_w = 1 − 0.075/0.305 = 0.754098.
    #[test]
    fn kappa_and_weighted_kappa_match_a_hand_computed_case() {
        let gold = [1, 1, 2, 2, 3, 3, 3, 3, 4, 5];
        let pred = [1, 2, 2, 2, 3, 3, 3, 4, 4, 4];
        let c = Confusion::from_pairs(gold.into_iter().zip(pred));
        assert!(close(c.accuracy(), 0.7));
        assert!(close(c.kappa(), 0.47 / 0.77), "{:?}", c.kappa());
        assert!(
            close(c.kappa_linear(), 1.0 - 0.075 / 0.305),
            "{:?}",
            c.kappa_linear()
        );
        // Class 2: predicted 3 (two right), gold 2 (both found): P 2/3, R 1, F1 0.8.
        let two = c.class(2);
        assert!(close(two.precision, 2.0 / 3.0) && close(two.recall, 1.0) && close(two.f1, 0.8));
        // Class 5: one gold item, never predicted: precision undefined, recall 0, F1 0.
        let five = c.class(5);
        assert_eq!(
            (five.precision, five.recall, five.f1),
            (None, Some(0.0), Some(0.0))
        );
        let s = Scores::of(c);
        // Non-neutral predictions: 1 (right), 2,2,2 (two right), 4,4,4 (one right) → 4/7.
        assert_eq!(s.non_neutral_predicted, 7);
        assert!(close(s.non_neutral_precision, 4.0 / 7.0));
    }

    #[test]
    fn constant_predictions_have_zero_kappa_and_identical_ones_one() {
        let gold = [1u8, 2, 3, 3, 3, 4, 5];
        let always_three = Confusion::from_pairs(gold.iter().map(|&g| (g, 3)));
        assert!(close(always_three.kappa(), 0.0));
        assert!(close(always_three.kappa_linear(), 0.0));
        let same = Confusion::from_pairs(gold.iter().map(|&g| (g, g)));
        assert!(close(same.kappa(), 1.0) && close(same.kappa_linear(), 1.0));
        // Both sides all neutral: chance agreement is total, κ is undefined.
        let degenerate = Confusion::from_pairs([(3, 3), (3, 3)]);
        assert_eq!(degenerate.kappa(), None);
        assert_eq!(Confusion::default().accuracy(), None);
    }
}
