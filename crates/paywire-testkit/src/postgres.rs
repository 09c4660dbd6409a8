//! A throwaway PostgreSQL cluster for tests: [`PgCluster::start`] runs
//! `initdb` into a fresh temporary directory (trust authentication, superuser
//! `postgres`), starts the server with `pg_ctl` on a free `127.0.0.1` port
//! (its unix socket also inside the temporary directory), creates the
//! database `x402` and hands out its URL. Dropping the cluster stops the
//! server (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! The binaries are found in `$PAYWIRE_PG_BIN` (a directory), else on `PATH`,
//! else in the newest `/usr/lib/postgresql/*/bin` (Debian/Ubuntu). Install
//! them with `apt-get install -y postgresql` (the `.ci/run` script does).
//!
//! `initdb` refuses to run as root: when the tests run as root, the server
//! commands run as the `postgres` user through `runuser -u postgres --`, and
//! the temporary directory is handed to that user.
//!
//! [`PgCluster::start_with`] with [`PgClusterOptions::tls`] also serves TLS:
//! the kit makes a throwaway CA and a server certificate for `localhost` and
//! `127.0.0.1` ([`PgCluster::ca_file`]), plus an unrelated CA that signed
//! nothing ([`PgCluster::untrusted_ca_file`]); with
//! [`PgClusterOptions::hostssl_only`] a plaintext TCP client is refused.
//!
//! When PostgreSQL is not installed, [`PgCluster::start`] fails with
//! [`PgClusterError::NotInstalled`]. [`PgCluster::start_or_skip`] turns that
//! into `None` (with a loud message on stderr) only when
//! `PAYWIRE_SKIP_POSTGRES=1` is set, for local runs without PostgreSQL; CI never
//! sets it, so a missing PostgreSQL fails there.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable naming the directory holding `initdb` and `pg_ctl`.
pub const ENV_PG_BIN: &str = "PAYWIRE_PG_BIN";
/// Environment variable that, set to `1`, lets Postgres tests skip when
/// PostgreSQL is not installed (local runs only).
pub const ENV_SKIP: &str = "PAYWIRE_SKIP_POSTGRES";
/// The database [`PgCluster::start`] creates.
pub const DATABASE: &str = "x402";
/// The superuser of the cluster (trust authentication, no password).
pub const SUPERUSER: &str = "postgres";

/// What can go wrong starting a cluster.
#[derive(Debug, thiserror::Error)]
pub enum PgClusterError {
    /// `initdb` / `pg_ctl` were not found.
    #[error(
        "PostgreSQL is not installed: no initdb/pg_ctl in ${ENV_PG_BIN}, on PATH or in \
         /usr/lib/postgresql/*/bin. Install it (Debian/Ubuntu: `apt-get install -y postgresql`), \
         or set {ENV_SKIP}=1 to skip the PostgreSQL tests locally"
    )]
    NotInstalled,
    /// Running as root but no `postgres` user / `runuser` to drop privileges.
    #[error("running as root, but {0}; initdb refuses to run as root")]
    NoUnprivilegedUser(String),
    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the kit was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL command failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its output (and the server log tail, if any).
        output: String,
    },
    /// The blocking task died.
    #[error("postgres start-up task failed: {0}")]
    Task(String),
    /// The test certificates could not be made.
    #[error("making the test certificates: {0}")]
    Certificate(String),
}

/// How [`PgCluster::start_with`] sets the server up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgClusterOptions {
    /// Serve TLS (`ssl=on`) with a certificate from a throwaway CA.
    pub tls: bool,
    /// Accept TCP clients over TLS only (`hostssl` in `pg_hba.conf`; a
    /// plaintext client is rejected). Implies `tls`.
    pub hostssl_only: bool,
}

impl PgClusterOptions {
    /// TLS on, plaintext still accepted.
    pub fn tls() -> Self {
        Self {
            tls: true,
            hostssl_only: false,
        }
    }

    /// TLS on, plaintext TCP clients refused.
    pub fn hostssl_only() -> Self {
        Self {
            tls: true,
            hostssl_only: true,
        }
    }
}

/// The certificate files of a TLS cluster (in `<dir>/tls`).
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    untrusted_ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
}

type Result<T> = std::result::Result<T, PgClusterError>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgClusterError {
    let context = context.into();
    move |source| PgClusterError::Io { context, source }
}

/// A running throwaway cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    url: String,
    run_as: Option<String>,
    tls: Option<TlsFiles>,
}

impl PgCluster {
    /// Starts a cluster with database [`DATABASE`] (about 1–2 s).
    pub async fn start() -> Result<Self> {
        Self::start_with(PgClusterOptions::default()).await
    }

    /// Starts a cluster set up as `options` say.
    pub async fn start_with(options: PgClusterOptions) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::start_blocking(options))
            .await
            .map_err(|e| PgClusterError::Task(e.to_string()))?
    }

    /// [`Self::start_with`], skipping like [`Self::start_or_skip`].
    pub async fn start_with_or_skip(options: PgClusterOptions) -> Result<Option<Self>> {
        match Self::start_with(options).await {
            Ok(cluster) => Ok(Some(cluster)),
            Err(PgClusterError::NotInstalled) if skip_requested() => {
                eprintln!(
                    "\n!!! SKIPPING a PostgreSQL test: PostgreSQL is not installed and \
                     {ENV_SKIP}=1 is set. CI does not skip. !!!\n"
                );
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The PEM file of the CA that signed the server's certificate (TLS
    /// clusters only).
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca.as_path())
    }

    /// The PEM file of another CA, which signed nothing this server
    /// presents (TLS clusters only): trusting it alone must fail.
    pub fn untrusted_ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.untrusted_ca.as_path())
    }

    /// Like [`Self::start`], but when PostgreSQL is not installed and
    /// `PAYWIRE_SKIP_POSTGRES=1` is set, prints a loud notice and returns `None`.
    pub async fn start_or_skip() -> Result<Option<Self>> {
        Self::start_with_or_skip(PgClusterOptions::default()).await
    }

    /// The URL of database [`DATABASE`]: `postgres://postgres@127.0.0.1:PORT/x402`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's temporary directory (data in `data/`, log in `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates another database and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let (bin, port, name) = (self.bin.clone(), self.port, name.to_owned());
        tokio::task::spawn_blocking(move || {
            createdb(&bin, port, &name)?;
            Ok(database_url(port, &name))
        })
        .await
        .map_err(|e| PgClusterError::Task(e.to_string()))?
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// Restarts the server the way an operator's `pg_ctl restart` does
    /// (fast shutdown: open sessions are cut), on the same port with the same
    /// options; returns once it accepts connections again.
    pub async fn restart(&self) -> Result<()> {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let output = command.output().map_err(io("running pg_ctl restart"))?;
            check("pg_ctl restart", output, &dir)
        })
        .await
        .map_err(|e| PgClusterError::Task(e.to_string()))?
    }

    fn start_blocking(options: PgClusterOptions) -> Result<Self> {
        let bin = find_bin()?;
        let run_as = unprivileged_user()?;
        let dir = make_temp_dir()?;
        let mut cluster = Self {
            bin,
            dir,
            port: 0,
            url: String::new(),
            run_as,
            tls: None,
        };
        // From here on, `cluster`'s drop cleans up whatever happens.
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&cluster.dir)
                .output()
                .map_err(io("running chown"))?;
            check("chown", status, Path::new(""))
                .map_err(|e| PgClusterError::NoUnprivilegedUser(e.to_string()))?;
        }
        let sockets = cluster.dir.join("sock");
        std::fs::create_dir_all(&sockets).map_err(io("creating the socket directory"))?;
        if let Some(user) = &cluster.run_as {
            let output = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&sockets)
                .output()
                .map_err(io("running chown"))?;
            check("chown", output, Path::new(""))?;
        }
        cluster.init_data_dir()?;
        if options.tls || options.hostssl_only {
            cluster.tls = Some(cluster.write_certificates()?);
        }
        if options.hostssl_only {
            // Unix sockets stay open to the kit's own tools.
            std::fs::write(
                cluster.dir.join("data/pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostssl all all ::1/128 trust\n\
                 hostnossl all all 0.0.0.0/0 reject\n\
                 hostnossl all all ::/0 reject\n",
            )
            .map_err(io("writing pg_hba.conf"))?;
        }
        cluster.port = cluster.start_server(&sockets)?;
        createdb(&cluster.bin, cluster.port, DATABASE)?;
        cluster.url = database_url(cluster.port, DATABASE);
        Ok(cluster)
    }

    fn init_data_dir(&self) -> Result<()> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(io("running initdb"))?;
        check("initdb", output, &self.dir)
    }

    /// Makes the CA, the server certificate (`localhost`, `127.0.0.1`) and an
    /// unrelated CA; writes them into `<dir>/tls`, the key readable by the
    /// server's user only (PostgreSQL refuses a key others can read).
    fn write_certificates(&self) -> Result<TlsFiles> {
        let tls = self.dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(io("creating the tls directory"))?;
        let certificates = test_certificates()?;
        let files = TlsFiles {
            ca: tls.join("ca.pem"),
            untrusted_ca: tls.join("untrusted-ca.pem"),
            certificate: tls.join("server.crt"),
            key: tls.join("server.key"),
        };
        for (path, text) in [
            (&files.ca, &certificates.ca),
            (&files.untrusted_ca, &certificates.untrusted_ca),
            (&files.certificate, &certificates.server),
            (&files.key, &certificates.server_key),
        ] {
            std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600))
                .map_err(io("restricting the server key"))?;
        }
        if let Some(user) = &self.run_as {
            let output = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&tls)
                .output()
                .map_err(io("running chown"))?;
            check("chown", output, Path::new(""))?;
        }
        Ok(files)
    }

    /// Starts the server on a free port (three tries: another process may
    /// take the port between our probe and the server's bind); returns it.
    fn start_server(&self, sockets: &Path) -> Result<u16> {
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB \
                 -c max_connections=200",
                sockets.display()
            );
            let options = match &self.tls {
                Some(tls) => format!(
                    "{options} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                    tls.certificate.display(),
                    tls.key.display()
                ),
                None => options,
            };
            let output = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .map_err(io("running pg_ctl start"))?;
            match check("pg_ctl start", output, &self.dir) {
                Ok(()) => return Ok(port),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(PgClusterError::Task("no port".into())))
    }

    /// A server command (`initdb`, `pg_ctl`), as the unprivileged user when root.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }
}

/// The user the server runs as: PostgreSQL refuses to run as root, so as
/// root it is [`SUPERUSER`] through `runuser`; otherwise ourselves (`None`).
fn unprivileged_user() -> Result<Option<String>> {
    if !is_root() {
        return Ok(None);
    }
    if !Path::new("/usr/sbin/runuser").exists()
        && !Path::new("/sbin/runuser").exists()
        && which("runuser").is_none()
    {
        return Err(PgClusterError::NoUnprivilegedUser(
            "`runuser` (util-linux) was not found".into(),
        ));
    }
    Ok(Some(SUPERUSER.to_owned()))
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "immediate", "-w", "-t", "20", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn skip_requested() -> bool {
    std::env::var(ENV_SKIP).is_ok_and(|v| v.trim() == "1")
}

fn database_url(port: u16, name: &str) -> String {
    format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{name}")
}

/// PEM texts of the test CA, the server certificate and key, and an
/// unrelated CA.
struct TestCertificates {
    ca: String,
    untrusted_ca: String,
    server: String,
    server_key: String,
}

fn certificate_authority(
    name: &str,
) -> std::result::Result<(rcgen::CertificateParams, rcgen::KeyPair, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

fn test_certificates() -> Result<TestCertificates> {
    let make = || -> std::result::Result<TestCertificates, rcgen::Error> {
        let (ca_params, ca_key, ca) = certificate_authority("paywire test CA")?;
        let (_, _, untrusted_ca) = certificate_authority("paywire untrusted CA")?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate()?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server = params.signed_by(&key, &issuer)?.pem();
        Ok(TestCertificates {
            ca,
            untrusted_ca,
            server,
            server_key: key.serialize_pem(),
        })
    };
    make().map_err(|e| PgClusterError::Certificate(e.to_string()))
}

fn createdb(bin: &Path, port: u16, name: &str) -> Result<()> {
    let output = Command::new(bin.join("createdb"))
        // Over TLS when the server insists (hostssl only), plaintext otherwise.
        .env("PGSSLMODE", "prefer")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            SUPERUSER,
            name,
        ])
        .output()
        .map_err(io("running createdb"))?;
    check("createdb", output, Path::new(""))
}

fn check(command: &str, output: Output, dir: &Path) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    if !dir.as_os_str().is_empty() {
        let log = log_tail(dir);
        if !log.is_empty() {
            text.push_str("\n--- server log ---\n");
            text.push_str(&log);
        }
    }
    Err(PgClusterError::Command {
        command: command.to_owned(),
        status: output.status.to_string(),
        output: text,
    })
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[allow(unsafe_code)] // one libc call; see the SAFETY note
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn has_tools(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "createdb"]
        .iter()
        .all(|tool| dir.join(tool).is_file())
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`.
pub fn find_bin() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_PG_BIN).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(PgClusterError::NotInstalled)
        };
    }
    if let Some(initdb) = which("initdb") {
        // Follow Debian's /usr/local/bin or /usr/bin symlinks to the real bin dir.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|dir| has_tools(dir)) {
            return Ok(dir.to_owned());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(PgClusterError::NotInstalled)
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

fn make_temp_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Short: the unix socket path (dir + "/sock/.s.PGSQL.PORT") must fit 107 bytes.
    let base = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "paywire-pg-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    ));
    std::fs::create_dir(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cluster_starts_serves_and_cleans_up() {
        let cluster = match PgCluster::start_or_skip().await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return,
            Err(error) => panic!("{error}"),
        };
        assert!(cluster.url().starts_with("postgres://postgres@127.0.0.1:"));
        let dir = cluster.dir().to_owned();
        // The server answers on its port.
        let stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, cluster.port()));
        assert!(stream.is_ok(), "{}", cluster.log_tail());
        let other = cluster.create_database("second").await.expect("createdb");
        assert!(other.ends_with("/second"), "{other}");
        drop(cluster);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    fn postmaster_pid(cluster: &PgCluster) -> String {
        let text = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid"))
            .unwrap_or_else(|e| panic!("postmaster.pid: {e}"));
        text.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn tls_cluster_writes_its_certificates_and_restarts_with_them() {
        let cluster = match PgCluster::start_with_or_skip(PgClusterOptions::hostssl_only()).await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return,
            Err(error) => panic!("{error}"),
        };
        let ca = cluster.ca_file().expect("a CA file");
        let text = std::fs::read_to_string(ca).expect("CA readable");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        let untrusted = std::fs::read_to_string(cluster.untrusted_ca_file().expect("other CA"))
            .expect("other CA readable");
        assert_ne!(text, untrusted);
        {
            use std::os::unix::fs::PermissionsExt;
            let key = std::fs::metadata(cluster.dir().join("tls/server.key")).expect("key");
            assert_eq!(key.permissions().mode() & 0o777, 0o600);
        }
        let settings = std::fs::read_to_string(cluster.dir().join("data/postmaster.opts"))
            .expect("postmaster.opts");
        assert!(settings.contains("ssl=on"), "{settings}");
        cluster
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail()));
        assert!(cluster.create_database("again").await.is_ok());
    }

    #[tokio::test]
    async fn restart_brings_a_new_server_up_on_the_same_port() {
        let cluster = match PgCluster::start_or_skip().await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return,
            Err(error) => panic!("{error}"),
        };
        let before = postmaster_pid(&cluster);
        cluster
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail()));
        assert_ne!(
            postmaster_pid(&cluster),
            before,
            "the server was not restarted"
        );
        let stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, cluster.port()));
        assert!(stream.is_ok(), "{}", cluster.log_tail());
    }
}
