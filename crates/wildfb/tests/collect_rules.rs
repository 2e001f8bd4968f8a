//! `wildfb collect --annotator rules` end to end on the shipped ShareGPT sample (imported into WildChat's
//! parquet schema by the real importer): counts, label histogram, the schema of every output line,
//! determinism, resume, single steps, and bad inputs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use support::{import_sample, read_jsonl, s, scratch, stats, wildfb};
use wildreward_types::{build_text, EmptyHistory, WildFbRecord};

fn collect(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "collect",
        "--input",
        s(input),
        "--out",
        s(out),
        "--quiet",
        "--annotator",
        "rules",
    ];
    args.extend(extra);
    wildfb(&args)
}

fn ok(o: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// Every line must be a WildFB record with exactly the released keys plus its user (`user`,
/// `user_key`: the conversation, since ShareGPT records no user), a 1..4 label, the judged pair as
/// user/assistant, and the text the shared template builds.
fn check_records(path: &Path) -> Vec<WildFbRecord> {
    let mut out = Vec::new();
    for v in read_jsonl(path) {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "history",
                "id",
                "label",
                "messages",
                "text",
                "user",
                "user_feedback",
                "user_key"
            ],
            "{v}"
        );
        assert_eq!(v["user_key"], "conversation", "{v}");
        assert_eq!(v["user"], conversation(v["id"].as_str().unwrap()), "{v}");
        let r: WildFbRecord = serde_json::from_value(v).unwrap();
        assert!((1..=4).contains(&r.label.value()));
        assert_eq!(r.messages[0].role.as_str(), "user");
        assert_eq!(r.messages[1].role.as_str(), "assistant");
        assert_eq!(r.user_feedback.role.as_str(), "user");
        assert_eq!(r.history.len() % 2, 0);
        let expected = build_text(
            &r.history,
            &r.messages[0].content,
            &r.messages[1].content,
            EmptyHistory::Training,
        );
        assert_eq!(r.text, expected, "{}", r.id);
        out.push(r);
    }
    out
}

fn conversation(id: &str) -> &str {
    wildreward_types::record::parse_instance_id(id).unwrap().0
}

#[test]
fn rules_pipeline_on_the_shipped_sample() {
    let dir = scratch("collect-rules-e2e");
    let parquet = import_sample(&dir, Some(700));
    let (a, b) = (dir.join("a"), dir.join("b"));
    let run_a = ok(&collect(&parquet, &a, &["--test-count", "100"]));
    assert!(run_a.contains("split:"), "{run_a}");
    ok(&collect(&parquet, &b, &["--test-count", "100"]));

    // Determinism: same input and seed → the same bytes in every step's output.
    for f in [
        "instances.jsonl",
        "classified.jsonl",
        "hindsight.jsonl",
        "refusal.jsonl",
        "train.jsonl",
        "test.jsonl",
    ] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs");
    }

    // Counts are consistent from step to step, and with the files.
    let st = stats(&a);
    let steps = &st["steps"];
    let lines = |f: &str| std::fs::read_to_string(a.join(f)).unwrap().lines().count() as u64;
    let n = |v: &Value| v.as_u64().unwrap();
    assert_eq!(n(&steps["preprocess"]["rows_in"]), 700);
    assert_eq!(
        n(&steps["preprocess"]["rows_out"]),
        lines("instances.jsonl")
    );
    // Pinned facts of the first 700 conversations of the sample: 19 are in neither English nor
    // Chinese, the other 681 give 2687 turns with a reaction; the rules read those reactions as below
    // (neutral dominates, as the reference's 76 %).
    assert_eq!(n(&steps["preprocess"]["rows_out"]), 2687);
    assert_eq!(
        steps["preprocess"]["drops"],
        serde_json::json!({"language": 19})
    );
    assert_eq!(
        steps["classify"]["label_histogram"],
        serde_json::json!({"1": 4, "2": 131, "3": 2120, "4": 255, "5": 177})
    );
    // Hindsight's count rests on float similarities near a threshold: a range, not a pin.
    let relabelled = n(&steps["hindsight"]["details"]["relabelled"]);
    assert!((35..=75).contains(&relabelled), "{relabelled}");
    for (step, file) in [
        ("classify", "classified.jsonl"),
        ("hindsight", "hindsight.jsonl"),
        ("refusal", "refusal.jsonl"),
    ] {
        assert_eq!(n(&steps[step]["rows_out"]), lines(file), "{step}");
        let hist: u64 = steps[step]["label_histogram"]
            .as_object()
            .unwrap()
            .values()
            .map(n)
            .sum();
        assert_eq!(hist, lines(file), "{step}");
    }
    // The rules never drop a turn: every instance is classified.
    assert_eq!(
        steps["classify"]["rows_out"],
        steps["preprocess"]["rows_out"]
    );
    let split = &steps["split"];
    let drops: u64 = split["drops"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&split["rows_in"]), n(&split["rows_out"]) + drops);
    assert_eq!(
        n(&split["rows_out"]),
        lines("train.jsonl") + lines("test.jsonl")
    );
    assert!(n(&split["drops"]["neutral"]) > 0);

    // Every raw category occurs, and every training label, and the raw → training map holds.
    let raw = &steps["refusal"]["label_histogram"];
    for c in ["1", "2", "3", "4", "5"] {
        assert!(n(&raw[c]) > 0, "raw category {c} never assigned: {raw}");
    }
    let train = check_records(&a.join("train.jsonl"));
    let test = check_records(&a.join("test.jsonl"));
    let mut hist: BTreeMap<u8, u64> = BTreeMap::new();
    for r in train.iter().chain(&test) {
        *hist.entry(r.label.value()).or_default() += 1;
    }
    assert_eq!(
        hist.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "{hist:?}"
    );
    let split_hist: BTreeMap<u8, u64> = split["label_histogram"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), n(v)))
        .collect();
    assert_eq!(hist, split_hist);
    eprintln!(
        "training labels {hist:?}, train {}, test {}",
        train.len(),
        test.len()
    );

    // Hindsight relabelled some neutral turns, each at most once, only from later positive turns.
    let mined: Vec<Value> = read_jsonl(&a.join("hindsight.jsonl"))
        .into_iter()
        .filter(|t| t.get("hindsight").is_some())
        .collect();
    assert_eq!(
        n(&steps["hindsight"]["details"]["relabelled"]),
        mined.len() as u64
    );
    assert!(!mined.is_empty());
    for t in &mined {
        let h = &t["hindsight"];
        assert_eq!(h["original"], 3);
        assert!([4, 5].contains(&n(&t["label"])));
        assert!(h["similarity"].as_f64().unwrap() >= 0.5);
        let gap = n(&h["from_turn"]) - n(&t["turn"]);
        assert!((1..=2).contains(&gap), "{t}");
    }

    // Ids are unique, no conversation is in both files, and the test set holds ≤ the requested count.
    let ids: HashSet<&str> = train.iter().chain(&test).map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), train.len() + test.len());
    let test_convs: HashSet<&str> = test.iter().map(|r| conversation(&r.id)).collect();
    assert!(train
        .iter()
        .all(|r| !test_convs.contains(conversation(&r.id))));
    assert!(test.len() <= 100 && test.len() >= 90, "{}", test.len());
    // No final query contains an image-generation request as a word.
    let draw = regex::Regex::new(r"(?i)\bdraw\b").unwrap();
    assert!(train.iter().all(|r| !draw.is_match(&r.messages[0].content)));

    // A different seed reruns only the split, and moves it without changing the records.
    let c = dir.join("c");
    std::fs::create_dir_all(&c).unwrap();
    for entry in std::fs::read_dir(&a).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, c.join(p.file_name().unwrap())).unwrap();
    }
    let reseeded = ok(&collect(
        &parquet,
        &c,
        &["--test-count", "100", "--seed", "7"],
    ));
    assert_eq!(
        reseeded.matches("finished earlier, skipped").count(),
        4,
        "{reseeded}"
    );
    assert_ne!(
        std::fs::read(a.join("test.jsonl")).unwrap(),
        std::fs::read(c.join("test.jsonl")).unwrap()
    );
    let sorted_ids = |d: &Path| {
        let mut ids: Vec<String> = ["train.jsonl", "test.jsonl"]
            .iter()
            .flat_map(|f| read_jsonl(&d.join(f)))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(sorted_ids(&a), sorted_ids(&c));

    // Re-running skips every finished step and changes nothing.
    let before = std::fs::read(a.join("train.jsonl")).unwrap();
    let again = ok(&collect(&parquet, &a, &["--test-count", "100"]));
    assert_eq!(
        again.matches("finished earlier, skipped").count(),
        5,
        "{again}"
    );
    assert_eq!(std::fs::read(a.join("train.jsonl")).unwrap(), before);

    // A lost output is rebuilt; a changed setting reruns that step and the ones after it only.
    std::fs::remove_file(a.join("test.jsonl")).unwrap();
    let again = ok(&collect(&parquet, &a, &["--test-count", "100"]));
    assert_eq!(
        again.matches("finished earlier, skipped").count(),
        4,
        "{again}"
    );
    assert_eq!(std::fs::read(a.join("train.jsonl")).unwrap(), before);
    let again = ok(&collect(&parquet, &a, &["--test-count", "50"]));
    assert_eq!(
        again.matches("finished earlier, skipped").count(),
        4,
        "{again}"
    );
    assert!(lines_of(&a.join("test.jsonl")) <= 50);

    // --step runs one step again on the existing input.
    let one = ok(&collect(
        &parquet,
        &a,
        &["--test-count", "50", "--step", "classify"],
    ));
    assert!(
        one.contains("classify:") && !one.contains("split:"),
        "{one}"
    );
    assert_eq!(
        std::fs::read(a.join("classified.jsonl")).unwrap(),
        std::fs::read(b.join("classified.jsonl")).unwrap()
    );
    // …after which the later steps are no longer marked finished.
    assert!(stats(&a)["steps"].get("split").is_none());
}

fn lines_of(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn a_step_whose_input_is_missing_says_so() {
    let dir = scratch("collect-step-missing");
    let parquet = import_sample(&dir, Some(5));
    let o = collect(&parquet, &dir.join("out"), &["--step", "split"]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusal.jsonl") && err.contains("without --step"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_named() {
    use polars::prelude::*;
    let dir = scratch("collect-bad-input");
    // A parquet file without the `conversation` column.
    let missing = dir.join("missing-columns.parquet");
    let mut df = df!(
        "conversation_hash" => ["a"],
        "model" => ["m"],
        "language" => ["English"]
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&missing).unwrap())
        .finish(&mut df)
        .unwrap();
    let o = collect(&missing, &dir.join("o1"), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("missing-columns.parquet") && err.contains("`conversation`"),
        "{err}"
    );

    // A truncated parquet file.
    let good = import_sample(&dir, Some(20));
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let o = collect(&truncated, &dir.join("o2"), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("truncated.parquet"), "{err}");

    // An empty directory, and one whose only parquet file is bad (named, not skipped).
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = collect(&empty, &dir.join("o3"), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("empty") && err.contains("no .parquet file"),
        "{err}"
    );
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(&good, mixed.join("a.parquet")).unwrap();
    std::fs::copy(&truncated, mixed.join("b.parquet")).unwrap();
    let o = collect(&mixed, &dir.join("o4"), &[]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("b.parquet"), "{err}");
    // Nothing was marked finished for the failed step.
    assert!(!dir.join("o4/instances.jsonl").exists());

    // A missing input file.
    let o = collect(&dir.join("nope.parquet"), &dir.join("o5"), &[]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.parquet"));
}
