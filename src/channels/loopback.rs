//! A minimal SMTP receiver on 127.0.0.1 that records what it is sent: the target of
//! the channel tests and of `overdued send-test-email` checks without a mail server. No
//! authentication or TLS: it speaks only to the local host.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent, headers and body, CRLF line ends, dot-stuffing undone.
    pub data: String,
}

impl Received {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut out: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = &mut out {
                if line.starts_with(' ') || line.starts_with('\t') {
                    v.push(' ');
                    v.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case(name) {
                    out = Some(v.trim().to_string());
                }
            }
        }
        out
    }
}

/// How the receiver answers the end of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// Refuses with this reply code (e.g. 451 or 550).
    Refuse(u16),
}

#[derive(Debug, Default)]
struct Inner {
    messages: Vec<Received>,
    answer: Option<Answer>,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Listens on 127.0.0.1 on a free port.
    pub async fn start() -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = session(sock, shared).await;
                });
            }
        });
        Ok(Receiver { addr, inner, task })
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.lock().messages.clone()
    }

    /// How later messages are answered.
    pub fn set_answer(&self, a: Answer) {
        self.lock().answer = Some(a);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn session(sock: tokio::net::TcpStream, shared: Arc<Mutex<Inner>>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 localhost overdued loopback SMTP\r\n")
        .await?;
    let mut from = String::new();
    let mut rcpt: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 localhost\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = addr_of(&cmd[10..]);
            rcpt.clear();
            w.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(addr_of(&cmd[8..]));
            w.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            let answer = {
                let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
                let a = g.answer.unwrap_or(Answer::Accept);
                if a == Answer::Accept {
                    g.messages.push(Received {
                        mail_from: from.clone(),
                        rcpt_to: rcpt.clone(),
                        data,
                    });
                }
                a
            };
            match answer {
                Answer::Accept => w.write_all(b"250 OK queued\r\n").await?,
                Answer::Refuse(code) => {
                    w.write_all(format!("{code} refused by test server\r\n").as_bytes())
                        .await?
                }
            }
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            // NOOP, RSET and anything else.
            w.write_all(b"250 OK\r\n").await?;
        }
    }
}

fn addr_of(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or(s);
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}
