//! `overdued sandbox`: the built-in QuickBooks Online + Xero simulator as a server, and
//! a ready config that points overdued at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use overdued_sandbox::{Sandbox, SandboxOptions, System};

use crate::config::secret::write_secret_file;

use super::common::{runtime, Fail};
use super::{exit, SandboxArgs};

pub fn run(args: &SandboxArgs) -> u8 {
    match serve(args) {
        Ok(()) => 0,
        Err(e) => e.report(),
    }
}

fn serve(args: &SandboxArgs) -> Result<(), Fail> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        Fail(
            exit::USAGE,
            format!(
                "--listen {:?}: expected an address and port such as 127.0.0.1:0",
                args.listen
            ),
        )
    })?;
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(Fail(
            exit::USAGE,
            format!(
                "--time-scale {}: must be a positive number",
                args.time_scale
            ),
        ));
    }
    let start = match &args.start {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Fail(
                    exit::USAGE,
                    format!(
                        "--start {s:?}: expected an RFC 3339 instant such as 2026-01-05T09:00:00Z"
                    ),
                )
            })?,
        None => today_nine_utc(),
    };
    let opts = SandboxOptions {
        seed: args.seed,
        customers: args.customers,
        invoices: args.invoices,
        start,
        state_file: args.state.clone(),
        time_scale: args.time_scale,
        enforce_limits: true,
        ..SandboxOptions::default()
    };
    let rt = runtime()?;
    rt.block_on(async {
        let running = Sandbox::start(opts, addr)
            .await
            .map_err(|e| Fail(exit::IOERR, e.to_string()))?;
        let window = args.idempotency_window.as_duration().as_secs();
        if window == 0 {
            return Err(Fail(
                exit::USAGE,
                "--idempotency-window must be positive".into(),
            ));
        }
        running
            .sandbox
            .set_idempotency_window(chrono::Duration::seconds(window as i64));
        let url = running.url();
        if let Some(path) = &args.write_config {
            write_config(&running.sandbox, &url, path, args.time_scale)?;
        }
        // The first line on stdout, which scripts and tests wait for.
        println!("sandbox listening on {url}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        running
            .shutdown()
            .await
            .map_err(|e| Fail(exit::IOERR, e.to_string()))
    })
}

fn today_nine_utc() -> DateTime<Utc> {
    let d = Utc::now().date_naive();
    d.and_hms_opt(9, 0, 0).unwrap_or_default().and_utc()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Writes a complete config for this sandbox: every tenant as a connection with a
/// granted refresh token, secrets in private files beside the config, state in
/// `<config stem>-state/` beside it.
pub fn write_config(sb: &Sandbox, url: &str, path: &Path, time_scale: f64) -> Result<(), Fail> {
    let io = |e: std::io::Error, p: &Path| Fail(exit::IOERR, format!("{}: {e}", p.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("overdued")
        .to_string();
    let secret = |name: &str, value: &str| -> Result<String, Fail> {
        let file = format!("{stem}.{name}");
        let p = dir.join(&file);
        write_secret_file(&p, value).map_err(|e| io(e, &p))?;
        Ok(file)
    };
    let mut text = format!(
        "# Written by `overdued sandbox` for the simulator at {url}.\n\
         # Its clock is virtual, so this config allows `overdued run --once --now <RFC3339>`.\n\n\
         [daemon]\n\
         state_dir = \"{stem}-state\"\n\
         poll_interval = \"1m\"\n\
         time_zone = \"UTC\"\n\
         allow_clock_override = true\n\
         http_listen = \"127.0.0.1:0\"\n"
    );
    // The client limiter runs as fast as the sandbox's accelerated minute.
    let scale = (time_scale.round() as u32).max(1);
    let limits = if scale > 1 {
        format!("limits_time_scale = {scale}\n")
    } else {
        String::new()
    };
    let (mut nq, mut nx) = (0, 0);
    for t in sb.tenants() {
        let (client_id, client_secret) = sb.client_credentials(t.system);
        let grant = sb
            .grant(t.system, &t.id)
            .map_err(|e| Fail(exit::SOFTWARE, e.to_string()))?;
        match t.system {
            System::QuickBooks => {
                nq += 1;
                let name = if nq == 1 {
                    "sandbox-qbo".to_string()
                } else {
                    format!("sandbox-qbo-{nq}")
                };
                let cs = secret(&format!("{name}.client-secret"), &client_secret)?;
                let rt = secret(&format!("{name}.refresh-token"), &grant.refresh_token)?;
                text.push_str(&format!(
                    "\n# {tenant}\n[quickbooks.{name}]\nrealm_id = \"{id}\"\nclient_id = \"{client_id}\"\nclient_secret_file = \"{cs}\"\n\
                     refresh_token_file = \"{rt}\"\nenvironment = \"sandbox\"\napi_base = \"{url}\"\n\
                     token_url = \"{url}/oauth2/v1/tokens/bearer\"\nauthorize_url = \"{url}/oauth2/quickbooks/authorize\"\n{limits}",
                    tenant = t.name,
                    id = t.id
                ));
            }
            System::Xero => {
                nx += 1;
                let name = if nx == 1 {
                    "sandbox-xero".to_string()
                } else {
                    format!("sandbox-xero-{nx}")
                };
                let cs = secret(&format!("{name}.client-secret"), &client_secret)?;
                let rt = secret(&format!("{name}.refresh-token"), &grant.refresh_token)?;
                text.push_str(&format!(
                    "\n# {tenant}\n[xero.{name}]\nclient_id = \"{client_id}\"\nclient_secret_file = \"{cs}\"\nrefresh_token_file = \"{rt}\"\n\
                     tenant = \"{id}\"\napi_base = \"{url}/api.xro/2.0\"\nidentity_base = \"{url}\"\n\
                     token_url = \"{url}/connect/token\"\nauthorize_url = \"{url}/identity/connect/authorize\"\n{limits}",
                    tenant = t.name,
                    id = t.id
                ));
            }
        }
    }
    // The sandbox serves Twilio's Messages API too: text messages go to it, and only to
    // customers opted in with `overdued sms opt-in`.
    let token = secret("twilio-auth-token", overdued_sandbox::TWILIO_AUTH_TOKEN)?;
    text.push_str(&format!(
        "\n# Text messages through the sandbox's Twilio Messages API\n[channels.sms]\n\
         account_sid = \"{sid}\"\nauth_token_file = \"{token}\"\nfrom = \"{from}\"\n\
         sender_name = \"Sandbox Trading\"\napi_base = \"{url}\"\n",
        sid = overdued_sandbox::TWILIO_ACCOUNT_SID,
        from = overdued_sandbox::TWILIO_FROM,
    ));
    std::fs::write(path, text).map_err(|e| io(e, path))
}
