//! The KV cache of the candle decoding path: per layer, key and value buffers with room to spare,
//! filled in place.

use candle_core::{Result, Tensor};

/// Keys and values of earlier positions, one entry per layer, for incremental decoding. Each layer's
/// keys and values live in buffers with room to spare (`[batch, kv_heads, capacity, head_dim]`), filled
/// in place, so a decoding step copies only its new position instead of the whole cache.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(super) layers: Vec<Option<LayerCache>>,
    pub(super) len: usize,
}

/// One layer's key and value buffers; positions `0..len` are filled.
#[derive(Debug, Clone)]
pub(super) struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

/// Positions added to a cache buffer whenever it runs out of room.
const CACHE_CHUNK: usize = 256;

impl LayerCache {
    /// Appends `k`, `v` (`[batch, kv_heads, new, head_dim]`) and returns views of every cached
    /// position.
    pub(super) fn append(
        slot: &mut Option<Self>,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, kv, t, hd) = k.dims4()?;
        let len = slot.as_ref().map_or(0, |c| c.len);
        let capacity = slot.as_ref().map_or(0, |c| c.k.dim(2).unwrap_or(0));
        if len + t > capacity {
            let capacity = (len + t).div_ceil(CACHE_CHUNK) * CACHE_CHUNK;
            let grown = |old: Option<&Tensor>| -> Result<Tensor> {
                let buf = Tensor::zeros((b, kv, capacity, hd), k.dtype(), k.device())?;
                if let Some(old) = old {
                    buf.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                }
                Ok(buf)
            };
            let (k_buf, v_buf) = (
                grown(slot.as_ref().map(|c| &c.k))?,
                grown(slot.as_ref().map(|c| &c.v))?,
            );
            *slot = Some(Self {
                k: k_buf,
                v: v_buf,
                len,
            });
        }
        let Some(cache) = slot.as_mut() else {
            candle_core::bail!("KV cache slot is empty after allocation");
        };
        cache.k.slice_set(&k.contiguous()?, 2, len)?;
        cache.v.slice_set(&v.contiguous()?, 2, len)?;
        cache.len = len + t;
        Ok((
            cache.k.narrow(2, 0, cache.len)?,
            cache.v.narrow(2, 0, cache.len)?,
        ))
    }
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Repeats a single-row cache `n` times along the batch, so `n` samples share one prompt pass.
    pub fn expand_batch(&mut self, n: usize) -> Result<()> {
        for c in self.layers.iter_mut().flatten() {
            c.k = c.k.repeat((n, 1, 1, 1))?;
            c.v = c.v.repeat((n, 1, 1, 1))?;
        }
        Ok(())
    }
}
