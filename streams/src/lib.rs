//! The Kafka runtime every stage shares: client configuration, topic
//! creation, the idempotent producer, the at-least-once consumer runtime
//! with its dead-letter queue, and the operators' `tail`/`topics` tools.

mod config;
mod consumer;
mod error;
pub mod follow;
mod lookback;
pub mod ops;
mod producer;
mod shared;
pub mod topics;

pub use config::KafkaConfig;
pub use consumer::{
    Assignment, ConsumerSpec, DecodeError, Record, Rejection, Stage, StageError, StageStatus,
    run_stage,
};
pub use error::KafkaError;
pub use lookback::Lookback;
pub use producer::Producer;
pub use shared::SharedRead;
