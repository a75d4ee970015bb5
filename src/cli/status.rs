//! `callguard status` for people, in the configured `language` (`--json` stays English: it is
//! for machines). The words follow the rest of the product: 担当者 for the agent, お客様 for
//! the caller, 上長 for the team lead.

use std::fmt::Write;
use std::time::Duration;

use crate::config::Language;
use crate::control::DaemonStatus;

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// A duration as the agent reads it elsewhere (`33分00秒`).
fn secs_ja(s: u64) -> String {
    crate::alerts::text::format_elapsed(Duration::from_secs(s), Language::Ja)
}

/// The tracker's connection words (`connecting`, `connected`, `disconnected`).
fn pbx_state_ja(state: &str) -> &str {
    match state {
        "connecting" => "接続しています",
        "connected" => "接続済み",
        "disconnected" => "切断",
        other => other,
    }
}

/// The next warning's kind (`escalate`, `terminate`), as the tray says it.
fn warning_ja(kind: &str) -> &str {
    match kind {
        "escalate" => "上長へ引き継ぎ",
        "terminate" => "終了できる基準",
        other => other,
    }
}

/// The player's audio state (`ok`, `missing`, `off`, `unknown`).
fn audio_ja(state: &str) -> &str {
    match state {
        "ok" => "使えます",
        "missing" => "出力がありません",
        "off" => "使いません",
        "unknown" => "未確認（まだ何も再生していません）",
        other => other,
    }
}

/// The status document for people, in `lang`.
pub fn render(s: &DaemonStatus, lang: Language) -> String {
    match lang {
        Language::En => render_en(s),
        Language::Ja => render_ja(s),
    }
}

fn render_en(s: &DaemonStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "callguard {} — running (pid {}, since {})",
        s.version, s.pid, s.started_at
    );
    match &s.tracker {
        Some(t) => {
            let _ = writeln!(o, "PBX: {} ({})", t.pbx, t.pbx_detail);
            if t.bad_frames > 0 {
                let _ = writeln!(
                    o,
                    "  {} frames refused; last: {}",
                    t.bad_frames,
                    t.last_bad_frame.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(o, "Calls in progress: {}", t.calls.len());
            for c in &t.calls {
                let next = match (&c.next_warning, c.next_warning_after_secs) {
                    (Some(k), Some(a)) => format!(
                        "next: {k} at {} (in {})",
                        secs(a),
                        secs(a.saturating_sub(c.elapsed_secs))
                    ),
                    _ => "no warning left".into(),
                };
                let _ = writeln!(
                    o,
                    "  {}  agent {}  caller {}  elapsed {}  {next}  level {} ({} marks)",
                    c.call_id,
                    c.agent,
                    c.caller,
                    secs(c.elapsed_secs),
                    c.level,
                    c.marks
                );
            }
        }
        None => {
            let _ = writeln!(o, "PBX: unknown (the call tracker did not answer)");
        }
    }
    let _ = writeln!(
        o,
        "Team-lead pings: {} receiver(s){}",
        s.webhooks.len(),
        if s.webhooks.is_empty() {
            " — none configured, leads are not pinged".to_string()
        } else {
            format!(": {}", s.webhooks.join(", "))
        }
    );
    let _ = writeln!(
        o,
        "  outbox {}: {} pending, {} failed",
        s.outbox.dir,
        s.outbox.pending.len(),
        s.outbox.failed.len()
    );
    for e in &s.outbox.pending {
        let _ = writeln!(
            o,
            "  PENDING {} {} call {} → {} ({} attempts; last error: {})",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.attempts,
            e.error.as_deref().unwrap_or("none yet")
        );
    }
    for e in &s.outbox.failed {
        let _ = writeln!(
            o,
            "  FAILED  {} {} call {} → {}: {}",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.error.as_deref().unwrap_or("")
        );
    }
    for u in &s.outbox.unreadable {
        let _ = writeln!(o, "  UNREADABLE {u}");
    }
    if let Some(f) = &s.floor {
        let _ = writeln!(o, "Floor bus: {}", f.describe());
    }
    if !s.parts.is_empty() {
        let _ = writeln!(o, "Parts:");
        for p in &s.parts {
            let _ = writeln!(o, "  {}: {}", p.name, p.describe());
        }
    }
    let n = &s.capabilities.notifications;
    let _ = writeln!(o, "Capabilities:");
    if n.present {
        let _ = writeln!(
            o,
            "  notifications: yes ({}), action buttons: {}",
            n.server.as_deref().unwrap_or("?"),
            if n.actions { "yes" } else { "no" }
        );
    } else {
        let _ = writeln!(
            o,
            "  notifications: NO ({})",
            n.error.as_deref().unwrap_or("no server")
        );
    }
    let a = &s.capabilities.audio;
    let _ = writeln!(
        o,
        "  audio: {} ({})",
        a.state,
        a.detail.as_deref().unwrap_or("")
    );
    let ev = &s.capabilities.evidence;
    match ev.free_mb {
        Some(free) => {
            let low = if free < ev.min_free_mb {
                " — BELOW the minimum, calls are not recorded"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "  evidence: {} — {free} MiB free (minimum {}){low}",
                ev.dir, ev.min_free_mb
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  evidence: {} — free space unknown ({})",
                ev.dir,
                ev.error.as_deref().unwrap_or("")
            );
        }
    }
    if s.recent_errors.is_empty() {
        let _ = writeln!(o, "Recent errors: none");
    } else {
        let _ = writeln!(o, "Recent errors:");
        for e in &s.recent_errors {
            let again = if e.repeats > 0 {
                format!(" (×{})", e.repeats + 1)
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {} {}{again}", e.at, e.what);
        }
    }
    o
}

fn render_ja(s: &DaemonStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "callguard {} — 動作中（pid {}、{} から）",
        s.version, s.pid, s.started_at
    );
    match &s.tracker {
        Some(t) => {
            let detail = if t.pbx_detail.is_empty() {
                String::new()
            } else {
                format!("（{}）", t.pbx_detail)
            };
            let _ = writeln!(o, "PBX：{}{detail}", pbx_state_ja(&t.pbx));
            if t.bad_frames > 0 {
                let _ = writeln!(
                    o,
                    "  受け付けなかったフレーム {} 件。最後：{}",
                    t.bad_frames,
                    t.last_bad_frame.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(o, "通話中：{} 件", t.calls.len());
            for c in &t.calls {
                let next = match (&c.next_warning, c.next_warning_after_secs) {
                    (Some(k), Some(a)) => format!(
                        "次の警告：{}（{}）まで あと {}",
                        secs_ja(a),
                        warning_ja(k),
                        secs_ja(a.saturating_sub(c.elapsed_secs))
                    ),
                    _ => "次の警告：なし".into(),
                };
                let _ = writeln!(
                    o,
                    "  {}  担当者 {}  お客様 {}  経過 {}  {next}  レベル {}（記録 {} 件）",
                    c.call_id,
                    c.agent,
                    c.caller,
                    secs_ja(c.elapsed_secs),
                    c.level,
                    c.marks
                );
            }
        }
        None => {
            let _ = writeln!(o, "PBX：不明（通話の管理部分が応答しませんでした）");
        }
    }
    if s.webhooks.is_empty() {
        let _ = writeln!(
            o,
            "上長への通知：通知先が設定されていません。上長には連絡されません"
        );
    } else {
        let _ = writeln!(
            o,
            "上長への通知：通知先 {} 件：{}",
            s.webhooks.len(),
            s.webhooks.join("、")
        );
    }
    let _ = writeln!(
        o,
        "  送信待ち {}：未送信 {} 件、失敗 {} 件",
        s.outbox.dir,
        s.outbox.pending.len(),
        s.outbox.failed.len()
    );
    for e in &s.outbox.pending {
        let _ = writeln!(
            o,
            "  未送信 {} {} 通話 {} → {}（{} 回試行、最後のエラー：{}）",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.attempts,
            e.error.as_deref().unwrap_or("まだなし")
        );
    }
    for e in &s.outbox.failed {
        let _ = writeln!(
            o,
            "  失敗   {} {} 通話 {} → {}：{}",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.error.as_deref().unwrap_or("")
        );
    }
    for u in &s.outbox.unreadable {
        let _ = writeln!(o, "  読めないファイル {u}");
    }
    if let Some(f) = &s.floor {
        let _ = writeln!(o, "フロア連携：{}", floor_ja(f));
    }
    if !s.parts.is_empty() {
        let _ = writeln!(o, "構成部分：");
        for p in &s.parts {
            let _ = writeln!(
                o,
                "  {}：{}",
                p.name,
                crate::doctor::parts::describe(p, Language::Ja)
            );
        }
    }
    let n = &s.capabilities.notifications;
    let _ = writeln!(o, "この端末でできること：");
    if n.present {
        let _ = writeln!(
            o,
            "  通知：あり（{}）、操作ボタン：{}",
            n.server.as_deref().unwrap_or("?"),
            if n.actions { "あり" } else { "なし" }
        );
    } else {
        let _ = writeln!(
            o,
            "  通知：なし（{}）",
            n.error.as_deref().unwrap_or("通知サーバーがありません")
        );
    }
    let a = &s.capabilities.audio;
    match a.detail.as_deref() {
        Some(d) if !d.is_empty() => {
            let _ = writeln!(o, "  音声：{}（{d}）", audio_ja(&a.state));
        }
        _ => {
            let _ = writeln!(o, "  音声：{}", audio_ja(&a.state));
        }
    }
    let ev = &s.capabilities.evidence;
    match ev.free_mb {
        Some(free) => {
            let low = if free < ev.min_free_mb {
                " — 最低値を下回っています。通話は録音されません"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "  証拠：{} — 空き {free} MiB（最低 {}）{low}",
                ev.dir, ev.min_free_mb
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  証拠：{} — 空き容量がわかりません（{}）",
                ev.dir,
                ev.error.as_deref().unwrap_or("")
            );
        }
    }
    if s.recent_errors.is_empty() {
        let _ = writeln!(o, "最近のエラー：なし");
    } else {
        let _ = writeln!(o, "最近のエラー：");
        for e in &s.recent_errors {
            let again = if e.repeats > 0 {
                format!("（{} 回）", e.repeats + 1)
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {} {}{again}", e.at, e.what);
        }
    }
    o
}

/// The floor link in Japanese (the English line is [`FloorStatus::describe`]).
///
/// [`FloorStatus::describe`]: crate::floor::state::FloorStatus::describe
fn floor_ja(f: &crate::floor::state::FloorStatus) -> String {
    use crate::floor::state::StreamState;
    let link = if f.connected {
        "接続済み"
    } else {
        "接続していません"
    };
    let stream = match f.stream {
        StreamState::Unknown => "ストリームはまだ確認していません",
        StreamState::Present => "ストリームあり",
        StreamState::Missing => "ストリームがありません（イベントは送信待ちのまま）",
    };
    let mut s = format!(
        "{link}（{}、拠点 {}、担当者 {}）、{stream}。送信待ち {} 件（{} KiB／上限 {} MiB）。送信済み {} 件",
        f.url,
        f.site,
        f.agent,
        f.backlog.events,
        f.backlog.bytes.div_ceil(1024),
        f.backlog.max_bytes / (1024 * 1024),
        f.published
    );
    if f.backlog.dropped_heartbeats > 0 {
        s.push_str(&format!(
            "。古い死活通知 {} 件を捨てました",
            f.backlog.dropped_heartbeats
        ));
    }
    if let Some(e) = &f.last_error {
        s.push_str(&format!("。最後のエラー：{e}"));
    }
    if let Some(a) = &f.last_ack {
        s.push_str(&format!(
            "。対応：{} さんが通話 {} を {} に引き受けました",
            a.lead,
            a.call_id,
            a.at.format("%H:%M:%S")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DaemonStatus {
        serde_json::from_value(serde_json::json!({
            "version": "0.1.0",
            "pid": 42,
            "started_at": "2026-11-29T14:00:00+09:00",
            "tracker": {
                "pbx": "connected",
                "pbx_detail": "ws://pbx:8765/",
                "calls": [{
                    "call_id": "c-1", "agent": "1001", "caller": "09012345678",
                    "started_at": "2026-11-29T14:00:00+09:00", "elapsed_secs": 754,
                    "next_warning": "escalate", "next_warning_after_secs": 900,
                    "level": 2, "marks": 1
                }],
                "bad_frames": 0,
                "last_bad_frame": null
            },
            "webhooks": [],
            "outbox": {"dir": "/tmp/outbox", "pending": [], "failed": [], "unreadable": []},
            "capabilities": {
                "notifications": {"present": false, "server": null, "actions": false, "error": "no bus"},
                "audio": {"state": "off", "detail": null},
                "evidence": {"dir": "/tmp/ev", "free_mb": 100, "min_free_mb": 500, "error": null}
            },
            "recent_errors": []
        }))
        .unwrap()
    }

    #[test]
    fn japanese_status_uses_the_products_words() {
        let text = render(&sample(), Language::Ja);
        assert!(text.contains("PBX：接続済み（ws://pbx:8765/）"), "{text}");
        assert!(
            text.contains(
                "c-1  担当者 1001  お客様 09012345678  経過 12分34秒  次の警告：15分00秒（上長へ引き継ぎ）まで あと 2分26秒  レベル 2（記録 1 件）"
            ),
            "{text}"
        );
        assert!(
            text.contains("上長への通知：通知先が設定されていません"),
            "{text}"
        );
        assert!(text.contains("最低値を下回っています"), "{text}");
        for english in ["running", "Calls in progress", "next:", "Recent errors"] {
            assert!(!text.contains(english), "{english} in:\n{text}");
        }
        let en = render(&sample(), Language::En);
        assert!(en.contains("PBX: connected (ws://pbx:8765/)"), "{en}");
    }
}
