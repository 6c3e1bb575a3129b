//! This node's `chat.inbox.<node>`: deliveries the router addressed to
//! devices connected here, pushed to their sockets.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::Message;
use schemas::{ChatEvent, Codec, Delivery, DevicePresence, SchemaId, Typing};
use streams::follow::{Start, follow};
use streams::{KafkaConfig, KafkaError, topics};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::delivery::hub::Hub;
use crate::frames::{self, TYPING_SHOWN};

/// Reads the inbox from its end (a restarted node has no sockets that
/// could want older deliveries: clients resume from the store).
pub fn start(
    hub: Arc<Hub>,
    vault: Option<Arc<vault::Vault>>,
    node_id: &str,
    config: &KafkaConfig,
    fetch_wait: Duration,
    shutdown: CancellationToken,
) -> Result<(std::thread::JoinHandle<()>, oneshot::Receiver<()>), KafkaError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let topic = topics::inbox(node_id);
    let codec = Codec::new();
    let handle = follow(
        config,
        &topic,
        Start::End,
        fetch_wait,
        ready_tx,
        shutdown,
        move |m| {
            let Some(bytes) = m.payload() else { return };
            match codec.decode::<Delivery>(bytes) {
                Ok(delivery) => deliver(&hub, &codec, vault.as_ref(), &delivery),
                Err(e) => warn!(offset = m.offset(), error = %e, "undecodable delivery skipped"),
            }
        },
    )?;
    Ok((handle, ready_rx))
}

/// Pushes one delivery to the sockets it names that are connected here:
/// an event (in seq order, through each socket's resume logic), or a typing
/// or presence signal (as it comes).
pub fn deliver(hub: &Hub, codec: &Codec, vault: Option<&Arc<vault::Vault>>, delivery: &Delivery) {
    let signal = match codec.record_of(&delivery.event) {
        Some(SchemaId::Typing) => codec
            .decode::<Typing>(&delivery.event)
            .ok()
            .map(|t| frames::typing(&t, TYPING_SHOWN)),
        Some(SchemaId::DevicePresence) => codec
            .decode::<DevicePresence>(&delivery.event)
            .ok()
            .map(|p| frames::presence(&p)),
        _ => None,
    };
    if let Some(frame) = signal {
        for device in &delivery.devices {
            if let Some(socket) = hub.get(device) {
                socket.send(frame.clone());
            }
        }
        return;
    }
    let mut event: ChatEvent = match codec.decode(&delivery.event) {
        Ok(e) => e,
        Err(e) => {
            warn!(conversation_id = %delivery.conversation_id, seq = delivery.seq, error = %e, "undecodable event in delivery");
            return;
        }
    };
    // Opened here, on the way to the sockets: what the router and the
    // inbox topic carry stays sealed.
    if let Some(vault) = vault {
        vault.open_event_now(&mut event);
    }
    let frame: Arc<str> = frames::event(&event, delivery.seq).into();
    for device in &delivery.devices {
        if let Some(socket) = hub.get(device) {
            socket.push_event(&delivery.conversation_id, delivery.seq, &frame);
        }
    }
}
