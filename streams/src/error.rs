use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};

/// A Kafka failure, classified for the caller.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// Worth retrying: the broker is away, busy or timed out.
    #[error("kafka unavailable: {0}")]
    Transient(String),
    /// Retrying cannot help: bad configuration, a record too large, …
    #[error("kafka rejected the request: {0}")]
    Permanent(String),
}

impl KafkaError {
    pub fn is_transient(&self) -> bool {
        matches!(self, KafkaError::Transient(_))
    }
}

impl From<RdError> for KafkaError {
    fn from(e: RdError) -> Self {
        let code = e.rdkafka_error_code();
        let permanent = matches!(
            code,
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                    | RDKafkaErrorCode::InvalidConfig
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::InvalidRecord
            )
        ) || matches!(e, RdError::ClientConfig(..) | RdError::ClientCreation(_));
        if permanent {
            KafkaError::Permanent(e.to_string())
        } else {
            KafkaError::Transient(e.to_string())
        }
    }
}
