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

/// Several `--model`s in one run: one report per model under OUT/<label>/, each equal to that
/// model's own single-model run; the shared blocks are named in the notes; a label clash is refused.
#[test]
fn several_models_score_in_one_pass_with_each_report_as_if_alone() {
    use wildreward_model::{checkpoint, HeadKind, LoadOptions, RewardModel, ScoreHead};
    let gguf = asset(&root(), SMOLLM2_GGUF).unwrap_or_else(|e| panic!("{e}"));
    let scratch = Scratch::new("many");
    // The same backbone with a (seeded) head of its own: it shares all 30 blocks with the GGUF.
    let mut model = RewardModel::load(&gguf, &LoadOptions::inference()).unwrap();
    let hidden = model.config().hidden_size;
    let device = model.backbone().device().clone();
    model.set_head(ScoreHead::random(HeadKind::Ordinal, 3, hidden, 5, &device).unwrap());
    let variant = scratch.0.join("variant");
    checkpoint::save(&model, &variant).unwrap();
    drop(model);
    // `wildreward eval` on `models` (each its own --model) with `extra` flags, writing to `out`.
    let eval = |models: &[&Path], extra: &[String], out: &Path| {
        let mut args = vec!["eval".to_string()];
        for m in models {
            args.extend(["--model".to_string(), m.display().to_string()]);
        }
        args.extend(extra.iter().cloned());
        for flag in ["--bench", "hh", "--limit", "8", "--max-length", "96"] {
            args.push(flag.to_string());
        }
        args.extend(["--allow-untrained-head".into(), "--out".into()]);
        args.push(out.display().to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs)
    };
    let both = scratch.0.join("both");
    let cache = [
        "--cache-dir".to_string(),
        scratch.0.join("cache").display().to_string(),
    ];
    let o = eval(&[&gguf, &variant], &cache, &both);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("2 models share their first 30 blocks"),
        "{err}"
    );
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let stem = gguf.file_stem().unwrap().to_str().unwrap().to_string();
    for (label, path) in [(stem.as_str(), &gguf), ("variant", &variant)] {
        let together = read(both.join(label).join("report.json"));
        let notes = together["notes"].to_string();
        assert!(notes.contains("sharing their first 30 blocks"), "{notes}");
        let alone_dir = scratch.0.join(format!("alone-{label}"));
        let o = eval(&[path], &["--no-cache".to_string()], &alone_dir);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let alone = read(alone_dir.join("report.json"));
        assert_eq!(alone["units"], together["units"]);
        for key in ["accuracy", "consistency_auc"] {
            let (a, b) = (
                alone[key].as_f64().unwrap(),
                together[key].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() < 1e-9,
                "{label} {key}: alone {a}, together {b}"
            );
        }
    }
    assert!(both.join("variant/report.md").is_file());
    // Two models with one label would share a directory: refused before scoring.
    let twin = scratch.0.join("twin").join("variant");
    std::fs::create_dir_all(twin.parent().unwrap()).unwrap();
    std::fs::rename(&variant, &twin).unwrap();
    std::fs::create_dir_all(&variant).unwrap();
    let o = eval(&[&twin, &variant], &[], &scratch.0.join("clash"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("two models are named variant"), "{err}");
}
