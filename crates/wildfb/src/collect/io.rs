//! The pipeline's file habits: JSON Lines read with the line number of every bad record, outputs written
//! through a temporary name renamed into place (so a killed run never leaves a half-written file under
//! the final name), and JSON documents written the same way.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Reads a JSONL file line by line, parsing each non-empty line as `T`.
pub struct JsonlReader<T> {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: usize,
    _marker: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> JsonlReader<T> {
    /// Opens `path`; an absent file is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            lines: BufReader::with_capacity(1 << 20, file).lines(),
            line: 0,
            _marker: std::marker::PhantomData,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl<T: DeserializeOwned> Iterator for JsonlReader<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(l) => l,
                Err(e) => return Some(Err(Error::io(&self.path, e))),
            };
            self.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&line).map_err(|e| Error::Json {
                path: self.path.clone(),
                line: self.line,
                column: e.column(),
                message: e.to_string(),
            }));
        }
    }
}

/// The temporary name an output is written under before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Writes a file under a temporary name; [`AtomicWriter::commit`] flushes, syncs and renames it into
/// place. Dropped without a commit, the temporary file is left for the next run to overwrite.
pub struct AtomicWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    lines: u64,
}

impl AtomicWriter {
    /// Starts writing `path` (through `path.partial`).
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = partial_path(path);
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            lines: 0,
        })
    }

    /// Appends `value` as one JSON line.
    pub fn write_json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(|e| Error::Format {
            path: self.tmp.clone(),
            message: format!("cannot serialise a record: {e}"),
        })?;
        self.out
            .write_all(b"\n")
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.lines += 1;
        Ok(())
    }

    /// Appends raw bytes (one or more complete lines).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.tmp, e))?;
        self.lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(())
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> Result<u64> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.lines)
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file renamed into place.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut w = AtomicWriter::create(path)?;
    w.write_raw(json.as_bytes())?;
    w.write_raw(b"\n")?;
    w.commit().map(|_| ())
}

/// Reads a JSON document; `None` if the file does not exist.
pub fn read_json_if_exists<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn atomic_writer_only_shows_the_file_after_commit_and_reader_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut w = AtomicWriter::create(&path).unwrap();
        w.write_json(&serde_json::json!({"a": 1})).unwrap();
        w.write_raw(b"\n{\"a\": 2}\nnot json\n").unwrap();
        assert!(!path.exists());
        w.commit().unwrap();
        assert!(path.exists() && !partial_path(&path).exists());
        let got: Vec<Result<serde_json::Value>> = JsonlReader::open(&path).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].as_ref().unwrap()["a"], 2);
        let err = got[2].as_ref().unwrap_err().to_string();
        assert!(err.contains("x.jsonl:4:"), "{err}");
    }
}
