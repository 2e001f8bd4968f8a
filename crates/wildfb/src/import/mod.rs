//! `wildfb import`: conversations from other sources turned into WildChat-shaped parquet, so the
//! pipeline can be run and tested without WildChat itself.
//!
//! - `sharegpt`: ShareGPT dumps (JSON array, possibly truncated, or JSON Lines; optionally gzip),
//!   mapped by [`sharegpt::to_wildchat`] and marked as adapted.
//! - `wildchat-json`: WildChat rows written as JSON (one object per line, the dataset's own field
//!   names), e.g. hand-written fixtures, written out with the real schema.

pub mod input;
pub mod sharegpt;

use crate::error::{Error, Result};
use crate::parquet::write_wildchat;
use input::read_json_elements;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wildreward_types::wildchat::WildChatConversation;

/// Which kind of input to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// ShareGPT `{"id", "conversations": [{"from", "value"}]}`.
    ShareGpt,
    /// WildChat rows as JSON objects.
    WildChatJson,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::ShareGpt => "sharegpt",
            Source::WildChatJson => "wildchat-json",
        }
    }
}

/// Options of one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The input file.
    pub input: PathBuf,
    /// The parquet file to write.
    pub output: PathBuf,
    /// Keep the complete elements of a JSON array that ends early instead of failing.
    pub allow_truncated: bool,
    /// Import at most this many rows (after skips).
    pub limit: Option<usize>,
}

/// What an import did: printed as JSON and written next to the output (`<out>.report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The source format.
    pub source: &'static str,
    /// The input file.
    pub input: PathBuf,
    /// The parquet file written.
    pub output: PathBuf,
    /// Elements read from the input.
    pub rows_in: usize,
    /// Rows written.
    pub rows_out: usize,
    /// Elements not written, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// Rows written, by conversation language.
    pub languages: BTreeMap<String, usize>,
    /// Messages written.
    pub messages: usize,
    /// Rows with a non-empty `hashed_ip` (WildChat's user key); `wildfb collect` keys the others by
    /// conversation.
    pub rows_with_hashed_ip: usize,
    /// The user key `wildfb collect` will use: `hashed_ip`, `conversation` (the source records no
    /// user) or `mixed`.
    pub user_key: &'static str,
    /// What that means, when it is not `hashed_ip` throughout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_note: Option<String>,
    /// Size of the parquet file.
    pub bytes_written: u64,
    /// Wall time.
    pub elapsed_s: f64,
}

/// Runs one import and writes its report beside the output.
pub fn run(source: Source, opts: &ImportOptions) -> Result<ImportReport> {
    let start = Instant::now();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let (rows_in, mut rows) = match source {
        Source::ShareGpt => {
            let items = read_json_elements::<sharegpt::ShareGptConversation>(
                &opts.input,
                opts.allow_truncated,
            )?;
            let n = items.len();
            let mut rows = Vec::with_capacity(n);
            for item in items {
                match sharegpt::to_wildchat(&item.value) {
                    Ok(row) => rows.push(row),
                    Err(sharegpt::Skip::Empty) => *skipped.entry("empty".into()).or_default() += 1,
                    Err(sharegpt::Skip::UnknownSpeaker(s)) => {
                        *skipped.entry(format!("unknown_speaker:{s}")).or_default() += 1
                    }
                }
            }
            (n, rows)
        }
        Source::WildChatJson => {
            let items =
                read_json_elements::<WildChatConversation>(&opts.input, opts.allow_truncated)?;
            let n = items.len();
            (n, items.into_iter().map(|l| l.value).collect::<Vec<_>>())
        }
    };
    if let Some(limit) = opts.limit {
        if rows.len() > limit {
            *skipped.entry("over_limit".into()).or_default() += rows.len() - limit;
            rows.truncate(limit);
        }
    }
    if rows.is_empty() {
        return Err(Error::Format {
            path: opts.input.clone(),
            message: format!("no conversation could be imported (skipped: {skipped:?})"),
        });
    }
    let bytes_written = write_wildchat(&opts.output, &rows)?;
    let mut languages = BTreeMap::new();
    for r in &rows {
        *languages.entry(r.language.clone()).or_default() += 1;
    }
    let rows_with_hashed_ip = rows
        .iter()
        .filter(|r| {
            r.hashed_ip
                .as_deref()
                .is_some_and(|ip| !ip.trim().is_empty())
        })
        .count();
    let (user_key, user_note) = match rows_with_hashed_ip {
        n if n == rows.len() => ("hashed_ip", None),
        0 => (
            "conversation",
            Some(format!(
                "{} records no user: `wildfb collect` counts every conversation as its own user",
                source.name()
            )),
        ),
        n => (
            "mixed",
            Some(format!(
                "{} of {} rows have no hashed_ip: `wildfb collect` counts each of those \
                 conversations as its own user",
                rows.len() - n,
                rows.len()
            )),
        ),
    };
    let report = ImportReport {
        source: source.name(),
        input: opts.input.clone(),
        output: opts.output.clone(),
        rows_in,
        rows_out: rows.len(),
        skipped,
        languages,
        messages: rows.iter().map(|r| r.conversation.len()).sum(),
        rows_with_hashed_ip,
        user_key,
        user_note,
        bytes_written,
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    write_report(&report_path(&opts.output), &report)?;
    Ok(report)
}

/// Where the report of an import into `output` goes.
pub fn report_path(output: &Path) -> PathBuf {
    let mut p = output.as_os_str().to_owned();
    p.push(".report.json");
    PathBuf::from(p)
}

fn write_report(path: &Path, report: &ImportReport) -> Result<()> {
    let json = serde_json::to_string_pretty(report).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, json + "\n").map_err(|e| Error::io(path, e))
}
