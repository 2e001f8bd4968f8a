//! A real scoring server for tests (feature `test-server`): axum on loopback, scoring with the real
//! [`Scorer`], speaking `/get_reward` and `/score` exactly as the wire types say, and able to fail on
//! purpose (status codes, `429` + `Retry-After`, slow answers, short answers) for requests that
//! carry a marker string. It is independent of `wildreward-serve`, so the client and its users can be
//! tested against the wire itself.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use wildreward_model::Scorer;
use wildreward_types::wire::{
    ErrorBody, GetRewardRequest, GetRewardResponse, ScoreItem, ScoreRequest, ScoreResponse,
};
use wildreward_types::EmptyHistory;

/// What a matching request gets instead of (or before) a normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// This status with an `ErrorBody`.
    Status(u16),
    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u64,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 200 with one result fewer than asked for.
    ShortAnswer,
}

/// A fault for every request in which some text contains `marker`, `times` times (forever if
/// `None`).
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// Substring of a query text (or an item's query or response) that selects the request.
    pub marker: String,
    /// What happens.
    pub fault: Fault,
    /// How many requests it still applies to.
    pub times: Option<u32>,
}

struct AppState {
    scorer: Scorer,
    rules: Mutex<Vec<FaultRule>>,
    requests: AtomicUsize,
    token: Option<String>,
}

/// A running server; stops when dropped.
pub struct TestServer {
    url: String,
    state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:<free port>` in a thread of its own (with its own runtime).
    /// With `token`, every request must carry `Authorization: Bearer <token>` (else 401).
    pub fn start(scorer: Scorer, token: Option<String>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(AppState {
            scorer,
            rules: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            token,
        });
        let app = Router::new()
            .route("/get_reward", post(get_reward))
            .route("/score", post(score))
            .route("/health", get(|| async { "ok" }))
            .with_state(Arc::clone(&state));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            url,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a fault rule (rules are checked in the order they were added).
    pub fn add_fault(&self, rule: FaultRule) {
        self.state
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rule);
    }

    /// Requests received so far (both routes, faulty or not).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(status: StatusCode, error_type: &str, error: String) -> Response {
    let body = ErrorBody {
        error,
        error_type: error_type.to_string(),
    };
    (status, Json(body)).into_response()
}

/// Checks the token, counts the request and applies the first matching fault. `Ok(short)` lets the
/// request through (`short`: answer with one result fewer).
async fn admit(state: &AppState, headers: &HeaderMap, texts: &[&str]) -> Result<bool, Response> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(token) = &state.token {
        let sent = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token".into(),
            ));
        }
    }
    let fault = {
        let mut rules = state.rules.lock().unwrap_or_else(PoisonError::into_inner);
        rules
            .iter_mut()
            .find(|r| r.times != Some(0) && texts.iter().any(|t| t.contains(&r.marker)))
            .map(|r| {
                if let Some(n) = r.times.as_mut() {
                    *n -= 1;
                }
                r.fault.clone()
            })
    };
    match fault {
        None => Ok(false),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(error(status, "injected", format!("injected {code}")))
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "injected overload".into(),
            );
            if let Ok(v) = retry_after_secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            Err(r)
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(false)
        }
        Some(Fault::ShortAnswer) => Ok(true),
    }
}

/// What the test server scores: ready-made texts (`/get_reward`) or turns (`/score`, encoded by
/// the training encoder as the real server does).
enum Inputs {
    Texts(Vec<String>),
    Turns(Vec<ScoreItem>),
}

/// Scores inputs with the real scorer off the async threads: rewards and level probabilities.
async fn run_scorer(
    state: &Arc<AppState>,
    inputs: Inputs,
) -> Result<(Vec<f32>, Vec<Vec<f32>>), Response> {
    let state = Arc::clone(state);
    let joined = tokio::task::spawn_blocking(move || match &inputs {
        Inputs::Texts(texts) => {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            state.scorer.score(&refs)
        }
        Inputs::Turns(items) => {
            let turns: Vec<_> = items
                .iter()
                .map(|i| (i.history.as_slice(), i.query.as_str(), i.response.as_str()))
                .collect();
            state.scorer.score_turns(&turns, EmptyHistory::Training)
        }
    })
    .await;
    match joined {
        Ok(Ok(scored)) => Ok(scored.into_iter().map(|s| (s.reward, s.probs)).unzip()),
        Ok(Err(e)) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            e.to_string(),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "backend",
            e.to_string(),
        )),
    }
}

async fn get_reward(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<GetRewardRequest>,
) -> Response {
    let texts: Vec<&str> = req.query.iter().map(String::as_str).collect();
    let short = match admit(&state, &headers, &texts).await {
        Ok(short) => short,
        Err(r) => return r,
    };
    match run_scorer(&state, Inputs::Texts(req.query.clone())).await {
        Ok((mut rewards, _)) => {
            if short {
                rewards.pop();
            }
            Json(GetRewardResponse::new(rewards)).into_response()
        }
        Err(r) => r,
    }
}

async fn score(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<ScoreRequest>,
) -> Response {
    let texts: Vec<&str> = req
        .items
        .iter()
        .flat_map(|i| [i.query.as_str(), i.response.as_str()])
        .collect();
    let short = match admit(&state, &headers, &texts).await {
        Ok(short) => short,
        Err(r) => return r,
    };
    match run_scorer(&state, Inputs::Turns(req.items.clone())).await {
        Ok((mut rewards, mut probs)) => {
            if short {
                rewards.pop();
                probs.pop();
            }
            Json(ScoreResponse { rewards, probs }).into_response()
        }
        Err(r) => r,
    }
}
