//! The floor tier: the bus contract shared by workstations and the floor service.

pub mod service;
