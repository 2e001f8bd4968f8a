//! The `wildreward` command line: every subcommand has help, and usage and settings errors get their exit codes.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["train", "serve", "eval", "score", "convert"] {
        let o = run(&[sub, "--help"]);
        assert!(o.status.success(), "{sub} --help failed");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{sub}"
        );
    }
    let o = run(&["serve", "worker", "--help"]);
    assert!(o.status.success());
}

#[test]
fn eval_needs_a_model_or_an_endpoint() {
    let o = run(&["eval", "--bench", "hh", "--out", "o"]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
}

#[test]
fn serve_refuses_bad_settings_with_exit_65_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["serve", "--workers", "2"], "--model"),
        (
            &["serve", "--model", "no/such/model", "--workers", "2"],
            "no/such/model",
        ),
        (
            &["serve", "worker", "--model", "no/such/model", "--port", "0"],
            "no/such/model",
        ),
        (
            &[
                "serve", "worker", "--model", "m", "--port", "0", "--device", "tpu",
            ],
            "--device",
        ),
        (
            &[
                "serve",
                "router",
                "--worker-urls",
                "localhost:8004",
                "--port",
                "0",
            ],
            "--worker-urls",
        ),
        (
            &[
                "serve",
                "router",
                "--worker-urls",
                "http://127.0.0.1:1",
                "--policy",
                "random",
            ],
            "--policy",
        ),
    ];
    for (args, needle) in cases {
        let o = run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
