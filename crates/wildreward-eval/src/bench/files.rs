//! Reading benchmark files: plain or gzip, JSON Lines with `file:line` errors, directory listings.

use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::{Path, PathBuf};
use wildreward_types::exit::BadInput;

/// Environment variable naming the folder with the shipped benchmark slices (default: `data/` of
/// the current directory, else of the source tree this binary was built from).
pub const DATA_ENV: &str = "WILDREWARD_DATA";

/// The folder holding `rm-bench/`, `judgebench/` and `hh-rlhf/`.
pub fn data_dir() -> Result<PathBuf, BadInput> {
    if let Some(dir) = std::env::var_os(DATA_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let candidates = [
        PathBuf::from("data"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"),
    ];
    candidates
        .iter()
        .find(|d| d.join("rm-bench").is_dir())
        .cloned()
        .ok_or_else(|| {
            BadInput(format!(
                "benchmark data not found (looked for rm-bench/ in {}); run from the repository root or \
                 set {DATA_ENV}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
        })
}

/// The whole file as text, gunzipped when its name ends in `.gz`.
pub fn read_text(path: &Path) -> Result<String, BadInput> {
    let bad = |e: std::io::Error| BadInput(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(bad)?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        MultiGzDecoder::new(file)
            .read_to_string(&mut text)
            .map_err(bad)?;
    } else {
        std::io::BufReader::new(file)
            .read_to_string(&mut text)
            .map_err(bad)?;
    }
    Ok(text)
}

/// Each non-blank line of a JSON Lines file parsed as `T`, with its 1-based line number; the first
/// bad line is an error naming the file and line.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>, BadInput> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(line)
            .map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push((i + 1, row));
    }
    Ok(out)
}

/// A `BadInput` for `path` at `line`.
pub fn at(path: &Path, line: usize, what: impl std::fmt::Display) -> BadInput {
    BadInput(format!("{}:{line}: {what}", path.display()))
}

/// `path` itself if it is a file, else its files (sorted by name) for which `wanted` holds; an
/// error if none is found.
pub fn files_in(
    path: &Path,
    wanted: impl Fn(&str) -> bool,
    what: &str,
) -> Result<Vec<PathBuf>, BadInput> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| p.file_name().is_some_and(|n| wanted(&n.to_string_lossy())))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(BadInput(format!(
            "{}: no {what} files found",
            path.display()
        )));
    }
    Ok(files)
}

/// Whether a file name is JSON Lines (plain or gzip).
pub fn is_jsonl(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}
