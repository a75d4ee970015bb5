//! One call's incident record as PDF, for HR, a lawyer or the police: the sealed `incident.md`
//! when the sealed folder is at hand, else what the floor's store knows of the call (and a plain
//! statement of what is missing), with the evidence's SHA-256, the signing key id, the signature
//! state and the `callguard verify` command that checks it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::pdf::Pager;
use super::tables::Table;
use super::{ReportError, write_file};
use crate::evidence::layout::{MANIFEST_FILE, safe_call_id};
use crate::evidence::manifest::Manifest;
use crate::floor::service::store::{BoardData, CallRow, Store};

/// The sealed folder as found on disk (copied from the workstation or the archive).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedFolder {
    /// The folder.
    pub dir: PathBuf,
    /// `incident.md`, if the folder has one.
    pub incident_md: Option<String>,
    /// SHA-256 of `manifest.json`'s bytes.
    pub manifest_sha256: String,
    /// The signing key id the manifest names.
    pub key_id: String,
    /// SHA-256 of the recording, as sealed.
    pub audio_sha256: Option<String>,
    /// Signature and hashes: `Some(failures)` when checked against a public key (empty = good),
    /// `None` when no key was given.
    pub verdict: Option<Vec<String>>,
}

/// Everything the record shows.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    /// The call.
    pub call: CallRow,
    /// Its marks, escalations and acks from the store.
    pub details: BoardData,
    /// The ledger line the workstation published for the call's sealed folder: (folder
    /// relative to the evidence root, manifest SHA-256).
    pub ledger: Option<(String, String)>,
    /// The sealed folder, when given.
    pub folder: Option<SealedFolder>,
}

/// Reads a sealed folder; with `pubkey`, verifies it the way `callguard verify` does.
pub fn read_folder(dir: &Path, pubkey: Option<&Path>) -> Result<SealedFolder, ReportError> {
    let err = |path: PathBuf| move |source| ReportError::Write { path, source };
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path).map_err(err(manifest_path.clone()))?;
    let manifest: Option<Manifest> = serde_json::from_slice(&bytes).ok();
    let md_path = dir.join(crate::evidence::incident::MD_FILE);
    let incident_md = std::fs::read_to_string(&md_path).ok();
    let verdict = match pubkey {
        None => None,
        Some(p) => {
            let key = crate::evidence::keys::read_public(p)
                .map_err(|e| ReportError::Pdf(format!("public key {}: {e}", p.display())))?;
            let out = crate::evidence::verify::verify_paths(&[dir.to_path_buf()], &key)
                .map_err(|e| ReportError::Pdf(e.to_string()))?;
            Some(
                out.calls
                    .into_iter()
                    .flat_map(|c| c.failures)
                    .chain(out.ledgers.into_iter().flat_map(|l| l.failures))
                    .collect(),
            )
        }
    };
    Ok(SealedFolder {
        dir: dir.to_path_buf(),
        incident_md,
        manifest_sha256: hex::encode(Sha256::digest(&bytes)),
        key_id: manifest
            .as_ref()
            .map(|m| m.key_id.clone())
            .unwrap_or_default(),
        audio_sha256: manifest
            .as_ref()
            .and_then(|m| m.audio.as_ref().map(|a| a.sha256.clone())),
        verdict,
    })
}

/// Gathers the record of the call `key` from the store (and `folder`, when given).
pub async fn gather(
    store: &Store,
    key: &str,
    folder: Option<SealedFolder>,
) -> Result<IncidentRecord, ReportError> {
    let call = store
        .call(key)
        .await?
        .ok_or_else(|| ReportError::NoCall(key.to_string()))?;
    let details = store.call_details(key).await?;
    // The workstation publishes each ledger line with the sealed folder's path, whose name ends
    // in the call id (`HHMMSS_<call id>`, `.N` when taken).
    let suffix = format!("_{}", safe_call_id(&call.call_id));
    let rows = sqlx::query(
        "SELECT body FROM events WHERE kind = 'ledger' AND site = $1 AND agent = $2 \
         ORDER BY at_ms",
    )
    .bind(&call.site)
    .bind(&call.agent)
    .fetch_all(store.pool())
    .await?;
    let mut ledger = None;
    for r in rows {
        let body: String = r.try_get(0)?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            continue;
        };
        let dir = v["dir"].as_str().unwrap_or_default();
        let name = dir.rsplit('/').next().unwrap_or_default();
        let base = name.split('.').next().unwrap_or_default();
        if base.ends_with(&suffix) {
            ledger = Some((
                dir.to_string(),
                v["manifest_sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    Ok(IncidentRecord {
        call,
        details,
        ledger,
        folder,
    })
}

fn ts(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// Renders `rec` as PDF with the font at `font`.
pub fn render(rec: &IncidentRecord, font: &Path) -> Result<Vec<u8>, ReportError> {
    let c = &rec.call;
    let mut p = Pager::new("インシデント記録", font)?;
    p.line("インシデント記録（カスタマーハラスメント）", 16.0);
    p.line(&format!("通話 {}", c.key), 9.0);

    p.heading("通話の概要");
    let duration = match (c.started_ms, c.ended_ms) {
        (Some(s), Some(e)) => super::html::secs(Some((e - s) as f64 / 1000.0)),
        _ => "通話中または不明".into(),
    };
    let rows = vec![
        vec!["担当者".into(), format!("{} ({})", c.agent_name, c.agent)],
        vec!["端末".into(), c.host.clone()],
        vec![
            "架電者".into(),
            c.caller_key.clone().unwrap_or_else(|| "—".into()),
        ],
        vec!["開始".into(), ts(c.started_ms)],
        vec!["終了".into(), ts(c.ended_ms)],
        vec!["通話時間".into(), duration],
        vec!["最高レベル".into(), c.level.to_string()],
        vec!["マーク数".into(), c.marks.to_string()],
    ];
    p.table(
        &[45.0, 135.0],
        &Table {
            head: vec!["項目", "内容"],
            rows,
        },
    );

    p.heading("記録本文（incident.md）");
    match rec.folder.as_ref().and_then(|f| f.incident_md.as_ref()) {
        Some(md) => {
            for l in md.lines() {
                if l.trim().is_empty() {
                    p.y += 2.0;
                } else {
                    p.para(l, 9.0);
                }
            }
        }
        None => {
            p.para(
                "封印された incident.md はフロアに届いていません。以下はフロアのストアが受信した\
                 イベント（マーク・エスカレーション・対応）から作成したもので、封印された記録そのもの\
                 ではありません。封印フォルダ（ワークステーションまたはアーカイブ）を --folder で\
                 指定すると本文と署名の検証結果が入ります。",
                9.0,
            );
            let d = &rec.details;
            let mut events: Vec<(i64, String, String)> = Vec::new();
            for m in &d.marks {
                events.push((
                    m.at_ms,
                    format!("マーク {}（レベル{}）", m.mark, m.level),
                    format!("「{}」", m.quote),
                ));
            }
            for e in &d.escalations {
                events.push((
                    e.at_ms,
                    "エスカレーション".into(),
                    format!("{} / {}", e.reason, e.delivery),
                ));
            }
            for a in &d.acks {
                events.push((a.at_ms, "対応します".into(), a.lead.clone()));
            }
            events.sort_by_key(|e| e.0);
            let rows: Vec<Vec<String>> = events
                .into_iter()
                .map(|(at, what, detail)| vec![ts(Some(at)), what, detail])
                .collect();
            p.table(
                &[48.0, 50.0, 82.0],
                &Table {
                    head: vec!["時刻", "出来事", "内容（逐語）"],
                    rows,
                },
            );
        }
    }

    p.heading("証拠の完全性");
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    match &rec.folder {
        Some(f) => {
            rows.push(vec![
                "manifest.json SHA-256".into(),
                f.manifest_sha256.clone(),
            ]);
            rows.push(vec!["鍵ID (key_id)".into(), f.key_id.clone()]);
            rows.push(vec![
                "録音 SHA-256".into(),
                f.audio_sha256.clone().unwrap_or_else(|| "録音なし".into()),
            ]);
            rows.push(vec![
                "署名の状態".into(),
                match &f.verdict {
                    None => "未検証（公開鍵の指定なし）".into(),
                    Some(v) if v.is_empty() => "検証済み：署名・ハッシュとも一致".into(),
                    Some(v) => format!("不一致：{}", v.join("; ")),
                },
            ]);
        }
        None => {
            missing.push("鍵ID・署名の状態（封印フォルダ未受信）");
        }
    }
    match &rec.ledger {
        Some((dir, sha)) => {
            rows.push(vec!["台帳の manifest SHA-256".into(), sha.clone()]);
            rows.push(vec!["封印フォルダ".into(), dir.clone()]);
            if let Some(f) = &rec.folder
                && !sha.is_empty()
                && *sha != f.manifest_sha256
            {
                rows.push(vec![
                    "照合".into(),
                    "台帳の値とフォルダの manifest が一致しません".into(),
                ]);
            }
        }
        None => missing.push("台帳行（ワークステーションから未受信）"),
    }
    if !rows.is_empty() {
        p.table(
            &[50.0, 130.0],
            &Table {
                head: vec!["項目", "値"],
                rows,
            },
        );
    }
    for m in missing {
        p.para(&format!("未受信: {m}"), 9.0);
    }

    p.heading("検証方法");
    let target = rec
        .folder
        .as_ref()
        .map(|f| f.dir.display().to_string())
        .or_else(|| {
            rec.ledger
                .as_ref()
                .map(|l| format!("<証拠フォルダ>/{}", l.0))
        })
        .unwrap_or_else(|| "<封印フォルダ>".into());
    p.para(
        "端末の公開鍵（callguard key show で表示）を使い、次のコマンドで封印フォルダの署名と\
         ハッシュを確認できます（終了コード 0 = 改ざんなし）:",
        9.0,
    );
    p.line(
        &format!("callguard verify --pubkey <公開鍵.pem> {target}"),
        9.0,
    );
    p.finish()
}

/// Writes the record PDF to `out`.
pub fn write(rec: &IncidentRecord, font: &Path, out: &Path) -> Result<(), ReportError> {
    let bytes = render(rec, font)?;
    write_file(out, &bytes)
}
