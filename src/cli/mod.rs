//! The command line (DESIGN.md, contract): parses arguments and dispatches to the subcommands.

mod archive;
mod control;
mod doctor;
mod status;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Sources};

mod floor;

/// Exit code for usage and configuration errors (also: `run` with an invalid configuration,
/// which the systemd unit does not restart on, and `reload` of an invalid one).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `reload` when the new configuration is valid but changes keys that only a
/// restart applies (nothing was applied).
pub const EXIT_NEEDS_RESTART: u8 = 3;

/// callguard: call-duration guard for contact-center agents.
#[derive(Debug, Parser)]
#[command(name = "callguard", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (else $CALLGUARD_CONFIG, else /etc/callguard + the user's file).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Divide every warning threshold by N (training).
        #[arg(long, default_value_t = 1.0, value_name = "N", value_parser = parse_scale)]
        time_scale: f64,
    },
    /// Show what callguard does, against a built-in PBX simulator on 127.0.0.1.
    Demo {
        /// Divide every threshold by N: 60 turns a 32-minute call into 32 seconds.
        #[arg(long, default_value_t = 60.0, value_name = "N", value_parser = parse_scale)]
        time_scale: f64,
        /// Length of the simulated call, in minutes of call time.
        #[arg(long, default_value_t = 32, value_name = "MIN")]
        minutes: u64,
        /// The team leads' floor board instead: a local nats-server, the floor on SQLite and
        /// simulated workstations; prints the board's URL and a login; runs until Ctrl-C.
        #[arg(long)]
        floor: bool,
        /// With --floor: the board's address (default 127.0.0.1:8480, or a free port when 8480
        /// is taken); the demo fails when it cannot listen there.
        #[arg(long, value_name = "ADDR:PORT", requires = "floor")]
        listen: Option<String>,
    },
    /// Check sealed evidence: WAV hash, manifest signature, ledger chain.
    Verify {
        /// Call folders or evidence roots (default: the configured evidence.dir).
        paths: Vec<PathBuf>,
        /// Public key to check against (default: this machine's key).
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// One JSON object per call.
        #[arg(long)]
        json: bool,
        /// A copy of the workstation's ledger-head.json, to check a copied evidence folder for
        /// removed newest calls (on the workstation its data dir is used).
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
        /// Exit 1 also for folders holding files that are not sealed evidence.
        #[arg(long)]
        strict: bool,
        /// Also compare the ledger with the last line the floor has seen from this workstation
        /// (`[floor]`): a ledger shorter than that lost its tail.
        #[arg(long)]
        against_floor: bool,
    },
    /// Make the running daemon read its configuration again (as SIGHUP does): applied if valid
    /// and live; else the daemon keeps the one it has. Exit 2: invalid; 3: needs a restart.
    Reload,
    /// Show the running daemon's state (through the control socket).
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The evidence signing key.
    Key {
        /// What to do with the key.
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Check everything this workstation needs; exit non-zero on any failure.
    Doctor {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Send a real test ping to each webhook.
        #[arg(long)]
        send_test_ping: bool,
    },
    /// Call the team lead to the agent's current call.
    Escalate {
        /// A note for the lead.
        #[arg(long)]
        note: Option<String>,
    },
    /// Mark what the caller does on the current call (abuse, threat, demand, …).
    Mark {
        /// abuse, threat, demand, manager, repeat, sexual, violence or symptom.
        kind: String,
        /// The caller's words, verbatim.
        #[arg(long)]
        quote: Option<String>,
    },
    /// Add to the record of the current or a past call.
    Note {
        /// The call (default: the current one).
        #[arg(long)]
        call: Option<String>,
        /// A witness.
        #[arg(long)]
        witness: Option<String>,
        /// The agent's response.
        #[arg(long)]
        response: Option<String>,
        /// A statement of the caller, verbatim.
        #[arg(long)]
        quote: Option<String>,
        /// Next steps.
        #[arg(long)]
        next: Option<String>,
    },
    /// Print the hotkey cheat sheet (in the configured language).
    Keys,
    /// The floor service for team leads: live board, caller history, accounts.
    Floor(crate::floor::service::cli::FloorArgs),
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `callguard config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets masked; exit 2 if it is invalid.
    Check {
        /// Show which file, environment variable or default set each key.
        #[arg(long)]
        origin: bool,
    },
}

/// `callguard key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public key and its key_id.
    Show,
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (1.0..=10_000.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number from 1 to 10000")),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { time_scale } => {
            warn_misspelt_env();
            let cfg = match Sources::discover(cli.config.as_deref()).and_then(|s| Config::load(&s))
            {
                Ok(c) => c,
                Err(e) => {
                    // Exit 2, which the unit does not restart on (RestartPreventExitStatus=2):
                    // a fleet with a bad drop-in stops once and says why, instead of looping.
                    eprintln!("callguard: configuration error: {e}");
                    eprintln!(
                        "callguard: not started; fix the configuration (`callguard config check`) and start again"
                    );
                    show_start_refused(&e.to_string());
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let reload_from = cli.config.clone();
            crate::logging::init(&cfg.log);
            runtime(async move {
                let shutdown = tokio_util::sync::CancellationToken::new();
                crate::daemon::cancel_on_signals(shutdown.clone());
                let opts = crate::daemon::RunOptions {
                    time_scale,
                    ..Default::default()
                };
                tracing::info!(version = env!("CARGO_PKG_VERSION"), pbx = %crate::pbx::display_url(&cfg.pbx.url), "callguard starting");
                let daemon = crate::daemon::Daemon::new(cfg, opts).reload_from(reload_from);
                // Joined, not spawned: STOPPING=1 must go out before the runtime is dropped.
                let (result, ()) =
                    tokio::join!(daemon.run(shutdown.clone()), crate::sdnotify::run(shutdown));
                result
            })
        }
        Command::Demo {
            time_scale,
            minutes,
            floor,
            listen,
        } => {
            let cfg = match cli.config.as_deref() {
                Some(path) => match load(Some(path)) {
                    Ok(c) => c,
                    Err(code) => return code,
                },
                None => Config::default(),
            };
            if floor {
                return runtime(crate::floor::service::demo::run(
                    cfg,
                    listen,
                    floor::demo_banner,
                ));
            }
            runtime(crate::demo::run(cfg, time_scale, minutes))
        }
        Command::Floor(args) => floor::main(cli.config.as_deref(), args),
        Command::Config {
            command: ConfigCommand::Check { origin: false },
        } => match load(cli.config.as_deref()) {
            Ok(cfg) => {
                print!("{}", cfg.to_masked_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Config {
            command: ConfigCommand::Check { origin: true },
        } => check_with_origin(cli.config.as_deref()),
        Command::Verify {
            paths,
            pubkey,
            json,
            ..
        } if paths.iter().any(|p| crate::archive::remote::is_s3(p)) => {
            archive::verify(cli.config.as_deref(), paths, pubkey, json)
        }
        Command::Verify {
            paths,
            pubkey,
            json,
            head,
            strict,
            against_floor,
        } => {
            let anchored = match against_floor {
                true => match floor_anchor(cli.config.as_deref(), json) {
                    Ok(ok) => ok,
                    Err(code) => return code,
                },
                false => true,
            };
            let code = verify::cli(cli.config.as_deref(), paths, pubkey, head, json, strict);
            if anchored { code } else { ExitCode::from(1) }
        }
        Command::Reload => control::reload_command(cli.config.as_deref()),
        Command::Status { json } => match client_config(cli.config.as_deref()) {
            Ok(cfg) => control::status_command(&cfg, json),
            Err(code) => code,
        },
        Command::Key {
            command: KeyCommand::Show,
        } => verify::key_show(cli.config.as_deref()),
        Command::Doctor {
            json,
            send_test_ping,
        } => doctor::main(cli.config.as_deref(), json, send_test_ping),
        Command::Keys => {
            // The sheet needs only the language; a broken configuration still gets a sheet.
            let lang = Sources::discover(cli.config.as_deref())
                .and_then(|s| Config::load(&s))
                .map(|c| c.language)
                .unwrap_or_default();
            print!("{}", crate::tray::keys::cheat_sheet(lang));
            ExitCode::SUCCESS
        }
        Command::Escalate { note } => match client_config(cli.config.as_deref()) {
            Ok(cfg) => control::escalate_command(&cfg, note),
            Err(code) => code,
        },
        Command::Mark { kind, quote } => match client_config(cli.config.as_deref()) {
            Ok(cfg) => control::mark_command(&cfg, &kind, quote),
            Err(code) => code,
        },
        Command::Note {
            call,
            witness,
            response,
            quote,
            next,
        } => match client_config(cli.config.as_deref()) {
            Ok(cfg) => {
                use crate::events::NoteField;
                let items: Vec<(NoteField, String)> = [
                    (NoteField::Witness, witness),
                    (NoteField::Response, response),
                    (NoteField::Quote, quote),
                    (NoteField::Next, next),
                ]
                .into_iter()
                .filter_map(|(f, t)| t.map(|t| (f, t)))
                .collect();
                control::note_command(&cfg, call, items)
            }
            Err(code) => code,
        },
    }
}

/// Loads the configuration, or prints why not and returns the usage exit code.
pub fn load(explicit: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    warn_misspelt_env();
    let result = Sources::discover(explicit).and_then(|s| Config::load(&s));
    result.map_err(|e| {
        eprintln!("callguard: configuration error: {e}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// The desktop notice of a daemon that refused to start on its configuration: under systemd
/// nobody reads stderr. Best effort, bounded by the notification timeout.
fn show_start_refused(detail: &str) {
    let Some(rt) = start_runtime(false) else {
        return;
    };
    let lang = crate::config::Language::default();
    let (summary, body) = crate::alerts::text::config_invalid_at_start(lang, detail);
    let shown = rt.block_on(crate::alerts::desktop::show_config_problem(
        &summary, &body, true,
    ));
    if let Err(e) = shown {
        eprintln!("callguard: (not shown on the desktop either: {e})");
    }
}

/// The configuration `status`, `escalate`, `mark` and `note` reach the daemon with. Files
/// broken since the daemon started (a reload refused them; it runs on) must not hide its state
/// or break the agent's hotkeys: their mistake is said, and the daemon is asked on the socket
/// they name ([`Sources::leniently`]).
fn client_config(explicit: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    warn_misspelt_env();
    let sources = Sources::discover(explicit).map_err(|e| {
        eprintln!("callguard: configuration error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Config::load(&sources).or_else(|e| {
        eprintln!(
            "callguard: warning: the configuration files are invalid ({e}); asking the daemon anyway"
        );
        Ok(sources.leniently())
    })
}

/// `CALLGUARD_PBX_URL` and the like are not read: say so rather than ignore them silently.
fn warn_misspelt_env() {
    for w in crate::config::env_warnings(std::env::vars_os()) {
        eprintln!("callguard: warning: {w}");
    }
}

/// `config check --origin`: the effective keys, each with the layer that set it.
fn check_with_origin(explicit: Option<&std::path::Path>) -> ExitCode {
    use crate::config::origin;
    warn_misspelt_env();
    let result = Sources::discover(explicit).and_then(|sources| {
        let cfg = Config::load(&sources)?;
        let entries = origin::explain(&cfg, &sources)?;
        Ok(origin::render(&entries, &sources))
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callguard: configuration error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The async runtime of a command: multi-threaded for the daemon and the doctor's probes,
/// single-threaded for one request to the daemon. `None` (said on stderr) when it cannot start.
pub(crate) fn start_runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("callguard: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `verify --against-floor`: prints the comparison of the local ledger with the floor's copy;
/// `Ok(passed)`, or the exit code when it cannot be asked.
fn floor_anchor(config: Option<&std::path::Path>, json: bool) -> Result<bool, ExitCode> {
    let cfg = load(config)?;
    let Some(floor) = cfg.floor.clone() else {
        eprintln!("callguard verify: --against-floor needs a [floor] table in the configuration");
        return Err(ExitCode::from(EXIT_USAGE));
    };
    let host = crate::host::name();
    let agent = floor.agent_id(&cfg.agent, &host);
    let evidence = cfg.evidence_dir();
    let rt = start_runtime(false).ok_or(ExitCode::FAILURE)?;
    let result = rt.block_on(crate::floor::anchor::against_floor(
        &floor, &agent, &host, &evidence,
    ));
    match result {
        Ok(a) => {
            if json {
                let line = serde_json::json!({"floor": a, "ok": a.is_ok(), "detail": a.describe()});
                println!("{line}");
            } else if a.is_ok() {
                println!("OK   ledger vs floor: {}", a.describe());
            } else {
                println!("FAIL ledger vs floor: {}", a.describe());
            }
            Ok(a.is_ok())
        }
        Err(e) => {
            eprintln!("callguard verify: cannot ask the floor: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn runtime<F>(fut: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let Some(rt) = start_runtime(true) else {
        return ExitCode::FAILURE;
    };
    let code = match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callguard: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Blocking calls stuck on a hung peer (a frozen desktop) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}
