//! `resume` and the fills from the store that hand a conversation over to
//! the live stream (the rules are in `handover`).

use std::collections::BTreeMap;
use std::sync::Arc;

use store::Page;
use tracing::{debug, warn};

use crate::auth::Claims;
use crate::delivery::hub::Socket;
use crate::error::ApiError;
use crate::frames;
use crate::gateway::Gateway;

/// Cursors one `resume` may name.
const MAX_CURSORS: usize = 10_000;

/// Sends each named conversation's events after its cursor from the store,
/// holding live events back meanwhile, then `resumed`. Conversations not
/// named resume from the device's stored cursor, if it has one; the rest
/// go live from the first event the router sends them.
pub async fn resume(
    gw: &Gateway,
    socket: &Arc<Socket>,
    claims: &Claims,
    mut cursors: BTreeMap<String, i64>,
) -> Result<(), ApiError> {
    if cursors.len() > MAX_CURSORS {
        return Err(ApiError::invalid(
            "invalid_frame",
            format!("at most {MAX_CURSORS} cursors"),
        ));
    }
    if let Some(device) = gw.store.device(&claims.sub, &socket.device_id).await? {
        for uc in gw.store.user_conversations(&claims.sub).await? {
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
        match hand_over(gw, socket, &cid, Some(cursor)).await {
            Ok(n) => resumed += n,
            Err(e) => {
                history_not_ready(socket, &cid, &e);
                return Ok(());
            }
        }
    }
    socket.end_awaiting();
    socket.send(crate::frames::Frame::Resumed { events: resumed }.text());
    Ok(())
}

/// A fill failed: the conversation stays held, since going live now would
/// leave a hole. The client hears why, and the socket closes so that it
/// reconnects and resumes.
pub fn history_not_ready(socket: &Socket, cid: &str, e: &ApiError) {
    warn!(conversation_id = %cid, error = %e.message, "history not ready: closing the socket");
    socket.send(frames::error(Some(cid), e));
    socket.close(1013, "history not ready, resume again");
}

/// Fills `cid` from the store (after `cursor`, when resuming) until the
/// live stream can take over without a gap; returns the events sent. An
/// error leaves the conversation held: the caller closes the socket, and
/// its client resumes again.
pub async fn hand_over(
    gw: &Gateway,
    socket: &Socket,
    cid: &str,
    cursor: Option<i64>,
) -> Result<usize, ApiError> {
    let mut sent = 0;
    if let Some(cursor) = cursor {
        let plan = socket.begin_fill(cid, cursor);
        debug!(conversation_id = cid, cursor, from = plan.from, backfill = ?plan.backfill, "resume fill");
        gw.read_your_writes(cid, false).await?;
        if let Some((after, below)) = plan.backfill {
            sent += fill(gw, socket, cid, after, Some(below), true).await?;
        }
        sent += fill(gw, socket, cid, plan.from, None, false).await?;
    }
    while let Some(first_live) = socket.settle(cid) {
        debug!(
            conversation_id = cid,
            first_live,
            sent = socket.sent(cid),
            "filling below the first live event"
        );
        gw.wait_applied(cid, first_live).await?;
        sent += fill(gw, socket, cid, socket.sent(cid), Some(first_live), false).await?;
        socket.bridged(cid);
    }
    Ok(sent)
}

/// Sends the stored messages after `after` (and below `below`); without a
/// bound, up to the store's head when the fill began, which it then counts
/// as sent (the messages carry every event up to it).
async fn fill(
    gw: &Gateway,
    socket: &Socket,
    cid: &str,
    mut after: i64,
    below: Option<i64>,
    backfill: bool,
) -> Result<usize, ApiError> {
    let head = match below {
        Some(_) => None,
        None => Some(gw.applied_seq(cid).await?),
    };
    let before = below.or(head.map(|h| h + 1));
    let mut sent = 0;
    loop {
        let mut page = gw
            .store
            .messages(
                cid,
                Page {
                    after: Some(after),
                    before,
                    limit: 200,
                },
            )
            .await?;
        gw.open_messages(&mut page.messages).await?;
        for m in &page.messages {
            let frame = frames::stored_message_event(m);
            if !socket.room_for(frame.len()).await {
                return Err(ApiError::unavailable(
                    "the socket",
                    "the client does not take its frames",
                ));
            }
            socket.push_filled(cid, m.seq, frame, backfill);
            after = m.seq;
            sent += 1;
        }
        if !page.has_more || page.messages.is_empty() {
            break;
        }
    }
    if let Some(head) = head {
        socket.covered(cid, head);
    }
    Ok(sent)
}
