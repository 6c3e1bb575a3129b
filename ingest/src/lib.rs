//! The ingest gateway: REST and WebSocket per PROTOCOL.md. It authenticates,
//! validates and checks membership, turns each action into an event on
//! `chat.events`, and pushes the deliveries of its inbox to its sockets.

mod actions;
pub mod auth;
pub mod error;
mod frames;
pub mod gateway;
mod http;
pub mod hub;
pub mod inbox;
mod rate;
mod search;
mod validate;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub use gateway::{Gateway, GatewayConfig, Limits};

/// The gateway's routes; the caller adds `/metrics` and serves them.
pub fn router(gw: Arc<Gateway>) -> Router {
    let body_limit = gw.config.limits.max_frame_bytes.max(64 * 1024);
    Router::new()
        .route("/v1/dev/token", post(http::dev_token))
        .route(
            "/v1/conversations",
            post(http::create_conversation).get(http::list_conversations),
        )
        .route("/v1/conversations/{cid}", get(http::get_conversation))
        .route(
            "/v1/conversations/{cid}/messages",
            post(http::post_message).get(http::history),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}",
            axum::routing::patch(http::edit_message).delete(http::delete_message),
        )
        .route(
            "/v1/conversations/{cid}/members/{uid}",
            delete(http::remove_member),
        )
        .route("/v1/search", get(search::search))
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .fallback(http::not_found)
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(gw)
}
