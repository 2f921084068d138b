//! `overdued sms opt-in | opt-out | list`: the customers who agreed to text messages.
//! On the store, or through the running daemon that holds it.

use std::path::Path;

use clap::Subcommand;

use crate::ops::Op;

use super::ConfigArg;

#[derive(Debug, Subcommand)]
pub enum SmsCommand {
    /// Record a customer's consent to text messages: the number and who agreed, when and how.
    OptIn {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// The customer's id, name or email address.
        customer: String,
        /// The number in E.164 form, e.g. +447700900123.
        #[arg(long, value_name = "+E164")]
        phone: String,
        /// Who agreed, when and how (kept with the consent).
        #[arg(long, value_name = "TEXT")]
        evidence: String,
    },
    /// Stop text messages to a customer; their reminders go by email.
    OptOut {
        #[command(flatten)]
        config: ConfigArg,
        connection: String,
        /// The customer's id, name or email address.
        customer: String,
    },
    /// Show every consent: number, evidence, when, and whether the customer opted out.
    List {
        #[command(flatten)]
        config: ConfigArg,
        connection: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: SmsCommand) -> u8 {
    let (config, op) = match cmd {
        SmsCommand::OptIn {
            config,
            connection,
            customer,
            phone,
            evidence,
        } => (
            config,
            Op::SmsOptIn {
                connection,
                customer,
                phone,
                evidence,
            },
        ),
        SmsCommand::OptOut {
            config,
            connection,
            customer,
        } => (
            config,
            Op::SmsOptOut {
                connection,
                customer,
            },
        ),
        SmsCommand::List {
            config,
            connection,
            json,
        } => (config, Op::SmsList { connection, json }),
    };
    super::holds::run(config.config.as_deref().map(Path::new), Ok(op))
}
