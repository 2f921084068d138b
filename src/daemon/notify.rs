//! The systemd notification protocol (`sd_notify`), spoken directly: one datagram per
//! message to the unix socket named by `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{debug, warn};

/// Where notifications go; `None` when not started by systemd (or by a test harness
/// posing as it).
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            use std::os::unix::ffi::OsStrExt;
            let b = v.as_bytes();
            match b.first() {
                None => None,
                Some(b'@') => Some(Target::Abstract(b[1..].to_vec())),
                Some(b'/') => Some(Target::Path(PathBuf::from(v))),
                // vsock and other forms are not used for services on one host.
                Some(_) => {
                    warn!("NOTIFY_SOCKET is neither a path nor an abstract socket; not notifying systemd");
                    None
                }
            }
        });
        Notifier { target }
    }

    pub fn disabled() -> Notifier {
        Notifier { target: None }
    }

    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one notification (`KEY=VALUE` lines). Failures are logged, never fatal:
    /// a service must keep working when the manager's socket goes away.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let result = (|| -> std::io::Result<()> {
            let sock = UnixDatagram::unbound()?;
            match target {
                Target::Path(p) => sock.send_to(state.as_bytes(), p).map(|_| ()),
                Target::Abstract(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
                }
            }
        })();
        match result {
            Ok(()) => debug!(state = %state.replace('\n', " "), "notified systemd"),
            Err(e) => warn!(error = %e, "cannot notify systemd"),
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn reloading(&self) {
        // systemd >= 253 wants the monotonic time with RELOADING=1 to order the reply.
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={status}"));
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when the watchdog is on
/// and meant for this process (`$WATCHDOG_PID`, when set, names it).
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives on this stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_and_respects_pid() {
        assert_eq!(
            watchdog_interval_from(Some("20000000"), None, 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            watchdog_interval_from(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(10))
        );
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            target: Some(Target::Path(path)),
        };
        n.ready("serving");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("overdued-test-{}-{}", std::process::id(), monotonic_usec());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier {
            target: Some(Target::Abstract(name.into_bytes())),
        };
        n.watchdog();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn monotonic_time_moves() {
        let a = monotonic_usec();
        assert!(a > 0);
        assert!(monotonic_usec() >= a);
    }
}
