//! Integration tests: the real server over HTTP on loopback, one test binary (each binary
//! pays a link). See `helpers` for `spawn_app()`.

mod alerts;
mod api_v3;
mod cli;
mod durability;
mod helpers;
mod notifications;
mod oncall_load;
mod pings;
mod postgres;
mod resources;
mod restart;
mod runner;
