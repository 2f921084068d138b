//! Twilio's Messages API (2010-04-01) as Twilio serves it, for overdued's text messages:
//! `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (form-encoded `To`, `From` or
//! `MessagingServiceSid`, `Body`; 201 with the message resource) and `GET` of the same
//! path (filters `To`, `From`, `DateSent`, `DateSent<`, `DateSent>`; `PageSize`,
//! `Page`, `PageToken`; newest first, with Twilio's paging fields), HTTP Basic with the
//! account SID and auth token. Its refusals are Twilio's JSON errors: 20003 bad
//! credentials, 21211 an invalid `To` (not E.164, or the magic test number
//! +15005550001), 21610 a number that replied STOP, 21602/21603/21604 missing fields,
//! 20429 (HTTP 429, `Retry-After`) over the per-second limit set by the control API.
//!
//! Each message created is also an effect in `/_sandbox/ledger`, kind `sms`, with its
//! `to` and body; it is booked to the invoice whose number follows "invoice " in the
//! words.
//!
//! Control (`/_sandbox/twilio/...`): `GET` the account, messages and opted-out numbers;
//! `POST webhook {"url"}` where replies are posted; `POST reply {"from","body"}` a
//! customer's reply: STOP (and Twilio's other opt-out words) opts the number out, START
//! (YES, UNSTOP) back in, and the reply is posted to the webhook as Twilio posts it,
//! form-encoded and signed with `X-Twilio-Signature`; `POST limits {"per_second"}`.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::util::{encode, param, parse_query};
use crate::wire::{Reply, Req};
use crate::{lock, Sandbox};

/// The sandbox's Twilio account.
pub const TWILIO_ACCOUNT_SID: &str = "AC5a4db0c0ffee00000000000000000001";
pub const TWILIO_AUTH_TOKEN: &str = "sandbox-twilio-auth-token-7f3a9c";
/// The sandbox's sending number (Twilio's magic "valid" test sender).
pub const TWILIO_FROM: &str = "+15005550006";
/// Twilio's magic test number that is never valid.
pub const TWILIO_INVALID_NUMBER: &str = "+15005550001";

const STOP_WORDS: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
const START_WORDS: &[&str] = &["START", "YES", "UNSTOP"];

/// One message, outbound or a customer's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwMessage {
    pub sid: String,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub direction: String,
    pub status: String,
    pub num_segments: u32,
    pub date_created: DateTime<Utc>,
}

/// The account's state, saved with the world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TwilioState {
    pub messages: Vec<TwMessage>,
    pub opted_out: BTreeSet<String>,
    pub webhook_url: Option<String>,
    /// Creates allowed per real second; 0: no limit.
    pub per_second: u32,
    pub minted: u64,
}

/// Creates of the last second, for the limit.
#[derive(Debug, Default)]
pub struct Rate(VecDeque<Instant>);

fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn resource(m: &TwMessage) -> Value {
    let uri = format!(
        "/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{}.json",
        m.sid
    );
    json!({
        "account_sid": TWILIO_ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": m.body,
        "date_created": rfc2822(m.date_created),
        "date_sent": rfc2822(m.date_created),
        "date_updated": rfc2822(m.date_created),
        "direction": m.direction,
        "error_code": null,
        "error_message": null,
        "from": m.from,
        "messaging_service_sid": m.messaging_service_sid,
        "num_media": "0",
        "num_segments": m.num_segments.to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": m.sid,
        "status": m.status,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages/{}/Media.json", m.sid)},
        "to": m.to,
        "uri": uri,
    })
}

fn e164(v: &str) -> bool {
    v.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && !d.starts_with('0') && d.chars().all(|c| c.is_ascii_digit())
    })
}

fn segments(body: &str) -> u32 {
    // GSM-7 or UCS-2, as carriers count (the extension table ignored: a sandbox figure).
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€";
    let (n, single, part) = if body.chars().all(|c| GSM.contains(c)) {
        (body.chars().count(), 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    if n <= single {
        1
    } else {
        n.div_ceil(part) as u32
    }
}

fn authorized(req: &Req, account: &str) -> bool {
    let Some(h) = req.header("authorization") else {
        return false;
    };
    let Some(b64) = h.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{account}:{TWILIO_AUTH_TOKEN}").as_bytes() && account == TWILIO_ACCOUNT_SID
}

/// The endpoint name for faults and stats, or `None` when the path is not Twilio's.
pub fn endpoint(req: &Req) -> Option<&'static str> {
    let s = &req.segs;
    if s.first().map(String::as_str) != Some("2010-04-01") {
        return None;
    }
    match (s.len(), s.get(3).map(String::as_str), &req.method) {
        (4, Some("Messages.json"), &Method::POST) => Some("twilio.messages.create"),
        (4, Some("Messages.json"), &Method::GET) => Some("twilio.messages.list"),
        _ => Some("twilio.other"),
    }
}

pub fn handle(sb: &Sandbox, req: &Req) -> Reply {
    let account = req.segs.get(2).cloned().unwrap_or_default();
    if !authorized(req, &account) {
        return twilio_error(401, 20003, "Authenticate");
    }
    match endpoint(req) {
        Some("twilio.messages.create") => create(sb, req),
        Some("twilio.messages.list") => list(sb, req),
        _ => twilio_error(404, 20404, "The requested resource was not found"),
    }
}

fn create(sb: &Sandbox, req: &Req) -> Reply {
    let form = parse_query(&String::from_utf8_lossy(&req.body));
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = get("To") else {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    };
    let Some(body) = get("Body") else {
        return twilio_error(400, 21602, "Message body is required.");
    };
    let from = get("From");
    let service = get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    }
    if !e164(&to) || to == TWILIO_INVALID_NUMBER {
        return twilio_error(400, 21211, &format!("Invalid 'To' Phone Number: {to}"));
    }
    let mut w = sb.world();
    if w.twilio.opted_out.contains(&to) {
        return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient");
    }
    let limit = w.twilio.per_second;
    if limit > 0 {
        let mut rate = lock(&sb.inner.twilio_rate);
        let now = Instant::now();
        while rate
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            rate.0.pop_front();
        }
        if rate.0.len() >= limit as usize {
            return twilio_error(429, 20429, "Too Many Requests").with_header("Retry-After", "1");
        }
        rate.0.push_back(now);
    }
    w.twilio.minted += 1;
    let n = w.twilio.minted;
    let sid = format!("SM{:016x}{:016x}", w.seed, n);
    let m = TwMessage {
        sid,
        to: to.clone(),
        from: from.clone().or(Some(TWILIO_FROM.to_string())),
        messaging_service_sid: service,
        body: body.clone(),
        direction: "outbound-api".into(),
        status: "queued".into(),
        num_segments: segments(&body),
        date_created: w.now,
    };
    w.twilio.messages.push(m.clone());
    let target = booked_invoice(&w, &body);
    let (t, i) = target.unwrap_or((0, usize::MAX));
    if i != usize::MAX {
        w.record_effect(
            t,
            i,
            "sms",
            None,
            json!({"to": to, "body": body, "sid": m.sid, "segments": m.num_segments}),
        );
    } else if !w.tenants.is_empty() {
        let now = w.now;
        let tenant = &w.tenants[0];
        let effect = crate::world::Effect {
            system: tenant.system,
            tenant: tenant.id.clone(),
            invoice_id: String::new(),
            kind: "sms".into(),
            at: now,
            idempotency_key: None,
            detail: json!({"to": to, "body": body, "sid": m.sid, "segments": m.num_segments}),
        };
        w.ledger.push(effect);
    }
    drop(w);
    sb.mark_dirty();
    Reply::json(201, &resource(&m))
}

/// The invoice a message is about: the word after "invoice ".
fn booked_invoice(w: &crate::world::World, body: &str) -> Option<(usize, usize)> {
    let lower = body.to_ascii_lowercase();
    let at = lower.find("invoice ")? + "invoice ".len();
    let number: String = body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '/')
        .collect();
    w.tenants.iter().enumerate().find_map(|(t, tenant)| {
        tenant
            .invoices
            .iter()
            .position(|inv| inv.number == number)
            .map(|i| (t, i))
    })
}

fn list(sb: &Sandbox, req: &Req) -> Reply {
    let q = &req.query;
    let day = |k: &str| -> Result<Option<NaiveDate>, Reply> {
        match param(q, k) {
            None => Ok(None),
            Some(v) => NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map(Some)
                .map_err(|_| twilio_error(400, 20001, &format!("Invalid {k}: {v}"))),
        }
    };
    let (on, before, after) = match (day("DateSent"), day("DateSent<"), day("DateSent>")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let page_size: usize = match param(q, "PageSize").map(|v| v.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return twilio_error(400, 20001, "PageSize must be 1 to 1000"),
    };
    let page: usize = match param(q, "Page").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(_) => return twilio_error(400, 20001, "Invalid Page"),
    };
    let to = param(q, "To").map(str::to_string);
    let from = param(q, "From").map(str::to_string);
    let w = sb.world();
    let mut all: Vec<&TwMessage> = w
        .twilio
        .messages
        .iter()
        .filter(|m| to.as_ref().is_none_or(|t| &m.to == t))
        .filter(|m| from.as_ref().is_none_or(|f| m.from.as_ref() == Some(f)))
        .filter(|m| {
            let d = m.date_created.date_naive();
            on.is_none_or(|x| d == x)
                && before.is_none_or(|x| d <= x)
                && after.is_none_or(|x| d >= x)
        })
        .collect();
    all.reverse();
    let start = page * page_size;
    let items: Vec<Value> = all
        .iter()
        .skip(start)
        .take(page_size)
        .map(|m| resource(m))
        .collect();
    let base = format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json");
    let mut filters = String::new();
    for (k, v) in [("To", &to), ("From", &from)] {
        if let Some(v) = v {
            filters.push_str(&format!("{k}={}&", encode(v)));
        }
    }
    for (k, v) in [
        ("DateSent", on),
        ("DateSent%3C", before),
        ("DateSent%3E", after),
    ] {
        if let Some(v) = v {
            filters.push_str(&format!("{k}={v}&"));
        }
    }
    let uri = |p: usize| format!("{base}?{filters}PageSize={page_size}&Page={p}");
    let more = start + page_size < all.len();
    let n = items.len();
    Reply::json(
        200,
        &json!({
            "end": if n == 0 { 0 } else { start + n - 1 },
            "first_page_uri": uri(0),
            "next_page_uri": if more { Value::String(format!("{}&PageToken=PA{}", uri(page + 1), page + 1)) } else { Value::Null },
            "page": page,
            "page_size": page_size,
            "previous_page_uri": if page > 0 { Value::String(uri(page - 1)) } else { Value::Null },
            "start": start,
            "uri": uri(page),
            "messages": items,
        }),
    )
}

/// `X-Twilio-Signature`: base64 of HMAC-SHA1 (key: the auth token) over the URL and
/// the POST parameters sorted by name, each name followed by its value.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let key = auth_token.as_bytes();
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1_smol::Sha1::from(key).digest().bytes());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = sha1_smol::Sha1::new();
    inner.update(&k.map(|b| b ^ 0x36));
    inner.update(data.as_bytes());
    let mut outer = sha1_smol::Sha1::new();
    outer.update(&k.map(|b| b ^ 0x5c));
    outer.update(&inner.digest().bytes());
    base64::engine::general_purpose::STANDARD.encode(outer.digest().bytes())
}

/// `/_sandbox/twilio/...`; async because a reply is posted to the webhook before the
/// control call answers.
pub async fn control(sb: &Sandbox, req: &Req) -> Reply {
    let segs: Vec<&str> = req.segs.iter().skip(2).map(String::as_str).collect();
    let body = || serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    match (&req.method, segs.as_slice()) {
        (&Method::GET, []) => {
            let w = sb.world();
            Reply::json(
                200,
                &json!({"account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN, "from": TWILIO_FROM,
                    "messages": w.twilio.messages, "opted_out": w.twilio.opted_out, "webhook_url": w.twilio.webhook_url, "per_second": w.twilio.per_second}),
            )
        }
        (&Method::POST, ["webhook"]) => {
            let url = body()
                .get("url")
                .and_then(Value::as_str)
                .map(str::to_string);
            sb.world().twilio.webhook_url = url.clone();
            sb.mark_dirty();
            Reply::json(200, &json!({"webhook_url": url}))
        }
        (&Method::POST, ["limits"]) => {
            let n = body()
                .get("per_second")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            sb.world().twilio.per_second = n as u32;
            Reply::json(200, &json!({"per_second": n}))
        }
        (&Method::POST, ["reply"]) => reply(sb, body()).await,
        _ => Reply::json(404, &json!({"error": "unknown twilio control route"})),
    }
}

async fn reply(sb: &Sandbox, b: Value) -> Reply {
    let (Some(from), Some(text)) = (
        b.get("from").and_then(Value::as_str),
        b.get("body").and_then(Value::as_str),
    ) else {
        return Reply::json(400, &json!({"error": "give from and body"}));
    };
    let word = text
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation())
        .to_ascii_uppercase();
    let (sid, url) = {
        let mut w = sb.world();
        if STOP_WORDS.contains(&word.as_str()) {
            w.twilio.opted_out.insert(from.to_string());
        } else if START_WORDS.contains(&word.as_str()) {
            w.twilio.opted_out.remove(from);
        }
        w.twilio.minted += 1;
        let sid = format!("SM{:016x}{:016x}", w.seed, w.twilio.minted);
        let now = w.now;
        w.twilio.messages.push(TwMessage {
            sid: sid.clone(),
            to: TWILIO_FROM.into(),
            from: Some(from.to_string()),
            messaging_service_sid: None,
            body: text.to_string(),
            direction: "inbound".into(),
            status: "received".into(),
            num_segments: segments(text),
            date_created: now,
        });
        (sid, w.twilio.webhook_url.clone())
    };
    sb.mark_dirty();
    let Some(url) = url else {
        return Reply::json(200, &json!({"sid": sid, "webhook": null}));
    };
    let params: Vec<(String, String)> = [
        ("MessageSid", sid.as_str()),
        ("SmsSid", sid.as_str()),
        ("AccountSid", TWILIO_ACCOUNT_SID),
        ("From", from),
        ("To", TWILIO_FROM),
        ("Body", text),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = match b.get("signature").and_then(Value::as_str) {
        // A test may send a forged signature to see it refused.
        Some(forged) => forged.to_string(),
        None => signature(TWILIO_AUTH_TOKEN, &url, &params),
    };
    let form: String = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let sent = reqwest::Client::new()
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) => Reply::json(200, &json!({"sid": sid, "webhook": r.status().as_u16()})),
        Err(e) => Reply::json(502, &json!({"sid": sid, "error": format!("webhook: {e}")})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_example() {
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
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn numbers_and_segments() {
        assert!(e164("+447700900123") && !e164("07700900123") && !e164("+44 7700"));
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments("’"), 1);
        assert_eq!(segments(&"’".repeat(71)), 2);
    }
}
