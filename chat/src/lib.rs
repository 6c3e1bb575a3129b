//! The chat domain, free of I/O: conversation kinds and member roles, the
//! rules of who may do what ([`rules`]), who must see an event
//! ([`audience`]), who is online ([`presence`]) and which posts are
//! second copies of one send ([`twins`]). The gateway checks
//! actions against these rules; the router and the stages after it decide
//! deliveries with them.

pub mod audience;
pub mod presence;
mod roles;
pub mod rules;
pub mod twins;

pub use roles::{Kind, Role};
pub use rules::Denied;
