//! The WebSocket: `GET /v1/ws?device_id=` (PROTOCOL.md, WebSocket).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use store::Page;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::Claims;
use crate::error::ApiError;
use crate::frames;
use crate::gateway::{Gateway, NewMessage};
use crate::http::{ApiQuery, AppState};
use crate::hub::{Outbound, Socket};
use crate::messages::Receipt;
use crate::validate;

/// Frames queued for one socket before it counts as too slow.
const OUTBOX: usize = 4096;
/// Invalid frames in a row before the socket is closed with 1008.
const MAX_INVALID: u32 = 5;
/// The transport refuses frames past this; the protocol limit (smaller) is
/// answered with an `error` frame.
const HARD_FRAME_LIMIT: usize = 1 << 20;

#[derive(Deserialize)]
pub struct WsQuery {
    device_id: Option<String>,
    token: Option<String>,
}

pub async fn upgrade(
    State(gw): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let claims = gw.auth.from_request(&headers, q.token.as_deref())?;
    let device = q
        .device_id
        .ok_or_else(|| ApiError::invalid("invalid_device", "device_id is required"))?;
    validate::named_id("device_id", &device)?;
    let limit = HARD_FRAME_LIMIT.max(gw.config.limits.max_frame_bytes + 1);
    Ok(ws
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite reserves its read buffer up front (128 KiB by default,
        // which made an idle socket cost ~140 KiB); chat frames are small,
        // and the buffer still grows for a large one.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| run(gw, claims, device, socket))
        .into_response())
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Send {
        conversation_id: String,
        client_msg_id: String,
        body: String,
        reply_to: Option<i64>,
        #[serde(default)]
        mentions: Vec<String>,
    },
    Typing {
        conversation_id: String,
    },
    Read {
        conversation_id: String,
        seq: i64,
    },
    Delivered {
        conversation_id: String,
        seq: i64,
    },
    Resume {
        #[serde(default)]
        cursors: BTreeMap<String, i64>,
    },
    Ping,
}

/// Bytes reserved to read a socket's frames.
const READ_BUFFER: usize = 4 * 1024;

const KNOWN: [&str; 6] = ["send", "typing", "read", "delivered", "resume", "ping"];

async fn run(gw: Arc<Gateway>, claims: Claims, device: String, ws: WebSocket) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOX);
    let socket = Socket::new(claims.sub.clone(), device.clone(), tx);
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let result = match out {
                Outbound::Text(text) => sink.send(Message::Text(text.into())).await,
                Outbound::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    gw.hub.register(socket.clone());
    if let Err(e) = gw.publish_presence(&claims.sub, &device, true).await {
        socket.send(frames::error(None, &e));
        socket.close(1011, "presence unavailable");
    }
    info!(user = %claims.sub, device = %device, "socket open");

    let mut invalid = 0u32;
    loop {
        let next = tokio::time::timeout(gw.config.limits.idle_timeout, stream.next()).await;
        let message = match next {
            Err(_) => {
                socket.close(1000, "idle timeout");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        metrics::counter!("chatflow_gateway_frames_in_total").increment(1);
        let text = match message {
            Message::Text(t) => t,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) => {
                invalid += 1;
                socket.send(frames::error(
                    None,
                    &ApiError::invalid("binary_frame", "frames are JSON text"),
                ));
                if invalid >= MAX_INVALID {
                    socket.close(1008, "too many invalid frames");
                    break;
                }
                continue;
            }
        };
        match handle(&gw, &socket, &claims, text.as_str()).await {
            Ok(()) => invalid = 0,
            Err((reference, e)) => {
                let malformed = matches!(
                    e.code,
                    "invalid_json" | "invalid_frame" | "unknown_type" | "too_large"
                );
                socket.send(frames::error(reference.as_deref(), &e));
                if malformed {
                    invalid += 1;
                    if invalid >= MAX_INVALID {
                        socket.close(1008, "too many invalid frames");
                        break;
                    }
                }
            }
        }
    }

    if gw.hub.unregister(&socket)
        && let Err(e) = gw.publish_presence(&claims.sub, &device, false).await
    {
        warn!(user = %claims.sub, device = %device, error = %e.message, "offline presence not published");
    }
    socket.close(1000, "bye");
    let _ = writer.await;
    debug!(user = %claims.sub, device = %device, "socket closed");
}

type FrameError = (Option<String>, ApiError);

async fn handle(
    gw: &Gateway,
    socket: &Arc<Socket>,
    claims: &Claims,
    text: &str,
) -> Result<(), FrameError> {
    if text.len() > gw.config.limits.max_frame_bytes {
        return Err((
            None,
            ApiError::too_large(format!(
                "frame is over {} bytes",
                gw.config.limits.max_frame_bytes
            )),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| (None, ApiError::invalid("invalid_json", e.to_string())))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !KNOWN.contains(&kind.as_str()) {
        return Err((
            None,
            ApiError::invalid("unknown_type", format!("unknown frame type {kind:?}")),
        ));
    }
    let reference = value
        .get("client_msg_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let frame: ClientFrame = serde_json::from_value(value).map_err(|e| {
        (
            reference.clone(),
            ApiError::invalid("invalid_frame", format!("{kind}: {e}")),
        )
    })?;
    let with_ref = |e: ApiError| (reference.clone(), e);
    match frame {
        ClientFrame::Ping => {
            socket.send(json!({"type": "pong"}).to_string());
        }
        ClientFrame::Send {
            conversation_id,
            client_msg_id,
            body,
            reply_to,
            mentions,
        } => {
            let new = NewMessage {
                conversation_id,
                client_msg_id,
                body,
                reply_to,
                mentions,
            };
            let ack = gw
                .send_message(&claims.sub, &socket.device_id, new)
                .await
                .map_err(with_ref)?;
            socket.send(
                json!({
                    "type": "ack",
                    "client_msg_id": ack.client_msg_id,
                    "seq": ack.seq,
                    "message_id": ack.message_id,
                    "conversation_id": ack.conversation_id,
                    "sent_at": ack.sent_at,
                })
                .to_string(),
            );
        }
        ClientFrame::Read {
            conversation_id,
            seq,
        } => {
            gw.receipt(
                claims,
                &socket.device_id,
                &conversation_id,
                seq,
                Receipt::Read,
            )
            .await
            .map_err(with_ref)?;
        }
        ClientFrame::Delivered {
            conversation_id,
            seq,
        } => {
            let kind = Receipt::Delivered;
            gw.receipt(claims, &socket.device_id, &conversation_id, seq, kind)
                .await
                .map_err(with_ref)?;
        }
        ClientFrame::Typing { conversation_id } => {
            gw.typing(&conversation_id, &claims.sub, &socket.device_id)
                .await
                .map_err(with_ref)?;
        }
        ClientFrame::Resume { cursors } => resume(gw, socket, claims, cursors).await?,
    }
    Ok(())
}

/// Sends each named conversation's events after its cursor from the store,
/// holding live events back meanwhile, then `resumed`. Conversations not
/// named resume from the device's stored cursor, if it has one.
async fn resume(
    gw: &Gateway,
    socket: &Arc<Socket>,
    claims: &Claims,
    mut cursors: BTreeMap<String, i64>,
) -> Result<(), FrameError> {
    if cursors.len() > 10_000 {
        return Err((
            None,
            ApiError::invalid("invalid_frame", "at most 10000 cursors"),
        ));
    }
    let stored = gw
        .store
        .device(&claims.sub, &socket.device_id)
        .await
        .map_err(|e| (None, e.into()))?;
    if let Some(device) = stored {
        let mine = gw
            .store
            .user_conversations(&claims.sub)
            .await
            .map_err(|e| (None, e.into()))?;
        for uc in mine {
            if let Some(seq) = device.cursors.get(&uc.conversation_id) {
                cursors.entry(uc.conversation_id).or_insert(*seq);
            }
        }
    }
    let mut resumed = 0usize;
    for (cid, cursor) in cursors {
        if let Err(e) = gw.require_member(&cid, &claims.sub).await {
            socket.send(frames::error(Some(&cid), &e));
            continue;
        }
        let already = socket.begin_resume(&cid);
        let result = fill(gw, socket, &cid, cursor.max(already.unwrap_or(-1))).await;
        socket.end_resume(&cid);
        match result {
            Ok(n) => resumed += n,
            Err(e) => {
                socket.send(frames::error(Some(&cid), &e));
            }
        }
    }
    socket.send(json!({"type": "resumed", "events": resumed}).to_string());
    Ok(())
}

async fn fill(gw: &Gateway, socket: &Socket, cid: &str, mut after: i64) -> Result<usize, ApiError> {
    gw.read_your_writes(cid, false).await?;
    let mut sent = 0;
    loop {
        let page = gw
            .store
            .messages(
                cid,
                Page {
                    after: Some(after),
                    before: None,
                    limit: 200,
                },
            )
            .await?;
        for m in &page.messages {
            socket.push_filled(cid, m.seq, frames::stored_message_event(m));
            after = m.seq;
            sent += 1;
        }
        if !page.has_more {
            return Ok(sent);
        }
    }
}
