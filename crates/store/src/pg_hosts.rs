//! Several PostgreSQL hosts in one URL, as libpq takes them
//! (`postgres://kw@db1:5432,db2:5432/keepwatch?target_session_attrs=read-write`): connections go
//! to the first host that answers and, with `read-write` (or `primary`), accepts writes, and
//! move to another when that host goes away or turns into a standby after a failover.
//!
//! sqlx connects a pool to one host only and ignores `target_session_attrs`, so this module
//! does the libpq part on top of it: it picks the host, points the pool at it
//! (`Pool::set_connect_options`) and drops the connections opened before a switch.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::{Result, StoreError};

/// What a session must be to be used (libpq's `target_session_attrs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    Any,
    /// `read-write`: `SHOW transaction_read_only` is `off`.
    ReadWrite,
    /// `primary`: `pg_is_in_recovery()` is false.
    Primary,
}

/// The hosts of a URL, each as sqlx's options, and what a session must be.
#[derive(Clone, Debug)]
pub(crate) struct Hosts {
    pub names: Vec<String>,
    pub options: Vec<PgConnectOptions>,
    pub attrs: SessionAttrs,
}

/// How often the pool's host is checked (is it up, does it still take writes).
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How long a connection attempt to one host may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Splits a PostgreSQL URL into one URL per host (the part after `://` up to the first `/`
/// or `?` may list `host[:port]` entries separated by commas).
pub(crate) fn parse(url: &str) -> Result<Hosts> {
    let invalid = |why: String| StoreError::task(format!("database URL: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("no scheme (postgres://…)".into()))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    // target_session_attrs is libpq's, not sqlx's: read it here and leave it out.
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => {
                attrs = match value {
                    "any" => SessionAttrs::Any,
                    "read-write" => SessionAttrs::ReadWrite,
                    "primary" => SessionAttrs::Primary,
                    other => {
                        return Err(invalid(format!(
                            "target_session_attrs={other} is not supported: keepwatch writes, \
                             so use read-write, primary or any"
                        )));
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let names: Vec<String> = hosts.split(',').map(str::to_string).collect();
    if names.iter().any(String::is_empty) && names.len() > 1 {
        return Err(invalid(format!("an empty host in {hosts:?}")));
    }
    let mut options = Vec::with_capacity(names.len());
    for host in &names {
        let one = format!("{scheme}://{user}{host}{path}{query}");
        options.push(
            PgConnectOptions::from_str(&one).map_err(|e| invalid(format!("host {host:?}: {e}")))?,
        );
    }
    Ok(Hosts {
        names,
        options,
        attrs,
    })
}

/// Whether a session is what `attrs` asks for; the error says what it is instead.
async fn acceptable(conn: &mut PgConnection, attrs: SessionAttrs) -> sqlx::Result<()> {
    let refused = |why: &str| sqlx::Error::Configuration(why.to_string().into());
    match attrs {
        SessionAttrs::Any => Ok(()),
        SessionAttrs::ReadWrite => {
            let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
                .fetch_one(&mut *conn)
                .await?;
            if read_only == "on" {
                return Err(refused(
                    "the server is read-only (a standby?) and target_session_attrs=read-write",
                ));
            }
            Ok(())
        }
        SessionAttrs::Primary => {
            let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut *conn)
                .await?;
            if standby {
                return Err(refused(
                    "the server is a standby and target_session_attrs=primary",
                ));
            }
            Ok(())
        }
    }
}

/// The first host, in the URL's order, that answers and is acceptable; else every host's
/// error.
async fn first_acceptable(hosts: &Hosts) -> std::result::Result<usize, String> {
    let mut errors = Vec::new();
    for (i, options) in hosts.options.iter().enumerate() {
        let attempt = async {
            let mut conn = PgConnection::connect_with(options).await?;
            let verdict = acceptable(&mut conn, hosts.attrs).await;
            let _ = conn.close().await;
            verdict
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(())) => return Ok(i),
            Ok(Err(e)) => errors.push(format!("{}: {e}", hosts.names[i])),
            Err(_) => errors.push(format!("{}: no answer within 3 s", hosts.names[i])),
        }
    }
    Err(errors.join("; "))
}

/// A pool on the first acceptable host. With several hosts or a session requirement, a
/// background task watches the host and moves the pool when it stops being acceptable.
pub(crate) async fn connect(hosts: Hosts, max_connections: u32) -> Result<PgPool> {
    let watched = hosts.options.len() > 1 || hosts.attrs != SessionAttrs::Any;
    // Each host tried on its own first, so a refusal says why (the pool only times out).
    let first = if watched {
        first_acceptable(&hosts)
            .await
            .map_err(|e| StoreError::task(format!("no usable PostgreSQL host: {e}")))?
    } else {
        0
    };
    // Connections opened before the last switch of host are closed instead of reused.
    let switched: Arc<Mutex<Option<Instant>>> = Arc::default();
    let attrs = hosts.attrs;
    let since_switch = switched.clone();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |conn, _| Box::pin(async move { acceptable(conn, attrs).await }))
        .before_acquire(move |_, meta| {
            let stale = since_switch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|at| meta.age > at.elapsed());
            Box::pin(async move { Ok(!stale) })
        })
        .connect_with(hosts.options[first].clone())
        .await?;
    if watched {
        tokio::spawn(watch(pool.clone(), hosts, first, switched));
    }
    Ok(pool)
}

/// Checks the pool's host every second; when it fails or is no longer acceptable, points the
/// pool at the first acceptable host (which may be the same one, back after a restart).
async fn watch(
    pool: PgPool,
    hosts: Hosts,
    mut current: usize,
    switched: Arc<Mutex<Option<Instant>>>,
) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if pool.is_closed() {
            return;
        }
        let healthy = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut conn = pool.acquire().await?;
            acceptable(&mut conn, hosts.attrs).await
        })
        .await;
        let why = match healthy {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 3 s".to_string(),
        };
        match first_acceptable(&hosts).await {
            Ok(next) if next != current => {
                tracing::warn!(
                    from = %hosts.names[current],
                    to = %hosts.names[next],
                    reason = %why,
                    "PostgreSQL: moving to another host"
                );
                pool.set_connect_options(hosts.options[next].clone());
                *switched.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                current = next;
            }
            Ok(_) => {}
            Err(errors) => {
                tracing::warn!(errors = %errors, "PostgreSQL: no usable host; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_become_one_url_each_and_the_session_attrs_are_read() {
        let hosts = parse(
            "postgres://kw:secret@db1:5433,db2,10.0.0.3:6000/keepwatch?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(hosts.names, ["db1:5433", "db2", "10.0.0.3:6000"]);
        assert_eq!(hosts.attrs, SessionAttrs::ReadWrite);
        assert_eq!(hosts.options[0].get_host(), "db1");
        assert_eq!(hosts.options[0].get_port(), 5433);
        assert_eq!(hosts.options[1].get_port(), 5432);
        assert_eq!(hosts.options[2].get_host(), "10.0.0.3");
        assert_eq!(hosts.options[2].get_database(), Some("keepwatch"));
        assert_eq!(hosts.options[2].get_username(), "kw");
    }

    #[test]
    fn one_host_without_attrs_is_as_before() {
        let hosts = parse("postgres://postgres@127.0.0.1:5432/postgres").unwrap();
        assert_eq!(hosts.names.len(), 1);
        assert_eq!(hosts.attrs, SessionAttrs::Any);
    }

    #[test]
    fn a_standby_target_is_refused_with_the_reason() {
        let e = parse("postgres://db1,db2/kw?target_session_attrs=standby").unwrap_err();
        assert!(
            e.to_string()
                .contains("target_session_attrs=standby is not supported")
        );
        let e = parse("postgres://db1,,db2/kw").unwrap_err();
        assert!(e.to_string().contains("an empty host"), "{e}");
    }
}
