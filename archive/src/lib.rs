//! Object storage for what leaves the hot path: the event-log archive and
//! the message cold tier. One trait, [`Archive`], and its backends chosen
//! by URL (as quickwit's `Storage`): `file://<dir>` (embedded mode) and
//! `s3://bucket/prefix` (feature `s3`). Every backend passes
//! [`conformance::run`].

mod file;
#[cfg(feature = "s3")]
mod s3;
pub mod segment;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use file::FileArchive;
#[cfg(feature = "s3")]
pub use s3::S3Archive;

/// One object: its key and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A key that names no object here (see [`check_key`]).
    #[error("invalid key {0:?}: segments of A-Z a-z 0-9 . _ - = + separated by /")]
    InvalidKey(String),
    /// A bad URL or configuration: retrying does not help.
    #[error("archive: {0}")]
    Config(String),
    /// Worth retrying (I/O, network, throttling, 5xx).
    #[error("archive unavailable: {0}")]
    Transient(String),
    /// Refused for good (permissions, a missing bucket).
    #[error("archive refused: {0}")]
    Permanent(String),
}

impl ArchiveError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ArchiveError::Transient(_))
    }
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// Objects by key. Keys are relative paths (`topics/chat.events/
/// partition=0/chat.events+0+00000000000000000000.avro`); a `put` is
/// durable when it returns and replaces the object whole (readers see the
/// old or the new bytes, never a part).
#[async_trait]
pub trait Archive: Send + Sync + 'static {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// The object, or `None` if there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// The objects whose keys start with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Removes the object; removing one that is not there is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Writes the object only if there is none under `key`: true when
    /// this call wrote it, false when one was there (left as it was). Two
    /// racing calls never both return true.
    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool>;
    /// The object's size in bytes, or `None` if there is none.
    async fn head(&self, key: &str) -> Result<Option<u64>>;
    /// A URL a client can `PUT` the object's bytes to, with this
    /// `Content-Type`, until `expires_in` has passed; `None` when the
    /// backend has no URLs of its own (the gateway then takes the bytes
    /// itself).
    async fn presign_put(
        &self,
        _key: &str,
        _content_type: &str,
        _expires_in: Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
    /// A URL a client can `GET` the object from until `expires_in` has
    /// passed, answered with these `Content-Type` and
    /// `Content-Disposition`; `None` as for [`Archive::presign_put`].
    async fn presign_get(
        &self,
        _key: &str,
        _download: &Download,
        _expires_in: Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// How a presigned download is answered.
#[derive(Clone, Debug)]
pub struct Download {
    pub content_type: String,
    pub content_disposition: String,
}

/// The backend a URL names: `file://<dir>` (relative to the working
/// directory, the data dir in embedded mode) or
/// `s3://bucket[/prefix][?endpoint=<url>&region=<r>]`.
pub async fn open(url: &str) -> Result<Arc<dyn Archive>> {
    if let Some(dir) = url.strip_prefix("file://") {
        return Ok(Arc::new(FileArchive::open(dir)?));
    }
    if url.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(S3Archive::connect(url).await?));
        #[cfg(not(feature = "s3"))]
        return Err(ArchiveError::Config(
            "this build has no S3 support (feature `s3`)".into(),
        ));
    }
    Err(ArchiveError::Config(format!(
        "{url:?}: expected file://<dir> or s3://bucket/prefix"
    )))
}

/// Keys are relative paths of plain segments: no empty, `.` or `..`
/// segment, no leading `/`, nothing a file system or S3 reads otherwise.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-=+".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::InvalidKey(key.to_owned()))
    }
}

/// A listing prefix: a key, a key's start, or empty for everything.
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    // `a/` and `a/b.av` are prefixes of valid keys.
    let probe = match prefix.strip_suffix('/') {
        Some(dir) => dir,
        None => prefix,
    };
    check_key(probe).map_err(|_| ArchiveError::InvalidKey(prefix.to_owned()))
}
