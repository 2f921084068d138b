//! The one TOML file overdued is configured by.
//!
//! Parsing is two steps: serde into the raw file structs below (unknown keys rejected,
//! types checked), then [`validate`] into a [`Config`] whose secrets are read, time zones
//! and URLs parsed and cross-references checked. Every error names
//! `file:line:column` and the field.

pub mod channels;
pub mod diff;
mod duration;
mod location;
pub mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use overdued_connector::{FeePosting, Secret, System};
use serde::Deserialize;

use crate::engine::{EngineSettings, Policy, PolicyBook};

pub use duration::HumanDuration;

/// Where the config is read from when neither `--config` nor `OVERDUED_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/overdued/config.toml";

/// A config error located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

// ---- the file as written ---------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    quickbooks: BTreeMap<String, RawQuickBooks>,
    #[serde(default)]
    xero: BTreeMap<String, RawXero>,
    #[serde(default)]
    policies: BTreeMap<String, Policy>,
    #[serde(default)]
    engine: EngineSettings,
    #[serde(default)]
    channels: channels::RawChannels,
    #[serde(default)]
    payer_profiles: crate::profiles::PayerProfilesConfig,
}

/// `daemon.max_promise_days` when not set.
pub const DEFAULT_MAX_PROMISE_DAYS: i64 = 30;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<String>,
    poll_interval: Option<HumanDuration>,
    full_sync_interval: Option<HumanDuration>,
    time_zone: Option<String>,
    mode: Option<Mode>,
    #[serde(default)]
    allow_clock_override: bool,
    http_listen: Option<String>,
    #[serde(default)]
    allow_remote_admin: bool,
    webhooks: Option<RawWebhooks>,
    max_promise_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    quickbooks_verifier_token: Option<String>,
    quickbooks_verifier_token_file: Option<String>,
    xero_webhook_key: Option<String>,
    xero_webhook_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuickBooks {
    realm_id: Option<String>,
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    #[serde(default)]
    environment: QuickBooksEnvironment,
    api_base: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    refresh_token: Option<String>,
    refresh_token_file: Option<String>,
    redirect_uri: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    fee_posting: FeePosting,
    fee_item_id: Option<String>,
    limits_time_scale: Option<u32>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXero {
    client_id: String,
    client_secret: Option<String>,
    client_secret_file: Option<String>,
    tenant: String,
    scopes: Option<Vec<String>>,
    api_base: Option<String>,
    identity_base: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    refresh_token: Option<String>,
    refresh_token_file: Option<String>,
    redirect_uri: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    fee_posting: FeePosting,
    fee_account_code: Option<String>,
    fee_item_code: Option<String>,
    limits_time_scale: Option<u32>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

// ---- the validated config ----------------------------------------------------------

/// Whether the daemon acts, or only logs what it would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Live,
    DryRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuickBooksEnvironment {
    Sandbox,
    #[default]
    Production,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths in it were resolved against its directory.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub connections: Vec<ConnectionConfig>,
    /// The policies as written (`[policies.NAME]`); `default` is built in unless redefined.
    pub policies: BTreeMap<String, Policy>,
    /// The same, compiled for the planner.
    pub policy_book: PolicyBook,
    pub engine: EngineSettings,
    /// overdued's own email, digest and webhooks (`[channels]`).
    pub channels: channels::ChannelsConfig,
    /// How customers are judged by their payment history (`[payer_profiles]`).
    pub payer_profiles: crate::profiles::PayerProfilesConfig,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub poll_interval: HumanDuration,
    pub full_sync_interval: HumanDuration,
    pub time_zone: Tz,
    pub mode: Mode,
    pub allow_clock_override: bool,
    pub http_listen: SocketAddr,
    /// `http_listen` may be a non-loopback address (the admin token then crosses the
    /// network in clear unless a TLS proxy is in front).
    pub allow_remote_admin: bool,
    /// Inbound webhooks (`[daemon.webhooks]`); off unless a key is configured.
    pub webhooks: WebhookKeys,
    /// How far ahead a promise to pay may be recorded (`promise`, `called --outcome
    /// promise`); the collection guides suggest about a week.
    pub max_promise_days: i64,
}

/// The secrets that sign the vendors' webhook deliveries. A route answers only when its
/// key is set.
#[derive(Debug, Clone, Default)]
pub struct WebhookKeys {
    pub quickbooks_verifier_token: Option<Secret>,
    pub xero_webhook_key: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    pub name: String,
    pub policy: String,
    pub enabled: bool,
    pub client_id: String,
    pub client_secret: Secret,
    /// A refresh token to start from when the store holds none yet.
    pub initial_refresh_token: Option<Secret>,
    pub redirect_uri: Option<url::Url>,
    pub fee_posting: FeePosting,
    /// Runs the client-side rate limiter this many times faster than the vendor's
    /// real limits, to match a sandbox started with `--time-scale`. 1 for real systems.
    pub limits_time_scale: u32,
    pub system: SystemConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SystemConfig {
    QuickBooks(QuickBooksConfig),
    Xero(XeroConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuickBooksConfig {
    pub realm_id: Option<String>,
    pub environment: QuickBooksEnvironment,
    pub api_base: Option<url::Url>,
    pub token_url: Option<url::Url>,
    pub authorize_url: Option<url::Url>,
    pub fee_item_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct XeroConfig {
    /// Tenant id (a UUID) or organisation name.
    pub tenant: String,
    pub scopes: Vec<String>,
    pub api_base: Option<url::Url>,
    pub identity_base: Option<url::Url>,
    pub token_url: Option<url::Url>,
    pub authorize_url: Option<url::Url>,
    pub fee_account_code: String,
    pub fee_item_code: Option<String>,
}

impl ConnectionConfig {
    pub fn system(&self) -> System {
        match self.system {
            SystemConfig::QuickBooks(_) => System::QuickBooks,
            SystemConfig::Xero(_) => System::Xero,
        }
    }

    /// The ledger's identity ([`overdued_connector::ledger_scope`]) as far as the config
    /// alone tells it: a QuickBooks `realm_id`, or a Xero `tenant` written as an id. A
    /// Xero organisation named by its name is known only once bound at connect.
    pub fn configured_ledger(&self) -> Option<String> {
        let id = match &self.system {
            SystemConfig::QuickBooks(q) => q.realm_id.clone()?,
            SystemConfig::Xero(x) if overdued_xero::tenant::looks_like_tenant_id(&x.tenant) => {
                x.tenant.clone()
            }
            SystemConfig::Xero(_) => return None,
        };
        Some(overdued_connector::ledger_scope(self.system(), &id))
    }

    /// The ledger's identity from the config, else from the realm or tenant the grant
    /// was bound to at connect (`bound`, from the token store).
    pub fn ledger(&self, bound: Option<&str>) -> Option<String> {
        self.configured_ledger().or_else(|| {
            bound
                .filter(|b| !b.trim().is_empty())
                .map(|b| overdued_connector::ledger_scope(self.system(), b))
        })
    }
}

impl Config {
    /// The first two connections on one ledger, if any: by the config alone, and by the
    /// realm or tenant each was bound to at connect (`bound` gives it by connection name,
    /// from the token store).
    pub fn shared_ledger(&self, bound: impl Fn(&str) -> Option<String>) -> Option<SharedLedger> {
        let mut seen: BTreeMap<String, &ConnectionConfig> = BTreeMap::new();
        // A disabled table is how an owner keeps a connection aside; only the enabled chase.
        for c in self.connections.iter().filter(|c| c.enabled) {
            let Some(ledger) = c.ledger(bound(&c.name).as_deref()) else {
                continue;
            };
            if let Some(first) = seen.get(&ledger) {
                return Some(SharedLedger {
                    ledger,
                    system: c.system(),
                    first: first.name.clone(),
                    second: c.name.clone(),
                });
            }
            seen.insert(ledger, c);
        }
        None
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// The scopes asked for when none are configured: a refresh token plus read/write of
/// invoices and read of contacts.
pub const DEFAULT_XERO_SCOPES: &[&str] = overdued_xero::config::DEFAULT_SCOPES;

// ---- loading ---------------------------------------------------------------------------

/// Picks the config path: `--config`, else `OVERDUED_CONFIG`, else the default.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("OVERDUED_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: None,
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "cannot read config file: no such file (give another with --config or OVERDUED_CONFIG)".into(),
            _ => format!("cannot read config file: {e}"),
        },
    })?;
    parse(&text, path)
}

/// Parses and validates config text; `path` names the file in errors and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        position: e.span().map(|s| location::line_col(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let at = |field: &str| location::span_of(text, field);
    let config = validate(raw, &base, path).map_err(|(field, message)| ConfigError {
        file: path.to_path_buf(),
        position: at(&field).map(|s| location::line_col(text, s.start)),
        message: format!("{field}: {message}"),
    })?;
    if let Some(d) = config.shared_ledger(|_| None) {
        // Reported at the one written second: the first was there before the mistake.
        let (fa, fb) = (d.field(&d.first), d.field(&d.second));
        let (first, second, field) = match (at(&fa), at(&fb)) {
            (Some(a), Some(b)) if a.start > b.start => (&d.second, &d.first, fa),
            _ => (&d.first, &d.second, fb),
        };
        return Err(ConfigError {
            file: path.to_path_buf(),
            position: at(&field).map(|s| location::line_col(text, s.start)),
            message: format!("{field}: {}", d.message(first, second)),
        });
    }
    Ok(config)
}

/// Two connections on one ledger: each would chase every customer, twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLedger {
    pub ledger: String,
    pub system: System,
    pub first: String,
    pub second: String,
}

impl SharedLedger {
    fn field(&self, name: &str) -> String {
        match self.system {
            System::QuickBooks => format!("quickbooks.{name}.realm_id"),
            System::Xero => format!("xero.{name}.tenant"),
        }
    }

    /// The refusal, naming both tables (`first` as the one kept).
    pub fn message(&self, first: &str, second: &str) -> String {
        let (table, what) = match self.system {
            System::QuickBooks => ("quickbooks", "QuickBooks company"),
            System::Xero => ("xero", "Xero organisation"),
        };
        let id = self.ledger.split_once(':').map_or("", |(_, id)| id);
        format!(
            "[{table}.{second}] and [{table}.{first}] are the same {what} ({id}): every customer would be chased twice; keep one table per {what}"
        )
    }
}

impl fmt::Display for SharedLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(&self.first, &self.second))
    }
}

type Invalid = (String, String);

fn validate(raw: RawConfig, base: &Path, path: &Path) -> Result<Config, Invalid> {
    let d = raw.daemon;
    let time_zone = match d.time_zone.as_deref() {
        None => Tz::UTC,
        Some(s) => s.parse::<Tz>().map_err(|_| {
            (
                "daemon.time_zone".to_string(),
                format!("unknown time zone {s:?}: use an IANA name such as Europe/London or America/New_York"),
            )
        })?,
    };
    let poll_interval = d
        .poll_interval
        .unwrap_or(HumanDuration(std::time::Duration::from_secs(900)));
    if poll_interval.0.as_secs() < 60 {
        return Err((
            "daemon.poll_interval".into(),
            "must be at least 1m: the vendors' rate limits are per minute".into(),
        ));
    }
    let full_sync_interval = d
        .full_sync_interval
        .unwrap_or(HumanDuration(std::time::Duration::from_secs(86_400)));
    if full_sync_interval < poll_interval {
        return Err((
            "daemon.full_sync_interval".into(),
            format!("must not be shorter than poll_interval ({poll_interval})"),
        ));
    }
    let http_listen = match d.http_listen.as_deref() {
        None => SocketAddr::from(([127, 0, 0, 1], 9464)),
        Some(s) => s.parse().map_err(|_| {
            (
                "daemon.http_listen".to_string(),
                format!("{s:?} is not an address and port such as 127.0.0.1:9464"),
            )
        })?,
    };
    if !http_listen.ip().is_loopback() && !d.allow_remote_admin {
        return Err((
            "daemon.http_listen".to_string(),
            format!("{http_listen} is not a loopback address: the admin token would cross the network in clear; listen on 127.0.0.1 (and put a TLS proxy in front for webhooks), or set daemon.allow_remote_admin = true"),
        ));
    }
    let state_dir = match d.state_dir {
        Some(s) if s.trim().is_empty() => {
            return Err(("daemon.state_dir".into(), "is empty".into()))
        }
        Some(s) => base.join(s),
        None => PathBuf::from("/var/lib/overdued"),
    };
    let webhooks = {
        let w = d.webhooks.unwrap_or_default();
        let at = "daemon.webhooks";
        WebhookKeys {
            quickbooks_verifier_token: secret::resolve_at(
                at,
                "quickbooks_verifier_token",
                w.quickbooks_verifier_token.as_deref(),
                w.quickbooks_verifier_token_file.as_deref(),
                base,
            )?,
            xero_webhook_key: secret::resolve_at(
                at,
                "xero_webhook_key",
                w.xero_webhook_key.as_deref(),
                w.xero_webhook_key_file.as_deref(),
                base,
            )?,
        }
    };
    let max_promise_days = match d.max_promise_days {
        None => DEFAULT_MAX_PROMISE_DAYS,
        Some(n) if (1..=366).contains(&n) => n,
        Some(n) => {
            return Err((
                "daemon.max_promise_days".to_string(),
                format!("{n} is not a number of days from 1 to 366"),
            ))
        }
    };
    let daemon = DaemonConfig {
        max_promise_days,
        state_dir,
        poll_interval,
        full_sync_interval,
        time_zone,
        mode: d.mode.unwrap_or_default(),
        allow_clock_override: d.allow_clock_override,
        http_listen,
        allow_remote_admin: d.allow_remote_admin,
        webhooks,
    };

    let mut connections = Vec::new();
    for (name, q) in raw.quickbooks {
        let at = format!("quickbooks.{name}");
        check_name(&name, &at)?;
        let common = Common::resolve(
            &at,
            base,
            &q.client_id,
            q.client_secret,
            q.client_secret_file,
            q.refresh_token,
            q.refresh_token_file,
            q.redirect_uri,
        )?;
        if let Some(r) = &q.realm_id {
            overdued_quickbooks::config::check_realm_id(r)
                .map_err(|m| (format!("{at}.realm_id"), m))?;
        }
        connections.push(ConnectionConfig {
            name,
            policy: q.policy.unwrap_or_else(|| "default".into()),
            enabled: q.enabled,
            client_id: q.client_id,
            client_secret: common.client_secret,
            initial_refresh_token: common.refresh_token,
            redirect_uri: common.redirect_uri,
            fee_posting: q.fee_posting,
            limits_time_scale: time_scale(&at, q.limits_time_scale)?,
            system: SystemConfig::QuickBooks(QuickBooksConfig {
                realm_id: q.realm_id,
                environment: q.environment,
                api_base: url_field(&at, "api_base", q.api_base)?,
                token_url: url_field(&at, "token_url", q.token_url)?,
                authorize_url: url_field(&at, "authorize_url", q.authorize_url)?,
                fee_item_id: q.fee_item_id,
            }),
        });
    }
    for (name, x) in raw.xero {
        let at = format!("xero.{name}");
        check_name(&name, &at)?;
        if connections.iter().any(|c| c.name == name) {
            return Err((at, format!("connection name {name:?} is also used by a QuickBooks connection: names must be unique")));
        }
        let common = Common::resolve(
            &at,
            base,
            &x.client_id,
            x.client_secret,
            x.client_secret_file,
            x.refresh_token,
            x.refresh_token_file,
            x.redirect_uri,
        )?;
        overdued_xero::config::check_tenant(&x.tenant).map_err(|m| (format!("{at}.tenant"), m))?;
        let scopes = x
            .scopes
            .unwrap_or_else(overdued_xero::config::default_scopes);
        overdued_xero::config::check_scopes(&scopes).map_err(|m| (format!("{at}.scopes"), m))?;
        connections.push(ConnectionConfig {
            name,
            policy: x.policy.unwrap_or_else(|| "default".into()),
            enabled: x.enabled,
            client_id: x.client_id,
            client_secret: common.client_secret,
            initial_refresh_token: common.refresh_token,
            redirect_uri: common.redirect_uri,
            fee_posting: x.fee_posting,
            limits_time_scale: time_scale(&at, x.limits_time_scale)?,
            system: SystemConfig::Xero(XeroConfig {
                tenant: x.tenant,
                scopes,
                api_base: url_field(&at, "api_base", x.api_base)?,
                identity_base: url_field(&at, "identity_base", x.identity_base)?,
                token_url: url_field(&at, "token_url", x.token_url)?,
                authorize_url: url_field(&at, "authorize_url", x.authorize_url)?,
                fee_account_code: x.fee_account_code.unwrap_or_else(|| "200".into()),
                fee_item_code: x.fee_item_code,
            }),
        });
    }
    let mut engine = raw.engine;
    // The daemon's time zone is the one the engine reckons days in.
    engine.time_zone = daemon.time_zone.name().to_string();
    let policy_book = crate::engine::policy::validate(&engine, &raw.policies)
        .and_then(|()| PolicyBook::compile(&raw.policies))
        .map_err(|errs| match errs.0.into_iter().next() {
            Some(e) => (e.path, e.message),
            None => ("policies".to_string(), "invalid".to_string()),
        })?;
    for c in &connections {
        if policy_book.get(&c.policy).is_none() {
            let table = c.system().as_str();
            return Err((
                format!("{table}.{}.policy", c.name),
                format!("no policy named {:?}: define [policies.{}] or remove the key to use the default", c.policy, c.policy),
            ));
        }
    }
    raw.payer_profiles.validate("payer_profiles")?;
    let channels = channels::validate(raw.channels, base, &raw.policies)?;
    let policy_book = policy_book.with_smtp(channels.smtp.is_some());
    smtp_policies_say_how_to_pay(&policy_book, &raw.policies, &connections)?;
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        connections,
        policies: raw.policies,
        policy_book,
        engine,
        channels,
        payer_profiles: raw.payer_profiles,
    })
}

/// With SMTP configured, a policy's catch-up, firm, stop-work and final notices go by
/// SMTP unless the step names its channel, and an email of ours must say how to pay when
/// the ledger has no payment link: the same rule `compile` applies to explicit SMTP steps.
fn smtp_policies_say_how_to_pay(
    book: &crate::engine::PolicyBook,
    declared: &std::collections::BTreeMap<String, crate::engine::Policy>,
    connections: &[ConnectionConfig],
) -> Result<(), Invalid> {
    // Only the policies some connection can follow (directly or through an override)
    // ever write to a customer.
    let mut used: Vec<&str> = connections.iter().map(|c| c.policy.as_str()).collect();
    let mut i = 0;
    while i < used.len() {
        if let Some(p) = book.get(used[i]) {
            for o in &p.overrides {
                if let Some(n) = o.policy.as_deref() {
                    if !used.contains(&n) {
                        used.push(n);
                    }
                }
            }
        }
        i += 1;
    }
    for p in book.all().filter(|p| used.contains(&p.name.as_str())) {
        if p.payment_instructions.is_some() {
            continue;
        }
        let by_smtp = p.step_sent_by_smtp_by_default();
        if let Some(step) = by_smtp {
            let at = if declared.contains_key(&p.name) {
                format!("policies.{}.payment_instructions", p.name)
            } else {
                "channels.smtp".to_string()
            };
            return Err((
                at,
                format!(
                    "with [channels.smtp] configured, policy {:?} sends step {step:?} by SMTP (catch-ups and the steps whose words matter go by our own email), so it needs payment_instructions: how a customer pays when the ledger has no online payment link (bank details or a pay page address); or give those steps channel = \"email\"",
                    p.name
                ),
            ));
        }
    }
    Ok(())
}

struct Common {
    client_secret: Secret,
    refresh_token: Option<Secret>,
    redirect_uri: Option<url::Url>,
}

impl Common {
    #[allow(clippy::too_many_arguments)]
    fn resolve(
        at: &str,
        base: &Path,
        client_id: &str,
        client_secret: Option<String>,
        client_secret_file: Option<String>,
        refresh_token: Option<String>,
        refresh_token_file: Option<String>,
        redirect_uri: Option<String>,
    ) -> Result<Common, Invalid> {
        if client_id.trim().is_empty() {
            return Err((format!("{at}.client_id"), "is empty".into()));
        }
        let client_secret = secret::resolve_at(
            at,
            "client_secret",
            client_secret.as_deref(),
            client_secret_file.as_deref(),
            base,
        )?
        .ok_or_else(|| {
            (
                at.to_string(),
                "client_secret or client_secret_file is required".to_string(),
            )
        })?;
        let refresh = secret::resolve_at(
            at,
            "refresh_token",
            refresh_token.as_deref(),
            refresh_token_file.as_deref(),
            base,
        )?;
        Ok(Common {
            client_secret,
            refresh_token: refresh,
            redirect_uri: url_field(at, "redirect_uri", redirect_uri)?,
        })
    }
}

fn url_field(at: &str, field: &str, v: Option<String>) -> Result<Option<url::Url>, Invalid> {
    let Some(s) = v else { return Ok(None) };
    let u = url::Url::parse(&s)
        .map_err(|e| (format!("{at}.{field}"), format!("{s:?} is not a URL: {e}")))?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err((
            format!("{at}.{field}"),
            format!("{s:?} must be an http or https URL"),
        ));
    }
    Ok(Some(u))
}

fn time_scale(at: &str, v: Option<u32>) -> Result<u32, Invalid> {
    match v {
        None => Ok(1),
        Some(0) => Err((
            format!("{at}.limits_time_scale"),
            "must be at least 1".into(),
        )),
        Some(n) => Ok(n),
    }
}

fn check_name(name: &str, at: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            at.to_string(),
            format!("connection name {name:?} may use only letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
