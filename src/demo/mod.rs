//! `callguard demo`: runs the real daemon against the built-in simulator with compressed time and
//! prints a timeline anyone can follow without a PBX.

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
    if cfg.state.dir.is_empty() {
        cfg.state.dir = work.join("state").display().to_string();
    }
    if cfg.evidence.dir.is_empty() {
        cfg.evidence.dir = work.join("evidence").display().to_string();
    }
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
    let run = tokio::spawn(daemon.run(shutdown.clone()));
    let t0 = Instant::now();
    let mut call_t0: Option<Instant> = None;
    let mut ended = false;
    let mut sealed: Vec<std::path::PathBuf> = Vec::new();
    let pubkey = crate::evidence::keys::key_paths(&cfg.data_dir()).1;
    let deadline = t0 + Duration::from_secs(60) + script.length.div_f64(time_scale) * 2;
    loop {
        let report = tokio::select! {
            r = reports.recv() => r,
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
        let call_time = call_t0
            .map(|c| (now - c).mul_f64(time_scale))
            .unwrap_or_default();
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
            Report::WarningDue { warning, .. } => println!(
                "{stamp} {}-minute warning ({}){} — call time {}",
                warning.after.as_secs() / 60,
                warning.kind.as_str(),
                if warning.late { ", late" } else { "" },
                format_elapsed(warning.elapsed, lang)
            ),
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
    println!(
        "\ndemo finished: every warning fired once, on time. Run `callguard run --config …` against your PBX."
    );
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
    crate::evidence::verify::print(&out, false);
    if !out.ok() {
        anyhow::bail!("the sealed evidence did not verify");
    }
    println!("(the WAV hash, the manifest signature and the ledger chain are intact)");
    Ok(())
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}
