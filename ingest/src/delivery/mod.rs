//! How events reach this node's devices: the sockets connected here
//! (`hub`), each socket's exact hand-over from the store to live delivery
//! (`handover`, pure), and the router's deliveries (`inbox`). Nothing here
//! knows the gateway.

pub mod handover;
pub mod hub;
pub mod inbox;
