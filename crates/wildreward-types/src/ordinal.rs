//! Ordinal maths shared by training, serving and evaluation: K-1 threshold logits → probabilities and
//! the reward `1 + Σ σ(z_k)` (the expected level), always in f32 whatever dtype produced the logits.

/// The logistic function, written so that neither tail overflows.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `P(y > k)` for each threshold k = 1..K-1: the sigmoid of each logit.
pub fn threshold_probs(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&z| sigmoid(z)).collect()
}

/// The reward of one example: `1 + Σ σ(z_k)`, in (1, K). With K-1 = 3 logits it lies in (1, 4).
///
/// This is the expected level under the per-level probabilities of [`level_probs`], and the value the
/// reference worker returns for 3- or 4-wide heads.
pub fn reward(logits: &[f32]) -> f32 {
    1.0 + logits.iter().map(|&z| sigmoid(z)).sum::<f32>()
}

/// Per-level probabilities `[1-p1, p1-p2, …, p_{K-2}-p_{K-1}, p_{K-1}]` (K values summing to 1).
///
/// The reference's head has independent thresholds (not CORAL's shared weight), so `p_k` need not fall
/// with k and a middle entry can be negative; this returns the differences as they are, like the
/// reference's `decode_ordinal_logits_to_expectation`, so that `Σ level·prob` equals [`reward`].
pub fn level_probs(logits: &[f32]) -> Vec<f32> {
    let p = threshold_probs(logits);
    let mut out = Vec::with_capacity(p.len() + 1);
    let mut above = 1.0f32;
    for &pk in &p {
        out.push(above - pk);
        above = pk;
    }
    out.push(above);
    out
}

/// The level (1..=K) nearest the expected level: the prediction used for accuracy and confusion
/// matrices.
pub fn predicted_level(logits: &[f32]) -> u8 {
    let k = logits.len() + 1;
    let r = reward(logits).round();
    r.clamp(1.0, k as f32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn reward_at_the_issue_anchors() {
        assert_eq!(reward(&[0.0, 0.0, 0.0]), 2.5);
        assert!(
            close(reward(&[20.0; 3]), 4.0, 1e-6),
            "{}",
            reward(&[20.0; 3])
        );
        assert!(
            close(reward(&[-20.0; 3]), 1.0, 1e-6),
            "{}",
            reward(&[-20.0; 3])
        );
    }

    #[test]
    fn sigmoid_is_finite_in_both_tails() {
        for z in [-1e4f32, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4] {
            let s = sigmoid(z);
            assert!(s.is_finite() && (0.0..=1.0).contains(&s), "σ({z}) = {s}");
        }
        assert_eq!(sigmoid(-1e4), 0.0);
        assert_eq!(sigmoid(1e4), 1.0);
    }

    #[test]
    fn expected_rank_matches_coral_pytorch_golden_values() {
        // anchors.md §4: 1+Σσ for these logits is [3.0000, 2.5354, 4.4056].
        let rows = [
            ([2.1f32, 1.8, -2.1, -1.8], 3.0000f32),
            ([1.9, -1.0, -1.5, -1.3], 2.5354),
            ([1.9, 1.8, 1.7, 1.6], 4.4056),
        ];
        for (logits, want) in rows {
            assert!(close(reward(&logits), want, 1e-4), "{logits:?}");
        }
    }

    #[test]
    fn level_probs_sum_to_one_and_give_the_reward_as_expectation() {
        for logits in [[0.3f32, -1.2, 2.0], [5.0, 4.0, -3.0], [-2.0, -2.0, -2.0]] {
            let probs = level_probs(&logits);
            assert_eq!(probs.len(), 4);
            assert!(close(probs.iter().sum::<f32>(), 1.0, 1e-6));
            let expectation: f32 = probs
                .iter()
                .enumerate()
                .map(|(i, p)| (i as f32 + 1.0) * p)
                .sum();
            assert!(close(expectation, reward(&logits), 1e-5));
        }
    }

    #[test]
    fn predicted_level_rounds_the_expectation() {
        assert_eq!(predicted_level(&[-20.0; 3]), 1);
        assert_eq!(predicted_level(&[20.0, -20.0, -20.0]), 2);
        assert_eq!(predicted_level(&[20.0; 3]), 4);
    }
}
