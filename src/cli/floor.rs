//! `callguard floor …`: printing and exit codes for the floor service's commands.

use std::path::Path;
use std::process::ExitCode;

use crate::floor::service::cli::{FloorArgs, FloorCommand, UserCommand};

/// Runs `callguard floor …`.
pub fn main(config: Option<&Path>, args: FloorArgs) -> ExitCode {
    if let Some(FloorCommand::Doctor { json }) = args.command {
        // The doctor reports a configuration that does not load as its first row.
        return doctor(config, json);
    }
    let cfg = match super::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match args.command {
        None => super::runtime(crate::floor::service::run(cfg)),
        Some(FloorCommand::Report(args)) => report(&cfg, &args),
        Some(FloorCommand::Incident(args)) => incident(&cfg, &args),
        Some(FloorCommand::Doctor { json }) => doctor(config, json),
        Some(FloorCommand::User { command }) => user(&cfg, command),
    }
}

/// `callguard floor user …`.
fn user(cfg: &crate::config::Config, command: UserCommand) -> ExitCode {
    use crate::floor::service::cli as fc;
    let db = crate::floor::service::db_url(cfg);
    match command {
        UserCommand::Add {
            name,
            teams,
            admin,
            display_name,
            password_file,
        } => {
            let password = match password(password_file.as_deref()) {
                Ok(p) => p,
                Err(code) => return code,
            };
            super::runtime(async move {
                let added = fc::user_add(
                    &db,
                    &name,
                    &teams,
                    admin,
                    display_name.as_deref(),
                    &password,
                )
                .await?;
                println!(
                    "user {} added ({}; teams: {})",
                    added.name,
                    role(added.admin),
                    teams_text(&added.teams)
                );
                Ok(())
            })
        }
        UserCommand::List => super::runtime(async move {
            let users = fc::user_list(&db).await?;
            if users.is_empty() {
                println!("no board accounts yet (callguard floor user add NAME --team TEAM)");
            }
            for u in users {
                println!(
                    "{}\t{}\t{}\tteams: {}\tsessions: {}",
                    u.name,
                    u.display_name,
                    role(u.admin),
                    teams_text(&u.teams),
                    u.sessions
                );
            }
            Ok(())
        }),
        UserCommand::Passwd {
            name,
            password_file,
        } => {
            let password = match password(password_file.as_deref()) {
                Ok(p) => p,
                Err(code) => return code,
            };
            super::runtime(async move {
                fc::user_passwd(&db, &name, &password).await?;
                println!("user {name}: new password set; every session of {name} has ended");
                Ok(())
            })
        }
        UserCommand::Set {
            name,
            teams,
            admin,
            lead,
            display_name,
        } => {
            let change = crate::floor::service::accounts::UserChange {
                display_name,
                teams: (!teams.is_empty()).then_some(teams),
                admin: (admin || lead).then_some(admin),
            };
            super::runtime(async move {
                let u = fc::user_set(&db, &name, &change).await?;
                println!(
                    "user {}: {}; teams: {}; shown as {} (from their next page)",
                    u.name,
                    role(u.admin),
                    teams_text(&u.teams),
                    u.display_name
                );
                Ok(())
            })
        }
        UserCommand::Logout { name } => super::runtime(async move {
            let n = fc::user_logout(&db, &name).await?;
            println!("user {name}: {n} session(s) ended");
            Ok(())
        }),
        UserCommand::Remove { name } => super::runtime(async move {
            fc::user_remove(&db, &name).await?;
            println!("user {name} removed; their sessions have ended (their audit lines stay)");
            Ok(())
        }),
    }
}

fn role(admin: bool) -> &'static str {
    if admin { "admin" } else { "lead" }
}

fn teams_text(teams: &[String]) -> String {
    if teams.is_empty() {
        "-".to_string()
    } else {
        teams.join(", ")
    }
}

/// The password of `floor user add|passwd`, or the exit code after saying why there is none.
fn password(file: Option<&Path>) -> Result<String, ExitCode> {
    crate::floor::service::cli::read_password(file).map_err(|e| {
        eprintln!("callguard: {e}");
        ExitCode::from(super::EXIT_USAGE)
    })
}

fn report(
    cfg: &crate::config::Config,
    args: &crate::floor::service::report::cli::ReportArgs,
) -> ExitCode {
    use crate::floor::service::report::ReportError;
    let fc = cfg.floor.clone().unwrap_or_default();
    let db = crate::floor::service::db_url(cfg);
    if let Err(e) = crate::floor::service::report::cli::offset_secs(&fc, args.utc_offset.as_deref())
        .and_then(|o| crate::floor::service::report::cli::period(args, o))
    {
        eprintln!("callguard floor report: {e} (give --month, --quarter or --from/--to)");
        return ExitCode::from(super::EXIT_USAGE);
    }
    if let Some(t) = &args.team
        && !fc.teams.contains_key(t)
    {
        eprintln!(
            "callguard floor report: {}",
            ReportError::UnknownTeam(t.clone())
        );
        return ExitCode::from(super::EXIT_USAGE);
    }
    super::runtime(async move {
        let (written, line) = crate::floor::service::report::cli::report(&db, &fc, args).await?;
        println!("{line}");
        println!("html {}", written.html.display());
        println!("pdf  {}", written.pdf.display());
        for c in &written.csv {
            println!("csv  {}", c.display());
        }
        Ok(())
    })
}

fn incident(
    cfg: &crate::config::Config,
    args: &crate::floor::service::report::cli::IncidentArgs,
) -> ExitCode {
    let fc = cfg.floor.clone().unwrap_or_default();
    let db = crate::floor::service::db_url(cfg);
    super::runtime(async move {
        crate::floor::service::report::cli::incident(&db, &fc, args).await?;
        println!("pdf  {}", args.out.display());
        Ok(())
    })
}

/// Shows where the floor demo's board listens and how to log in. One write, and a closed stdout
/// is no reason to stop: `println!` panics on a closed pipe, and whoever started the demo may
/// stop reading once it has the URL.
pub(super) fn demo_banner(addr: std::net::SocketAddr) {
    use crate::floor::service::demo::{DEMO_PASSWORD, DEMO_USER};
    use std::io::Write;
    let banner = format!(
        "callguard floor demo\n  board:    http://{addr}/\n  login:    {DEMO_USER} / {DEMO_PASSWORD}\n  \
         workstations 1001–1004 are simulated; 1004 goes silent after 30 s.\n  Ctrl-C to stop.\n"
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
}

/// `callguard floor doctor`: the table (or JSON), exit 1 on any failure.
fn doctor(config: Option<&Path>, json: bool) -> ExitCode {
    let Some(rt) = super::start_runtime(true) else {
        return ExitCode::FAILURE;
    };
    let language = json.then_some(crate::config::Language::En);
    let report = rt.block_on(crate::floor::service::doctor::diagnose(config, language));
    super::doctor::finish(rt, &report, json)
}
