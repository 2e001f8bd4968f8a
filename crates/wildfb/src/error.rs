//! The data pipeline's error type: every variant names the file (and the line or column where there is
//! one) so a bad input can be found and fixed.

use std::path::PathBuf;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON value in the file is malformed or does not have the expected shape.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// The file ends in the middle of a JSON array.
    #[error(
        "{path}: truncated JSON array: it ends inside element {element} (line {line}) after \
         {complete} complete elements; pass --allow-truncated to keep those"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// 0-based index of the element that was cut.
        element: usize,
        /// 1-based line where that element starts.
        line: usize,
        /// How many elements before it parsed.
        complete: usize,
    },
    /// The input's overall format is not one we read.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A label file (gold or predicted) has a bad or duplicate line.
    #[error("{path}:{line}: {message}")]
    Labels {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON line lacks a field, or has one of the wrong type or value.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// `wildfb sample-users` cannot draw what was asked from this input (too few users or instances).
    #[error("{path}: {message}")]
    Sample {
        /// The input file.
        path: PathBuf,
        /// The shortfall, and what would fit.
        message: String,
    },
    /// A parquet file is unreadable or lacks what the WildChat schema needs.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (a missing column, a wrong type, a corrupt footer…).
        message: String,
    },
    /// A configuration file (settings, rules, filters, prompts) is unreadable or invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The LLM endpoint rejects this run's configuration (key, model or URL), so no call can succeed.
    #[error("{url}: {message}")]
    Api {
        /// The endpoint.
        url: String,
        /// Its answer.
        message: String,
    },
    /// The sentence embedder could not be loaded or run.
    #[error("{path}: {message}")]
    Embedder {
        /// The model directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A step cannot run: its input is missing, or the output directory belongs to another run.
    #[error("{path}: {message}")]
    Step {
        /// The file or directory concerned.
        path: PathBuf,
        /// What to do about it.
        message: String,
    },
}

impl Error {
    /// True when the error is about the user's input data or files (exit status 65), false for
    /// failures of the environment (an endpoint that refuses the key, a missing model).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Api { .. } | Error::Embedder { .. })
    }

    /// Wraps an I/O error with the file it came from.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a polars error with the file it came from.
    pub fn parquet(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Parquet {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

/// Result with the pipeline's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
