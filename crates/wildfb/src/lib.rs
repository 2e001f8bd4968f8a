//! The WildFB data pipeline: WildChat conversations (or other chat logs mapped into WildChat's schema)
//! turned into ordinal reward-model training data read from users' own follow-up messages.
//!
//! Dependencies and why: `polars` reads and writes the WildChat parquet files (only its parquet, lazy
//! and nested-struct features); `flate2` reads gzip inputs; `sha2` derives stable conversation hashes,
//! journal keys and the seeded split; `whatlang` names the language of conversations whose source did
//! not record it; `chrono` converts WildChat's timestamps; `candle-*` and `tokenizers` run the MiniLM
//! sentence embedder of hindsight mining; `tokio` and `reqwest` call the LLM annotator; `indicatif`
//! draws progress bars; `regex` runs the offline rules and filters; `toml` reads the settings; `rayon`
//! cuts conversations into instances in parallel; `rand` jitters retry delays; `plotters` (with the
//! `dejavu` font) draws `wildfb agree`'s confusion matrix; `wildreward-kernels` is the packed
//! MiniLM forward's matmul and dense ops.

pub mod agree;
pub mod collect;
pub mod embed;
pub mod error;
pub mod import;
pub mod lang;
pub mod parquet;
pub mod sample;

pub use error::{Error, Result};
