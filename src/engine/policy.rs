//! Dunning policies as configured (`[policies.NAME]`, `[engine]`), their validation, and
//! the compiled [`PolicyBook`] the planner reads.
//!
//! ```toml
//! [engine]
//! time_zone = "Europe/London"
//! catch_up_horizon_days = 10
//! promise_grace_days = 2
//!
//! [policies.default]
//! minimum_amount_due = "5.00"
//! exclude_markers = ["#nochase"]
//! max_reminders_per_customer_per_day = 1
//! notice_days = 7
//!
//! [[policies.default.steps]]
//! offset = "-3d"
//! action = "remind"
//! template = "heads_up"
//!
//! [[policies.default.steps]]
//! offset = "+30d"
//! action = "late_fee"
//!
//! [[policies.default.steps]]
//! offset = "+90d"
//! action = "escalate"
//! template = "escalation"
//!
//! [policies.default.repeat]
//! every_days = 7
//! max = 4
//!
//! [policies.default.late_fee]
//! model = "fixed"
//! amount = "25.00"
//!
//! [policies.default.send_window]
//! cron = "* 9-16 * * Mon-Fri"
//! holidays = [2026-12-25, 2026-12-28]
//!
//! [[policies.default.overrides]]
//! email_domain = "bigcorp.example"
//! policy = "net60"
//!
//! [policies.default.templates.firm]
//! subject = "Invoice {{ invoice_number }} is overdue"
//! body = "Dear {{ customer_name }}, ..."
//! ```
//!
//! Every field of a policy may be left out and then takes the value of the built-in
//! [`Policy::default_policy`]; with no `[policies]` section at all, `default` is the
//! built-in policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use overdued_connector::{ActionKind, InvoiceSnapshot};

use crate::engine::dates::{format_offset, parse_offset};
use crate::engine::fees::{LateFee, LateFeeConfig};
use crate::engine::templates::{self, render_message, MessageContext, MessageTemplate};
use crate::engine::window::{SendWindow, SendWindowConfig};

/// The name of the policy used when a connection names none.
pub const DEFAULT_POLICY: &str = "default";

/// The marker that excludes an invoice when it appears in its memo or reference.
pub const DEFAULT_EXCLUDE_MARKER: &str = "#nochase";

/// A configuration error at a precise field path, e.g. `policies.default.steps[3].offset`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Every error found in one validation pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
    fn finish<T>(self, v: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

/// Engine-wide settings the planner needs (embed as the `[engine]` table or part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// IANA zone whose calendar days and wall clock the engine works in.
    pub time_zone: String,
    /// A step more than this many days past its day is skipped rather than sent late.
    pub catch_up_horizon_days: u32,
    /// Days after a promised date before the promise counts as broken.
    pub promise_grace_days: u32,
    /// An amount still due at or below this counts as paid when judging a promise.
    pub promise_tolerance: Decimal,
    /// Days before each instalment of a payment plan that its heads-up goes out.
    pub plan_heads_up_days: u32,
    /// Days after an instalment's date before a shortfall breaks the plan.
    pub plan_grace_days: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            time_zone: "UTC".into(),
            catch_up_horizon_days: 10,
            promise_grace_days: 2,
            promise_tolerance: Decimal::ZERO,
            plan_heads_up_days: 3,
            plan_grace_days: 3,
        }
    }
}

impl EngineSettings {
    /// Checks the settings; `prefix` is the table's path, usually `"engine"`.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationErrors> {
        let mut errs = Errors::default();
        if let Err(m) = self.tz() {
            errs.push(format!("{prefix}.time_zone"), m);
        }
        if self.promise_tolerance < Decimal::ZERO {
            errs.push(
                format!("{prefix}.promise_tolerance"),
                "must not be negative",
            );
        }
        errs.finish(())
    }

    pub fn tz(&self) -> Result<Tz, String> {
        Tz::from_str(self.time_zone.trim()).map_err(|_| {
            format!(
                "unknown time zone {:?}: use an IANA name such as \"Europe/London\"",
                self.time_zone
            )
        })
    }
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    Remind,
    LateFee,
    Note,
    Escalate,
    /// A task for a person: the customer appears on `overdued calls`; nothing is sent.
    Call,
}

impl StepAction {
    pub fn kind(self) -> ActionKind {
        match self {
            StepAction::Remind => ActionKind::Remind,
            StepAction::LateFee => ActionKind::LateFee,
            StepAction::Note => ActionKind::Note,
            StepAction::Escalate => ActionKind::Escalate,
            // Never planned as an action (the calls list carries it); its key space is
            // the owner's, like a note's.
            StepAction::Call => ActionKind::Note,
        }
    }

    fn default_channel(self) -> Channel {
        match self {
            StepAction::Remind => Channel::Email,
            StepAction::LateFee | StepAction::Note => Channel::Ledger,
            StepAction::Escalate | StepAction::Call => Channel::Owner,
        }
    }

    fn allowed_channels(self) -> &'static [Channel] {
        match self {
            StepAction::Remind => &[
                Channel::Email,
                Channel::Smtp,
                Channel::Both,
                Channel::Owner,
                Channel::Sms,
                Channel::EmailSms,
            ],
            StepAction::LateFee | StepAction::Note => &[Channel::Ledger],
            StepAction::Escalate | StepAction::Call => &[Channel::Owner],
        }
    }

    fn default_template(self) -> Option<&'static str> {
        match self {
            StepAction::Remind => Some("follow_up"),
            StepAction::LateFee => None,
            StepAction::Note => Some("ledger_note"),
            StepAction::Escalate => Some("escalation"),
            StepAction::Call => None,
        }
    }
}

/// Where a step's message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// To the customer, through the accounting system's own invoice email (`"system"`,
    /// or `"email"`, its first name, kept for existing configs).
    #[serde(alias = "system")]
    Email,
    /// To the customer, by overdued's own SMTP email from the step's template.
    Smtp,
    /// To the customer by both the system's email and SMTP.
    Both,
    /// To the business owner (e.g. "call this customer"), never to the customer.
    Owner,
    /// Written into the ledger (notes, fee invoices).
    Ledger,
    /// A text message through `[channels.sms]`, to a customer who agreed to them; to
    /// one who did not (or said STOP), the step goes by email instead.
    Sms,
    /// The step's email and a text message.
    #[serde(rename = "email+sms")]
    EmailSms,
}

impl Channel {
    /// Whether the step's message reaches the customer (and so counts against the
    /// per-customer daily limit and is announced as "we will write to you again").
    pub fn to_customer(self) -> bool {
        matches!(
            self,
            Channel::Email | Channel::Smtp | Channel::Both | Channel::Sms | Channel::EmailSms
        )
    }

    /// Whether the step sends a text message (with the customer's consent).
    pub fn uses_sms(self) -> bool {
        matches!(self, Channel::Sms | Channel::EmailSms)
    }

    /// Whether the accounting system sends its own invoice email.
    pub fn uses_system_email(self) -> bool {
        matches!(self, Channel::Email | Channel::Both)
    }

    /// Whether overdued sends the message itself by SMTP.
    pub fn uses_smtp(self) -> bool {
        matches!(self, Channel::Smtp | Channel::Both)
    }
}

/// One `[[policies.NAME.steps]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Days relative to the due date: "-3d", "0d", "+7d".
    pub offset: String,
    pub action: StepAction,
    /// Template id (built-in or from `templates`); defaults by action.
    #[serde(default)]
    pub template: Option<String>,
    /// Defaults by action: remind → email (the system's), late_fee/note → ledger,
    /// escalate → owner. A reminder may also go by `smtp` or `both`.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// Stable id used in idempotency keys; defaults to the offset ("+7d"). Changing it
    /// makes the step count as not yet done.
    #[serde(default)]
    pub id: Option<String>,
}

/// `[policies.NAME.repeat]`: the last reminder step repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatConfig {
    pub every_days: u32,
    /// How many repeats at most; omitted: until escalation or payment.
    #[serde(default)]
    pub max: Option<u32>,
}

/// `[[policies.NAME.overrides]]`: customers matched by exactly one of id, name or email
/// domain get another policy, or are excluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerOverride {
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Compared case-insensitively, ignoring surrounding spaces.
    #[serde(default)]
    pub customer_name: Option<String>,
    /// The part after '@' of the customer's email, case-insensitive, e.g. "bigcorp.example".
    #[serde(default)]
    pub email_domain: Option<String>,
    /// Every customer with this payer profile (`new`, `prompt`, `occasional`,
    /// `chronic`); an override naming the customer wins over one naming a profile.
    #[serde(default)]
    pub payer: Option<crate::profiles::PayerProfile>,
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub exclude: bool,
}

impl CustomerOverride {
    fn matches(&self, inv: &InvoiceSnapshot) -> bool {
        if let Some(id) = &self.customer_id {
            return inv.customer.id == *id;
        }
        if let Some(name) = &self.customer_name {
            return inv.customer.name.trim().eq_ignore_ascii_case(name.trim());
        }
        if let Some(domain) = &self.email_domain {
            let want = domain.trim().trim_start_matches('@');
            return inv
                .customer
                .email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .is_some_and(|(_, d)| d.trim().eq_ignore_ascii_case(want));
        }
        false
    }

    fn describe(&self) -> String {
        match (&self.customer_id, &self.customer_name, &self.email_domain) {
            (Some(id), _, _) => format!("customer id {id}"),
            (_, Some(n), _) => format!("customer name {n:?}"),
            (_, _, Some(d)) => format!("email domain {d}"),
            _ => match self.payer {
                Some(p) => format!("{p} payers"),
                None => "no customer".into(),
            },
        }
    }
}

/// One `[policies.NAME]` table. Omitted fields take the built-in default's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub steps: Vec<StepConfig>,
    pub repeat: Option<RepeatConfig>,
    /// Invoices with less than this due (in their own currency) are not chased.
    pub minimum_amount_due: Decimal,
    /// Text that, found in an invoice's memo or reference (case-insensitive), excludes it.
    pub exclude_markers: Vec<String>,
    pub overrides: Vec<CustomerOverride>,
    /// 0 means no limit. When several invoices of a customer are due a reminder the
    /// same day, the most overdue go first.
    pub max_reminders_per_customer_per_day: u32,
    /// The least time between a reminder reaching the customer and a late fee,
    /// stop-work notice, final notice or escalation; and between the final notice that
    /// announces escalation and the escalation.
    pub notice_days: u32,
    pub late_fee: Option<LateFeeConfig>,
    pub send_window: SendWindowConfig,
    /// Templates by id, overriding or adding to the built-in ones.
    pub templates: BTreeMap<String, MessageTemplate>,
    /// How to pay when the ledger has no online payment link for an invoice (bank
    /// details, a pay page address); every SMTP reminder must say how to pay, so a
    /// policy with a step sent by SMTP requires it.
    pub payment_instructions: Option<String>,
    /// Whether SMTP reminders carry the invoice PDF, read from the ledger at send time.
    pub attach_pdf: bool,
    /// Whether late fees keep running while a payment plan is kept (default: no fee for
    /// the kept period).
    pub fees_during_plan: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::default_policy()
    }
}

impl Policy {
    /// The built-in policy: a heads-up three days before the due date, a friendly note on
    /// it, then follow-up, firm, stop-work and final reminders at +7, +14, +30 and +60
    /// days, and escalation to the owner at +90. No late fee: fees must be disclosed in
    /// the customer's terms first, so they are only charged where the user configures one.
    pub fn default_policy() -> Self {
        let step = |offset: &str, action: StepAction, template: &str| StepConfig {
            offset: offset.into(),
            action,
            template: Some(template.into()),
            channel: None,
            id: None,
        };
        Policy {
            steps: vec![
                step("-3d", StepAction::Remind, "heads_up"),
                step("0d", StepAction::Remind, "due_today"),
                step("+7d", StepAction::Remind, "follow_up"),
                step("+14d", StepAction::Remind, "firm"),
                step("+30d", StepAction::Remind, "stop_work"),
                step("+60d", StepAction::Remind, "final_notice"),
                step("+90d", StepAction::Escalate, "escalation"),
            ],
            repeat: None,
            minimum_amount_due: Decimal::ZERO,
            exclude_markers: vec![DEFAULT_EXCLUDE_MARKER.into()],
            overrides: Vec::new(),
            max_reminders_per_customer_per_day: 1,
            notice_days: DEFAULT_NOTICE_DAYS,
            late_fee: None,
            send_window: SendWindowConfig::default(),
            templates: BTreeMap::new(),
            payment_instructions: None,
            attach_pdf: true,
            fees_during_plan: false,
        }
    }

    /// Checks one policy on its own (overrides naming other policies are checked by
    /// [`PolicyBook::compile`]); `prefix` is its path, e.g. `policies.default`.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationErrors> {
        self.compile(prefix, prefix.rsplit('.').next().unwrap_or(prefix))
            .map(|_| ())
    }

    fn compile(&self, prefix: &str, name: &str) -> Result<CompiledPolicy, ValidationErrors> {
        let mut errs = Errors::default();
        let p = prefix;

        let mut templates = BTreeMap::new();
        for id in templates::BUILT_IN_IDS {
            if let Some(t) = templates::built_in(id) {
                templates.insert(id.to_string(), t);
            }
        }
        for (id, t) in &self.templates {
            let sample = MessageContext::sample();
            if let Err(e) = render_message(
                &MessageTemplate {
                    subject: t.subject.clone(),
                    body: String::new(),
                },
                &sample,
            ) {
                errs.push(format!("{p}.templates.{id}.subject"), e.to_string());
            }
            if let Err(e) = render_message(
                &MessageTemplate {
                    subject: String::new(),
                    body: t.body.clone(),
                },
                &sample,
            ) {
                errs.push(format!("{p}.templates.{id}.body"), e.to_string());
            }
            if t.subject.trim().is_empty() {
                errs.push(format!("{p}.templates.{id}.subject"), "must not be empty");
            }
            templates.insert(id.clone(), t.clone());
        }

        let mut steps = Vec::new();
        let mut seen: BTreeSet<(String, StepAction)> = BTreeSet::new();
        let mut reminder_days: BTreeSet<i64> = BTreeSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            let sp = format!("{p}.steps[{i}]");
            let day = match parse_offset(&s.offset) {
                Ok(d) => d,
                Err(m) => {
                    errs.push(format!("{sp}.offset"), m);
                    continue;
                }
            };
            let id = s.id.clone().unwrap_or_else(|| format_offset(day));
            if id.trim().is_empty() || id.contains('/') {
                errs.push(
                    format!("{sp}.id"),
                    "must be non-empty and must not contain '/'",
                );
            }
            if !seen.insert((id.clone(), s.action)) {
                errs.push(
                    format!("{sp}.id"),
                    format!("another {:?} step already has id {id:?}", s.action),
                );
            }
            if s.action == StepAction::Remind && !reminder_days.insert(day) {
                errs.push(
                    format!("{sp}.offset"),
                    format!("two reminders on day {}", format_offset(day)),
                );
            }
            let template = match (&s.template, s.action.default_template()) {
                (Some(t), _) if s.action == StepAction::LateFee => {
                    errs.push(format!("{sp}.template"), format!("a late_fee step sends no message (got {t:?}); add a remind step on the same day"));
                    None
                }
                (Some(t), _) if s.action == StepAction::Call => {
                    errs.push(format!("{sp}.template"), format!("a call step sends no message (got {t:?}): it puts the customer on `overdued calls`; add a remind step for a message"));
                    None
                }
                (Some(t), _) => Some(t.clone()),
                (None, d) => d.map(String::from),
            };
            if let Some(t) = &template {
                if !templates.contains_key(t) {
                    errs.push(
                        format!("{sp}.template"),
                        format!(
                            "unknown template {t:?}; built-in: {}",
                            templates::BUILT_IN_IDS.join(", ")
                        ),
                    );
                }
            }
            let channel = s.channel.unwrap_or(s.action.default_channel());
            if !s.action.allowed_channels().contains(&channel) {
                errs.push(
                    format!("{sp}.channel"),
                    format!("{channel:?} cannot carry a {:?} step", s.action),
                );
            }
            steps.push(CompiledStep {
                id,
                day,
                action: s.action,
                template,
                channel,
                channel_set: s.channel.is_some(),
            });
        }
        if self.steps.is_empty() {
            errs.push(format!("{p}.steps"), "a policy needs at least one step");
        }
        steps.sort_by_key(|s| (s.day, s.action));

        let escalations: Vec<&CompiledStep> = steps
            .iter()
            .filter(|s| s.action == StepAction::Escalate)
            .collect();
        if escalations.len() > 1 {
            errs.push(format!("{p}.steps"), "at most one escalate step");
        }
        let escalation_day = escalations.first().map(|s| s.day);
        if let Some(e) = escalation_day {
            if let Some((i, _)) = self.steps.iter().enumerate().find(|(_, s)| {
                parse_offset(&s.offset).is_ok_and(|d| d > e) && s.action != StepAction::Escalate
            }) {
                errs.push(
                    format!("{p}.steps[{i}].offset"),
                    "comes after the escalate step, which stops all automatic actions",
                );
            }
        }

        let fee_steps: Vec<usize> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.action == StepAction::LateFee)
            .map(|(i, _)| i)
            .collect();
        if fee_steps.len() > 1 {
            errs.push(
                format!("{p}.steps[{}].action", fee_steps[1]),
                "at most one late_fee step (use late_fee.every_days to charge again)",
            );
        }
        let late_fee = match (&self.late_fee, fee_steps.is_empty()) {
            (Some(cfg), false) => match cfg.compile() {
                Ok(f) => Some(f),
                Err(es) => {
                    for (field, m) in es {
                        errs.push(format!("{p}.late_fee.{field}"), m);
                    }
                    None
                }
            },
            (Some(_), true) => {
                errs.push(
                    format!("{p}.late_fee"),
                    "is configured but no step has action = \"late_fee\"",
                );
                None
            }
            (None, false) => {
                errs.push(
                    format!("{p}.steps[{}].action", fee_steps[0]),
                    "late_fee step needs a [late_fee] table saying how the fee is computed",
                );
                None
            }
            (None, true) => None,
        };

        for (field, m) in notice_problems(&steps, i64::from(self.notice_days)) {
            let i = self
                .steps
                .iter()
                .position(|s| parse_offset(&s.offset).ok() == Some(field.0) && s.action == field.1)
                .unwrap_or(0);
            errs.push(format!("{p}.steps[{i}]"), m);
        }

        if let Some(r) = &self.repeat {
            if r.every_days == 0 {
                errs.push(format!("{p}.repeat.every_days"), "must be at least 1");
            }
            if !steps.iter().any(|s| s.action == StepAction::Remind) {
                errs.push(
                    format!("{p}.repeat"),
                    "repeats the last remind step, but there is none",
                );
            }
        }
        if self.minimum_amount_due < Decimal::ZERO {
            errs.push(format!("{p}.minimum_amount_due"), "must not be negative");
        }
        for (i, m) in self.exclude_markers.iter().enumerate() {
            if m.trim().is_empty() {
                errs.push(format!("{p}.exclude_markers[{i}]"), "must not be empty");
            }
        }
        for (i, o) in self.overrides.iter().enumerate() {
            let op = format!("{p}.overrides[{i}]");
            let matchers = [
                o.customer_id.is_some(),
                o.customer_name.is_some(),
                o.email_domain.is_some(),
                o.payer.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if matchers != 1 {
                errs.push(
                    op.clone(),
                    "give exactly one of customer_id, customer_name, email_domain, payer",
                );
            }
            if o.exclude == o.policy.is_some() {
                errs.push(
                    op.clone(),
                    "give either policy = \"NAME\" or exclude = true",
                );
            }
            if o.policy.as_deref() == Some(name) {
                errs.push(format!("{op}.policy"), "names the policy it is in");
            }
        }

        let mut holidays = Vec::new();
        for (i, h) in self.send_window.holidays.iter().enumerate() {
            match h.parse() {
                Ok(d) => holidays.push(d),
                Err(m) => errs.push(format!("{p}.send_window.holidays[{i}]"), m),
            }
        }
        let window = match SendWindow::parse(&self.send_window.cron, holidays) {
            Ok(w) => Some(w),
            Err(e) => {
                errs.push(format!("{p}.send_window.cron"), e.to_string());
                None
            }
        };

        let repeat = self.repeat.clone().filter(|r| r.every_days > 0);
        let compiled = CompiledPolicy {
            name: name.to_string(),
            steps,
            tone_by_smtp: false,
            repeat,
            minimum_amount_due: self.minimum_amount_due,
            exclude_markers: self
                .exclude_markers
                .iter()
                .map(|m| m.trim().to_lowercase())
                .collect(),
            overrides: self.overrides.clone(),
            max_reminders_per_customer_per_day: self.max_reminders_per_customer_per_day,
            notice_days: i64::from(self.notice_days),
            late_fee,
            window: window.unwrap_or_else(SendWindow::always),
            templates,
            escalation_day,
            payment_instructions: self
                .payment_instructions
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            attach_pdf: self.attach_pdf,
            fees_during_plan: self.fees_during_plan,
        };
        if compiled.payment_instructions.is_none() {
            if let Some(step) = compiled.steps.iter().find(|s| s.channel.uses_smtp()) {
                errs.push(
                    format!("{p}.payment_instructions"),
                    format!(
                        "policy {name:?} sends step {:?} by SMTP, so it needs payment_instructions: how a customer pays when the ledger has no online payment link (bank details or a pay page address)",
                        step.id
                    ),
                );
            }
        }
        errs.finish(compiled)
    }
}

/// The built-in `notice_days`.
pub const DEFAULT_NOTICE_DAYS: u32 = 7;

/// Reminder templates whose words matter: when SMTP is configured they go by SMTP unless
/// the step names its channel ("fee_notice" is the id a policy may give its own).
pub const TONE_TEMPLATES: &[&str] = &[
    "catch_up",
    "firm",
    "stop_work",
    "final_notice",
    "fee_notice",
];

/// Reminder templates that announce consequences, so they need a reminder before them.
pub const NOTICE_TEMPLATES: &[&str] = &["stop_work", "final_notice"];

impl CompiledStep {
    /// A reminder by which the customer hears from us.
    pub fn reaches_customer(&self) -> bool {
        self.action == StepAction::Remind && self.channel.to_customer()
    }

    /// A step that must follow a reminder by `notice_days`: a late fee, an escalation,
    /// or a stop-work or final notice.
    pub fn needs_notice(&self) -> bool {
        match self.action {
            StepAction::LateFee | StepAction::Escalate => true,
            StepAction::Remind => self
                .template
                .as_deref()
                .is_some_and(|t| NOTICE_TEMPLATES.contains(&t)),
            StepAction::Note | StepAction::Call => false,
        }
    }
}

/// The steps (by day and action) that the planner could never take on time because no
/// reminder comes `notice_days` before them, each with a sentence naming it. `steps` are
/// sorted by day.
fn notice_problems(steps: &[CompiledStep], notice: i64) -> Vec<((i64, StepAction), String)> {
    let mut out = Vec::new();
    let name = |s: &CompiledStep| {
        format!(
            "step {} ({}{})",
            s.id,
            s.action.kind().as_str(),
            s.template
                .as_deref()
                .map(|t| format!(", template {t}"))
                .unwrap_or_default()
        )
    };
    for s in steps.iter().filter(|s| s.needs_notice()) {
        let warned = steps
            .iter()
            .filter(|r| r.reaches_customer() && !std::ptr::eq(*r, s) && r.day <= s.day - notice)
            .map(|r| r.day)
            .min();
        if warned.is_none() {
            let first = steps
                .iter()
                .filter(|r| r.reaches_customer() && !std::ptr::eq(*r, s))
                .map(|r| format_offset(r.day))
                .next();
            out.push((
                (s.day, s.action),
                format!(
                    "{} needs a reminder to the customer at least notice_days = {notice} days before it; {}",
                    name(s),
                    match first {
                        Some(f) => format!("the first reminder is at {f}"),
                        None => "no step reminds the customer".into(),
                    }
                ),
            ));
            continue;
        }
        if s.action == StepAction::Escalate {
            // The last reminder before escalation says it is coming: it is the final notice.
            let announce = steps
                .iter()
                .rev()
                .find(|r| r.reaches_customer() && r.day < s.day);
            if announce.is_none_or(|a| a.day > s.day - notice) {
                out.push((
                    (s.day, s.action),
                    format!(
                        "{} needs the final notice that announces it at least notice_days = {notice} days before it; {}",
                        name(s),
                        match announce {
                            Some(a) => format!("the last reminder before it is {} at {}", a.id, format_offset(a.day)),
                            None => "no reminder comes before it".into(),
                        }
                    ),
                ));
            }
        }
    }
    out
}

/// A step with its offset parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledStep {
    pub id: String,
    pub day: i64,
    pub action: StepAction,
    pub template: Option<String>,
    pub channel: Channel,
    /// The policy names the channel; otherwise it is the action's default, which a
    /// configured SMTP channel may change for messages whose tone matters.
    pub channel_set: bool,
}

/// A validated policy, ready for the planner.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub name: String,
    /// Sorted by day.
    pub steps: Vec<CompiledStep>,
    /// SMTP is configured: reminders whose tone matters go by SMTP unless their step
    /// names a channel (see [`CompiledPolicy::channel_for`]).
    pub tone_by_smtp: bool,
    pub repeat: Option<RepeatConfig>,
    pub minimum_amount_due: Decimal,
    /// Lower-cased.
    pub exclude_markers: Vec<String>,
    pub overrides: Vec<CustomerOverride>,
    pub max_reminders_per_customer_per_day: u32,
    pub notice_days: i64,
    pub late_fee: Option<LateFee>,
    pub window: SendWindow,
    pub templates: BTreeMap<String, MessageTemplate>,
    pub escalation_day: Option<i64>,
    /// Trimmed; `None` when not set.
    pub payment_instructions: Option<String>,
    pub attach_pdf: bool,
    pub fees_during_plan: bool,
}

impl CompiledPolicy {
    pub fn template(&self, id: &str) -> Option<&MessageTemplate> {
        self.templates.get(id)
    }

    /// The channel a reminder of step occurrence `step_id` (a repeat "+60d/r2" counts as
    /// its step) with `template` really goes by. The system's own invoice email carries
    /// none of our words, so when SMTP is configured, a message whose words matter goes
    /// by SMTP unless the policy named the step's channel.
    pub fn channel_for(&self, step_id: &str, template: Option<&str>, channel: Channel) -> Channel {
        if !self.tone_by_smtp || channel != Channel::Email {
            return channel;
        }
        let base = step_id.split('/').next().unwrap_or(step_id);
        let step = self
            .steps
            .iter()
            .find(|s| s.id == base && s.action == StepAction::Remind);
        if step.is_some_and(|s| s.channel_set) {
            return channel;
        }
        if self.tone_matters(template, step.map(|s| s.day)) {
            Channel::Smtp
        } else {
            channel
        }
    }

    /// Whether a reminder's words matter to the customer: a catch-up, firm, stop-work,
    /// final or fee notice (a reminder on the day of the late-fee step).
    pub fn tone_matters(&self, template: Option<&str>, day: Option<i64>) -> bool {
        template.is_some_and(|t| TONE_TEMPLATES.contains(&t))
            || day.is_some_and(|d| {
                self.steps
                    .iter()
                    .any(|s| s.action == StepAction::LateFee && s.day == d)
            })
    }

    /// A reminder step that SMTP takes over by default (see [`Self::channel_for`]): with
    /// SMTP configured, any step without its own `channel` can carry a catch-up, whose
    /// words matter wherever it falls.
    pub fn step_sent_by_smtp_by_default(&self) -> Option<&str> {
        if !self.tone_by_smtp {
            return None;
        }
        self.steps
            .iter()
            .find(|s| {
                s.action == StepAction::Remind && s.channel == Channel::Email && !s.channel_set
            })
            .map(|s| s.id.as_str())
    }

    /// The reminder steps whose words matter but go by the system's own invoice email,
    /// as "+14d (firm)", for `check`'s warning when SMTP is not configured.
    pub fn tone_steps_by_system_email(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.action == StepAction::Remind && s.channel == Channel::Email)
            .filter(|s| self.tone_matters(s.template.as_deref(), Some(s.day)))
            .map(|s| match &s.template {
                Some(t) => format!("{} ({t})", s.id),
                None => s.id.clone(),
            })
            .collect()
    }

    /// The first exclusion marker found in `memo`, case-insensitively.
    pub fn marker_in(&self, memo: &str) -> Option<&str> {
        let memo = memo.to_lowercase();
        self.exclude_markers
            .iter()
            .find(|m| memo.contains(m.as_str()))
            .map(|m| m.as_str())
    }
}

/// Which policy applies to an invoice, or that it is excluded.
#[derive(Debug, Clone)]
pub enum Resolution<'a> {
    Policy {
        policy: &'a CompiledPolicy,
        via: Option<String>,
    },
    Excluded {
        reason: String,
    },
}

/// Every compiled policy by name. Always contains [`DEFAULT_POLICY`].
#[derive(Debug, Clone)]
pub struct PolicyBook {
    policies: BTreeMap<String, CompiledPolicy>,
}

impl PolicyBook {
    /// Validates and compiles the `[policies]` section. The built-in policy is added as
    /// `default` unless the section defines one.
    pub fn compile(policies: &BTreeMap<String, Policy>) -> Result<PolicyBook, ValidationErrors> {
        let mut all = policies.clone();
        all.entry(DEFAULT_POLICY.to_string())
            .or_insert_with(Policy::default_policy);
        let mut errs = Vec::new();
        let mut out = BTreeMap::new();
        for (name, p) in &all {
            let prefix = format!("policies.{name}");
            if name.trim().is_empty() {
                errs.push(FieldError {
                    path: prefix.clone(),
                    message: "policy name must not be empty".into(),
                });
            }
            match p.compile(&prefix, name) {
                Ok(c) => {
                    out.insert(name.clone(), c);
                }
                Err(e) => errs.extend(e.0),
            }
            for (i, o) in p.overrides.iter().enumerate() {
                if let Some(target) = &o.policy {
                    if !all.contains_key(target) {
                        errs.push(FieldError {
                            path: format!("{prefix}.overrides[{i}].policy"),
                            message: format!(
                                "unknown policy {target:?}; defined: {}",
                                all.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(PolicyBook { policies: out })
        } else {
            Err(ValidationErrors(errs))
        }
    }

    /// Turns on [`CompiledPolicy::tone_by_smtp`] in every policy when SMTP is configured.
    pub fn with_smtp(mut self, smtp_configured: bool) -> PolicyBook {
        for p in self.policies.values_mut() {
            p.tone_by_smtp = smtp_configured;
        }
        self
    }

    /// Every compiled policy.
    pub fn all(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.policies.values()
    }

    /// The book with only the built-in default policy.
    pub fn built_in() -> PolicyBook {
        PolicyBook::compile(&BTreeMap::new())
            .unwrap_or_else(|e| unreachable!("built-in policy is invalid: {e}"))
    }

    pub fn get(&self, name: &str) -> Option<&CompiledPolicy> {
        self.policies.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.keys().map(String::as_str)
    }

    /// Applies the default policy's customer overrides (once: the policy an override
    /// names is used as is, its own overrides are not followed).
    pub fn resolve<'a>(
        &'a self,
        default_policy: &str,
        inv: &InvoiceSnapshot,
    ) -> Option<Resolution<'a>> {
        self.resolve_for_payer(default_policy, inv, None)
    }

    /// [`PolicyBook::resolve`], with the customer's payer profile: overrides naming the
    /// customer (by id, name or email domain) come first wherever they are written, then
    /// those naming the profile, in the order written.
    pub fn resolve_for_payer<'a>(
        &'a self,
        default_policy: &str,
        inv: &InvoiceSnapshot,
        payer: Option<crate::profiles::PayerProfile>,
    ) -> Option<Resolution<'a>> {
        let base = self.get(default_policy)?;
        let by_customer = base.overrides.iter().filter(|o| o.matches(inv));
        let by_payer = base
            .overrides
            .iter()
            .filter(|o| o.payer.is_some() && o.payer == payer);
        for o in by_customer.chain(by_payer) {
            if o.exclude {
                return Some(Resolution::Excluded {
                    reason: format!(
                        "excluded by policy {:?} override for {}",
                        base.name,
                        o.describe()
                    ),
                });
            }
            if let Some(p) = o.policy.as_deref().and_then(|n| self.get(n)) {
                return Some(Resolution::Policy {
                    policy: p,
                    via: Some(format!("override for {}", o.describe())),
                });
            }
        }
        Some(Resolution::Policy {
            policy: base,
            via: None,
        })
    }
}

/// Validates the `[engine]` settings and `[policies]` section together.
pub fn validate(
    engine: &EngineSettings,
    policies: &BTreeMap<String, Policy>,
) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    if let Err(e) = engine.validate("engine") {
        errs.extend(e.0);
    }
    if let Err(e) = PolicyBook::compile(policies) {
        errs.extend(e.0);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

#[cfg(test)]
mod tests;
