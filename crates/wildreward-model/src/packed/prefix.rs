//! A prefix shared by every row of a batch, run once.
//!
//! Every WildReward text opens with the same ~110-token template header, and the answers an online
//! DPO step scores for one prompt share that prompt as well, so most of a short text's tokens are
//! the same in every row. Causal attention makes the prefix's keys and values independent of what
//! follows, so the prefix runs through the model once; each row then runs only its own tokens
//! (positions continuing the prefix's), attending to the prefix's cached keys and values followed by
//! its own. Each layer copies the prefix's keys and values in front of each row's, so attention sees
//! exactly the layout of an unshared row: the numbers are those of the plain packed forward.

use rayon::prelude::*;
use wildreward_kernels::attention::Span;

/// Shortest common prefix worth running once: below it the copies cost about what they save.
pub(crate) const MIN_SHARED: usize = 8;

/// Tokens every row starts with, leaving each row at least its last token of its own (the token
/// whose state the head reads); 0 for fewer than two rows.
pub(crate) fn shared_len(rows: &[&[u32]]) -> usize {
    let Some((first, rest)) = rows.split_first() else {
        return 0;
    };
    if rest.is_empty() {
        return 0;
    }
    let mut len = first.len();
    for row in rest {
        len = len.min(row.len());
        len = first[..len]
            .iter()
            .zip(&row[..len])
            .take_while(|(a, b)| a == b)
            .count();
    }
    let shortest = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    len.min(shortest.saturating_sub(1))
}

/// The keys and values of a shared prefix at every layer, and the per-row attention buffers built
/// from them.
pub(crate) struct SharedPrefix {
    len: usize,
    width: usize,
    /// Per layer, `[len, kv_heads · head_dim]`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// The current layer's prefix + own keys / values, row after row (`regions`).
    k: Vec<f32>,
    v: Vec<f32>,
    regions: Vec<Span>,
}

impl SharedPrefix {
    /// The prefix of `len` tokens whose keys and values at each layer are `keys` / `values`
    /// (`[len, kv_heads · head_dim]` each).
    pub(crate) fn new(len: usize, keys: Vec<Vec<f32>>, values: Vec<Vec<f32>>) -> Self {
        let width = keys
            .iter()
            .find(|k| !k.is_empty())
            .map_or(0, |k| k.len() / len.max(1));
        Self {
            len,
            width,
            keys,
            values,
            k: Vec::new(),
            v: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// Tokens in the prefix.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Builds layer `layer`'s attention keys and values for rows whose own tokens sit at `spans` of
    /// `own_k` / `own_v`: each row's region holds the prefix's, then its own.
    pub(crate) fn assemble(&mut self, layer: usize, spans: &[Span], own_k: &[f32], own_v: &[f32]) {
        let (p, w) = (self.len, self.width);
        self.regions.clear();
        let mut start = 0;
        for s in spans {
            self.regions.push(Span {
                start,
                len: p + s.len,
            });
            start += p + s.len;
        }
        self.k.resize(start * w, 0.0);
        self.v.resize(start * w, 0.0);
        for (dst, prefix, own) in [
            (&mut self.k, &self.keys[layer], own_k),
            (&mut self.v, &self.values[layer], own_v),
        ] {
            let mut chunks: Vec<(&mut [f32], Span)> = Vec::with_capacity(spans.len());
            let mut rest = dst.as_mut_slice();
            for s in spans {
                let (region, more) = std::mem::take(&mut rest).split_at_mut((p + s.len) * w);
                chunks.push((region, *s));
                rest = more;
            }
            chunks.into_par_iter().for_each(|(region, s)| {
                let (head, tail) = region.split_at_mut(p * w);
                head.copy_from_slice(&prefix[..p * w]);
                tail.copy_from_slice(&own[s.start * w..(s.start + s.len) * w]);
            });
        }
    }

    /// Each row's region in [`SharedPrefix::assembled`], from the last [`SharedPrefix::assemble`].
    pub(crate) fn regions(&self) -> &[Span] {
        &self.regions
    }

    /// The keys and values the last [`SharedPrefix::assemble`] built.
    pub(crate) fn assembled(&self) -> (&[f32], &[f32]) {
        (&self.k, &self.v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_len_leaves_each_row_its_last_token() {
        assert_eq!(shared_len(&[&[1, 2, 3, 4], &[1, 2, 3, 5, 6]]), 3);
        assert_eq!(shared_len(&[&[1, 2, 3], &[1, 2, 3, 4]]), 2);
        assert_eq!(shared_len(&[&[1, 2, 3], &[1, 2, 3]]), 2);
        assert_eq!(shared_len(&[&[1, 2, 3], &[2, 2, 3]]), 0);
        assert_eq!(shared_len(&[&[1, 2, 3]]), 0);
        assert_eq!(shared_len(&[]), 0);
        assert_eq!(shared_len(&[&[7, 1], &[7, 1, 2], &[7, 3]]), 1);
    }
}
