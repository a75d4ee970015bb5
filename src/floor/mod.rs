//! The floor tier (DESIGN.md, "The floor tier"): the bus contract shared by the workstation
//! daemons and the `callguard floor` service, the `[floor]` configuration, and the workstation's
//! side of the bus (publisher, acks, caller history, ledger anchoring).

pub mod anchor;
pub mod backlog;
pub mod config;
pub mod contract;
pub mod follower;
pub mod link;
pub mod mapping;
pub mod publisher;
pub mod service;
pub mod sink;
pub mod state;
pub mod texts;
