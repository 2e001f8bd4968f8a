//! The `wildfb` command line: help works, and an unbuilt stage fails loudly instead of faking success.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Command;

#[test]
fn help_lists_the_subcommands() {
    let o = Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("collect") && help.contains("import"),
        "{help}"
    );
}

#[test]
fn collect_is_not_faked() {
    let o = Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .args(["collect", "--input", "x.parquet", "--out", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not built yet"));
}
