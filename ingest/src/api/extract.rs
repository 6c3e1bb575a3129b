//! What REST handlers take from a request: the authenticated caller and
//! JSON, path and query extractors whose rejections use the protocol's
//! error shape.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::Claims;
use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::validate;

pub type AppState = Arc<Gateway>;

/// The authenticated caller.
pub struct User(pub Claims);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &AppState) -> Result<Self, Self::Rejection> {
        gw.auth.from_request(&parts.headers, None).map(User)
    }
}

/// How long a client has to send a request's body once its headers are in:
/// one that trickles it (slow-loris) gets 408 and loses the connection.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `Json` whose rejections use the protocol's error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Json::<T>::from_request(req, state));
        let Ok(read) = read.await else {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ));
        };
        match read {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::too_large("request body is too large"))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::invalid(
                "invalid_content_type",
                "send Content-Type: application/json",
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::invalid("invalid_json", e.body_text()))
            }
            Err(e) => Err(ApiError::invalid("invalid_body", e.body_text())),
        }
    }
}

/// `Path` and `Query` with the protocol's error shape.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| ApiError::invalid("invalid_path", e.body_text()))
    }
}

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| ApiError::invalid("invalid_query", e.body_text()))
    }
}

/// The device a REST call acts from: `X-Device-Id`, or `api`.
pub(crate) fn rest_device(parts: &axum::http::HeaderMap) -> String {
    parts
        .get("x-device-id")
        .and_then(|v| v.to_str().ok())
        .filter(|d| validate::id(d).is_ok())
        .unwrap_or("api")
        .to_owned()
}
