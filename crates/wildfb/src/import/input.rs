//! Reading JSON inputs whatever their packaging: a JSON array (possibly truncated, like the PyPI copy of
//! ShareGPT), or JSON Lines; plain or gzip (told by the magic bytes, not the name). Every element comes
//! with its position so errors can name the file and line.

use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;
use std::io::Read;
use std::path::Path;

/// Reads the whole file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Format {
                path: path.to_path_buf(),
                message: format!("gzip stream is corrupt or truncated: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// One decoded element and the 1-based line it starts on.
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line of the file where the element starts.
    pub line: usize,
}

/// Decodes every element of a JSON array or a JSON Lines file.
///
/// With `allow_truncated`, a JSON array that ends inside an element yields the complete elements before
/// it; otherwise that is an [`Error::Truncated`].
pub fn read_json_elements<T: DeserializeOwned>(
    path: &Path,
    allow_truncated: bool,
) -> Result<Vec<Located<T>>> {
    let bytes = read_maybe_gzip(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let (line, column) = line_col(&bytes, e.valid_up_to());
        Error::Json {
            path: path.to_path_buf(),
            line,
            column,
            message: format!("invalid UTF-8: {e}"),
        }
    })?;
    let start = skip_ws(text.as_bytes(), 0);
    match text.as_bytes().get(start) {
        None => Err(Error::Format {
            path: path.to_path_buf(),
            message: "the file is empty".into(),
        }),
        Some(b'[') => read_array(path, text, start + 1, allow_truncated),
        Some(b'{') => read_lines(path, text),
        Some(_) => {
            let (line, column) = line_col(text.as_bytes(), start);
            Err(Error::Json {
                path: path.to_path_buf(),
                line,
                column,
                message: "expected a JSON array or JSON Lines of objects".into(),
            })
        }
    }
}

fn read_lines<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<Located<T>>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            line: i + 1,
            column: e.column(),
            message: e.to_string(),
        })?;
        out.push(Located { value, line: i + 1 });
    }
    Ok(out)
}

fn read_array<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    mut pos: usize,
    allow_truncated: bool,
) -> Result<Vec<Located<T>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let json_err = |at: usize, message: String| {
        let (line, column) = line_col(bytes, at);
        Error::Json {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    pos = skip_ws(bytes, pos);
    if bytes.get(pos) == Some(&b']') {
        return Ok(out);
    }
    loop {
        pos = skip_ws(bytes, pos);
        if pos >= bytes.len() {
            return truncated(path, bytes, pos, out, allow_truncated);
        }
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<T>();
        match stream.next() {
            Some(Ok(value)) => {
                let line = line_col(bytes, pos).0;
                out.push(Located { value, line });
                pos += stream.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => {
                return truncated(path, bytes, pos, out, allow_truncated);
            }
            Some(Err(e)) => {
                // serde_json's position is relative to `pos`; report it against the whole file.
                let (base_line, base_col) = line_col(bytes, pos);
                let column = if e.line() == 1 {
                    base_col + e.column() - 1
                } else {
                    e.column()
                };
                return Err(Error::Json {
                    path: path.to_path_buf(),
                    line: base_line + e.line() - 1,
                    column,
                    message: format!("array element {}: {e}", out.len()),
                });
            }
            None => return truncated(path, bytes, pos, out, allow_truncated),
        }
        pos = skip_ws(bytes, pos);
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => {
                let rest = skip_ws(bytes, pos + 1);
                if rest < bytes.len() {
                    return Err(json_err(rest, "trailing data after the JSON array".into()));
                }
                return Ok(out);
            }
            None => return truncated(path, bytes, pos, out, allow_truncated),
            Some(_) => {
                return Err(json_err(
                    pos,
                    "expected ',' or ']' after an array element".into(),
                ))
            }
        }
    }
}

fn truncated<T>(
    path: &Path,
    bytes: &[u8],
    pos: usize,
    out: Vec<Located<T>>,
    allow_truncated: bool,
) -> Result<Vec<Located<T>>> {
    if allow_truncated {
        Ok(out)
    } else {
        Err(Error::Truncated {
            path: path.to_path_buf(),
            element: out.len(),
            line: line_col(bytes, pos.min(bytes.len())).0,
            complete: out.len(),
        })
    }
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// 1-based line and column (in bytes) of a byte offset.
fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Row {
        a: u32,
    }

    fn write(name: &str, bytes: &[u8]) -> (tempdir::Dir, std::path::PathBuf) {
        let dir = tempdir::Dir::new();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    mod tempdir {
        /// A directory removed on drop (no extra dev-dependency for this one use).
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "wildfb-input-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_arrays_lines_and_gzip() {
        let (_d, p) = write("a.json", b" [ {\"a\":1},\n{\"a\":2} ]\n");
        let rows: Vec<Located<Row>> = read_json_elements(&p, false).unwrap();
        assert_eq!(rows.iter().map(|r| r.value.a).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rows[1].line, 2);

        let (_d2, p2) = write("b.jsonl", b"{\"a\":1}\n\n{\"a\":3}\n");
        let rows: Vec<Located<Row>> = read_json_elements(&p2, false).unwrap();
        assert_eq!(rows[1].line, 3);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":5}\n").unwrap();
        let (_d3, p3) = write("c.anything", &gz.finish().unwrap());
        let rows: Vec<Located<Row>> = read_json_elements(&p3, false).unwrap();
        assert_eq!(rows[0].value, Row { a: 5 });
    }

    #[test]
    fn truncated_arrays_error_unless_allowed() {
        let (_d, p) = write("t.json", b"[{\"a\":1},\n{\"a\":2},\n{\"a\":");
        let err = read_json_elements::<Row>(&p, false).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("t.json") && msg.contains("truncated") && msg.contains("line 3"),
            "{msg}"
        );
        let rows = read_json_elements::<Row>(&p, true).unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let (_d, p) = write("bad.jsonl", b"{\"a\":1}\n{\"a\":\"x\"}\n");
        let msg = read_json_elements::<Row>(&p, false)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.starts_with(&format!("{}:2:", p.display())), "{msg}");

        let (_d, p) = write("bad.json", b"[{\"a\":1},\n  {\"b\":2}]");
        let msg = read_json_elements::<Row>(&p, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("bad.json:2:") && msg.contains("missing field `a`"),
            "{msg}"
        );

        let (_d, p) = write("empty.json", b"  \n");
        let msg = read_json_elements::<Row>(&p, false)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("empty"), "{msg}");

        let (_d, p) = write("gz.json", &[0x1f, 0x8b, 8, 0, 1, 2]);
        let msg = read_json_elements::<Row>(&p, false)
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("gzip"), "{msg}");
    }
}
