//! A real OpenAI-compatible chat-completions server on 127.0.0.1 (axum), for the annotator's tests and
//! the API benchmark. It answers deterministically from the prompt, and can be told to misbehave the
//! way real endpoints do: 429 with `Retry-After`, 500s (once, or for good), answers slower than the
//! client's timeout, a body that is not JSON, and content without any `[[n]]`.
//!
//! What it decides for a prompt depends only on the prompt's hash and how many times that prompt was
//! received before, so a test can compute what the pipeline must have labelled.
#![allow(dead_code)] // each test binary uses a different part

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Delay before every answer.
    pub latency: Duration,
    /// Inject the faults described in [`Fault`].
    pub faults: bool,
    /// How long a "slow" answer takes (longer than the client's timeout).
    pub slow: Duration,
    /// Answer every request with 400, as vLLM does when a prompt exceeds the model's context.
    pub reject_all: bool,
}

/// What the fake does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// 429 with `Retry-After: 1` (first attempt only).
    TooManyRequests,
    /// 500 (first attempt only).
    ServerError,
    /// Answer only after [`Behaviour::slow`] (first attempt only).
    Slow,
    /// 500 on every attempt: the call fails for good.
    AlwaysFails,
    /// 200 with content that holds no `[[n]]` (every attempt).
    Garbage,
    /// 200 with a body that is not JSON (first attempt only).
    BadBody,
}

/// The prompt's hash as a number.
pub fn prompt_hash(prompt: &str) -> u64 {
    let d = Sha256::digest(prompt.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The fault for the `attempt`-th (0-based) receipt of `prompt`.
pub fn fault_for(prompt: &str, attempt: u32, faults: bool) -> Fault {
    if !faults {
        return Fault::None;
    }
    let h = prompt_hash(prompt);
    match (h % 10, attempt) {
        (1, 0) => Fault::TooManyRequests,
        (2, 0) => Fault::ServerError,
        (3, 0) => Fault::Slow,
        (4, _) => Fault::AlwaysFails,
        (5, _) => Fault::Garbage,
        (6, 0) => Fault::BadBody,
        _ => Fault::None,
    }
}

/// True for the refusal-validation prompt (it asks for [[0]], [[1]] or [[2]]).
pub fn is_refusal_prompt(prompt: &str) -> bool {
    prompt.contains("[[0]], [[1]] or [[2]]")
}

/// The content of a good answer to `prompt`.
pub fn answer_for(prompt: &str) -> String {
    let h = prompt_hash(prompt) / 10;
    if is_refusal_prompt(prompt) {
        format!("[[{}]]", h % 3)
    } else {
        format!("[[{}]] the reaction decides it", 1 + h % 5)
    }
}

/// Counters and the gate, shared with the test.
#[derive(Default)]
pub struct FakeState {
    /// Requests received per prompt.
    pub received: Mutex<HashMap<String, u32>>,
    /// Good answers sent per prompt.
    pub answered: Mutex<HashMap<String, u32>>,
    /// Faults served, by kind.
    pub faults: Mutex<HashMap<String, u64>>,
    /// Answer at most this many prompts; later requests hang (to kill a client mid-run).
    pub gate: AtomicUsize,
    /// Good answers sent.
    pub answers: AtomicU64,
    /// Requests whose body was not a chat-completions request.
    pub malformed_requests: AtomicU64,
}

impl FakeState {
    /// Faults of one kind served so far.
    pub fn faults_of(&self, kind: Fault) -> u64 {
        let map = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&format!("{kind:?}")).copied().unwrap_or(0)
    }
}

/// A running fake.
pub struct FakeOpenAi {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub state: Arc<FakeState>,
}

impl FakeOpenAi {
    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Starts a fake on a free loopback port, served from a background thread.
    pub fn start(behaviour: Behaviour) -> FakeOpenAi {
        let state = Arc::new(FakeState {
            gate: AtomicUsize::new(usize::MAX),
            ..FakeState::default()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = (Arc::clone(&state), behaviour);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind 127.0.0.1");
                let addr = listener.local_addr().expect("local addr");
                let _ = tx.send(addr);
                let app = Router::new()
                    .route("/v1/chat/completions", post(complete))
                    .with_state(Arc::new(shared));
                let _ = axum::serve(listener, app).await;
            });
        });
        let addr = rx.recv().expect("fake server address");
        FakeOpenAi { addr, state }
    }
}

type Shared = Arc<(Arc<FakeState>, Behaviour)>;

async fn complete(State(shared): State<Shared>, Json(body): Json<Value>) -> Response {
    let (state, behaviour) = (&shared.0, &shared.1);
    let prompt = body["messages"][0]["content"].as_str();
    let (Some(prompt), Some(_model)) = (prompt, body["model"].as_str()) else {
        state.malformed_requests.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, "expected model and messages").into_response();
    };
    let attempt = {
        let mut received = state.received.lock().unwrap_or_else(|e| e.into_inner());
        let n = received.entry(prompt.to_string()).or_default();
        *n += 1;
        *n - 1
    };
    if behaviour.reject_all {
        return (
            StatusCode::BAD_REQUEST,
            "This model's maximum context length is 2048 tokens.",
        )
            .into_response();
    }
    let fault = fault_for(prompt, attempt, behaviour.faults);
    if fault != Fault::None {
        let mut faults = state.faults.lock().unwrap_or_else(|e| e.into_inner());
        *faults.entry(format!("{fault:?}")).or_default() += 1;
    }
    tokio::time::sleep(behaviour.latency).await;
    match fault {
        Fault::TooManyRequests => {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return r;
        }
        Fault::ServerError | Fault::AlwaysFails => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()
        }
        Fault::BadBody => return (StatusCode::OK, "<html>proxy error</html>").into_response(),
        Fault::Slow => tokio::time::sleep(behaviour.slow).await,
        Fault::Garbage | Fault::None => {}
    }
    loop {
        let answers = state.answers.load(Ordering::SeqCst);
        if answers < state.gate.load(Ordering::SeqCst) as u64 {
            if state
                .answers
                .compare_exchange(answers, answers + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
            continue;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let content = if fault == Fault::Garbage {
        "I would rather not pick a category.".to_string()
    } else {
        answer_for(prompt)
    };
    {
        let mut answered = state.answered.lock().unwrap_or_else(|e| e.into_inner());
        *answered.entry(prompt.to_string()).or_default() += 1;
    }
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 7, "total_tokens": prompt.len() / 4 + 7}
    }))
    .into_response()
}
