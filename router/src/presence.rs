//! The router's side of presence: the view (`chat::presence`), kept from
//! `chat.presence` by `streams::follow::presence`, and resets of gateway
//! nodes that went silent.

use schemas::{Codec, now_millis};
use streams::{Producer, topics};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use chat::presence::*;

/// Resets, on `chat.presence`, every node that went silent while holding
/// devices, until `shutdown`. Each router does it; the resets are
/// idempotent.
pub async fn sweep(view: PresenceView, producer: Producer, shutdown: CancellationToken) {
    let codec = Codec::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        for node in view.silent_nodes(now_millis()) {
            info!(node, "gateway node silent: its devices go offline");
            let (key, record) = node_record(&node, false, now_millis());
            match codec.encode(&record) {
                Ok(bytes) => {
                    if let Err(e) = producer
                        .send(topics::PRESENCE, key.as_bytes(), &bytes, None)
                        .await
                    {
                        warn!(node, error = %e, "could not reset a silent node");
                    }
                }
                Err(e) => warn!(error = %e, "presence encode"),
            }
        }
    }
}
