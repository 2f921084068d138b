//! The HTTP server: connections served with hyper directly so a fault can drop a socket
//! mid-response, routing, limits and faults around the vendor handlers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::{watch, Notify};

use crate::faults::FaultKind;
use crate::limits::{Permit, Remaining};
use crate::wire::{Endpoint, Reply, Req};
use crate::{lock, Sandbox, SandboxError, System};

const MAX_BODY: usize = 8 * 1024 * 1024;

/// Response body: whole, or cut short with an error so hyper aborts the connection.
pub enum SBody {
    Full(Option<Bytes>),
    /// Sends its bytes, waits long enough for them to leave, then fails.
    Broken(Option<Bytes>, Pin<Box<tokio::time::Sleep>>),
}

impl Body for SBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            SBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            SBody::Broken(b, delay) => match b.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => match delay.as_mut().poll(_cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "sandbox fault: response cut short",
                    )))),
                    Poll::Pending => Poll::Pending,
                },
            },
        }
    }
    fn is_end_stream(&self) -> bool {
        matches!(self, SBody::Full(None))
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub by_tenant: BTreeMap<String, u64>,
    pub status_429: u64,
    pub status_5xx: u64,
}

pub async fn serve(
    sb: Sandbox,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    if sb.inner.state_file.is_some() {
        let saver = sb.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = stop.changed() => break,
                }
                if saver.inner.dirty.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(e) = saver.save_state() {
                        tracing::warn!(error = %e, "periodic state save failed");
                    }
                }
            }
        });
    }
    let mut stop = stop_rx.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Running out of file descriptors under a 1000-connection benchmark is
                // transient: back off instead of stopping the server.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let sb = sb.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let k = kill.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let sb = sb.clone();
                let k = k.clone();
                async move { Ok::<_, Infallible>(handle(sb, req, k).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                // Dropping the connection closes the socket with no (further) response bytes.
                _ = kill.notified() => tracing::debug!(%peer, "connection dropped by a fault"),
                _ = stop.changed() => {}
            }
        });
    }
    Ok(())
}

fn to_response(r: Reply, broken: bool) -> Response<SBody> {
    let body = if broken {
        SBody::Broken(
            Some(r.body.clone()),
            Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        )
    } else {
        SBody::Full((!r.body.is_empty()).then(|| r.body.clone()))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

fn classify(req: &Req) -> Endpoint {
    let s: Vec<String> = req.segs.iter().map(|x| x.to_ascii_lowercase()).collect();
    let m = &req.method;
    let ep = |name: &str, system: Option<System>, tenant: Option<String>| Endpoint {
        name: name.to_string(),
        system,
        tenant,
        control: false,
    };
    match s.first().map(String::as_str) {
        Some("_sandbox") => Endpoint {
            name: "control".into(),
            system: None,
            tenant: None,
            control: true,
        },
        Some("v3") if s.get(1).map(String::as_str) == Some("company") => {
            let realm = req.segs.get(2).cloned();
            let name = match (s.get(3).map(String::as_str), s.len(), m) {
                (Some("query"), 4, _) => "quickbooks.query",
                (Some("cdc"), 4, _) => "quickbooks.cdc",
                (Some("invoice"), 4, _) => "quickbooks.invoice.write",
                (Some("invoice"), 5, _) => "quickbooks.invoice.read",
                (Some("invoice"), 6, _) if s[5] == "send" => "quickbooks.invoice.send",
                (Some("invoice"), 6, _) if s[5] == "pdf" => "quickbooks.invoice.pdf",
                (Some("customer"), _, _) => "quickbooks.customer",
                (Some("payment"), 5, _) => "quickbooks.payment.read",
                _ => "quickbooks.other",
            };
            ep(name, Some(System::QuickBooks), realm)
        }
        Some("api.xro") => {
            let tenant = req.header("xero-tenant-id").map(str::to_string);
            let name = match (s.get(2).map(String::as_str), s.len(), m) {
                (Some("invoices"), 3, &Method::GET) => "xero.invoices.list",
                (Some("invoices"), 3, _) => "xero.invoices.write",
                (Some("invoices"), 4, &Method::GET) if crate::documents::wants_pdf(req) => {
                    "xero.invoices.pdf"
                }
                (Some("invoices"), 4, &Method::GET) => "xero.invoices.get",
                (Some("invoices"), 4, _) => "xero.invoices.write",
                (Some("invoices"), 5, _) if s[4] == "email" => "xero.invoices.email",
                (Some("invoices"), 5, _) if s[4] == "history" => "xero.invoices.history",
                (Some("invoices"), 5, _) if s[4] == "onlineinvoice" => {
                    "xero.invoices.onlineinvoice"
                }
                (Some("contacts"), _, _) => "xero.contacts",
                _ => "xero.other",
            };
            ep(name, Some(System::Xero), tenant)
        }
        Some("2010-04-01") => ep(
            crate::twilio::endpoint(req).unwrap_or("twilio.other"),
            None,
            req.segs.get(2).cloned(),
        ),
        Some("connections") => ep("xero.connections", Some(System::Xero), None),
        Some("oauth2") if s.get(1).map(String::as_str) == Some("quickbooks") => {
            ep("oauth.quickbooks.authorize", Some(System::QuickBooks), None)
        }
        Some("oauth2") => ep("oauth.quickbooks.token", Some(System::QuickBooks), None),
        Some("identity") => ep("oauth.xero.authorize", Some(System::Xero), None),
        Some("connect") => ep("oauth.xero.token", Some(System::Xero), None),
        _ => ep("unknown", None, None),
    }
}

async fn handle(sb: Sandbox, req: Request<Incoming>, kill: Arc<Notify>) -> Response<SBody> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return to_response(
                Reply::text(413, "request body too large or unreadable"),
                false,
            )
        }
    };
    let path = parts.uri.path().to_string();
    let segs = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::util::decode)
        .collect();
    let query = parts
        .uri
        .query()
        .map(crate::util::parse_query)
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path,
        segs,
        query,
        headers: parts.headers,
        body,
    };
    let ep = classify(&req);
    if ep.control && req.segs.get(1).is_some_and(|s| s == "twilio") {
        return to_response(crate::twilio::control(&sb, &req).await, false);
    }
    if ep.control {
        return to_response(crate::control::handle(&sb, &req), false);
    }
    tracing::debug!(method = %req.method, path = %req.path, endpoint = %ep.name, "request");
    {
        let mut st = lock(&sb.inner.stats);
        *st.requests.entry(ep.name.clone()).or_default() += 1;
        if let (Some(sys), Some(t)) = (ep.system, &ep.tenant) {
            *st.by_tenant.entry(format!("{sys}:{t}")).or_default() += 1;
        }
    }
    let scope = format!(
        "{}:{}",
        ep.system.map(|s| s.as_str()).unwrap_or("-"),
        ep.tenant.as_deref().unwrap_or("-")
    );
    let fault = if ep.name == "unknown" {
        None
    } else {
        lock(&sb.inner.faults).decide(&ep.name, &scope)
    };
    let is_api = ep.name.starts_with("quickbooks.")
        || (ep.name.starts_with("xero.") && ep.name != "xero.connections");
    let now = sb.now();
    match fault {
        Some(FaultKind::Reset) => return drop_connection(kill).await,
        Some(FaultKind::RateLimit) => {
            let r = throttled(ep.system, "minute", 1, Remaining::default(), now, is_api);
            lock(&sb.inner.stats).status_429 += 1;
            return to_response(r, false);
        }
        Some(FaultKind::ServerError) => {
            let status = lock(&sb.inner.faults).pick_server_status();
            lock(&sb.inner.stats).status_5xx += 1;
            return to_response(server_error(ep.system, status, now), false);
        }
        _ => {}
    }
    // Limits apply per tenant to the accounting APIs, once the tenant is known.
    let mut remaining = None;
    let permit = match (is_api, ep.system, &ep.tenant) {
        (true, Some(system), Some(tenant)) if known_tenant(&sb, system, tenant) => {
            let admitted = lock(&sb.inner.limits).admit(system, tenant);
            match admitted {
                Ok(r) => {
                    remaining = Some(r);
                    Some(Permit {
                        limiter: sb.inner.limits.clone(),
                        system,
                        tenant: tenant.clone(),
                    })
                }
                Err(rej) => {
                    lock(&sb.inner.stats).status_429 += 1;
                    tracing::info!(endpoint = %ep.name, problem = rej.problem.as_str(), "rate limited");
                    return to_response(
                        throttled(
                            Some(system),
                            rej.problem.as_str(),
                            rej.retry_after,
                            rej.remaining,
                            now,
                            true,
                        ),
                        false,
                    );
                }
            }
        }
        _ => None,
    };
    if fault == Some(FaultKind::Slow) {
        // Slow while holding the concurrency slot, as a slow server does.
        let ms = lock(&sb.inner.faults).config.slow_ms;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut reply = match ep.system {
        Some(System::QuickBooks) if ep.name.starts_with("quickbooks.") => {
            crate::qbo::handle(&sb, &req)
        }
        Some(System::Xero) if ep.name.starts_with("xero.") => crate::xero::handle(&sb, &req, &ep),
        Some(system) if ep.name.starts_with("oauth.") => oauth(&sb, system, &req),
        None if ep.name.starts_with("twilio.") => crate::twilio::handle(&sb, &req),
        _ => Reply::text(404, "Not Found"),
    };
    if let (Some(System::Xero), Some(r)) = (ep.system, remaining) {
        reply = xero_limit_headers(reply, r);
    }
    if reply.status >= 500 {
        lock(&sb.inner.stats).status_5xx += 1;
    }
    match fault {
        Some(FaultKind::LostResponse) => {
            // The request is over for the server: free its concurrency slot before the
            // client sees the connection close, as a server that crashed or lost the
            // answer on the way no longer counts it; else a client retrying at once is
            // counted twice.
            drop(permit);
            drop_connection(kill).await
        }
        Some(FaultKind::Truncated) => {
            let full = reply.body.len();
            let cut = reply.body.slice(..full / 2);
            let mut r = reply;
            r.headers.retain(|(k, _)| k != "content-length");
            r.headers
                .push(("content-length".into(), full.max(1).to_string()));
            r.body = cut;
            to_response(r, true)
        }
        Some(FaultKind::Malformed) => {
            let mut r = reply;
            let mut b = r.body.to_vec();
            b.truncate(b.len() * 2 / 3);
            b.extend_from_slice(b",\"}");
            r.body = Bytes::from(b);
            if r.status == 204 {
                r.status = 200;
            }
            if !r.headers.iter().any(|(k, _)| k == "content-type") {
                r.headers.push((
                    "content-type".into(),
                    "application/json; charset=utf-8".into(),
                ));
            }
            to_response(r, false)
        }
        _ => to_response(reply, false),
    }
}

async fn drop_connection(kill: Arc<Notify>) -> Response<SBody> {
    kill.notify_one();
    // The connection task drops this future together with the connection.
    std::future::pending::<()>().await;
    to_response(Reply::empty(500), false)
}

fn known_tenant(sb: &Sandbox, system: System, tenant: &str) -> bool {
    sb.world().tenant_index(system, tenant).is_some()
}

pub fn xero_limit_headers(r: Reply, rem: Remaining) -> Reply {
    r.with_header("X-MinLimit-Remaining", rem.minute.to_string())
        .with_header("X-DayLimit-Remaining", rem.day.to_string())
        .with_header("X-AppMinLimit-Remaining", rem.app_minute.to_string())
}

fn throttled(
    system: Option<System>,
    problem: &str,
    retry_after: u64,
    rem: Remaining,
    now: chrono::DateTime<chrono::Utc>,
    api: bool,
) -> Reply {
    match system {
        Some(System::QuickBooks) => {
            let body = json!({"Fault": {"Error": [{
                "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "Detail": "ThrottleExceeded: the request limit for this company was reached. Retry later.",
                "code": "3001",
                "element": ""
            }], "type": "ThrottleExceeded"}, "time": crate::world::qbo_time_ms(now)});
            Reply::json(429, &body).with_header("Retry-After", retry_after.to_string())
        }
        Some(System::Xero) => {
            let r = Reply::text(429, "")
                .with_header("Retry-After", retry_after.to_string())
                .with_header("X-Rate-Limit-Problem", problem);
            let r = Reply {
                body: Bytes::new(),
                headers: r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| k != "content-type")
                    .collect(),
                ..r
            };
            if api {
                xero_limit_headers(r, rem)
            } else {
                r
            }
        }
        None => Reply::text(429, "Too Many Requests")
            .with_header("Retry-After", retry_after.to_string()),
    }
}

fn server_error(system: Option<System>, status: u16, now: chrono::DateTime<chrono::Utc>) -> Reply {
    match system {
        Some(System::QuickBooks) => Reply::json(
            status,
            &json!({"Fault": {"Error": [{"Message": "An application error has occurred while processing your request", "Detail": "System Failure Error: Something went wrong on our side.", "code": "10000", "element": ""}], "type": "SystemFault"}, "time": crate::world::qbo_time_ms(now)}),
        ),
        _ => Reply::text(status, match status {
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "An error occurred in Xero. Check the API Status page http://status.developer.xero.com for current service status.",
        }),
    }
}

fn oauth(sb: &Sandbox, system: System, req: &Req) -> Reply {
    let authorize = req.segs.iter().any(|s| s.eq_ignore_ascii_case("authorize"));
    let r = if authorize {
        if req.method != Method::GET {
            return Reply::text(405, "Method Not Allowed");
        }
        crate::auth::authorize(&mut sb.world(), system, &req.query)
    } else {
        if req.method != Method::POST {
            return Reply::text(405, "Method Not Allowed");
        }
        let ct = req.header("content-type").unwrap_or("");
        if !ct
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Reply::json(
                400,
                &json!({"error": "invalid_request", "error_description": "the token endpoint takes application/x-www-form-urlencoded"}),
            );
        }
        let form = crate::util::parse_query(&String::from_utf8_lossy(&req.body));
        crate::auth::token(&mut sb.world(), system, req.header("authorization"), &form)
    };
    sb.mark_dirty();
    match r.location {
        Some(loc) => Reply::empty(302).with_header("location", loc),
        None => Reply::json(r.status, &r.body)
            .with_header("cache-control", "no-store")
            .with_header("pragma", "no-cache"),
    }
}
