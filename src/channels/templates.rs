//! Message templates: minijinja files the user may override in `templates_dir`; the
//! defaults ship inside the binary.
//!
//! A template `ID.txt` holds two blocks, `subject` and `body` (plain text). An optional
//! `ID.html` (HTML-escaped) is the HTML alternative; without one, the plain text is
//! turned into simple HTML paragraphs inside `_layout.html`. Undefined names are errors,
//! so a typo is caught by `overdued check` rather than mailed to a customer.
//!
//! Files named `_NAME.txt` are parts the messages `{% include %}` (`_pay.txt`: how to
//! pay; `_fee.txt`: the late fee; `_earlier.txt`: the reminders sent before), not
//! messages; a user may override them like any other file.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde::Serialize;

use crate::engine::templates::MessageContext;

/// The templates shipped in the binary, by file name.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("heads_up.txt", include_str!("../../templates/heads_up.txt")),
    (
        "due_today.txt",
        include_str!("../../templates/due_today.txt"),
    ),
    (
        "follow_up.txt",
        include_str!("../../templates/follow_up.txt"),
    ),
    ("firm.txt", include_str!("../../templates/firm.txt")),
    (
        "stop_work.txt",
        include_str!("../../templates/stop_work.txt"),
    ),
    (
        "final_notice.txt",
        include_str!("../../templates/final_notice.txt"),
    ),
    (
        "promise_broken.txt",
        include_str!("../../templates/promise_broken.txt"),
    ),
    (
        "escalation.txt",
        include_str!("../../templates/escalation.txt"),
    ),
    (
        "statement.txt",
        include_str!("../../templates/statement.txt"),
    ),
    ("digest.txt", include_str!("../../templates/digest.txt")),
    (
        "test_email.txt",
        include_str!("../../templates/test_email.txt"),
    ),
    ("catch_up.txt", include_str!("../../templates/catch_up.txt")),
    (
        "plan_agreed.txt",
        include_str!("../../templates/plan_agreed.txt"),
    ),
    (
        "instalment_heads_up.txt",
        include_str!("../../templates/instalment_heads_up.txt"),
    ),
    (
        "instalment_due.txt",
        include_str!("../../templates/instalment_due.txt"),
    ),
    (
        "plan_missed.txt",
        include_str!("../../templates/plan_missed.txt"),
    ),
    ("_pay.txt", include_str!("../../templates/_pay.txt")),
    ("_fee.txt", include_str!("../../templates/_fee.txt")),
    ("_earlier.txt", include_str!("../../templates/_earlier.txt")),
    ("_layout.html", include_str!("../../templates/_layout.html")),
];

/// The templates of customer messages, one per built-in step template.
pub const STEP_TEMPLATES: &[&str] = &[
    "catch_up",
    "heads_up",
    "due_today",
    "follow_up",
    "firm",
    "stop_work",
    "final_notice",
    "promise_broken",
    "escalation",
    "plan_agreed",
    "instalment_heads_up",
    "instalment_due",
    "plan_missed",
];

/// A template error with the file (or `built-in:NAME`) and line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TemplateError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

/// One rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The loaded set: built-ins overlaid with the user's files.
pub struct Templates {
    env: Environment<'static>,
    /// Template name → where it came from, for error messages.
    origins: BTreeMap<String, String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("origins", &self.origins)
            .finish()
    }
}

impl Templates {
    /// The built-in templates only.
    pub fn built_in() -> Templates {
        Templates::load(None).expect("built-in templates parse (checked by tests)")
    }

    /// The built-ins overlaid with every `*.txt` and `*.html` file in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut files: BTreeMap<String, (String, String)> = DEFAULTS
            .iter()
            .map(|(n, s)| (n.to_string(), (format!("built-in:{n}"), s.to_string())))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| TemplateError {
                origin: dir.display().to_string(),
                line: None,
                message: format!("cannot read the templates directory: {e}"),
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !(name.ends_with(".txt") || name.ends_with(".html")) || !path.is_file() {
                    continue;
                }
                // Text-message templates are plain text of their own (`channels::sms::content`).
                if name.starts_with("sms_") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| TemplateError {
                    origin: path.display().to_string(),
                    line: None,
                    message: format!("cannot read: {e}"),
                })?;
                files.insert(name.to_string(), (path.display().to_string(), text));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let mut origins = BTreeMap::new();
        for (name, (origin, text)) in files {
            origins.insert(name.clone(), origin.clone());
            env.add_template_owned(name, text)
                .map_err(|e| error_at(&origin, &e))?;
        }
        Ok(Templates { env, origins })
    }

    /// Whether a message template `id` exists (`ID.txt`).
    pub fn has(&self, id: &str) -> bool {
        self.origins.contains_key(&format!("{id}.txt"))
    }

    /// Every message template id, built-in or the user's; `_NAME.txt` files are parts
    /// the messages include, not messages.
    pub fn ids(&self) -> Vec<String> {
        self.origins
            .keys()
            .filter(|n| !n.starts_with('_'))
            .filter_map(|n| n.strip_suffix(".txt"))
            .map(str::to_string)
            .collect()
    }

    /// Where template `name` (a file name) comes from.
    pub fn origin(&self, name: &str) -> String {
        self.origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    /// Renders template `id` with `ctx`: subject, plain text and HTML.
    pub fn render(&self, id: &str, ctx: &impl Serialize) -> Result<Rendered, TemplateError> {
        let name = format!("{id}.txt");
        let tmpl = self.env.get_template(&name).map_err(|e| self.err(&e))?;
        let mut captured = tmpl.render_captured(ctx).map_err(|e| self.err(&e))?;
        let (subject, body) = captured
            .with_state_mut(|st| -> Result<(String, String), minijinja::Error> {
                Ok((st.render_block("subject")?, st.render_block("body")?))
            })
            .map_err(|e| self.err(&e))?;
        let subject = one_line(&subject);
        if subject.is_empty() {
            return Err(TemplateError {
                origin: self.origin(&name),
                line: None,
                message: "the subject block renders empty".into(),
            });
        }
        let text = tidy(&body);
        let html_name = format!("{id}.html");
        let html = if self.origins.contains_key(&html_name) {
            let t = self
                .env
                .get_template(&html_name)
                .map_err(|e| self.err(&e))?;
            let ctx = Value::from_serialize(ctx);
            let extra = minijinja::context! { subject => subject.clone(), text => text.clone() };
            t.render(minijinja::value::merge_maps([extra, ctx]))
                .map_err(|e| self.err(&e))?
        } else {
            return self.plain(&subject, &text);
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    /// A message already written in plain text (a policy's own `{name}` template with no
    /// file of the same id), with the HTML alternative made from it.
    pub fn plain(&self, subject: &str, text: &str) -> Result<Rendered, TemplateError> {
        let subject = one_line(subject);
        let text = tidy(text);
        let t = self
            .env
            .get_template("_layout.html")
            .map_err(|e| self.err(&e))?;
        let html = t
            .render(minijinja::context! {
                subject => subject.clone(),
                body_html => Value::from_safe_string(text_to_html(&text)),
            })
            .map_err(|e| self.err(&e))?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn err(&self, e: &minijinja::Error) -> TemplateError {
        let origin = e
            .name()
            .map(|n| self.origin(n))
            .unwrap_or_else(|| "template".into());
        error_at(&origin, e)
    }

    /// The subject line the email of step template `id` carries with the engine's values
    /// `m`, rendered from the same file as the send, for previews (`plan`); `None` when no
    /// file has the id (the policy's own text is sent).
    pub fn step_subject(
        &self,
        id: &str,
        m: &MessageContext,
        sender_name: &str,
    ) -> Option<Result<String, TemplateError>> {
        self.has(id).then(|| {
            self.render(id, &StepContext::from_message(m, sender_name))
                .map(|r| r.subject)
        })
    }

    /// Renders every template against sample data; each error names its file and line.
    pub fn check(&self) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        let step = StepContext::sample();
        for id in self.ids() {
            let result = match id.as_str() {
                "statement" => self.render(&id, &StatementContext::sample()),
                "digest" => self.render(&id, &DigestContext::sample()),
                "test_email" => self.render(&id, &TestContext::sample()),
                _ => self.render(&id, &step),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors
    }
}

fn error_at(origin: &str, e: &minijinja::Error) -> TemplateError {
    let message = match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, Some(d)) => format!("undefined name: {d}"),
        (ErrorKind::UndefinedError, None) => {
            "undefined name (see the variables each template may use in the documentation)".into()
        }
        (k, Some(d)) => format!("{k}: {d}"),
        (k, None) => k.to_string(),
    };
    TemplateError {
        origin: origin.to_string(),
        line: e.line(),
        message,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub use crate::engine::templates::tidy;

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Plain text as HTML: paragraphs at blank lines, line breaks kept, links clickable.
pub fn text_to_html(text: &str) -> String {
    let mut out = String::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let lines: Vec<String> = para
            .lines()
            .map(|l| {
                let indent = l.len() - l.trim_start().len();
                let words: Vec<String> = l
                    .trim_start()
                    .split(' ')
                    .map(|w| {
                        let bare = w.trim_end_matches(['.', ',', ')', ';']);
                        if bare.starts_with("https://") || bare.starts_with("http://") {
                            format!(
                                "<a href=\"{0}\">{0}</a>{1}",
                                escape(bare),
                                escape(&w[bare.len()..])
                            )
                        } else {
                            escape(w)
                        }
                    })
                    .collect();
                format!("{}{}", "&nbsp;".repeat(indent), words.join(" "))
            })
            .collect();
        out.push_str("<p>");
        out.push_str(&lines.join("<br>\n"));
        out.push_str("</p>\n");
    }
    out
}

// ---- what templates are rendered with ---------------------------------------------

/// The values of a step's message (the engine's placeholders, under the same names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepContext {
    pub customer_name: String,
    pub customer_email: String,
    pub invoice_number: String,
    pub amount_due: String,
    pub invoice_total: String,
    pub due_date: String,
    /// Negative before the due date.
    pub days_overdue: i64,
    pub today: String,
    /// The latest late fee ("GBP 40.00"), or none.
    pub fee: Option<String>,
    pub fee_notice: String,
    pub next_step: String,
    pub pay_link: String,
    pub pay_line: String,
    pub promise_date: String,
    pub sender_name: String,
    /// How many reminders about this invoice reached the customer before this one.
    pub earlier_reminders: u32,
    /// The date of the first of them, or empty.
    pub first_reminder_date: String,
    /// The late-fee terms still to be disclosed before any fee, or empty.
    pub fee_terms: String,
    /// The open late-fee invoice of this invoice, by its own number, or empty.
    pub fee_invoice_number: String,
    /// Its amount due ("USD 25.00"), or empty.
    pub fee_invoice_amount: String,
    /// The policy's `payment_instructions`, or empty.
    pub payment_instructions: String,
    /// Whether the invoice PDF goes with the message.
    pub pdf_attached: bool,
    /// The customer's payer profile, or empty ([`MessageContext::payer_profile`]).
    pub payer_profile: String,
    /// A payment plan's messages: its id, the invoices it covers, the instalments still
    /// to pay (one a line), and the instalment the message is about.
    pub plan_id: String,
    pub plan_invoices: String,
    pub plan_schedule: String,
    pub instalment_number: String,
    pub instalment_date: String,
    pub instalment_amount: String,
}

impl StepContext {
    pub fn from_message(m: &MessageContext, sender_name: &str) -> StepContext {
        StepContext {
            customer_name: m.customer_name.clone(),
            customer_email: m.customer_email.clone(),
            invoice_number: m.invoice_number.clone(),
            amount_due: m.amount_due.clone(),
            invoice_total: m.invoice_total.clone(),
            due_date: m.due_date.clone(),
            days_overdue: m.days_overdue.trim().parse().unwrap_or(0),
            today: m.today.clone(),
            fee: Some(m.fee.clone()).filter(|f| !f.is_empty() && f != "none"),
            fee_notice: m.fee_notice.clone(),
            next_step: m.next_step.clone(),
            pay_link: m.pay_link.clone(),
            pay_line: m.pay_line.clone(),
            promise_date: m.promise_date.clone(),
            sender_name: sender_name.to_string(),
            earlier_reminders: m.earlier_reminders.trim().parse().unwrap_or(0),
            first_reminder_date: m.first_reminder_date.clone(),
            fee_terms: m.fee_terms.clone(),
            fee_invoice_number: String::new(),
            fee_invoice_amount: String::new(),
            payment_instructions: String::new(),
            pdf_attached: false,
            payer_profile: m.payer_profile.clone(),
            plan_id: m.plan_id.clone(),
            plan_invoices: m.plan_invoices.clone(),
            plan_schedule: m.plan_schedule.clone(),
            instalment_number: m.instalment_number.clone(),
            instalment_date: m.instalment_date.clone(),
            instalment_amount: m.instalment_amount.clone(),
        }
    }

    pub fn sample() -> StepContext {
        let mut c = StepContext::from_message(&MessageContext::sample(), "Example Ltd Accounts");
        c.payment_instructions =
            "bank transfer to Example Ltd, sort code 12-34-56, account 12345678, quoting the invoice number".into();
        c.pdf_attached = true;
        c
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    pub invoice_number: String,
    pub amount_due: String,
    pub due_date: String,
    pub days_overdue: i64,
    pub pay_link: String,
    /// For a late-fee invoice, the number of the invoice the fee is for; else empty.
    pub late_fee_for: String,
    /// Marked for collection today: no longer in the reminder ladder.
    pub escalated: bool,
    /// What happens next about this invoice and when, or empty.
    pub next_step: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    pub currency: String,
    /// Formatted with its currency ("USD 724.14").
    pub amount: String,
}

/// A customer's statement: every invoice due or overdue, totals per currency, and what
/// today's steps had to say (fees, what happens next).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementContext {
    pub customer_name: String,
    pub customer_email: String,
    pub today: String,
    pub invoices: Vec<StatementLine>,
    pub totals: Vec<CurrencyTotal>,
    pub notices: Vec<String>,
    pub sender_name: String,
    /// Whether any listed invoice has an online payment link.
    pub any_pay_link: bool,
    /// The policy's `payment_instructions`, or empty.
    pub payment_instructions: String,
    /// How many invoice PDFs go with the statement.
    pub pdf_count: usize,
}

impl StatementContext {
    pub fn sample() -> StatementContext {
        StatementContext {
            customer_name: "Sonnenschein Family Store".into(),
            customer_email: "ap@sonnenschein.example".into(),
            today: "14 November 2026".into(),
            invoices: vec![
                StatementLine {
                    invoice_number: "1037".into(),
                    amount_due: "USD 362.07".into(),
                    due_date: "31 October 2026".into(),
                    days_overdue: 14,
                    pay_link: "https://pay.example/1037".into(),
                    late_fee_for: String::new(),
                    escalated: false,
                    next_step: "If payment has not reached us by 30 November 2026, we will write to you again.".into(),
                },
                StatementLine {
                    invoice_number: "1037-F".into(),
                    amount_due: "USD 25.00".into(),
                    due_date: "14 November 2026".into(),
                    days_overdue: 0,
                    pay_link: String::new(),
                    late_fee_for: "1037".into(),
                    escalated: false,
                    next_step: String::new(),
                },
                StatementLine {
                    invoice_number: "1041".into(),
                    amount_due: "USD 120.00".into(),
                    due_date: "14 November 2026".into(),
                    days_overdue: 0,
                    pay_link: String::new(),
                    late_fee_for: String::new(),
                    escalated: false,
                    next_step: String::new(),
                },
                StatementLine {
                    invoice_number: "1044".into(),
                    amount_due: "EUR 80.00".into(),
                    due_date: "14 August 2026".into(),
                    days_overdue: 92,
                    pay_link: String::new(),
                    late_fee_for: String::new(),
                    escalated: true,
                    next_step: String::new(),
                },
            ],
            totals: vec![
                CurrencyTotal {
                    currency: "EUR".into(),
                    amount: "EUR 80.00".into(),
                },
                CurrencyTotal {
                    currency: "USD".into(),
                    amount: "USD 507.07".into(),
                },
            ],
            notices: vec![
                "Under our payment terms, USD 25.00 is added to invoices unpaid 30 days after their due date."
                    .into(),
            ],
            sender_name: "Example Ltd Accounts".into(),
            any_pay_link: true,
            payment_instructions: "bank transfer to Example Ltd, sort code 12-34-56, account 12345678, quoting the invoice number".into(),
            pdf_count: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestLine {
    pub connection: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgeingRow {
    pub connection: String,
    pub currency: String,
    pub current: String,
    pub d1_30: String,
    pub d31_60: String,
    pub d61_90: String,
    pub d90_plus: String,
}

/// The owner's daily digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DigestContext {
    pub date: String,
    pub actions: Vec<DigestLine>,
    pub failed: Vec<DigestLine>,
    /// Calls to make, accounts to refer to collection, connections to reconnect.
    pub attention: Vec<String>,
    pub ageing: Vec<AgeingRow>,
    /// Payer profiles and expected receipts per connection ([`crate::profiles`]).
    pub forecast: Vec<String>,
}

impl DigestContext {
    pub fn sample() -> DigestContext {
        DigestContext {
            date: "14 November 2026".into(),
            actions: vec![DigestLine {
                connection: "books".into(),
                message: "reminder sent (+14d): Invoice 1037 is 14 days overdue".into(),
            }],
            failed: vec![DigestLine {
                connection: "books".into(),
                message: "remind (+7d) failed: connection refused".into(),
            }],
            attention: vec![
                "books: call Sonnenschein Family Store about invoice 1001 (referred for collection)"
                    .into(),
            ],
            ageing: vec![AgeingRow {
                connection: "books".into(),
                currency: "USD".into(),
                current: "0.00".into(),
                d1_30: "362.07".into(),
                d31_60: "0.00".into(),
                d61_90: "0.00".into(),
                d90_plus: "1200.00".into(),
            }],
            forecast: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestContext {
    pub today: String,
    pub sender_name: String,
}

impl TestContext {
    pub fn sample() -> TestContext {
        TestContext {
            today: "14 November 2026".into(),
            sender_name: "Example Ltd Accounts".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_renders_against_its_sample() {
        let t = Templates::built_in();
        assert_eq!(t.check(), vec![]);
        for id in STEP_TEMPLATES {
            assert!(t.has(id), "{id}");
        }
    }

    #[test]
    fn undefined_names_are_errors_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("firm.txt"),
            "{% block subject %}Hi{% endblock %}\n{% block body %}\nDear {{ customer_name }},\n\n{{ custmer_name }}\n{% endblock %}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let errs = t.check();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let e = &errs[0];
        assert!(e.origin.ends_with("firm.txt"), "{e}");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("undefined"), "{e}");
    }

    #[test]
    fn syntax_errors_are_reported_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.txt"),
            "{% block subject %}x{% endblock %}\n{% block body %}\n{% if %}\n{% endblock %}\n",
        )
        .unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert!(e.origin.ends_with("mine.txt"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn html_escapes_and_links() {
        let h = text_to_html("A <b> & \"c\"\nsecond line\n\nPay at https://pay.example/1?a=1&b=2.");
        assert_eq!(
            h,
            "<p>A &lt;b&gt; &amp; &quot;c&quot;<br>\nsecond line</p>\n<p>Pay at <a href=\"https://pay.example/1?a=1&amp;b=2\">https://pay.example/1?a=1&amp;b=2</a>.</p>\n"
        );
    }

    #[test]
    fn user_html_template_is_escaped_and_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("firm.html"),
            "<h1>{{ subject }}</h1><p>{{ customer_name }}</p>",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let mut ctx = StepContext::sample();
        ctx.customer_name = "A & B <Ltd>".into();
        let r = t.render("firm", &ctx).unwrap();
        assert_eq!(
            r.html,
            "<h1>Invoice 1037 is 14 days overdue</h1><p>A &amp; B &lt;Ltd&gt;</p>"
        );
        assert!(r.text.starts_with("Dear A & B <Ltd>,\n"), "{}", r.text);
    }
}
