//! `[archive]`: where sealed evidence is copied off the workstation (S3 API with Object Lock).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest retention `archive.retention_days` takes: a hundred years (a retention date past
/// the calendar's range would not be a date at all).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// `[archive]`. The archive is on when `bucket` is set; without it the daemon works alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// S3 endpoint URL (`https://s3.example.net`); empty = AWS's endpoint for `region`.
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Bucket (Object Lock and versioning on). Empty = no archive.
    pub bucket: String,
    /// Key prefix; objects go to `<prefix>/<host>/…`.
    pub prefix: String,
    /// File holding the access key id; empty = the standard AWS environment / instance
    /// credentials.
    pub access_key_file: String,
    /// File holding the secret access key.
    pub secret_key_file: String,
    /// PEM file with the private CA of the endpoint (added to the system roots).
    pub ca_file: String,
    /// COMPLIANCE retention of every object, counted from the call's sealing.
    pub retention_days: u32,
    /// Calls whose incident level is at or above this also get a legal hold.
    pub legal_hold_level: u8,
    /// Path-style addressing (`endpoint/bucket/key`), for most on-premises servers.
    pub path_style: bool,
    /// Remove a local call folder this many days after sealing, once its archived copy was
    /// verified; absent = keep forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_local_days: Option<u32>,
    /// The team lead is pinged once when the oldest unarchived call is older than this.
    #[serde(with = "crate::config::duration")]
    pub alert_after: Duration,
    /// Files larger than this many MiB are uploaded in parts of this size (5 or more).
    pub part_size_mb: u64,
    /// Parts sent at the same time.
    pub concurrency: usize,
    /// Longest wait between two attempts while the store is unreachable.
    #[serde(with = "crate::config::duration")]
    pub retry_max: Duration,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: "callguard".into(),
            access_key_file: String::new(),
            secret_key_file: String::new(),
            ca_file: String::new(),
            retention_days: 1095,
            legal_hold_level: 3,
            path_style: false,
            keep_local_days: None,
            alert_after: Duration::from_secs(4 * 3600),
            part_size_mb: 16,
            concurrency: 4,
            retry_max: Duration::from_secs(5 * 60),
        }
    }
}

/// Why `[archive]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveConfigError {
    /// A value is not usable.
    #[error("invalid value for `archive.{key}`: {msg}")]
    Invalid {
        /// Key within `[archive]`.
        key: &'static str,
        /// What is wrong.
        msg: String,
    },
}

impl ArchiveConfig {
    /// Whether archiving is configured.
    pub fn enabled(&self) -> bool {
        !self.bucket.is_empty()
    }

    /// The prefix without slashes at its ends.
    pub fn clean_prefix(&self) -> String {
        self.prefix.trim_matches('/').to_string()
    }

    /// Part size in bytes.
    pub fn part_size(&self) -> u64 {
        self.part_size_mb.max(5) * 1024 * 1024
    }

    /// Checks what the schema cannot.
    pub fn validate(&self) -> Result<(), ArchiveConfigError> {
        let invalid = |key, msg: &str| ArchiveConfigError::Invalid {
            key,
            msg: msg.to_string(),
        };
        if !self.enabled() {
            return Ok(());
        }
        if !self.endpoint.is_empty() {
            match url::Url::parse(&self.endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(invalid("endpoint", "must be an http(s) URL")),
            }
        }
        if self.access_key_file.is_empty() != self.secret_key_file.is_empty() {
            return Err(invalid(
                "access_key_file",
                "give both access_key_file and secret_key_file, or neither (AWS environment)",
            ));
        }
        if self.retention_days == 0 || self.retention_days > MAX_RETENTION_DAYS {
            return Err(invalid(
                "retention_days",
                "must be 1 to 36500 (a hundred years)",
            ));
        }
        if self.part_size_mb < 5 {
            return Err(invalid(
                "part_size_mb",
                "S3 parts are 5 MiB or more (except the last)",
            ));
        }
        if self.concurrency == 0 {
            return Err(invalid("concurrency", "must be 1 or more"));
        }
        if self.retry_max.is_zero() {
            return Err(invalid("retry_max", "must be more than 0"));
        }
        if self.bucket.contains('/') {
            return Err(invalid("bucket", "a bucket name has no `/`"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_one_day_to_a_hundred_years() {
        let cfg = |days| ArchiveConfig {
            bucket: "evidence".into(),
            retention_days: days,
            ..ArchiveConfig::default()
        };
        assert!(cfg(1).validate().is_ok());
        assert!(cfg(MAX_RETENTION_DAYS).validate().is_ok());
        for days in [0, MAX_RETENTION_DAYS + 1, u32::MAX] {
            let err = cfg(days).validate().unwrap_err().to_string();
            assert!(
                err.contains("retention_days") && err.contains("36500"),
                "{err}"
            );
        }
    }
}
