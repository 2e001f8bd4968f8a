//! `wildfb agree` and `wildfb classify` through the real binary: figures on a hand-computed case
//! (abstentions included), every kind of bad input named by file and line, and the shipped dev set
//! labelled by the offline annotators and compared with people.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::Path;
use support::{read_jsonl, repo, s, scratch, wildfb};

fn write(path: &Path, lines: &[&str]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn agreement(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("agreement.json")).unwrap()).unwrap()
}

fn close(v: &serde_json::Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

/// Gold 1,1,2,2,3,3,3,3,4,5 (ids a..j) against 1,2,2,2,3,3,3,4,4,4 — the case worked by hand in
/// `agree::metrics` (accuracy 0.7, κ 0.47/0.77, linear κ 1 − 0.075/0.305) — plus two gold items the
/// annotator abstained on (one `null`, one `"abstained": true`) and one prediction without gold.
#[test]
fn agree_reports_hand_computed_figures_with_abstentions() {
    let dir = scratch("agree-hand");
    let gold: Vec<String> = [1, 1, 2, 2, 3, 3, 3, 3, 4, 5, 2, 3]
        .iter()
        .enumerate()
        .map(|(i, l)| format!(r#"{{"id": "k{i}", "label": {l}}}"#))
        .collect();
    let mut pred: Vec<String> = [1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
        .iter()
        .enumerate()
        .map(|(i, l)| format!(r#"{{"id": "k{i}", "label": {l}}}"#))
        .collect();
    pred.push(r#"{"id": "k10", "label": null}"#.into());
    pred.push(r#"{"id": "k11", "label": 3, "abstained": true}"#.into());
    pred.push(r#"{"id": "extra", "label": 5}"#.into());
    let (g, p) = (dir.join("gold.jsonl"), dir.join("pred.jsonl"));
    write(&g, &gold.iter().map(String::as_str).collect::<Vec<_>>());
    write(&p, &pred.iter().map(String::as_str).collect::<Vec<_>>());
    let out = dir.join("report");
    let o = wildfb(&["agree", "--gold", s(&g), "--pred", s(&p), "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("Cohen's κ") && stdout.contains("always 3"),
        "{stdout}"
    );
    let r = agreement(&out);
    assert_eq!(r["items"], 12);
    assert_eq!(r["decided"], 10);
    assert_eq!(r["abstained"], 2);
    assert_eq!(r["unmatched_predictions"], 1);
    assert!(close(&r["coverage"], 10.0 / 12.0));
    let d = &r["decided_only"];
    assert!(close(&d["accuracy"], 0.7));
    assert!(close(&d["kappa"], 0.47 / 0.77), "{}", d["kappa"]);
    assert!(close(&d["kappa_linear"], 1.0 - 0.075 / 0.305));
    assert!(close(&d["per_class"][1]["f1"], 0.8));
    assert!(d["per_class"][4]["precision"].is_null());
    // Alone: the abstentions read as 3 — k10 (gold 2) wrong, k11 (gold 3) right → 8 of 12.
    assert!(close(&r["abstain_as_neutral"]["accuracy"], 8.0 / 12.0));
    // Always 3: five of twelve gold labels are 3; κ of a constant is 0.
    let b = &r["always_neutral"];
    assert!(close(&b["accuracy"], 5.0 / 12.0));
    assert!(close(&b["kappa"], 0.0));
    let png = std::fs::read(out.join("agreement.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

#[test]
fn bad_label_files_are_named_by_line() {
    let dir = scratch("agree-bad");
    let pred = dir.join("pred.jsonl");
    write(
        &pred,
        &[r#"{"id": "a", "label": 3}"#, r#"{"id": "b", "label": 2}"#],
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[r#"{"id": "a", "label": 3}"#, r#"{"id": "a", "label": 2}"#],
            "gold.jsonl:2: duplicate id \"a\" (first on line 1)",
        ),
        (
            &[r#"{"id": "a", "label": 3}"#, r#"{"id": "b", "label": 6}"#],
            "gold.jsonl:2: `label` must be an integer 1..5",
        ),
        (
            &[r#"{"id": "a", "label": null}"#],
            "gold.jsonl:1: `label` must be an integer 1..5",
        ),
        (
            &[r#"{"id": "a", "label": 3}"#, r#"{"id": "zzz", "label": 3}"#],
            "gold.jsonl:2: id \"zzz\" has no label in",
        ),
        (&[r#"{"label": 3}"#], "gold.jsonl:1: no `id`"),
        (&[r#"{"id": "a", "label": 3"#], "gold.jsonl:1:"),
    ];
    for (lines, want) in cases {
        let gold = dir.join("gold.jsonl");
        write(&gold, lines);
        let o = wildfb(&[
            "agree",
            "--gold",
            s(&gold),
            "--pred",
            s(&pred),
            "--out",
            s(&dir),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{lines:?}: {err}");
        assert!(err.contains(want), "{lines:?}: wanted {want:?} in {err}");
    }
    // --allow-missing counts the unknown id as not covered instead.
    let gold = dir.join("gold.jsonl");
    write(
        &gold,
        &[r#"{"id": "a", "label": 3}"#, r#"{"id": "zzz", "label": 2}"#],
    );
    let out = dir.join("missing");
    let o = wildfb(&[
        "agree",
        "--gold",
        s(&gold),
        "--pred",
        s(&pred),
        "--out",
        s(&out),
        "--allow-missing",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(agreement(&out)["missing"], 1);
    // A duplicate in the predictions is named too.
    write(
        &pred,
        &[r#"{"id": "a", "label": 3}"#, r#"{"id": "a", "label": 3}"#],
    );
    let o = wildfb(&[
        "agree",
        "--gold",
        s(&gold),
        "--pred",
        s(&pred),
        "--out",
        s(&out),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("pred.jsonl:2: duplicate id"));
}

/// The shipped dev set, labelled by both offline annotators through `wildfb classify`, compared with
/// the people's agreed labels. The floors are well under what the docs report (docs/labels.md), so
/// this fails on a broken annotator or a broken join, not on a one-item change of the rules.
#[test]
fn the_dev_set_through_classify_and_agree() {
    let dev = repo().join("data/feedback-dev");
    let gold = dev.join("gold.jsonl");
    let mut kappas = Vec::new();
    for annotator in ["rules", "cues"] {
        let dir = scratch(&format!("agree-dev-{annotator}"));
        let o = wildfb(&[
            "classify",
            "--input",
            s(&dev.join("items.jsonl")),
            "--out",
            s(&dir),
            "--annotator",
            annotator,
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let labelled = read_jsonl(&dir.join("classified.jsonl"));
        assert_eq!(labelled.len(), 240);
        let o = wildfb(&[
            "agree",
            "--gold",
            s(&gold),
            "--pred",
            s(&dir),
            "--out",
            s(&dir),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r = agreement(&dir);
        assert_eq!(r["items"], 233);
        kappas.push(r["abstain_as_neutral"]["kappa"].as_f64().unwrap());
        if annotator == "cues" {
            assert!(r["abstained"].as_u64().unwrap() > 0, "cues never abstained");
            let alone = &r["abstain_as_neutral"];
            assert!(alone["kappa"].as_f64().unwrap() >= 0.6, "{alone}");
            assert!(
                alone["per_class"][1]["f1"].as_f64().unwrap() >= 0.5,
                "{alone}"
            );
            assert!(
                alone["non_neutral_precision"].as_f64().unwrap() >= 0.85,
                "{alone}"
            );
        }
    }
    // The people's own agreement (A against B, joined by item number) is the ceiling.
    let dir = scratch("agree-dev-ceiling");
    let o = wildfb(&[
        "agree",
        "--gold",
        s(&dev.join("labels_A.jsonl")),
        "--pred",
        s(&dev.join("labels_B.jsonl")),
        "--key",
        "n",
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ceiling = agreement(&dir)["decided_only"]["kappa"].as_f64().unwrap();
    assert!((ceiling - 0.937).abs() < 0.001, "{ceiling}");
    assert!(
        kappas[1] > kappas[0] + 0.2,
        "cues {} vs rules {}",
        kappas[1],
        kappas[0]
    );
}
