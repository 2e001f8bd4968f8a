//! Malformed benchmark files are refused with the file and the line (or item) named; the shipped
//! slices all load.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::path::{Path, PathBuf};
use wildreward_eval::bench::{self, Kind};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn error(spec: String) -> String {
    bench::load(&spec).unwrap_err().0
}

#[test]
fn every_benchmark_format_names_the_file_and_line_of_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good_pair = r#"{"prompt":"p","chosen":"a","rejected":"b"}"#;

    let pairs = write(
        d,
        "pairs.jsonl",
        &format!("{good_pair}\n\n{{\"prompt\":\"p\",\"chosen\":\"a\"}}\n"),
    );
    let e = error(format!("pairs:{}", pairs.display()));
    assert!(
        e.contains(&format!("{}:3:", pairs.display())) && e.contains("rejected"),
        "{e}"
    );

    let pairs = write(
        d,
        "typo.jsonl",
        r#"{"prompt":"p","chosen":"a","rejectd":"b"}"#,
    );
    let e = error(format!("pairs:{}", pairs.display()));
    assert!(e.contains("typo.jsonl:1:") && e.contains("rejectd"), "{e}");

    let jb = d.join("judgebench");
    std::fs::create_dir(&jb).unwrap();
    let row = |label: &str| {
        format!(
            r#"{{"pair_id":"x","original_id":"y","source":"livebench-math","question":"q","response_model":"m","response_A":"a","response_B":"b","label":"{label}"}}"#
        )
    };
    let file = write(
        &jb,
        "judgebench.m.jsonl",
        &format!("{}\n{}\n", row("A>B"), row("A=B")),
    );
    let e = error(format!("judgebench:{}", jb.display()));
    assert!(
        e.contains(&format!("{}:2:", file.display())) && e.contains("A=B"),
        "{e}"
    );

    let hh = d.join("hh");
    std::fs::create_dir(&hh).unwrap();
    let file = hh.join("helpful-base.test.jsonl.gz");
    let mut gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&file).unwrap(), Default::default());
    writeln!(
        gz,
        r#"{{"chosen":"\n\nHuman: q\n\nAssistant: a","rejected":"\n\nHuman: q\n\nAssistant: b"}}"#
    )
    .unwrap();
    writeln!(gz, r#"{{"chosen":"no markers","rejected":"none here"}}"#).unwrap();
    gz.finish().unwrap();
    let e = error(format!("hh:{}", hh.display()));
    assert!(
        e.contains(&format!("{}:2:", file.display())) && e.contains("Assistant"),
        "{e}"
    );

    let rm = d.join("rm");
    std::fs::create_dir(&rm).unwrap();
    let file = write(
        &rm,
        "chat_filtered.json",
        "[\n {\"id\": 1, \"prompt\": \"p\",\n  \"chosen\": [\"a\", \"b\", \"c\"],\n  \"rejected\": [\"x\", \"y\"]\n }\n]\n",
    );
    let e = error(format!("rm-bench:{}", rm.display()));
    assert!(
        e.contains(&format!("{}:4:", file.display())) && e.contains("length 3"),
        "{e}"
    );

    let wildfb = write(
        d,
        "test.jsonl",
        r#"{"id":"h_turn0","history":[],"text":"t","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"r"}],"user_feedback":{"role":"user","content":"ok"},"label":7}"#,
    );
    let e = error(format!("wildfb:{}", wildfb.display()));
    assert!(e.contains("test.jsonl:1:") && e.contains('7'), "{e}");

    let empty = write(d, "empty.jsonl", "\n");
    assert!(error(format!("pairs:{}", empty.display())).contains("no pairs examples"));
    assert!(
        error(format!("pairs:{}", d.join("missing.jsonl").display())).contains("missing.jsonl")
    );
}

#[test]
fn the_shipped_slices_load_whole() {
    let rm = bench::load("rm-bench").unwrap();
    assert_eq!(
        (rm.kind, rm.units(), rm.candidates.len()),
        (Kind::StyleMatrix, 120, 720)
    );
    let jb = bench::load("judgebench").unwrap();
    assert_eq!((jb.kind, jb.units()), (Kind::Pairwise, 120));
    let hh = bench::load("hh").unwrap();
    assert_eq!(
        hh.units(),
        240,
        "only the *.eval.* slices, not the BT training slices"
    );
    assert!(hh
        .files
        .iter()
        .all(|f| f.to_string_lossy().contains(".eval.")));
    // Chosen and rejected share their history and query; the responses differ.
    for p in &hh.pairs {
        let (c, r) = (&hh.candidates[p.chosen], &hh.candidates[p.rejected]);
        assert_eq!((&c.history, &c.query), (&r.history, &r.query));
    }
}
