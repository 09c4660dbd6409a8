//! Running one anvil process: free port, log capture, readiness, and making sure it dies
//! with its `Devnet` (on drop, on panic, and when the owning process is killed hard).

use std::ffi::OsString;
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{DevnetError, Result};
use crate::install::tail;

/// How long anvil may take to print "Listening on".
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times to retry when another process grabbed the port first.
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 30;

/// A running anvil with its log directory.
#[derive(Debug)]
pub(crate) struct AnvilProcess {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    keep_dir: bool,
}

enum Wait {
    Ready,
    PortTaken,
}

impl AnvilProcess {
    /// Starts `anvil --host 127.0.0.1 --port <free port> <args>` and waits until it listens.
    pub(crate) async fn start(anvil: &Path, args: &[OsString]) -> Result<Self> {
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let dir = make_temp_dir()?;
            let log = dir.join("anvil.log");
            let out = File::create(&log)
                .map_err(|e| DevnetError::io(format!("creating {}", log.display()), e))?;
            let err = out
                .try_clone()
                .map_err(|e| DevnetError::io("duplicating the log file handle", e))?;
            let mut cmd = Command::new(anvil);
            cmd.arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err));
            let child = match spawn_tied_to_process(cmd).await {
                Ok(child) => child,
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(DevnetError::io(
                        format!("spawning anvil ({})", anvil.display()),
                        e,
                    ));
                }
            };
            let mut process = AnvilProcess {
                child: Some(child),
                port,
                dir,
                log,
                keep_dir: false,
            };
            match process.wait_listening().await {
                Ok(Wait::Ready) => return Ok(process),
                Ok(Wait::PortTaken) => {
                    last_err = Some(
                        process.startup_error(format!("port {port} was taken by another process")),
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            DevnetError::Unexpected("anvil did not start and left no error".into())
        }))
    }

    async fn wait_listening(&mut self) -> Result<Wait> {
        let needle = format!("Listening on 127.0.0.1:{}", self.port);
        let started = Instant::now();
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(&needle) {
                return Ok(Wait::Ready);
            }
            let exited = match self.child.as_mut() {
                Some(child) => child
                    .try_wait()
                    .map_err(|e| DevnetError::io("polling anvil", e))?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let text = fs::read_to_string(&self.log).unwrap_or_default();
                if text.contains("Address already in use") {
                    return Ok(Wait::PortTaken);
                }
                self.keep_dir = true;
                return Err(self.startup_error(format!("anvil exited early ({status})")));
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                self.keep_dir = true;
                return Err(self.startup_error(format!(
                    "anvil did not print {needle:?} within {STARTUP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A [`DevnetError::Startup`] carrying the tail of the log.
    pub(crate) fn startup_error(&self, reason: String) -> DevnetError {
        DevnetError::Startup {
            reason,
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// The last lines anvil printed.
    pub(crate) fn log_tail(&self) -> String {
        tail(
            &fs::read_to_string(&self.log).unwrap_or_default(),
            LOG_TAIL_LINES,
        )
    }

    /// Keeps the log directory after drop (for failures worth inspecting).
    pub(crate) fn keep_log(&mut self) {
        self.keep_dir = true;
    }

    /// The TCP port anvil listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// anvil's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file that receives anvil's stdout and stderr.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends SIGINT (anvil then writes its `--dump-state` file) and waits for the exit.
    pub(crate) async fn interrupt_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(child) = self.child.as_mut() else {
            return Err(DevnetError::Unexpected("anvil is not running".into()));
        };
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| DevnetError::Unexpected("anvil pid out of range".into()))?;
        // SAFETY: `kill` has no memory-safety preconditions. `pid` is our own child, which
        // has not been reaped yet (we hold its `Child`), so the id cannot have been reused.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGINT) };
        if rc != 0 {
            return Err(DevnetError::io(
                "sending SIGINT to anvil",
                std::io::Error::last_os_error(),
            ));
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| DevnetError::io("waiting for anvil", e))?
            {
                self.child = None;
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(DevnetError::Timeout(format!(
                    "anvil did not exit within {timeout:?} after SIGINT"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.keep_dir = true;
            eprintln!(
                "paywire-devnet: anvil on port {} stopped during a panic; its log is kept at {}",
                self.port,
                self.log.display()
            );
        }
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A port that was free a moment ago (bind port 0 on loopback, read it, release it).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| DevnetError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| DevnetError::io("reading the bound port", e))?
        .port();
    Ok(port)
}

/// Creates a new, uniquely named directory under the system temp dir
/// (`paywire-devnet-<pid>-<n>-<nanos>`).
pub fn make_temp_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("paywire-devnet-{}-{n}-{nanos}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DevnetError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

type SpawnJob = (
    Command,
    tokio::sync::oneshot::Sender<std::io::Result<Child>>,
);

/// Spawns `cmd` so that the child is SIGKILLed when this process dies (Linux; elsewhere a
/// plain spawn).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process.
/// Test threads and tokio's blocking threads come and go (a `Devnet` kept in a static
/// would lose its anvil when the first test's thread ended), so every spawn happens on
/// one dedicated thread that lives as long as the process.
pub async fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Option<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("paywire-devnet-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    set_parent_death_signal(&mut cmd);
    let Some(spawner) = spawner else {
        // No spawner thread could be started: spawn here (the death signal then follows
        // this thread's life, which is still better than nothing).
        return cmd.spawn();
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the paywire-devnet spawner thread is gone"))?;
    reply_rx
        .await
        .map_err(|_| std::io::Error::other("the paywire-devnet spawner thread dropped the job"))?
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // `pre_exec` is unsafe by nature; see the SAFETY note.
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called. It calls only `prctl` and `getppid`
    // (both async-signal-safe system calls), allocates nothing (the errors are built from
    // raw OS error codes) and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then no signal will come.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn a_failing_start_reports_the_log_tail() {
        let dir = make_temp_dir().unwrap();
        let script = dir.join("fake-anvil");
        fs::write(
            &script,
            "#!/bin/sh\necho 'first line'\necho 'boom: bad flag' >&2\nexit 3\n",
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let err = AnvilProcess::start(&script, &[]).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DevnetError::Startup { .. }), "{text}");
        assert!(text.contains("exited early"), "{text}");
        assert!(text.contains("boom: bad flag"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
        if let DevnetError::Startup { log, .. } = err {
            let _ = fs::remove_dir_all(log.parent().unwrap());
        }
    }
}
