//! `wildfb import` end to end: the real binary on the shipped ShareGPT sample and the hand-written
//! WildChat fixtures, the parquet read back by polars directly, and bad inputs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wildfb::import::input::read_json_elements;
use wildfb::import::sharegpt::{to_wildchat, ShareGptConversation};
use wildfb::parquet::{read_wildchat, write_wildchat};
use wildreward_types::wildchat::WildChatConversation;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sample() -> PathBuf {
    repo().join("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz")
}

/// A fresh directory under the target dir, removed first if a previous run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wildfb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sharegpt_sample_becomes_wildchat_parquet_that_polars_reads() {
    let dir = scratch("import-sharegpt");
    let out = dir.join("wildchat-sharegpt.parquet");
    let o = wildfb(&[
        "import",
        "sharegpt",
        "--input",
        s(&sample()),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rows_in"], 2000);
    assert_eq!(report["rows_out"], 2000);
    assert!(dir.join("wildchat-sharegpt.parquet.report.json").exists());
    assert!(!dir.join("wildchat-sharegpt.parquet.partial").exists());

    // Read with polars itself, not our reader: WildChat's columns with WildChat's types.
    let df = ParquetReader::new(std::fs::File::open(&out).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 2000);
    let schema = df.schema();
    for name in [
        "conversation_hash",
        "model",
        "language",
        "state",
        "country",
        "hashed_ip",
    ] {
        assert_eq!(schema.get(name), Some(&DataType::String), "{name}");
    }
    assert_eq!(schema.get("turn"), Some(&DataType::Int64));
    assert_eq!(schema.get("toxic"), Some(&DataType::Boolean));
    assert_eq!(schema.get("redacted"), Some(&DataType::Boolean));
    assert!(matches!(
        schema.get("timestamp"),
        Some(DataType::Datetime(TimeUnit::Microseconds, Some(tz))) if tz.as_str() == "UTC"
    ));
    let Some(DataType::List(inner)) = schema.get("conversation") else {
        panic!("conversation is {:?}", schema.get("conversation"));
    };
    let DataType::Struct(fields) = inner.as_ref() else {
        panic!("conversation items are {inner:?}");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "content",
            "country",
            "hashed_ip",
            "header",
            "language",
            "redacted",
            "role",
            "state",
            "timestamp",
            "toxic",
            "turn_identifier"
        ]
    );
    // Every row is marked as adapted, never passed off as WildChat.
    let adapted = df.column("adapted_from").unwrap().str().unwrap().clone();
    assert_eq!(adapted.equal("sharegpt").sum(), Some(2000));
    let hashes = df
        .column("conversation_hash")
        .unwrap()
        .as_materialized_series()
        .clone();
    assert_eq!(hashes.n_unique().unwrap(), 2000);
    // Mostly English, as ShareGPT is.
    let english = df
        .column("language")
        .unwrap()
        .str()
        .unwrap()
        .equal("English")
        .sum();
    assert!(english.unwrap() > 1500, "{english:?}");

    // Our reader gives back exactly what the mapping produced.
    let rows = read_wildchat(&out).unwrap();
    let originals = read_json_elements::<ShareGptConversation>(&sample(), false).unwrap();
    assert_eq!(rows.len(), originals.len());
    for (row, orig) in rows.iter().zip(&originals).step_by(97) {
        assert_eq!(row, &to_wildchat(&orig.value).unwrap());
    }
    let total_messages: usize = rows.iter().map(|r| r.conversation.len()).sum();
    assert_eq!(report["messages"], total_messages);
}

#[test]
fn hand_written_wildchat_rows_round_trip_exactly() {
    let dir = scratch("import-wildchat-json");
    let input = repo().join("tests/fixtures/wildchat/rows.jsonl");
    let out = dir.join("fixtures.parquet");
    let o = wildfb(&[
        "import",
        "wildchat-json",
        "--input",
        s(&input),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Vec<WildChatConversation> = read_json_elements(&input, false)
        .unwrap()
        .into_iter()
        .map(|l| l.value)
        .collect();
    assert_eq!(want.len(), 6);
    let got = read_wildchat(&out).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        got[1].conversation[0].content,
        "请问1到100的所有整数之和是多少？"
    );
    assert_eq!(
        got[0].conversation[0].timestamp.as_deref(),
        Some("2023-09-14T08:14:02Z")
    );
}

#[test]
fn malformed_json_input_names_the_file_and_line() {
    let dir = scratch("import-bad-json");
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}]}\n\
         {\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}]}\n\
         {\"id\": \"c\", \"conversations\": [{\"from\": \"human\"}]}\n",
    )
    .unwrap();
    let out = dir.join("x.parquet");
    let o = wildfb(&["import", "sharegpt", "--input", s(&bad), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    assert!(err.contains("missing field `value`"), "{err}");
    assert!(!out.exists(), "nothing is written from a bad input");

    let missing = dir.join("nope.json");
    let o = wildfb(&[
        "import",
        "sharegpt",
        "--input",
        s(&missing),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.json"));
}

#[test]
fn truncated_sharegpt_array_needs_an_explicit_flag() {
    let dir = scratch("import-truncated");
    let arr = dir.join("sharegpt.json");
    std::fs::write(
        &arr,
        "[{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hello there, how are you?\"}, {\"from\": \"gpt\", \"value\": \"Fine, thanks.\"}]},\n \
         {\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"val",
    )
    .unwrap();
    let out = dir.join("t.parquet");
    let o = wildfb(&["import", "sharegpt", "--input", s(&arr), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("sharegpt.json") && err.contains("truncated"),
        "{err}"
    );
    let o = wildfb(&[
        "import",
        "sharegpt",
        "--input",
        s(&arr),
        "--out",
        s(&out),
        "--allow-truncated",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_wildchat(&out).unwrap().len(), 1);
}

#[test]
fn bad_parquet_files_name_the_file_and_the_problem() {
    let dir = scratch("import-bad-parquet");
    // A real parquet file that lacks the `conversation` column.
    let mut df =
        df!("conversation_hash" => ["h"], "model" => ["m"], "language" => ["English"]).unwrap();
    let no_conv = dir.join("no-conversation.parquet");
    ParquetWriter::new(std::fs::File::create(&no_conv).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = read_wildchat(&no_conv).unwrap_err().to_string();
    assert!(
        err.contains("no-conversation.parquet") && err.contains("missing column `conversation`"),
        "{err}"
    );

    // A column of the wrong type.
    let mut df = df!("conversation_hash" => [1i64], "model" => ["m"], "language" => ["English"], "conversation" => ["x"])
        .unwrap();
    let wrong = dir.join("wrong-type.parquet");
    ParquetWriter::new(std::fs::File::create(&wrong).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = read_wildchat(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("wrong-type.parquet") && err.contains("`conversation_hash`"),
        "{err}"
    );

    // A truncated file.
    let good = dir.join("good.parquet");
    let rows: Vec<WildChatConversation> =
        read_json_elements(&repo().join("tests/fixtures/wildchat/rows.jsonl"), false)
            .unwrap()
            .into_iter()
            .map(|l| l.value)
            .collect();
    write_wildchat(&good, &rows).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_wildchat(&cut).unwrap_err().to_string();
    assert!(err.contains("cut.parquet"), "{err}");
}
