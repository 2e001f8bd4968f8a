//! Sampling answers with the KV cache: the prompt is run once, its cache shared by the `n` samples,
//! then one token per step for every unfinished sample (greedy, or temperature + top-p).

use crate::forward::Forward;
use candle_core::Result;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// How to sample.
#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// Most tokens per answer.
    pub max_new_tokens: usize,
    /// 0 for greedy decoding.
    pub temperature: f32,
    /// Nucleus: sample from the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f32,
    /// Random seed (answers are reproducible for a seed).
    pub seed: u64,
    /// Tokens that end an answer (EOS).
    pub stop_tokens: Vec<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: vec![],
        }
    }
}

/// One sampled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The answer's tokens (without the stop token).
    pub tokens: Vec<u32>,
    /// Whether it ended with a stop token (rather than running out of `max_new_tokens`).
    pub ended_with_eos: bool,
}

/// Samples `n` answers to `prompt` (token ids) on `forward` (packed or candle: the same loop).
pub fn generate(
    forward: &dyn Forward,
    prompt: &[u32],
    n: usize,
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    if prompt.is_empty() || n == 0 {
        candle_core::bail!("generate needs a non-empty prompt and n > 0");
    }
    let (mut decoder, first) = forward.prefill(prompt, n, params.max_new_tokens)?;
    let vocab = first.len();
    sample_loop(vec![first; n], n, params, |next| {
        Ok(decoder
            .step(next)?
            .chunks(vocab)
            .map(<[f32]>::to_vec)
            .collect())
    })
}

/// Picks a token per sample from `logits`, feeds them through `step` (the next logits), until every
/// sample stopped or `max_new_tokens` were drawn.
fn sample_loop(
    mut logits: Vec<Vec<f32>>,
    n: usize,
    params: &SamplingParams,
    mut step: impl FnMut(&[u32]) -> Result<Vec<Vec<f32>>>,
) -> Result<Vec<Generation>> {
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut out: Vec<Generation> = (0..n)
        .map(|_| Generation {
            tokens: vec![],
            ended_with_eos: false,
        })
        .collect();
    let mut done = vec![false; n];
    for drawn in 0..params.max_new_tokens {
        let mut next = Vec::with_capacity(n);
        for (i, row) in logits.iter().enumerate() {
            let tok = pick(row, params, &mut rng);
            if !done[i] {
                if params.stop_tokens.contains(&tok) {
                    done[i] = true;
                    out[i].ended_with_eos = true;
                } else {
                    out[i].tokens.push(tok);
                }
            }
            next.push(tok);
        }
        // The last draw needs no further forward pass.
        if done.iter().all(|&d| d) || drawn + 1 == params.max_new_tokens {
            break;
        }
        logits = step(&next)?;
    }
    Ok(out)
}

/// Chooses the next token from one row of logits.
fn pick(logits: &[f32], params: &SamplingParams, rng: &mut StdRng) -> u32 {
    if params.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &z)| (i as u32, ((z - max) / params.temperature).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    if params.top_p < 1.0 {
        let keep = nucleus(&mut probs, params.top_p);
        probs.truncate(keep);
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f32>() * total;
    for &(tok, p) in &probs {
        r -= p;
        if r <= 0.0 {
            return tok;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

/// Orders the most probable tokens first and returns how many of them the nucleus keeps (the fewest
/// whose mass reaches `top_p`). Selects the top k (k growing 8× at a time) instead of sorting the
/// whole vocabulary: the nucleus is usually a few dozen tokens out of tens of thousands.
fn nucleus(probs: &mut [(u32, f32)], top_p: f32) -> usize {
    let descending = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
    let mut k = probs.len().min(64);
    loop {
        if k < probs.len() {
            probs.select_nth_unstable_by(k - 1, descending);
        }
        probs[..k].sort_by(descending);
        let mut acc = 0.0;
        if let Some(i) = probs[..k].iter().position(|p| {
            acc += p.1;
            acc >= top_p
        }) {
            return i + 1;
        }
        if k == probs.len() {
            return k;
        }
        k = (k * 8).min(probs.len());
    }
}

/// The index of the largest logit (first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &z) in logits.iter().enumerate() {
        if z > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nucleus_is_what_a_full_sort_keeps() {
        let mut rng = StdRng::seed_from_u64(1);
        for (len, top_p) in [(10, 0.5), (1000, 0.9), (5000, 0.999), (5000, 0.2)] {
            let raw: Vec<f32> = (0..len).map(|_| rng.random::<f32>().powi(8)).collect();
            let total: f32 = raw.iter().sum();
            let mut probs: Vec<(u32, f32)> = raw
                .iter()
                .enumerate()
                .map(|(i, &p)| (i as u32, p / total))
                .collect();
            let mut sorted = probs.clone();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
            let mut acc = 0.0;
            let want = sorted
                .iter()
                .position(|p| {
                    acc += p.1;
                    acc >= top_p
                })
                .map_or(len, |i| i + 1);
            let keep = nucleus(&mut probs, top_p);
            assert_eq!(keep, want, "len {len} top_p {top_p}");
            assert_eq!(&probs[..keep], &sorted[..keep]);
        }
    }

    #[test]
    fn greedy_picks_the_argmax_and_top_p_keeps_the_nucleus() {
        let mut rng = StdRng::seed_from_u64(0);
        let greedy = SamplingParams::default();
        assert_eq!(pick(&[0.1, 3.0, 2.9], &greedy, &mut rng), 1);
        // With top_p 0.5 only the dominant token can be drawn.
        let nucleus = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..SamplingParams::default()
        };
        for _ in 0..200 {
            assert_eq!(pick(&[0.0, 5.0, 0.0, 0.0], &nucleus, &mut rng), 1);
        }
        // At temperature 1 without a nucleus, every token is drawn sometimes.
        let free = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        };
        let mut seen = [false; 3];
        for _ in 0..500 {
            seen[pick(&[0.0, 0.5, 1.0], &free, &mut rng) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
