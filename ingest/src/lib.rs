//! The ingest gateway: REST and WebSocket per PROTOCOL.md. It authenticates,
//! validates and checks membership, turns each action into an event on
//! `chat.events`, and pushes the deliveries of its inbox to its sockets.

pub mod auth;
mod conversations;
pub mod error;
mod frames;
pub mod gateway;
mod handover;
mod http;
mod http_actions;
pub mod hub;
pub mod inbox;
mod members;
mod messages;
pub mod openapi;
pub mod people;
mod rate;
mod resume;
mod search;
mod server;
mod service;
mod validate;
mod web;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};

pub use gateway::{Gateway, GatewayConfig, Limits};
pub use server::serve;
pub use service::{IngestArgs, Service};

/// The gateway's routes; the caller adds `/metrics` and serves them.
pub fn router(gw: Arc<Gateway>) -> Router {
    let body_limit = gw.config.limits.max_frame_bytes.max(64 * 1024);
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/app.css", get(web::style))
        .route("/v1/dev/token", post(http::dev_token))
        .route(
            "/v1/conversations",
            post(http::create_conversation).get(http::list_conversations),
        )
        .route(
            "/v1/conversations/{cid}",
            get(http::get_conversation).patch(http_actions::update_conversation),
        )
        .route(
            "/v1/conversations/{cid}/members",
            post(http_actions::add_member),
        )
        .route(
            "/v1/conversations/{cid}/members/{uid}/role",
            put(http_actions::change_role),
        )
        .route("/v1/conversations/{cid}/mute", put(http_actions::mute))
        .route(
            "/v1/conversations/{cid}/read",
            post(http_actions::mark_read),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}",
            put(http_actions::add_reaction).delete(http_actions::remove_reaction),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/receipts",
            get(http_actions::receipts),
        )
        .route("/v1/users/{uid}/presence", get(http_actions::presence))
        .route("/v1/devices", post(http_actions::register_device))
        .route(
            "/v1/devices/{device_id}",
            delete(http_actions::remove_device),
        )
        .route(
            "/v1/conversations/{cid}/messages",
            post(http::post_message).get(http::history),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}",
            patch(http_actions::edit_message).delete(http_actions::delete_message),
        )
        .route(
            "/v1/conversations/{cid}/members/{uid}",
            delete(http_actions::remove_member),
        )
        .route("/v1/search", get(search::search))
        .route("/v1/ws", get(ws::upgrade))
        .route("/openapi.json", get(openapi::document))
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
