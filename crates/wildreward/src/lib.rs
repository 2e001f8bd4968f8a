//! The logic behind the `wildreward` command's subcommands that run a model directly (`score`,
//! `convert`); training, serving and evaluation live in their own crates.
//!
//! Dependencies and why: `wildreward-model` is the model; `serde_json` reads and writes the JSONL
//! files; `indicatif` shows progress on long scoring runs.

pub mod convert;
pub mod score;

/// A problem with the user's input (a file, a line, a field): exits with status 65.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
