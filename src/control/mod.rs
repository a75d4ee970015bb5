//! The control socket: how `callguard status` and `callguard escalate` (and later `mark` and
//! `note`) talk to the running daemon.
//!
//! A unix socket, `$XDG_RUNTIME_DIR/callguard/control.sock` by default, mode 0600, that refuses
//! peers running as another user. Line-delimited JSON: each request is one object with a `cmd`
//! field, each answer one object `{"ok":true,"result":…}` or
//! `{"ok":false,"code":"…","error":"…"}`. New commands are new `cmd` values; unknown ones get
//! `code: "unknown_command"`, so old clients and new daemons can tell what is missing.
//!
//! - [`protocol`]: the wire format (requests, answers, the status document);
//! - [`server`]: the daemon's side (a supervised part);
//! - [`client`]: one request from a CLI command.
//!
//! Printing and exit codes are the CLI's (`crate::cli`).

pub mod client;
pub mod protocol;
pub mod server;

pub use client::{ClientError, request};
pub use protocol::*;
pub use server::{BindError, ControlContext, bind, probe_notifications, serve};
