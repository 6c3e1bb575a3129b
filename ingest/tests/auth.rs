#![allow(clippy::unwrap_used)]
//! Token checks: HS256 and RS256, expiry, forgery, missing claims.

use ingest::auth::{Auth, now_secs};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

const PRIVATE: &[u8] = include_bytes!("keys/rs256-test.key");
const PUBLIC: &[u8] = include_bytes!("keys/rs256-test.pub");

#[test]
fn hs256_tokens_it_issues_verify_and_others_do_not() {
    let auth = Auth::hs256(b"secret-one");
    let token = auth.issue("alice", Some("Alice"), 60).unwrap();
    let claims = auth.verify(&token).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.name.as_deref()),
        ("alice", Some("Alice"))
    );
    assert!(!claims.is_admin());
    let other = Auth::hs256(b"secret-two");
    assert_eq!(other.verify(&token).unwrap_err().code, "unauthorized");
    assert_eq!(auth.verify("").unwrap_err().status, 401);
}

#[test]
fn expired_and_subjectless_tokens_are_refused() {
    let key = EncodingKey::from_secret(b"s");
    let auth = Auth::hs256(b"s");
    let expired = encode(
        &Header::default(),
        &json!({"sub": "a", "exp": now_secs() - 60}),
        &key,
    )
    .unwrap();
    assert_eq!(auth.verify(&expired).unwrap_err().message, "token expired");
    let no_sub = encode(&Header::default(), &json!({"exp": now_secs() + 60}), &key).unwrap();
    assert!(auth.verify(&no_sub).is_err());
    let no_exp = encode(&Header::default(), &json!({"sub": "a"}), &key).unwrap();
    assert!(auth.verify(&no_exp).is_err());
    let bad_sub = encode(
        &Header::default(),
        &json!({"sub": "a/b", "exp": now_secs() + 60}),
        &key,
    )
    .unwrap();
    assert!(
        auth.verify(&bad_sub).is_err(),
        "subjects must be valid user ids"
    );
}

#[test]
fn a_token_is_refused_before_its_not_before_time() {
    let key = EncodingKey::from_secret(b"s");
    let auth = Auth::hs256(b"s");
    let claims = |nbf: u64| json!({"sub": "a", "exp": now_secs() + 3600, "nbf": nbf});
    let later = encode(&Header::default(), &claims(now_secs() + 600), &key).unwrap();
    assert_eq!(
        auth.verify(&later).unwrap_err().message,
        "token not valid yet (nbf)"
    );
    let earlier = encode(&Header::default(), &claims(now_secs() - 600), &key).unwrap();
    assert_eq!(auth.verify(&earlier).unwrap().sub, "a");
}

#[test]
fn rs256_verifies_with_the_public_key_and_admin_roles_are_read() {
    let auth = Auth::rs256(PUBLIC).unwrap();
    let key = EncodingKey::from_rsa_pem(PRIVATE).unwrap();
    let claims = json!({"sub": "ops", "exp": now_secs() + 60, "roles": ["admin"]});
    let token = encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    let verified = auth.verify(&token).unwrap();
    assert!(verified.is_admin());
    // An HS256 token signed with the public key's bytes must not pass.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(PUBLIC),
    )
    .unwrap();
    assert!(auth.verify(&confused).is_err());
    assert!(
        auth.issue("x", None, 60).is_err(),
        "RS256 mode issues no tokens"
    );
}
