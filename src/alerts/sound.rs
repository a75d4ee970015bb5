//! Local playback of the recording notice and the warning chime through rodio, on a thread of its
//! own: the audio device is opened there and the async runtime never waits on it.

use std::io::Cursor;
use std::sync::mpsc;

use tokio::sync::broadcast;

use crate::config::{Config, Language};
use crate::events::Report;

/// Built-in notice (Japanese), made by `sounds/make-sounds.sh`.
pub const NOTICE_JA: &[u8] = include_bytes!("../../sounds/recording-notice-ja.wav");
/// Built-in notice (English).
pub const NOTICE_EN: &[u8] = include_bytes!("../../sounds/recording-notice-en.wav");
/// Built-in chime.
pub const CHIME: &[u8] = include_bytes!("../../sounds/chime.wav");

/// Which sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sound {
    /// The recording notice at call start.
    Notice,
    /// The chime with each warning.
    Chime,
}

impl Sound {
    fn name(self) -> &'static str {
        match self {
            Sound::Notice => "notice",
            Sound::Chime => "chime",
        }
    }
}

/// How long a missing audio device is believed missing before it is probed again.
const DEVICE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

struct Request {
    call_id: String,
    sound: Sound,
}

/// Handle to the audio thread. Dropping it stops the thread.
pub struct Player {
    tx: Option<mpsc::Sender<Request>>,
}

/// The sound bytes to play: configured files, or the built-in ones.
#[derive(Clone)]
pub struct Sounds {
    notice: Vec<u8>,
    chime: Vec<u8>,
    /// Keep the audio library's own complaints off stderr while probing the device (the demo's
    /// timeline already says what is missing).
    pub quiet_probe: bool,
}

impl Sounds {
    /// Loads the configured files; a file that cannot be read is logged and replaced by the
    /// built-in sound, so the agent still hears a notice.
    pub fn from_config(cfg: &Config) -> Sounds {
        let builtin_notice = match cfg.language {
            Language::Ja => NOTICE_JA,
            Language::En => NOTICE_EN,
        };
        Sounds {
            notice: load(&cfg.prompt.notice, "prompt.notice", builtin_notice),
            chime: load(&cfg.prompt.chime, "prompt.chime", CHIME),
            quiet_probe: false,
        }
    }
}

fn load(path: &str, key: &str, builtin: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return builtin.to_vec();
    }
    match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(key, path, error = %e, "cannot read sound file; using the built-in one");
            builtin.to_vec()
        }
    }
}

impl Player {
    /// Starts the audio thread. Reports go to `reports` (what played, or why not).
    pub fn start(sounds: Sounds, reports: broadcast::Sender<Report>) -> Player {
        let (tx, rx) = mpsc::channel::<Request>();
        let spawned = std::thread::Builder::new()
            .name("callguard-audio".into())
            .spawn(move || audio_thread(sounds, rx, reports));
        match spawned {
            Ok(_) => Player { tx: Some(tx) },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the audio thread; sounds are off");
                Player { tx: None }
            }
        }
    }

    /// A player that plays nothing (`prompt.local = false`).
    pub fn disabled() -> Player {
        Player { tx: None }
    }

    /// Queues a sound; returns at once.
    pub fn play(&self, call_id: &str, sound: Sound) -> bool {
        match &self.tx {
            Some(tx) => tx
                .send(Request {
                    call_id: call_id.to_string(),
                    sound,
                })
                .is_ok(),
            None => false,
        }
    }
}

fn audio_thread(sounds: Sounds, rx: mpsc::Receiver<Request>, reports: broadcast::Sender<Report>) {
    let mut device: Option<rodio::MixerDeviceSink> = None;
    let mut warned = false;
    // A missing device is probed again only after a while (a headset may be plugged in later);
    // probing on every sound would flood the log with the audio library's own complaints.
    let mut failed: Option<(std::time::Instant, String)> = None;
    let mut players: Vec<rodio::Player> = Vec::new();
    for req in rx {
        players.retain(|p| !p.empty());
        if device.is_none() {
            if let Some((when, why)) = &failed
                && when.elapsed() < DEVICE_RETRY
            {
                let _ = reports.send(Report::Sound {
                    call_id: req.call_id,
                    what: req.sound.name(),
                    outcome: Err(format!("no audio output device ({why})")),
                });
                continue;
            }
            let opened = if sounds.quiet_probe {
                without_stderr(rodio::DeviceSinkBuilder::open_default_sink)
            } else {
                rodio::DeviceSinkBuilder::open_default_sink()
            };
            match opened {
                Ok(mut d) => {
                    d.log_on_drop(false);
                    if warned {
                        tracing::info!("audio output device is available again");
                    }
                    warned = false;
                    failed = None;
                    device = Some(d);
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e,
                            "no audio output device: the recording notice and chimes are not played locally; everything else goes on");
                        warned = true;
                    }
                    failed = Some((std::time::Instant::now(), e.to_string()));
                    let _ = reports.send(Report::Sound {
                        call_id: req.call_id,
                        what: req.sound.name(),
                        outcome: Err(format!("no audio output device ({e})")),
                    });
                    continue;
                }
            }
        }
        let Some(dev) = &device else { continue };
        let bytes = match req.sound {
            Sound::Notice => sounds.notice.clone(),
            Sound::Chime => sounds.chime.clone(),
        };
        let outcome = match rodio::play(dev.mixer(), Cursor::new(bytes)) {
            Ok(player) => {
                players.push(player);
                Ok("default audio output".to_string())
            }
            Err(e) => {
                tracing::warn!(sound = req.sound.name(), error = %e, "cannot play sound");
                Err(e.to_string())
            }
        };
        let _ = reports.send(Report::Sound {
            call_id: req.call_id,
            what: req.sound.name(),
            outcome,
        });
    }
    drop(players);
}

/// Runs `f` with the process's stderr pointed at /dev/null, then restores it. The audio library
/// writes straight to file descriptor 2 when no card exists; the demo and `doctor` ask for this.
pub fn without_stderr<T>(f: impl FnOnce() -> T) -> T {
    let saved = rustix::io::dup(rustix::stdio::stderr());
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    match (saved, null) {
        (Ok(saved), Ok(null)) => {
            let _ = rustix::stdio::dup2_stderr(&null);
            let out = f();
            let _ = rustix::stdio::dup2_stderr(&saved);
            out
        }
        _ => f(),
    }
}
