//! The one error shape of PROTOCOL.md: `{"error":{"code","message"}}` with a
//! fitting status. Internals are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A rule of the chat domain said no: the one place it becomes an answer.
impl From<chat::Denied> for ApiError {
    fn from(denied: chat::Denied) -> Self {
        match denied {
            chat::Denied::Forbidden(message) => Self::forbidden(message),
            chat::Denied::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, code, message)
            }
            chat::Denied::Invalid { code, message } => Self::invalid(code, message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests, slow down",
            )
        }
    }

    /// A dependency (broker, store) failed; the detail goes to the log only.
    pub fn unavailable(context: &str, detail: impl std::fmt::Display) -> Self {
        tracing::warn!(context, error = %detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{context} is unavailable, retry later"),
        )
    }

    pub fn body(&self) -> crate::wire::ErrorBody {
        crate::wire::ErrorBody {
            error: crate::wire::ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        ApiError::unavailable("the message store", e)
    }
}

impl From<streams::KafkaError> for ApiError {
    fn from(e: streams::KafkaError) -> Self {
        ApiError::unavailable("the event log", e)
    }
}
