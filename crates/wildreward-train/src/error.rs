//! The trainer's errors: bad input (exit 65 through [`BadInput`]) versus everything else.

use std::path::Path;
use wildreward_types::exit::BadInput;

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
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
    /// The model could not be loaded or saved.
    #[error(transparent)]
    Model(#[from] wildreward_model::ModelError),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A numerical failure (a non-finite loss or gradient).
    #[error("{0}")]
    Numeric(String),
}

impl TrainError {
    /// A bad-input error with this message.
    pub fn input(message: impl Into<String>) -> Self {
        TrainError::Input(BadInput(message.into()))
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The trainer's result type.
pub type Result<T> = std::result::Result<T, TrainError>;
