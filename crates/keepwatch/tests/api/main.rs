//! Integration tests: the real server over HTTP on loopback, one test binary (each binary
//! pays a link). See `helpers` for `spawn_app()`.

mod alert_updates;
mod alerts;
mod api_v3;
mod browser;
mod check_limits;
mod checkins;
mod cli;
mod connections;
mod delivery;
mod disk_full;
mod drill;
mod durability;
mod failover;
mod hc_compat;
mod helpers;
mod import;
mod incident_bench;
mod incidents;
mod input_checks;
mod instances;
mod late_and_depends;
mod notifications;
mod oncall_load;
mod openapi;
mod pg_outage;
mod pings;
mod postgres;
mod prometheus;
mod readonly;
mod resources;
mod restart;
mod routing;
mod runner;
mod ui;
