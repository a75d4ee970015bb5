//! `callguard demo`: runs the real daemon against the built-in simulator with compressed time and
//! prints a timeline anyone can follow without a PBX.

pub mod lead;
pub mod simulator;

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alerts::text::format_elapsed;
use crate::config::Config;
use crate::daemon::{Daemon, RunOptions};
use crate::events::Report;
use simulator::{Script, Simulator};

/// Runs the demo; returns when the call has ended and every sink has finished.
pub async fn run(mut cfg: Config, time_scale: f64, minutes: u64) -> anyhow::Result<()> {
    // Kept after the demo so the sealed folder can be looked at and verified again.
    let work = tempfile::Builder::new()
        .prefix("callguard-demo-")
        .tempdir()?
        .keep();
    // A demo never touches a real workstation's evidence, keys, outbox, PBX or team leads: it
    // keeps the configuration's texts, ladder and rules, and plays everything else itself.
    cfg.state.dir = work.join("state").display().to_string();
    cfg.evidence.dir = work.join("evidence").display().to_string();
    cfg.evidence.source = crate::config::EvidenceSource::Stream;
    cfg.pbx = crate::config::PbxConfig::default();
    cfg.control.socket = work.join("control.sock").display().to_string();
    // Pings of one call are merged within `coalesce` of call time, like the warnings.
    cfg.escalation.coalesce = cfg.escalation.coalesce.div_f64(time_scale);
    if cfg.agent.extension.is_empty() {
        cfg.agent.extension = "1001".into();
    }
    let mut log = cfg.log.clone();
    if std::env::var_os("RUST_LOG").is_none() {
        log.level = "warn".into();
    }
    crate::logging::init(&log);

    let shutdown = CancellationToken::new();
    crate::daemon::cancel_on_signals(shutdown.clone());
    let script = Script {
        call_id: "demo-0001".into(),
        agent: cfg.agent.extension.clone(),
        caller: "0312345678".into(),
        length: Duration::from_secs(minutes * 60),
        time_scale,
        lead_in: Duration::from_millis(500),
    };
    let sim = Simulator::start(script.clone(), shutdown.clone()).await?;
    cfg.pbx.url = sim.url.clone();
    // The team lead's chat, played by a receiver on 127.0.0.1.
    let mut inbox = lead::LeadInbox::start().await?;
    cfg.escalation.webhook = vec![crate::config::WebhookConfig {
        url: inbox.url.clone(),
        format: crate::config::WebhookFormat::Json,
        secret_file: String::new(),
    }];
    // What the agent presses during the call: 「責任者を出せ」 twice (call time, kind, quote).
    let mut presses: std::collections::VecDeque<(Duration, crate::harassment::MarkKind, &str)> = [
        (
            Duration::from_secs(8 * 60),
            crate::harassment::MarkKind::Manager,
            "責任者を出せ",
        ),
        (
            Duration::from_secs(10 * 60),
            crate::harassment::MarkKind::Manager,
            "だから責任者を出せと言っている",
        ),
    ]
    .into_iter()
    .filter(|(at, _, _)| at.as_secs() < minutes * 60)
    .collect();

    let lang = cfg.language;
    println!(
        "callguard demo — a simulated PBX on {} plays one call of {minutes} minutes,",
        sim.url
    );
    println!(
        "with time running {time_scale}× faster (a {}-minute warning comes after {:.0} s).",
        cfg.warning
            .first()
            .map(|w| w.after.as_secs() / 60)
            .unwrap_or(15),
        cfg.warning
            .first()
            .map(|w| w.after.as_secs_f64())
            .unwrap_or(900.0)
            / time_scale
    );
    println!("Columns: real time since start │ call time │ what happened.\n");

    let daemon = Daemon::new(
        cfg.clone(),
        RunOptions {
            time_scale,
            volatile: true,
            desktop: true,
        },
    );
    let mut reports = daemon.reports();
    let commands = daemon.commands();
    let run = tokio::spawn(daemon.run(shutdown.clone()));
    let t0 = Instant::now();
    let mut call_t0: Option<Instant> = None;
    let mut ended = false;
    let mut warnings_seen = 0usize;
    let expected_warnings = cfg
        .warning
        .iter()
        .filter(|w| w.after.as_secs() < minutes * 60)
        .count();
    let mut sealed: Vec<std::path::PathBuf> = Vec::new();
    let pubkey = crate::evidence::keys::key_paths(&cfg.data_dir()).1;
    let deadline = t0 + Duration::from_secs(60) + script.length.div_f64(time_scale) * 2;
    loop {
        let next_press = call_t0
            .zip(presses.front())
            .map(|(c, (at, _, _))| c + at.div_f64(time_scale));
        let report = tokio::select! {
            r = reports.recv() => r,
            Some((ping, key)) = inbox.pings.recv() => {
                let now = Instant::now();
                let call_time = call_t0.map(|c| clock((now - c).mul_f64(time_scale))).unwrap_or_default();
                print_ping(&format!("{:>6.1}s │ {call_time:>8} │", (now - t0).as_secs_f64()), &ping, &key);
                continue;
            }
            _ = sleep_until_opt(next_press), if next_press.is_some() => {
                if let Some((_, kind, quote)) = presses.pop_front() {
                    press(&commands, kind, quote, t0, call_t0, time_scale).await;
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {
                println!("demo: timed out waiting for the call to end");
                break;
            }
            _ = shutdown.cancelled(), if !ended => break,
        };
        let report = match report {
            Ok(r) => r,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        };
        let now = Instant::now();
        let call_time = match &report {
            Report::WarningDue { warning, .. } => warning.elapsed,
            Report::CallEnded { duration, .. } => *duration,
            _ => call_t0
                .map(|c| (now - c).mul_f64(time_scale))
                .unwrap_or_default(),
        };
        let stamp = format!(
            "{:>6.1}s │ {:>8} │",
            (now - t0).as_secs_f64(),
            if call_t0.is_some() {
                clock(call_time)
            } else {
                String::new()
            }
        );
        match report {
            Report::Connected(url) => println!("{stamp} PBX connected ({url})"),
            Report::Disconnected(why) => println!("{stamp} PBX disconnected: {why}"),
            Report::CallStarted(c) => {
                call_t0 = Some(now);
                let stamp = format!(
                    "{:>6.1}s │ {:>8} │",
                    (now - t0).as_secs_f64(),
                    clock(Duration::ZERO)
                );
                println!(
                    "{stamp} call {} started: caller {} → agent {} ({})",
                    c.call_id, c.caller, c.agent, c.direction
                );
            }
            Report::Sound {
                what: "notice",
                outcome,
                ..
            } => match outcome {
                Ok(dev) => println!(
                    "{stamp}   recording notice played on the {dev}: 「{}」",
                    crate::alerts::text::NOTICE_PHRASE_JA
                ),
                Err(why) => println!("{stamp}   recording notice not played: {why}"),
            },
            Report::Sound { what, outcome, .. } => match outcome {
                Ok(dev) => println!("{stamp}   {what} played on the {dev}"),
                Err(why) => println!("{stamp}   {what} not played: {why}"),
            },
            Report::WarningDue { warning, .. } => {
                warnings_seen += 1;
                println!(
                    "{stamp} {}-minute warning ({}){} — call time {}",
                    warning.after.as_secs() / 60,
                    warning.kind.as_str(),
                    if warning.late { ", late" } else { "" },
                    format_elapsed(warning.elapsed, lang)
                );
            }
            Report::Notification {
                summary,
                body,
                outcome,
                ..
            } => {
                match outcome {
                    Ok(place) => println!("{stamp}   shown as {place}:"),
                    Err(why) => {
                        println!("{stamp}   desktop notification not shown: {why}; it would read:")
                    }
                }
                println!("{:>19}   │ {summary}", "");
                println!("{:>19}   │ {body}", "");
            }
            Report::CallEnded {
                call_id,
                duration,
                cause,
            } => {
                println!(
                    "{stamp} call {call_id} ended ({cause}) after {}",
                    format_elapsed(duration, lang)
                );
                ended = true;
                // Let the sinks finish this call (evidence sealing, pings), then stop.
                shutdown.cancel();
            }
            Report::Note(text) => println!("{stamp}   {text}"),
            Report::PingFailed(p) => println!("{stamp}   {p}"),
            Report::Sealed {
                call_id,
                dir,
                sha256,
                seq,
                truncated,
                ..
            } => {
                println!(
                    "{stamp} evidence of call {call_id} sealed (ledger line {seq}{})",
                    if truncated { ", truncated" } else { "" }
                );
                println!("{:>19}   │ folder  {}", "", dir.display());
                if let Some(sha) = &sha256 {
                    println!("{:>19}   │ SHA-256 {sha}  call.wav", "");
                }
                if dir.join("incident.md").exists() {
                    println!(
                        "{:>19}   │ incident record: incident.json + incident.md, listed in the signed manifest",
                        ""
                    );
                }
                sealed.push(dir);
            }
        }
    }
    shutdown.cancel();
    run.await??;
    if !ended {
        anyhow::bail!("the demo call did not complete");
    }
    verify_sealed(&sealed, &pubkey)?;
    if warnings_seen == expected_warnings {
        println!(
            "\ndemo finished: every warning fired once, on time. Run `callguard run --config …` against your PBX."
        );
    } else {
        println!(
            "\ndemo finished: {warnings_seen} of {expected_warnings} warnings fired (the call was shorter than the ladder)."
        );
    }
    Ok(())
}

/// Runs `callguard verify` on what the demo sealed and prints its verdict.
fn verify_sealed(sealed: &[std::path::PathBuf], pubkey: &std::path::Path) -> anyhow::Result<()> {
    if sealed.is_empty() {
        anyhow::bail!("the demo call was not sealed");
    }
    let key = crate::evidence::keys::read_public(pubkey)?;
    let out = crate::evidence::verify::verify_paths(sealed, &key)?;
    println!(
        "\n$ callguard verify --pubkey {} {}",
        pubkey.display(),
        sealed
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    for line in out.lines(false, false) {
        println!("{line}");
    }
    if !out.ok() {
        anyhow::bail!("the sealed evidence did not verify");
    }
    println!("(the WAV hash, the manifest signature and the ledger chain are intact)");
    Ok(())
}

async fn sleep_until_opt(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// The agent's keystroke: the same request `callguard mark` sends over the control socket.
async fn press(
    commands: &tokio::sync::mpsc::Sender<crate::calls::Command>,
    kind: crate::harassment::MarkKind,
    quote: &str,
    t0: Instant,
    call_t0: Option<Instant>,
    time_scale: f64,
) {
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = crate::calls::Command::Mark {
        kind,
        quote: Some(quote.to_string()),
        call_id: None,
        reply,
    };
    let now = Instant::now();
    let stamp = format!(
        "{:>6.1}s │ {:>8} │",
        (now - t0).as_secs_f64(),
        call_t0
            .map(|c| clock((now - c).mul_f64(time_scale)))
            .unwrap_or_default()
    );
    if commands.send(cmd).await.is_err() {
        return;
    }
    match rx.await {
        Ok(Ok(r)) => {
            println!("{stamp} agent: callguard mark {kind} --quote 「{quote}」");
            println!(
                "{:>19}   │ {} mark no. {} at {} → level {} ({}){}",
                "",
                kind.label_ja(),
                r.count,
                r.offset,
                r.level,
                crate::harassment::Level(r.level).label_en(),
                if r.fired.is_empty() {
                    String::new()
                } else {
                    format!(", rule {}", r.fired.join(", "))
                }
            );
        }
        Ok(Err(e)) => println!("{stamp} agent: callguard mark {kind}: {e}"),
        Err(_) => {}
    }
}

/// One team-lead ping as the lead's chat received it.
fn print_ping(stamp: &str, ping: &serde_json::Value, key: &str) {
    let s = |k: &str| ping[k].as_str().unwrap_or("").to_string();
    println!(
        "{stamp}   team lead's webhook received a `{}` ping (level {}, Idempotency-Key {}…):",
        s("kind"),
        ping["level"]
            .as_u64()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into()),
        key.chars().take(8).collect::<String>()
    );
    println!("{:>19}   │ {}", "", s("text"));
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}
