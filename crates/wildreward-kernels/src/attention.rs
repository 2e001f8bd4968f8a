//! Causal attention of the packed forward over rows concatenated on one token axis: per (row block,
//! key/value group) tasks over the causal part of each row's keys, the query heads of a group
//! stacked instead of repeating its keys and values.

use crate::layout::{Limit, Staircase, Strided};
use crate::matmul::matmul_limited;
use crate::simd::{fast_exp, lanes_max, wide};
use rayon::prelude::*;

/// The attention's head layout: `heads` query heads of `head_dim`, sharing `kv_heads` key/value heads
/// (grouped-query attention: query head `h` reads key/value head `h / (heads / kv_heads)`).
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// One row's place in the packed token axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The row's first token.
    pub start: usize,
    /// Its tokens.
    pub len: usize,
}

/// Queries of one row that an attention pass computes: positions `q0..q1` of the row whose keys and
/// values are at `span`, stored from row `q_row` of the query buffer on.
#[derive(Debug, Clone, Copy)]
pub struct QueryRun {
    /// Where the row's keys and values are.
    pub span: Span,
    /// The query buffer's row of the first query.
    pub q_row: usize,
    /// The first query's position within the row.
    pub q0: usize,
    /// One past the last query's position.
    pub q1: usize,
}

/// Queries per attention task: large enough for an efficient gemm, small enough to balance the work
/// of long rows across threads.
const QUERY_BLOCK: usize = 128;

/// One attention task: a block of queries of one row, for all query heads of one key/value group,
/// stacked position-major (stacked row `i · n_rep + r` is the group's head `r` at position `q0 + i`):
/// the heads that share keys and values run as one taller product, which gemm runs faster.
#[derive(Debug, Clone, Copy)]
struct Task {
    group: usize,
    /// The row's first token in the key/value buffers.
    kv_start: usize,
    /// The block's first query in the query buffer.
    q_row: usize,
    /// The block's positions within the row.
    q0: usize,
    q1: usize,
}

/// Causal attention of the queries in `runs`, each row attending to its keys at its span, written
/// token-major into `out` (`[query rows, heads·hd]`) through the group-major scratch `by_head`
/// (`[kv_heads, query rows, n_rep, hd]`, as large as `[heads, query rows, hd]`).
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    runs: &[QueryRun],
    d: &Heads,
    by_head: &mut [f32],
    out: &mut [f32],
) {
    let hd = d.head_dim;
    let n_rep = d.heads / d.kv_heads;
    let group_width = n_rep * hd;
    let q_rows: usize = runs.iter().map(|r| r.q1 - r.q0).sum();
    // Each task owns its block of the group-major output, so the tasks run in parallel over disjoint
    // slices. Runs fill the query rows in order.
    let mut work: Vec<(Task, &mut [f32])> = Vec::new();
    for (group, group_out) in by_head
        .chunks_mut(q_rows * group_width)
        .take(d.kv_heads)
        .enumerate()
    {
        let mut rest = group_out;
        for run in runs {
            let mut q0 = run.q0;
            while q0 < run.q1 {
                let q1 = (q0 + QUERY_BLOCK).min(run.q1);
                let (block, more) = std::mem::take(&mut rest).split_at_mut((q1 - q0) * group_width);
                rest = more;
                let task = Task {
                    group,
                    kv_start: run.span.start,
                    q_row: run.q_row + (q0 - run.q0),
                    q0,
                    q1,
                };
                work.push((task, block));
                q0 = q1;
            }
        }
    }
    // Longest first: the big blocks start early and the small ones fill the gaps.
    work.sort_by_key(|(t, _)| std::cmp::Reverse((t.q1 - t.q0) * t.q1));
    work.into_par_iter()
        .for_each_init(Scratch::default, |scratch, (task, block)| {
            attend(task, q, k, v, d, scratch, block)
        });
    // Back to token-major for the output projection: a group's heads are adjacent in both layouts.
    let width = d.heads * hd;
    let by_head = &*by_head;
    out[..q_rows * width]
        .par_chunks_mut(width)
        .enumerate()
        .with_min_len(16)
        .for_each(|(t, dst)| {
            for (group, dst) in dst.chunks_mut(group_width).enumerate() {
                let src = (group * q_rows + t) * group_width;
                dst.copy_from_slice(&by_head[src..src + group_width]);
            }
        });
}

/// A thread's buffers for its attention tasks, reused from task to task.
#[derive(Default)]
struct Scratch {
    /// The task's queries, stacked.
    stacked: Vec<f32>,
    /// Its scores, then unnormalised probabilities, `[rows, keys]`.
    scores: Vec<f32>,
    /// Each stacked row's softmax normaliser, `1 / Σ exp`.
    inv_sums: Vec<f32>,
}

/// `softmax(q kᵀ / √hd + causal) v` for one task; `out` is the task's stacked `[(q1 − q0) · n_rep,
/// hd]` block. Both products stop, a register tile at a time, where the tile's last query stops
/// seeing keys, and the softmax's normalisation scales the `hd`-wide output rows rather than the
/// (up to `q1`-wide) probabilities.
fn attend(
    task: Task,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: &Heads,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let hd = d.head_dim;
    let n_rep = d.heads / d.kv_heads;
    let (q_stride, kv_stride) = (d.heads * hd, d.kv_heads * hd);
    let (rows, keys) = ((task.q1 - task.q0) * n_rep, task.q1);
    let Scratch {
        stacked,
        scores,
        inv_sums,
    } = scratch;
    // The group's heads at each position are adjacent in `q`: one copy per position.
    stacked.clear();
    for i in 0..task.q1 - task.q0 {
        let at = (task.q_row + i) * q_stride + task.group * n_rep * hd;
        stacked.extend_from_slice(&q[at..at + n_rep * hd]);
    }
    scores.clear();
    scores.resize(rows * keys, 0.0);
    let kv_at = task.kv_start * kv_stride + task.group * hd;
    assert_eq!(out.len(), rows * hd, "attention task out of bounds");
    // Stacked row `i` is position `q0 + i / n_rep`: it sees the keys before `q0 + i / n_rep + 1`.
    let visible = Staircase {
        first: task.q0 + 1,
        rows_per_step: n_rep,
    };
    let scale = 1.0 / (hd as f32).sqrt();
    matmul_limited(
        scores,
        keys,
        Strided::rows(stacked, rows, hd, hd),
        Strided::transposed(&k[kv_at..], keys, hd, kv_stride),
        scale,
        Limit::Columns(visible),
    );
    inv_sums.clear();
    wide(|| {
        for (i, row) in scores.chunks_mut(keys).enumerate() {
            inv_sums.push(exp_prefix(row, visible.at(i)));
        }
    });
    // Every row is zero past its visible keys (`exp_prefix` cleared them), as the depth limit needs.
    matmul_limited(
        out,
        hd,
        Strided::rows(scores, rows, keys, keys),
        Strided::rows(&v[kv_at..], keys, hd, kv_stride),
        1.0,
        Limit::Depth(visible),
    );
    wide(|| {
        for (row, inv) in out.chunks_exact_mut(hd).zip(inv_sums.iter()) {
            row.iter_mut().for_each(|x| *x *= inv);
        }
    });
}

/// The softmax of `row[..valid]` but for its normalisation: `row[..valid]` becomes `exp(x − max)`,
/// the masked tail `row[valid..]` 0, and `1 / Σ exp(x − max)` is returned.
#[inline(always)]
fn exp_prefix(row: &mut [f32], valid: usize) -> f32 {
    const LANES: usize = 16;
    let (live, masked) = row.split_at_mut(valid);
    let max = lanes_max(live);
    // The exponentials and their sum in one pass, the sum in 16 lanes so the loop vectorises.
    let mut sums = [0f32; LANES];
    let mut chunks = live.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (sum, x) in sums.iter_mut().zip(chunk) {
            *x = fast_exp(*x - max);
            *sum += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = fast_exp(*x - max);
        sum += *x;
    }
    masked.fill(0.0);
    1.0 / sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows long enough to span several query blocks next to a short one, grouped heads, against
    /// causal attention computed in f64.
    #[test]
    fn attention_matches_naive_causal_attention_across_query_blocks() {
        let d = Heads {
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
        };
        let lens = [2 * QUERY_BLOCK + 37, 5, QUERY_BLOCK + 1];
        let tokens: usize = lens.iter().sum();
        let (qw, kw) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let mut state = 12345u64;
        let mut rand = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
                })
                .collect()
        };
        let (q, k, v) = (rand(tokens * qw), rand(tokens * kw), rand(tokens * kw));
        let mut runs = Vec::new();
        let mut start = 0;
        for &len in &lens {
            runs.push(QueryRun {
                span: Span { start, len },
                q_row: start,
                q0: 0,
                q1: len,
            });
            start += len;
        }
        let mut by_head = vec![0f32; tokens * qw];
        let mut out = vec![0f32; tokens * qw];
        attention(&q, &k, &v, &runs, &d, &mut by_head, &mut out);
        let scale = 1.0 / (d.head_dim as f64).sqrt();
        let mut worst = 0f64;
        for run in &runs {
            for t in 0..run.span.len {
                for h in 0..d.heads {
                    let g = h / (d.heads / d.kv_heads);
                    let qi = &q[(run.span.start + t) * qw + h * d.head_dim..][..d.head_dim];
                    let key =
                        |j: usize| &k[(run.span.start + j) * kw + g * d.head_dim..][..d.head_dim];
                    let val =
                        |j: usize| &v[(run.span.start + j) * kw + g * d.head_dim..][..d.head_dim];
                    let logits: Vec<f64> = (0..=t)
                        .map(|j| {
                            qi.iter()
                                .zip(key(j))
                                .map(|(a, b)| (a * b) as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                    for c in 0..d.head_dim {
                        let want: f64 = (0..=t)
                            .map(|j| (logits[j] - max).exp() / z * val(j)[c] as f64)
                            .sum();
                        let got = out[(run.q_row + t) * qw + h * d.head_dim + c] as f64;
                        worst = worst.max((got - want).abs());
                    }
                }
            }
        }
        assert!(worst < 1e-5, "max abs error {worst}");
    }

    #[test]
    fn causal_exponentials_zero_the_masked_tail_and_return_the_normaliser() {
        // Long enough for the 16-lane pass and its remainder.
        let mut row: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let original = row.clone();
        let valid = 37;
        let inv = exp_prefix(&mut row, valid);
        let max = original[..valid].iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = original[..valid]
            .iter()
            .map(|&v| ((v - max) as f64).exp())
            .sum();
        assert!((inv as f64 * z - 1.0).abs() < 1e-6, "{inv} vs 1 / {z}");
        for (got, v) in row.iter().zip(&original[..valid]) {
            assert!((*got as f64 - ((v - max) as f64).exp()).abs() < 1e-6);
        }
        assert_eq!(&row[valid..], &[0.0; 3]);
    }
}
