//! `callguard doctor` lines for `[archive]`: the endpoint answers, the credentials are taken,
//! the bucket has Object Lock with versioning, a test object goes up and comes back, and the
//! backlog with its last error.

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled};

use super::archiver::{self, Backlog};
use super::store::{Lock, Store, StoreError};
use crate::config::Config;
use crate::health::{Check, Status};

fn check(name: &str, status: Status, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: name.to_string(),
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// The key of the doctor's test object: fixed, small, under `<prefix>/<host>/doctor/`. With
/// Object Lock it cannot be deleted, so every run writes the same key (a new version).
pub fn test_key(cfg: &Config) -> String {
    let p = cfg.archive.clean_prefix();
    let host = super::host();
    if p.is_empty() {
        format!("{host}/doctor/roundtrip.txt")
    } else {
        format!("{p}/{host}/doctor/roundtrip.txt")
    }
}

/// The archive's lines; none when `[archive]` is not configured.
pub async fn checks(cfg: &Config) -> Vec<Check> {
    if !cfg.archive.enabled() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let store = match Store::connect(&cfg.archive).await {
        Ok(s) => s,
        Err(e) => {
            out.push(check(
                "archive",
                Status::Fail,
                e.to_string(),
                "fix the [archive] settings (key files, ca_file)",
            ));
            return out;
        }
    };
    match store.check_bucket().await {
        Ok(()) => out.push(check(
            "archive",
            Status::Pass,
            format!(
                "{} bucket {}: reachable, credentials taken",
                if cfg.archive.endpoint.is_empty() {
                    "AWS"
                } else {
                    cfg.archive.endpoint.as_str()
                },
                cfg.archive.bucket
            ),
            "",
        )),
        Err(e) => {
            let fix = match &e {
                StoreError::Setup(_) => {
                    "create the bucket with Object Lock, or fix the credentials (README \"Archive\")"
                }
                _ => "check archive.endpoint, the network and archive.ca_file",
            };
            out.push(check("archive", Status::Fail, e.to_string(), fix));
            out.push(backlog_check(cfg));
            return out;
        }
    }
    out.push(lock_check(&store).await);
    out.push(roundtrip_check(cfg, &store).await);
    out.push(backlog_check(cfg));
    out
}

async fn lock_check(store: &Store) -> Check {
    const FIX: &str = "create the bucket with Object Lock enabled (it turns versioning on) and a default COMPLIANCE retention; see README \"Archive\"";
    let c = store.client();
    let lock = c
        .get_object_lock_configuration()
        .bucket(&store.bucket)
        .send()
        .await;
    let versioning = c.get_bucket_versioning().bucket(&store.bucket).send().await;
    match (lock, versioning) {
        (Ok(l), Ok(v)) => {
            let on = l
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                == Some(&ObjectLockEnabled::Enabled);
            let versioned = v.status() == Some(&BucketVersioningStatus::Enabled);
            if on && versioned {
                check(
                    "archive-lock",
                    Status::Pass,
                    "Object Lock enabled, versioning enabled",
                    "",
                )
            } else {
                check(
                    "archive-lock",
                    Status::Warn,
                    format!(
                        "Object Lock {}, versioning {}",
                        if on { "enabled" } else { "NOT enabled" },
                        if versioned { "enabled" } else { "NOT enabled" }
                    ),
                    FIX,
                )
            }
        }
        (l, v) => {
            let why = l
                .err()
                .map(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                .or_else(|| {
                    v.err()
                        .map(|e| format!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
                })
                .unwrap_or_default();
            check(
                "archive-lock",
                Status::Warn,
                format!("the store cannot say whether Object Lock and versioning are on ({why})"),
                FIX,
            )
        }
    }
}

async fn roundtrip_check(cfg: &Config, store: &Store) -> Check {
    let key = test_key(cfg);
    let body = format!(
        "callguard doctor round trip from {} (this object stays: Object Lock forbids deleting it)\n",
        super::host()
    );
    let lock = Lock {
        // A day is enough for a test object.
        retain_until_secs: chrono::Utc::now().timestamp() + 86_400,
        legal_hold: false,
    };
    let bytes = body.clone().into_bytes();
    // The same key each run: an earlier run's object with the same text counts as done.
    let put = match store.put_once(&key, bytes.clone(), &lock).await {
        Ok(p) => Ok(p),
        Err(StoreError::Conflict { .. }) => Ok(super::store::Put::AlreadyThere),
        Err(e) => Err(e),
    };
    match put {
        Ok(_) => match store.get(&key).await {
            Ok(back) if back == bytes => check(
                "archive-roundtrip",
                Status::Pass,
                format!(
                    "test object {key} written and read back (kept: Object Lock forbids deleting it)"
                ),
                "",
            ),
            Ok(_) => check(
                "archive-roundtrip",
                Status::Warn,
                format!(
                    "test object {key} reads back with other content (an earlier run from another host name?)"
                ),
                "",
            ),
            Err(e) => check(
                "archive-roundtrip",
                Status::Fail,
                format!("read back: {e}"),
                "the credentials need s3:GetObject (README \"Archive\")",
            ),
        },
        Err(e) => check(
            "archive-roundtrip",
            Status::Fail,
            format!("write: {e}"),
            "the credentials need s3:PutObject, s3:PutObjectRetention, s3:PutObjectLegalHold (README \"Archive\")",
        ),
    }
}

/// The backlog line (also used when the store is down).
pub fn backlog_check(cfg: &Config) -> Check {
    let b: Backlog = archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir());
    let detail = describe(&b);
    let old = b
        .oldest
        .as_deref()
        .and_then(|o| chrono::DateTime::parse_from_rfc3339(o).ok())
        .is_some_and(|t| {
            (chrono::Local::now().fixed_offset() - t)
                .to_std()
                .unwrap_or_default()
                >= cfg.archive.alert_after
        });
    if b.conflicts > 0 || old {
        check(
            "archive-backlog",
            Status::Fail,
            detail,
            "see the last error; an object that exists with other content is never overwritten: find out who wrote it",
        )
    } else if b.last_error.is_some() && b.lines > 0 {
        check(
            "archive-backlog",
            Status::Warn,
            detail,
            "see the last error",
        )
    } else {
        check("archive-backlog", Status::Pass, detail, "")
    }
}

/// One line: folders, bytes, oldest, last error.
pub fn describe(b: &Backlog) -> String {
    let mut s = format!(
        "{} call folder(s), {} ledger line(s), {} bytes waiting",
        b.folders, b.lines, b.bytes
    );
    if let Some(o) = &b.oldest {
        s.push_str(&format!("; oldest sealed {o}"));
    }
    if b.conflicts > 0 {
        s.push_str(&format!("; {} CONFLICT(S)", b.conflicts));
    }
    if let Some(e) = &b.last_error {
        s.push_str(&format!(
            "; last error{}: {e}",
            b.last_error_at
                .as_deref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default()
        ));
    }
    s
}
