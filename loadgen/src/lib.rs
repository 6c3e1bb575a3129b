//! chatflow's producer harness as a library: the `loadgen` binary's two
//! modes, `chatflow bench`, the one WebSocket client they share, the
//! report, and the deterministic distributions.

pub mod bench;
pub mod client;
pub mod dist;
pub mod kafka;
pub mod report;
pub mod ws;
