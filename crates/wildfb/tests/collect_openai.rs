//! `wildfb collect --annotator openai|cascade` against a real chat-completions server on loopback (the
//! axum fake in `support/fake_openai.rs`): faults are retried, counted and never labelled; a run killed
//! mid-classification resumes from its journal without paying for any answer twice and ends with the
//! same files as an uninterrupted run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::fake_openai::{answer_for, fault_for, Behaviour, FakeOpenAi, Fault};
use support::{import_sample, read_jsonl, s, scratch, stats};
use wildfb::collect::config::CollectConfig;
use wildfb::collect::prompt::Prompts;
use wildreward_types::Instance;

fn collect_args<'a>(
    input: &'a Path,
    out: &'a Path,
    fake: &'a str,
    annotator: &'a str,
) -> Vec<String> {
    [
        "collect",
        "--input",
        s(input),
        "--out",
        s(out),
        "--quiet",
        "--annotator",
        annotator,
        "--api-base",
        fake,
        "--model",
        "fake-annotator",
        "--test-count",
        "20",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn run(args: &[String], extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .args(args)
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap()
}

fn prompts() -> Prompts {
    let c = CollectConfig::embedded().unwrap();
    Prompts::new(&c.feedback_prompt, &c.refusal_prompt).unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn faults_are_retried_counted_and_never_labelled() {
    let dir = scratch("collect-openai-faults");
    let parquet = import_sample(&dir, Some(40));
    let fake = FakeOpenAi::start(Behaviour {
        latency: Duration::from_millis(5),
        faults: true,
        slow: Duration::from_secs(3),
        reject_all: false,
    });
    let out = dir.join("out");
    let args = collect_args(&parquet, &out, &fake.base_url(), "openai");
    let o = run(
        &args,
        &[
            "--timeout-secs",
            "1",
            "--max-retries",
            "2",
            "--concurrency",
            "16",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let st = stats(&out);
    let classify = &st["steps"]["classify"];
    let api = &classify["api"];
    let state = &fake.state;
    eprintln!(
        "classify api {api}\nrefusal api {}\nserver faults {:?}, received {}",
        st["steps"]["refusal"]["api"],
        state.faults.lock().unwrap(),
        state.received.lock().unwrap().values().sum::<u32>()
    );
    // Every fault the server served (to either step) is in the counters.
    let both = |key: &str| n(&api[key]) + n(&st["steps"]["refusal"]["api"][key]);
    assert_eq!(both("http_429"), state.faults_of(Fault::TooManyRequests));
    assert_eq!(
        both("http_5xx"),
        state.faults_of(Fault::ServerError) + state.faults_of(Fault::AlwaysFails)
    );
    assert_eq!(both("timeouts"), state.faults_of(Fault::Slow));
    assert_eq!(both("bad_bodies"), state.faults_of(Fault::BadBody));
    for kind in [
        Fault::TooManyRequests,
        Fault::ServerError,
        Fault::Slow,
        Fault::AlwaysFails,
        Fault::Garbage,
        Fault::BadBody,
    ] {
        assert!(
            state.faults_of(kind) > 0,
            "the sample never triggered {kind:?}"
        );
    }

    // Instances whose prompt always fails or gets garbage are dropped and counted; every other one is
    // labelled with exactly what the server answered.
    let p = prompts();
    let instances: Vec<Instance> = read_jsonl(&out.join("instances.jsonl"))
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let classified: HashMap<String, Value> = read_jsonl(&out.join("classified.jsonl"))
        .into_iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t))
        .collect();
    let (mut failed, mut garbage) = (0u64, 0u64);
    for i in &instances {
        let prompt = p.feedback(i);
        match fault_for(&prompt, 0, true) {
            Fault::AlwaysFails => {
                failed += 1;
                assert!(
                    !classified.contains_key(&i.id),
                    "{} labelled from a failed call",
                    i.id
                );
            }
            Fault::Garbage => {
                garbage += 1;
                assert!(
                    !classified.contains_key(&i.id),
                    "{} labelled from garbage",
                    i.id
                );
            }
            _ => {
                let t = &classified[&i.id];
                let want: u64 = answer_for(&prompt)[2..3].parse().unwrap();
                assert_eq!(n(&t["label"]), want, "{}", i.id);
                assert_eq!(t["label_source"], "llm");
            }
        }
    }
    assert!(failed > 0 && garbage > 0);
    assert_eq!(n(&classify["drops"]["api_failed"]), failed);
    assert_eq!(n(&classify["drops"]["unparseable_answer"]), garbage);
    assert_eq!(
        n(&classify["rows_out"]) + failed + garbage,
        instances.len() as u64
    );
    assert_eq!(n(&api["failed"]) + n(&api["succeeded"]), n(&api["calls"]));
    assert!(n(&api["retries"]) > 0 && n(&api["prompt_tokens"]) > 0);
    assert_eq!(state.malformed_requests.load(Ordering::Relaxed), 0);
    assert!(out.join("train.jsonl").exists());
}

#[test]
fn cascade_asks_the_llm_only_where_the_cues_abstain() {
    let dir = scratch("collect-cascade");
    let parquet = import_sample(&dir, Some(30));
    let fake = FakeOpenAi::start(Behaviour {
        latency: Duration::ZERO,
        faults: false,
        slow: Duration::ZERO,
        reject_all: false,
    });
    let out = dir.join("out");
    let o = run(
        &collect_args(&parquet, &out, &fake.base_url(), "cascade"),
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let classify = &stats(&out)["steps"]["classify"];
    let saved = n(&classify["details"]["calls_saved_by_cues"]);
    let calls = n(&classify["api"]["calls"]) + n(&classify["api"]["deduplicated"]);
    assert!(saved > 0 && calls > 0);
    assert_eq!(saved + calls, n(&classify["rows_in"]));
    let turns = read_jsonl(&out.join("classified.jsonl"));
    let by_cues = turns.iter().filter(|t| t["label_source"] == "cues").count() as u64;
    assert_eq!(by_cues, saved);
    // The cues decide only where they are confident: nothing they wrote is an abstention, and every
    // LLM label is on a turn the cues abstained on.
    assert!(turns.iter().all(|t| t["abstained"].is_null()));
}

#[test]
fn a_killed_run_resumes_without_paying_twice() {
    let dir = scratch("collect-openai-kill");
    let parquet = import_sample(&dir, Some(40));
    let quiet = Behaviour {
        latency: Duration::from_millis(2),
        faults: false,
        slow: Duration::ZERO,
        reject_all: false,
    };

    // The reference: one uninterrupted run.
    let fake_a = FakeOpenAi::start(quiet.clone());
    let a = dir.join("a");
    let o = run(
        &collect_args(&parquet, &a, &fake_a.base_url(), "openai"),
        &["--concurrency", "4"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same run, killed (SIGKILL) once the server has answered 30 prompts and the journal holds them.
    let fake_b = FakeOpenAi::start(quiet.clone());
    fake_b.state.gate.store(30, Ordering::SeqCst);
    let b = dir.join("b");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wildfb"))
        .args(collect_args(&parquet, &b, &fake_b.base_url(), "openai"))
        .args(["--concurrency", "4"])
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = b.join("llm-journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let journalled = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if journalled >= 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run never got 30 answers journalled"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !b.join("classified.jsonl").exists(),
        "classify was not interrupted"
    );
    let st = stats(&b);
    assert!(st["steps"].get("classify").is_none());
    let answered_before: Vec<String> = fake_b
        .state
        .answered
        .lock()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(answered_before.len(), 30);

    // Resume against a fresh server (as after a restart): nothing it already paid for is sent again.
    let fake_c = FakeOpenAi::start(quiet);
    let o = run(
        &collect_args(&parquet, &b, &fake_c.base_url(), "openai"),
        &["--concurrency", "4"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let received_after = fake_c.state.received.lock().unwrap().clone();
    for prompt in &answered_before {
        assert!(
            !received_after.contains_key(prompt),
            "a journalled prompt was sent again"
        );
    }
    assert!(
        received_after.values().all(|&k| k == 1),
        "a prompt was sent twice in one run"
    );
    let classify = &stats(&b)["steps"]["classify"];
    assert_eq!(n(&classify["api"]["journal_hits"]), 30);

    for f in [
        "classified.jsonl",
        "hindsight.jsonl",
        "refusal.jsonl",
        "train.jsonl",
        "test.jsonl",
    ] {
        assert!(
            std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
            "{f} differs from the uninterrupted run"
        );
    }
}

#[test]
fn an_endpoint_that_refuses_the_key_stops_the_run_with_a_clear_error() {
    let dir = scratch("collect-openai-unreachable");
    let parquet = import_sample(&dir, Some(5));
    // A wrong path answers 404 on every request: no call can succeed, so the run stops at once.
    let fake = FakeOpenAi::start(Behaviour {
        latency: Duration::ZERO,
        faults: false,
        slow: Duration::ZERO,
        reject_all: false,
    });
    let base = format!("http://{}/wrong", fake.addr);
    let out = dir.join("out");
    let o = run(&collect_args(&parquet, &out, &base, "openai"), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/wrong/chat/completions") && err.contains("404"),
        "{err}"
    );
    assert!(!out.join("classified.jsonl").exists());
}

#[test]
fn refusals_are_adjudicated_by_the_llm_as_it_answers() {
    use wildreward_types::wildchat::{WildChatConversation, WildChatMessage};
    let dir = scratch("collect-openai-refusal");
    let msg = |role: &str, content: String| WildChatMessage {
        content,
        role: role.into(),
        language: None,
        turn_identifier: None,
        timestamp: None,
        toxic: None,
        redacted: None,
        country: None,
        state: None,
        hashed_ip: None,
        header: None,
    };
    // Short refusals of harmless requests, each followed by a reaction and one more exchange.
    let rows: Vec<WildChatConversation> = (0..24)
        .map(|i| WildChatConversation {
            conversation_hash: format!("{i:032x}"),
            model: "gpt-3.5-turbo".into(),
            timestamp: None,
            conversation: vec![
                msg(
                    "user",
                    format!("Please write a short poem about the sea, version number {i} of it"),
                ),
                msg(
                    "assistant",
                    format!("I'm sorry, but I can't help with that request (case {i})."),
                ),
                msg("user", format!("Why not? It is only a poem, attempt {i}.")),
                msg(
                    "assistant",
                    "Apologies, here is a poem about the sea and its waves.".into(),
                ),
            ],
            turn: 2,
            language: "English".into(),
            toxic: None,
            redacted: None,
            state: None,
            country: None,
            hashed_ip: None,
            header: None,
            adapted_from: None,
            source_id: None,
        })
        .collect();
    let parquet = dir.join("refusals.parquet");
    wildfb::parquet::write_wildchat(&parquet, &rows).unwrap();
    let fake = FakeOpenAi::start(Behaviour {
        latency: Duration::ZERO,
        faults: false,
        slow: Duration::ZERO,
        reject_all: false,
    });
    let out = dir.join("out");
    let o = run(
        &collect_args(&parquet, &out, &fake.base_url(), "openai"),
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let p = prompts();
    let refusal = &stats(&out)["steps"]["refusal"];
    let mut adjudicated = 0;
    for t in read_jsonl(&out.join("refusal.jsonl")) {
        let instance: Instance = serde_json::from_value(t.clone()).unwrap();
        let classified: u64 = answer_for(&p.feedback(&instance))[2..3].parse().unwrap();
        if classified == 3 {
            assert!(t.get("refusal").is_none(), "a neutral turn was adjudicated");
            continue;
        }
        adjudicated += 1;
        let verdict: u64 = answer_for(&p.refusal(&instance))[2..3].parse().unwrap();
        assert_eq!(n(&t["refusal"]["verdict"]), verdict);
        assert_eq!(n(&t["refusal"]["original"]), classified);
        let want = match verdict {
            0 => 1,
            1 => 5,
            _ => classified,
        };
        assert_eq!(n(&t["label"]), want, "{t}");
    }
    assert!(adjudicated > 3, "{adjudicated}");
    assert_eq!(n(&refusal["details"]["candidates"]), adjudicated);
    assert_eq!(n(&refusal["api"]["calls"]), adjudicated);
    let sent_refusal_prompts = fake
        .state
        .received
        .lock()
        .unwrap()
        .keys()
        .filter(|k| support::fake_openai::is_refusal_prompt(k))
        .count();
    assert_eq!(sent_refusal_prompts as u64, adjudicated);
}

#[test]
fn a_run_whose_first_calls_all_fail_stops_instead_of_dropping_everything() {
    let dir = scratch("collect-openai-all-fail");
    let parquet = import_sample(&dir, Some(20));
    let fake = FakeOpenAi::start(Behaviour {
        latency: Duration::ZERO,
        faults: false,
        slow: Duration::ZERO,
        reject_all: true,
    });
    let out = dir.join("out");
    let o = run(
        &collect_args(&parquet, &out, &fake.base_url(), "openai"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("first 20 calls all failed") && err.contains("maximum context length"),
        "{err}"
    );
    assert!(stats(&out)["steps"].get("classify").is_none());
    // 400 is not retried: the server saw each prompt once.
    assert!(fake
        .state
        .received
        .lock()
        .unwrap()
        .values()
        .all(|&k| k == 1));
}
