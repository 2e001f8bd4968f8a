//! The LLM answer journal: every answer is appended here (keyed by a hash of model + prompt) before it
//! is used, so a killed run, resumed, finds what it already paid for and never sends that prompt again.
//!
//! One JSON object per line. A line cut short by a kill (no final newline, or not JSON) is dropped when
//! the journal is reopened; a bad line anywhere else is corruption and an error naming the line.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One journalled answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// [`journal_key`] of the model and prompt.
    pub key: String,
    /// The answer's text (`choices[0].message.content`).
    pub content: String,
    /// Prompt tokens the endpoint reported for it.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens the endpoint reported for it.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// Hex SHA-256 of the model name and the prompt.
pub fn journal_key(model: &str, prompt: &str) -> String {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(prompt.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// An append-only journal and the answers already in it.
pub struct Journal {
    path: PathBuf,
    file: File,
    entries: HashMap<String, JournalEntry>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, loading its answers and cutting off a torn last line.
    pub fn open(path: &Path) -> Result<Self> {
        let mut entries = HashMap::new();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut good_len = 0usize;
        let mut line_no = 0usize;
        let mut start = 0usize;
        while start < bytes.len() {
            line_no += 1;
            let Some(nl) = bytes[start..].iter().position(|b| *b == b'\n') else {
                break; // torn: written up to here when the run was killed
            };
            let line = &bytes[start..start + nl];
            let is_last = start + nl + 1 >= bytes.len();
            if !line.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<JournalEntry>(line) {
                    Ok(e) => {
                        entries.insert(e.key.clone(), e);
                    }
                    Err(_) if is_last => break,
                    Err(e) => {
                        return Err(Error::Json {
                            path: path.to_path_buf(),
                            line: line_no,
                            column: e.column(),
                            message: format!("corrupt journal entry: {e}"),
                        })
                    }
                }
            }
            start += nl + 1;
            good_len = start;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if good_len < bytes.len() {
            file.set_len(good_len as u64)
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// The journalled answer for `key`.
    pub fn get(&self, key: &str) -> Option<&JournalEntry> {
        self.entries.get(key)
    }

    /// Answers in the journal.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the journal holds no answer.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends `entry` (one `write` of the whole line) and remembers it.
    pub fn append(&mut self, entry: JournalEntry) -> Result<()> {
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.entries.insert(entry.key.clone(), entry);
        Ok(())
    }

    /// Flushes the journal to disk.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(key: &str) -> JournalEntry {
        JournalEntry {
            key: key.into(),
            content: format!("[[3]] {key}"),
            prompt_tokens: 5,
            completion_tokens: 2,
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.append(entry("a")).unwrap();
        j.append(entry("b")).unwrap();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"key":"c","cont"#);
        std::fs::write(&path, &bytes).unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.len(), 2);
        assert!(j.get("b").is_some() && j.get("c").is_none());
        j.append(entry("c")).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.len(), 3);
        assert_ne!(journal_key("m", "p"), journal_key("m2", "p"));
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(
            &path,
            "{\"key\":\"a\",\"content\":\"x\"}\nnot json\n{\"key\":\"b\",\"content\":\"y\"}\n",
        )
        .unwrap();
        let err = Journal::open(&path).err().unwrap().to_string();
        assert!(err.contains("j.jsonl:2:"), "{err}");
    }
}
