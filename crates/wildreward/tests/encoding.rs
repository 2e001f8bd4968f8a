//! One input encoding everywhere, on the real SmolLM2 GGUF: an over-long turn gets byte-identical
//! token ids from the trainer's encoder, the scorer, and a real `serve worker`'s `/score`
//! tokeniser, and the same reward through `POST /score` (a real worker process on loopback) and
//! `wildreward score --input` with `messages`. A raw text keeps the template header when cut; under
//! `--truncation error` an over-long item is a 422. A checkpoint without a trained head is refused
//! by `serve` unless `--allow-untrained-head`, which `/info` and `/metrics` then report.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wildreward_model::encode::ids_of;
use wildreward_model::{LoadOptions, RewardModel, Scorer, ScorerOptions, Truncation};
use wildreward_serve::backend::{ScoreInput, TextTokenizer};
use wildreward_train::data::{Encoder, Turn};
use wildreward_types::template::{build_text, EmptyHistory, FOOTER, HEADER};
use wildreward_types::wire::ScoreItem;
use wildreward_types::{Message, Role};

const MAX_LENGTH: usize = 256;

fn gguf() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    wildreward_model::assets::asset(&root, wildreward_model::assets::SMOLLM2_GGUF)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A turn far over [`MAX_LENGTH`]: six history messages and a long query.
fn long_turn() -> Turn {
    let words = |n: usize, w: &str| vec![w; n].join(" ");
    Turn {
        history: (0..6)
            .map(|i| Message {
                role: if i % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: format!("message {i}: {}", words(40, "earlier")),
            })
            .collect(),
        query: format!(
            "Start of the question. {} End of the question?",
            words(300, "detail")
        ),
        response: "Here is the answer you asked for, in one sentence.".into(),
    }
}

/// Plain HTTP/1.1, one connection per request: status, lower-cased headers, JSON body.
fn http(method: &str, url: &str, body: &str) -> (u16, Vec<(String, String)>, Value) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let body = &raw[split + 4..];
    let json = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).to_string()));
    (status, headers, json)
}

/// A `serve worker` process; killed when dropped.
struct Worker {
    child: Child,
    url: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(extra: &[&str], log: &str) -> Worker {
    let model = gguf();
    let mut args = vec![
        "serve",
        "worker",
        "--model",
        model.to_str().unwrap(),
        "--port",
        "0",
        "--max-length",
        "256",
        "--tokenization-workers",
        "1",
        "--allow-untrained-head",
    ];
    args.extend_from_slice(extra);
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}; see {}", log.display()))
        .trim()
        .to_string();
    let start = Instant::now();
    while http("GET", &format!("{url}/health"), "").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "worker never became healthy; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Worker { child, url }
}

fn scorer(truncation: Truncation) -> Scorer {
    let model = RewardModel::load(&gguf(), &LoadOptions::inference()).unwrap();
    Scorer::new(
        model,
        ScorerOptions {
            max_length: MAX_LENGTH,
            truncation,
            ..ScorerOptions::default()
        },
    )
}

#[test]
fn an_over_long_item_has_the_trainers_ids_and_reward_everywhere() {
    let turn = long_turn();
    let scorer = Arc::new(scorer(Truncation::Middle));
    let tokenizer = scorer.model().tokenizer();
    let full = ids_of(
        tokenizer,
        &build_text(
            &turn.history,
            &turn.query,
            &turn.response,
            EmptyHistory::Training,
        ),
    )
    .unwrap();
    assert!(full.len() > 2 * MAX_LENGTH, "{} tokens", full.len());

    // The trainer's encoder: within budget, header first, footer last, response intact.
    let (train_ids, cut) = Encoder::new(tokenizer, MAX_LENGTH, EmptyHistory::Training)
        .encode_turn(&turn)
        .unwrap();
    assert!(cut && train_ids.len() <= MAX_LENGTH);
    let header = ids_of(tokenizer, HEADER).unwrap();
    let stable = header.len() - 1; // the last header token may merge with what follows
    assert_eq!(train_ids[..stable], header[..stable], "BOS and header kept");
    let text = tokenizer.decode(&train_ids, false).unwrap();
    assert!(text.ends_with(FOOTER), "footer kept: {text}");
    assert!(text.contains(&turn.response), "response kept whole");
    assert!(text.contains("Start of the question.") && text.contains("End of the question?"));
    assert!(!text.contains("message 0"), "history went first");

    // Byte-identical ids from the scorer and from serve's `/score` tokeniser.
    let (scorer_ids, _) = scorer
        .encode_turn(
            &turn.history,
            &turn.query,
            &turn.response,
            EmptyHistory::Training,
        )
        .unwrap();
    assert_eq!(scorer_ids, train_ids);
    let item = ScoreItem {
        query: turn.query.clone(),
        response: turn.response.clone(),
        history: turn.history.clone(),
    };
    let served_ids = TextTokenizer::new(scorer.clone())
        .encode_input(&ScoreInput::Turn(item.clone(), EmptyHistory::Training))
        .unwrap();
    assert_eq!(served_ids, train_ids);
    let want = scorer.score_ids(std::slice::from_ref(&train_ids)).unwrap()[0].reward;

    // A real worker process: the same reward, over the same number of tokens (f32, as the local
    // scorer here; `auto` would be bf16 on a CPU with AVX512_BF16).
    let w = worker(&["--dtype", "f32"], "encoding-worker.log");
    let (status, headers, body) = http(
        "POST",
        &format!("{}/score", w.url),
        &json!({ "items": [item] }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rewards"][0].as_f64().unwrap() as f32, want);
    let tokens = headers
        .iter()
        .find(|(k, _)| k == "x-compute-tokens")
        .map(|(_, v)| v.parse::<usize>().unwrap());
    assert_eq!(tokens, Some(train_ids.len()));

    // The seeded random head is announced in /info and /metrics.
    let (_, _, info) = http("GET", &format!("{}/info", w.url), "");
    assert_eq!(info["head_initialised"], true, "{info}");
    let (_, _, metrics) = http("GET", &format!("{}/metrics", w.url), "");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wildreward_head_initialised 1"),
        "{metrics}"
    );

    // A raw text through /get_reward: cut in the middle, header kept, as the scorer cuts it.
    let raw = build_text(
        &turn.history,
        &turn.query,
        &turn.response,
        EmptyHistory::Training,
    );
    let (raw_ids, raw_cut) = scorer.tokenize(&[raw.as_str()]).unwrap().remove(0);
    assert!(raw_cut && raw_ids.len() == MAX_LENGTH);
    assert_eq!(
        raw_ids[..stable],
        header[..stable],
        "raw text keeps the header"
    );
    assert_eq!(
        raw_ids[MAX_LENGTH - 20..],
        full[full.len() - 20..],
        "and its end"
    );
    let (status, _, body) = http(
        "POST",
        &format!("{}/get_reward", w.url),
        &json!({ "query": [raw] }).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rewards"][0].as_f64().unwrap() as f32,
        scorer.score_ids(&[raw_ids]).unwrap()[0].reward
    );
    drop(w);

    // `wildreward score --input` with messages: the same reward again.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut messages: Vec<Value> = vec![];
    messages.push(json!({"role": "user", "content": turn.query}));
    messages.push(json!({"role": "assistant", "content": turn.response}));
    let line = json!({"history": turn.history, "messages": messages});
    std::fs::write(&input, format!("{line}\n")).unwrap();
    let out = dir.path().join("out.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args([
            "score",
            "--model",
            gguf().to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--max-length",
            "256",
            "--dtype",
            "f32",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let scored: Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    assert_eq!(scored["reward"].as_f64().unwrap() as f32, want);
    assert_eq!(scored["truncated"], true);
}

#[test]
fn truncation_error_refuses_an_over_long_item_with_422() {
    let w = worker(&["--truncation", "error"], "encoding-error-worker.log");
    let turn = long_turn();
    let item = ScoreItem {
        query: turn.query,
        response: turn.response,
        history: turn.history,
    };
    let (status, _, body) = http(
        "POST",
        &format!("{}/score", w.url),
        &json!({ "items": [{"query": "q", "response": "r"}, item] }).to_string(),
    );
    assert_eq!(status, 422, "{body}");
    let message = body.to_string();
    assert!(
        message.contains("items[1]") && message.contains("over the limit of 256"),
        "{message}"
    );
}

#[test]
fn serve_refuses_a_random_head_unless_allowed() {
    let o = Command::new(env!("CARGO_BIN_EXE_wildreward"))
        .args([
            "serve",
            "worker",
            "--model",
            gguf().to_str().unwrap(),
            "--port",
            "0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(
        err.contains("no trained reward head") && err.contains("--allow-untrained-head"),
        "{err}"
    );
}
