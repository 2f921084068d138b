#![allow(dead_code)]

use std::net::SocketAddr;

use base64::Engine;
use overdued_sandbox::{RunningSandbox, Sandbox, SandboxOptions, System};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::Value;

pub async fn start(opts: SandboxOptions) -> RunningSandbox {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    Sandbox::start(opts, addr).await.expect("sandbox starts")
}

pub fn small(invoices: usize) -> SandboxOptions {
    SandboxOptions {
        customers: 8,
        invoices,
        enforce_limits: false,
        ..SandboxOptions::default()
    }
}

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub struct Api {
    pub rs: RunningSandbox,
    pub http: Client,
    pub qbo_realm: String,
    pub xero_tenant: String,
    pub qbo_token: String,
    pub xero_token: String,
}

impl Api {
    pub async fn new(opts: SandboxOptions) -> Api {
        let rs = start(opts).await;
        let tenants = rs.sandbox.tenants();
        let qbo_realm = tenants
            .iter()
            .find(|t| t.system == System::QuickBooks)
            .map(|t| t.id.clone())
            .unwrap_or_default();
        let xero_tenant = tenants
            .iter()
            .find(|t| t.system == System::Xero)
            .map(|t| t.id.clone())
            .unwrap_or_default();
        let qbo_token = if qbo_realm.is_empty() {
            String::new()
        } else {
            rs.sandbox
                .grant(System::QuickBooks, &qbo_realm)
                .expect("grant")
                .access_token
        };
        let xero_token = if xero_tenant.is_empty() {
            String::new()
        } else {
            rs.sandbox
                .grant(System::Xero, &xero_tenant)
                .expect("grant")
                .access_token
        };
        Api {
            rs,
            http: client(),
            qbo_realm,
            xero_tenant,
            qbo_token,
            xero_token,
        }
    }

    /// Moves the sandbox clock and takes fresh grants (the old access tokens may expire).
    pub fn advance(&mut self, to: chrono::DateTime<chrono::Utc>) {
        self.rs.sandbox.set_now(to);
        if !self.qbo_realm.is_empty() {
            self.qbo_token = self
                .rs
                .sandbox
                .grant(System::QuickBooks, &self.qbo_realm)
                .expect("grant")
                .access_token;
        }
        if !self.xero_tenant.is_empty() {
            self.xero_token = self
                .rs
                .sandbox
                .grant(System::Xero, &self.xero_tenant)
                .expect("grant")
                .access_token;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.rs.url(), path)
    }

    pub fn qbo(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(
                method,
                format!("{}/v3/company/{}/{}", self.rs.url(), self.qbo_realm, path),
            )
            .bearer_auth(&self.qbo_token)
            .header("accept", "application/json")
    }

    pub fn xero(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api.xro/2.0/{}", self.rs.url(), path))
            .bearer_auth(&self.xero_token)
            .header("xero-tenant-id", &self.xero_tenant)
            .header("accept", "application/json")
    }

    pub async fn qbo_query(&self, q: &str) -> (StatusCode, Value) {
        let r = self
            .qbo(reqwest::Method::GET, "query")
            .query(&[("query", q), ("minorversion", "75")])
            .send()
            .await
            .expect("send");
        let s = r.status();
        (s, r.json().await.expect("json"))
    }

    pub async fn ledger(&self) -> Value {
        self.http
            .get(self.url("/_sandbox/ledger"))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    pub async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("send");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}
