//! The `online-dpo` command line: help works, and an unbuilt stage fails with exit 69.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn help_and_not_built() {
    let bin = env!("CARGO_BIN_EXE_online-dpo");
    for sub in ["run", "eval"] {
        let o = Command::new(bin).args([sub, "--help"]).output().unwrap();
        assert!(o.status.success(), "{sub} --help");
    }
    let o = Command::new(bin)
        .args([
            "run",
            "--policy",
            "p",
            "--prompts",
            "q.jsonl",
            "--reward-endpoint",
            "http://127.0.0.1:9000/get_reward",
            "--out",
            "o",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not built yet"));
}
