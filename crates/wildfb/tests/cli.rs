//! The `wildfb` command line: help works, and `collect` runs end to end on the hand-written WildChat rows,
//! whose every case (duplicates aside) has a known outcome.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::{read_jsonl, repo, s, scratch, stats, wildfb};

#[test]
fn help_lists_the_subcommands() {
    let o = wildfb(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("collect") && help.contains("import"),
        "{help}"
    );
}

#[test]
fn collect_runs_on_the_hand_written_wildchat_rows() {
    let dir = scratch("cli-collect-fixtures");
    let parquet = dir.join("rows.parquet");
    let fixture = repo().join("tests/fixtures/wildchat/rows.jsonl");
    let o = wildfb(&[
        "import",
        "wildchat-json",
        "--input",
        s(&fixture),
        "--out",
        s(&parquet),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.join("wildfb");
    let o = wildfb(&[
        "collect",
        "--input",
        s(&parquet),
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let st = stats(&out);
    let pre = &st["steps"]["preprocess"];
    assert_eq!(pre["rows_in"], 6);
    // 0f1e2d3c gives two turns, 9b8a7c6d and 7e8f90a1 one each; the others are skipped, each for its reason.
    assert_eq!(pre["rows_out"], 4);
    assert_eq!(
        pre["drops"],
        serde_json::json!({"language": 1, "not_alternating": 1, "too_few_messages": 1})
    );
    let classified = read_jsonl(&out.join("classified.jsonl"));
    let label_of = |id: &str| {
        classified
            .iter()
            .find(|t| t["id"].as_str().unwrap().starts_with(id))
            .map(|t| t["label"].as_u64().unwrap())
    };
    assert_eq!(label_of("0f1e2d3c4b5a69788796a5b4c3d2e1f0_turn1"), Some(5)); // "Perfect, thank you…"
    assert_eq!(label_of("9b8a7c6d"), Some(2)); // "不对吧…"
    let train = read_jsonl(&out.join("train.jsonl"));
    let test = read_jsonl(&out.join("test.jsonl"));
    // Two labelled turns survive the filters; 20 % of two rounds down to an empty test set.
    assert_eq!(train.len() + test.len(), 2);
    assert!(test.is_empty());
    let mut labels: Vec<u64> = train.iter().map(|r| r["label"].as_u64().unwrap()).collect();
    labels.sort();
    assert_eq!(labels, vec![2, 4]);
}
