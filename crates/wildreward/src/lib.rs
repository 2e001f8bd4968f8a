//! The logic behind the `wildreward` command's subcommands that run a model directly (`score`,
//! `convert`); training, serving and evaluation live in their own crates.
//!
//! Dependencies and why: `wildreward-model` is the model; `serde_json` reads and writes the JSONL
//! files; `indicatif` shows progress on long scoring runs.

pub mod convert;
pub mod score;

pub use wildreward_types::exit::BadInput;
