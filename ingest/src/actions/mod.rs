//! What the gateway does for a caller, whichever transport asked (REST or
//! WebSocket): check the `chat` rules, then publish the event.

pub mod account;
pub mod conversations;
pub mod members;
pub mod messages;
pub mod people;
pub mod send;
