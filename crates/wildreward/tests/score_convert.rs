//! `wildreward convert` and `wildreward score` end to end on the real SmolLM2 GGUF.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gguf() -> PathBuf {
    wildreward_model::assets::asset(&repo(), wildreward_model::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args(args)
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rewards(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn convert_then_score_agrees_with_scoring_the_gguf() {
    let dir = scratch("cli-score");
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "a", "text": "Hello there"}"#, "\n",
            r#"{"id": "b", "messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}"#, "\n",
            r#"{"id": "c", "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "messages": [{"role": "user", "content": "thanks!"}, {"role": "assistant", "content": "You're welcome."}]}"#, "\n",
        ),
    )
    .unwrap();
    let converted = dir.join("rm");
    let o = run(&["convert", "--model", s(&gguf()), "--out", s(&converted)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("random 3-output head"));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["architecture"], "LlamaForSequenceClassification");
    assert_eq!(report["tensors"], 30 * 9 + 2 + 1);
    // The random head is marked in config.json, so every later load knows it is untrained.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(converted.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["wildreward_head_initialised"], true);
    let loaded = wildreward_model::RewardModel::load(
        &converted,
        &wildreward_model::LoadOptions::inference(),
    )
    .unwrap();
    assert!(loaded.head_was_initialised());
    let o = run(&["serve", "worker", "--model", s(&converted), "--port", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(65),
        "serve refuses the converted random head: {err}"
    );
    assert!(err.contains("--allow-untrained-head"), "{err}");

    let (out_dir, out_gguf) = (dir.join("dir.jsonl"), dir.join("gguf.jsonl"));
    let o = run(&[
        "score",
        "--model",
        s(&converted),
        "--input",
        s(&input),
        "--output",
        s(&out_dir),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report_path = dir.join("report.json");
    let o = run(&[
        "score",
        "--model",
        s(&gguf()),
        "--input",
        s(&input),
        "--output",
        s(&out_gguf),
        "--report",
        s(&report_path),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no reward head"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report["texts"], 3);
    assert_eq!(report["device"], "cpu");
    // The one rule: `auto` is bf16 on a CPU with a bf16 product instruction, f32 elsewhere.
    let hardware_bf16 = wildreward_kernels::Bf16Kernel::detect()
        .is_ok_and(|k| k != wildreward_kernels::Bf16Kernel::Portable);
    let auto = if hardware_bf16 { "bf16" } else { "f32" };
    assert_eq!(report["dtype"], auto, "--dtype auto on this CPU");
    assert!(
        report["tokens"].as_u64().unwrap() > 3 * 100,
        "templated texts: {report}"
    );
    assert!(report["score_seconds"].as_f64().unwrap() > 0.0);

    // The other precision on this CPU (f32 where auto is bf16, and bf16 where the CPU has the
    // instruction but auto was f32 because of WILDREWARD_MATMUL): rewards close, not equal.
    if wildreward_kernels::Bf16Kernel::Avx512Bf16.available() {
        let other = if auto == "bf16" { "f32" } else { "bf16" };
        let out_bf16 = dir.join("other-dtype.jsonl");
        let bf16_report = dir.join("other-dtype-report.json");
        let o = run(&[
            "score",
            "--model",
            s(&gguf()),
            "--input",
            s(&input),
            "--output",
            s(&out_bf16),
            "--dtype",
            other,
            "--report",
            s(&bf16_report),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&bf16_report).unwrap()).unwrap();
        assert_eq!(r["dtype"], other);
        for (x, y) in rewards(&out_bf16).iter().zip(rewards(&out_gguf)) {
            let (x, y) = (x["reward"].as_f64().unwrap(), y["reward"].as_f64().unwrap());
            assert!((x - y).abs() < 0.02, "{other} {x} vs {auto} {y}");
            assert_ne!(x, y, "the bf16 kernel really ran in one of the two");
        }
    } else {
        eprintln!("SKIPPED: this CPU lacks AVX512_BF16, `score --dtype bf16` is not tested here");
    }

    let (a, b) = (rewards(&out_dir), rewards(&out_gguf));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        let r = x["reward"].as_f64().unwrap();
        assert!(r > 1.0 && r < 4.0, "{x}");
        assert_eq!(x["probs"].as_array().unwrap().len(), 4);
        assert_eq!(
            x["reward"], y["reward"],
            "GGUF and converted directory agree"
        );
    }
    assert_eq!(a[0]["id"], "a");
    assert_eq!(a[2]["id"], "c", "input order and fields are kept");
    assert_ne!(a[1]["reward"], a[2]["reward"]);
}

#[test]
fn a_bad_line_names_the_file_and_line() {
    let dir = scratch("cli-score-bad");
    let input = dir.join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"text\": \"ok\"}\n{\"prompt\": \"no text here\"}\n",
    )
    .unwrap();
    let o = run(&["score", "--model", s(&gguf()), "--input", s(&input)]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("neither"),
        "{err}"
    );

    let o = run(&[
        "score",
        "--model",
        s(&dir.join("missing.gguf")),
        "--input",
        s(&input),
    ]);
    assert_ne!(o.status.code(), Some(0));

    // Precision and device: refused with the flag named, before any model is loaded.
    let good = dir.join("good.jsonl");
    std::fs::write(&good, "{\"text\": \"ok\"}\n").unwrap();
    let model = gguf();
    for (flags, want) in [
        (["--dtype", "f16"], "--dtype f16"),
        (["--dtype", "f8"], "--dtype \"f8\""),
        (["--device", "tpu"], "--device"),
    ] {
        let mut args = vec!["score", "--model", s(&model), "--input", s(&good)];
        args.extend(flags);
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    if !cfg!(feature = "cuda") {
        let o = run(&[
            "score",
            "--model",
            s(&model),
            "--input",
            s(&good),
            "--device",
            "cuda:0",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{err}");
        assert!(err.contains("--features cuda"), "{err}");
    }
}
