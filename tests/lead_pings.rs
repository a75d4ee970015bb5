//! Pings a team lead can act on, as the lead's receivers get them (loopback HTTP), from the
//! real `callguard` binary: level and agent first, what to do, pings of one call within
//! `escalation.coalesce` merged with every reason, a closing `call.ended` ping that says where
//! the record is, Slack `blocks` and a Teams card with the level as a coloured container.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::FakePbx;
use common::http::{Hit, Receiver};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next hit on `path` (others are kept for later).
async fn next_on(rx: &mut Receiver, path: &str, kept: &mut Vec<Hit>) -> Hit {
    if let Some(i) = kept.iter().position(|h| h.path == path) {
        return kept.remove(i);
    }
    tokio::time::timeout(PATIENCE, async {
        loop {
            let h = rx.next().await;
            if h.path == path {
                return h;
            }
            kept.push(h);
        }
    })
    .await
    .expect("ping did not come")
}

#[tokio::test]
async fn pings_of_one_call_are_merged_never_dropped_and_the_call_end_closes_them() {
    let mut pbx = FakePbx::start().await;
    let mut rx = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = common::ConfigFile::new(dir.path(), &pbx.url)
        .extension("1001")
        .agent_name("佐藤")
        .min_free_mb(1)
        .control_socket()
        .coalesce("3s")
        .webhook(&rx.url("/json"), "json")
        .webhook(&rx.url("/slack"), "slack")
        .webhook(&rx.url("/teams"), "teams")
        .write();
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(&config)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("CALLGUARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut conn = pbx.accept().await;
    let at = chrono::Local::now() - chrono::Duration::minutes(16);
    conn.send(json!({"type":"call.start","call_id":"c-42","agent":"1001",
                     "caller":"0312345678","at":at.to_rfc3339()}))
        .await;
    let mut kept = Vec::new();

    // The 15-minute warning: level and agent first, what to do.
    let first = next_on(&mut rx, "/json", &mut kept).await.json();
    assert_eq!(first["kind"], "escalate");
    assert_eq!(first["level"], 2);
    let text = first["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "【レベル 2（感情的）】担当者 佐藤（1001）：お客様（0312345678）との通話が 16分"
        ),
        "{text}"
    );
    assert!(
        text.contains("担当者の席に向かうか、通話を引き継いでください"),
        "{text}"
    );
    let slack = next_on(&mut rx, "/slack", &mut kept).await.json();
    assert_eq!(slack["blocks"][0]["type"], "section");
    assert_eq!(slack["blocks"][1]["type"], "context");
    assert!(
        slack["text"].as_str().unwrap().contains("【レベル 2"),
        "the fallback text carries the level: {slack}"
    );
    let teams = next_on(&mut rx, "/teams", &mut kept).await.json();
    let card = &teams["attachments"][0]["content"];
    assert_eq!(teams["type"], "message");
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["body"][0]["type"], "Container");
    assert_eq!(card["body"][0]["items"][0]["text"], "レベル 2（感情的）");

    // Three more reasons in quick succession: held back and merged, none dropped.
    for args in [
        &["mark", "manager", "--quote", "「責任者を出せ」"][..],
        &["mark", "manager"][..],
        &["escalate", "--note", "怒鳴られています"][..],
    ] {
        let (code, _, err) = common::cli(&config, args).await;
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let mut reasons: HashSet<String> = HashSet::new();
    let mut merged_seen = 0;
    let mut pings = 1;
    while !reasons.contains("manual") {
        let p = next_on(&mut rx, "/json", &mut kept).await.json();
        pings += 1;
        let parts = p["coalesced"].as_array().cloned().unwrap_or_default();
        if parts.is_empty() {
            reasons.insert(p["kind"].as_str().unwrap().to_string());
            continue;
        }
        merged_seen = merged_seen.max(parts.len());
        for part in &parts {
            reasons.insert(part["kind"].as_str().unwrap().to_string());
        }
        let text = p["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!(
                "【レベル 3（カスハラの兆候）】担当者 佐藤（1001）：直近の {} 件",
                parts.len()
            )),
            "{text}"
        );
        assert!(!text.contains("「「"), "{text}");
        if reasons.contains("manual") {
            assert!(
                text.contains("担当者のメモ：「怒鳴られています」"),
                "{text}"
            );
        }
    }
    assert!(reasons.contains("mark"), "{reasons:?}");
    assert!(
        merged_seen >= 2,
        "the mark and the call for help came within 3 s: merged"
    );
    assert!(pings <= 3, "{pings} pings for 4 reasons: nothing merged");

    // The call ends: one closing ping with duration, final level and the sealed folder.
    conn.send(json!({"type":"call.end","call_id":"c-42","cause":"normal"}))
        .await;
    let end: Value = next_on(&mut rx, "/json", &mut kept).await.json();
    assert_eq!(end["kind"], "call.ended", "{end}");
    assert_eq!(end["level"], 3);
    assert!(end["duration_secs"].as_u64().unwrap() >= 960);
    let record = end["record"].as_str().unwrap();
    assert!(
        std::path::Path::new(record).join("incident.md").is_file(),
        "{record}"
    );
    let text = end["text"].as_str().unwrap();
    assert!(
        text.starts_with("【レベル 3（カスハラの兆候）】担当者 佐藤（1001）：お客様（0312345678）との通話が終わりました。通話時間 16分"),
        "{text}"
    );
    assert!(
        text.contains(&format!("callguard verify {record}")),
        "{text}"
    );
    let end_teams = next_on(&mut rx, "/teams", &mut kept).await;
    let end_teams = if end_teams.json()["attachments"][0]["content"]["body"][0]["items"][1]["text"]
        == "通話が終わりました"
    {
        end_teams
    } else {
        // Earlier Teams pings are still queued: skip to the closing one.
        loop {
            let h = next_on(&mut rx, "/teams", &mut kept).await;
            if h.json()["attachments"][0]["content"]["body"][0]["items"][1]["text"]
                == "通話が終わりました"
            {
                break h;
            }
        }
    };
    assert_eq!(
        end_teams.json()["attachments"][0]["content"]["body"][0]["style"],
        "warning",
        "level 3 is an amber container"
    );
}
