//! The sockets of this gateway node, by device. Each socket's delivery
//! state (what it sent of each conversation, what it holds while a fill
//! runs) is a [`Streams`]; frames are queued under its lock, so they leave
//! in the order their marks were taken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::delivery::handover::{Live, Plan, Settle, Streams};

/// Bytes of frames a socket may have queued behind a client that does not
/// read; past it the socket is closed with 1013 (the client resumes), so
/// memory per socket is bounded whatever the frames' size.
pub const MAX_QUEUED_BYTES: usize = 4 << 20;

/// How long a fill waits for a client to take its frames.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the socket's writer sends.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    Close(u16, &'static str),
}

pub struct Socket {
    pub id: u64,
    pub user_id: String,
    pub device_id: String,
    out: mpsc::Sender<Outbound>,
    /// Conversations whose first live event waits for a fill from the
    /// store; the socket's task does the fill.
    fills: mpsc::UnboundedSender<String>,
    /// Fired when the socket must close at once: a frame could not be
    /// queued, so going on would leave a hole.
    overflow: CancellationToken,
    /// Bytes queued and not yet written to the connection.
    queued: Arc<AtomicUsize>,
    streams: Mutex<Streams>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Socket {
    /// The socket, and the conversations its task must fill.
    pub fn new(
        user_id: String,
        device_id: String,
        out: mpsc::Sender<Outbound>,
    ) -> (Arc<Socket>, mpsc::UnboundedReceiver<String>) {
        let (fills, fill_rx) = mpsc::unbounded_channel();
        let socket = Arc::new(Socket {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user_id,
            device_id,
            out,
            fills,
            overflow: CancellationToken::new(),
            queued: Arc::default(),
            streams: Mutex::default(),
        });
        (socket, fill_rx)
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.user_id, self.device_id)
    }

    /// Queues a frame; a client too slow to take its frames is closed
    /// (it resumes when it reconnects) rather than buffered without bound.
    pub fn send(&self, text: impl Into<String>) -> bool {
        let text = text.into();
        let len = text.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.overflow.cancel();
            return false;
        }
        match self.out.try_send(Outbound::Text(text)) {
            Ok(()) => {
                metrics::counter!("chatflow_gateway_frames_out_total").increment(1);
                true
            }
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                if let mpsc::error::TrySendError::Full(_) = e {
                    // The close cannot be queued behind a full outbox: the
                    // socket's task closes it.
                    self.overflow.cancel();
                }
                false
            }
        }
    }

    /// Waits until `len` more bytes fit in the socket's budget, so that a
    /// fill from the store keeps pace with the client instead of
    /// overflowing it; false when the client took nothing for `ROOM_WAIT`.
    pub async fn room_for(&self, len: usize) -> bool {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        while self.queued.load(Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            if self.overflow.is_cancelled() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        true
    }

    /// The count of queued bytes the writer lowers as it writes.
    pub fn queued_bytes(&self) -> Arc<AtomicUsize> {
        self.queued.clone()
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.try_send(Outbound::Close(code, reason));
    }

    /// Fires when the socket fell behind and must close with 1013.
    pub fn overflowed(&self) -> &CancellationToken {
        &self.overflow
    }

    fn streams(&self) -> Option<MutexGuard<'_, Streams>> {
        self.streams.lock().ok()
    }

    /// A live event from the router: sent, held, or dropped as already
    /// sent (see `handover`).
    pub fn push_event(&self, conversation_id: &str, seq: i64, frame: &Arc<str>) {
        let Some(mut streams) = self.streams() else {
            return;
        };
        match streams.live(conversation_id, seq, frame) {
            Live::Send(frame) => {
                self.send(frame.as_ref());
            }
            Live::NeedsFill => {
                let _ = self.fills.send(conversation_id.to_owned());
            }
            Live::Held | Live::Duplicate => {}
            Live::Overflow => self.overflow.cancel(),
        }
    }

    /// Starts a fill of `conversation_id` after the client's `cursor`.
    pub fn begin_fill(&self, conversation_id: &str, cursor: i64) -> Plan {
        match self.streams() {
            Some(mut s) => s.begin_fill(conversation_id, cursor),
            None => Plan {
                from: cursor,
                backfill: None,
            },
        }
    }

    /// The highest seq sent of `conversation_id`.
    pub fn sent(&self, conversation_id: &str) -> i64 {
        self.streams().map_or(-1, |s| s.sent(conversation_id))
    }

    /// A message of a fill from the store, in seq order (out of order
    /// below the live events already sent when `backfill`).
    pub fn push_filled(&self, conversation_id: &str, seq: i64, frame: String, backfill: bool) {
        let Some(mut streams) = self.streams() else {
            return;
        };
        if backfill || streams.filled(conversation_id, seq) {
            self.send(frame);
        }
    }

    /// See [`Streams::covered`].
    pub fn covered(&self, conversation_id: &str, head: i64) {
        if let Some(mut s) = self.streams() {
            s.covered(conversation_id, head);
        }
    }

    /// See [`Streams::bridged`].
    pub fn bridged(&self, conversation_id: &str) {
        if let Some(mut s) = self.streams() {
            s.bridged(conversation_id);
        }
    }

    /// Goes live (sending what is held), or names the seq a further fill
    /// must reach first.
    pub fn settle(&self, conversation_id: &str) -> Option<i64> {
        let mut streams = self.streams()?;
        match streams.settle(conversation_id) {
            Settle::Live(frames) => {
                for frame in frames {
                    self.send(frame.as_ref());
                }
                None
            }
            Settle::FillBelow(seq) => Some(seq),
        }
    }

    /// The first resume is over (or never came): conversations it did not
    /// name go live.
    pub fn end_awaiting(&self) {
        if let Some(mut streams) = self.streams() {
            for frame in streams.end_awaiting() {
                self.send(frame.as_ref());
            }
        }
    }

    pub fn awaiting_resume(&self) -> bool {
        self.streams().is_some_and(|s| s.awaiting_resume())
    }
}

fn open_gauge(open: usize) {
    metrics::gauge!("chatflow_gateway_sockets_open").set(open as f64);
}

/// This node's sockets by `user/device`.
#[derive(Default)]
pub struct Hub {
    sockets: RwLock<HashMap<String, Arc<Socket>>>,
}

impl Hub {
    /// Registers a socket; an older socket of the same device is closed.
    pub fn register(&self, socket: Arc<Socket>) {
        let old = self.sockets.write().ok().and_then(|mut s| {
            let old = s.insert(socket.key(), socket);
            // Set under the lock: two registers racing would otherwise each
            // read a length and the older reading could be written last.
            open_gauge(s.len());
            old
        });
        if let Some(old) = old {
            old.close(4001, "replaced by a newer connection of this device");
        }
    }

    /// Removes the socket if it is still the device's current one; true if so.
    pub fn unregister(&self, socket: &Socket) -> bool {
        self.sockets.write().is_ok_and(|mut s| {
            let current = s.get(&socket.key()).is_some_and(|cur| cur.id == socket.id);
            if current {
                s.remove(&socket.key());
                open_gauge(s.len());
            }
            current
        })
    }

    pub fn get(&self, device_key: &str) -> Option<Arc<Socket>> {
        self.sockets.read().ok()?.get(device_key).cloned()
    }

    pub fn len(&self) -> usize {
        self.sockets.read().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
