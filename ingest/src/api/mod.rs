//! The REST API (PROTOCOL.md, REST): one file per resource. Each change
//! answers with the seq of the event it produced (`event_seq`), or `null`
//! when there was nothing to change.

pub mod account;
pub mod admin;
pub mod conversations;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod ops;
pub mod people;
pub mod search;
pub mod uploads;
pub mod web;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::extract::AppState;
use crate::wire::Changed;

/// A write waits for a ready node before anything else is checked: a node
/// catching up would otherwise judge it against a store that lacks what the
/// log already has (a 403 or 404 where a retry in a moment succeeds).
pub(crate) async fn writes_need_ready(
    State(gw): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads
        && request.uri().path() != "/v1/dev/token"
        && let Err(e) = gw.require_ready()
    {
        return e.into_response();
    }
    next.run(request).await
}

pub(crate) fn done(cid: &str, event_seq: Option<i64>) -> Json<Changed> {
    Json(Changed {
        conversation_id: cid.to_owned(),
        event_seq,
    })
}
