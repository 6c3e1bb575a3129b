//! Input checks shared by REST and WebSocket.

use crate::error::ApiError;

/// Ids (users, devices, conversations, client message ids): 1–128 bytes of
/// letters, digits and `._-@:+`, so they are safe in keys, paths and topics.
pub fn id(value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_id",
            "ids are 1-128 characters of letters, digits and . _ - @ : +",
        ))
    }
}

pub fn named_id(what: &str, value: &str) -> Result<(), ApiError> {
    id(value).map_err(|e| ApiError {
        message: format!("{what}: {}", e.message),
        ..e
    })
}

/// A page size: `value` or else `default`, from 1 to `max`.
pub fn limit(value: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = value.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit is 1 to {max}"),
        ));
    }
    Ok(limit)
}

pub fn body_size(text: &str, max_bytes: usize) -> Result<(), ApiError> {
    if text.len() > max_bytes {
        return Err(ApiError::too_large(format!(
            "body is over {max_bytes} bytes"
        )));
    }
    Ok(())
}

pub fn body(text: &str, max_bytes: usize) -> Result<(), ApiError> {
    body_size(text, max_bytes)?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid("empty_body", "body is empty"));
    }
    Ok(())
}
