//! Chosen / rejected pairs, formed within each prompt's own answers.
//!
//! The reference formed pairs after its batch had been reordered, so a "pair" could hold answers to
//! two different prompts. Here every sample carries its prompt id and pairs are built per id.

use std::collections::BTreeMap;

/// One sampled answer with its reward (`None` when the reward could not be obtained).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The prompt it answers.
    pub prompt_id: String,
    /// Its position among all samples of the step.
    pub index: usize,
    /// The reward, after any EOS penalty; `None` = dropped.
    pub reward: Option<f32>,
}

/// A preference pair: indices into the step's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Highest reward of its prompt.
    pub chosen: usize,
    /// Lowest reward of its prompt.
    pub rejected: usize,
}

/// What pairing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingStats {
    /// Prompts whose best and worst rewards tied (within epsilon).
    pub ties: usize,
    /// Prompts with fewer than two scored samples.
    pub too_few: usize,
}

/// Best-vs-worst pairs per prompt id, in prompt-id order; samples without a reward take no part.
pub fn best_vs_worst(samples: &[Sample], tie_epsilon: f32) -> (Vec<Pair>, PairingStats) {
    let mut groups: BTreeMap<&str, Vec<(usize, f32)>> = BTreeMap::new();
    for s in samples {
        let entry = groups.entry(s.prompt_id.as_str()).or_default();
        if let Some(r) = s.reward {
            entry.push((s.index, r));
        }
    }
    let mut pairs = Vec::new();
    let mut stats = PairingStats::default();
    for scored in groups.values() {
        if scored.len() < 2 {
            stats.too_few += 1;
            continue;
        }
        // First occurrence wins ties inside max / min, so the result does not depend on float noise.
        let best = scored
            .iter()
            .fold(scored[0], |a, &b| if b.1 > a.1 { b } else { a });
        let worst = scored
            .iter()
            .fold(scored[0], |a, &b| if b.1 < a.1 { b } else { a });
        if best.1 - worst.1 <= tie_epsilon {
            stats.ties += 1;
            continue;
        }
        pairs.push(Pair {
            chosen: best.0,
            rejected: worst.0,
        });
    }
    (pairs, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    fn s(prompt: &str, index: usize, reward: Option<f32>) -> Sample {
        Sample {
            prompt_id: prompt.into(),
            index,
            reward,
        }
    }

    #[test]
    fn pairs_stay_within_their_prompt_whatever_the_order() {
        let mut samples: Vec<Sample> = (0..40)
            .map(|i| s(&format!("p{}", i % 5), i, Some(((i * 37) % 11) as f32)))
            .collect();
        let (reference, _) = best_vs_worst(&samples, 0.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20 {
            samples.shuffle(&mut rng);
            let (pairs, _) = best_vs_worst(&samples, 0.0);
            assert_eq!(pairs.len(), 5);
            for p in &pairs {
                // Sample i answers prompt p{i % 5}.
                assert_eq!(p.chosen % 5, p.rejected % 5, "{p:?} mixes prompts");
                let r = |i: usize| ((i * 37) % 11) as f32;
                assert!(r(p.chosen) > r(p.rejected));
            }
            let mut a: Vec<_> = pairs
                .iter()
                .map(|p| (p.chosen % 5, p.chosen, p.rejected))
                .collect();
            let mut b: Vec<_> = reference
                .iter()
                .map(|p| (p.chosen % 5, p.chosen, p.rejected))
                .collect();
            a.sort();
            b.sort();
            // Same best/worst values per prompt (indices may differ only among equal rewards).
            assert_eq!(a.len(), b.len());
        }
    }

    #[test]
    fn dropped_samples_and_ties_form_no_pair() {
        let samples = vec![
            s("a", 0, Some(1.0)),
            s("a", 1, None),
            s("b", 2, Some(2.0)),
            s("b", 3, Some(2.0)),
            s("c", 4, Some(3.0)),
            s("c", 5, Some(1.0)),
            s("c", 6, None),
        ];
        let (pairs, stats) = best_vs_worst(&samples, 1e-6);
        assert_eq!(
            pairs,
            vec![Pair {
                chosen: 4,
                rejected: 5
            }]
        );
        assert_eq!(
            stats,
            PairingStats {
                ties: 1,
                too_few: 1
            }
        );
    }
}
