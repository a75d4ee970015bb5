//! `callguard status` for people, in the configured `language` (`--json` stays English: it is
//! for machines). The words follow the rest of the product: 担当者 for the agent, お客様 for
//! the caller, 上長 for the team lead.

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
    let ja = lang == Language::Ja;
    // Each line in both languages; `pick` chooses. The structure is shared.
    let pick = |j: String, e: String| if ja { j } else { e };
    let dur = |secs_: u64| if ja { secs_ja(secs_) } else { secs(secs_) };
    let mut o = String::new();
    let mut line = |text: String| {
        o.push_str(&text);
        o.push('\n');
    };
    line(crate::doctor::parts::daemon_line(s, lang));
    match &s.tracker {
        Some(t) => {
            line(pick(
                if t.pbx_detail.is_empty() {
                    format!("PBX：{}", pbx_state_ja(&t.pbx))
                } else {
                    format!("PBX：{}（{}）", pbx_state_ja(&t.pbx), t.pbx_detail)
                },
                format!("PBX: {} ({})", t.pbx, t.pbx_detail),
            ));
            if t.bad_frames > 0 {
                let last = t.last_bad_frame.as_deref().unwrap_or("");
                line(pick(
                    format!(
                        "  受け付けなかったフレーム {} 件。最後：{last}",
                        t.bad_frames
                    ),
                    format!("  {} frames refused; last: {last}", t.bad_frames),
                ));
            }
            line(pick(
                format!("通話中：{} 件", t.calls.len()),
                format!("Calls in progress: {}", t.calls.len()),
            ));
            for c in &t.calls {
                let next = match (&c.next_warning, c.next_warning_after_secs) {
                    (Some(k), Some(a)) => {
                        let left = dur(a.saturating_sub(c.elapsed_secs));
                        pick(
                            format!("次の警告：{}（{}）まで あと {left}", dur(a), warning_ja(k)),
                            format!("next: {k} at {} (in {left})", dur(a)),
                        )
                    }
                    _ => pick("次の警告：なし".into(), "no warning left".into()),
                };
                let elapsed = dur(c.elapsed_secs);
                line(pick(
                    format!(
                        "  {}  担当者 {}  お客様 {}  経過 {elapsed}  {next}  レベル {}（記録 {} 件）",
                        c.call_id, c.agent, c.caller, c.level, c.marks
                    ),
                    format!(
                        "  {}  agent {}  caller {}  elapsed {elapsed}  {next}  level {} ({} marks)",
                        c.call_id, c.agent, c.caller, c.level, c.marks
                    ),
                ));
            }
        }
        None => line(pick(
            "PBX：不明（通話の管理部分が応答しませんでした）".into(),
            "PBX: unknown (the call tracker did not answer)".into(),
        )),
    }
    let n = s.webhooks.len();
    line(match (s.webhooks.is_empty(), ja) {
        (true, true) => "上長への通知：通知先が設定されていません。上長には連絡されません".into(),
        (false, true) => format!("上長への通知：通知先 {n} 件：{}", s.webhooks.join("、")),
        (true, false) => {
            format!("Team-lead pings: {n} receiver(s) — none configured, leads are not pinged")
        }
        (false, false) => format!(
            "Team-lead pings: {n} receiver(s): {}",
            s.webhooks.join(", ")
        ),
    });
    let (dir, pending, failed) = (&s.outbox.dir, s.outbox.pending.len(), s.outbox.failed.len());
    line(pick(
        format!("  送信待ち {dir}：未送信 {pending} 件、失敗 {failed} 件"),
        format!("  outbox {dir}: {pending} pending, {failed} failed"),
    ));
    for e in &s.outbox.pending {
        let err = e.error.as_deref();
        line(pick(
            format!(
                "  未送信 {} {} 通話 {} → {}（{} 回試行、最後のエラー：{}）",
                e.ping_id,
                e.kind,
                e.call_id,
                e.receiver,
                e.attempts,
                err.unwrap_or("まだなし")
            ),
            format!(
                "  PENDING {} {} call {} → {} ({} attempts; last error: {})",
                e.ping_id,
                e.kind,
                e.call_id,
                e.receiver,
                e.attempts,
                err.unwrap_or("none yet")
            ),
        ));
    }
    for e in &s.outbox.failed {
        let err = e.error.as_deref().unwrap_or("");
        line(pick(
            format!(
                "  失敗   {} {} 通話 {} → {}：{err}",
                e.ping_id, e.kind, e.call_id, e.receiver
            ),
            format!(
                "  FAILED  {} {} call {} → {}: {err}",
                e.ping_id, e.kind, e.call_id, e.receiver
            ),
        ));
    }
    for u in &s.outbox.unreadable {
        line(pick(
            format!("  読めないファイル {u}"),
            format!("  UNREADABLE {u}"),
        ));
    }
    if let Some(f) = &s.floor {
        line(pick(
            format!("フロア連携：{}", floor_ja(f)),
            format!("Floor bus: {}", f.describe()),
        ));
    }
    if let Some(r) = &s.config_reload {
        line(pick(r.describe_ja(), r.describe()));
    }
    if !s.parts.is_empty() {
        line(pick("構成部分：".into(), "Parts:".into()));
        for p in &s.parts {
            let state = crate::doctor::parts::describe(p, lang);
            line(pick(
                format!("  {}：{state}", p.name),
                format!("  {}: {state}", p.name),
            ));
        }
    }
    line(pick(
        "この端末でできること：".into(),
        "Capabilities:".into(),
    ));
    let n = &s.capabilities.notifications;
    if n.present {
        let server = n.server.as_deref().unwrap_or("?");
        line(pick(
            format!(
                "  通知：あり（{server}）、操作ボタン：{}",
                if n.actions { "あり" } else { "なし" }
            ),
            format!(
                "  notifications: yes ({server}), action buttons: {}",
                if n.actions { "yes" } else { "no" }
            ),
        ));
    } else {
        line(pick(
            format!(
                "  通知：なし（{}）",
                n.error.as_deref().unwrap_or("通知サーバーがありません")
            ),
            format!(
                "  notifications: NO ({})",
                n.error.as_deref().unwrap_or("no server")
            ),
        ));
    }
    let a = &s.capabilities.audio;
    let detail = a.detail.as_deref().unwrap_or("");
    line(pick(
        if detail.is_empty() {
            format!("  音声：{}", audio_ja(&a.state))
        } else {
            format!("  音声：{}（{detail}）", audio_ja(&a.state))
        },
        format!("  audio: {} ({detail})", a.state),
    ));
    let ev = &s.capabilities.evidence;
    let (dir, min) = (&ev.dir, ev.min_free_mb);
    line(match ev.free_mb {
        Some(free) => {
            let low = free < min;
            pick(
                format!(
                    "  証拠：{dir} — 空き {free} MiB（最低 {min}）{}",
                    if low {
                        " — 最低値を下回っています。通話は録音されません"
                    } else {
                        ""
                    }
                ),
                format!(
                    "  evidence: {dir} — {free} MiB free (minimum {min}){}",
                    if low {
                        " — BELOW the minimum, calls are not recorded"
                    } else {
                        ""
                    }
                ),
            )
        }
        None => {
            let why = ev.error.as_deref().unwrap_or("");
            pick(
                format!("  証拠：{dir} — 空き容量がわかりません（{why}）"),
                format!("  evidence: {dir} — free space unknown ({why})"),
            )
        }
    });
    if s.recent_errors.is_empty() {
        line(pick(
            "最近のエラー：なし".into(),
            "Recent errors: none".into(),
        ));
    } else {
        line(pick("最近のエラー：".into(), "Recent errors:".into()));
        for e in &s.recent_errors {
            let again = match (e.repeats, ja) {
                (0, _) => String::new(),
                (r, true) => format!("（{} 回）", r + 1),
                (r, false) => format!(" (×{})", r + 1),
            };
            line(format!("  {} {}{again}", e.at, e.what));
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
    if let Some(e) = &f.backlog.not_on_disk {
        s.push_str(&format!(
            "。送信待ちをディスクに書けません（{e}）：メモリから送信し、書けるようになったら書き直します"
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
