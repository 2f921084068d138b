//! Where the daemon's log lines go when its stderr does: to the journal by its native
//! protocol (one datagram per line to `/run/systemd/journal/socket`) when a journal
//! listens there, else nowhere, quietly. The daemon must outlive whatever read its
//! stderr (a terminal closed, a `| tee` killed, journald restarted): a failed write
//! never panics, never blocks and never stops the service.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Set once a write to stderr failed: from then on every line goes to the fallback.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Lines to stderr while it works, then to the journal (or nowhere).
#[derive(Clone)]
pub struct StderrOrJournal {
    socket: PathBuf,
}

impl StderrOrJournal {
    /// The journal at `$OVERDUED_JOURNAL_SOCKET`, else [`JOURNAL_SOCKET`].
    pub fn from_env() -> StderrOrJournal {
        StderrOrJournal {
            socket: std::env::var_os("OVERDUED_JOURNAL_SOCKET")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(JOURNAL_SOCKET)),
        }
    }
}

impl<'a> MakeWriter<'a> for StderrOrJournal {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            to: self,
            priority: 6,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            to: self,
            priority: priority(*meta.level()),
        }
    }
}

pub struct LineWriter<'a> {
    to: &'a StderrOrJournal,
    priority: u8,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !STDERR_GONE.load(Ordering::Relaxed) {
            match io::stderr().lock().write_all(buf) {
                Ok(()) => return Ok(buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => STDERR_GONE.store(true, Ordering::Relaxed),
            }
        }
        // Whatever happens here, the line counts as written: there is nowhere left to
        // report a failure to, and the subscriber must not try.
        let _ = send_to_journal(&self.to.socket, self.priority, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One datagram in the journal's native format. A message with a newline inside takes
/// the binary form (name, newline, 64-bit little-endian length, value).
fn send_to_journal(socket: &std::path::Path, priority: u8, line: &[u8]) -> io::Result<()> {
    static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    let Some(sock) = SOCKET.get_or_init(|| {
        let s = UnixDatagram::unbound().ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    }) else {
        return Ok(());
    };
    sock.send_to(&journal_datagram(priority, line), socket)
        .map(|_| ())
}

pub fn journal_datagram(priority: u8, line: &[u8]) -> Vec<u8> {
    let message = line.strip_suffix(b"\n").unwrap_or(line);
    // The `<N>` priority prefix of lines meant for journald's stream is a field here.
    let message = match message {
        [b'<', d, b'>', rest @ ..] if d.is_ascii_digit() => rest,
        m => m,
    };
    let mut d = format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER=overdued\n").into_bytes();
    if message.contains(&b'\n') {
        d.extend_from_slice(b"MESSAGE\n");
        d.extend_from_slice(&(message.len() as u64).to_le_bytes());
        d.extend_from_slice(message);
        d.push(b'\n');
    } else {
        d.extend_from_slice(b"MESSAGE=");
        d.extend_from_slice(message);
        d.push(b'\n');
    }
    d
}

pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_native_journal_entry() {
        assert_eq!(
            journal_datagram(4, b"cycle failed connection=books\n"),
            b"PRIORITY=4\nSYSLOG_IDENTIFIER=overdued\nMESSAGE=cycle failed connection=books\n"
                .to_vec()
        );
        assert_eq!(
            journal_datagram(3, b"<3>store failing\n"),
            b"PRIORITY=3\nSYSLOG_IDENTIFIER=overdued\nMESSAGE=store failing\n".to_vec()
        );
        let d = journal_datagram(6, b"two\nlines\n");
        let mut want = b"PRIORITY=6\nSYSLOG_IDENTIFIER=overdued\nMESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(d, want);
    }

    #[test]
    fn a_datagram_reaches_a_listening_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journal = UnixDatagram::bind(&path).unwrap();
        send_to_journal(&path, 3, b"store failing\n").unwrap();
        let mut buf = [0u8; 256];
        let n = journal.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("MESSAGE=store failing\n"));
    }
}
