//! chatflow's producer harness as a library: the `loadgen` binary's two
//! modes, its report, and the deterministic distributions the benchmarks
//! share.

pub mod dist;
pub mod kafka;
pub mod report;
pub mod ws;
