//! Twilio's Messages API (2010-04-01), as overdued uses it: create a message, list the
//! messages sent to a number since a moment (to verify a send whose answer was lost),
//! and the `X-Twilio-Signature` of its webhooks. HTTP Basic with the account SID and
//! auth token; the token never reaches a log, an error or `Debug`.
//!
//! Twilio takes no idempotency key: a create that times out may have sent the message,
//! so the caller ([`super::deliver`]) never repeats one without looking first.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{ConnectorError, ErrorClass, Secret};
use serde::Deserialize;

use super::config::{Sender, SmsConfig};

/// Twilio's error for a recipient who replied STOP.
pub const UNSUBSCRIBED: u32 = 21610;
/// Twilio's error for a `To` that is not a valid phone number.
pub const INVALID_TO: u32 = 21211;

/// How a call to Twilio ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwilioError {
    /// 21610: the recipient replied STOP; nothing more may go to the number.
    #[error("Twilio error 21610: the recipient has unsubscribed (replied STOP)")]
    Unsubscribed,
    /// 21211 and the other refusals of one message: nothing was sent; sending it again
    /// will not help.
    #[error("Twilio refused the message (HTTP {status}, error {code}): {message}")]
    Refused {
        status: u16,
        code: u32,
        message: String,
    },
    /// 401/403: the account SID or auth token is wrong; nothing was sent.
    #[error("Twilio refused the credentials (HTTP {0}): check account_sid and the auth token")]
    Credentials(u16),
    /// 429: nothing was sent; try later.
    #[error("rate limited by Twilio{}", .0.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited(Option<Duration>),
    /// Twilio could not be reached: nothing was sent.
    #[error("Twilio unreachable: {0}")]
    Unreachable(String),
    /// The request went out and no usable answer came back (a timeout, a closed
    /// connection, a 5xx, a garbled body): the message may have been sent.
    #[error("Twilio outcome unknown: {0}")]
    Unknown(String),
}

impl TwilioError {
    /// How the runtime treats it (retry with backoff, or give up on this message).
    pub fn class(&self) -> ErrorClass {
        match self {
            TwilioError::RateLimited(after) => ErrorClass::RetryLater(*after),
            TwilioError::Unreachable(_) | TwilioError::Unknown(_) => ErrorClass::RetryLater(None),
            TwilioError::Credentials(_) => ErrorClass::Reauth,
            TwilioError::Unsubscribed | TwilioError::Refused { .. } => ErrorClass::Permanent,
        }
    }

    /// Whether the endpoint answered as a down endpoint does: what opens its circuit
    /// breaker (as for the ledgers: 5xx, refused connections, timeouts).
    pub fn endpoint_down(&self) -> bool {
        matches!(self, TwilioError::Unreachable(_) | TwilioError::Unknown(_))
    }

    /// The same failure as the connectors' error, for the circuit breaker.
    pub fn as_connector_error(&self) -> ConnectorError {
        match self.class() {
            ErrorClass::RetryLater(after) => ConnectorError::Transient {
                message: self.to_string(),
                retry_after: after,
            },
            ErrorClass::Reauth => ConnectorError::Reauth(self.to_string()),
            _ => ConnectorError::Permanent(self.to_string()),
        }
    }

    /// Whether nothing can have been sent.
    pub fn nothing_sent(&self) -> bool {
        !matches!(self, TwilioError::Unknown(_))
    }
}

/// A message as Twilio describes it (the fields overdued reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageResource {
    pub sid: String,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub num_segments: Option<String>,
    #[serde(default)]
    pub date_created: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessagePage {
    messages: Vec<MessageResource>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
}

/// The client for one Twilio account.
#[derive(Clone)]
pub struct Twilio {
    http: reqwest::Client,
    account_sid: String,
    token: Secret,
    sender: Sender,
    base: url::Url,
}

impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("account_sid", &self.account_sid)
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl Twilio {
    pub fn new(cfg: &SmsConfig) -> Result<Twilio, TwilioError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TwilioError::Unreachable(format!("building the HTTP client: {e}")))?;
        Ok(Twilio {
            http,
            account_sid: cfg.account_sid.clone(),
            token: cfg.auth_token.clone(),
            sender: cfg.sender.clone(),
            base: cfg.api_base.clone(),
        })
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base.as_str().trim_end_matches('/'),
            self.account_sid
        )
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.account_sid, self.token.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Sends `body` to `to`. `Unknown` means it may have gone: verify before any retry.
    /// A 429 or a refused connection (nothing sent) is retried here a few times, after
    /// Twilio's `Retry-After` (at most 5 s); the rest is left to the next cycle.
    pub async fn create(&self, to: &str, body: &str) -> Result<MessageResource, TwilioError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let wait = match self.create_once(to, body).await {
                Err(TwilioError::RateLimited(after)) if attempt < 3 => after
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(5)),
                Err(TwilioError::Unreachable(_)) if attempt < 3 => Duration::from_millis(500),
                r => return r,
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn create_once(&self, to: &str, body: &str) -> Result<MessageResource, TwilioError> {
        let mut form: Vec<(&str, &str)> = vec![("To", to), ("Body", body)];
        match &self.sender {
            Sender::Number(n) => form.push(("From", n)),
            Sender::Service(s) => form.push(("MessagingServiceSid", s)),
        }
        let sent = self
            .http
            .post(self.messages_url())
            .header("Authorization", self.basic())
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // Refused before anything was written: nothing sent.
            Err(e) if e.is_connect() => return Err(TwilioError::Unreachable(plain(&e))),
            Err(e) => return Err(TwilioError::Unknown(plain(&e))),
        };
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) if status < 300 => return Err(TwilioError::Unknown(plain(&e))),
            Err(_) => Default::default(),
        };
        match status {
            200..=299 => serde_json::from_slice::<MessageResource>(&bytes)
                .map_err(|e| TwilioError::Unknown(format!("unreadable answer to a create: {e}"))),
            _ => Err(refusal(status, &bytes, retry_after, true)),
        }
    }

    /// Every message sent to `to` on or after `since`'s day (Twilio filters by day),
    /// following `next_page_uri`; the caller compares times and bodies.
    pub async fn sent_to(
        &self,
        to: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<MessageResource>, TwilioError> {
        let day: NaiveDate = since.date_naive();
        let mut url = self.messages_url();
        let mut first = true;
        let mut out = Vec::new();
        for _ in 0..50 {
            let mut req = self
                .http
                .get(&url)
                .header("Authorization", self.basic())
                .header("Accept", "application/json");
            if first {
                req = req.query(&[
                    ("To", to),
                    ("DateSent>", &day.format("%Y-%m-%d").to_string()),
                    ("PageSize", "100"),
                ]);
            }
            let resp = req.send().await.map_err(|e| {
                if e.is_connect() {
                    TwilioError::Unreachable(plain(&e))
                } else {
                    TwilioError::Unknown(plain(&e))
                }
            })?;
            let status = resp.status().as_u16();
            let after = retry_after(resp.headers());
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| TwilioError::Unknown(plain(&e)))?;
            if !(200..300).contains(&status) {
                return Err(refusal(status, &bytes, after, false));
            }
            let page: MessagePage = serde_json::from_slice(&bytes)
                .map_err(|e| TwilioError::Unknown(format!("unreadable message list: {e}")))?;
            out.extend(page.messages);
            match page.next_page_uri.filter(|u| !u.is_empty()) {
                Some(next) => {
                    url = format!("{}{}", self.base.as_str().trim_end_matches('/'), next);
                    first = false;
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}

/// reqwest's error with its causes (a timeout, a reset), which its own text leaves out,
/// without the URL (the account's API path, noise in every log line).
fn plain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(at) = s.find(" for url (") {
        if let Some(end) = s[at..].find(')') {
            s.replace_range(at..at + end + 1, "");
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn refusal(status: u16, body: &[u8], after: Option<Duration>, write: bool) -> TwilioError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code).unwrap_or(0);
    let message = parsed
        .and_then(|b| b.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    match status {
        429 => TwilioError::RateLimited(after),
        401 | 403 => TwilioError::Credentials(status),
        // A 5xx to a create may come after the message went out.
        500..=599 if write => TwilioError::Unknown(format!("HTTP {status}: {message}")),
        500..=599 => TwilioError::Unreachable(format!("HTTP {status}: {message}")),
        _ if code == UNSUBSCRIBED => TwilioError::Unsubscribed,
        _ => TwilioError::Refused {
            status,
            code,
            message,
        },
    }
}

/// `X-Twilio-Signature` of a webhook: base64 of HMAC-SHA1, keyed by the auth token,
/// over the full URL Twilio called followed by each POST parameter's name and value,
/// sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

/// Checks a webhook's signature in constant time.
pub fn signature_ok(auth_token: &str, url: &str, params: &[(String, String)], given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = signature(auth_token, url, params);
    want.as_bytes().ct_eq(given.trim().as_bytes()).into()
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = sha1_smol::Sha1::new();
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    outer.digest().bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let d = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let d = hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "aa4ae5e15272d00e95705637ce8a3b55ed402112");
    }

    #[test]
    fn signature_matches_twilios_documented_example() {
        // Twilio's security documentation's example request and signature.
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(signature_ok("12345", url, &params, &sig));
        assert!(!signature_ok("12346", url, &params, &sig));
    }

    #[test]
    fn refusals_are_classified() {
        let b = br#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"https://www.twilio.com/docs/errors/21610","status":400}"#;
        assert_eq!(refusal(400, b, None, true), TwilioError::Unsubscribed);
        let b = br#"{"code":21211,"message":"The 'To' number +1500 is not a valid phone number.","status":400}"#;
        assert!(matches!(
            refusal(400, b, None, true),
            TwilioError::Refused { code: 21211, .. }
        ));
        assert_eq!(
            refusal(429, b"{}", Some(Duration::from_secs(2)), true).class(),
            ErrorClass::RetryLater(Some(Duration::from_secs(2)))
        );
        assert!(!refusal(503, b"", None, true).nothing_sent());
        assert!(refusal(503, b"", None, false).nothing_sent());
        assert_eq!(refusal(401, b"", None, true).class(), ErrorClass::Reauth);
    }
}
