//! The chatflow event schemas: Rust types for every record on the log, their
//! Avro encoding in Confluent framing, and the read-only schema registry that
//! lets Kafka tools decode the log.

mod codec;
mod event;
pub mod registry;
#[cfg(feature = "registry-client")]
pub mod registry_client;
mod resolve;
mod versions;

pub use codec::{Codec, CodecError, Record};
pub use event::{
    Actor, Attachment, ChatEvent, ConversationCreated, ConversationUpdated, DeliveredUpTo,
    Delivery, DevicePresence, DeviceRegistered, DeviceRemoved, ExportRequested, MemberAdded,
    MemberMuted, MemberRemoved, MemberRoleChanged, MemberSpec, MessageDeleted, MessageEdited,
    MessagePinned, MessagePosted, Payload, ReactionAdded, ReactionRemoved, ReadUpTo, Typing,
    UserErased, user_stream,
};
pub use versions::{RegistryIds, SchemaId, VERSIONS, Version};

/// The wall clock as the records carry it: milliseconds since the epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
