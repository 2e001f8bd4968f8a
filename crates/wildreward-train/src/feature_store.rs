//! The frozen part's outputs kept on disk between runs (`--feature-cache DIR`): the seeds of one
//! experiment arm train on the same examples with the same frozen blocks, so the pass through those
//! blocks — most of a last-N or head-only run's time — is done once, not once per seed.
//!
//! A file holds, besides the rows, everything they were computed from: the model's identity (its
//! canonical path and each file's size and modification time), what was cached (pooled features or
//! the stream after block N) and every sequence's token ids. A file is used only when all of that
//! matches exactly, so a changed model, mode, length limit or dataset computes afresh; the file name
//! is only a hash of it to find the file.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// One cache entry: where it lives and what it must match.
pub struct Entry {
    path: PathBuf,
    identity: String,
    ids: Vec<u32>,
    lens: Vec<u32>,
}

impl Entry {
    /// The entry for `seqs` run through the frozen part of the model `identity` (`what` names the
    /// part: `pooled` or `trunk-N`) under `dir`.
    pub fn new(dir: &Path, identity: &str, what: &str, seqs: &[Vec<u32>]) -> Self {
        let identity = format!("wildreward-train feature cache v1\n{what}\n{identity}");
        let ids: Vec<u32> = seqs.iter().flatten().copied().collect();
        let lens: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&identity, &ids, &lens).hash(&mut h);
        Self {
            path: dir.join(format!("{:016x}.safetensors", h.finish())),
            identity,
            ids,
            lens,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached rows, if the file exists and was written for exactly these inputs; `None`
    /// otherwise (a missing, foreign or unreadable file is recomputed, never trusted).
    pub fn load(&self) -> Option<Vec<Tensor>> {
        let mut t = candle_core::safetensors::load(&self.path, &Device::Cpu).ok()?;
        let bytes: Vec<u8> = t.remove("identity")?.to_vec1().ok()?;
        let ids: Vec<u32> = t.remove("ids")?.to_vec1().ok()?;
        let lens: Vec<u32> = t.remove("lens")?.to_vec1().ok()?;
        if bytes != self.identity.as_bytes() || ids != self.ids || lens != self.lens {
            return None;
        }
        (0..self.lens.len())
            .map(|i| t.remove(&format!("row.{i}")))
            .collect()
    }

    /// Writes `rows` (through a temporary name, so a killed run leaves no torn entry).
    pub fn save(&self, rows: &[Tensor]) -> std::io::Result<()> {
        let err = |e: candle_core::Error| std::io::Error::other(e.to_string());
        let mut t: HashMap<String, Tensor> = HashMap::with_capacity(rows.len() + 3);
        let bytes = self.identity.as_bytes().to_vec();
        let n = bytes.len();
        t.insert(
            "identity".into(),
            Tensor::from_vec(bytes, n, &Device::Cpu).map_err(err)?,
        );
        t.insert(
            "ids".into(),
            Tensor::from_slice(&self.ids, self.ids.len(), &Device::Cpu).map_err(err)?,
        );
        t.insert(
            "lens".into(),
            Tensor::from_slice(&self.lens, self.lens.len(), &Device::Cpu).map_err(err)?,
        );
        for (i, r) in rows.iter().enumerate() {
            let r = r
                .to_device(&Device::Cpu)
                .and_then(|r| r.to_dtype(DType::F32));
            t.insert(format!("row.{i}"), r.map_err(err)?);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("partial");
        candle_core::safetensors::save(&t, &tmp).map_err(err)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_entry_is_used_only_for_the_inputs_it_was_written_for() {
        let dir = tempfile::tempdir().unwrap();
        let seqs = vec![vec![1, 2, 3], vec![4, 5]];
        let rows = vec![
            Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &Device::Cpu).unwrap(),
            Tensor::new(&[[7f32, 8.0], [9.0, 10.0]], &Device::Cpu).unwrap(),
        ];
        let entry = Entry::new(dir.path(), "model A", "trunk-28", &seqs);
        assert!(entry.load().is_none(), "nothing written yet");
        entry.save(&rows).unwrap();
        let back = entry.load().unwrap();
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        }
        // Another model, part or sequence misses (another file, or a foreign one planted at this
        // name is refused).
        for other in [
            Entry::new(dir.path(), "model B", "trunk-28", &seqs),
            Entry::new(dir.path(), "model A", "pooled", &seqs),
            Entry::new(
                dir.path(),
                "model A",
                "trunk-28",
                &[vec![1, 2, 3], vec![4, 6]],
            ),
        ] {
            assert!(other.load().is_none());
            std::fs::copy(entry.path(), other.path()).unwrap();
            assert!(other.load().is_none(), "a foreign file was trusted");
        }
        // A torn file is recomputed, not an error.
        std::fs::write(entry.path(), b"torn").unwrap();
        assert!(entry.load().is_none());
    }
}
