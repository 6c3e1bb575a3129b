//! The REST API (PROTOCOL.md, REST): one file per resource. Each change
//! answers with the seq of the event it produced (`event_seq`), or `null`
//! when there was nothing to change.

pub mod conversations;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod ops;
pub mod people;
pub mod search;
pub mod web;

use axum::Json;

use crate::wire::Changed;

pub(crate) fn done(cid: &str, event_seq: Option<i64>) -> Json<Changed> {
    Json(Changed {
        conversation_id: cid.to_owned(),
        event_seq,
    })
}
