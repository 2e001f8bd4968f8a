//! WildChat rows to and from parquet with polars, in the `allenai/WildChat-4.8M` column layout.
//!
//! The writer emits every column of [`WildChatConversation`] (timestamps as microseconds UTC, the
//! conversation as a list of message structs). The reader checks the columns the pipeline needs
//! (`conversation_hash`, `model`, `language`, `conversation` with `role` / `content`) and reads the
//! rest when present, so it takes real WildChat files as well as ours.

use crate::error::{Error, Result};
use polars::prelude::*;
use std::fs::File;
use std::path::Path;
use wildreward_types::wildchat::{
    columns as col, WildChatConversation, WildChatHeader, WildChatMessage,
};

const MICROS: TimeUnit = TimeUnit::Microseconds;

fn parse_timestamp(s: &str) -> std::result::Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("timestamp {s:?} is not RFC 3339: {e}"))
}

fn format_timestamp(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn strings<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Series {
    StringChunked::from_iter_options(name.into(), values).into_series()
}

fn bools(name: &str, values: impl Iterator<Item = Option<bool>>) -> Series {
    BooleanChunked::from_iter_options(name.into(), values).into_series()
}

fn timestamps(name: &str, values: &[Option<i64>]) -> Series {
    Int64Chunked::from_iter_options(name.into(), values.iter().copied())
        .into_datetime(MICROS, Some(TimeZone::UTC))
        .into_series()
}

fn header_struct(name: &str, headers: &[Option<&WildChatHeader>]) -> PolarsResult<Series> {
    let accept = strings(
        "accept-language",
        headers
            .iter()
            .map(|h| h.and_then(|h| h.accept_language.as_deref())),
    );
    let agent = strings(
        "user-agent",
        headers
            .iter()
            .map(|h| h.and_then(|h| h.user_agent.as_deref())),
    );
    Ok(
        StructChunked::from_series(name.into(), headers.len(), [accept, agent].iter())?
            .into_series(),
    )
}

/// Builds the WildChat-shaped DataFrame for `rows`. Timestamps that are not RFC 3339 are an error
/// naming the conversation.
pub fn to_dataframe(rows: &[WildChatConversation]) -> std::result::Result<DataFrame, String> {
    let msgs: Vec<&WildChatMessage> = rows.iter().flat_map(|r| &r.conversation).collect();
    let mut msg_ts = Vec::with_capacity(msgs.len());
    let mut row_ts = Vec::with_capacity(rows.len());
    for r in rows {
        let ts = |t: &Option<String>| t.as_deref().map(parse_timestamp).transpose();
        row_ts.push(ts(&r.timestamp).map_err(|e| format!("{}: {e}", r.conversation_hash))?);
        for m in &r.conversation {
            msg_ts.push(ts(&m.timestamp).map_err(|e| format!("{}: {e}", r.conversation_hash))?);
        }
    }
    build(rows, &msgs, &row_ts, &msg_ts).map_err(|e| e.to_string())
}

fn build(
    rows: &[WildChatConversation],
    msgs: &[&WildChatMessage],
    row_ts: &[Option<i64>],
    msg_ts: &[Option<i64>],
) -> PolarsResult<DataFrame> {
    // All messages as one struct column, then cut into one list entry per conversation.
    let fields = [
        strings("content", msgs.iter().map(|m| Some(m.content.as_str()))),
        strings("country", msgs.iter().map(|m| m.country.as_deref())),
        strings("hashed_ip", msgs.iter().map(|m| m.hashed_ip.as_deref())),
        header_struct(
            "header",
            &msgs.iter().map(|m| m.header.as_ref()).collect::<Vec<_>>(),
        )?,
        strings("language", msgs.iter().map(|m| m.language.as_deref())),
        bools("redacted", msgs.iter().map(|m| m.redacted)),
        strings("role", msgs.iter().map(|m| Some(m.role.as_str()))),
        strings("state", msgs.iter().map(|m| m.state.as_deref())),
        timestamps("timestamp", msg_ts),
        bools("toxic", msgs.iter().map(|m| m.toxic)),
        Int64Chunked::from_iter_options(
            "turn_identifier".into(),
            msgs.iter().map(|m| m.turn_identifier),
        )
        .into_series(),
    ];
    let all =
        StructChunked::from_series("conversation".into(), msgs.len(), fields.iter())?.into_series();
    let mut per_row = Vec::with_capacity(rows.len());
    let mut offset = 0i64;
    for r in rows {
        per_row.push(all.slice(offset, r.conversation.len()));
        offset += r.conversation.len() as i64;
    }
    let conversation = if rows.is_empty() {
        Series::new_empty(
            col::CONVERSATION.into(),
            &DataType::List(Box::new(all.dtype().clone())),
        )
    } else {
        Series::new(col::CONVERSATION.into(), &per_row)
    };
    let columns: Vec<Column> = vec![
        strings(
            col::CONVERSATION_HASH,
            rows.iter().map(|r| Some(r.conversation_hash.as_str())),
        )
        .into(),
        strings(col::MODEL, rows.iter().map(|r| Some(r.model.as_str()))).into(),
        timestamps(col::TIMESTAMP, row_ts).into(),
        conversation.into(),
        Int64Chunked::from_iter_values(col::TURN.into(), rows.iter().map(|r| r.turn))
            .into_series()
            .into(),
        strings(
            col::LANGUAGE,
            rows.iter().map(|r| Some(r.language.as_str())),
        )
        .into(),
        bools(col::TOXIC, rows.iter().map(|r| r.toxic)).into(),
        bools(col::REDACTED, rows.iter().map(|r| r.redacted)).into(),
        strings(col::STATE, rows.iter().map(|r| r.state.as_deref())).into(),
        strings(col::COUNTRY, rows.iter().map(|r| r.country.as_deref())).into(),
        strings(col::HASHED_IP, rows.iter().map(|r| r.hashed_ip.as_deref())).into(),
        header_struct(
            col::HEADER,
            &rows.iter().map(|r| r.header.as_ref()).collect::<Vec<_>>(),
        )?
        .into(),
        strings(
            col::ADAPTED_FROM,
            rows.iter().map(|r| r.adapted_from.as_deref()),
        )
        .into(),
        strings(col::SOURCE_ID, rows.iter().map(|r| r.source_id.as_deref())).into(),
    ];
    DataFrame::new(rows.len(), columns)
}

/// Writes `rows` to a zstd-compressed parquet file at `path`, through a temporary file renamed into
/// place so a crash never leaves a half-written file under the final name.
pub fn write_wildchat(path: &Path, rows: &[WildChatConversation]) -> Result<u64> {
    let mut df = to_dataframe(rows).map_err(|e| Error::parquet(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = path.with_extension("parquet.partial");
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let bytes = ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(&mut df)
        .map_err(|e| Error::parquet(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// The columns the pipeline cannot do without, and the type each must have.
const REQUIRED: [(&str, &str); 4] = [
    (col::CONVERSATION_HASH, "string"),
    (col::MODEL, "string"),
    (col::LANGUAGE, "string"),
    (
        col::CONVERSATION,
        "list of structs with string `role` and `content`",
    ),
];

/// Checks that `schema` has the columns the pipeline needs, with their types; the error names the file.
pub fn check_schema(path: &Path, schema: &Schema) -> Result<()> {
    let bad = |message: String| Err(Error::parquet(path, message));
    for (name, want) in REQUIRED {
        let Some(dtype) = schema.get(name) else {
            return bad(format!(
                "missing column `{name}` ({want}); found columns: {}",
                schema
                    .iter_names()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let ok = match (name, dtype) {
            (col::CONVERSATION, DataType::List(inner)) => match inner.as_ref() {
                DataType::Struct(fields) => ["role", "content"].iter().all(|f| {
                    fields
                        .iter()
                        .any(|fl| fl.name() == *f && fl.dtype() == &DataType::String)
                }),
                _ => false,
            },
            (col::CONVERSATION, _) => false,
            (_, d) => d == &DataType::String,
        };
        if !ok {
            return bad(format!("column `{name}` has type {dtype}, expected {want}"));
        }
    }
    Ok(())
}

/// Reads every row of a WildChat-shaped parquet file.
///
/// A missing or mistyped required column, a truncated or corrupt file, or a null where a value is
/// required is an error naming the file (and the row).
pub fn read_wildchat(path: &Path) -> Result<Vec<WildChatConversation>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = ParquetReader::new(file);
    let arrow_schema = reader.schema().map_err(|e| Error::parquet(path, e))?;
    let schema = Schema::from_arrow_schema(&arrow_schema);
    check_schema(path, &schema)?;
    let df = reader.finish().map_err(|e| Error::parquet(path, e))?;
    rows_from_dataframe(&df).map_err(|e| Error::parquet(path, e))
}

/// Converts a WildChat-shaped DataFrame back into rows (the inverse of [`to_dataframe`]).
pub fn rows_from_dataframe(
    df: &DataFrame,
) -> std::result::Result<Vec<WildChatConversation>, String> {
    let e = |x: PolarsError| x.to_string();
    let top = Fields::of(
        df.columns()
            .iter()
            .map(|c| c.as_materialized_series().clone()),
    )
    .map_err(e)?;
    // All messages of the file as one struct column (with its logical types: a struct taken row by row
    // would give timestamps as bare integers), cut by the list offsets.
    let conv = df
        .column(col::CONVERSATION)
        .map_err(e)?
        .as_materialized_series()
        .list()
        .map_err(e)?
        .rechunk();
    let arr = conv
        .downcast_iter()
        .next()
        .ok_or("`conversation` has no data")?;
    let offsets = arr.offsets().clone();
    let validity = arr.validity().cloned();
    let messages = conv.get_inner();
    let msg = Fields::of(messages.struct_().map_err(e)?.fields_as_series()).map_err(e)?;
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let required = |name: &str| {
            top.str(name, i)
                .map(str::to_string)
                .ok_or_else(|| format!("row {i}: column `{name}` is null"))
        };
        let conversation_hash = required(col::CONVERSATION_HASH)?;
        if validity.as_ref().is_some_and(|v| !v.get_bit(i)) {
            return Err(format!(
                "row {i} ({conversation_hash}): `conversation` is null"
            ));
        }
        let (start, end) = offsets.start_end(i);
        let messages = (start..end)
            .map(|j| {
                msg.message(j)
                    .map_err(|m| format!("message {}: {m}", j - start))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| format!("row {i} ({conversation_hash}): {m}"))?;
        rows.push(WildChatConversation {
            model: required(col::MODEL)?,
            language: required(col::LANGUAGE)?,
            timestamp: top.timestamp(col::TIMESTAMP, i),
            turn: top.int(col::TURN, i).unwrap_or(0),
            toxic: top.bool(col::TOXIC, i),
            redacted: top.bool(col::REDACTED, i),
            state: top.str(col::STATE, i).map(str::to_string),
            country: top.str(col::COUNTRY, i).map(str::to_string),
            hashed_ip: top.str(col::HASHED_IP, i).map(str::to_string),
            header: top.header(col::HEADER, i),
            adapted_from: top.str(col::ADAPTED_FROM, i).map(str::to_string),
            source_id: top.str(col::SOURCE_ID, i).map(str::to_string),
            conversation: messages,
            conversation_hash,
        });
    }
    Ok(rows)
}

/// Named columns of one frame or struct, each cast once to the type it is read as; absent or
/// differently-typed optional columns read as null.
struct Fields {
    strs: Vec<(String, StringChunked)>,
    bools: Vec<(String, BooleanChunked)>,
    ints: Vec<(String, Int64Chunked)>,
    times: Vec<(String, Int64Chunked, TimeUnit)>,
    structs: Vec<(String, Fields)>,
}

impl Fields {
    fn of(series: impl IntoIterator<Item = Series>) -> PolarsResult<Self> {
        let mut f = Fields {
            strs: vec![],
            bools: vec![],
            ints: vec![],
            times: vec![],
            structs: vec![],
        };
        for s in series {
            let name = s.name().to_string();
            match s.dtype() {
                DataType::String => f.strs.push((name, s.str()?.clone())),
                DataType::Boolean => f.bools.push((name, s.bool()?.clone())),
                DataType::Datetime(tu, _) => {
                    let tu = *tu;
                    f.times
                        .push((name, s.cast(&DataType::Int64)?.i64()?.clone(), tu))
                }
                d if d.is_integer() => f
                    .ints
                    .push((name, s.cast(&DataType::Int64)?.i64()?.clone())),
                DataType::Struct(_) => f
                    .structs
                    .push((name, Fields::of(s.struct_()?.fields_as_series())?)),
                _ => {}
            }
        }
        Ok(f)
    }

    fn str(&self, name: &str, i: usize) -> Option<&str> {
        self.strs.iter().find(|(n, _)| n == name)?.1.get(i)
    }

    fn bool(&self, name: &str, i: usize) -> Option<bool> {
        self.bools.iter().find(|(n, _)| n == name)?.1.get(i)
    }

    fn int(&self, name: &str, i: usize) -> Option<i64> {
        self.ints.iter().find(|(n, _)| n == name)?.1.get(i)
    }

    fn timestamp(&self, name: &str, i: usize) -> Option<String> {
        let (_, ca, tu) = self.times.iter().find(|(n, _, _)| n == name)?;
        let v = ca.get(i)?;
        format_timestamp(match tu {
            TimeUnit::Nanoseconds => v / 1000,
            TimeUnit::Microseconds => v,
            TimeUnit::Milliseconds => v * 1000,
        })
    }

    fn header(&self, name: &str, i: usize) -> Option<WildChatHeader> {
        let (_, h) = self.structs.iter().find(|(n, _)| n == name)?;
        let header = WildChatHeader {
            accept_language: h.str("accept-language", i).map(str::to_string),
            user_agent: h.str("user-agent", i).map(str::to_string),
        };
        (header != WildChatHeader::default()).then_some(header)
    }

    fn message(&self, j: usize) -> std::result::Result<WildChatMessage, String> {
        let req = |name: &str| {
            self.str(name, j)
                .map(str::to_string)
                .ok_or_else(|| format!("`{name}` is null"))
        };
        Ok(WildChatMessage {
            content: req("content")?,
            role: req("role")?,
            language: self.str("language", j).map(str::to_string),
            turn_identifier: self.int("turn_identifier", j),
            timestamp: self.timestamp("timestamp", j),
            toxic: self.bool("toxic", j),
            redacted: self.bool("redacted", j),
            country: self.str("country", j).map(str::to_string),
            state: self.str("state", j).map(str::to_string),
            hashed_ip: self.str("hashed_ip", j).map(str::to_string),
            header: self.header("header", j),
        })
    }
}
