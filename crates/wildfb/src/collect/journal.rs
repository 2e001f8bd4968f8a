//! The LLM answer journal: every answer is appended here (keyed by a hash of model + prompt) before it
//! is used, so a killed run, resumed, finds what it already paid for and never sends that prompt again.
//!
//! One JSON object per line. A line cut short by a kill (no final newline, or not JSON) is dropped when
//! the journal is reopened; a bad line anywhere else is corruption and an error naming the line.
//! Keys are 64 hex digits (SHA-256).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
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

fn key_bytes(key: &str) -> Option<[u8; 32]> {
    if key.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// An append-only journal. Only where each answer lies in the file is kept in memory (about 50 bytes
/// an answer), so a journal of millions of answers costs little; an answer is read back when used.
pub struct Journal {
    path: PathBuf,
    file: File,
    reader: File,
    index: HashMap<[u8; 32], (u64, usize)>,
    end: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, indexing its answers and cutting off a torn last line.
    pub fn open(path: &Path) -> Result<Self> {
        let mut index = HashMap::new();
        let mut good_len = 0u64;
        let mut total = 0u64;
        if path.exists() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            total = file.metadata().map_err(|e| Error::io(path, e))?.len();
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut line = Vec::new();
            let mut line_no = 0usize;
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| Error::io(path, e))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break; // end, or a line torn when the run was killed
                }
                line_no += 1;
                let is_last = good_len + n as u64 >= total;
                if !line.iter().all(u8::is_ascii_whitespace) {
                    let parsed = serde_json::from_slice::<JournalEntry>(&line)
                        .map_err(|e| (e.column(), e.to_string()))
                        .and_then(|e| key_bytes(&e.key).ok_or((1, format!("bad key {:?}", e.key))));
                    match parsed {
                        Ok(key) => {
                            index.insert(key, (good_len, n));
                        }
                        Err(_) if is_last => break,
                        Err((column, message)) => {
                            return Err(Error::Json {
                                path: path.to_path_buf(),
                                line: line_no,
                                column,
                                message: format!("corrupt journal entry: {message}"),
                            })
                        }
                    }
                }
                good_len += n as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if good_len < total {
            file.set_len(good_len).map_err(|e| Error::io(path, e))?;
        }
        let reader = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            reader,
            index,
            end: good_len,
        })
    }

    /// The journalled answer for `key`, read back from the file.
    pub fn get(&mut self, key: &str) -> Result<Option<JournalEntry>> {
        let Some(&(offset, len)) = key_bytes(key).and_then(|k| self.index.get(&k)) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; len];
        self.reader
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.reader.read_exact(&mut buf))
            .map_err(|e| Error::io(&self.path, e))?;
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| Error::Format {
                path: self.path.clone(),
                message: format!("journal entry at byte {offset} changed: {e}"),
            })
    }

    /// Answers in the journal.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the journal holds no answer.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Appends `entry` (one `write` of the whole line) and indexes it.
    pub fn append(&mut self, entry: JournalEntry) -> Result<()> {
        let key = key_bytes(&entry.key).ok_or_else(|| Error::Format {
            path: self.path.clone(),
            message: format!("bad journal key {:?}", entry.key),
        })?;
        let mut line = serde_json::to_vec(&entry).map_err(|e| Error::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| Error::io(&self.path, e))?;
        self.index.insert(key, (self.end, line.len()));
        self.end += line.len() as u64;
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

    fn entry(name: &str) -> JournalEntry {
        JournalEntry {
            key: journal_key("m", name),
            content: format!("[[3]] {name}"),
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
        let b = j.get(&journal_key("m", "b")).unwrap().unwrap();
        assert_eq!(b.content, "[[3]] b");
        assert!(j.get(&journal_key("m", "c")).unwrap().is_none());
        j.append(entry("c")).unwrap();
        assert_eq!(
            j.get(&journal_key("m", "c")).unwrap().unwrap().content,
            "[[3]] c"
        );
        drop(j);
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.len(), 3);
        assert_eq!(
            j.get(&journal_key("m", "a"))
                .unwrap()
                .unwrap()
                .prompt_tokens,
            5
        );
        assert_ne!(journal_key("m", "p"), journal_key("m2", "p"));
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let good = |k: &str| format!("{}\n", serde_json::to_string(&entry(k)).unwrap());
        std::fs::write(&path, format!("{}not json\n{}", good("a"), good("b"))).unwrap();
        let err = Journal::open(&path).err().unwrap().to_string();
        assert!(err.contains("j.jsonl:2:"), "{err}");
    }
}
