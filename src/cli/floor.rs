//! `callguard floor …`: printing and exit codes for the floor service's commands.

use std::path::Path;
use std::process::ExitCode;

use crate::floor::service::cli::{FloorArgs, FloorCommand, UserCommand};

/// Runs `callguard floor …`.
pub fn main(config: Option<&Path>, args: FloorArgs) -> ExitCode {
    let cfg = match super::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match args.command {
        None => super::runtime(crate::floor::service::run(cfg)),
        Some(FloorCommand::User {
            command:
                UserCommand::Add {
                    name,
                    teams,
                    admin,
                    display_name,
                    password_file,
                },
        }) => {
            let password = match crate::floor::service::cli::read_password(password_file.as_deref())
            {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("callguard: {e}");
                    return ExitCode::from(super::EXIT_USAGE);
                }
            };
            let db = crate::floor::service::db_url(&cfg);
            super::runtime(async move {
                let added = crate::floor::service::cli::user_add(
                    &db,
                    &name,
                    &teams,
                    admin,
                    display_name.as_deref(),
                    &password,
                )
                .await?;
                let role = if added.admin { "admin" } else { "lead" };
                println!(
                    "user {} added ({role}; teams: {})",
                    added.name,
                    if added.teams.is_empty() {
                        "-".to_string()
                    } else {
                        added.teams.join(", ")
                    }
                );
                Ok(())
            })
        }
    }
}
