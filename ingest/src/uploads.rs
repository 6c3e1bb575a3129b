//! Attachments' files in the node's object storage (PROTOCOL.md,
//! Attachments). A client announces an upload (`POST /v1/uploads`), PUTs
//! its bytes to a URL that expires (presigned by S3, or signed by the
//! gateway when the archive is a directory), and references it in a
//! message; members then fetch it through another expiring URL. An upload
//! no message references within [`UploadConfig::ttl`] is swept.
//!
//! Keys, per upload: `uploads/<id>/meta.json` (owner, name, type, the size
//! announced, when), `uploads/<id>/data` (the bytes) and
//! `uploads/<id>/refs/<hex of a conversation id>` for each conversation
//! with a message that references it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archive::{Archive, ArchiveError, Download};
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;
use crate::validate;

/// What a deployment allows.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// The largest file taken, in bytes.
    pub max_bytes: u64,
    /// A message may reference an upload this long after it was
    /// announced; an upload none references is swept a 24th of it later
    /// (so a send that checked it in time never finds it gone).
    pub ttl: Duration,
    /// How long an upload or download URL works.
    pub url_ttl: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            max_bytes: 25 * 1024 * 1024,
            ttl: Duration::from_secs(24 * 3600),
            url_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// At most this many files on one message.
pub const MAX_ATTACHMENTS: usize = 10;
/// The largest thumbnail, decoded.
pub const MAX_THUMBNAIL_BYTES: usize = 8 * 1024;

/// `uploads/<id>/meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub owner: String,
    pub name: String,
    pub content_type: String,
    /// The size announced: the most the upload may hold.
    pub size: u64,
    pub created_at: i64,
}

/// An announced upload: where its bytes go.
pub struct Announced {
    pub upload_id: String,
    pub url: String,
    pub expires_at: i64,
}

/// An expiring URL for a file.
pub struct Link {
    pub url: String,
    pub expires_at: i64,
}

/// An attachment as a send names it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
pub struct AttachmentRef {
    /// The `upload_id` of `POST /v1/uploads`.
    pub upload_id: String,
    /// A small preview of an image, base64 (at most 8 KiB decoded).
    #[serde(default)]
    pub thumbnail: Option<String>,
}

/// The two things a gateway-signed URL allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Put,
    Get,
}

pub struct Uploads {
    archive: Arc<dyn Archive>,
    /// Signs the gateway's own URLs.
    key: Vec<u8>,
    pub config: UploadConfig,
}

fn meta_key(id: &str) -> String {
    format!("uploads/{id}/meta.json")
}

fn data_key(id: &str) -> String {
    format!("uploads/{id}/data")
}

fn ref_key(id: &str, conversation_id: &str) -> String {
    format!("uploads/{id}/refs/{}", hex::encode(conversation_id))
}

fn storage(e: ArchiveError) -> ApiError {
    ApiError::unavailable("the file storage", e)
}

impl Uploads {
    /// `secret` is the deployment's signing secret; URLs signed with it
    /// work on every gateway node that has it.
    pub fn new(archive: Arc<dyn Archive>, secret: &[u8], config: UploadConfig) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"chatflow upload URLs v1");
        Uploads {
            archive,
            key: mac.finalize().into_bytes().to_vec(),
            config,
        }
    }

    /// Records a new upload of `owner`'s and answers where its bytes go.
    pub async fn announce(
        &self,
        owner: &str,
        name: &str,
        content_type: &str,
        size: u64,
    ) -> Result<Announced, ApiError> {
        file_name(name)?;
        file_type(content_type)?;
        if size == 0 {
            return Err(ApiError::invalid("invalid_size", "size is at least 1 byte"));
        }
        if size > self.config.max_bytes {
            return Err(ApiError::too_large(format!(
                "a file is at most {} bytes",
                self.config.max_bytes
            )));
        }
        let id = ulid::Ulid::new().to_string();
        let meta = Meta {
            owner: owner.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size,
            created_at: schemas::now_millis(),
        };
        let bytes = serde_json::to_vec(&meta).unwrap_or_default();
        self.archive
            .put(&meta_key(&id), Bytes::from(bytes))
            .await
            .map_err(storage)?;
        let expires_at = schemas::now_millis() + self.config.url_ttl.as_millis() as i64;
        let url = match self
            .archive
            .presign_put(&data_key(&id), content_type, self.config.url_ttl)
            .await
            .map_err(storage)?
        {
            Some(url) => url,
            None => self.signed_url(Verb::Put, &id, expires_at),
        };
        Ok(Announced {
            upload_id: id,
            url,
            expires_at,
        })
    }

    /// `/v1/uploads/<id>/data?expires=…&signature=…`, relative to the API.
    fn signed_url(&self, verb: Verb, id: &str, expires_at: i64) -> String {
        format!(
            "/v1/uploads/{id}/data?expires={expires_at}&signature={}",
            hex::encode(self.mac(verb, id, expires_at).finalize().into_bytes())
        )
    }

    fn mac(&self, verb: Verb, id: &str, expires_at: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(format!("{verb:?} {id} {expires_at}").as_bytes());
        mac
    }

    /// 403 unless `signature` is this gateway's for `verb` on the upload
    /// and `expires_at` has not passed.
    pub fn check_signature(
        &self,
        verb: Verb,
        id: &str,
        expires_at: i64,
        signature: &str,
    ) -> Result<(), ApiError> {
        let refused = || ApiError::forbidden("the link is not valid or has expired");
        let given = hex::decode(signature).map_err(|_| refused())?;
        self.mac(verb, id, expires_at)
            .verify_slice(&given)
            .map_err(|_| refused())?;
        if expires_at < schemas::now_millis() {
            return Err(refused());
        }
        Ok(())
    }

    pub async fn meta(&self, id: &str) -> Result<Option<Meta>, ApiError> {
        if validate::named_id("upload_id", id).is_err() {
            return Ok(None);
        }
        let Some(bytes) = self.archive.get(&meta_key(id)).await.map_err(storage)? else {
            return Ok(None);
        };
        // A meta.json chatflow did not write names no upload.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Takes an upload's bytes (the gateway-signed PUT): of the type
    /// announced, no more than announced, and once.
    pub async fn store(
        &self,
        id: &str,
        meta: &Meta,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<(), ApiError> {
        if content_type != Some(meta.content_type.as_str()) {
            return Err(ApiError::invalid(
                "invalid_content_type",
                format!("Content-Type must be {}, as announced", meta.content_type),
            ));
        }
        if bytes.len() as u64 > meta.size {
            return Err(ApiError::too_large(format!(
                "{} bytes announced, {} sent",
                meta.size,
                bytes.len()
            )));
        }
        if self
            .archive
            .head(&data_key(id))
            .await
            .map_err(storage)?
            .is_some()
        {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "already_uploaded",
                "this upload has its bytes already",
            ));
        }
        self.archive
            .put(&data_key(id), bytes)
            .await
            .map_err(storage)
    }

    /// The bytes of an upload and what it is.
    pub async fn read(&self, id: &str) -> Result<Option<(Meta, Bytes)>, ApiError> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        let bytes = self.archive.get(&data_key(id)).await.map_err(storage)?;
        Ok(bytes.map(|b| (meta, b)))
    }

    /// The attachment a message of `sender`'s in `conversation_id` may
    /// carry for `r`: the sender's own upload, announced less than `ttl`
    /// ago, its bytes in storage within the size announced. Marks the
    /// upload as referenced from that conversation.
    pub async fn attach(
        &self,
        sender: &str,
        conversation_id: &str,
        r: &AttachmentRef,
    ) -> Result<schemas::Attachment, ApiError> {
        let invalid = |m: String| ApiError::invalid("invalid_attachment", m);
        let meta = self
            .meta(&r.upload_id)
            .await?
            .filter(|m| m.owner == sender)
            .ok_or_else(|| invalid(format!("no upload {} of yours", r.upload_id)))?;
        if schemas::now_millis() - meta.created_at > self.config.ttl.as_millis() as i64 {
            return Err(invalid(format!(
                "upload {} is too old to send: upload it again",
                r.upload_id
            )));
        }
        if let Some(thumbnail) = &r.thumbnail {
            self::thumbnail(&meta.content_type, thumbnail)?;
        }
        let size = self
            .archive
            .head(&data_key(&r.upload_id))
            .await
            .map_err(storage)?
            .ok_or_else(|| invalid(format!("upload {} has no bytes yet", r.upload_id)))?;
        // A presigned PUT cannot cap the size: checked here.
        if size > meta.size.min(self.config.max_bytes) {
            return Err(ApiError::too_large(format!(
                "upload {} holds {size} bytes, over the {} announced",
                r.upload_id, meta.size
            )));
        }
        // The sweeper leaves an upload younger than `ttl` and its grace
        // alone, so what was checked stays until the mark is written.
        self.archive
            .put(&ref_key(&r.upload_id, conversation_id), Bytes::new())
            .await
            .map_err(storage)?;
        Ok(schemas::Attachment {
            id: r.upload_id.clone(),
            name: meta.name,
            content_type: meta.content_type,
            size: size as i64,
            thumbnail: r.thumbnail.clone(),
        })
    }

    /// Where a member downloads an attachment from, for a while.
    pub async fn download_link(&self, a: &schemas::Attachment) -> Result<Link, ApiError> {
        let expires_at = schemas::now_millis() + self.config.url_ttl.as_millis() as i64;
        let download = Download {
            content_type: a.content_type.clone(),
            content_disposition: disposition(&a.content_type, &a.name),
        };
        let url = match self
            .archive
            .presign_get(&data_key(&a.id), &download, self.config.url_ttl)
            .await
            .map_err(storage)?
        {
            Some(url) => url,
            None => self.signed_url(Verb::Get, &a.id, expires_at),
        };
        Ok(Link { url, expires_at })
    }

    /// Removes the uploads no message references that are older than
    /// `ttl` and its grace; returns how many.
    pub async fn sweep(&self) -> Result<usize, ArchiveError> {
        let grace = self.config.ttl + self.config.ttl / 24;
        let cutoff = schemas::now_millis() - grace.as_millis() as i64;
        let mut uploads: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
        for object in self.archive.list("uploads/").await? {
            let mut parts = object.key.splitn(3, '/');
            let (Some(_), Some(id)) = (parts.next(), parts.next()) else {
                continue;
            };
            let entry = uploads.entry(id.to_owned()).or_default();
            entry.0 |= parts.next().is_some_and(|rest| rest.starts_with("refs/"));
            entry.1.push(object.key.clone());
        }
        let mut swept = 0;
        for (id, (referenced, keys)) in uploads {
            if referenced {
                continue;
            }
            let old = match self.archive.get(&meta_key(&id)).await? {
                Some(bytes) => serde_json::from_slice::<Meta>(&bytes)
                    .map(|m| m.created_at < cutoff)
                    .unwrap_or(false),
                // Bytes without their record: a sweep cut short.
                None => true,
            };
            if !old {
                continue;
            }
            // The record goes last, so a sweep cut short is finished by
            // the next one.
            for key in keys.iter().filter(|k| !k.ends_with("/meta.json")) {
                self.archive.delete(key).await?;
            }
            self.archive.delete(&meta_key(&id)).await?;
            swept += 1;
        }
        Ok(swept)
    }
}

/// `exports/<id>.json`: where an export of a user's data stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportStatus {
    pub owner: String,
    /// running, ready or failed.
    pub status: String,
    pub started_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Uploads {
    pub async fn put_export_status(&self, id: &str, status: &ExportStatus) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(status).unwrap_or_default();
        self.archive
            .put(&format!("exports/{id}.json"), Bytes::from(bytes))
            .await
            .map_err(storage)
    }

    pub async fn export_status(&self, id: &str) -> Result<Option<ExportStatus>, ApiError> {
        if validate::named_id("export_id", id).is_err() {
            return Ok(None);
        }
        let bytes = self
            .archive
            .get(&format!("exports/{id}.json"))
            .await
            .map_err(storage)?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// A stored upload as an attachment (for its download link).
    pub async fn read_meta_as_attachment(
        &self,
        id: &str,
    ) -> Result<Option<schemas::Attachment>, ApiError> {
        let Some(meta) = self.meta(id).await? else {
            return Ok(None);
        };
        let Some(size) = self.archive.head(&data_key(id)).await.map_err(storage)? else {
            return Ok(None);
        };
        Ok(Some(schemas::Attachment {
            id: id.to_owned(),
            name: meta.name,
            content_type: meta.content_type,
            size: size as i64,
            thumbnail: None,
        }))
    }

    /// Keeps a file the server made for `owner` (an export) as one of
    /// their uploads that no message references: swept after `ttl`.
    pub async fn put_generated(
        &self,
        id: &str,
        owner: &str,
        name: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<schemas::Attachment, ApiError> {
        let meta = Meta {
            owner: owner.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size: bytes.len() as u64,
            created_at: schemas::now_millis(),
        };
        let size = bytes.len() as i64;
        self.archive
            .put(&data_key(id), bytes)
            .await
            .map_err(storage)?;
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        self.archive
            .put(&meta_key(id), Bytes::from(json))
            .await
            .map_err(storage)?;
        Ok(schemas::Attachment {
            id: id.to_owned(),
            name: name.to_owned(),
            content_type: content_type.to_owned(),
            size,
            thumbnail: None,
        })
    }

    /// Removes every upload of `owner`'s, referenced or not, and their
    /// exports (erasure); returns how many uploads.
    pub async fn erase_owner(&self, owner: &str) -> Result<usize, ArchiveError> {
        let objects = self.archive.list("uploads/").await?;
        let mut erased = 0;
        for meta in objects.iter().filter(|o| o.key.ends_with("/meta.json")) {
            let Some(bytes) = self.archive.get(&meta.key).await? else {
                continue;
            };
            if serde_json::from_slice::<Meta>(&bytes).map_or(true, |m| m.owner != owner) {
                continue;
            }
            let dir = meta.key.trim_end_matches("meta.json");
            for object in objects.iter().filter(|o| o.key.starts_with(dir)) {
                if object.key != meta.key {
                    self.archive.delete(&object.key).await?;
                }
            }
            // The record last: an erasure cut short is finished by the next.
            self.archive.delete(&meta.key).await?;
            erased += 1;
        }
        for status in self.archive.list("exports/").await? {
            let Some(bytes) = self.archive.get(&status.key).await? else {
                continue;
            };
            if serde_json::from_slice::<ExportStatus>(&bytes).is_ok_and(|s| s.owner == owner) {
                self.archive.delete(&status.key).await?;
            }
        }
        Ok(erased)
    }
}

/// 1 to 255 bytes, no control character and no path separator.
fn file_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.trim().is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_name",
            "name is 1 to 255 bytes without control characters or / and \\",
        ))
    }
}

/// The media types taken: images, audio and video (not SVG, which can
/// carry script), PDF, plain text and common document and archive types.
/// Anything else can be sent as `application/octet-stream`.
fn file_type(content_type: &str) -> Result<(), ApiError> {
    const EXACT: [&str; 10] = [
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/json",
        "application/msword",
        "application/rtf",
        "application/octet-stream",
        "text/plain",
        "text/csv",
        "text/markdown",
    ];
    let well_formed = content_type.len() <= 127
        && content_type.split_once('/').is_some_and(|(top, sub)| {
            [top, sub].iter().all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)
                    })
            })
        });
    let taken = well_formed
        && content_type != "image/svg+xml"
        && (["image/", "audio/", "video/", "application/vnd."]
            .iter()
            .any(|p| content_type.starts_with(p))
            || EXACT.contains(&content_type));
    if taken {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_file_type",
            format!(
                "{content_type:?} is not taken: images (not SVG), audio, video, PDF, text, \
                 office documents, zip, or application/octet-stream"
            ),
        ))
    }
}

/// Base64 of at most [`MAX_THUMBNAIL_BYTES`], on an image only.
fn thumbnail(content_type: &str, thumbnail: &str) -> Result<(), ApiError> {
    let invalid = |m: &str| Err(ApiError::invalid("invalid_thumbnail", m));
    if !content_type.starts_with("image/") {
        return invalid("only an image has a thumbnail");
    }
    if thumbnail.len() > MAX_THUMBNAIL_BYTES.div_ceil(3) * 4 {
        return invalid("a thumbnail is at most 8 KiB");
    }
    match base64::engine::general_purpose::STANDARD.decode(thumbnail) {
        Ok(bytes) if !bytes.is_empty() && bytes.len() <= MAX_THUMBNAIL_BYTES => Ok(()),
        Ok(_) => invalid("a thumbnail is 1 byte to 8 KiB"),
        Err(_) => invalid("a thumbnail is base64"),
    }
}

/// Shown in the browser for media, saved as a file otherwise; the name as
/// RFC 6266 has it (an ASCII fallback and the UTF-8 name).
pub fn disposition(content_type: &str, name: &str) -> String {
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| content_type.starts_with(p));
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "{}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}",
        if inline { "inline" } else { "attachment" }
    )
}

/// The task that sweeps every `every` until `stop`.
pub async fn sweeper(
    uploads: Arc<Uploads>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match uploads.sweep().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("chatflow_uploads_swept_total").increment(n as u64);
                tracing::info!(uploads = n, "swept uploads no message references");
            }
            Err(e) => tracing::warn!(error = %e, "sweeping uploads"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn uploads(ttl: Duration) -> (tempfile::TempDir, Uploads) {
        let dir = tempfile::tempdir().unwrap();
        let archive = Arc::new(archive::FileArchive::open(dir.path()).unwrap());
        let config = UploadConfig {
            ttl,
            ..UploadConfig::default()
        };
        (dir, Uploads::new(archive, b"secret", config))
    }

    #[test]
    fn signatures_cover_the_verb_the_upload_and_the_expiry() {
        let (_dir, u) = uploads(Duration::from_secs(60));
        let later = schemas::now_millis() + 60_000;
        let url = u.signed_url(Verb::Put, "01ABC", later);
        let signature = url.rsplit_once("signature=").unwrap().1;
        u.check_signature(Verb::Put, "01ABC", later, signature)
            .unwrap();
        assert!(
            u.check_signature(Verb::Get, "01ABC", later, signature)
                .is_err()
        );
        assert!(
            u.check_signature(Verb::Put, "01ABD", later, signature)
                .is_err()
        );
        assert!(
            u.check_signature(Verb::Put, "01ABC", later + 1, signature)
                .is_err()
        );
        assert!(u.check_signature(Verb::Put, "01ABC", later, "zz").is_err());
        let past = schemas::now_millis() - 1;
        let expired = u.signed_url(Verb::Put, "01ABC", past);
        let signature = expired.rsplit_once("signature=").unwrap().1;
        assert!(
            u.check_signature(Verb::Put, "01ABC", past, signature)
                .is_err()
        );
        // Another deployment's secret signs differently.
        let other = Uploads::new(u.archive.clone(), b"other", UploadConfig::default());
        let theirs = other.signed_url(Verb::Put, "01ABC", later);
        let signature = theirs.rsplit_once("signature=").unwrap().1;
        assert!(
            u.check_signature(Verb::Put, "01ABC", later, signature)
                .is_err()
        );
    }

    #[test]
    fn file_types_names_and_thumbnails() {
        for ok in ["image/png", "video/mp4", "application/pdf", "text/plain"] {
            file_type(ok).unwrap();
        }
        for bad in [
            "image/svg+xml",
            "text/html",
            "application/javascript",
            "IMAGE/PNG",
            "image/",
            "image/png; charset=x",
            "",
        ] {
            assert!(file_type(bad).is_err(), "{bad}");
        }
        file_name("plan für 2027.pdf").unwrap();
        for bad in ["", " ", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(file_name(bad).is_err(), "{bad:?}");
        }
        thumbnail("image/png", "iVBORw0KGgo=").unwrap();
        assert!(thumbnail("application/pdf", "iVBORw0KGgo=").is_err());
        assert!(thumbnail("image/png", "not base64!").is_err());
        assert!(thumbnail("image/png", "").is_err());
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 8 * 1024 + 1]);
        assert!(thumbnail("image/png", &big).is_err());
    }

    #[test]
    fn names_are_quoted_for_content_disposition() {
        assert_eq!(
            disposition("image/png", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert_eq!(
            disposition("application/pdf", "über \"x\".pdf"),
            "attachment; filename=\"_ber _x_.pdf\"; filename*=UTF-8''%C3%BCber%20%22x%22.pdf"
        );
    }

    async fn put(u: &Uploads, id: &str, bytes: &'static [u8]) {
        let meta = u.meta(id).await.unwrap().unwrap();
        u.store(id, &meta, Some("text/plain"), Bytes::from_static(bytes))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_sweep_takes_only_old_uploads_nothing_references() {
        let (_dir, u) = uploads(Duration::from_millis(240));
        let orphan = u.announce("ann", "a.txt", "text/plain", 3).await.unwrap();
        put(&u, &orphan.upload_id, b"abc").await;
        let kept = u.announce("ann", "b.txt", "text/plain", 3).await.unwrap();
        put(&u, &kept.upload_id, b"xyz").await;
        let r = AttachmentRef {
            upload_id: kept.upload_id.clone(),
            thumbnail: None,
        };
        u.attach("ann", "g:1", &r).await.unwrap();
        assert_eq!(u.sweep().await.unwrap(), 0, "nothing is old yet");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(u.sweep().await.unwrap(), 1);
        assert!(u.read(&orphan.upload_id).await.unwrap().is_none());
        assert!(u.meta(&orphan.upload_id).await.unwrap().is_none());
        let (_, bytes) = u.read(&kept.upload_id).await.unwrap().unwrap();
        assert_eq!(&bytes[..], b"xyz");
        // Too old to reference now.
        let late = u.announce("ann", "c.txt", "text/plain", 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = AttachmentRef {
            upload_id: late.upload_id,
            thumbnail: None,
        };
        assert!(u.attach("ann", "g:1", &r).await.is_err());
    }
}
