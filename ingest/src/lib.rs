//! The ingest gateway: REST and WebSocket per PROTOCOL.md. It authenticates,
//! validates and checks membership, turns each action into an event on
//! `chat.events`, and pushes the deliveries of its inbox to its sockets.

mod actions;
mod api;
pub mod auth;
mod delivery;
pub mod error;
mod frames;
pub mod gateway;
mod rate;
mod sends;
mod server;
mod service;
pub mod uploads;
mod validate;
mod wire;
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
        .route("/", get(api::web::index))
        .route("/app.js", get(api::web::script))
        .route("/app.css", get(api::web::style))
        .route("/v1/dev/token", post(api::people::dev_token))
        .route(
            "/v1/conversations",
            post(api::conversations::create_conversation)
                .get(api::conversations::list_conversations),
        )
        .route(
            "/v1/conversations/{cid}",
            get(api::conversations::get_conversation)
                .patch(api::conversations::update_conversation),
        )
        .route(
            "/v1/conversations/{cid}/members",
            post(api::conversations::add_member),
        )
        .route(
            "/v1/conversations/{cid}/members/{uid}/role",
            put(api::conversations::change_role),
        )
        .route(
            "/v1/conversations/{cid}/mute",
            put(api::conversations::mute),
        )
        .route(
            "/v1/conversations/{cid}/read",
            post(api::messages::mark_read),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/reactions/{emoji}",
            put(api::messages::add_reaction).delete(api::messages::remove_reaction),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/pin",
            put(api::messages::pin).delete(api::messages::unpin),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/receipts",
            get(api::messages::receipts),
        )
        .route("/v1/users/{uid}/presence", get(api::people::presence))
        .route("/v1/users/{uid}", delete(api::account::erase))
        .route("/v1/users/{uid}/export", post(api::account::start_export))
        .route(
            "/v1/users/{uid}/exports/{export_id}",
            get(api::account::export_state),
        )
        .route("/v1/devices", post(api::people::register_device))
        .route(
            "/v1/devices/{device_id}",
            delete(api::people::remove_device),
        )
        .route(
            "/v1/conversations/{cid}/messages",
            post(api::messages::post_message).get(api::messages::history),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}",
            patch(api::messages::edit_message).delete(api::messages::delete_message),
        )
        .route(
            "/v1/conversations/{cid}/members/{uid}",
            delete(api::conversations::remove_member),
        )
        .route("/v1/uploads", post(api::uploads::announce))
        .route(
            "/v1/uploads/{id}/data",
            // The body is read with the upload's own limit.
            put(api::uploads::put_data)
                .layer(DefaultBodyLimit::disable())
                .get(api::uploads::get_data),
        )
        .route(
            "/v1/conversations/{cid}/messages/{seq}/attachments/{id}",
            get(api::uploads::link),
        )
        .route("/v1/search", get(api::search::search))
        .route("/v1/admin/audit", get(api::admin::audit))
        .route("/v1/admin/analytics", get(api::admin::analytics))
        .route("/v1/ws", get(ws::upgrade))
        .route("/openapi.json", get(api::openapi::document))
        .route("/healthz", get(api::ops::healthz))
        .route("/readyz", get(api::ops::readyz))
        .fallback(api::ops::not_found)
        .method_not_allowed_fallback(api::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            api::writes_need_ready,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(gw)
}
