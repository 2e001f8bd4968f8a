//! The RM template against hand-written fixtures (tests/fixtures/template at the repository root).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde::Deserialize;
use std::path::PathBuf;
use wildreward_types::{build_text, EmptyHistory, Message};

#[derive(Deserialize)]
struct Case {
    fixture: String,
    empty: String,
    history: Vec<Message>,
    query: String,
    response: String,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/template")
}

#[test]
fn template_is_byte_identical_to_the_fixtures() {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("cases.json")).unwrap())
            .unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let empty = match case.empty.as_str() {
            "training" => EmptyHistory::Training,
            "inference" => EmptyHistory::Inference,
            other => panic!("bad case {other}"),
        };
        let want = std::fs::read(fixture_dir().join(&case.fixture)).unwrap();
        let got = build_text(&case.history, &case.query, &case.response, empty);
        assert_eq!(
            got.as_bytes(),
            &want[..],
            "{}:\n--- got ---\n{got}\n--- want ---\n{}",
            case.fixture,
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn two_blank_lines_follow_a_history_and_one_follows_the_placeholder() {
    let h = [Message::user("a"), Message::assistant("b")];
    let t = build_text(&h, "q", "r", EmptyHistory::Training);
    assert!(t.contains(
        "\nassistant: b\n\n\n## User Query\nq\n\n## Assistant Response\nr\n\n# Output\n"
    ));
    let t = build_text(&[], "q", "r", EmptyHistory::Training);
    assert!(t.contains("## Context (History)\nNo previous context.\n\n## User Query\n"));
    assert!(!t.ends_with('\n'));
}
