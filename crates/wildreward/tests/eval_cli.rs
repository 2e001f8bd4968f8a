//! `wildreward eval` as a command: a real run on a shipped slice with SmolLM2, its exit codes and
//! messages for bad input.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wildreward_model::assets::{asset, SMOLLM2_GGUF};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wildreward-eval-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn eval_writes_a_report_with_accuracy_per_subset_and_plots() {
    let gguf = asset(&root(), SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
    let scratch = Scratch::new("hh");
    let out = scratch.0.join("eval");
    let cache = scratch.0.join("cache");
    let args = [
        "eval",
        "--model",
        gguf.to_str().unwrap(),
        "--bench",
        "hh",
        "--out",
        out.to_str().unwrap(),
        "--limit",
        "4",
        "--max-length",
        "64",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    // The GGUF has no reward head: refused unless allowed, before anything is scored.
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("--allow-untrained-head"), "{err}");
    assert!(!out.join("report.json").exists());
    let args: Vec<&str> = args.into_iter().chain(["--allow-untrained-head"]).collect();
    let o = run(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("seeded random head"),
        "an untrained head is announced: {err}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(report["subsets"].as_object().unwrap().len(), 4);
    for plot in ["threshold_curve.png", "subsets.png"] {
        assert!(out.join(plot).is_file(), "{plot}");
    }
    assert!(out.join("report.md").is_file());
    // The same command again is served from the cache.
    assert!(run(&args).status.success());
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(again["scoring"]["scored"], 0);
    assert_eq!(again["accuracy"], report["accuracy"]);
}

#[test]
fn bad_input_exits_65_naming_the_file_and_line() {
    let scratch = Scratch::new("bad");
    let pairs = scratch.0.join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\nnot json\n",
    )
    .unwrap();
    let bench = format!("pairs:{}", pairs.display());
    let out = scratch.0.join("out");
    let o = run(&[
        "eval",
        "--model",
        "unused",
        "--bench",
        &bench,
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains(&format!("{}:2:", pairs.display())), "{err}");
    assert!(!out.join("report.json").exists());

    let o = run(&[
        "eval",
        "--model",
        "unused",
        "--bench",
        "mmlu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown benchmark `mmlu`"));

    let o = run(&[
        "eval",
        "--endpoint",
        "ftp://x",
        "--bench",
        "hh",
        "--limit",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ftp://x"));
}
