//! The authorization-code flow with PKCE (S256) on a loopback redirect listener: the
//! library half of `overdued connect NAME`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use oauth2::{
    AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::oauth::OAuthClient;
use crate::clock::Clock;
use crate::error::ConnectorError;
use crate::token::{TokenSet, TokenStore, TokenStoreError};

const CALLBACK_PATH: &str = "/callback";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect flow configuration: {0}")]
    Config(String),
    #[error("redirect listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("no redirect arrived within {0:?}")]
    Timeout(Duration),
    #[error("the redirect's state did not match: possible forgery, nothing was stored")]
    StateMismatch,
    #[error("authorization denied: {error}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    #[error("the redirect carried no code")]
    MissingCode,
    #[error("exchanging the code: {0}")]
    Exchange(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] TokenStoreError),
}

/// Starts connect flows for one vendor and app.
#[derive(Debug, Clone)]
pub struct ConnectFlow {
    client: OAuthClient,
    http: reqwest::Client,
}

/// A flow waiting for its redirect: show [`PendingConnect::authorize_url`] to the user.
#[derive(Debug)]
pub struct PendingConnect {
    client: OAuthClient,
    http: reqwest::Client,
    listener: TcpListener,
    authorize_url: String,
    redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
}

/// The outcome of a completed flow.
#[derive(Debug, Clone)]
pub struct Connected {
    pub tokens: TokenSet,
    /// The vendor's extra redirect parameters that were asked for (QuickBooks `realmId`).
    pub params: BTreeMap<String, String>,
}

impl ConnectFlow {
    pub fn new(client: OAuthClient) -> Result<Self, ConnectError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        Ok(ConnectFlow { client, http })
    }

    /// Binds the redirect listener on 127.0.0.1:`port` (0 picks a free port) and builds
    /// the authorize URL. The redirect URI registered with the vendor must match
    /// `http://127.0.0.1:PORT/callback`.
    pub async fn start(&self, port: u16) -> Result<PendingConnect, ConnectError> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let addr = listener.local_addr()?;
        let redirect_uri = format!("http://{addr}{CALLBACK_PATH}");
        let vendor = &self.client.vendor;
        let auth_url = AuthUrl::new(vendor.authorize_url.clone())
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let redirect = RedirectUrl::new(redirect_uri.clone())
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let oauth = oauth2::basic::BasicClient::new(ClientId::new(self.client.client_id.clone()))
            .set_auth_uri(auth_url)
            .set_redirect_uri(redirect);
        let mut req = oauth
            .authorize_url(CsrfToken::new_random)
            .add_scopes(vendor.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        for (k, v) in &vendor.extra_authorize_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, state) = req.url();
        tracing::info!(system = vendor.system, redirect_uri = %redirect_uri, "connect flow waiting for the redirect");
        Ok(PendingConnect {
            client: self.client.clone(),
            http: self.http.clone(),
            listener,
            authorize_url: url.to_string(),
            redirect_uri,
            state,
            verifier,
        })
    }
}

struct Redirect {
    params: BTreeMap<String, String>,
}

impl PendingConnect {
    /// The URL the user opens in a browser.
    pub fn authorize_url(&self) -> &str {
        &self.authorize_url
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the redirect, checks `state`, exchanges the code for tokens.
    pub async fn finish(
        self,
        timeout: Duration,
        clock: &dyn Clock,
    ) -> Result<Connected, ConnectError> {
        let redirect = tokio::time::timeout(timeout, self.accept_redirect())
            .await
            .map_err(|_| ConnectError::Timeout(timeout))??;
        let p = redirect.params;
        if let Some(error) = p.get("error") {
            return Err(ConnectError::Denied {
                error: error.clone(),
                description: p.get("error_description").cloned(),
            });
        }
        let state_ok = p
            .get("state")
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.state.secret().as_bytes())));
        if !state_ok {
            return Err(ConnectError::StateMismatch);
        }
        let code = p
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(ConnectError::MissingCode)?;
        let vendor = &self.client.vendor;
        let mut tokens = self
            .client
            .exchange_code(
                &self.http,
                code,
                &self.redirect_uri,
                self.verifier.secret(),
                clock.now(),
            )
            .await?;
        tokens.bound_to = vendor.bound_param.as_ref().and_then(|b| p.get(b).cloned());
        let params = vendor
            .redirect_params
            .iter()
            .filter_map(|k| p.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        tracing::info!(
            system = vendor.system,
            bound_to = tokens.bound_to.as_deref().unwrap_or(""),
            "connect flow completed"
        );
        Ok(Connected { tokens, params })
    }

    /// [`finish`](Self::finish), then stores the tokens (durably) for `connection`.
    pub async fn finish_and_store(
        self,
        connection: &str,
        store: Arc<dyn TokenStore>,
        timeout: Duration,
        clock: &dyn Clock,
    ) -> Result<Connected, ConnectError> {
        let c = self.finish(timeout, clock).await?;
        store.save_tokens(connection, &c.tokens)?;
        Ok(c)
    }

    /// Serves the loopback listener until a request for the callback path arrives;
    /// anything else (favicon, probes) gets a 404 and is ignored.
    async fn accept_redirect(&self) -> Result<Redirect, ConnectError> {
        loop {
            let (mut stream, _) = self.listener.accept().await?;
            let Ok(Some(target)) = read_request_target(&mut stream).await else {
                let _ = respond(&mut stream, "400 Bad Request", "Bad request.").await;
                continue;
            };
            let url = match url::Url::parse(&format!("http://127.0.0.1{target}")) {
                Ok(u) if u.path() == CALLBACK_PATH => u,
                _ => {
                    let _ = respond(&mut stream, "404 Not Found", "Not found.").await;
                    continue;
                }
            };
            let params: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
            let body = if params.contains_key("error") {
                "Authorization was not granted. You can close this tab and run the command again."
            } else {
                "overdued received the authorization. You can close this tab."
            };
            let _ = respond(&mut stream, "200 OK", body).await;
            return Ok(Redirect { params });
        }
    }
}

/// Reads an HTTP/1 request head and returns the request target of a GET.
async fn read_request_target(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Ok(None);
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Ok(Some(target.to_string())),
        _ => Ok(None),
    }
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let html = format!("<!doctype html><title>overdued</title><p>{body}</p>");
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    );
    stream.write_all(msg.as_bytes()).await?;
    stream.shutdown().await
}
