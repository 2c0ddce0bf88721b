//! HAProxy as the load balancer, driven through its runtime API (the admin stats socket), so a
//! user with a real balancer gets the same drain-then-stop behaviour as the built-in one.
//!
//! Boxes are dynamic servers of one backend: `add server` with HAProxy's own health check
//! (`check`, then `enable health` and `enable server`, since dynamic servers start in
//! maintenance); deregistering sets the server to `drain` (no new requests), waits until its
//! current sessions reach zero, then `maint` and `del server`. The healthy set is read from
//! `show stat`: servers whose status is UP.
//!
//! [`config`] writes a minimal configuration with a front end, that backend and the socket;
//! [`Haproxy::spawn`] runs `haproxy` in the foreground on it (the tests, a local fleet).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::balancer::{Backend, LoadBalancer};
use crate::health::HealthProbe;

/// The backend every box is added to.
pub const BACKEND: &str = "boxes";
/// How long one runtime API command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a drain reads the server's current sessions.
const DRAIN_CHECK: Duration = Duration::from_millis(20);
/// How long a freshly started HAProxy may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration for HAProxy: an HTTP front end on `frontend`, the [`BACKEND`] with HTTP health
/// checks on `probe.path`, and the admin socket at `socket`.
pub fn config(frontend: std::net::SocketAddr, socket: &Path, probe: &HealthProbe) -> String {
    format!(
        "global\n  stats socket {socket} mode 600 level admin\n  stats timeout 30s\n\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend web\n  bind {frontend}\n  default_backend {BACKEND}\n\n\
         backend {BACKEND}\n  balance roundrobin\n  option httpchk GET {path}\n",
        socket = socket.display(),
        path = probe.path,
    )
}

/// The runtime API of one HAProxy.
pub struct Haproxy {
    socket: PathBuf,
    probe: HealthProbe,
}

impl Haproxy {
    pub fn new(socket: impl Into<PathBuf>, probe: HealthProbe) -> Haproxy {
        Haproxy { socket: socket.into(), probe }
    }

    /// Runs `haproxy -db -f CONFIG` and waits until its socket answers. The child is the
    /// caller's to kill.
    pub fn spawn(config_path: &Path, socket: &Path) -> Result<Child, Error> {
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Balancer(format!(
                    "cannot run haproxy ({e}); install Debian's haproxy package"
                ))
            })?;
        let until = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Balancer(format!("haproxy exited at start: {status}")));
            }
            if UnixStream::connect(socket).is_ok() {
                return Ok(child);
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Balancer(format!(
                    "haproxy did not open {} within {START_TIMEOUT:?}",
                    socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one runtime API command; returns its answer.
    pub fn command(&self, line: &str) -> Result<String, Error> {
        let fail = |e: std::io::Error| {
            Error::Balancer(format!("haproxy's socket {}: {e}", self.socket.display()))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(fail)?;
        stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(fail)?;
        stream.write_all(format!("{line}\n").as_bytes()).map_err(fail)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(fail)?;
        Ok(answer.trim().to_string())
    }

    /// A command whose success is an empty answer or one of `ok`.
    fn expect(&self, line: &str, ok: &[&str]) -> Result<(), Error> {
        let answer = self.command(line)?;
        if answer.is_empty() || ok.iter().any(|expected| answer.starts_with(expected)) {
            Ok(())
        } else {
            Err(Error::Balancer(format!("haproxy refused `{line}`: {answer}")))
        }
    }

    /// `show stat` as (server, status, current sessions) for the backend's servers.
    pub fn servers(&self) -> Result<Vec<(String, String, u64)>, Error> {
        let answer = self.command("show stat")?;
        let mut lines = answer.lines();
        let header = lines.next().unwrap_or_default().trim_start_matches("# ");
        let columns: Vec<&str> = header.split(',').collect();
        let column = |name: &str| {
            columns.iter().position(|c| *c == name).ok_or_else(|| {
                Error::Balancer(format!("haproxy's `show stat` has no {name} column"))
            })
        };
        let (proxy, server, status, sessions) =
            (column("pxname")?, column("svname")?, column("status")?, column("scur")?);
        Ok(lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| {
                fields.get(proxy) == Some(&BACKEND)
                    && !matches!(fields.get(server), Some(&"BACKEND") | Some(&"FRONTEND"))
            })
            .map(|fields| {
                (
                    fields[server].to_string(),
                    fields[status].to_string(),
                    fields[sessions].parse().unwrap_or(0),
                )
            })
            .collect())
    }
}

impl LoadBalancer for Haproxy {
    fn register(&mut self, backend: &Backend) -> Result<(), Error> {
        if self.servers()?.iter().any(|(name, _, _)| *name == backend.name) {
            return Ok(());
        }
        let probe = &self.probe;
        let check_port =
            if probe.port == 0 { String::new() } else { format!(" port {}", probe.port) };
        self.expect(
            &format!(
                "add server {BACKEND}/{} {} check inter {}ms rise {} fall {}{check_port}",
                backend.name,
                backend.address,
                probe.interval.as_millis().max(1),
                probe.healthy_threshold,
                probe.unhealthy_threshold,
            ),
            &["New server registered"],
        )?;
        self.expect(&format!("enable health {BACKEND}/{}", backend.name), &[])?;
        self.expect(&format!("enable server {BACKEND}/{}", backend.name), &[])
    }

    fn deregister(&mut self, name: &str, drain: Duration) -> Result<(), Error> {
        if !self.servers()?.iter().any(|(server, _, _)| server == name) {
            return Ok(());
        }
        self.expect(&format!("set server {BACKEND}/{name} state drain"), &[])?;
        let until = Instant::now() + drain;
        loop {
            let sessions = self
                .servers()?
                .into_iter()
                .find(|(server, _, _)| server == name)
                .map(|(_, _, sessions)| sessions)
                .unwrap_or(0);
            if sessions == 0 || Instant::now() >= until {
                break;
            }
            std::thread::sleep(DRAIN_CHECK);
        }
        self.expect(&format!("set server {BACKEND}/{name} state maint"), &[])?;
        self.expect(&format!("del server {BACKEND}/{name}"), &["Server deleted"])
    }

    fn healthy(&mut self) -> Result<Vec<String>, Error> {
        Ok(self
            .servers()?
            .into_iter()
            .filter(|(_, status, _)| status == "UP" || status.starts_with("UP "))
            .map(|(name, _, _)| name)
            .collect())
    }
}
