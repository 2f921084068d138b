//! The command line. This is the edge: errors become messages and exit codes here.

mod admin;
mod arrange;
mod calls;
mod check;
mod common;
mod connect;
mod customers;
mod demo;
mod holds;
pub mod man;
mod once;
pub mod plan;
mod run;
mod sandbox;
mod send_test_email;
mod sms;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes from sysexits.h, which service managers and scripts understand.
pub mod exit {
    pub const USAGE: u8 = 64;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    pub const CONFIG: u8 = 78;
}

#[derive(Debug, Parser)]
#[command(
    name = "overdued",
    version,
    about = "Gets small businesses paid: chases unpaid QuickBooks Online and Xero invoices, politely, firmly and exactly once."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArg {
    /// The config file [default: $OVERDUED_CONFIG, else /etc/overdued/config.toml]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config file and print what it configures.
    Check(ConfigArg),
    /// Send a test message through the configured SMTP server.
    SendTestEmail {
        #[command(flatten)]
        config: ConfigArg,
        /// Where to send it.
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
    /// Run the daemon: sync, plan and act on every connection.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Run one full cycle (sync, plan, act) and exit.
        #[arg(long)]
        once: bool,
        /// Pretend it is this instant (RFC 3339); needs `allow_clock_override = true`.
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
    /// Show what would be done now (or on DATE) and why, without doing it.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
        /// Plan for this local date (YYYY-MM-DD) instead of today.
        #[arg(long, value_name = "DATE")]
        at: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show each connection's health, last sync and ageing.
    Status(ConfigArg),
    /// Show every customer's payer profile, the figures behind it, expected payment
    /// dates and what they owe.
    Customers {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this connection.
        connection: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the summary index of the stored invoices against their records, or
    /// rebuild it from them.
    Index {
        #[command(flatten)]
        config: ConfigArg,
        /// Build the index afresh from the invoice records first.
        #[arg(long)]
        rebuild: bool,
    },
    /// Show every observation and action for one invoice.
    History {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        invoice: String,
    },
    /// Connect (or reconnect) a configured connection through the vendor's OAuth consent.
    Connect {
        #[command(flatten)]
        config: ConfigArg,
        /// The connection's name in the config.
        name: String,
        /// Print the URL to open instead of opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// Xero: ask for a new consent (a new grant) even when a grant already stored for
        /// another connection of the same app reaches the organisation.
        #[arg(long)]
        new_consent: bool,
    },
    /// Agree a payment plan: one invoice, or a customer's open invoices, paid in
    /// instalments; no ordinary chasing while it is kept.
    Arrange {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// An invoice (number or id), or a customer (id, name or email).
        target: String,
        /// How many equal instalments (the last takes the rounding).
        #[arg(long, value_name = "N")]
        instalments: Option<String>,
        /// Days between instalments.
        #[arg(long, value_name = "DAYS")]
        every: Option<String>,
        /// The first instalment's date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        first: Option<String>,
        /// Dates and amounts instead: DATE:AMOUNT,DATE:AMOUNT,...
        #[arg(long, value_name = "SCHEDULE")]
        schedule: Option<String>,
        /// With a customer: the invoices to cover, A,B,... (default: all open ones).
        #[arg(long, value_name = "A,B,...")]
        invoices: Option<String>,
        /// Agree it as of this instant (a simulated world; needs allow_clock_override).
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
    /// List payment plans with their status and what has been paid.
    Arrangements {
        #[command(flatten)]
        config: ConfigArg,
        connection: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// End a payment plan by hand: chasing resumes where it stood when it was agreed.
    Cancel {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// The plan's id, as `arrangements` lists it (P1, P2, ...).
        plan: String,
        /// Cancel it as of this instant (a simulated world; needs allow_clock_override).
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
    },
    /// Record a customer's promise to pay an invoice: no chasing until then.
    Promise {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        invoice: String,
        /// The promised payment date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        until: String,
        /// The promised amount, if less than the balance.
        #[arg(long, value_name = "AMOUNT")]
        amount: Option<String>,
    },
    /// Pause chasing an invoice or a customer (for example while a dispute is open).
    Pause {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// Invoice number or id; with --customer, the customer's id, name or email.
        id: String,
        #[arg(long)]
        customer: bool,
        #[arg(long)]
        reason: String,
    },
    /// Resume chasing a paused invoice or customer.
    Resume {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// Invoice number or id; with --customer, the customer's id, name or email.
        id: String,
        #[arg(long)]
        customer: bool,
    },
    /// List the customers to call, with phone numbers, amounts owed and why.
    Calls {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this connection [default: every enabled one].
        connection: Option<String>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record what a call to a customer settled, and act on it.
    Called {
        #[command(flatten)]
        config: ConfigArg,
        /// The connection's name in the config.
        connection: String,
        /// The customer's id, name or email.
        customer: String,
        #[arg(long, value_enum)]
        outcome: Outcome,
        /// promise: the promised payment date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// promise: the promised amount, if less than the balance (needs one invoice).
        #[arg(long, value_name = "AMOUNT")]
        amount: Option<String>,
        /// dispute: what the customer disputes.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// paid: the date the customer says they paid [default: today].
        #[arg(long, value_name = "DATE")]
        on: Option<String>,
        /// Only this invoice (number or id) [default: all the customer's open invoices].
        #[arg(long, value_name = "INVOICE")]
        invoice: Option<String>,
    },
    /// Write the record of an invoice or a customer's debt for an agency or a court (CSV
    /// and a plain-text letter).
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The connection's name in the config.
        connection: String,
        /// An invoice's number or id, or a customer's id, name or email.
        target: String,
        /// Read TARGET as a customer even where an invoice has that number or id.
        #[arg(long)]
        customer: bool,
        /// The directory to write to [default: the current one].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Text messages: record or withdraw a customer's consent, list who agreed.
    #[command(subcommand)]
    Sms(sms::SmsCommand),
    /// Run the built-in QuickBooks Online + Xero simulator.
    Sandbox(SandboxArgs),
    /// Print the manual page (roff), or write every page into a directory.
    Man {
        /// Write overdued.1 and one page per subcommand here instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Watch overdued work a simulated quarter against the built-in sandbox.
    Demo {
        /// Days to simulate.
        #[arg(long, default_value_t = 120)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Speed::Fast)]
        speed: Speed,
    },
}

/// What a call settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Outcome {
    /// The customer promised to pay by --until (optionally --amount).
    Promise,
    /// The customer disputes the invoice (--reason): chasing pauses.
    Dispute,
    /// Nobody answered: call again the next working day.
    NoAnswer,
    /// The customer says they paid: chasing pauses until the ledger shows it.
    Paid,
    /// Dealt with: off the calls list until something new is due.
    Handled,
    /// Handed to a collection agency: overdued does nothing more about it.
    Collections,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Promise => "promise",
            Outcome::Dispute => "dispute",
            Outcome::NoAnswer => "no-answer",
            Outcome::Paid => "paid",
            Outcome::Handled => "handled",
            Outcome::Collections => "collections",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Speed {
    Fast,
    Real,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 40)]
    pub customers: usize,
    #[arg(long, default_value_t = 200)]
    pub invoices: usize,
    /// Keep the sandbox's whole state in this file across restarts.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Write an overdued config pointing at this sandbox, with tokens granted.
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
    /// How many sandbox minutes pass per real minute for rate limits.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Where the sandbox's virtual clock starts (RFC 3339) [default: today 09:00 UTC].
    /// Give it for a world that is the same byte for byte on every day.
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// How long the sandbox remembers an idempotency key (`requestid`,
    /// `Idempotency-Key`), in sandbox time; neither vendor documents theirs.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::config::HumanDuration::parse)]
    pub idempotency_window: crate::config::HumanDuration,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` end well; any other mistake on the command line is
            // a usage error, EX_USAGE (64) like every other one, not clap's own 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    let log_format = cli.log_format;
    // A one-shot command whose reader goes away (`overdued plan | head`) ends quietly, as
    // other Unix tools do, instead of panicking on the failed print. The daemon keeps
    // ignoring SIGPIPE: it must outlive whatever reads its stderr.
    if !matches!(
        cli.command,
        Command::Run { once: false, .. } | Command::Sandbox(_)
    ) {
        restore_default_sigpipe();
    }
    let code = match cli.command {
        Command::Check(c) => check::run(&c),
        Command::SendTestEmail { config, to } => {
            send_test_email::run(config.config.as_deref(), &to)
        }
        Command::Plan { config, at, json } => {
            plan::run(config.config.as_deref(), at.as_deref(), json)
        }
        Command::Index { config, rebuild } => holds::run(
            config.config.as_deref(),
            Ok(crate::ops::Op::Index { rebuild }),
        ),
        Command::History {
            config,
            connection,
            invoice,
        } => holds::history(config.config.as_deref(), &connection, &invoice),
        Command::Promise {
            config,
            connection,
            invoice,
            until,
            amount,
        } => holds::promise(
            config.config.as_deref(),
            &connection,
            &invoice,
            &until,
            amount.as_deref(),
        ),
        Command::Pause {
            config,
            connection,
            id,
            customer,
            reason,
        } => holds::pause(
            config.config.as_deref(),
            &connection,
            &id,
            customer,
            &reason,
        ),
        Command::Resume {
            config,
            connection,
            id,
            customer,
        } => holds::resume(config.config.as_deref(), &connection, &id, customer),
        Command::Calls {
            config,
            connection,
            json,
        } => calls::calls(config.config.as_deref(), connection.as_deref(), json),
        Command::Called {
            config,
            connection,
            customer,
            outcome,
            until,
            amount,
            reason,
            on,
            invoice,
        } => calls::called(
            config.config.as_deref(),
            &connection,
            &customer,
            calls::CalledArgs {
                outcome,
                until: until.as_deref(),
                amount: amount.as_deref(),
                reason: reason.as_deref(),
                on: on.as_deref(),
                invoice: invoice.as_deref(),
            },
        ),
        Command::Export {
            config,
            connection,
            target,
            customer,
            out,
        } => calls::export(
            config.config.as_deref(),
            &connection,
            &target,
            customer,
            out.as_deref(),
        ),
        Command::Arrange {
            config,
            connection,
            target,
            instalments,
            every,
            first,
            schedule,
            invoices,
            now,
        } => arrange::arrange(
            config.config.as_deref(),
            &connection,
            &target,
            arrange::ScheduleArgs {
                instalments: instalments.as_deref(),
                every: every.as_deref(),
                first: first.as_deref(),
                schedule: schedule.as_deref(),
                invoices: invoices.as_deref(),
            },
            now.as_deref(),
        ),
        Command::Arrangements {
            config,
            connection,
            json,
        } => arrange::list(config.config.as_deref(), connection.as_deref(), json),
        Command::Cancel {
            config,
            connection,
            plan,
            now,
        } => arrange::cancel(config.config.as_deref(), &connection, &plan, now.as_deref()),
        Command::Sandbox(args) => sandbox::run(&args),
        Command::Sms(cmd) => sms::run(cmd),
        Command::Connect {
            config,
            name,
            no_browser,
            new_consent,
        } => connect::run(config.config.as_deref(), &name, no_browser, new_consent),
        Command::Run {
            config,
            once: true,
            now,
        } => once::run(config.config.as_deref(), now.as_deref(), log_format),
        Command::Run {
            config,
            once: false,
            now: None,
        } => run::run_daemon(config.config.as_deref(), log_format),
        Command::Status(c) => status::status(c.config.as_deref()),
        Command::Customers {
            config,
            connection,
            json,
        } => customers::run(config.config.as_deref(), connection.as_deref(), json),
        Command::Run {
            once: false,
            now: Some(_),
            ..
        } => {
            eprintln!("error: --now needs --once: the daemon always runs on the real clock");
            exit::USAGE
        }
        Command::Demo { days, seed, speed } => demo::run(days, seed, speed),
        Command::Man { dir } => man::run(dir.as_deref()),
    };
    ExitCode::from(code)
}

/// Rust starts every program with SIGPIPE ignored, so a write to a closed pipe is an
/// error that `println!` turns into a panic; the default action ends the process quietly.
fn restore_default_sigpipe() {
    // SAFETY: called once on the main thread before any other thread exists; setting a
    // signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
