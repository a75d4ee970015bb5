//! The S3 side: a client built from `[archive]`, and write-once uploads under Object Lock whose
//! checksums the server confirms. Nothing here deletes an object or bypasses a retention.

use std::path::Path;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart,
    ObjectLockLegalHoldStatus, ObjectLockMode,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest, Sha256};

use super::config::ArchiveConfig;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Local configuration (key files, CA) is not usable.
    #[error("{0}")]
    Setup(String),
    /// The store could not be reached or answered with an error; retried later.
    #[error("{op} {key}: {msg}")]
    Remote {
        /// S3 operation.
        op: &'static str,
        /// Object key (or bucket).
        key: String,
        /// The server's code and message, or the transport error.
        msg: String,
        /// HTTP status when there was an answer.
        status: Option<u16>,
        /// S3 error code when there was one.
        code: Option<String>,
    },
    /// An object already exists under the key with other content: never overwritten.
    #[error(
        "{key}: an object with other content is already archived under this key (archived sha256 {found}, local {expected}); it was left as it is"
    )]
    Conflict {
        /// Object key.
        key: String,
        /// SHA-256 (hex) of the local file.
        expected: String,
        /// What the store holds (hex SHA-256, or a description).
        found: String,
    },
    /// A file of a sealed folder is missing on this workstation, or is not the file sealed:
    /// nothing of it is uploaded (a changed file would be locked in the archive for good).
    #[error(
        "{key}: {what}; it was not archived and nothing was locked (run callguard verify on this workstation)"
    )]
    NotAsSealed {
        /// Object key.
        key: String,
        /// What is wrong with the local file.
        what: String,
    },
    /// The server's answer does not confirm what was sent.
    #[error("{key}: the store did not confirm the checksum ({msg})")]
    Unconfirmed {
        /// Object key.
        key: String,
        /// Details.
        msg: String,
    },
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl StoreError {
    /// The S3 error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Remote { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// HTTP status of the failed request, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            StoreError::Remote { status, .. } => *status,
            _ => None,
        }
    }
}

fn remote<E>(op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let (code, msg) = match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().map(str::to_string);
            let text = match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                (None, Some(m)) => m.to_string(),
                (None, None) => match status {
                    Some(404) => "not found (404)".into(),
                    Some(403) => "access denied (403): check the credentials and the policy".into(),
                    Some(s) => format!("HTTP {s}"),
                    None => "error without details".into(),
                },
            };
            (code, text)
        }
        other => (None, error_chain(other)),
    };
    StoreError::Remote {
        op,
        key: key.to_string(),
        msg,
        status,
        code,
    }
}

/// The TLS verdict when the endpoint's certificate was refused (unknown CA, wrong name,
/// expired), found anywhere in the error's chain of causes.
fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t @ rustls::Error::InvalidCertificate(_)) = c.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        // An `io::Error`'s `source()` skips its own payload, where the TLS connector puts the
        // rustls error (nested in another `io::Error`): step into the payload instead.
        cur = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(payload) => Some(payload as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    None
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// An object's body being downloaded.
struct Body {
    stream: ByteStream,
    key: String,
}

impl Body {
    /// The next chunk; `None` at the end.
    async fn next(&mut self) -> Option<Result<bytes::Bytes, StoreError>> {
        let chunk = self.stream.next().await?;
        Some(chunk.map_err(|e| StoreError::Remote {
            op: "GetObject",
            key: self.key.clone(),
            msg: error_chain(&e),
            status: None,
            code: None,
        }))
    }
}

/// An object (or the part of it asked for) being read: see [`Store::get_stream`].
pub struct Ranged {
    /// Bytes in this answer.
    pub len: u64,
    /// `Content-Range` as the store answered (set for a range request).
    pub content_range: Option<String>,
    /// The bytes.
    pub body: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, StoreError>>,
}

/// A part the store took.
struct SentPart {
    number: i32,
    etag: String,
    sha256: [u8; 32],
    md5: [u8; 16],
}

/// One part read from disk with its checksums.
struct PartData {
    bytes: bytes::Bytes,
    sha256: [u8; 32],
    md5: [u8; 16],
}

/// Reads `size` bytes at `start` and hashes them in the same pass: each chunk is hashed right
/// after it is read, while it is still in the cache.
fn read_part(path: &Path, start: u64, size: usize) -> std::io::Result<PartData> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 1 << 20;
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; size];
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut at = start;
    for chunk in buf.chunks_mut(CHUNK) {
        f.read_exact_at(chunk, at)?;
        sha.update(&*chunk);
        md5.update(&*chunk);
        at += chunk.len() as u64;
    }
    Ok(PartData {
        bytes: bytes::Bytes::from(buf),
        sha256: sha.finalize().into(),
        md5: md5.finalize().into(),
    })
}

/// Object Lock settings of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Lock {
    /// COMPLIANCE retention until (seconds since the epoch).
    pub retain_until_secs: i64,
    /// Legal hold on.
    pub legal_hold: bool,
}

/// Object Lock retention as the store reports it with an object (`x-amz-object-lock-mode`,
/// `x-amz-object-lock-retain-until-date`); both `None` when it reports none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: Option<String>,
    /// Retain until (seconds since the epoch).
    pub retain_until_secs: Option<i64>,
}

impl Retention {
    /// Whether the store said anything about retention.
    pub fn reported(&self) -> bool {
        self.mode.is_some() || self.retain_until_secs.is_some()
    }
}

/// What an upload found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Written now; the server confirmed the checksum.
    Written,
    /// Was already there with the same content.
    AlreadyThere,
}

/// What HEAD says about an object.
#[derive(Debug, Clone)]
pub struct Head {
    /// Length.
    pub len: u64,
    /// `x-amz-checksum-sha256` as stored (base64; a multipart object's ends in `-N`).
    pub checksum_sha256: Option<String>,
    /// Our own `sha256` metadata (hex of the whole object), set on multipart uploads.
    pub meta_sha256: Option<String>,
}

/// The archive store: one bucket, one prefix.
#[derive(Clone)]
pub struct Store {
    client: Client,
    /// Bucket.
    pub bucket: String,
    part_size: u64,
    concurrency: usize,
    /// As configured, for messages.
    endpoint: String,
    ca_file: String,
    /// Credentials come from `access_key_file` / `secret_key_file` (else the AWS chain).
    key_files: bool,
}

/// SHA-256 of bytes, base64 (the `x-amz-checksum-sha256` form).
pub fn b64_sha256(bytes: &[u8]) -> String {
    B64.encode(Sha256::digest(bytes))
}

fn hex_to_b64(hex_digest: &str) -> Option<String> {
    hex::decode(hex_digest).ok().map(|b| B64.encode(b))
}

fn b64_to_hex(b64: &str) -> Option<String> {
    B64.decode(b64).ok().map(hex::encode)
}

/// Reads one line of a key file.
fn read_key_file(key: &str, path: &str) -> Result<String, StoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StoreError::Setup(format!("archive.{key} {path}: {e}")))?;
    let line = text.lines().next().unwrap_or_default().trim().to_string();
    if line.is_empty() {
        return Err(StoreError::Setup(format!("archive.{key} {path}: empty")));
    }
    Ok(line)
}

impl Store {
    /// Builds the client: rustls (ring) with the system roots plus `ca_file`, credentials from
    /// the key files or else the standard AWS chain (environment, profile, instance).
    pub async fn connect(cfg: &ArchiveConfig) -> Result<Store, StoreError> {
        let mut trust = aws_smithy_http_client::tls::TrustStore::default();
        if !cfg.ca_file.is_empty() {
            let pem = std::fs::read(&cfg.ca_file)
                .map_err(|e| StoreError::Setup(format!("archive.ca_file {}: {e}", cfg.ca_file)))?;
            trust = trust.with_pem_certificate(pem);
        }
        let tls = aws_smithy_http_client::tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| StoreError::Setup(format!("archive.ca_file: {e}")))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .tls_context(tls)
            .build_https();
        let region = Region::new(cfg.region.clone());
        let mut b = if cfg.access_key_file.is_empty() {
            let shared = aws_config::defaults(BehaviorVersion::latest())
                .http_client(http.clone())
                .region(region.clone())
                .load()
                .await;
            aws_sdk_s3::config::Builder::from(&shared)
        } else {
            let ak = read_key_file("access_key_file", &cfg.access_key_file)?;
            let sk = read_key_file("secret_key_file", &cfg.secret_key_file)?;
            aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(ak, sk, None, None, "callguard-archive"))
        };
        b = b
            .region(region)
            .http_client(http)
            .force_path_style(cfg.path_style)
            // We send our own SHA-256 with every write; no second checksum from the SDK.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            )
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .read_timeout(std::time::Duration::from_secs(60))
                    .build(),
            );
        if !cfg.endpoint.is_empty() {
            b = b.endpoint_url(cfg.endpoint.trim_end_matches('/'));
        }
        Ok(Store {
            client: Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
            part_size: cfg.part_size(),
            concurrency: cfg.concurrency.max(1),
            endpoint: cfg.endpoint.clone(),
            ca_file: cfg.ca_file.clone(),
            key_files: !cfg.access_key_file.is_empty(),
        })
    }

    /// The SDK client (for the checks of `doctor` and `verify`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// HEAD of the bucket: reachable, credentials accepted, bucket there.
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if let Some(why) = untrusted_certificate(&e) {
                    return StoreError::Setup(format!(
                        "the archive endpoint {} presented a certificate that is not trusted ({why}); give the CA that signed it in archive.ca_file{}",
                        self.endpoint,
                        if self.ca_file.is_empty() {
                            String::new()
                        } else {
                            format!(" (now {}, which did not sign it)", self.ca_file)
                        }
                    ));
                }
                let err = remote("HeadBucket", &self.bucket, e);
                match err.status() {
                    Some(404) => StoreError::Setup(format!(
                        "bucket {} does not exist on the archive store (create it with Object Lock on)",
                        self.bucket
                    )),
                    Some(403) => StoreError::Setup(format!(
                        "the archive store refused the credentials for bucket {} (access denied: check {} and the policy)",
                        self.bucket,
                        if self.key_files {
                            "archive.access_key_file / secret_key_file"
                        } else {
                            "the AWS credentials in use: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile or the instance role"
                        }
                    )),
                    _ => err,
                }
            })
    }

    /// HEAD of an object with its checksum; `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<Head>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => Ok(Some(Head {
                len: h.content_length().unwrap_or(0).max(0) as u64,
                checksum_sha256: h.checksum_sha256().map(str::to_string),
                meta_sha256: h.metadata().and_then(|m| m.get("sha256")).cloned(),
            })),
            Err(e) => {
                let err = remote("HeadObject", key, e);
                if err.status() == Some(404) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The body of an object, read chunk by chunk, with the retention the store reports
    /// with it.
    async fn body(&self, key: &str) -> Result<(Body, Retention), StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| remote("GetObject", key, e))?;
        let retention = Retention {
            mode: out.object_lock_mode().map(|m| m.as_str().to_string()),
            retain_until_secs: out.object_lock_retain_until_date().map(|d| d.secs()),
        };
        let body = Body {
            stream: out.body,
            key: key.to_string(),
        };
        Ok((body, retention))
    }

    /// Reads an object for someone else to stream (the floor's recording player): the body as
    /// a stream of chunks, with `range` (an HTTP `Range` header value) passed to GetObject so a
    /// player can seek without the whole object moving.
    pub async fn get_stream(&self, key: &str, range: Option<&str>) -> Result<Ranged, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(str::to_string))
            .send()
            .await
            .map_err(|e| remote("GetObject", key, e))?;
        let body = Body {
            stream: out.body,
            key: key.to_string(),
        };
        let chunks =
            futures_util::stream::unfold(
                body,
                |mut b| async move { b.next().await.map(|c| (c, b)) },
            );
        Ok(Ranged {
            len: out.content_length.unwrap_or(0).max(0) as u64,
            content_range: out.content_range,
            body: Box::pin(chunks),
        })
    }

    /// Downloads a whole object into memory.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.get_with_retention(key).await?.0)
    }

    /// Downloads a whole object into memory, with the retention the store reports with it.
    pub async fn get_with_retention(&self, key: &str) -> Result<(Vec<u8>, Retention), StoreError> {
        let (mut body, retention) = self.body(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok((out, retention))
    }

    /// Streams an object and returns (hex SHA-256, length) of what the store serves.
    pub async fn hash_remote(&self, key: &str) -> Result<(String, u64), StoreError> {
        let (mut body, _) = self.body(key).await?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            h.update(&chunk);
        }
        Ok((hex::encode(h.finalize()), n))
    }

    /// Downloads an object into a file (streamed).
    pub async fn download_to(&self, key: &str, path: &Path) -> Result<u64, StoreError> {
        Ok(self.download_with_retention(key, path).await?.0)
    }

    /// Downloads an object into a file (streamed), with the retention the store reports with
    /// it.
    pub async fn download_with_retention(
        &self,
        key: &str,
        path: &Path,
    ) -> Result<(u64, Retention), StoreError> {
        use tokio::io::AsyncWriteExt;
        let (mut body, retention) = self.body(key).await?;
        let local = |source| StoreError::Local {
            path: path.display().to_string(),
            source,
        };
        if let Some(d) = path.parent() {
            tokio::fs::create_dir_all(d).await.map_err(local)?;
        }
        let mut f = tokio::fs::File::create(path).await.map_err(local)?;
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(local)?;
        }
        f.flush().await.map_err(local)?;
        Ok((n, retention))
    }

    /// The COMPLIANCE/GOVERNANCE mode and retain-until (seconds) of an object; `Err` with the
    /// store's answer when it cannot say.
    pub async fn retention(&self, key: &str) -> Result<(Option<String>, Option<i64>), StoreError> {
        let out = self
            .client
            .get_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| remote("GetObjectRetention", key, e))?;
        let r = out.retention();
        Ok((
            r.and_then(|r| r.mode()).map(|m| m.as_str().to_string()),
            r.and_then(|r| r.retain_until_date()).map(|d| d.secs()),
        ))
    }

    /// Every key under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| remote("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                }
            }
        }
        Ok(out)
    }

    /// Whether the object at `key` holds exactly the bytes whose SHA-256 is `sha_hex`
    /// (`Some(true)`), other bytes (`Some(false)`), or is absent (`None`). A checksum the
    /// server keeps is trusted; otherwise the object is read back and hashed.
    pub async fn matches(
        &self,
        key: &str,
        sha_hex: &str,
        len: u64,
    ) -> Result<Option<bool>, StoreError> {
        let Some(h) = self.head(key).await? else {
            return Ok(None);
        };
        if h.len != len {
            return Ok(Some(false));
        }
        if let Some(c) = &h.checksum_sha256
            && !c.contains('-')
        {
            return Ok(Some(b64_to_hex(c).as_deref() == Some(sha_hex)));
        }
        let (remote_sha, n) = self.hash_remote(key).await?;
        Ok(Some(remote_sha == sha_hex && n == len))
    }

    /// What the store holds under `key` compared with the local bytes: `None` when nothing,
    /// [`Put::AlreadyThere`] when the same bytes, a [`StoreError::Conflict`] when others.
    async fn existing(
        &self,
        key: &str,
        sha_hex: &str,
        len: u64,
    ) -> Result<Option<Put>, StoreError> {
        match self.matches(key, sha_hex, len).await? {
            Some(true) => Ok(Some(Put::AlreadyThere)),
            Some(false) => Err(self.conflict(key, sha_hex).await),
            None => Ok(None),
        }
    }

    /// A write refused by `If-None-Match: *` (an earlier run of ours wrote the key in between):
    /// the same bytes count as done, anything else is a conflict.
    async fn after_precondition(
        &self,
        err: StoreError,
        key: &str,
        sha_hex: &str,
        len: u64,
    ) -> Result<Put, StoreError> {
        if err.status() != Some(412) && err.code() != Some("PreconditionFailed") {
            return Err(err);
        }
        match self.existing(key, sha_hex, len).await? {
            Some(put) => Ok(put),
            None => Err(self.conflict(key, sha_hex).await),
        }
    }

    /// Writes `bytes` once under `key` with COMPLIANCE retention, an optional legal hold and
    /// its SHA-256; an existing object with the same bytes counts as done, with other bytes
    /// is a [`StoreError::Conflict`] and is left untouched.
    pub async fn put_once(
        &self,
        key: &str,
        bytes: Vec<u8>,
        lock: &Lock,
    ) -> Result<Put, StoreError> {
        let sha_hex = hex::encode(Sha256::digest(&bytes));
        let len = bytes.len() as u64;
        if let Some(put) = self.existing(key, &sha_hex, len).await? {
            return Ok(put);
        }
        let sum = hex_to_b64(&sha_hex).unwrap_or_default();
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(len as i64)
            .body(ByteStream::from(bytes))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&sum)
            .if_none_match("*")
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(lock.retain_until_secs));
        if lock.legal_hold {
            req = req.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
        }
        // The body is bound by the signed `x-amz-checksum-sha256` header, which the store
        // checks: a second SHA-256 of the same bytes for the signature adds nothing.
        match req.customize().disable_payload_signing().send().await {
            Ok(out) => match out.checksum_sha256() {
                Some(c) if c == sum => Ok(Put::Written),
                Some(c) => Err(StoreError::Unconfirmed {
                    key: key.to_string(),
                    msg: format!("sent {sum}, the store answered {c}"),
                }),
                // The server does not echo checksums: confirm by HEAD (or reading back).
                None => match self.matches(key, &sha_hex, len).await? {
                    Some(true) => Ok(Put::Written),
                    Some(false) => Err(self.conflict(key, &sha_hex).await),
                    None => Err(StoreError::Unconfirmed {
                        key: key.to_string(),
                        msg: "the object is not there after the upload".into(),
                    }),
                },
            },
            Err(e) => {
                self.after_precondition(remote("PutObject", key, e), key, &sha_hex, len)
                    .await
            }
        }
    }

    async fn conflict(&self, key: &str, expected: &str) -> StoreError {
        let found = match self.head(key).await {
            Ok(Some(Head {
                checksum_sha256: Some(c),
                ..
            })) if !c.contains('-') => b64_to_hex(&c).unwrap_or(c),
            _ => match self.hash_remote(key).await {
                Ok((sha, _)) => sha,
                Err(e) => format!("unreadable: {e}"),
            },
        };
        StoreError::Conflict {
            key: key.to_string(),
            expected: expected.to_string(),
            found,
        }
    }

    /// Part size in bytes.
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Uploads a local file once under `key`: in one PUT up to the part size, else multipart
    /// with a SHA-256 per part. `sha_hex` is the file's SHA-256 (from the manifest, or computed).
    /// `on_upload` is told the upload id as soon as the server gives it (so a crash can abort
    /// it later).
    pub async fn put_file_once(
        &self,
        key: &str,
        path: &Path,
        sha_hex: &str,
        lock: &Lock,
        on_upload: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Put, StoreError> {
        let local = |source| StoreError::Local {
            path: path.display().to_string(),
            source,
        };
        let len = tokio::fs::metadata(path).await.map_err(local)?.len();
        if len <= self.part_size {
            let bytes = tokio::fs::read(path).await.map_err(local)?;
            return self.put_once(key, bytes, lock).await;
        }
        if let Some(put) = self.existing(key, sha_hex, len).await? {
            return Ok(put);
        }
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata("sha256", sha_hex)
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from_secs(lock.retain_until_secs));
        if lock.legal_hold {
            create = create.object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On);
        }
        let created = create
            .send()
            .await
            .map_err(|e| remote("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        on_upload(&upload_id);
        let result = self.send_parts(key, path, len, sha_hex, &upload_id).await;
        if result.is_err() {
            // Leave no open upload behind (an abort ends an upload, it deletes no object).
            let _ = self.abort(key, &upload_id).await;
        }
        result
    }

    async fn send_parts(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        sha_hex: &str,
        upload_id: &str,
    ) -> Result<Put, StoreError> {
        let parts = len.div_ceil(self.part_size);
        let path = Arc::new(path.to_path_buf());
        let results: Vec<Result<SentPart, StoreError>> = futures_util::stream::iter(1..=parts)
            .map(|n| {
                let path = path.clone();
                async move { self.send_part(key, &path, n, len, upload_id).await }
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut completed = Vec::new();
        let mut composite = Sha256::new();
        let mut etags = Md5::new();
        for r in results {
            let part = r?;
            composite.update(part.sha256);
            etags.update(part.md5);
            completed.push(
                CompletedPart::builder()
                    .part_number(part.number)
                    .e_tag(part.etag)
                    .checksum_sha256(B64.encode(part.sha256))
                    .build(),
            );
        }
        let expected_composite = format!("{}-{}", B64.encode(composite.finalize()), parts);
        // S3's ETag of a multipart object: MD5 of the parts' MD5s, then `-<parts>`.
        let expected_etag = format!("{}-{}", hex::encode(etags.finalize()), parts);
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        let out = match done {
            Ok(out) => out,
            Err(e) => {
                let err = remote("CompleteMultipartUpload", key, e);
                return self.after_precondition(err, key, sha_hex, len).await;
            }
        };
        match out.checksum_sha256() {
            Some(c) if c == expected_composite => return Ok(Put::Written),
            Some(c) => {
                return Err(StoreError::Unconfirmed {
                    key: key.to_string(),
                    msg: format!("composite checksum {c}, expected {expected_composite}"),
                });
            }
            None => {}
        }
        // No composite checksum from the server: its ETag, computed from the parts it stored,
        // confirms them when it is the MD5 form (not under SSE-KMS).
        if out.e_tag().map(|t| t.trim_matches('"')) == Some(expected_etag.as_str()) {
            return Ok(Put::Written);
        }
        // Neither: read the object back.
        let (remote_sha, n) = self.hash_remote(key).await?;
        if remote_sha == sha_hex && n == len {
            Ok(Put::Written)
        } else {
            Err(StoreError::Unconfirmed {
                key: key.to_string(),
                msg: format!(
                    "read back {n} bytes with sha256 {remote_sha}, sent {len} with {sha_hex}"
                ),
            })
        }
    }

    async fn send_part(
        &self,
        key: &str,
        path: &Path,
        n: u64,
        len: u64,
        upload_id: &str,
    ) -> Result<SentPart, StoreError> {
        let start = (n - 1) * self.part_size;
        let size = self.part_size.min(len - start) as usize;
        let file = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || read_part(&file, start, size))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| StoreError::Local {
                path: path.display().to_string(),
                source,
            })?;
        let sum = B64.encode(read.sha256);
        let part_number = n as i32;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(size as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&sum)
            .body(ByteStream::from(read.bytes))
            .customize()
            // As for PutObject: the signed checksum header binds the body.
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| remote("UploadPart", key, e))?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        let md5_hex = hex::encode(read.md5);
        let confirmed = match out.checksum_sha256() {
            Some(c) => c == sum,
            // A store that does not echo the checksum: its ETag is the MD5 of what it stored,
            // unless it is not in the MD5 form at all (then the whole object is read back).
            None => {
                let t = etag.trim_matches('"');
                t == md5_hex || t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit())
            }
        };
        if !confirmed {
            return Err(StoreError::Unconfirmed {
                key: key.to_string(),
                msg: format!(
                    "part {n}: sent sha256 {sum} md5 {md5_hex}, the store answered {} / ETag {etag}",
                    out.checksum_sha256().unwrap_or("no checksum")
                ),
            });
        }
        Ok(SentPart {
            number: part_number,
            etag,
            sha256: read.sha256,
            md5: read.md5,
        })
    }

    /// Ends an unfinished multipart upload (no object is deleted; the parts are dropped).
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = remote("AbortMultipartUpload", key, e);
                // Already gone (completed or aborted before): nothing left open.
                if err.status() == Some(404) || err.code() == Some("NoSuchUpload") {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Unfinished uploads under `prefix` as (key, upload id); `None` when the server cannot
    /// list them.
    pub async fn open_uploads(&self, prefix: &str) -> Option<Vec<(String, String)>> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .ok()?;
        Some(
            out.uploads()
                .iter()
                .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
                .collect(),
        )
    }
}
