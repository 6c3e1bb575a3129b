//! `GET /openapi.json`: the REST contract, generated with utoipa from the
//! handlers' annotations and the types they read and write
//! (`crate::wire`); schemathesis checks every answer against it
//! (`scripts/test`).

use axum::Json;
use axum::http::StatusCode;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::wire::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatflow",
        description = "The chatflow client API (REST). Live events, typing and presence \
                       travel on the WebSocket at /v1/ws; see docs/PROTOCOL.md."
    ),
    paths(
        crate::api::people::dev_token,
        crate::api::conversations::create_conversation,
        crate::api::conversations::list_conversations,
        crate::api::conversations::get_conversation,
        crate::api::conversations::update_conversation,
        crate::api::conversations::add_member,
        crate::api::conversations::remove_member,
        crate::api::conversations::change_role,
        crate::api::conversations::mute,
        crate::api::messages::post_message,
        crate::api::messages::history,
        crate::api::messages::edit_message,
        crate::api::messages::delete_message,
        crate::api::messages::add_reaction,
        crate::api::messages::remove_reaction,
        crate::api::messages::pin,
        crate::api::messages::unpin,
        crate::api::messages::mark_read,
        crate::api::messages::receipts,
        crate::api::search::search,
        crate::api::uploads::announce,
        crate::api::uploads::put_data,
        crate::api::uploads::get_data,
        crate::api::uploads::link,
        crate::api::admin::audit,
        crate::api::admin::analytics,
        crate::api::people::presence,
        crate::api::account::erase,
        crate::api::account::start_export,
        crate::api::account::export_state,
        crate::api::people::register_device,
        crate::api::people::remove_device,
        crate::api::ops::healthz,
        crate::api::ops::readyz,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The bearer scheme, and the error responses every operation may give.
struct Conventions;

const ERRORS: [(&str, &str); 9] = [
    ("400", "invalid input"),
    ("401", "no token, or a bad one"),
    ("403", "not allowed"),
    ("404", "unknown id"),
    ("409", "conflicts with the current state"),
    ("413", "too large"),
    ("415", "not JSON"),
    ("429", "rate limited (see Retry-After)"),
    ("503", "a dependency is unavailable; retry later"),
];

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in ERRORS {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert(response.into());
                }
            }
        }
    }
}

pub async fn document() -> (StatusCode, Json<utoipa::openapi::OpenApi>) {
    (StatusCode::OK, Json(ApiDoc::openapi()))
}
