//! callguard: follows a PBX's calls, plays the recording notice, warns the agent at 15 and 30
//! minutes, pings team leads, and seals each call's recording as evidence.
//!
//! Data flows one way: [`pbx`] → [`calls`] → [`alerts`] (and the evidence and escalation sinks).

pub mod alerts;
pub mod archive;
pub mod bus;
pub mod calls;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod escalation;
pub mod events;
pub mod evidence;
pub mod floor;
pub mod fsutil;
pub mod harassment;
pub mod health;
pub mod host;
pub mod logging;
pub mod messages;
pub mod pbx;
pub mod queue;
pub mod redact;
pub mod reload;
pub mod sdnotify;
pub mod sink;
pub mod supervisor;
pub mod tls;
pub mod tray;
