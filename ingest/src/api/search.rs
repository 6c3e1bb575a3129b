//! `GET /v1/search`: full-text search over the messages of the
//! conversations the caller belongs to now.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::api::extract::{ApiQuery, AppState, User};
use crate::error::ApiError;
use crate::validate;
use crate::wire::rfc3339;
use crate::wire::{SearchHit, SearchResults};
use schemas::now_millis;

/// The longest query, in characters.
const MAX_QUERY_CHARS: usize = 256;
const MAX_LIMIT: usize = 100;
/// Deep pages cost the backend more than they help a person.
const MAX_OFFSET: usize = 1000;

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    conversation_id: Option<String>,
    sender_id: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch, inclusive.
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub(crate) fn time_param(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(millis) = value.parse::<i64>() {
        return Ok(Some(millis));
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_millis() as i64))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_time",
                format!("{name} is an RFC 3339 time or milliseconds since the epoch"),
            )
        })
}

#[utoipa::path(get, path = "/v1/search", tag = "search", params(("q" = String, Query, description = "words; \"a phrase\"; the last word matches as a prefix"), ("conversation_id" = Option<String>, Query), ("sender_id" = Option<String>, Query), ("from" = Option<String>, Query, description = "RFC 3339 or epoch milliseconds, inclusive"), ("to" = Option<String>, Query), ("limit" = Option<i64>, Query, description = "1 to 100, default 20"), ("offset" = Option<i64>, Query, description = "at most 1000")), responses((status = 200, body = crate::wire::SearchResults)))]
pub async fn search(
    State(gw): State<AppState>,
    User(user): User,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let text = p.q.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::invalid("invalid_query", "q is required"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(
            "invalid_query",
            format!("q is at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let limit = validate::limit(p.limit, 20, MAX_LIMIT)?;
    let offset = p.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::invalid(
            "invalid_offset",
            format!("offset is at most {MAX_OFFSET}"),
        ));
    }
    if let Some(sender) = &p.sender_id {
        validate::named_id("sender_id", sender)?;
    }
    let from = time_param("from", p.from.as_deref())?;
    let to = time_param("to", p.to.as_deref())?;
    let Some(index) = gw.search.clone() else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "search is not configured on this node",
        ));
    };
    let conversation_ids = match &p.conversation_id {
        Some(cid) => {
            gw.require_member(cid, &user.sub).await?;
            vec![cid.clone()]
        }
        None => {
            gw.user_memberships_settled(&user.sub).await?;
            gw.store
                .user_conversations(&user.sub)
                .await?
                .into_iter()
                .map(|c| c.conversation_id)
                .collect()
        }
    };
    let query = search::SearchQuery {
        text,
        conversation_ids,
        sender_id: p.sender_id,
        from,
        to,
        offset,
        limit,
        now: now_millis(),
    };
    let results = index.search(&query).await.map_err(|e| match e {
        search::SearchError::InvalidQuery(message) => ApiError::invalid("invalid_query", message),
        e => ApiError::unavailable("search", e),
    })?;
    let hits = results
        .hits
        .into_iter()
        .map(|h| SearchHit {
            sent_at: rfc3339(h.sent_at),
            conversation_id: h.conversation_id,
            seq: h.seq,
            message_id: h.message_id,
            sender_id: h.sender_id,
            snippet: h.snippet,
            score: h.score,
        })
        .collect();
    Ok(Json(SearchResults {
        hits,
        has_more: results.has_more,
        next_offset: results.has_more.then_some(offset + limit),
    }))
}
