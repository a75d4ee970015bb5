//! `callguard floor`: the service team leads use — a durable consumer of the bus, a store
//! (SQLite or PostgreSQL), and the board.

pub mod accounts;
pub mod bus;
pub mod cli;
pub mod demo;
pub mod doctor;
pub mod evidence;
pub mod fleet;
pub mod ingest;
pub mod report;
pub mod run;
pub mod store;
pub mod web;

pub use run::{Running, db_url, run, serve, serve_on};
