//! The WildFB data pipeline: WildChat conversations (or other chat logs mapped into WildChat's schema)
//! turned into ordinal reward-model training data read from users' own follow-up messages.
//!
//! Dependencies and why: `polars` reads and writes the WildChat parquet files (only its parquet, lazy
//! and nested-struct features); `flate2` reads gzip inputs; `sha2` derives stable conversation hashes;
//! `whatlang` names the language of conversations whose source did not record it; `chrono` converts
//! WildChat's timestamps.

pub mod error;
pub mod import;
pub mod lang;
pub mod parquet;

pub use error::{Error, Result};
