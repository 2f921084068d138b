//! The demo's private surroundings: a temporary state directory, the in-process
//! simulators and an overdued config pointing at one of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use overdued_sandbox::{RunningSandbox, Sandbox, SandboxOptions, System};

use crate::config::secret::write_secret_file;
use crate::config::{self, Config};

use super::DemoError;

/// How much faster than real time the simulators' rate-limit windows (and overdued's
/// client limiter, to match) run, so that limits never slow the demo down.
pub const TIME_SCALE: u32 = 1000;

/// The demo's business: a UK firm; its day starts in London.
pub const TIME_ZONE: &str = "Europe/London";

/// The demo policy's steps: (offset, action, template, what it is called in the log).
/// The built-in default steps, plus a disclosed fixed late fee alongside the stop-work
/// reminder so that fees (and customers who only pay once charged one) show up.
pub const STEPS: &[(&str, &str, Option<&str>, &str)] = &[
    ("-3d", "remind", Some("heads_up"), "heads-up"),
    ("0d", "remind", Some("due_today"), "due-date"),
    ("+7d", "remind", Some("follow_up"), "follow-up"),
    ("+14d", "remind", Some("firm"), "firm"),
    ("+30d", "remind", Some("stop_work"), "stop-work"),
    ("+30d", "late_fee", None, "late fee"),
    ("+60d", "remind", Some("final_notice"), "final notice"),
    ("+90d", "escalate", Some("escalation"), "escalation"),
];

/// The fixed late fee, in each invoice's currency (the EU directive's compensation
/// is EUR 40; the UK's starts at GBP 40).
pub const LATE_FEE: &str = "40.00";

/// A private directory removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir, DemoError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let p =
            std::env::temp_dir().join(format!("overdued-demo-{}-{nanos:x}", std::process::id()));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&p).map_err(|source| DemoError::Io {
            path: p.clone(),
            source,
        })?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn sandbox_options(seed: u64, start: chrono::DateTime<chrono::Utc>) -> SandboxOptions {
    SandboxOptions {
        seed,
        customers: 30,
        invoices: 150,
        start,
        state_file: None,
        time_scale: f64::from(TIME_SCALE),
        enforce_limits: true,
        quickbooks_tenants: 1,
        xero_tenants: 1,
    }
}

pub async fn start_sandbox(opts: SandboxOptions) -> Result<RunningSandbox, DemoError> {
    // Loopback only: the demo needs no network.
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    Sandbox::start(opts, addr).await.map_err(DemoError::Sandbox)
}

/// Writes the secrets of a config for `sb` into `dir` (mode 0600) and parses the config
/// text through the same validation as a user's file. `tag` keeps two configs in one
/// directory apart.
pub fn config_for(sb: &Sandbox, url: &str, dir: &Path, tag: &str) -> Result<Config, DemoError> {
    let secret = |name: String, value: &str| -> Result<String, DemoError> {
        let p = dir.join(&name);
        write_secret_file(&p, value).map_err(|source| DemoError::Io { path: p, source })?;
        Ok(name)
    };
    let mut text = format!(
        "[daemon]\n\
         state_dir = \"{tag}-state\"\n\
         time_zone = \"{TIME_ZONE}\"\n\
         poll_interval = \"1h\"\n\
         full_sync_interval = \"7d\"\n\
         allow_clock_override = true\n\
         http_listen = \"127.0.0.1:0\"\n\n\
         [policies.default.late_fee]\n\
         model = \"fixed\"\n\
         amount = \"{LATE_FEE}\"\n"
    );
    for (offset, action, template, _) in STEPS {
        text.push_str(&format!(
            "\n[[policies.default.steps]]\noffset = \"{offset}\"\naction = \"{action}\"\n"
        ));
        if let Some(t) = template {
            text.push_str(&format!("template = \"{t}\"\n"));
        }
    }
    for t in sb.tenants() {
        let (client_id, client_secret) = sb.client_credentials(t.system);
        let grant = sb.grant(t.system, &t.id).map_err(DemoError::Sandbox)?;
        let name = match t.system {
            System::QuickBooks => "demo-quickbooks",
            System::Xero => "demo-xero",
        };
        let cs = secret(format!("{tag}.{name}.client-secret"), &client_secret)?;
        let rt = secret(format!("{tag}.{name}.refresh-token"), &grant.refresh_token)?;
        match t.system {
            System::QuickBooks => text.push_str(&format!(
                "\n[quickbooks.{name}]\nrealm_id = \"{id}\"\nclient_id = \"{client_id}\"\n\
                 client_secret_file = \"{cs}\"\nrefresh_token_file = \"{rt}\"\n\
                 environment = \"sandbox\"\napi_base = \"{url}\"\n\
                 token_url = \"{url}/oauth2/v1/tokens/bearer\"\n\
                 authorize_url = \"{url}/oauth2/quickbooks/authorize\"\n\
                 limits_time_scale = {TIME_SCALE}\n",
                id = t.id
            )),
            System::Xero => text.push_str(&format!(
                "\n[xero.{name}]\ntenant = \"{id}\"\nclient_id = \"{client_id}\"\n\
                 client_secret_file = \"{cs}\"\nrefresh_token_file = \"{rt}\"\n\
                 api_base = \"{url}/api.xro/2.0\"\nidentity_base = \"{url}\"\n\
                 token_url = \"{url}/connect/token\"\n\
                 authorize_url = \"{url}/identity/connect/authorize\"\n\
                 limits_time_scale = {TIME_SCALE}\n",
                id = t.id
            )),
        }
    }
    let path = dir.join(format!("{tag}.toml"));
    std::fs::write(&path, &text).map_err(|source| DemoError::Io {
        path: path.clone(),
        source,
    })?;
    config::parse(&text, &path).map_err(DemoError::Config)
}
