//! `s3://bucket[/prefix][?endpoint=<url>&region=<r>]`: objects in S3 (or
//! any S3-API server), under an optional key prefix. Credentials and
//! region come from the usual AWS chain; with an `endpoint` and no
//! credentials in the environment, local ones (`local`/`local`) are used,
//! as the DynamoDB store does for its emulators.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;

use crate::{Archive, ArchiveError, Download, ObjectInfo, Result, check_key, check_prefix};

pub struct S3Archive {
    client: Client,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

impl S3Archive {
    pub async fn connect(url: &str) -> Result<Self> {
        let config_err = |m: String| ArchiveError::Config(format!("{url}: {m}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| config_err("expected s3://bucket/prefix".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(config_err("the URL names no bucket".into()));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_key(prefix).map_err(|_| config_err(format!("bad prefix {prefix:?}")))?;
        }
        let (mut endpoint, mut region) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
                Some(("region", v)) => region = Some(v.to_owned()),
                _ => return Err(config_err(format!("unknown option {pair}"))),
            }
        }
        let region = region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region));
        if let Some(e) = &endpoint {
            loader = loader.endpoint_url(e);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
                && std::env::var_os("AWS_PROFILE").is_none()
            {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "chatflow-local",
                ));
            }
        }
        let shared = loader.load().await;
        // Self-hosted S3-API servers address buckets by path.
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(endpoint.is_some())
            .build();
        Ok(S3Archive {
            client: Client::from_conf(config),
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    fn object_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

/// Throttling, 5xx and the network are worth retrying; the rest is not.
fn classify<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    e: SdkError<E, HttpResponse>,
) -> ArchiveError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let message = format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(&e));
    match (&e, status) {
        (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_), _) => {
            ArchiveError::Transient(message)
        }
        (_, Some(s)) if s >= 500 || s == 429 => ArchiveError::Transient(message),
        (SdkError::ResponseError(_), _) => ArchiveError::Transient(message),
        _ => ArchiveError::Permanent(message),
    }
}

#[async_trait]
impl Archive for S3Archive {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let key = self.object_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| classify("put", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let key = self.object_key(key)?;
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        let object = match response {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(classify("get", e)),
        };
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| ArchiveError::Transient(format!("get {key}: {e}")))?;
        Ok(Some(body.into_bytes()))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        let full = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| classify("list", e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn put_if_absent(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let key = self.object_key(key)?;
        let written = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(classify("put if absent", e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<u64>> {
        let key = self.object_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(classify("head", e)),
        }
    }

    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<Option<String>> {
        let key = self.object_key(key)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| classify("presign put", e))?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn presign_get(
        &self,
        key: &str,
        download: &Download,
        expires_in: Duration,
    ) -> Result<Option<String>> {
        let key = self.object_key(key)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .response_content_type(&download.content_type)
            .response_content_disposition(&download.content_disposition)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| classify("presign get", e))?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = self.object_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| classify("delete", e))?;
        Ok(())
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig> {
    PresigningConfig::expires_in(expires_in)
        .map_err(|e| ArchiveError::Config(format!("presigned URL lifetime: {e}")))
}
