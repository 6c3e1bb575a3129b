//! For global admins: `GET /v1/admin/audit`, the audit log of
//! administrative actions, and `GET /v1/admin/analytics`, active users and
//! messages per day. Both are read models of `chat.events` (the persister
//! writes them, `chatflow replay` rebuilds them), so an event counts once
//! the store has applied it.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::api::extract::{ApiQuery, AppState, User};
use crate::api::search::time_param;
use crate::error::ApiError;
use crate::validate;
use crate::wire::{AnalyticsDay, AnalyticsReport, AuditEntry, AuditPage, TopConversation, rfc3339};
use schemas::now_millis;
use store::DAY_MS;

const MAX_LIMIT: usize = 200;
/// The widest range one query reads (one store read per day).
const MAX_DAYS: i64 = 366;
/// The range when `from` is not given.
const DEFAULT_DAYS: i64 = 30;

#[derive(Deserialize)]
pub struct AuditParams {
    actor: Option<String>,
    action: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch, inclusive.
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(("actor" = Option<String>, Query, description = "only this user's actions"), ("action" = Option<String>, Query, description = "only this action (an event kind)"), ("from" = Option<String>, Query, description = "RFC 3339 or epoch milliseconds, inclusive; default 30 days before `to`"), ("to" = Option<String>, Query, description = "inclusive; default now; at most 366 days after `from`"), ("after" = Option<String>, Query, description = "next_after of the previous page"), ("limit" = Option<i64>, Query, description = "1 to 200, default 50")), responses((status = 200, body = crate::wire::AuditPage)))]
pub async fn audit(
    State(gw): State<AppState>,
    User(user): User,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    require_admin(&user, "the audit log")?;
    let limit = validate::limit(p.limit, 50, MAX_LIMIT)?;
    if let Some(actor) = &p.actor {
        validate::named_id("actor", actor)?;
    }
    if let Some(action) = &p.action {
        validate::named_id("action", action)?;
    }
    let after = p.after.as_deref().map(cursor_from).transpose()?;
    let (from, to) = range(p.from.as_deref(), p.to.as_deref())?;
    let page = gw
        .store
        .audit(&store::AuditQuery {
            from,
            to,
            actor: p.actor,
            action: p.action,
            after,
            limit,
        })
        .await?;
    Ok(Json(AuditPage {
        has_more: page.next.is_some(),
        next_after: page.next.as_deref().map(cursor_to),
        entries: page
            .entries
            .into_iter()
            .map(|e| AuditEntry {
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                conversation_id: e.conversation_id,
                seq: e.seq,
                target: e.target,
                detail: e.detail,
                global_admin: e.global_admin,
            })
            .collect(),
    }))
}

/// A page cursor as the API shows it: the store's, in hex, so that it
/// travels in a query string as it is.
fn cursor_to(cursor: &str) -> String {
    cursor.bytes().map(|b| format!("{b:02x}")).collect()
}

fn cursor_from(hex: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid(
            "invalid_cursor",
            "after is the next_after of a previous page",
        )
    };
    if hex.len() > 1024 || !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn require_admin(user: &crate::auth::Claims, what: &str) -> Result<(), ApiError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("{what} is for global admins")))
    }
}

/// `from`..=`to` in ms: default the 30 days up to now, at most 366 days.
fn range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let to = time_param("to", to)?.unwrap_or_else(now_millis);
    let from =
        time_param("from", from)?.unwrap_or_else(|| to.saturating_sub(DEFAULT_DAYS * DAY_MS));
    if from > to || to.saturating_sub(from) > MAX_DAYS * DAY_MS {
        return Err(ApiError::invalid(
            "invalid_range",
            format!("from is at or before to, and at most {MAX_DAYS} days before it"),
        ));
    }
    Ok((from, to))
}

#[derive(Deserialize)]
pub struct AnalyticsParams {
    from: Option<String>,
    to: Option<String>,
}

/// The busiest conversations listed.
const TOP: usize = 10;

#[utoipa::path(get, path = "/v1/admin/analytics", tag = "admin", params(("from" = Option<String>, Query, description = "RFC 3339 or epoch milliseconds; its day is the first counted; default 30 days before `to`"), ("to" = Option<String>, Query, description = "its day is the last counted; default now; at most 366 days after `from`")), responses((status = 200, body = crate::wire::AnalyticsReport)))]
pub async fn analytics(
    State(gw): State<AppState>,
    User(user): User,
    ApiQuery(p): ApiQuery<AnalyticsParams>,
) -> Result<Json<AnalyticsReport>, ApiError> {
    require_admin(&user, "analytics")?;
    let (from, to) = range(p.from.as_deref(), p.to.as_deref())?;
    let (first, last) = (store::day_of(from), store::day_of(to));
    let figures = gw.store.analytics(first, last, TOP).await?;
    let date = |day: i64| rfc3339(day * DAY_MS)[..10].to_owned();
    Ok(Json(AnalyticsReport {
        from: date(first),
        to: date(last),
        days: figures
            .days
            .into_iter()
            .map(|d| AnalyticsDay {
                date: date(d.day),
                active_users: d.active_users,
                messages: d.messages,
            })
            .collect(),
        active_users: figures.active_users,
        top_conversations: figures
            .top_conversations
            .into_iter()
            .map(|c| TopConversation {
                conversation_id: c.conversation_id,
                kind: c.kind,
                messages: c.messages,
            })
            .collect(),
    }))
}
