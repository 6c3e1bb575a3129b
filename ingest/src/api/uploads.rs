//! Attachments: `POST /v1/uploads` announces a file and answers where its
//! bytes go; `PUT`/`GET /v1/uploads/{id}/data` take and serve the bytes
//! behind the gateway's own signed URLs (a directory archive; S3 presigns
//! its own); `GET …/messages/{seq}/attachments/{id}` gives a member a link
//! to a file a message carries.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::extract::{ApiJson, ApiPath, ApiQuery, AppState, User};
use crate::error::ApiError;
use crate::uploads::{Uploads, Verb, disposition};
use crate::wire::{Attachment, AttachmentLink, NewUpload, UploadTicket, rfc3339};

fn uploads(gw: &AppState) -> Result<&Uploads, ApiError> {
    gw.uploads
        .as_deref()
        .ok_or_else(|| ApiError::not_found("this node takes no uploads (no object storage)"))
}

#[utoipa::path(post, path = "/v1/uploads", tag = "attachments", request_body = crate::wire::NewUpload, responses((status = 201, body = crate::wire::UploadTicket)))]
pub async fn announce(
    State(gw): State<AppState>,
    User(user): User,
    ApiJson(req): ApiJson<NewUpload>,
) -> Result<Response, ApiError> {
    let uploads = uploads(&gw)?;
    gw.check_rate(&user.sub)?;
    let announced = uploads
        .announce(&user.sub, &req.name, &req.content_type, req.size)
        .await?;
    let ticket = UploadTicket {
        upload_id: announced.upload_id,
        upload_url: announced.url,
        method: "PUT",
        expires_at: rfc3339(announced.expires_at),
        max_bytes: req.size,
    };
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

/// The query of a gateway-signed URL.
#[derive(Deserialize)]
pub struct Signed {
    expires: i64,
    signature: String,
}

/// The bytes of an upload, for the URL `POST /v1/uploads` answered with.
#[utoipa::path(put, path = "/v1/uploads/{id}/data", tag = "attachments", security(()), params(("id" = String, Path, description = "the upload's id"), ("expires" = i64, Query, description = "as in the URL given"), ("signature" = String, Query, description = "as in the URL given")), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file, with the Content-Type announced"), responses((status = 204, description = "stored")))]
pub async fn put_data(
    State(gw): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let uploads = uploads(&gw)?;
    uploads.check_signature(Verb::Put, &id, q.expires, &q.signature)?;
    let meta = uploads
        .meta(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no upload {id}")))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let limit = usize::try_from(meta.size).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(format!("more than the {} bytes announced", meta.size)))?;
    uploads.store(&id, &meta, content_type, bytes).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bytes of an attachment, for the URL
/// `GET …/attachments/{id}` answered with.
#[utoipa::path(get, path = "/v1/uploads/{id}/data", tag = "attachments", security(()), params(("id" = String, Path, description = "the upload's id"), ("expires" = i64, Query, description = "as in the URL given"), ("signature" = String, Query, description = "as in the URL given")), responses((status = 200, description = "the file, with its Content-Type", content_type = "application/octet-stream", body = Vec<u8>)))]
pub async fn get_data(
    State(gw): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<Signed>,
) -> Result<Response, ApiError> {
    let uploads = uploads(&gw)?;
    uploads.check_signature(Verb::Get, &id, q.expires, &q.signature)?;
    let (meta, bytes) = uploads
        .read(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no file {id}")))?;
    let header = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""));
    let mut response = Body::from(bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header(meta.content_type.clone()));
    h.insert(
        header::CONTENT_DISPOSITION,
        header(disposition(&meta.content_type, &meta.name)),
    );
    // The file is the client's, not a page of this origin's.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Ok(response)
}

#[utoipa::path(get, path = "/v1/conversations/{cid}/messages/{seq}/attachments/{id}", tag = "attachments", params(("cid" = String, Path, description = "conversation id"), ("seq" = i64, Path, description = "the message's seq"), ("id" = String, Path, description = "the attachment's id")), responses((status = 200, body = crate::wire::AttachmentLink)))]
pub async fn link(
    State(gw): State<AppState>,
    User(user): User,
    ApiPath((cid, seq, id)): ApiPath<(String, i64, String)>,
) -> Result<Json<AttachmentLink>, ApiError> {
    gw.require_member(&cid, &user.sub).await?;
    let uploads = uploads(&gw)?;
    gw.read_your_writes(&cid, false).await?;
    let mut message = gw.store.message(&cid, seq).await?;
    gw.open_messages(message.as_mut_slice()).await?;
    let attachment = message
        .and_then(|m| m.attachments.into_iter().find(|a| a.id == id))
        .ok_or_else(|| ApiError::not_found(format!("message {seq} has no attachment {id}")))?;
    let link = uploads.download_link(&attachment).await?;
    Ok(Json(AttachmentLink {
        conversation_id: cid,
        seq,
        attachment: Attachment::from(&attachment),
        url: link.url,
        expires_at: rfc3339(link.expires_at),
    }))
}
