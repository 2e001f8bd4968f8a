//! Step `preprocess`: WildChat parquet → one [`Instance`] per assistant turn that a user answered.
//!
//! Every instance carries its user (`user`, `user_key`): the conversation's `hashed_ip` where the file
//! has that column and the row a value, else the conversation hash ([`super::users`]).
//!
//! Files are read a slice of row groups at a time (only the columns the pipeline needs), so an
//! input of millions of conversations never has to fit in memory. Conversations that are duplicated,
//! malformed, in another language, too short or not alternating user/assistant are counted and
//! skipped, never fatal; a file that is not WildChat-shaped parquet is an error naming it.

use super::config::PreprocessConfig;
use super::io::AtomicWriter;
use super::stats::StepStats;
use super::users::{UserKey, UserTag};
use crate::error::{Error, Result};
use crate::parquet::check_schema;
use indicatif::ProgressBar;
use polars::prelude::*;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use wildreward_types::record::instance_id;
use wildreward_types::wildchat::columns as col;
use wildreward_types::{Instance, Message, Role};

/// Rows decoded at a time (whole row groups are kept together when they fit).
const SLICE_ROWS: usize = 8192;

/// The parquet files of `input`: the file itself, or every `*.parquet` in the directory (sorted).
pub fn input_files(input: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
    if !meta.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
        let path = entry.map_err(|e| Error::io(input, e))?.path();
        if path.extension().is_some_and(|x| x == "parquet") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::Format {
            path: input.to_path_buf(),
            message: "the directory holds no .parquet file".into(),
        });
    }
    Ok(files)
}

/// One conversation as the pipeline reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation<'a> {
    /// `conversation_hash`.
    pub hash: &'a str,
    /// `model`.
    pub model: &'a str,
    /// `language`.
    pub language: &'a str,
    /// `hashed_ip` (absent when the file has no such column or the row a null).
    pub hashed_ip: Option<&'a str>,
    /// `(role, content)` of each message.
    pub messages: Vec<(&'a str, &'a str)>,
}

/// What one conversation yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Yield {
    /// Its instances, and how many of its turns were dropped as too long.
    Instances(Vec<Instance>, u64),
    /// Nothing, for this reason.
    Dropped(&'static str),
}

/// Cuts a conversation into instances: for every assistant message followed by a user message, the
/// judged pair, everything before it as history, and the next user message as feedback.
pub fn instances_of(c: &Conversation<'_>, cfg: &PreprocessConfig) -> Yield {
    if !cfg.languages.iter().any(|l| l == c.language) {
        return Yield::Dropped("language");
    }
    let n = c.messages.len();
    if n < cfg.min_messages.max(3) {
        return Yield::Dropped("too_few_messages");
    }
    let alternating = c.messages.iter().enumerate().all(|(i, (role, _))| {
        *role
            == if i % 2 == 0 {
                Role::User.as_str()
            } else {
                Role::Assistant.as_str()
            }
    });
    if !alternating {
        return Yield::Dropped("not_alternating");
    }
    // Words up to (not including) message i.
    let mut words = Vec::with_capacity(n + 1);
    words.push(0usize);
    for (_, content) in &c.messages {
        let last = words.last().copied().unwrap_or(0);
        words.push(last + content.split_whitespace().count());
    }
    let message = |i: usize| {
        let (role, content) = c.messages[i];
        let role = if role == Role::User.as_str() {
            Role::User
        } else {
            Role::Assistant
        };
        Message::new(role, content)
    };
    let mut out = Vec::new();
    let mut too_long = 0;
    let mut turn = 0usize;
    while 2 * turn + 2 < n {
        let (q, r, f) = (2 * turn, 2 * turn + 1, 2 * turn + 2);
        if words[r + 1] > cfg.max_context_words {
            too_long += 1;
        } else {
            out.push(Instance {
                id: instance_id(c.hash, turn),
                model: c.model.to_string(),
                turn,
                history: (0..q).map(message).collect(),
                messages: [message(q), message(r)],
                user_feedback: message(f),
                language: c.language.to_string(),
            });
        }
        turn += 1;
    }
    Yield::Instances(out, too_long)
}

fn conversation_key(hash: &str) -> u128 {
    let d = Sha256::digest(hash.as_bytes());
    d.iter()
        .take(16)
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

fn slices(row_groups: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut len) = (0usize, 0usize);
    for &rows in row_groups {
        if len > 0 && len + rows > SLICE_ROWS {
            out.push((start, len));
            start += len;
            len = 0;
        }
        if rows > SLICE_ROWS {
            let mut done = 0;
            while done < rows {
                let take = SLICE_ROWS.min(rows - done);
                out.push((start, take));
                start += take;
                done += take;
            }
        } else {
            len += rows;
        }
    }
    if len > 0 {
        out.push((start, len));
    }
    out
}

/// Runs the step over `files`, writing `out`; `progress` counts conversations.
pub fn run(
    files: &[PathBuf],
    cfg: &PreprocessConfig,
    out: &Path,
    progress: &ProgressBar,
) -> Result<StepStats> {
    let mut stats = StepStats::default();
    let mut writer = AtomicWriter::create(out)?;
    let mut seen: HashSet<u128> = HashSet::new();
    let mut languages: BTreeMap<String, u64> = BTreeMap::new();
    let mut kept_conversations = 0u64;
    let mut with_ip = 0u64;
    for path in files {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = ParquetReader::new(file);
        let schema = reader.schema().map_err(|e| Error::parquet(path, e))?;
        let schema = Schema::from_arrow_schema(&schema);
        check_schema(path, &schema)?;
        let has_ip = schema.get(col::HASHED_IP) == Some(&DataType::String);
        let mut columns = vec![
            col::CONVERSATION_HASH,
            col::MODEL,
            col::LANGUAGE,
            col::CONVERSATION,
        ];
        if has_ip {
            columns.push(col::HASHED_IP);
        }
        let columns: Vec<String> = columns.into_iter().map(String::from).collect();
        let metadata = reader
            .get_metadata()
            .map_err(|e| Error::parquet(path, e))?
            .clone();
        let groups: Vec<usize> = metadata.row_groups.iter().map(|g| g.num_rows()).collect();
        for (offset, len) in slices(&groups) {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = ParquetReader::new(file);
            reader.set_metadata(metadata.clone());
            let df = reader
                .with_columns(Some(columns.clone()))
                .with_slice(Some((offset, len)))
                .finish()
                .map_err(|e| {
                    Error::parquet(path, format!("rows {offset}..{}: {e}", offset + len))
                })?;
            let slice = SliceColumns::read(&df, has_ip).map_err(|e| Error::parquet(path, e))?;
            let rows = slice.conversations();
            stats.rows_in += rows.len() as u64;
            // Duplicates are decided in input order, before the parallel part.
            let rows: Vec<Option<Conversation<'_>>> = rows
                .into_iter()
                .map(|row| match row {
                    Some(c) if !seen.insert(conversation_key(c.hash)) => {
                        stats.drop("duplicate_conversation");
                        None
                    }
                    Some(c) => Some(c),
                    None => {
                        stats.drop("malformed_row");
                        None
                    }
                })
                .collect();
            let results: Vec<(Yield, Vec<u8>)> = rows
                .par_iter()
                .flatten()
                .map(|c| {
                    let y = instances_of(c, cfg);
                    let mut lines = Vec::new();
                    if let Yield::Instances(instances, _) = &y {
                        let user = UserTag::of_conversation(c.hash, c.hashed_ip);
                        for instance in instances {
                            // Serialising plain data to memory cannot fail.
                            let _ = serde_json::to_writer(
                                &mut lines,
                                &Keyed {
                                    instance,
                                    user: &user,
                                },
                            );
                            lines.push(b'\n');
                        }
                    }
                    (y, lines)
                })
                .collect();
            for (c, (y, lines)) in rows.iter().flatten().zip(results) {
                match y {
                    Yield::Dropped(reason) => stats.drop(reason),
                    Yield::Instances(instances, too_long) => {
                        kept_conversations += 1;
                        let key = UserTag::of_conversation(c.hash, c.hashed_ip).user_key;
                        if key == Some(UserKey::HashedIp) {
                            with_ip += 1;
                        }
                        *languages.entry(c.language.to_string()).or_default() += 1;
                        *stats.drops.entry("too_long".into()).or_default() += too_long;
                        stats.rows_out += instances.len() as u64;
                        writer.write_raw(&lines)?;
                    }
                }
            }
            progress.inc(len as u64);
        }
    }
    stats.drops.retain(|_, n| *n > 0);
    writer.commit()?;
    stats.detail("files", files.len());
    stats.detail("conversations_kept", kept_conversations);
    stats.detail("conversations_with_hashed_ip", with_ip);
    stats.detail(
        "languages",
        serde_json::to_value(&languages).unwrap_or_default(),
    );
    Ok(stats)
}

/// A line of `instances.jsonl`, borrowed (as [`super::users::KeyedInstance`] reads it).
#[derive(serde::Serialize)]
struct Keyed<'a> {
    #[serde(flatten)]
    instance: &'a Instance,
    #[serde(flatten)]
    user: &'a UserTag,
}

/// The columns of one slice, each in one chunk, with each row's message range.
struct SliceColumns {
    hash: StringChunked,
    model: StringChunked,
    language: StringChunked,
    hashed_ip: Option<StringChunked>,
    ranges: Vec<Option<(usize, usize)>>,
    role: StringChunked,
    content: StringChunked,
}

impl SliceColumns {
    fn read(df: &DataFrame, has_ip: bool) -> std::result::Result<Self, String> {
        let e = |x: PolarsError| x.to_string();
        let string = |name: &str| -> std::result::Result<StringChunked, String> {
            Ok(df
                .column(name)
                .map_err(e)?
                .str()
                .map_err(e)?
                .rechunk()
                .into_owned())
        };
        let lists = df
            .column(col::CONVERSATION)
            .map_err(e)?
            .as_materialized_series()
            .list()
            .map_err(e)?
            .rechunk()
            .into_owned();
        let mut ranges = Vec::with_capacity(df.height());
        if let Some(arr) = lists.downcast_iter().next() {
            let offsets = arr.offsets();
            for i in 0..arr.len() {
                let valid = arr.validity().is_none_or(|v| v.get_bit(i));
                ranges.push(valid.then(|| offsets.start_end(i)));
            }
        }
        let inner = lists.get_inner();
        let fields = inner.struct_().map_err(e)?.fields_as_series();
        let field = |name: &str| -> std::result::Result<StringChunked, String> {
            Ok(fields
                .iter()
                .find(|s| s.name().as_str() == name)
                .ok_or_else(|| format!("`conversation` messages have no `{name}` field"))?
                .str()
                .map_err(e)?
                .rechunk()
                .into_owned())
        };
        Ok(Self {
            hash: string(col::CONVERSATION_HASH)?,
            model: string(col::MODEL)?,
            language: string(col::LANGUAGE)?,
            hashed_ip: if has_ip {
                Some(string(col::HASHED_IP)?)
            } else {
                None
            },
            role: field("role")?,
            content: field("content")?,
            ranges,
        })
    }

    /// Each row as a conversation; `None` for a row with a null where a value is needed.
    fn conversations(&self) -> Vec<Option<Conversation<'_>>> {
        (0..self.ranges.len())
            .map(|i| {
                let (start, end) = self.ranges[i]?;
                let messages = (start..end)
                    .map(|j| Some((self.role.get(j)?, self.content.get(j)?)))
                    .collect::<Option<Vec<_>>>()?;
                Some(Conversation {
                    hash: self.hash.get(i)?,
                    model: self.model.get(i)?,
                    language: self.language.get(i)?,
                    hashed_ip: self.hashed_ip.as_ref().and_then(|ip| ip.get(i)),
                    messages,
                })
            })
            .collect()
    }
}
