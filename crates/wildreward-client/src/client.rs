//! The async client: splits items into chunks, sends up to `concurrency` chunks at once, retries
//! each chunk on its own, and returns one result per item in input order.

use crate::error::{ClientError, FailureKind, ItemError};
use crate::options::ClientOptions;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use wildreward_types::wire::{
    ErrorBody, GetRewardRequest, GetRewardResponse, ScoreItem, ScoreRequest, ScoreResponse,
};

/// One item scored through `/score`: the reward and the per-level probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScore {
    /// `1 + Σσ(z)`.
    pub reward: f32,
    /// K per-level probabilities (empty for a scalar head).
    pub probs: Vec<f32>,
}

/// A result per item, in input order.
pub type ItemResults<T> = Vec<Result<T, ItemError>>;

/// The async scoring client (cheap to clone: clones share the connection pool).
#[derive(Debug, Clone)]
pub struct ScoringClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    get_reward: Url,
    score: Url,
    opts: ClientOptions,
}

/// The server root of `url`: a URL naming `/get_reward` or `/score` is cut back to its root, so the
/// same flag value serves both routes.
pub fn endpoint_root(url: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| ClientError::BadEndpoint {
        url: url.to_string(),
        why: why.to_string(),
    };
    let mut parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("no query string or fragment expected"));
    }
    let path = parsed.path().trim_end_matches('/');
    let root = path
        .strip_suffix("/get_reward")
        .or_else(|| path.strip_suffix("/score"))
        .unwrap_or(path)
        .to_string();
    parsed.set_path(&format!("{root}/"));
    Ok(parsed)
}

impl ScoringClient {
    /// A client for the server at `endpoint` (its root, or its `/get_reward` or `/score` URL).
    pub fn new(endpoint: &str, opts: ClientOptions) -> Result<Self, ClientError> {
        let root = endpoint_root(endpoint)?;
        let join = |route: &str| {
            root.join(route).map_err(|e| ClientError::BadEndpoint {
                url: endpoint.to_string(),
                why: e.to_string(),
            })
        };
        let opts = ClientOptions {
            chunk_size: opts.chunk_size.max(1),
            concurrency: opts.concurrency.max(1),
            ..opts
        };
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                get_reward: join("get_reward")?,
                score: join("score")?,
                opts,
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Rewards of ready-made RM texts through `POST /get_reward` (the reference's wire).
    pub async fn get_rewards<S: AsRef<str>>(&self, texts: &[S]) -> ItemResults<f32> {
        self.get_rewards_with_progress(texts, &mut |_| {}).await
    }

    /// As [`Self::get_rewards`], calling `progress(n)` as each chunk of `n` items finishes (on the
    /// caller's task, so the callback needs neither `Send` nor `'static`).
    pub async fn get_rewards_with_progress<S: AsRef<str>>(
        &self,
        texts: &[S],
        progress: &mut dyn FnMut(usize),
    ) -> ItemResults<f32> {
        let bodies = texts
            .chunks(self.inner.opts.chunk_size)
            .map(|c| GetRewardRequest {
                query: c.iter().map(|t| t.as_ref().to_string()).collect(),
                prompts: None,
                labels: None,
            })
            .collect();
        self.run_chunks(bodies, progress, |inner, body| async move {
            let n = body.query.len();
            let resp: GetRewardResponse = inner
                .post(&inner.get_reward, &body, |r: &GetRewardResponse| {
                    count_check(r.rewards.len(), n)
                })
                .await?;
            Ok(resp.rewards)
        })
        .await
    }

    /// Rewards and level probabilities of structured items through `POST /score` (the server
    /// applies the RM template).
    pub async fn score_items(&self, items: &[ScoreItem]) -> ItemResults<ItemScore> {
        self.score_items_with_progress(items, &mut |_| {}).await
    }

    /// As [`Self::score_items`], with a progress callback (see
    /// [`Self::get_rewards_with_progress`]).
    pub async fn score_items_with_progress(
        &self,
        items: &[ScoreItem],
        progress: &mut dyn FnMut(usize),
    ) -> ItemResults<ItemScore> {
        let bodies = items
            .chunks(self.inner.opts.chunk_size)
            .map(|c| ScoreRequest { items: c.to_vec() })
            .collect();
        self.run_chunks(bodies, progress, |inner, body| async move {
            let n = body.items.len();
            let resp: ScoreResponse = inner
                .post(&inner.score, &body, |r: &ScoreResponse| {
                    count_check(r.rewards.len(), n)?;
                    count_check(r.probs.len(), n)
                })
                .await?;
            Ok(resp
                .rewards
                .into_iter()
                .zip(resp.probs)
                .map(|(reward, probs)| ItemScore { reward, probs })
                .collect())
        })
        .await
    }

    /// Sends every chunk (at most `concurrency` at once) and spreads each chunk's outcome over its
    /// items.
    async fn run_chunks<B, T, F, Fut>(
        &self,
        bodies: Vec<B>,
        progress: &mut dyn FnMut(usize),
        send: F,
    ) -> ItemResults<T>
    where
        B: ChunkLen + Send + 'static,
        T: Send + 'static,
        F: Fn(Arc<Inner>, B) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, ItemError>> + Send + 'static,
    {
        let sizes: Vec<usize> = bodies.iter().map(ChunkLen::chunk_len).collect();
        let permits = Arc::new(Semaphore::new(self.inner.opts.concurrency));
        let mut tasks = JoinSet::new();
        for (index, body) in bodies.into_iter().enumerate() {
            let permits = Arc::clone(&permits);
            let fut = send(Arc::clone(&self.inner), body);
            tasks.spawn(async move {
                let outcome = match permits.acquire_owned().await {
                    Ok(_permit) => fut.await,
                    Err(_) => Err(internal("the request limiter closed")),
                };
                (index, outcome)
            });
        }
        let mut outcomes: Vec<Option<Result<Vec<T>, ItemError>>> =
            (0..sizes.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, outcome)) = joined {
                progress(sizes[index]);
                outcomes[index] = Some(outcome);
            }
        }
        let mut out = Vec::with_capacity(sizes.iter().sum());
        for (size, outcome) in sizes.into_iter().zip(outcomes) {
            match outcome.unwrap_or_else(|| Err(internal("the chunk's task ended abnormally"))) {
                Ok(values) => out.extend(values.into_iter().map(Ok)),
                Err(e) => out.extend(std::iter::repeat_n(e, size).map(Err)),
            }
        }
        out
    }
}

/// The number of items a request body carries.
trait ChunkLen {
    fn chunk_len(&self) -> usize;
}

impl ChunkLen for GetRewardRequest {
    fn chunk_len(&self) -> usize {
        self.query.len()
    }
}

impl ChunkLen for ScoreRequest {
    fn chunk_len(&self) -> usize {
        self.items.len()
    }
}

fn internal(detail: &str) -> ItemError {
    ItemError {
        kind: FailureKind::Transport,
        detail: detail.to_string(),
        attempts: 0,
    }
}

/// A response must carry one result per item of its chunk.
fn count_check(got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got} results for {want} items"))
    }
}

/// One failed try: the error so far and, for 429/503, the server's requested wait.
struct Failure {
    kind: FailureKind,
    detail: String,
    retry_after: Option<Duration>,
}

impl Inner {
    /// Posts `body` to `url`, retrying retryable failures with backoff (or the server's
    /// `Retry-After`), and decodes the answer.
    /// `validate` checks a decoded answer (e.g. its result count); a failed check is final.
    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
        validate: impl Fn(&R) -> Result<(), String>,
    ) -> Result<R, ItemError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.try_once(url, body).await {
                Ok(decoded) => match validate(&decoded) {
                    Ok(()) => return Ok(decoded),
                    Err(detail) => Failure {
                        kind: FailureKind::BadResponse,
                        detail,
                        retry_after: None,
                    },
                },
                Err(f) => f,
            };
            let error = ItemError {
                kind: failure.kind,
                detail: failure.detail,
                attempts,
            };
            if !error.is_retryable() || attempts > self.opts.retries {
                return Err(error);
            }
            let wait = failure
                .retry_after
                .map(|w| w.min(self.opts.max_backoff))
                .unwrap_or_else(|| self.opts.backoff_for(attempts));
            tokio::time::sleep(wait).await;
        }
    }

    async fn try_once<B: Serialize, R: DeserializeOwned>(
        &self,
        url: &Url,
        body: &B,
    ) -> Result<R, Failure> {
        let mut request = self.http.post(url.clone()).json(body);
        if let Some(token) = &self.opts.bearer_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport_failure)?;
        if !status.is_success() {
            return Err(Failure {
                kind: FailureKind::Status(status.as_u16()),
                detail: error_detail(status, &bytes),
                retry_after,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Failure {
            kind: FailureKind::BadResponse,
            detail: format!("response body is not the expected JSON: {e}"),
            retry_after: None,
        })
    }
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Transport
    };
    // The source chain says what actually happened (refused, reset, …).
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Failure {
        kind,
        detail,
        retry_after: None,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by scoring servers and is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn error_detail(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("{} ({}): {}", status, e.error_type, e.error),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(200).collect();
            if text.trim().is_empty() {
                status.to_string()
            } else {
                format!("{status}: {}", text.trim())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_root_accepts_root_and_route_urls() {
        for (given, root) in [
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
            ("http://127.0.0.1:9000/get_reward", "http://127.0.0.1:9000/"),
            ("http://h:1/rm/score/", "http://h:1/rm/"),
            ("https://h/api", "https://h/api/"),
        ] {
            assert_eq!(endpoint_root(given).unwrap().as_str(), root, "{given}");
        }
        for bad in ["ftp://h/", "not a url", "http://h/get_reward?x=1"] {
            assert!(endpoint_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"error":"too long","error_type":"validation"}"#;
        let d = error_detail(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert!(d.contains("validation") && d.contains("too long"), "{d}");
        assert_eq!(
            error_detail(StatusCode::BAD_GATEWAY, b""),
            "502 Bad Gateway"
        );
    }
}
