//! Configuration: command-line flags, then `KEEPWATCH_*` environment variables, then the
//! TOML file given with `--config`, then defaults. Every error names the key at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use keepwatch_engine::{EngineConfig, SmtpConfig, SmtpSecurity};
use keepwatch_server::ConnectionLimits;
use serde::Deserialize;

/// Where the data lives; shared by `serve` and the admin commands.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Directory of the embedded SQLite database [default: ./keepwatch-data]
    #[arg(long, env = "KEEPWATCH_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use this database instead of the data directory, e.g. postgres://user@host/keepwatch.
    /// Several hosts, as libpq takes them, follow the primary through a failover:
    /// postgres://kw@db1,db2/keepwatch?target_session_attrs=read-write
    #[arg(long, env = "KEEPWATCH_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// TOML configuration file (keys as in the README; flags and env variables win over it)
    #[arg(long, env = "KEEPWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "KEEPWATCH_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Public base URL used in API answers and notifications [default: http://<listen>]
    #[arg(long, env = "KEEPWATCH_SITE_URL", value_name = "URL")]
    pub site_url: Option<String>,
    /// Bytes of a ping body that are stored; longer bodies are truncated [default: 100000]
    #[arg(long, env = "KEEPWATCH_PING_BODY_LIMIT", value_name = "BYTES")]
    pub ping_body_limit: Option<usize>,
    /// Pings kept per check; older ones are pruned [default: 100]
    #[arg(long, env = "KEEPWATCH_PING_LOG_LIMIT", value_name = "N")]
    pub ping_log_limit: Option<i64>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "KEEPWATCH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Time a client has to send a request's headers, from connecting (or from the first byte
    /// of its next request on a kept-alive connection), e.g. 10s [default: 10s]
    #[arg(long, env = "KEEPWATCH_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<String>,
    /// Time a kept-alive connection may wait for its next request, e.g. 60s, 2m [default: 60s]
    #[arg(long, env = "KEEPWATCH_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Time a client has to send a request's body, from the end of its headers [default: 30s]
    #[arg(long, env = "KEEPWATCH_BODY_READ_TIMEOUT", value_name = "DURATION")]
    pub body_read_timeout: Option<String>,
    /// Checks a project may have; more are refused (403 by the API; `?create=1` pings may
    /// create up to twice as many, then 404), as Healthchecks does [default: 10000]
    #[arg(long, env = "KEEPWATCH_CHECK_LIMIT", value_name = "N")]
    pub check_limit: Option<i64>,
    /// Checks a project may create a minute (API and `?create=1` pings together); more are
    /// refused as over the limit [default: 120]
    #[arg(long, env = "KEEPWATCH_CHECK_CREATE_RATE", value_name = "PER_MINUTE")]
    pub check_create_rate: Option<u32>,
    /// Connections open at once; more wait until one closes [default: 10000, or the open-file
    /// limit less 256 if lower; a larger value is used, with a warning]
    #[arg(long, env = "KEEPWATCH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// SMTP server for email channels
    #[arg(long, env = "KEEPWATCH_SMTP_HOST", value_name = "HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port [default: 587, or 465 with --smtp-security tls, 25 with none]
    #[arg(long, env = "KEEPWATCH_SMTP_PORT", value_name = "PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP security: starttls, tls or none [default: starttls]
    #[arg(long, env = "KEEPWATCH_SMTP_SECURITY", value_name = "MODE")]
    pub smtp_security: Option<String>,
    #[arg(long, env = "KEEPWATCH_SMTP_USERNAME", value_name = "USER")]
    pub smtp_username: Option<String>,
    /// File holding the SMTP password (a trailing newline is ignored). The password is not a
    /// flag, since `ps` shows every process's command line: give it in this file, in the
    /// KEEPWATCH_SMTP_PASSWORD environment variable, or as `password` or `password_file` in
    /// the config file's [smtp] section, e.g. --smtp-password-file /run/secrets/smtp
    #[arg(long, env = "KEEPWATCH_SMTP_PASSWORD_FILE", value_name = "PATH")]
    pub smtp_password_file: Option<PathBuf>,
    /// From the KEEPWATCH_SMTP_PASSWORD environment variable only (see above).
    #[arg(skip = std::env::var("KEEPWATCH_SMTP_PASSWORD").ok())]
    pub smtp_password: Option<String>,
    /// Sender address of notification emails [default: keepwatch@localhost]
    #[arg(long, env = "KEEPWATCH_SMTP_FROM", value_name = "ADDRESS")]
    pub smtp_from: Option<String>,
    /// Deliver webhooks and pages to loopback, private, link-local and other non-public
    /// addresses (receivers on your own network, e.g. http://10.0.0.5/hook). Off by default:
    /// such destinations are refused, after DNS resolution, so channel and contact URLs
    /// cannot reach internal services or cloud metadata
    #[arg(long, env = "KEEPWATCH_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
    /// PostgreSQL with several instances: each background loop (deadlines, alerting,
    /// delivery, incidents, audit, check-ins, housekeeping) runs on one instance at a time,
    /// under a lease in the database; when its holder dies another instance takes the loop
    /// over at most this many seconds later. Leases are renewed every fifth of it. Ignored
    /// with SQLite (one instance). Example: --lease-secs 10
    #[arg(long, env = "KEEPWATCH_LEASE_SECS", value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub lease_secs: u64,
    /// File holding the key `/metrics` asks for, as `Authorization: Bearer <key>` (a trailing
    /// newline is ignored); or the KEEPWATCH_METRICS_KEY environment variable. Without one,
    /// `/metrics` is open to whoever reaches the port. Example: --metrics-key-file
    /// /run/secrets/metrics-key
    #[arg(long, env = "KEEPWATCH_METRICS_KEY_FILE", value_name = "PATH")]
    pub metrics_key_file: Option<PathBuf>,
    /// From the KEEPWATCH_METRICS_KEY environment variable only (see above).
    #[arg(skip = std::env::var("KEEPWATCH_METRICS_KEY").ok())]
    pub metrics_key: Option<String>,
    /// This instance's name in the leases (`/api/v3/status/`, `/metrics`), unique among the
    /// instances on one database [default: host:pid:random]. A stable name lets a restarted
    /// instance take its leases back at once. Example: --instance-id kw-a
    #[arg(long, env = "KEEPWATCH_INSTANCE_ID", value_name = "NAME")]
    pub instance_id: Option<String>,
}

/// The TOML file. Unknown keys are errors, so a typo does not silently do nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub site_url: Option<String>,
    pub ping_body_limit: Option<usize>,
    pub ping_log_limit: Option<i64>,
    pub log_format: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub check_limit: Option<i64>,
    pub check_create_rate: Option<u32>,
    /// The key `/metrics` asks for, or a file holding it.
    pub metrics_key: Option<String>,
    pub metrics_key_file: Option<PathBuf>,
    pub smtp: Option<FileSmtp>,
    pub notifications: Option<FileNotifications>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSmtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password, instead of `password`.
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotifications {
    /// Seconds before the first retry of a failed delivery.
    pub retry_base_secs: Option<u64>,
    pub max_attempts: Option<i64>,
    /// Pages to one contact address per `page_rate_window_secs`; beyond it, repeats due
    /// together fold into one summary (sent at once; first pages always go).
    pub page_rate_limit: Option<u32>,
    pub page_rate_window_secs: Option<u64>,
    /// As `--allow-private-destinations`.
    pub allow_private_destinations: Option<bool>,
}

pub fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = read_text(path)?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

/// A text file's contents; an error names the file, and for bytes that are not UTF-8, where.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    keepwatch_core::oncall::config::utf8_text(&bytes)
        .map(str::to_string)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub site_url: String,
    pub ping_body_limit: usize,
    pub json_logs: bool,
    pub engine: EngineConfig,
    pub limits: ConnectionLimits,
    pub check_limit: i64,
    pub check_create_rate: u32,
    pub metrics_key: Option<String>,
}

/// File descriptors kept for everything but client connections: the database, outbound
/// deliveries, logs.
pub const RESERVED_FILES: u64 = 256;

/// The connection settings; `open_files` is the open-file limit the process runs with.
fn connection_limits(
    args: &ServeArgs,
    file: &FileConfig,
    open_files: u64,
) -> anyhow::Result<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let duration = |key: &str, flag: &Option<String>, file: &Option<String>, default| {
        let Some(text) = flag.as_ref().or(file.as_ref()) else {
            return Ok(default);
        };
        match humantime::parse_duration(text) {
            Ok(d) if (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&d) => Ok(d),
            Ok(_) => bail!("{key}: `{text}` is out of range (1s-1h)"),
            Err(e) => bail!("{key}: `{text}` is not a duration (e.g. 10s, 2m): {e}"),
        }
    };
    let available = open_files.saturating_sub(RESERVED_FILES).max(1);
    let max_connections = match args.max_connections.or(file.max_connections) {
        None => defaults
            .max_connections
            .min(usize::try_from(available).unwrap_or(usize::MAX)),
        Some(0) => bail!("max_connections: must be at least 1"),
        Some(n) => n,
    };
    Ok(ConnectionLimits {
        header_read_timeout: duration(
            "header_read_timeout",
            &args.header_read_timeout,
            &file.header_read_timeout,
            defaults.header_read_timeout,
        )?,
        idle_timeout: duration(
            "idle_timeout",
            &args.idle_timeout,
            &file.idle_timeout,
            defaults.idle_timeout,
        )?,
        body_read_timeout: duration(
            "body_read_timeout",
            &args.body_read_timeout,
            &file.body_read_timeout,
            defaults.body_read_timeout,
        )?,
        max_connections,
    })
}

pub fn storage(args: &StorageArgs, file: &FileConfig) -> (PathBuf, Option<String>) {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./keepwatch-data"));
    let database_url = args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone());
    (data_dir, database_url)
}

/// The settings of `serve`; `open_files` is the open-file limit the process runs with.
pub fn resolve(args: &ServeArgs, open_files: u64) -> anyhow::Result<Settings> {
    let file = read_file(args.storage.config.as_deref())?;
    let limits = connection_limits(args, &file, open_files)?;
    let check_limit = args
        .check_limit
        .or(file.check_limit)
        .unwrap_or(keepwatch_server::DEFAULT_CHECK_LIMIT);
    if !(1..=10_000_000).contains(&check_limit) {
        bail!("check_limit: {check_limit} is out of range (1-10000000)");
    }
    let check_create_rate = args
        .check_create_rate
        .or(file.check_create_rate)
        .unwrap_or(keepwatch_server::DEFAULT_CHECK_CREATE_RATE);
    if !(1..=100_000).contains(&check_create_rate) {
        bail!("check_create_rate: {check_create_rate} is out of range (1-100000)");
    }
    let (data_dir, database_url) = storage(&args.storage, &file);
    if let Some(url) = &database_url
        && !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
    {
        bail!("database_url: `{url}` is not a postgres:// or sqlite: URL");
    }
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let listen: SocketAddr = listen.parse().map_err(|_| {
        anyhow::anyhow!(
            "listen: `{listen}` is not an address (expected HOST:PORT, e.g. 127.0.0.1:8000)"
        )
    })?;
    let site_url = args
        .site_url
        .clone()
        .or(file.site_url.clone())
        .unwrap_or_else(|| format!("http://{listen}"));
    if !(site_url.starts_with("http://") || site_url.starts_with("https://")) {
        bail!("site_url: `{site_url}` must start with http:// or https://");
    }
    let ping_body_limit = args
        .ping_body_limit
        .or(file.ping_body_limit)
        .unwrap_or(100_000);
    if ping_body_limit > 10_000_000 {
        bail!("ping_body_limit: {ping_body_limit} is too large (at most 10000000 bytes)");
    }
    let ping_log_limit = args.ping_log_limit.or(file.ping_log_limit).unwrap_or(100);
    if !(1..=1_000_000).contains(&ping_log_limit) {
        bail!("ping_log_limit: {ping_log_limit} is out of range (1-1000000)");
    }
    let log_format = args
        .log_format
        .clone()
        .or(file.log_format.clone())
        .unwrap_or_else(|| "text".into());
    let json_logs = match log_format.as_str() {
        "text" => false,
        "json" => true,
        other => bail!("log_format: `{other}` is not one of text, json"),
    };
    let metrics_key = metrics_key(args, &file)?;
    let smtp_file = file.smtp.unwrap_or_default();
    let smtp_password = smtp_password(args, &smtp_file)?;
    let smtp_host = args.smtp_host.clone().or(smtp_file.host);
    let smtp = match smtp_host {
        None => None,
        Some(host) => {
            let security = args
                .smtp_security
                .clone()
                .or(smtp_file.security)
                .unwrap_or_else(|| "starttls".into());
            let security = match security.as_str() {
                "starttls" => SmtpSecurity::Starttls,
                "tls" => SmtpSecurity::Tls,
                "none" => SmtpSecurity::None,
                other => bail!("smtp.security: `{other}` is not one of starttls, tls, none"),
            };
            let default_port = match security {
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
                SmtpSecurity::None => 25,
            };
            let from = args
                .smtp_from
                .clone()
                .or(smtp_file.from)
                .unwrap_or_else(|| "keepwatch@localhost".into());
            if from.parse::<lettre_check::Mailbox>().is_err() {
                bail!("smtp.from: `{from}` is not an email address");
            }
            Some(SmtpConfig {
                host,
                port: args.smtp_port.or(smtp_file.port).unwrap_or(default_port),
                security,
                username: args.smtp_username.clone().or(smtp_file.username),
                password: smtp_password,
                from,
            })
        }
    };
    let notifications = file.notifications.unwrap_or_default();
    let mut engine = EngineConfig {
        smtp,
        site_url: site_url.trim_end_matches('/').to_string(),
        ping_log_limit,
        allow_private_destinations: args.allow_private_destinations
            || notifications.allow_private_destinations.unwrap_or(false),
        leases: keepwatch_engine::lease::LeaseSettings {
            duration: Duration::from_secs(args.lease_secs),
            renew_every: Duration::from_secs(args.lease_secs) / 5,
            instance: args.instance_id.clone().filter(|s| !s.trim().is_empty()),
        },
        ..EngineConfig::default()
    };
    if let Some(secs) = notifications.retry_base_secs {
        if secs == 0 {
            bail!("notifications.retry_base_secs: must be at least 1");
        }
        engine.retry_base = Duration::from_secs(secs);
    }
    if let Some(n) = notifications.max_attempts {
        if !(1..=100).contains(&n) {
            bail!("notifications.max_attempts: {n} is out of range (1-100)");
        }
        engine.max_attempts = n;
    }
    if let Some(n) = notifications.page_rate_limit {
        if !(1..=1000).contains(&n) {
            bail!("notifications.page_rate_limit: {n} is out of range (1-1000)");
        }
        engine.page_rate_limit = n;
    }
    if let Some(secs) = notifications.page_rate_window_secs {
        if !(1..=86_400).contains(&secs) {
            bail!("notifications.page_rate_window_secs: {secs} is out of range (1-86400)");
        }
        engine.page_rate_window = Duration::from_secs(secs);
    }
    Ok(Settings {
        listen,
        data_dir,
        database_url,
        site_url,
        ping_body_limit,
        json_logs,
        engine,
        limits,
        check_limit,
        check_create_rate,
        metrics_key,
    })
}

/// The key `/metrics` asks for: KEEPWATCH_METRICS_KEY or --metrics-key-file, else the config
/// file's `metrics_key` or `metrics_key_file`; two sources at one level are an error.
fn metrics_key(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<String>> {
    let read = |path: &Path, key: &str| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{key}: cannot read {}", path.display()))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    };
    let key = match (&args.metrics_key, &args.metrics_key_file) {
        (Some(_), Some(_)) => {
            bail!("metrics key: give KEEPWATCH_METRICS_KEY or --metrics-key-file, not both")
        }
        (Some(key), None) => Some(key.clone()),
        (None, Some(path)) => Some(read(path, "--metrics-key-file")?),
        (None, None) => match (&file.metrics_key, &file.metrics_key_file) {
            (Some(_), Some(_)) => {
                bail!("metrics_key_file: give metrics_key or metrics_key_file, not both")
            }
            (Some(key), None) => Some(key.clone()),
            (None, Some(path)) => Some(read(path, "metrics_key_file")?),
            (None, None) => None,
        },
    };
    match key {
        Some(key) if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            bail!("metrics key: must be non-empty, without spaces or control characters")
        }
        key => Ok(key),
    }
}

/// The SMTP password: from KEEPWATCH_SMTP_PASSWORD or --smtp-password-file, else from the
/// config file's `password` or `password_file`; two sources at one level are an error.
fn smtp_password(args: &ServeArgs, file: &FileSmtp) -> anyhow::Result<Option<String>> {
    let read = |path: &Path, key: &str| -> anyhow::Result<Option<String>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{key}: cannot read {}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    };
    match (&args.smtp_password, &args.smtp_password_file) {
        (Some(_), Some(_)) => {
            bail!("smtp password: give KEEPWATCH_SMTP_PASSWORD or --smtp-password-file, not both")
        }
        (Some(password), None) => return Ok(Some(password.clone())),
        (None, Some(path)) => return read(path, "--smtp-password-file"),
        (None, None) => {}
    }
    match (&file.password, &file.password_file) {
        (Some(_), Some(_)) => bail!("smtp.password_file: give password or password_file, not both"),
        (Some(password), None) => Ok(Some(password.clone())),
        (None, Some(path)) => read(path, "smtp.password_file"),
        (None, None) => Ok(None),
    }
}

/// Email address syntax check without pulling lettre into this crate's public API.
mod lettre_check {
    pub struct Mailbox;
    impl std::str::FromStr for Mailbox {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let address = s
                .rsplit_once('<')
                .map_or(s, |(_, a)| a.trim_end_matches('>'));
            match address.split_once('@') {
                Some((local, domain))
                    if !local.is_empty() && !domain.is_empty() && !address.contains(' ') =>
                {
                    Ok(Mailbox)
                }
                _ => Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn password(args: &[&str]) -> anyhow::Result<Option<String>> {
        let cli = Cli::try_parse_from([&["keepwatch", "--smtp-host", "mail"], args].concat())?;
        Ok(resolve(&cli.serve, 1 << 20)?
            .engine
            .smtp
            .and_then(|s| s.password))
    }

    #[test]
    fn the_metrics_key_comes_from_a_file_the_environment_or_the_config_file() {
        let key = |args: &[&str]| -> anyhow::Result<Option<String>> {
            let cli = Cli::try_parse_from([&["keepwatch"], args].concat())?;
            Ok(resolve(&cli.serve, 1 << 20)?.metrics_key)
        };
        assert_eq!(key(&[]).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metrics-key");
        std::fs::write(&file, "k3y\n").unwrap();
        let file = file.to_str().unwrap();
        assert_eq!(
            key(&["--metrics-key-file", file]).unwrap().as_deref(),
            Some("k3y")
        );
        let error = key(&["--metrics-key", "k3y"]).unwrap_err().to_string();
        assert!(
            error.contains("unexpected argument '--metrics-key'"),
            "{error}"
        );
        let config = dir.path().join("keepwatch.toml");
        let config = config.to_str().unwrap();
        std::fs::write(config, "metrics_key = \"inline\"\n").unwrap();
        assert_eq!(
            key(&["--config", config]).unwrap().as_deref(),
            Some("inline")
        );
        std::fs::write(config, format!("metrics_key_file = \"{file}\"\n")).unwrap();
        assert_eq!(key(&["--config", config]).unwrap().as_deref(), Some("k3y"));
        std::fs::write(config, "metrics_key = \"has space\"\n").unwrap();
        assert_eq!(
            key(&["--config", config]).unwrap_err().to_string(),
            "metrics key: must be non-empty, without spaces or control characters"
        );
    }

    #[test]
    fn the_smtp_password_comes_from_a_file_never_from_a_flag() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("smtp-password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let secret = secret.to_str().unwrap();
        assert_eq!(
            password(&["--smtp-password-file", secret])
                .unwrap()
                .as_deref(),
            Some("s3cret")
        );
        let error = password(&["--smtp-password", "s3cret"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unexpected argument '--smtp-password'"),
            "{error}"
        );
        // The config file's [smtp] section: `password_file` or `password`, not both.
        let config = dir.path().join("keepwatch.toml");
        let config = config.to_str().unwrap();
        std::fs::write(config, format!("[smtp]\npassword_file = \"{secret}\"\n")).unwrap();
        assert_eq!(
            password(&["--config", config]).unwrap().as_deref(),
            Some("s3cret")
        );
        std::fs::write(config, "[smtp]\npassword = \"inline\"\n").unwrap();
        assert_eq!(
            password(&["--config", config]).unwrap().as_deref(),
            Some("inline")
        );
        std::fs::write(
            config,
            format!("[smtp]\npassword = \"inline\"\npassword_file = \"{secret}\"\n"),
        )
        .unwrap();
        let error = password(&["--config", config]).unwrap_err().to_string();
        assert_eq!(
            error,
            "smtp.password_file: give password or password_file, not both"
        );
        let missing = dir.path().join("nope");
        let error = password(&["--smtp-password-file", missing.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--smtp-password-file: cannot read"),
            "{error}"
        );
    }
}
