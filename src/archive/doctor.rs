//! `callguard doctor` lines for `[archive]`: the endpoint answers, the credentials are taken,
//! the bucket has Object Lock with versioning, a test object goes up and comes back, and the
//! backlog with its last error.

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled};

use super::archiver::{self, Backlog};
use super::store::{Lock, Store, StoreError};
use crate::config::Config;
use crate::config::Language;
use crate::health::{Check, Status, say};

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
pub async fn checks(cfg: &Config, lang: Language) -> Vec<Check> {
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
                say(
                    lang,
                    "[archive] の設定（鍵ファイル、ca_file）を直してください",
                    "fix the [archive] settings (key files, ca_file)",
                ),
            ));
            return out;
        }
    };
    match store.check_bucket().await {
        Ok(()) => out.push(check(
            "archive",
            Status::Pass,
            {
                let at = if cfg.archive.endpoint.is_empty() {
                    "AWS"
                } else {
                    cfg.archive.endpoint.as_str()
                };
                let bucket = &cfg.archive.bucket;
                say(
                    lang,
                    format!("{at} のバケット {bucket}：接続でき、認証情報も通りました"),
                    format!("{at} bucket {bucket}: reachable, credentials taken"),
                )
            },
            "",
        )),
        Err(e) => {
            let fix = match &e {
                StoreError::Setup(_) => say(
                    lang,
                    "Object Lock 付きでバケットを作るか、認証情報を直してください（README「Archive」）",
                    "create the bucket with Object Lock, or fix the credentials (README \"Archive\")",
                ),
                _ => say(
                    lang,
                    "archive.endpoint、ネットワーク、archive.ca_file を確かめてください",
                    "check archive.endpoint, the network and archive.ca_file",
                ),
            };
            out.push(check("archive", Status::Fail, e.to_string(), fix));
            out.push(backlog_check(cfg, lang));
            return out;
        }
    }
    out.push(lock_check(&store, lang).await);
    out.push(roundtrip_check(cfg, &store, lang).await);
    out.push(backlog_check(cfg, lang));
    out
}

async fn lock_check(store: &Store, lang: Language) -> Check {
    let fix = say(
        lang,
        "Object Lock を有効にして（バージョニングも有効になります）既定の COMPLIANCE 保持期間を付けたバケットを作ってください（README「Archive」）",
        "create the bucket with Object Lock enabled (it turns versioning on) and a default COMPLIANCE retention; see README \"Archive\"",
    );
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
                    say(
                        lang,
                        "Object Lock 有効、バージョニング有効",
                        "Object Lock enabled, versioning enabled",
                    ),
                    "",
                )
            } else {
                check(
                    "archive-lock",
                    Status::Warn,
                    say(
                        lang,
                        format!(
                            "Object Lock {}、バージョニング {}",
                            if on { "有効" } else { "無効" },
                            if versioned { "有効" } else { "無効" }
                        ),
                        format!(
                            "Object Lock {}, versioning {}",
                            if on { "enabled" } else { "NOT enabled" },
                            if versioned { "enabled" } else { "NOT enabled" }
                        ),
                    ),
                    fix,
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
                say(
                    lang,
                    format!(
                        "Object Lock とバージョニングが有効か、ストアから確かめられません（{why}）"
                    ),
                    format!(
                        "the store cannot say whether Object Lock and versioning are on ({why})"
                    ),
                ),
                fix,
            )
        }
    }
}

async fn roundtrip_check(cfg: &Config, store: &Store, lang: Language) -> Check {
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
                say(
                    lang,
                    format!(
                        "試験用オブジェクト {key} を書いて読み戻しました（Object Lock により削除できないため残ります）"
                    ),
                    format!(
                        "test object {key} written and read back (kept: Object Lock forbids deleting it)"
                    ),
                ),
                "",
            ),
            Ok(_) => check(
                "archive-roundtrip",
                Status::Warn,
                say(
                    lang,
                    format!(
                        "試験用オブジェクト {key} の中身が違います（別のホスト名での以前の実行？）"
                    ),
                    format!(
                        "test object {key} reads back with other content (an earlier run from another host name?)"
                    ),
                ),
                "",
            ),
            Err(e) => check(
                "archive-roundtrip",
                Status::Fail,
                say(lang, format!("読み戻し：{e}"), format!("read back: {e}")),
                say(
                    lang,
                    "認証情報に s3:GetObject が必要です（README「Archive」）",
                    "the credentials need s3:GetObject (README \"Archive\")",
                ),
            ),
        },
        Err(e) => check(
            "archive-roundtrip",
            Status::Fail,
            say(lang, format!("書き込み：{e}"), format!("write: {e}")),
            say(
                lang,
                "認証情報に s3:PutObject、s3:PutObjectRetention、s3:PutObjectLegalHold が必要です（README「Archive」）",
                "the credentials need s3:PutObject, s3:PutObjectRetention, s3:PutObjectLegalHold (README \"Archive\")",
            ),
        ),
    }
}

/// The backlog line (also used when the store is down).
pub fn backlog_check(cfg: &Config, lang: Language) -> Check {
    let b: Backlog = archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir());
    let detail = match lang {
        Language::Ja => describe_ja(&b),
        Language::En => describe(&b),
    };
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
            say(
                lang,
                "最後のエラーを見てください。別の中身で既にあるオブジェクトは決して上書きしません。誰が書いたか調べてください",
                "see the last error; an object that exists with other content is never overwritten: find out who wrote it",
            ),
        )
    } else if b.last_error.is_some() && b.lines > 0 {
        check(
            "archive-backlog",
            Status::Warn,
            detail,
            say(lang, "最後のエラーを見てください", "see the last error"),
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

/// [`describe`] in Japanese, for the doctor under `language = "ja"`.
pub fn describe_ja(b: &Backlog) -> String {
    let mut s = format!(
        "通話フォルダー {} 件、台帳行 {} 件、{} バイトが待機中",
        b.folders, b.lines, b.bytes
    );
    if let Some(o) = &b.oldest {
        s.push_str(&format!("。最も古い封印：{o}"));
    }
    if b.conflicts > 0 {
        s.push_str(&format!("。不一致 {} 件", b.conflicts));
    }
    if let Some(e) = &b.last_error {
        let at = b
            .last_error_at
            .as_deref()
            .map(|t| format!("（{t}）"))
            .unwrap_or_default();
        s.push_str(&format!("。最後のエラー{at}：{e}"));
    }
    s
}
