//! The order examples are seen in: shuffled per epoch from the seed, then grouped by length so a
//! micro-batch pads little (HF's `group_by_length`: sort within windows of 50 batches, shuffle the
//! batches). A function of (seed, epoch) only, so a resumed run sees exactly the same batches.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Batches per sorting window.
const WINDOW_BATCHES: usize = 50;

/// The micro-batches of one epoch, as example indices; every example appears once.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * WINDOW_BATCHES) {
        let mut window = window.to_vec();
        // Stable sort on a shuffled window: ties keep their random order.
        window.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_once_and_reproducible() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 500 + 1).collect();
        let a = epoch_batches(&lengths, 8, 3, 0);
        let mut seen: Vec<usize> = a.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(a, epoch_batches(&lengths, 8, 3, 0));
        assert_ne!(a, epoch_batches(&lengths, 8, 3, 1));
    }

    #[test]
    fn batches_group_similar_lengths() {
        let lengths: Vec<usize> = (0..4000).map(|i| (i * 7919) % 2000 + 1).collect();
        let spread = |bs: &[Vec<usize>]| -> usize {
            bs.iter()
                .map(|b| {
                    let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
                    l.iter().max().unwrap() - l.iter().min().unwrap()
                })
                .sum()
        };
        let grouped = epoch_batches(&lengths, 16, 0, 0);
        let mut order: Vec<usize> = (0..4000).collect();
        order.shuffle(&mut StdRng::seed_from_u64(0));
        let random: Vec<Vec<usize>> = order.chunks(16).map(<[usize]>::to_vec).collect();
        assert!(spread(&grouped) * 5 < spread(&random));
    }
}
