//! `overdued-bench`: whole-system figures against the built-in sandbox, written to
//! `bench/results.json` and printed as a Markdown table.
//!
//! ```text
//! cargo build --release -p overdued --bins
//! target/release/overdued-bench            # full run (~10 min)
//! target/release/overdued-bench --quick    # smaller N, a few minutes
//! ```
//!
//! Every scenario runs in its own child process (so peak RSS and CPU time are that
//! scenario's alone), and the sandbox serves from another child process (so its world
//! and its CPU are not counted as overdued's). CPU is getrusage; peak RSS is the child's
//! `VmHWM`; idle RSS is the real `overdued run` daemon's `VmRSS`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Days, NaiveDate, TimeZone, Utc};
use clap::{Parser, Subcommand};
use overdued::config::{self, Config, SystemConfig};
use overdued::store::{InvoiceRecord, SledStore, Store};
use overdued_connector::{
    Clock, ConnectionId, Connector, Currency, CustomerRef, InvoiceSnapshot, InvoiceStatus,
    SystemClock,
};
use overdued_sandbox::{Sandbox, SandboxOptions, System};
use rust_decimal::Decimal;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "overdued-bench",
    about = "Benchmarks overdued against the built-in sandbox; writes JSON and a Markdown table."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Smaller sizes: a run of about four minutes.
    #[arg(long)]
    quick: bool,
    /// Where the JSON summary goes.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
    /// Invoices per tenant for the initial sync, idle and rate scenarios (default 100000).
    #[arg(long)]
    invoices: Option<usize>,
    /// Stored invoices to plan over (default 1000000).
    #[arg(long)]
    plan_invoices: Option<usize>,
    /// Connections polled in one cycle (default 1000, half QuickBooks, half Xero).
    #[arg(long)]
    connections: Option<usize>,
    /// Length of each of the two rate-limit windows in real seconds (default 60; shorter
    /// windows overstate the rate, since a sliding minute allows an initial burst).
    #[arg(long)]
    rate_secs: Option<u64>,
    /// Busy threads spinning beside the rate scenario (a machine with other work):
    /// whether the call rate holds when overdued does not have the CPU to itself.
    #[arg(long, default_value_t = 0)]
    hog: usize,
    /// Only these scenarios (comma-separated): sync, plan, idle, fleet, rate, stop.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Invoices stored beside the sandbox's for the payment -> stop scenario (default
    /// 100000; 1000000 for the issue's goal).
    #[arg(long)]
    stop_invoices: Option<usize>,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) Serve a sandbox and write configs for it; stops when stdin closes.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        qbo: usize,
        #[arg(long)]
        xero: usize,
        #[arg(long)]
        invoices: usize,
        #[arg(long)]
        customers: usize,
        #[arg(long)]
        time_scale: f64,
        #[arg(long, action = clap::ArgAction::Set)]
        enforce: bool,
    },
    /// (internal) One scenario in this process; prints `RESULT <json>`.
    #[command(hide = true)]
    Scenario {
        name: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        sandbox: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, default_value_t = 3)]
        polls: usize,
        #[arg(long, default_value_t = 0)]
        invoices: usize,
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Some(Cmd::Serve {
            dir,
            qbo,
            xero,
            invoices,
            customers,
            time_scale,
            enforce,
        }) => serve(
            dir,
            *qbo,
            *xero,
            *invoices,
            *customers,
            *time_scale,
            *enforce,
        ),
        Some(Cmd::Scenario {
            name,
            config,
            state_dir,
            sandbox,
            connection,
            polls,
            invoices,
            secs,
        }) => scenario(
            name,
            &ScenarioArgs {
                config: config.clone(),
                state_dir: state_dir.clone(),
                sandbox: sandbox.clone(),
                connection: connection.clone(),
                polls: *polls,
                invoices: *invoices,
                secs: *secs,
            },
        )
        .map(|v| println!("RESULT {v}")),
        None => orchestrate(&cli),
    };
    if let Err(e) = r {
        eprintln!("overdued-bench: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

// ---- measuring ------------------------------------------------------------------------

/// User + system CPU seconds of this process (or, with `thread`, this thread).
fn cpu_seconds(thread: bool) -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if thread {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(who, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A `/proc/<pid>/status` field in MiB (VmHWM, VmRSS).
/// CPU time a process has used, user and system, in clock ticks (usually 10 ms).
fn cpu_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The fields after the command name, which may hold spaces, in parentheses.
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn proc_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn dir_mib(p: &Path) -> f64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt;
                    // Allocated blocks: sled's files are sparse.
                    (m.blocks() * 512).min(m.len().max(m.blocks() * 512))
                }
                Err(_) => 0,
            })
            .sum()
    }
    walk(p) as f64 / (1024.0 * 1024.0)
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

// ---- the sandbox server ---------------------------------------------------------------

fn runtime() -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err("tokio runtime"))
}

fn today_nine() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

/// Serves the sandbox and writes `overdued.toml` (every tenant) and `<name>.toml` (one
/// connection each) into `dir`, all with `mode = "dry-run"` and `state_dir = "state"`.
fn serve(
    dir: &Path,
    qbo: usize,
    xero: usize,
    invoices: usize,
    customers: usize,
    time_scale: f64,
    enforce: bool,
) -> Res<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let opts = SandboxOptions {
            seed: 7,
            customers,
            invoices,
            start: today_nine(),
            time_scale,
            enforce_limits: enforce,
            quickbooks_tenants: qbo,
            xero_tenants: xero,
            ..SandboxOptions::default()
        };
        let running = Sandbox::start(opts, "127.0.0.1:0".parse().map_err(err("addr"))?)
            .await
            .map_err(err("sandbox"))?;
        let url = running.url();
        write_configs(&running.sandbox, &url, dir, time_scale)?;
        println!("READY {url}");
        let _ = std::io::stdout().flush();
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .map_err(err("stdin"))?;
        running.shutdown().await.map_err(err("shutdown"))
    })
}

fn write_configs(sb: &Sandbox, url: &str, dir: &Path, time_scale: f64) -> Res<()> {
    std::fs::create_dir_all(dir).map_err(err("bench dir"))?;
    let scale = (time_scale.round() as u32).max(1);
    let limits = if scale > 1 {
        format!("limits_time_scale = {scale}\n")
    } else {
        String::new()
    };
    let head =
        "[daemon]\nstate_dir = \"state\"\npoll_interval = \"1m\"\nfull_sync_interval = \"1d\"\n\
                time_zone = \"UTC\"\nmode = \"dry-run\"\nhttp_listen = \"127.0.0.1:0\"\n";
    let mut all = head.to_string();
    let (mut nq, mut nx) = (0, 0);
    for t in sb.tenants() {
        let (client_id, client_secret) = sb.client_credentials(t.system);
        let grant = sb.grant(t.system, &t.id).map_err(err("grant"))?;
        let section = match t.system {
            System::QuickBooks => {
                nq += 1;
                format!(
                    "\n[quickbooks.qbo-{nq}]\nrealm_id = \"{id}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
                     refresh_token = \"{rt}\"\nenvironment = \"sandbox\"\napi_base = \"{url}\"\n\
                     token_url = \"{url}/oauth2/v1/tokens/bearer\"\nauthorize_url = \"{url}/oauth2/quickbooks/authorize\"\n{limits}",
                    id = t.id,
                    rt = grant.refresh_token
                )
            }
            System::Xero => {
                nx += 1;
                format!(
                    "\n[xero.xero-{nx}]\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\nrefresh_token = \"{rt}\"\n\
                     tenant = \"{id}\"\napi_base = \"{url}/api.xro/2.0\"\nidentity_base = \"{url}\"\n\
                     token_url = \"{url}/connect/token\"\nauthorize_url = \"{url}/identity/connect/authorize\"\n{limits}",
                    id = t.id,
                    rt = grant.refresh_token
                )
            }
        };
        let name = match t.system {
            System::QuickBooks => format!("qbo-{nq}"),
            System::Xero => format!("xero-{nx}"),
        };
        if nq + nx <= 4 {
            std::fs::write(dir.join(format!("{name}.toml")), format!("{head}{section}"))
                .map_err(err("config"))?;
        }
        all.push_str(&section);
    }
    std::fs::write(dir.join("overdued.toml"), all).map_err(err("config"))
}

struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Server {
    fn start(
        dir: &Path,
        qbo: usize,
        xero: usize,
        invoices: usize,
        time_scale: f64,
        enforce: bool,
    ) -> Res<Server> {
        let customers = (invoices / 20).clamp(5, 5000);
        let mut child = Command::new(std::env::current_exe().map_err(err("exe"))?)
            .args(["serve", "--dir"])
            .arg(dir)
            .args(["--qbo", &qbo.to_string(), "--xero", &xero.to_string()])
            .args(["--invoices", &invoices.to_string()])
            .args(["--customers", &customers.to_string()])
            .args(["--time-scale", &time_scale.to_string()])
            .args(["--enforce", &enforce.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err("spawn sandbox"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(err("sandbox"))?;
        let url = line
            .trim()
            .strip_prefix("READY ")
            .ok_or_else(|| format!("sandbox did not start: {line:?}"))?
            .to_string();
        Ok(Server {
            child,
            url,
            dir: dir.to_path_buf(),
        })
    }

    fn config(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Runs one scenario child and returns its JSON.
fn child(name: &str, args: &[String]) -> Res<Value> {
    eprintln!("  [{name}] running...");
    let out = Command::new(std::env::current_exe().map_err(err("exe"))?)
        .args(["scenario", name])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(err("spawn scenario"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("scenario {name} failed ({})", out.status))?;
    serde_json::from_str(line).map_err(err("scenario output"))
}

fn sandbox_stats(url: &str) -> Res<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err("runtime"))?;
    rt.block_on(stats_async(&reqwest::Client::new(), url))
}

async fn stats_async(http: &reqwest::Client, url: &str) -> Res<Value> {
    http.get(format!("{url}/_sandbox/stats"))
        .send()
        .await
        .map_err(err("stats"))?
        .json::<Value>()
        .await
        .map_err(err("stats"))
}

/// API calls the sandbox served to one tenant (`system:tenant` keys).
fn tenant_calls(stats: &Value, tenant: &str) -> u64 {
    stats["requests_by_tenant"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.ends_with(&format!(":{tenant}")))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn all_calls(stats: &Value) -> u64 {
    stats["requests_by_tenant"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

// ---- the orchestrator -----------------------------------------------------------------

fn orchestrate(cli: &Cli) -> Res<()> {
    let n = cli
        .invoices
        .unwrap_or(if cli.quick { 20_000 } else { 100_000 });
    let plan_n = cli
        .plan_invoices
        .unwrap_or(if cli.quick { 100_000 } else { 1_000_000 });
    let conns = cli
        .connections
        .unwrap_or(if cli.quick { 200 } else { 1000 });
    let rate_secs = cli.rate_secs.unwrap_or(60);
    let want = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    let work = std::env::temp_dir().join(format!("overdued-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(err("work dir"))?;
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    results.insert(
        "machine".into(),
        json!({
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "cpu_model": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string())),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "quick": cli.quick,
            "date": Utc::now().to_rfc3339(),
        }),
    );

    if want("sync") || want("idle") {
        eprintln!("initial sync and steady state: {n} invoices per system");
        let server = Server::start(&work.join("sync"), 1, 1, n, 60.0, true)?;
        let mut sync = serde_json::Map::new();
        for name in ["qbo-1", "xero-1"] {
            let state = work.join(format!("state-{name}"));
            let v = child(
                "sync",
                &[
                    "--config".into(),
                    server.config(name).display().to_string(),
                    "--state-dir".into(),
                    state.display().to_string(),
                    "--sandbox".into(),
                    server.url.clone(),
                    "--connection".into(),
                    name.into(),
                ],
            )?;
            sync.insert(name.into(), v);
        }
        results.insert("initial_sync".into(), Value::Object(sync));
        if want("idle") {
            eprintln!("idle daemon with {n} invoices stored");
            let v = idle_daemon(&server, &work.join("state-qbo-1"))?;
            results.insert("idle_daemon".into(), v);
        }
        server.stop();
    }

    if want("plan") {
        eprintln!("planning over {plan_n} stored invoices");
        let v = child(
            "plan",
            &[
                "--state-dir".into(),
                work.join("state-plan").display().to_string(),
                "--invoices".into(),
                plan_n.to_string(),
            ],
        )?;
        results.insert("planning".into(), v);
        let _ = std::fs::remove_dir_all(work.join("state-plan"));
    }

    if want("fleet") {
        eprintln!("{conns} connections in one cycle");
        let q = conns / 2;
        let server = Server::start(&work.join("fleet"), q, conns - q, 20, 1.0, true)?;
        let v = child(
            "fleet",
            &[
                "--config".into(),
                server.config("overdued").display().to_string(),
                "--state-dir".into(),
                work.join("state-fleet").display().to_string(),
                "--sandbox".into(),
                server.url.clone(),
            ],
        )?;
        results.insert("fleet".into(), v);
        server.stop();
    }

    if want("rate") {
        eprintln!("limits enforced at time scale 1: {rate_secs} s per system");
        let server = Server::start(&work.join("rate"), 1, 1, n, 1.0, true)?;
        let mut rate = serde_json::Map::new();
        let stop_hog = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hogs: Vec<_> = (0..cli.hog)
            .map(|_| {
                let stop = stop_hog.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                    }
                })
            })
            .collect();
        // Both systems at once (separate tenants, separate limits): one wait, not two.
        let handles: Vec<_> = ["qbo-1", "xero-1"]
            .into_iter()
            .map(|name| {
                let args: Vec<String> = vec![
                    "--config".into(),
                    server.config(name).display().to_string(),
                    "--state-dir".into(),
                    work.join(format!("state-rate-{name}"))
                        .display()
                        .to_string(),
                    "--sandbox".into(),
                    server.url.clone(),
                    "--connection".into(),
                    name.into(),
                    "--secs".into(),
                    rate_secs.to_string(),
                ];
                (name, std::thread::spawn(move || child("rate", &args)))
            })
            .collect();
        let joined: Vec<_> = handles
            .into_iter()
            .map(|(name, h)| (name, h.join()))
            .collect();
        stop_hog.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in hogs {
            let _ = h.join();
        }
        for (name, v) in joined {
            let mut v = v.map_err(|_| "rate thread panicked".to_string())??;
            v["cpu_hog_threads"] = json!(cli.hog);
            rate.insert(name.into(), v);
        }
        results.insert("rate_limits".into(), Value::Object(rate));
        server.stop();
    }

    if want("stop") {
        let stop_n = cli
            .stop_invoices
            .unwrap_or(if cli.quick { 20_000 } else { 100_000 });
        eprintln!("payment -> stop by webhook, {stop_n} invoices stored");
        let server = Server::start(&work.join("stop"), 1, 0, 200, 60.0, true)?;
        let v = payment_to_stop(&server, &work.join("state-stop"), stop_n);
        server.stop();
        let _ = std::fs::remove_dir_all(work.join("state-stop"));
        results.insert("payment_to_stop".into(), v?);
    }

    results.insert(
        "bench_wall_seconds".into(),
        json!(round(started.elapsed().as_secs_f64(), 1)),
    );
    let results = Value::Object(results);
    if let Some(parent) = cli.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err("output dir"))?;
    }
    std::fs::write(
        &cli.out,
        serde_json::to_string_pretty(&results).map_err(err("json"))? + "\n",
    )
    .map_err(err("write results"))?;
    let _ = std::fs::remove_dir_all(&work);
    println!("{}", table(&results));
    eprintln!("results written to {}", cli.out.display());
    Ok(())
}

/// The `overdued` binary built beside this bench.
fn daemon_binary() -> Res<PathBuf> {
    let exe = std::env::current_exe().map_err(err("exe"))?;
    let daemon = exe.with_file_name("overdued");
    if !daemon.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p overdued --bins`",
            daemon.display()
        ));
    }
    Ok(daemon)
}

/// Starts the real daemon on a store holding the synced invoices, waits until it has
/// finished its first cycle and gone quiet, and reads its resident set.
fn idle_daemon(server: &Server, state: &Path) -> Res<Value> {
    let daemon = daemon_binary()?;
    let text = std::fs::read_to_string(server.config("qbo-1")).map_err(err("config"))?;
    let text = text.replace(
        "state_dir = \"state\"",
        &format!("state_dir = {:?}", state.display().to_string()),
    );
    let cfg = server.dir.join("idle.toml");
    std::fs::write(&cfg, text).map_err(err("config"))?;
    let store = SledStore::open(state).map_err(err("store"))?;
    let stored = store.count_invoices("qbo-1").map_err(err("store"))?;
    drop(store);
    let mut d = Command::new(&daemon)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(err("spawn daemon"))?;
    let pid = d.id().to_string();
    let start = Instant::now();
    let mut last = u64::MAX;
    let mut last_cpu = 0;
    let mut quiet_since = Instant::now();
    // Quiet: no API call and almost no CPU for 5 s, after at least 10 s. A first cycle
    // over a large ledger plans for many seconds without an API call.
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(s)) = d.try_wait() {
            return Err(format!("the daemon exited early: {s}"));
        }
        let calls = all_calls(&sandbox_stats(&server.url)?);
        let cpu = cpu_ticks(&pid);
        // More than 20 ms of CPU in half a second is work, not idling.
        if calls != last || cpu > last_cpu + 2 {
            last = calls;
            quiet_since = Instant::now();
        }
        last_cpu = cpu;
        if start.elapsed() > Duration::from_secs(10)
            && quiet_since.elapsed() > Duration::from_secs(5)
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = proc_mib(&pid, "VmRSS:");
    let hwm = proc_mib(&pid, "VmHWM:");
    // What the resident set is made of: heap and other private memory, against the
    // mapped binary and libraries (which no setting shrinks).
    let anon = proc_mib(&pid, "RssAnon:");
    let file = proc_mib(&pid, "RssFile:");
    // SAFETY: our own child, by pid.
    unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
    let _ = d.wait();
    Ok(json!({
        "invoices_stored": stored,
        "idle_rss_mib": round(rss, 1),
        "peak_rss_mib_first_cycle": round(hwm, 1),
        "idle_rss_anon_mib": round(anon, 1),
        "idle_rss_file_mib": round(file, 1),
        "settled_after_s": round(start.elapsed().as_secs_f64(), 1),
    }))
}

const WEBHOOK_KEY: &str = "bench-verifier";

/// `base64(HMAC-SHA256(body, key))`, as QuickBooks signs a webhook.
fn sign(body: &str, key: &str) -> Res<String> {
    use base64::Engine;
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).map_err(err("hmac"))?;
    mac.update(body.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The real daemon, webhooks on, over a store of `n` synthetic invoices beside the
/// sandbox company's: once its first cycle has ended and it has gone quiet, an overdue
/// invoice is paid in the sandbox and the Payment's signed webhook sent; the figure is
/// the time from sending it until the daemon logs that invoice stored as paid. Three
/// payments, one after another.
fn payment_to_stop(server: &Server, state: &Path, n: usize) -> Res<Value> {
    let daemon = daemon_binary()?;
    let text = std::fs::read_to_string(server.config("qbo-1")).map_err(err("config"))?;
    let realm = text
        .lines()
        .find_map(|l| l.strip_prefix("realm_id = \""))
        .map(|r| r.trim_end_matches('"').to_string())
        .ok_or("no realm in the config")?;
    // Periodic cycles only hourly: what is timed is the webhook's path alone (a
    // periodic cycle running when the webhook comes holds it up for its length).
    let text = text
        .replace(
            "state_dir = \"state\"",
            &format!("state_dir = {:?}", state.display().to_string()),
        )
        .replace("poll_interval = \"1m\"", "poll_interval = \"1h\"");
    let cfg = server.dir.join("stop.toml");
    std::fs::write(
        &cfg,
        format!("{text}\n[daemon.webhooks]\nquickbooks_verifier_token = \"{WEBHOOK_KEY}\"\n"),
    )
    .map_err(err("config"))?;
    let t = Instant::now();
    {
        let store = SledStore::open(state).map_err(err("store"))?;
        let now = today_nine();
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..n {
            let mut r = synthetic(i, now);
            r.snapshot.connection = ConnectionId::new("qbo-1");
            batch.push(r);
            if batch.len() == 10_000 {
                store.put_invoices(&batch).map_err(err("put"))?;
                batch.clear();
            }
        }
        store.put_invoices(&batch).map_err(err("put"))?;
        store.flush().map_err(err("flush"))?;
    }
    let write_s = t.elapsed().as_secs_f64();
    let mut d = Command::new(&daemon)
        .args(["run", "--config"])
        .arg(&cfg)
        // The dry run's "would act" lines (one per planned action) are not wanted.
        .env(
            "RUST_LOG",
            "warn,overdued::daemon::scheduler=info,overdued::daemon=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err("spawn daemon"))?;
    let pid = d.id();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = d.stderr.take().ok_or("no stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Res<Value> {
        let wait_for = |what: &str, f: &dyn Fn(&str) -> bool, limit: Duration| -> Res<String> {
            let end = Instant::now() + limit;
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(l) if f(&l) => return Ok(l),
                    Ok(_) => {}
                    Err(_) => return Err(format!("the daemon did not log {what} in time")),
                }
            }
        };
        let started = Instant::now();
        let addr = wait_for(
            "its address",
            &|l| l.contains("http listening on http://"),
            Duration::from_secs(60),
        )?
        .rsplit("http://")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
        wait_for(
            "its first cycle",
            &|l| l.contains("cycle finished connection=qbo-1"),
            Duration::from_secs(1800),
        )?;
        let first_cycle_s = started.elapsed().as_secs_f64();
        // Quiet: the status scan after the cycle has ended (no CPU used for 2 s).
        let cpu = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let f: Vec<String> = s
                        .rsplit(')')
                        .next()?
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
                })
                .unwrap_or(0)
        };
        let mut last = cpu();
        let mut quiet = 0;
        while quiet < 4 {
            std::thread::sleep(Duration::from_millis(500));
            let now = cpu();
            quiet = if now == last { quiet + 1 } else { 0 };
            last = now;
        }
        let rt = runtime()?;
        let http = reqwest::Client::new();
        let today = Utc::now().date_naive();
        // Overdue invoices of the sandbox company, each due a reminder.
        let mut overdue: Vec<Value> = Vec::new();
        rt.block_on(async {
            for id in 1..400 {
                let Ok(r) = http
                    .get(format!(
                        "{}/_sandbox/invoices/quickbooks/{realm}/{id}",
                        server.url
                    ))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(v) = r.json::<Value>().await else {
                    continue;
                };
                let due = v["due_date"]
                    .as_str()
                    .and_then(|d| d.parse::<NaiveDate>().ok());
                if v["status"] == "AUTHORISED" && due.is_some_and(|d| d < today) {
                    overdue.push(v);
                }
                if overdue.len() == 3 {
                    break;
                }
            }
        });
        if overdue.len() < 3 {
            return Err(format!(
                "the sandbox company has {} overdue invoices, 3 wanted",
                overdue.len()
            ));
        }
        let mut runs = Vec::new();
        for inv in &overdue {
            let id = inv["id"].as_str().unwrap_or_default();
            let number = inv["number"].as_str().unwrap_or_default().to_string();
            let paid: Value = rt.block_on(async {
                http.post(format!(
                    "{}/_sandbox/invoices/quickbooks/{realm}/{id}/payments",
                    server.url
                ))
                .json(&json!({"amount": inv["balance"]}))
                .send()
                .await
                .map_err(err("pay"))?
                .json::<Value>()
                .await
                .map_err(err("pay"))
            })?;
            let payment = paid["payment_id"]
                .as_str()
                .ok_or_else(|| format!("no payment id: {paid}"))?;
            let body = format!(
                r#"{{"eventNotifications":[{{"realmId":"{realm}","dataChangeEvent":{{"entities":[{{"name":"Payment","id":"{payment}","operation":"Create","lastUpdated":"{}"}}]}}}}]}}"#,
                Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
            );
            let signature = sign(&body, WEBHOOK_KEY)?;
            let t0 = Instant::now();
            let status = rt.block_on(async {
                http.post(format!("http://{addr}/webhooks/quickbooks"))
                    .header("intuit-signature", signature)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(err("webhook"))
            })?;
            if status != 200 {
                return Err(format!("the daemon answered the webhook with {status}"));
            }
            let line = wait_for(
                "the paid invoice",
                &|l| {
                    l.contains("targeted cycle finished")
                        && l.contains(&format!("invoices={number} ("))
                },
                Duration::from_secs(120),
            )?;
            let latency = t0.elapsed().as_secs_f64();
            if !line.contains("paid") {
                return Err(format!("the invoice was not stored as paid: {line}"));
            }
            let cycle_ms = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok());
            runs.push(json!({
                "invoice": number,
                "webhook_to_stored_paid_s": round(latency, 3),
                "targeted_cycle_ms": cycle_ms,
            }));
        }
        let mut lat: Vec<f64> = runs
            .iter()
            .filter_map(|r| r["webhook_to_stored_paid_s"].as_f64())
            .collect();
        lat.sort_by(f64::total_cmp);
        Ok(json!({
            "invoices_stored": n + 200,
            "store_write_s": round(write_s, 1),
            "daemon_first_cycle_s": round(first_cycle_s, 1),
            "webhook_window_s": overdued::daemon::webhooks::TARGETED_WINDOW.as_secs_f64(),
            "runs": runs,
            "median_s": lat.get(lat.len() / 2).copied().map(|x| round(x, 3)),
            "peak_rss_mib": round(proc_mib(&pid.to_string(), "VmHWM:"), 1),
        }))
    })();
    // SAFETY: our own child, by pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = d.wait();
    result
}

// ---- scenarios (child processes) ------------------------------------------------------

struct ScenarioArgs {
    config: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    sandbox: Option<String>,
    connection: Option<String>,
    polls: usize,
    invoices: usize,
    secs: u64,
}

fn load(a: &ScenarioArgs) -> Res<Config> {
    let path = a.config.as_ref().ok_or("--config is required")?;
    let mut c = config::load(path).map_err(|e| e.to_string())?;
    if let Some(s) = &a.state_dir {
        c.daemon.state_dir = s.clone();
    }
    Ok(c)
}

fn tenant_of(c: &overdued::config::ConnectionConfig) -> String {
    match &c.system {
        SystemConfig::QuickBooks(q) => q.realm_id.clone().unwrap_or_default(),
        SystemConfig::Xero(x) => x.tenant.clone(),
    }
}

fn scenario(name: &str, a: &ScenarioArgs) -> Res<Value> {
    match name {
        "sync" => scenario_sync(a),
        "plan" => scenario_plan(a),
        "fleet" => scenario_fleet(a),
        "rate" => scenario_rate(a),
        other => Err(format!("unknown scenario {other}")),
    }
}

fn open(c: &Config) -> Res<Arc<SledStore>> {
    SledStore::open(&c.daemon.state_dir)
        .map(Arc::new)
        .map_err(err("store"))
}

fn build(
    c: &overdued::config::ConnectionConfig,
    store: &Arc<SledStore>,
    clock: &Arc<dyn Clock>,
) -> Res<Arc<dyn Connector>> {
    overdued::connections::build(c, store.clone(), clock.clone()).map_err(|e| e.to_string())
}

/// Initial sync of one connection, then `polls` polls with nothing changed.
fn scenario_sync(a: &ScenarioArgs) -> Res<Value> {
    let c = load(a)?;
    let url = a.sandbox.clone().ok_or("--sandbox")?;
    let name = a.connection.clone().ok_or("--connection")?;
    let cc = c.connection(&name).ok_or("no such connection")?.clone();
    let tenant = tenant_of(&cc);
    let store = open(&c)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rt = runtime()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let conn = build(&cc, &store, &clock)?;
        let full_every = c.daemon.full_sync_interval.as_duration();
        let s0 = stats_async(&http, &url).await?;
        let (cpu0, t0) = (cpu_seconds(false), Instant::now());
        let report = overdued::sync::sync_connection(
            conn.as_ref(),
            store.as_ref(),
            clock.as_ref(),
            full_every,
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
        store.flush().map_err(err("flush"))?;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(false) - cpu0);
        let s1 = stats_async(&http, &url).await?;
        let calls = tenant_calls(&s1, &tenant) - tenant_calls(&s0, &tenant);
        let stored = store.count_invoices(&name).map_err(err("count"))?;
        let peak = proc_mib("self", "VmHWM:");
        let size = dir_mib(&c.daemon.state_dir);
        let mut polls = Vec::new();
        let mut poll_ms = Vec::new();
        for _ in 0..a.polls {
            let b = stats_async(&http, &url).await?;
            let t = Instant::now();
            overdued::sync::sync_connection(
                conn.as_ref(),
                store.as_ref(),
                clock.as_ref(),
                full_every,
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
            poll_ms.push(round(t.elapsed().as_secs_f64() * 1000.0, 1));
            let e = stats_async(&http, &url).await?;
            polls.push(tenant_calls(&e, &tenant) - tenant_calls(&b, &tenant));
        }
        Ok(json!({
            "invoices": stored,
            "pages": report.pages,
            "api_calls": calls,
            "minimum_calls": stored.div_ceil(1000),
            "cpu_s": round(cpu, 2),
            // The issue's unit: CPU seconds per 100,000 invoices synced.
            "cpu_per_100k_s": round(cpu * 100_000.0 / (stored.max(1) as f64), 2),
            "wall_s": round(wall, 2),
            "peak_rss_mib": round(peak, 1),
            "store_mib": round(size, 1),
            "steady_calls_per_poll": polls,
            "steady_poll_ms": poll_ms,
        }))
    })
}

/// Pins this thread to one CPU.
fn pin_one_core() {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

const PLAN_CONFIG: &str = "[daemon]\nstate_dir = \"state\"\ntime_zone = \"UTC\"\nmode = \"dry-run\"\n\n\
    [quickbooks.bench]\nrealm_id = \"1\"\nclient_id = \"c\"\nclient_secret = \"s\"\nrefresh_token = \"r\"\n";

/// A deterministic book: a tenth of the invoices per customer, due dates spread over the
/// last 150 days and the next 30, three in four open.
fn synthetic(i: usize, now: DateTime<Utc>) -> InvoiceRecord {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let today = now.date_naive();
    let due: NaiveDate = today - Days::days((h % 180) as i64 - 30);
    let issue = due - Days::days(30);
    let total = Decimal::new(10_000 + (h % 500_000) as i64, 2);
    let open = !h.is_multiple_of(4);
    let partial = h.is_multiple_of(7);
    let due_amt = if !open {
        Decimal::ZERO
    } else if partial {
        total / Decimal::from(2)
    } else {
        total
    };
    let cust = i / 10;
    let updated = issue.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc();
    let snapshot = InvoiceSnapshot {
        connection: ConnectionId::new("bench"),
        system: overdued_connector::System::QuickBooks,
        remote_id: format!("{i:08}"),
        number: Some(format!("INV-{i}")),
        customer: CustomerRef {
            id: format!("c{cust}"),
            name: format!("Customer {cust}"),
            email: Some(format!("ap{cust}@example.com")),
        },
        currency: Currency::USD,
        total,
        amount_due: due_amt,
        issue_date: issue,
        due_date: due,
        status: if open {
            InvoiceStatus::Open
        } else {
            InvoiceStatus::Paid
        },
        updated_at: updated,
        version: Some("0".into()),
        memo: String::new(),
        is_fee_invoice: false,
        pay_url: None,
        paid_on: None,
    };
    let mut balance_history = vec![(issue, total)];
    if due_amt != total {
        balance_history.push((due, due_amt));
    }
    InvoiceRecord {
        snapshot,
        seen_at: now,
        first_seen_at: now - Days::days(1),
        balance_history,
    }
}

fn scenario_plan(a: &ScenarioArgs) -> Res<Value> {
    let dir = a.state_dir.clone().ok_or("--state-dir")?;
    let mut c = config::parse(PLAN_CONFIG, &dir.join("bench.toml")).map_err(|e| e.to_string())?;
    c.daemon.state_dir = dir.clone();
    let cc = c.connection("bench").ok_or("no connection")?.clone();
    let store = open(&c)?;
    let now = Utc
        .from_utc_datetime(&today_nine().naive_utc())
        .with_timezone(&Utc);
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..a.invoices {
        batch.push(synthetic(i, now));
        if batch.len() == 10_000 {
            store.put_invoices(&batch).map_err(err("put"))?;
            batch.clear();
        }
    }
    store.put_invoices(&batch).map_err(err("put"))?;
    store.flush().map_err(err("flush"))?;
    let write_s = t.elapsed().as_secs_f64();
    drop(batch);
    // Writing the world is the bench's set-up, not planning: its peak is reported
    // apart, and the peak counter restarts (clear_refs 5) so `peak_rss_mib` is the
    // plan's own (the sled cache the writes filled stays counted in it).
    let write_peak = proc_mib("self", "VmHWM:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    pin_one_core();
    let (cpu0, t0) = (cpu_seconds(true), Instant::now());
    let cases = overdued::cycle::load_cases(store.as_ref(), "bench", now).map_err(err("load"))?;
    let load_s = t0.elapsed().as_secs_f64();
    // How much of the peak the loaded cases make before planning starts.
    let load_peak = proc_mib("self", "VmHWM:");
    let (cpu1, t1) = (cpu_seconds(true), Instant::now());
    let inputs = overdued::engine::PlanInputs {
        now,
        time_zone: c.daemon.time_zone,
        settings: &c.engine,
        policies: &c.policy_book,
        default_policy: &cc.policy,
        ledger: "quickbooks:bench",
        invoices: &cases,
    };
    let plan = overdued::engine::plan(&inputs).map_err(|e| e.to_string())?;
    let plan_s = t1.elapsed().as_secs_f64();
    let cpu_end = cpu_seconds(true);
    let cpu = cpu_end - cpu0;
    let (actions_digest, skipped_digest) = plan_digests(&plan);
    Ok(json!({
        "invoices_stored": a.invoices,
        "actions_digest": actions_digest,
        "skipped_digest": skipped_digest,
        "cases_planned": cases.len(),
        "actions_planned": plan.actions.len(),
        "load_from_store_s": round(load_s, 2),
        "plan_s": round(plan_s, 2),
        "total_wall_s": round(load_s + plan_s, 2),
        "cpu_s": round(cpu, 2),
        // On a busy machine the pinned core is shared: CPU time is the steadier figure.
        "load_cpu_s": round(cpu1 - cpu0, 2),
        "plan_cpu_s": round(cpu_end - cpu1, 2),
        "peak_rss_mib": round(proc_mib("self", "VmHWM:"), 1),
        "peak_rss_is_plan_only": reset,
        "peak_rss_after_load_mib": round(load_peak, 1),
        "store_write_peak_rss_mib": round(write_peak, 1),
        "store_write_s": round(write_s, 1),
        "store_mib": round(dir_mib(&dir), 1),
    }))
}

/// SHA-256 over what every action does and every skip says, in plan order: a change
/// meant to make planning faster must leave both unchanged on the bench world.
fn plan_digests(plan: &overdued::engine::Plan) -> (String, String) {
    use sha2::{Digest, Sha256};
    // Each field length-prefixed so no two different plans can feed the same bytes.
    fn put(h: &mut Sha256, field: &str) {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    let mut h = Sha256::new();
    for a in &plan.actions {
        put(&mut h, &a.invoice_id);
        put(&mut h, a.kind.as_str());
        put(&mut h, &a.step_id);
        put(&mut h, a.key.as_str());
        put(&mut h, &format!("{:?}", a.channel));
        put(&mut h, a.template.as_deref().unwrap_or("\u{0}none"));
        put(&mut h, &a.days_overdue.to_string());
        match &a.message {
            Some(m) => {
                put(&mut h, &m.subject);
                put(&mut h, &m.body);
            }
            None => put(&mut h, "\u{0}none"),
        }
        put(&mut h, a.ledger_text.as_deref().unwrap_or("\u{0}none"));
        match &a.fee {
            Some(f) => put(&mut h, &format!("{:?}", f.amount)),
            None => put(&mut h, "\u{0}none"),
        }
    }
    let actions = hex::encode(h.finalize());
    let mut h = Sha256::new();
    for s in &plan.skipped {
        put(&mut h, &s.invoice_id);
        put(&mut h, s.step_id.as_deref().unwrap_or("\u{0}none"));
        put(&mut h, &format!("{:?}", s.code));
        put(&mut h, &s.reason);
    }
    (actions, hex::encode(h.finalize()))
}

/// Every connection of the config: one cycle (first: initial sync), then another with
/// nothing changed, both concurrently across connections as the daemon runs them.
fn scenario_fleet(a: &ScenarioArgs) -> Res<Value> {
    let c = load(a)?;
    let url = a.sandbox.clone().ok_or("--sandbox")?;
    let store = open(&c)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rt = runtime()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut conns = Vec::new();
        for cc in &c.connections {
            conns.push((cc, build(cc, &store, &clock)?));
        }
        let mut cycles = Vec::new();
        for _ in 0..2 {
            let s0 = stats_async(&http, &url).await?;
            let (cpu0, t0) = (cpu_seconds(false), Instant::now());
            let results = futures::future::join_all(conns.iter().map(|(cc, conn)| {
                overdued::cycle::run_cycle(&c, cc, conn.as_ref(), store.as_ref(), clock.as_ref())
            }))
            .await;
            let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(false) - cpu0);
            let s1 = stats_async(&http, &url).await?;
            let failed = results.iter().filter(|r| r.is_err()).count();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                eprintln!("  fleet: e.g. {e}");
            }
            let calls = all_calls(&s1) - all_calls(&s0);
            cycles.push(json!({
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "api_calls": calls,
                "failed": failed,
                "responses_429": s1["responses_429"].as_u64().unwrap_or(0) - s0["responses_429"].as_u64().unwrap_or(0),
            }));
        }
        Ok(json!({
            "connections": conns.len(),
            "first_cycle": cycles[0],
            "steady_cycle": cycles[1],
            "peak_rss_mib": round(proc_mib("self", "VmHWM:"), 1),
        }))
    })
}

/// Syncs (initial, then full reconciliations) for `secs` real seconds against limits
/// enforced at time scale 1, and counts what the sandbox served and refused.
fn scenario_rate(a: &ScenarioArgs) -> Res<Value> {
    let c = load(a)?;
    let url = a.sandbox.clone().ok_or("--sandbox")?;
    let name = a.connection.clone().ok_or("--connection")?;
    let cc = c.connection(&name).ok_or("no such connection")?.clone();
    let tenant = tenant_of(&cc);
    let store = open(&c)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rt = runtime()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let conn = build(&cc, &store, &clock)?;
        let full_every = c.daemon.full_sync_interval.as_duration();
        // Two windows: the first includes the limit's initial burst allowance (a sliding
        // minute lets a fresh connection make its whole minute's calls at once); the
        // second is the sustained rate.
        let window = Duration::from_secs(a.secs);
        let first = stats_async(&http, &url).await?;
        let t_first = Instant::now();
        let sampler = {
            let http = http.clone();
            let url = url.clone();
            async move {
                tokio::time::sleep(window).await;
                let s = stats_async(&http, &url).await;
                (s, Instant::now())
            }
        };
        let sampled = tokio::spawn(sampler);
        let mut passes = 0u32;
        let work = async {
            loop {
                let r = overdued::sync::sync_connection(
                    conn.as_ref(),
                    store.as_ref(),
                    clock.as_ref(),
                    full_every,
                    passes > 0,
                )
                .await;
                if let Err(e) = r {
                    eprintln!("  rate: {e}");
                }
                passes += 1;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = tokio::time::sleep(window * 2) => {}
        }
        let (s0, t0) = sampled.await.map_err(err("sampler"))?;
        let s0 = s0?;
        let elapsed = t0.elapsed().as_secs_f64();
        let s1 = stats_async(&http, &url).await?;
        let first_calls = tenant_calls(&s0, &tenant) - tenant_calls(&first, &tenant);
        let first_s = t0.duration_since(t_first).as_secs_f64();
        let calls = tenant_calls(&s1, &tenant) - tenant_calls(&s0, &tenant);
        let allowed = match cc.system() {
            overdued_connector::System::QuickBooks => overdued_sandbox::QBO_PER_MINUTE,
            overdued_connector::System::Xero => overdued_sandbox::XERO_PER_MINUTE,
        } as f64;
        let per_min = calls as f64 * 60.0 / elapsed;
        // Over both windows.
        let diff = |k: &str| s1[k].as_u64().unwrap_or(0) - first[k].as_u64().unwrap_or(0);
        Ok(json!({
            "first_window_calls": first_calls,
            "first_window_s": round(first_s, 1),
            "window_s": round(elapsed, 1),
            "api_calls": calls,
            "calls_per_min": round(per_min, 1),
            "allowed_per_min": allowed,
            "share_of_limit": round(per_min / allowed, 3),
            "responses_429": diff("responses_429"),
            "rate_limit_violations": diff("rate_limit_violations"),
            "sync_passes_started": passes + 1,
        }))
    })
}

// ---- the table ------------------------------------------------------------------------

fn table(r: &Value) -> String {
    let mut t = String::from("| Scenario | Figure | Goal |\n|---|---|---|\n");
    let mut row = |a: String, b: String, c: &str| t.push_str(&format!("| {a} | {b} | {c} |\n"));
    let f = |v: &Value| match v {
        Value::Number(n) => n.to_string(),
        Value::Null => "n/a".into(),
        other => other.to_string(),
    };
    if let Some(s) = r["initial_sync"].as_object() {
        for (name, v) in s {
            let sys = if name.starts_with("qbo") {
                "QuickBooks"
            } else {
                "Xero"
            };
            row(
                format!("Initial sync, {sys}, {} invoices", f(&v["invoices"])),
                format!(
                    "{} API calls (minimum {}); {} s CPU ({} s per 100k), {} s wall; peak RSS {} MiB; store {} MiB",
                    f(&v["api_calls"]),
                    f(&v["minimum_calls"]),
                    f(&v["cpu_s"]),
                    f(&v["cpu_per_100k_s"]),
                    f(&v["wall_s"]),
                    f(&v["peak_rss_mib"]),
                    f(&v["store_mib"])
                ),
                "calls = ceil(N/1000); ≤ 1.5 s CPU per 100k",
            );
            row(
                format!("Steady state, {sys}, nothing changed"),
                format!(
                    "{} API calls per poll ({} ms per poll)",
                    f(&v["steady_calls_per_poll"]),
                    f(&v["steady_poll_ms"])
                ),
                "1",
            );
        }
    }
    let p = &r["planning"];
    if p.is_object() {
        row(
            format!("Planning over {} stored invoices (one core)", f(&p["invoices_stored"])),
            format!(
                "{} s wall ({} s reading the store, {} s planning; {} open or recent cases, {} actions); peak RSS {} MiB",
                f(&p["total_wall_s"]),
                f(&p["load_from_store_s"]),
                f(&p["plan_s"]),
                f(&p["cases_planned"]),
                f(&p["actions_planned"]),
                f(&p["peak_rss_mib"])
            ),
            "",
        );
    }
    let i = &r["idle_daemon"];
    if i.is_object() {
        row(
            format!("Idle daemon, {} invoices stored", f(&i["invoices_stored"])),
            format!(
                "RSS {} MiB ({} MiB heap and other private memory, {} MiB mapped files; peak {} MiB during its first cycle)",
                f(&i["idle_rss_mib"]),
                f(&i["idle_rss_anon_mib"]),
                f(&i["idle_rss_file_mib"]),
                f(&i["peak_rss_mib_first_cycle"])
            ),
            "",
        );
    }
    let fl = &r["fleet"];
    if fl.is_object() {
        for (k, label) in [("steady_cycle", "polled"), ("first_cycle", "first sync")] {
            let v = &fl[k];
            row(
                format!("{} connections, one cycle ({label})", f(&fl["connections"])),
                format!(
                    "{} s wall, {} s CPU; {} API calls, {} failed, {} × 429",
                    f(&v["wall_s"]),
                    f(&v["cpu_s"]),
                    f(&v["api_calls"]),
                    f(&v["failed"]),
                    f(&v["responses_429"])
                ),
                "",
            );
        }
    }
    if let Some(s) = r["rate_limits"].as_object() {
        for (name, v) in s {
            let sys = if name.starts_with("qbo") {
                "QuickBooks"
            } else {
                "Xero"
            };
            row(
                format!("Real limits at time scale 1, {sys}"),
                format!(
                    "{} calls/min of {} allowed ({}%) over the second {} s (first {} s: {} calls); {} × 429; {} busy threads beside it",
                    f(&v["calls_per_min"]),
                    f(&v["allowed_per_min"]),
                    round(v["share_of_limit"].as_f64().unwrap_or(0.0) * 100.0, 1),
                    f(&v["window_s"]),
                    f(&v["first_window_s"]),
                    f(&v["first_window_calls"]),
                    f(&v["responses_429"]),
                    f(&v["cpu_hog_threads"])
                ),
                "≥ 90 %, 0 × 429",
            );
        }
    }
    let st = &r["payment_to_stop"];
    if st.is_object() {
        let runs: Vec<String> = st["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| f(&v["webhook_to_stored_paid_s"]))
            .collect();
        row(
            format!(
                "Payment -> stop by webhook, {} invoices stored",
                f(&st["invoices_stored"])
            ),
            format!(
                "{} s from the webhook to the invoice stored paid (runs: {}; {} s of it the webhook window); the daemon's first full cycle {} s",
                f(&st["median_s"]),
                runs.join(", "),
                f(&st["webhook_window_s"]),
                f(&st["daemon_first_cycle_s"])
            ),
            "≤ 5 s at 1M",
        );
    }
    t
}
