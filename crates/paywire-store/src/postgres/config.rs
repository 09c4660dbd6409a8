//! Connection settings: a `postgres://` URL with libpq's `sslmode` and
//! `sslrootcert` plus our pool parameters, or the same as typed values.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::StoreError;

/// URL parameter: the most connections the pool opens.
pub const PARAM_POOL_MAX_SIZE: &str = "pool_max_size";
/// URL parameter: seconds to wait for a free pooled connection.
pub const PARAM_POOL_ACQUIRE_TIMEOUT: &str = "pool_acquire_timeout";
/// URL parameter: `verified` (default) or `fast`, see [`Recycling`].
pub const PARAM_POOL_RECYCLING: &str = "pool_recycling";

/// The largest pool: the pool allocates its bookkeeping for `max_size`
/// connections up front, and no server serves more than this many clients
/// of one process sensibly.
pub const MAX_POOL_SIZE: usize = 10_000;

/// How a connection is encrypted. We never accept a certificate we could not
/// verify: stricter than libpq, whose `prefer` and `require` encrypt without
/// checking who answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// TLS when the server offers it, verified like [`SslMode::VerifyFull`];
    /// plaintext when the server does not offer TLS. The default (as in
    /// libpq), so that databases on a private network without TLS keep
    /// working; a server that offers TLS with a certificate we cannot verify
    /// is refused. An active attacker on the path can hide the server's
    /// TLS offer and then ask for the password in clear text, which is
    /// sent: across a network you do not control, use
    /// [`SslMode::VerifyFull`].
    #[default]
    Prefer,
    /// TLS required, verified like [`SslMode::VerifyFull`] (libpq does not
    /// verify here; we do).
    Require,
    /// TLS required; the certificate chain must lead to a trusted root, but
    /// the host name is not checked (for servers reached through an address
    /// their certificate does not name).
    VerifyCa,
    /// TLS required; chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the host name is checked against the certificate.
    pub fn checks_host_name(self) -> bool {
        !matches!(self, Self::VerifyCa)
    }

    pub(crate) fn to_tokio(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl FromStr for SslMode {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Config(format!(
                    "sslmode `{other}` is not supported (disable, prefer, require, verify-ca, \
                     verify-full)"
                )));
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the pool checks an idle connection before handing it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recycling {
    /// One round trip (an empty query) per checkout: a connection the server
    /// or the network dropped is replaced before the caller sees it, so the
    /// first query after a database restart succeeds. The default: a payment
    /// path prefers a sub-millisecond check to a failed settlement.
    #[default]
    Verified,
    /// Only checks whether the client noticed the connection closing; a
    /// silently dead connection fails the caller's first query.
    Fast,
}

/// Pool settings. Every field has a default; a URL parameter or a setter
/// changes one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOptions {
    /// The most connections the pool opens (default 16).
    pub max_size: usize,
    /// How long a caller waits for a free connection (default 10 s).
    pub acquire_timeout: Duration,
    /// How long opening one connection may take when the URL gives no
    /// `connect_timeout` (default 10 s).
    pub connect_timeout: Duration,
    /// The idle-connection check (default [`Recycling::Verified`]).
    pub recycling: Recycling,
    /// `application_name` when the URL gives none (shows in
    /// `pg_stat_activity`).
    pub application_name: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            recycling: Recycling::Verified,
            application_name: None,
        }
    }
}

impl PgOptions {
    /// Sets [`PgOptions::max_size`] (at least 1, at most [`MAX_POOL_SIZE`]).
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size.clamp(1, MAX_POOL_SIZE);
        self
    }

    /// Sets [`PgOptions::acquire_timeout`].
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets [`PgOptions::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`PgOptions::recycling`].
    pub fn with_recycling(mut self, recycling: Recycling) -> Self {
        self.recycling = recycling;
        self
    }

    /// Sets [`PgOptions::application_name`].
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }
}

/// Everything needed to open a [`PgPool`](super::PgPool). `Debug` prints no
/// password.
#[derive(Clone)]
pub struct PgConfig {
    pg: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    options: PgOptions,
}

impl PgConfig {
    /// From a typed tokio-postgres configuration (its own `ssl_mode` is
    /// ignored: set [`PgConfig::with_ssl_mode`]), with default TLS
    /// ([`SslMode::Prefer`], system roots) and pool options.
    pub fn new(pg: tokio_postgres::Config) -> Self {
        Self {
            pg,
            ssl_mode: SslMode::default(),
            root_cert: None,
            options: PgOptions::default(),
        }
    }

    /// Parses `postgres://user:password@host:port/db?param=value&...`.
    ///
    /// Besides tokio-postgres's parameters (`connect_timeout`,
    /// `application_name`, `hostaddr`, `target_session_attrs`, ...):
    /// `sslmode` (see [`SslMode`]), `sslrootcert` (a PEM file of trusted CA
    /// certificates; without it, the system's roots), [`PARAM_POOL_MAX_SIZE`],
    /// [`PARAM_POOL_ACQUIRE_TIMEOUT`] (seconds) and [`PARAM_POOL_RECYCLING`].
    /// Errors never repeat the URL.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let password = url_password(url);
        let scrub = |text: String| redact(&text, password.as_deref());
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Config(
                "the database URL must start with postgres:// or postgresql://".into(),
            ));
        }
        let (base, query) = split_query(url);
        let mut ssl_mode = SslMode::default();
        let mut root_cert = None;
        let mut options = PgOptions::default();
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| StoreError::Config(format!("parameter `{key}` is not UTF-8")))?;
            match key {
                "sslmode" => ssl_mode = value.parse()?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                PARAM_POOL_MAX_SIZE => {
                    let size = parse_number(key, &value)?;
                    if size > MAX_POOL_SIZE {
                        return Err(StoreError::Config(format!(
                            "{PARAM_POOL_MAX_SIZE} must be at most {MAX_POOL_SIZE}"
                        )));
                    }
                    options = options.with_max_size(size);
                }
                PARAM_POOL_ACQUIRE_TIMEOUT => {
                    options.acquire_timeout = parse_seconds(key, &value)?;
                }
                PARAM_POOL_RECYCLING => {
                    options.recycling = match value.as_ref() {
                        "verified" => Recycling::Verified,
                        "fast" => Recycling::Fast,
                        _ => {
                            return Err(StoreError::Config(format!(
                                "{PARAM_POOL_RECYCLING} must be `verified` or `fast`"
                            )));
                        }
                    };
                }
                _ => passed.push(pair),
            }
        }
        let rest = if passed.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        let pg: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(scrub(e.to_string())))?;
        Ok(Self {
            pg,
            ssl_mode,
            root_cert,
            options,
        })
    }

    /// Replaces the pool options.
    pub fn with_options(mut self, options: PgOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the TLS mode.
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// Trusts the CA certificates of this PEM file instead of the system's.
    pub fn with_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_cert = Some(path.into());
        self
    }

    /// The pool options.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The pool options, to change one.
    pub fn options_mut(&mut self) -> &mut PgOptions {
        &mut self.options
    }

    /// The TLS mode.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The CA file, if one was given.
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The tokio-postgres configuration (without TLS and pool settings).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    /// The tokio-postgres configuration a pooled connection uses: TLS mode,
    /// connect timeout and application name filled in.
    pub(crate) fn connection_config(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.ssl_mode(self.ssl_mode.to_tokio());
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(self.options.connect_timeout);
        }
        detect_dead_peers(&mut pg);
        if pg.get_application_name().is_none()
            && let Some(name) = &self.options.application_name
        {
            pg.application_name(name);
        }
        pg
    }
}

/// tokio-postgres's TCP keepalive starts probing after two hours idle, so a
/// connection cut by a silent network partition looked alive (and its
/// session's advisory locks held) for hours. Unless the URL chose otherwise,
/// probe after 30 s idle every 10 s and give up after 3 misses (about a
/// minute), and drop a connection whose sent data stays unacknowledged 60 s.
fn detect_dead_peers(pg: &mut tokio_postgres::Config) {
    const LIBRARY_DEFAULT_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if pg.get_keepalives_idle() == LIBRARY_DEFAULT_IDLE {
        pg.keepalives_idle(Duration::from_secs(30));
    }
    if pg.get_keepalives_interval().is_none() {
        pg.keepalives_interval(Duration::from_secs(10));
    }
    if pg.get_keepalives_retries().is_none() {
        pg.keepalives_retries(3);
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(Duration::from_secs(60));
    }
}

impl FromStr for PgConfig {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        Self::from_url(url)
    }
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("user", &self.pg.get_user())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("dbname", &self.pg.get_dbname())
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .field("options", &self.options)
            .finish()
    }
}

fn parse_number(key: &str, value: &str) -> Result<usize, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Config(format!("parameter `{key}` must be a whole number")))
}

fn parse_seconds(key: &str, value: &str) -> Result<Duration, StoreError> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| StoreError::Config(format!("parameter `{key}` must be seconds")))
}

/// `url` before its parameters, and the parameters. tokio-postgres (like
/// libpq) reads the credentials up to the first `@`, so a `?` typed
/// unencoded in a password belongs to the password: the parameters start at
/// the first `?` after the credentials, exactly where tokio-postgres reads
/// them, or our `sslmode` would be taken from the password and the real one
/// passed on (and then overwritten).
fn split_query(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let after_credentials = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |at| after_scheme + at + 1);
    match url[after_credentials..].find('?') {
        Some(at) => {
            let at = after_credentials + at;
            (&url[..at], &url[at + 1..])
        }
        None => (url, ""),
    }
}

/// The password of a `scheme://user:password@host/...` URL, as written:
/// what tokio-postgres takes for it (up to the first `@`).
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `text` with every occurrence of the password (as written and
/// percent-decoded) replaced.
pub(crate) fn redact(text: &str, password: Option<&str>) -> String {
    let Some(password) = password else {
        return text.to_owned();
    };
    let mut out = text.replace(password, "<redacted>");
    if let Ok(decoded) = percent_decode_str(password).decode_utf8()
        && !decoded.is_empty()
    {
        out = out.replace(decoded.as_ref(), "<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_out_of_the_url() -> Result<(), StoreError> {
        let config = PgConfig::from_url(
            "postgres://app:s3cret@db.internal:6432/pay?sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca%20file.pem&pool_max_size=4&pool_acquire_timeout=2.5\
             &pool_recycling=fast&application_name=gw&connect_timeout=3",
        )?;
        assert_eq!(config.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(config.root_cert(), Some(Path::new("/etc/ca file.pem")));
        assert_eq!(config.options().max_size, 4);
        assert_eq!(
            config.options().acquire_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(config.options().recycling, Recycling::Fast);
        let pg = config.connection_config();
        assert_eq!(pg.get_application_name(), Some("gw"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(pg.get_dbname(), Some("pay"));
        assert_eq!(pg.get_ports(), &[6432]);
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        Ok(())
    }

    #[test]
    fn defaults_prefer_tls_and_bound_the_waits() -> Result<(), StoreError> {
        let config = PgConfig::from_url("postgres://app@localhost/pay")?;
        assert_eq!(config.ssl_mode(), SslMode::Prefer);
        assert_eq!(config.root_cert(), None);
        let mut config = config.with_options(PgOptions::default().with_application_name("x"));
        config.options_mut().max_size = 3;
        let pg = config.connection_config();
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(pg.get_application_name(), Some("x"));
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        assert_eq!(config.options().acquire_timeout, Duration::from_secs(10));
        assert_eq!(config.options().recycling, Recycling::Verified);
        Ok(())
    }

    #[test]
    fn dead_peers_are_noticed_in_about_a_minute_unless_the_url_says_otherwise()
    -> Result<(), StoreError> {
        let pg = PgConfig::from_url("postgres://app@localhost/pay")?.connection_config();
        assert!(pg.get_keepalives());
        assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(pg.get_keepalives_interval(), Some(Duration::from_secs(10)));
        assert_eq!(pg.get_keepalives_retries(), Some(3));
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(60)));
        let chosen = PgConfig::from_url(
            "postgres://app@localhost/pay?keepalives_idle=300&keepalives_interval=20\
             &keepalives_retries=5&tcp_user_timeout=90",
        )?
        .connection_config();
        assert_eq!(chosen.get_keepalives_idle(), Duration::from_secs(300));
        assert_eq!(
            chosen.get_keepalives_interval(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(chosen.get_keepalives_retries(), Some(5));
        assert_eq!(
            chosen.get_tcp_user_timeout(),
            Some(&Duration::from_secs(90))
        );
        Ok(())
    }

    #[test]
    fn every_libpq_mode_parses_and_unknown_ones_are_refused() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<SslMode>().ok(), Some(mode));
        }
        assert!("allow".parse::<SslMode>().is_err());
        assert!(PgConfig::from_url("postgres://a@h/d?sslmode=bogus").is_err());
        assert!(PgConfig::from_url("mysql://a@h/d").is_err());
    }

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let url = "postgres://app:hunter%402@db:5432/pay?sslmode=require";
        let config = PgConfig::from_url(url).map_err(|e| e.to_string());
        let text = format!("{config:?}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(!text.contains("hunter"), "{text}");
        for bad in [
            "postgres://app:hunter%402@db:notaport/pay",
            "postgres://app:hunter%402@db/pay?unknown_param=1",
            "postgres://app:hunter%402@db/pay?pool_max_size=many",
            "postgres://app:hunter%402@db/pay?sslmode=allow",
        ] {
            let error = PgConfig::from_url(bad).map(|_| ()).err();
            let shown = format!(
                "{error:?} {}",
                error.as_ref().map(ToString::to_string).unwrap_or_default()
            );
            assert!(error.is_some(), "{bad} was accepted");
            assert!(!shown.contains("hunter"), "{shown}");
        }
    }

    /// libpq and tokio-postgres read the credentials up to the first `@`,
    /// so a `?` (or `/`) typed unencoded in a password is part of it. Our
    /// own parameters must be read from the same place: otherwise the
    /// `sslmode=require` after the host is handed to tokio-postgres, then
    /// overwritten with our default `prefer` (TLS silently downgradable),
    /// and the password is not redacted.
    #[test]
    fn a_question_mark_in_the_password_does_not_hide_the_parameters() -> Result<(), StoreError> {
        let config = PgConfig::from_url("postgres://app:pa?ss@db/pay?sslmode=require")?;
        assert_eq!(config.pg_config().get_password(), Some(&b"pa?ss"[..]));
        assert_eq!(config.ssl_mode(), SslMode::Require);
        assert_eq!(
            config.connection_config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let config = PgConfig::from_url("postgres://app:pa?ss@db/pay?pool_max_size=3")?;
        assert_eq!(config.options().max_size, 3);
        for url in ["postgres://app:pa?ss@db/pay", "postgres://app:pa/ss@db/pay"] {
            assert_eq!(url_password(url).as_deref(), url.get(15..20), "{url}");
        }
        Ok(())
    }

    /// deadpool sizes its slot queue and semaphore from `max_size` at
    /// once: an absurd value must be a configuration error, not a
    /// "capacity overflow" panic (or an allocation abort) at start.
    #[test]
    fn an_absurd_pool_size_is_refused_not_a_panic() {
        for size in ["1000000000000", "18446744073709551615"] {
            let url = format!("postgres://app@db/pay?pool_max_size={size}");
            assert!(
                matches!(PgConfig::from_url(&url), Err(StoreError::Config(_))),
                "{size} accepted"
            );
        }
        let mut config =
            PgConfig::from_url("postgres://app@db/pay").unwrap_or_else(|e| panic!("{e}"));
        config.options_mut().max_size = usize::MAX;
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::super::PgPool::open_lazy(&config).map(drop)
        }));
        assert!(
            matches!(opened, Ok(Err(StoreError::Config(_)))),
            "usize::MAX connections: {:?}",
            opened.map_err(|_| "panicked")
        );
        // PostgreSQL itself serves at most 2^18 - 1 connections.
        assert_eq!(
            PgOptions::default().with_max_size(usize::MAX).max_size,
            MAX_POOL_SIZE
        );
    }

    #[test]
    fn redact_covers_both_spellings() {
        assert_eq!(
            redact("x p%40ss y p@ss", Some("p%40ss")),
            "x <redacted> y <redacted>"
        );
        assert_eq!(url_password("postgres://u:pw@h/d"), Some("pw".into()));
        assert_eq!(url_password("postgres://u@h/d"), None);
    }
}
