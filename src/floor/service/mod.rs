//! `callguard floor`: the service team leads use — a durable consumer of the bus, a store
//! (SQLite or PostgreSQL), and the board.

pub mod accounts;
pub mod cli;
pub mod store;
pub mod web;

use crate::config::Config;

/// The store URL of `cfg`: `floor.db`, else `sqlite://<data dir>/floor.db`.
pub fn db_url(cfg: &Config) -> String {
    format!("sqlite://{}", cfg.data_dir().join("floor.db").display())
}

/// Runs the floor service until a signal.
pub async fn run(_cfg: Config) -> anyhow::Result<()> {
    anyhow::bail!("the floor service needs the bus contract")
}
