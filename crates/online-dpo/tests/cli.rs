//! The `online-dpo` command line: help works, and bad input exits 65 naming the file and line.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn help_and_bad_input() {
    let bin = env!("CARGO_BIN_EXE_online-dpo");
    for sub in ["run", "eval"] {
        let o = Command::new(bin).args([sub, "--help"]).output().unwrap();
        assert!(o.status.success(), "{sub} --help");
    }
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("q.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"hi\"}\n{\"turns\": 3}\n").unwrap();
    let o = Command::new(bin)
        .args(["run", "--policy", "p", "--prompts"])
        .arg(&prompts)
        .args([
            "--reward-endpoint",
            "http://127.0.0.1:9/get_reward",
            "--out",
        ])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("q.jsonl:2"), "{err}");
    let o = Command::new(bin)
        .args(["run", "--policy", "p", "--prompts"])
        .arg(&prompts)
        .args([
            "--reward-endpoint",
            "http://127.0.0.1:9/get_reward",
            "--train",
            "head",
            "--out",
        ])
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(65));
}
