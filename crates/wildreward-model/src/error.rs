//! The model crate's error: each variant names the file it concerns, so a bad checkpoint is found
//! quickly.

use std::path::PathBuf;

/// What went wrong loading, running or saving a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `config.json` is missing, malformed or names an unsupported architecture.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weight file is missing, truncated or lacks a tensor the architecture needs.
    #[error("{path}: {message}")]
    Weights {
        /// The file (or checkpoint directory).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer cannot be loaded or does not fit the model.
    #[error("{path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Bad input to a model call (an empty text, a text longer than allowed…).
    #[error("{0}")]
    Input(String),
    /// The model computed a non-finite value (an f16 overflow past 65,504, a corrupt weight): never
    /// returned as a reward.
    #[error("{0}")]
    NonFinite(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// Whether this is the user's input at fault (a config, weights or tokenizer file that cannot be
    /// used, or bad text): the binaries exit 65 for these, 1 for the rest.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ModelError::Config { .. }
                | ModelError::Weights { .. }
                | ModelError::Tokenizer { .. }
                | ModelError::Input(_)
        )
    }

    /// Wraps an I/O error with its file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
