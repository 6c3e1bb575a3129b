//! The WebSocket: `GET /v1/ws?device_id=` (PROTOCOL.md, WebSocket).

mod resume;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::actions::messages::Receipt;
use crate::actions::send::NewMessage;
use crate::api::extract::{ApiQuery, AppState};
use crate::auth::Claims;
use crate::delivery::hub::{Outbound, Socket};
use crate::error::ApiError;
use crate::frames;
use crate::gateway::Gateway;

use crate::validate;

/// Frames queued for one socket before it counts as too slow.
const OUTBOX: usize = 4096;
/// How long a closing socket waits for the client's close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
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
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Not a WebSocket handshake (RFC 6455 §4.2.1): the error JSON, with
    // the status axum chose (400, or 426 for an unsupported version).
    let ws = ws.map_err(|r| ApiError::new(r.status(), "invalid_upgrade", r.body_text()))?;
    let claims = gw.auth.from_request(&headers, q.token.as_deref())?;
    gw.require_ready()?;
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
        .on_upgrade(move |socket| {
            // Tracked, so that shutdown waits for each socket's last answer.
            let tracker = gw.sockets.clone();
            tracker.track_future(run(gw, claims, device, socket))
        })
        .into_response())
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Send {
        conversation_id: String,
        client_msg_id: String,
        /// May be empty when files are attached.
        #[serde(default)]
        body: String,
        reply_to: Option<i64>,
        #[serde(default)]
        mentions: Vec<String>,
        #[serde(default)]
        silent: bool,
        #[serde(default)]
        attachments: Vec<crate::uploads::AttachmentRef>,
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
    let (socket, mut fills) = Socket::new(claims.sub.clone(), device.clone(), tx);
    let overflow = socket.overflowed().clone();
    let queued = socket.queued_bytes();
    let writer = tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                biased;
                // Frames still queued are dropped: the client resumes.
                _ = overflow.cancelled() => Outbound::Close(1013, "too slow to keep up, resume later"),
                out = rx.recv() => match out {
                    Some(out) => out,
                    None => break,
                },
            };
            let result = match out {
                Outbound::Text(text) => {
                    let len = text.len();
                    let sent = sink.send(Message::Text(text.into())).await;
                    queued.fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
                    sent
                }
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

    let limits = &gw.config.limits;
    // Live events wait for the client's first `resume` (it says where each
    // conversation starts); a client that sends none goes live after this.
    let grace = tokio::time::sleep(limits.resume_grace);
    tokio::pin!(grace);
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let mut invalid = 0u32;
    loop {
        // A frame being handled is never interrupted: a send in flight at
        // shutdown still gets its answer before the close.
        let next = tokio::select! {
            biased;
            _ = socket.overflowed().cancelled() => break,
            _ = gw.draining.cancelled() => {
                socket.close(1001, "server shutting down");
                break;
            }
            Some(cid) = fills.recv() => {
                if let Err(e) = resume::hand_over(&gw, &socket, &cid, None).await {
                    resume::history_not_ready(&socket, &cid, &e);
                    break;
                }
                continue;
            }
            _ = &mut grace, if socket.awaiting_resume() => {
                socket.end_awaiting();
                continue;
            }
            _ = &mut idle => {
                socket.close(1000, "idle timeout");
                break;
            }
            next = stream.next() => next,
        };
        let message = match next {
            None => break,
            Some(Err(e)) => {
                let (code, reason) = close_for(e);
                socket.close(code, reason);
                break;
            }
            Some(Ok(m)) => m,
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + limits.idle_timeout);
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
                if !malformed {
                    // Well formed, only refused: the client speaks the
                    // protocol, the run of malformed frames is over.
                    invalid = 0;
                } else {
                    invalid += 1;
                    if invalid >= MAX_INVALID {
                        socket.close(1008, "too many invalid frames");
                        break;
                    }
                }
            }
        }
    }

    // A draining node resets all its devices at once (`publish_node`).
    let offline = (gw.hub.unregister(&socket) && !gw.draining.is_cancelled())
        .then(|| gw.device_presence(&claims.sub, &device, false));
    socket.close(1000, "bye");
    // Read on (discarding) until the client answers the close: closing with
    // its frames unread would reset the connection, and a reset can throw
    // away answers already on their way to it.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    // A client that does not read holds the writer in a send for ever: its
    // connection is dropped instead.
    let abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_WAIT, writer).await.is_err() {
        abort.abort();
        debug!(user = %claims.sub, device = %device, "the client does not read; connection dropped");
    }
    // The connection is released before the offline record is produced:
    // behind a busy broker that can take seconds, and ten thousand closing
    // sockets must not hold ten thousand descriptors for it. The record
    // keeps the time the socket went away.
    drop(stream);
    if let Some(record) = offline
        && let Err(e) = gw.publish_device_presence(&record).await
    {
        warn!(user = %claims.sub, device = %device, error = %e.message, "offline presence not published");
    }
    debug!(user = %claims.sub, device = %device, "socket closed");
}

/// The close a read error calls for (RFC 6455 §7.4.1): 1009 for a frame
/// over the size limit, 1007 for a text frame that is not UTF-8, 1002 for
/// any other breach of the protocol; a connection that broke gets 1000.
fn close_for(e: axum::Error) -> (u16, &'static str) {
    use tungstenite::Error;
    let inner = e.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(Error::Capacity(_)) => (1009, "frame too large"),
        Some(Error::Utf8(_)) => (1007, "text frame is not UTF-8"),
        Some(Error::Protocol(_)) => (1002, "protocol error"),
        _ => (1000, "bye"),
    }
}

type FrameError = (Option<String>, ApiError);

async fn handle(
    gw: &Arc<Gateway>,
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
            socket.send(crate::frames::Frame::Pong.text());
        }
        ClientFrame::Send {
            conversation_id,
            client_msg_id,
            body,
            reply_to,
            mentions,
            silent,
            attachments,
        } => {
            let new = NewMessage {
                conversation_id,
                client_msg_id,
                body,
                reply_to,
                mentions,
                silent,
                attachments,
            };
            let ack = gw
                .send_message(&claims.sub, &socket.device_id, new)
                .await
                .map_err(with_ref)?;
            socket.send(crate::frames::Frame::Ack(&ack).text());
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
        ClientFrame::Resume { cursors } => resume::resume(gw, socket, claims, cursors)
            .await
            .map_err(|e| (None, e))?,
    }
    Ok(())
}
