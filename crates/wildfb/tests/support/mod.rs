//! Helpers the integration tests share: paths, scratch directories, the binary, the shipped sample.
#![allow(dead_code)] // each test binary uses a different part

pub mod fake_openai;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped ShareGPT sample.
pub fn sample() -> PathBuf {
    repo().join("data/sharegpt/sharegpt_v3_multiturn_2000.jsonl.gz")
}

/// A fresh directory under the target dir, removed first if a previous run left it.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs the `wildfb` binary.
pub fn wildfb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .args(args)
        .output()
        .expect("run wildfb")
}

/// A path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Imports the first `limit` conversations of the shipped ShareGPT sample (all with `None`) into
/// `dir/wildchat.parquet` with the real `wildfb import sharegpt`.
pub fn import_sample(dir: &Path, limit: Option<usize>) -> PathBuf {
    let out = dir.join("wildchat.parquet");
    let limit = limit.map(|l| l.to_string());
    let input = sample();
    let mut args = vec!["import", "sharegpt", "--input", s(&input), "--out", s(&out)];
    if let Some(l) = &limit {
        args.extend(["--limit", l.as_str()]);
    }
    let o = wildfb(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The lines of a JSONL file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// stats.json of an output directory.
pub fn stats(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("stats.json")).expect("stats.json");
    serde_json::from_str(&text).expect("stats.json is JSON")
}
