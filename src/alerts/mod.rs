//! Alerts for the agent: the recording notice at call start, and for each warning a chime and a
//! desktop notification. Runs as its own task fed by the tracker.

pub mod desktop;
pub mod health;
pub mod sound;
pub mod text;

use tokio::sync::{broadcast, mpsc};

use crate::config::{Config, Language, WarningConfig};
use crate::events::{Action, Report};
use desktop::{Desktop, Shown};
use sound::{Player, Sound, Sounds};

/// What the alert sink needs from the configuration.
#[derive(Clone)]
pub struct AlertOptions {
    /// Language of texts.
    pub language: Language,
    /// The ladder with its texts.
    pub warnings: Vec<WarningConfig>,
    /// Play sounds on this workstation.
    pub local_sound: bool,
    /// Show desktop notifications.
    pub desktop: bool,
    /// The sounds.
    pub sounds: Sounds,
    /// The tracker's command queue, for the escalate button on warnings; `None` = no button.
    pub escalate: Option<mpsc::Sender<crate::calls::Command>>,
    /// How many team-lead receivers are configured (the confirmation of a call for help says
    /// when there are none).
    pub lead_receivers: usize,
}

impl AlertOptions {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> AlertOptions {
        AlertOptions {
            language: cfg.language,
            warnings: cfg.warning.clone(),
            local_sound: cfg.prompt.local,
            desktop: true,
            sounds: Sounds::from_config(cfg),
            escalate: None,
            lead_receivers: cfg.escalation.webhook.len(),
        }
    }
}

/// Runs until the tracker closes the queue.
pub async fn run(
    mut opts: AlertOptions,
    mut actions: mpsc::UnboundedReceiver<Action>,
    reports: broadcast::Sender<Report>,
) {
    let mut player = if opts.local_sound {
        Player::start(opts.sounds.clone(), reports.clone())
    } else {
        Player::disabled()
    };
    let mut desktop = match opts.escalate.clone() {
        Some(commands) => Desktop::with_button(desktop::EscalateButton {
            label: desktop::escalate_label(opts.language).into(),
            commands,
        }),
        None => Desktop::new(),
    };
    while let Some(action) = actions.recv().await {
        match action {
            // An adopted call is already under way: the notice was played (or not) then.
            Action::CallStarted(call)
                if !call.adopted && !player.play(&call.call_id, Sound::Notice) =>
            {
                let _ = reports.send(Report::Sound {
                    call_id: call.call_id.clone(),
                    what: "notice",
                    outcome: Err("local playback is off (prompt.local = false)".into()),
                });
            }
            Action::Warning(call, w) => {
                player.play(&call.call_id, Sound::Chime);
                let (summary, body) = text::warning_texts(
                    opts.warnings.get(w.step),
                    w.kind,
                    &call,
                    w.elapsed,
                    opts.language,
                );
                let outcome = if opts.desktop {
                    let shown = Shown {
                        summary: summary.clone(),
                        body: body.clone(),
                        kind: w.kind,
                    };
                    desktop
                        .show(&call.call_id, &shown)
                        .await
                        .map(|id| format!("desktop notification #{id}"))
                } else {
                    Err("desktop notifications are off".to_string())
                };
                let _ = reports.send(Report::Notification {
                    call_id: call.call_id.clone(),
                    summary,
                    body,
                    outcome,
                });
            }
            Action::CallEnded { call, .. } => desktop.call_ended(&call.call_id),
            Action::Reconfigured(cfg) => {
                let sounds_before = (opts.local_sound, opts.language);
                let quiet_probe = opts.sounds.quiet_probe;
                opts.language = cfg.language;
                opts.warnings = cfg.warning.clone();
                opts.local_sound = cfg.prompt.local;
                opts.sounds = Sounds::from_config(&cfg);
                opts.sounds.quiet_probe = quiet_probe;
                opts.lead_receivers = cfg.escalation.webhook.len();
                desktop.set_button_label(desktop::escalate_label(opts.language));
                // The sound files are read again on every reload (a file replaced in place is
                // a change too); the audio thread restarts only when it must.
                if sounds_before != (opts.local_sound, opts.language)
                    || !cfg.prompt.notice.is_empty()
                    || !cfg.prompt.chime.is_empty()
                {
                    player = if opts.local_sound {
                        Player::start(opts.sounds.clone(), reports.clone())
                    } else {
                        Player::disabled()
                    };
                }
            }
            Action::Marked(ev) => {
                // Every mark is confirmed (the agent pressed a key and must see it counted); the
                // confirmation says whether the lead was told, so an escalating rule needs no
                // notice of its own.
                let (summary, body) = text::mark_confirmation(&ev, opts.language);
                confirm(
                    &mut desktop,
                    &opts,
                    &reports,
                    &ev.call.call_id,
                    summary,
                    body,
                )
                .await;
                // Grounds to end keep a critical notice of their own with the closing phrase,
                // which no later confirmation replaces.
                let end_rule = ev
                    .fired
                    .iter()
                    .find(|f| f.rule.action == crate::harassment::RuleAction::End);
                if let Some(fired) = end_rule {
                    let (summary, body) = text::rule_texts(
                        fired.rule.action,
                        fired.rule.mark,
                        ev.level,
                        opts.language,
                    );
                    let outcome = if opts.desktop {
                        let shown = Shown {
                            summary: summary.clone(),
                            body: body.clone(),
                            kind: crate::config::WarningKind::Terminate,
                        };
                        desktop
                            .show(&desktop::end_key(&ev.call.call_id), &shown)
                            .await
                            .map(|id| format!("desktop notification #{id}"))
                    } else {
                        Err("desktop notifications are off".to_string())
                    };
                    let _ = reports.send(Report::Notification {
                        call_id: ev.call.call_id.clone(),
                        summary,
                        body,
                        outcome,
                    });
                }
            }
            Action::Escalation { call, elapsed, .. } => {
                let (summary, body) = text::escalation_confirmation(
                    &call,
                    elapsed,
                    opts.lead_receivers,
                    opts.language,
                );
                confirm(&mut desktop, &opts, &reports, &call.call_id, summary, body).await;
            }
            Action::Noted(note) => {
                let (summary, body) = text::note_confirmation(&note, opts.language);
                confirm(&mut desktop, &opts, &reports, &note.call_id, summary, body).await;
            }
            Action::Problem(p) => {
                let outcome = if opts.desktop {
                    desktop
                        .show_problem(&p)
                        .await
                        .map(|id| format!("desktop notification #{id}"))
                } else {
                    Err("desktop notifications are off".to_string())
                };
                let _ = reports.send(Report::Notification {
                    call_id: p.call_id.clone().unwrap_or_default(),
                    summary: p.kind.clone(),
                    body: p.text.clone(),
                    outcome,
                });
            }
            _ => {}
        }
    }
}

/// Shows a confirmation (replacing the previous one) and reports it.
async fn confirm(
    desktop: &mut Desktop,
    opts: &AlertOptions,
    reports: &broadcast::Sender<Report>,
    call_id: &str,
    summary: String,
    body: String,
) {
    let outcome = if opts.desktop {
        desktop
            .confirm(&summary, &body)
            .await
            .map(|id| format!("desktop notification #{id}"))
    } else {
        Err("desktop notifications are off".to_string())
    };
    let _ = reports.send(Report::Notification {
        call_id: call_id.to_string(),
        summary,
        body,
        outcome,
    });
}

/// Desktop notifications, sounds and the recording notice, as a [`Sink`](crate::sink::Sink).
pub struct AlertsSink {
    opts: AlertOptions,
}

impl AlertsSink {
    /// With these options; the escalate button sends to the tracker given at run time.
    pub fn new(opts: AlertOptions) -> AlertsSink {
        AlertsSink { opts }
    }
}

impl crate::sink::Sink for AlertsSink {
    fn name(&self) -> &str {
        "alerts"
    }

    fn run(
        self: Box<Self>,
        actions: crate::sink::Actions,
        ctx: crate::sink::SinkContext,
    ) -> crate::sink::Running {
        let mut opts = self.opts;
        opts.escalate = Some(ctx.commands);
        Box::pin(async move {
            run(opts, actions, ctx.reports).await;
            Ok(())
        })
    }

    fn healthcheck<'a>(&'a self, opts: &'a crate::sink::HealthOptions) -> crate::sink::Checks<'a> {
        Box::pin(health::checks(&self.opts, opts.language))
    }
}
