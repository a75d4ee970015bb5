//! Asterisk REST Interface (ARI) pieces used by the Asterisk connector: the events it reads
//! ([`event`]), the REST calls it makes ([`rest`]) and which channels are agent calls
//! ([`channels`]).

pub mod channels;
pub mod event;
pub mod rest;
