//! The one error type of the worker and the router, and the one place it becomes an HTTP status
//! (text-embeddings-inference's pattern): every failure is a real status code with a JSON body
//! `{"error", "error_type"}` — never a 200 carrying an error, as the reference router does.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use wildreward_types::wire::ErrorBody;

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    /// The body is not JSON, or not the request's shape (400).
    #[error("{0}")]
    Malformed(String),
    /// A bearer token is required and was missing or wrong (401).
    #[error("missing or wrong bearer token (send `Authorization: Bearer <key>`)")]
    Unauthorized,
    /// No such route (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is over the payload limit (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The client sent its body too slowly (408).
    #[error("{0}")]
    SlowClient(String),
    /// More inputs in one request than allowed (413).
    #[error("{0}")]
    TooManyInputs(String),
    /// A well-formed request with values that cannot be scored: an empty list or text, a text over
    /// the length limit when truncation is off, mismatched `prompts` (422).
    #[error("{0}")]
    Validation(String),
    /// More in-flight work than allowed; the client should come back after `retry_after_s` (429).
    #[error("{message}")]
    Overloaded {
        /// What is full.
        message: String,
        /// Seconds for the `Retry-After` header.
        retry_after_s: u64,
    },
    /// The model failed on a batch (500; the router retries it on another worker).
    #[error("{0}")]
    Backend(String),
    /// The model produced a NaN or infinite score for a text (500, never a `null` in a 200; the
    /// router does not retry it: the same model gives the same number everywhere).
    #[error("{0}")]
    NonFinite(String),
    /// This server cannot score now: the model is loading, warming up or failed (503).
    #[error("{0}")]
    Unhealthy(String),
    /// The router has no healthy worker left for this request (503).
    #[error("{0}")]
    NoHealthyWorker(String),
    /// The request ran past its deadline (504).
    #[error("{0}")]
    Timeout(String),
    /// A worker refused the request as the client's fault (a 4xx); the router passes it on as is.
    #[error("{}", body.error)]
    Upstream {
        /// The worker's status.
        status: u16,
        /// The worker's error body.
        body: ErrorBody,
    },
    /// A bug: a handler panicked (500).
    #[error("{0}")]
    Internal(String),
}

/// The `error_type` of a non-finite score (the router passes these on instead of retrying).
pub const NON_FINITE: &str = "non_finite";

/// The `error_type` of a response, kept as a response extension so the metrics layer can count
/// failures by kind without parsing bodies.
#[derive(Debug, Clone)]
pub struct ErrorType(pub String);

impl ServeError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::Malformed(_) => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::SlowClient(_) => StatusCode::REQUEST_TIMEOUT,
            ServeError::PayloadTooLarge(_) | ServeError::TooManyInputs(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ServeError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServeError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Backend(_) | ServeError::NonFinite(_) | ServeError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ServeError::Unhealthy(_) | ServeError::NoHealthyWorker(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ServeError::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    /// The stable machine-readable kind written as `error_type`.
    pub fn error_type(&self) -> &str {
        match self {
            ServeError::Malformed(_) => "malformed",
            ServeError::Unauthorized => "unauthorized",
            ServeError::NotFound(_) => "not_found",
            ServeError::SlowClient(_) => "slow_client",
            ServeError::PayloadTooLarge(_) => "payload_too_large",
            ServeError::TooManyInputs(_) => "too_many_inputs",
            ServeError::Validation(_) => "validation",
            ServeError::Overloaded { .. } => "overloaded",
            ServeError::Backend(_) => "backend",
            ServeError::NonFinite(_) => NON_FINITE,
            ServeError::Unhealthy(_) => "unhealthy",
            ServeError::NoHealthyWorker(_) => "no_healthy_worker",
            ServeError::Timeout(_) => "timeout",
            ServeError::Upstream { body, .. } => &body.error_type,
            ServeError::Internal(_) => "internal",
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        match self {
            ServeError::Upstream { body, .. } => body.clone(),
            other => ErrorBody {
                error: other.to_string(),
                error_type: other.error_type().to_string(),
            },
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            ServeError::Overloaded { retry_after_s, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ServeError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
            .extensions_mut()
            .insert(ErrorType(self.error_type().to_string()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_a_real_status_with_a_json_body() {
        let errors = [
            ServeError::Malformed("x".into()),
            ServeError::Unauthorized,
            ServeError::NotFound("x".into()),
            ServeError::SlowClient("x".into()),
            ServeError::PayloadTooLarge("x".into()),
            ServeError::TooManyInputs("x".into()),
            ServeError::Validation("x".into()),
            ServeError::Overloaded {
                message: "x".into(),
                retry_after_s: 2,
            },
            ServeError::Backend("x".into()),
            ServeError::NonFinite("x".into()),
            ServeError::Unhealthy("x".into()),
            ServeError::NoHealthyWorker("x".into()),
            ServeError::Timeout("x".into()),
            ServeError::Internal("x".into()),
        ];
        for e in errors {
            let status = e.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{e:?}"
            );
            let r = e.clone().into_response();
            assert_eq!(r.status(), status);
            assert_eq!(
                r.extensions().get::<ErrorType>().map(|t| t.0.as_str()),
                Some(e.error_type())
            );
        }
        let r = ServeError::Overloaded {
            message: "full".into(),
            retry_after_s: 2,
        }
        .into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn upstream_errors_keep_the_workers_status_and_kind() {
        let e = ServeError::Upstream {
            status: 422,
            body: ErrorBody {
                error: "query[3] is empty".into(),
                error_type: "validation".into(),
            },
        };
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.error_type(), "validation");
        assert_eq!(e.to_string(), "query[3] is empty");
    }
}
