//! Online DPO's errors: bad input (exit 65 through [`BadInput`]) versus everything else.

use std::path::Path;
use wildreward_types::exit::BadInput;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum DpoError {
    /// A file, line, field or setting the user gave cannot be used.
    #[error(transparent)]
    Input(#[from] BadInput),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The policy could not be loaded or saved.
    #[error(transparent)]
    Model(#[from] wildreward_model::ModelError),
    /// Training machinery (optimiser, checkpoints).
    #[error(transparent)]
    Train(#[from] wildreward_train::TrainError),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The reward endpoint gave nothing usable for too long.
    #[error("{0}")]
    Rewards(String),
}

impl DpoError {
    /// A bad-input error with this message.
    pub fn input(message: impl Into<String>) -> Self {
        DpoError::Input(BadInput(message.into()))
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DpoError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Online DPO's result type.
pub type Result<T> = std::result::Result<T, DpoError>;
