//! The sockets of this gateway node, by device, and per-socket delivery
//! state: each device gets each conversation's events once, in seq order,
//! across the switch from `resume` to live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

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
    state: Mutex<DeliveryState>,
}

#[derive(Default)]
struct DeliveryState {
    /// conversation → highest seq sent to this socket
    sent: HashMap<String, i64>,
    /// conversations being resumed → live events held back until the fill
    /// from the store is done
    held: HashMap<String, Vec<(i64, Arc<str>)>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Socket {
    pub fn new(user_id: String, device_id: String, out: mpsc::Sender<Outbound>) -> Arc<Socket> {
        Arc::new(Socket {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            user_id,
            device_id,
            out,
            state: Mutex::default(),
        })
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.user_id, self.device_id)
    }

    /// Queues a frame; a client too slow to take its frames is closed
    /// (it resumes when it reconnects) rather than buffered without bound.
    pub fn send(&self, text: impl Into<String>) -> bool {
        match self.out.try_send(Outbound::Text(text.into())) {
            Ok(()) => {
                metrics::counter!("chatflow_gateway_frames_out_total").increment(1);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = self
                    .out
                    .try_send(Outbound::Close(1013, "too slow to keep up, resume later"));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.try_send(Outbound::Close(code, reason));
    }

    /// A live event: sent unless already sent, held while resuming.
    pub fn push_event(&self, conversation_id: &str, seq: i64, frame: &Arc<str>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(held) = state.held.get_mut(conversation_id) {
            held.push((seq, frame.clone()));
            return;
        }
        let last = state.sent.entry(conversation_id.to_owned()).or_insert(-1);
        if seq > *last {
            *last = seq;
            drop(state);
            self.send(frame.as_ref());
        }
    }

    /// Starts holding live events of `conversation_id`; returns the seq the
    /// socket already has (if any).
    pub fn begin_resume(&self, conversation_id: &str) -> Option<i64> {
        let mut state = self.state.lock().ok()?;
        state.held.entry(conversation_id.to_owned()).or_default();
        state.sent.get(conversation_id).copied()
    }

    /// A frame of the fill from the store, in seq order.
    pub fn push_filled(&self, conversation_id: &str, seq: i64, frame: String) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let last = state.sent.entry(conversation_id.to_owned()).or_insert(-1);
        if seq > *last {
            *last = seq;
            drop(state);
            self.send(frame);
        }
    }

    /// The fill is done: send what was held that the fill did not cover,
    /// then go live.
    pub fn end_resume(&self, conversation_id: &str) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut held = state.held.remove(conversation_id).unwrap_or_default();
        held.sort_by_key(|(seq, _)| *seq);
        let last = state.sent.entry(conversation_id.to_owned()).or_insert(-1);
        let mut to_send = Vec::new();
        for (seq, frame) in held {
            if seq > *last {
                *last = seq;
                to_send.push(frame);
            }
        }
        drop(state);
        for frame in to_send {
            self.send(frame.as_ref());
        }
    }
}

/// This node's sockets by `user/device`.
#[derive(Default)]
pub struct Hub {
    sockets: RwLock<HashMap<String, Arc<Socket>>>,
}

impl Hub {
    /// Registers a socket; an older socket of the same device is closed.
    pub fn register(&self, socket: Arc<Socket>) {
        let old = self
            .sockets
            .write()
            .ok()
            .and_then(|mut s| s.insert(socket.key(), socket));
        if let Some(old) = old {
            old.close(4001, "replaced by a newer connection of this device");
        }
        metrics::gauge!("chatflow_gateway_sockets_open").set(self.len() as f64);
    }

    /// Removes the socket if it is still the device's current one; true if so.
    pub fn unregister(&self, socket: &Socket) -> bool {
        let removed = self.sockets.write().is_ok_and(|mut s| {
            if s.get(&socket.key()).is_some_and(|cur| cur.id == socket.id) {
                s.remove(&socket.key());
                true
            } else {
                false
            }
        });
        metrics::gauge!("chatflow_gateway_sockets_open").set(self.len() as f64);
        removed
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

    /// Every socket, for shutdown.
    pub fn all(&self) -> Vec<Arc<Socket>> {
        self.sockets
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}
