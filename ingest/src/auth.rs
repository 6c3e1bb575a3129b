//! JWT bearer tokens: HS256 with a shared secret or RS256 with a public key.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// A token key that cannot be used for what was asked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token key: {0}")]
    Key(jsonwebtoken::errors::Error),
    #[error("tokens are issued elsewhere (RS256)")]
    NotIssuer,
}

/// How tokens are checked (and, with a secret, issued).
#[derive(Clone)]
pub struct Auth {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    algorithm: Algorithm,
}

impl Auth {
    pub fn hs256(secret: &[u8]) -> Self {
        Auth {
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            algorithm: Algorithm::HS256,
        }
    }

    pub fn rs256(public_key_pem: &[u8]) -> Result<Self, KeyError> {
        Ok(Auth {
            decoding: DecodingKey::from_rsa_pem(public_key_pem).map_err(KeyError::Key)?,
            encoding: None,
            algorithm: Algorithm::RS256,
        })
    }

    /// Issues a token (HS256 only): the dev login and `chatflow token`.
    pub fn issue(
        &self,
        user_id: &str,
        name: Option<&str>,
        ttl_secs: u64,
    ) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::NotIssuer)?;
        let claims = Claims {
            sub: user_id.to_owned(),
            exp: now_secs() + ttl_secs,
            name: name.map(str::to_owned),
            roles: Vec::new(),
        };
        encode(&Header::new(self.algorithm), &claims, key).map_err(KeyError::Key)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 5;
        // RFC 7519 §4.1.5: a token must not be accepted before its `nbf`.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::unauthorized("token expired"),
                ErrorKind::ImmatureSignature => ApiError::unauthorized("token not valid yet (nbf)"),
                ErrorKind::InvalidSignature => ApiError::unauthorized("token signature is invalid"),
                _ => ApiError::unauthorized("token is invalid"),
            }
        })?;
        if crate::validate::id(&data.claims.sub).is_err() {
            return Err(ApiError::unauthorized(
                "token subject is not a valid user id",
            ));
        }
        Ok(data.claims)
    }

    /// The bearer token of a request, or `?token=` for browser sockets.
    pub fn from_request(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Claims, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        match header.or(query_token) {
            Some(token) => self.verify(token.trim()),
            None => Err(ApiError::unauthorized("missing bearer token")),
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
