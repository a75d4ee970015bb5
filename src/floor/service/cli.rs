//! `callguard floor …`: the arguments and what each command does, returning typed results (the
//! CLI layer prints them).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::accounts::{self, AccountError, NewUser};
use super::store::{Store, StoreError, UserRow};

/// `callguard floor [COMMAND]`: without a command, serve.
#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Account management; without it, run the floor service.
    #[command(subcommand)]
    pub command: Option<FloorCommand>,
}

/// `callguard floor …` commands.
#[derive(Debug, Subcommand)]
pub enum FloorCommand {
    /// Board accounts.
    User {
        /// What to do with accounts.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Monthly, quarterly or any-range report: HTML, PDF and CSV files.
    Report(super::report::cli::ReportArgs),
    /// One call's incident record as PDF.
    Incident(super::report::cli::IncidentArgs),
    /// Check what the floor service needs (board address and TLS, store, NATS and the stream,
    /// the archive and the workstations' keys); exit 1 on any failure.
    Doctor {
        /// JSON for machines (English) instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// `callguard floor user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a board account (the password is asked, or read from --password-file).
    Add {
        /// Login name.
        name: String,
        /// A team the user leads (repeat for several); leads see their teams' agents.
        #[arg(long = "team", value_name = "TEAM")]
        teams: Vec<String>,
        /// Sees every agent and the audit log.
        #[arg(long)]
        admin: bool,
        /// Name shown to agents when this lead takes a call (default: the login name).
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        /// Read the password from the first line of this file instead of asking.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the accounts: role, teams and open sessions.
    List,
    /// Set a new password (asked, or read from --password-file); every session of the account
    /// ends.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of this file instead of asking.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Change an account's teams, role or shown name; it takes effect at the account's next
    /// page (its password and sessions stay).
    Set {
        /// Login name.
        name: String,
        /// The teams the user leads from now on, replacing the old ones (repeat for several).
        #[arg(long = "team", value_name = "TEAM")]
        teams: Vec<String>,
        /// Make the account an admin: sees every agent and the audit log.
        #[arg(long, conflicts_with = "lead")]
        admin: bool,
        /// Make the account a lead: sees only its teams' agents.
        #[arg(long)]
        lead: bool,
        /// Name shown to agents when this lead takes a call (blank: the login name).
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
    },
    /// End every session of an account (a lost laptop, a lead who left the shift).
    Logout {
        /// Login name.
        name: String,
    },
    /// Remove an account and end its sessions (its lines in the audit log stay).
    Remove {
        /// Login name.
        name: String,
    },
}

/// One account as `floor user list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserListed {
    /// Login name.
    pub name: String,
    /// Shown to agents.
    pub display_name: String,
    /// Teams.
    pub teams: Vec<String>,
    /// Admin.
    pub admin: bool,
    /// Sessions not expired.
    pub sessions: i64,
}

/// `callguard floor user list`.
pub async fn user_list(db_url: &str) -> Result<Vec<UserListed>, FloorCliError> {
    let store = Store::open(db_url).await?;
    let users = store.users(chrono::Utc::now().timestamp_millis()).await;
    store.close().await;
    Ok(users?
        .into_iter()
        .map(|(u, sessions)| UserListed {
            name: u.name,
            display_name: u.display_name,
            teams: u.teams,
            admin: u.admin,
            sessions,
        })
        .collect())
}

/// `callguard floor user passwd`.
pub async fn user_passwd(db_url: &str, name: &str, password: &str) -> Result<(), FloorCliError> {
    let store = Store::open(db_url).await?;
    let r = accounts::set_password(&store, name, password).await;
    store.close().await;
    Ok(r?)
}

/// `callguard floor user set`: the account as it is now.
pub async fn user_set(
    db_url: &str,
    name: &str,
    change: &accounts::UserChange,
) -> Result<UserRow, FloorCliError> {
    if change.display_name.is_none() && change.teams.is_none() && change.admin.is_none() {
        return Err(FloorCliError::NothingToChange);
    }
    let store = Store::open(db_url).await?;
    let r = accounts::change_user(&store, name, change).await;
    store.close().await;
    Ok(r?)
}

/// `callguard floor user logout`: how many sessions ended.
pub async fn user_logout(db_url: &str, name: &str) -> Result<u64, FloorCliError> {
    let store = Store::open(db_url).await?;
    let r = match store.user(name).await {
        Ok(Some(_)) => store.end_sessions(name).await.map_err(FloorCliError::from),
        Ok(None) => Err(AccountError::NoSuchUser(name.to_string()).into()),
        Err(e) => Err(e.into()),
    };
    store.close().await;
    r
}

/// `callguard floor user remove`.
pub async fn user_remove(db_url: &str, name: &str) -> Result<(), FloorCliError> {
    let store = Store::open(db_url).await?;
    let r = store.remove_user(name).await;
    store.close().await;
    if r? {
        Ok(())
    } else {
        Err(AccountError::NoSuchUser(name.to_string()).into())
    }
}

/// Why a floor command failed.
#[derive(Debug, thiserror::Error)]
pub enum FloorCliError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The account was refused.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The password could not be read.
    #[error("cannot read the password: {0}")]
    Password(String),
    /// The two passwords typed differ.
    #[error("the passwords do not match")]
    Mismatch,
    /// `floor user set` with nothing to change.
    #[error("nothing to change: give --team, --admin, --lead or --display-name")]
    NothingToChange,
}

/// What `floor user add` did.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAdded {
    /// Login name.
    pub name: String,
    /// Teams.
    pub teams: Vec<String>,
    /// Admin.
    pub admin: bool,
}

/// Reads the password: the first line of `file`, else twice from the terminal.
pub fn read_password(file: Option<&std::path::Path>) -> Result<String, FloorCliError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FloorCliError::Password(format!("{}: {e}", path.display())))?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| FloorCliError::Password(e.to_string()))?;
    let second = rpassword::prompt_password("Password again: ")
        .map_err(|e| FloorCliError::Password(e.to_string()))?;
    if first != second {
        return Err(FloorCliError::Mismatch);
    }
    Ok(first)
}

/// `callguard floor user add`: creates the account in the store at `db_url`.
pub async fn user_add(
    db_url: &str,
    name: &str,
    teams: &[String],
    admin: bool,
    display_name: Option<&str>,
    password: &str,
) -> Result<UserAdded, FloorCliError> {
    let teams = accounts::clean_teams(teams);
    if teams.is_empty() && !admin {
        return Err(AccountError::NoTeam.into());
    }
    let store = Store::open(db_url).await?;
    let user = NewUser {
        name: name.to_string(),
        display_name: display_name.unwrap_or("").to_string(),
        teams: teams.clone(),
        admin,
    };
    let result = accounts::add_user(
        &store,
        &user,
        password,
        chrono::Utc::now().timestamp_millis(),
    )
    .await
    .map(|()| UserAdded {
        name: name.to_string(),
        teams,
        admin,
    });
    store.close().await;
    Ok(result?)
}
