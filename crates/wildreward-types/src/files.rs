//! What a model on disk is, for caches keyed by it: the evaluator's score cache and the trainer's
//! feature cache both recompute when the model's files change, and must agree on what "changed" is.

use std::path::{Path, PathBuf};

/// The identity of the model at `path` (a directory or one file): its canonical path, then each of
/// its files (sorted) with size and modification time, one per line. A retrained, replaced or
/// moved model gets a new identity; reading it costs no hashing of the weights.
pub fn identity(path: &Path) -> std::io::Result<String> {
    let canonical = std::fs::canonicalize(path)?;
    let mut files: Vec<PathBuf> = if canonical.is_dir() {
        std::fs::read_dir(&canonical)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![canonical.clone()]
    };
    files.sort();
    let mut identity = format!("{}\n", canonical.display());
    for f in files {
        let meta = std::fs::metadata(&f)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        identity.push_str(&format!("{} {} {mtime}\n", f.display(), meta.len()));
    }
    Ok(identity)
}
