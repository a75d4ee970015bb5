//! The alerts sink's health rows for `callguard doctor`: the notification server on the session
//! bus (what it can show) and the default audio output, opened as the sound thread opens it.

use crate::config::Language;
use crate::health::{Check, PROBE_TIMEOUT, Status, off_thread, say};

use super::AlertOptions;

/// The `notifications` and `audio` rows.
pub async fn checks(opts: &AlertOptions, lang: Language) -> Vec<Check> {
    vec![notifications(lang).await, audio(opts, lang).await]
}

/// The notification server on the session bus and what it can show.
async fn notifications(lang: Language) -> Check {
    const NAME: &str = "notifications";
    let probe = off_thread(|| {
        let info = notify_rust::get_server_information().map_err(|e| e.to_string())?;
        let caps = notify_rust::get_capabilities().map_err(|e| e.to_string())?;
        Ok::<_, String>((info, caps))
    })
    .await;
    let fix_missing = say(
        lang,
        "担当者のデスクトップのセッション内で doctor を実行し（DBUS_SESSION_BUS_ADDRESS が必要です）、そこで通知デーモンが動いていることを確かめてください（GNOME と KDE には標準であります。ほかは dunst や xfce4-notifyd など）",
        "run doctor inside the agent's desktop session (it needs DBUS_SESSION_BUS_ADDRESS) and make sure a notification daemon runs there (GNOME and KDE have one; else e.g. dunst or xfce4-notifyd)",
    );
    match probe {
        None => Check::new(
            NAME,
            Status::Fail,
            say(
                lang,
                format!(
                    "セッションバスが {} 秒以内に応答しませんでした",
                    PROBE_TIMEOUT.as_secs()
                ),
                format!(
                    "the session bus did not answer within {}s",
                    PROBE_TIMEOUT.as_secs()
                ),
            ),
            fix_missing,
        ),
        Some(Err(e)) => Check::new(
            NAME,
            Status::Fail,
            say(
                lang,
                format!("通知サーバーがありません：{e}"),
                format!("no notification server: {e}"),
            ),
            fix_missing,
        ),
        Some(Ok((info, caps))) => {
            let list = if caps.is_empty() {
                say(lang, "なし", "none")
            } else {
                caps.join(", ")
            };
            let detail = say(
                lang,
                format!(
                    "{} {}（{}、仕様 {}）。機能：{list}",
                    info.name, info.version, info.vendor, info.spec_version
                ),
                format!(
                    "{} {} ({}, spec {}); capabilities: {list}",
                    info.name, info.version, info.vendor, info.spec_version
                ),
            );
            if caps.iter().any(|c| c == "body") {
                Check::pass(NAME, detail)
            } else {
                Check::new(
                    NAME,
                    Status::Warn,
                    say(
                        lang,
                        format!("{detail}：警告は見出ししか表示されません"),
                        format!("{detail}: warnings show their title only"),
                    ),
                    say(
                        lang,
                        "本文を表示できる通知デーモンを使ってください",
                        "use a notification daemon that shows message bodies",
                    ),
                )
            }
        }
    }
}

/// The default audio output, opened as the sound thread would.
async fn audio(opts: &AlertOptions, lang: Language) -> Check {
    const NAME: &str = "audio";
    if !opts.local_sound {
        return Check::pass(
            NAME,
            say(
                lang,
                "使いません（prompt.local = false）",
                "not used (prompt.local = false)",
            ),
        );
    }
    // ALSA writes its own complaints straight to stderr; the check's line says what matters.
    let open = || super::sound::without_stderr(rodio::DeviceSinkBuilder::open_default_sink);
    let probe = off_thread(move || match open() {
        Ok(mut sink) => {
            sink.log_on_drop(false);
            let c = sink.config();
            Ok((c.sample_rate(), c.channel_count()))
        }
        Err(e) => Err(e.to_string()),
    })
    .await;
    let fix = say(
        lang,
        "スピーカーかヘッドセットをつなぎ、セッションのサウンドサーバーを確かめてください（pactl info）。音声出力がなくても動きますが、担当者には録音の案内もチャイムも聞こえません",
        "connect speakers or a headset and check the session's sound server (pactl info); the daemon works without, but the agent hears no notice or chime",
    );
    match probe {
        Some(Ok((rate, channels))) => Check::pass(
            NAME,
            say(
                lang,
                format!("既定の出力を開けました（{rate} Hz、{channels} チャンネル）"),
                format!("default output open ({rate} Hz, {channels} channels)"),
            ),
        ),
        Some(Err(e)) => Check::new(
            NAME,
            Status::Warn,
            say(
                lang,
                format!("音声出力がありません：{e}"),
                format!("no audio output: {e}"),
            ),
            fix,
        ),
        None => Check::new(
            NAME,
            Status::Warn,
            say(
                lang,
                format!(
                    "音声出力が {} 秒以内に開けませんでした",
                    PROBE_TIMEOUT.as_secs()
                ),
                format!(
                    "the audio device did not open within {}s",
                    PROBE_TIMEOUT.as_secs()
                ),
            ),
            fix,
        ),
    }
}
