//! Message texts and the renderer behind [`render_message`].
//!
//! One template syntax for the whole product: minijinja, as in the files in
//! `templates/` (`{{ invoice_number }}`, `{% if fee_notice %}...{% endif %}`). The
//! engine's built-in step texts and a policy's own `[policies.NAME.templates.ID]` use it
//! as the SMTP channel's files do. A name the renderer does not know is an error naming
//! it, so a typo is caught by `check` rather than mailed to a customer; the old `{name}`
//! form of earlier releases is an error that says how to write it now.

use serde::{Deserialize, Serialize};

/// A message's subject and plain-text body, before rendering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub subject: String,
    pub body: String,
}

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedMessage {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown name {name:?}; known names: {}", PLACEHOLDERS.join(", "))]
    UnknownPlaceholder { name: String },
    #[error("{{{name}}} is the old placeholder form: write {{{{ {name} }}}} (templates use the minijinja syntax of the files in templates/)")]
    OldSyntax { name: String },
    #[error("{message}")]
    Syntax { message: String },
}

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "customer_name",
    "customer_email",
    "invoice_number",
    "amount_due",
    "invoice_total",
    "due_date",
    "days_overdue",
    "today",
    "fee",
    "fee_notice",
    "next_step",
    "pay_link",
    "pay_line",
    "promise_date",
    "earlier_reminders",
    "first_reminder_date",
    "fee_terms",
    "fee_invoices",
    "plan_id",
    "plan_invoices",
    "plan_schedule",
    "instalment_number",
    "instalment_date",
    "instalment_amount",
    "payer_profile",
];

/// The values placeholders are filled with. Every field is already formatted for a
/// reader ("USD 362.07", "31 October 2026").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageContext {
    pub customer_name: String,
    pub customer_email: String,
    pub invoice_number: String,
    pub amount_due: String,
    pub invoice_total: String,
    pub due_date: String,
    pub days_overdue: String,
    pub today: String,
    /// The latest late fee ("GBP 40.00"), or "none".
    pub fee: String,
    /// A sentence about the latest late fee, or empty.
    pub fee_notice: String,
    /// What happens next and when, or empty when nothing further is scheduled.
    pub next_step: String,
    /// The online payment address, or empty.
    pub pay_link: String,
    /// A sentence telling how to pay, with the link when there is one.
    pub pay_line: String,
    /// The promised payment date, or empty.
    pub promise_date: String,
    /// How many reminders about this invoice the customer was sent before this one.
    #[serde(default)]
    pub earlier_reminders: String,
    /// The date of the first of them, or empty when there was none.
    #[serde(default)]
    pub first_reminder_date: String,
    /// The late-fee terms to state before any fee is charged, or empty when no fee is
    /// ahead: a fee is only charged once a message has disclosed it.
    #[serde(default)]
    pub fee_terms: String,
    /// The open late-fee invoices of this invoice, reminded in the same message
    /// ("invoice 1037-F for USD 25.00"), or empty.
    #[serde(default)]
    pub fee_invoices: String,
    /// The payment plan covering the invoice ("P1"), or empty.
    #[serde(default)]
    pub plan_id: String,
    /// The invoices the plan covers ("1001, 1002").
    #[serde(default)]
    pub plan_invoices: String,
    /// The plan's instalments still to pay, one per line, part-payments shown.
    #[serde(default)]
    pub plan_schedule: String,
    /// The instalment a plan message is about: its number (1-based), date and the
    /// amount of it still to pay.
    #[serde(default)]
    pub instalment_number: String,
    #[serde(default)]
    pub instalment_date: String,
    #[serde(default)]
    pub instalment_amount: String,
    /// The customer's payer profile (`prompt`, `occasional`, `chronic`, `new`), or empty
    /// when none was judged: a template may thank a prompt payer, truthfully.
    #[serde(default)]
    pub payer_profile: String,
}

impl MessageContext {
    /// A context with every placeholder filled, for validating templates.
    pub fn sample() -> Self {
        MessageContext {
            customer_name: "Sonnenschein Family Store".into(),
            customer_email: "ap@sonnenschein.example".into(),
            invoice_number: "1037".into(),
            amount_due: "USD 362.07".into(),
            invoice_total: "USD 362.07".into(),
            due_date: "31 October 2026".into(),
            days_overdue: "14".into(),
            today: "14 November 2026".into(),
            fee: "USD 25.00".into(),
            fee_notice: "A late payment fee of USD 25.00 was added on 30 November 2026, as set out in our payment terms.".into(),
            next_step: "If payment has not reached us by 30 November 2026, we will write to you again.".into(),
            pay_link: "https://pay.example/1037".into(),
            pay_line: "You can pay online at https://pay.example/1037.".into(),
            promise_date: "20 November 2026".into(),
            earlier_reminders: "2".into(),
            first_reminder_date: "31 October 2026".into(),
            fee_invoices: "invoice 1037-F for USD 25.00".into(),
            fee_terms: "If the invoice is still unpaid on 30 November 2026, a late payment fee of USD 25.00 will be added, as set out in our payment terms.".into(),
            plan_id: "P1".into(),
            plan_invoices: "1037".into(),
            plan_schedule: "2. 15 December 2026: USD 120.69\n3. 29 December 2026: USD 120.69".into(),
            instalment_number: "1".into(),
            instalment_date: "1 December 2026".into(),
            instalment_amount: "USD 120.69".into(),
            // Unjudged: the sample renders what every customer gets.
            payer_profile: String::new(),
        }
    }
}

/// Renders one template. The only entry point to templating.
pub fn render_message(
    template: &MessageTemplate,
    ctx: &MessageContext,
) -> Result<RenderedMessage, TemplateError> {
    Ok(RenderedMessage {
        subject: render_text(&template.subject, ctx)?,
        body: tidy(&render_text(&template.body, ctx)?),
    })
}

fn render_text(src: &str, ctx: &MessageContext) -> Result<String, TemplateError> {
    let env = compiled(src);
    let env = env.as_ref().as_ref().map_err(Clone::clone)?;
    let tmpl = env.get_template(TEMPLATE_NAME).map_err(syntax_error)?;
    tmpl.render(ctx).map_err(syntax_error)
}

/// The name `template_from_str` gives a template, kept so errors read as before.
const TEMPLATE_NAME: &str = "<string>";

type Compiled = std::rc::Rc<Result<minijinja::Environment<'static>, TemplateError>>;

thread_local! {
    /// Templates compiled once per thread: a plan renders the same few templates for
    /// every invoice it acts on, and compiling was most of the cost of rendering.
    static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Compiled>> =
        std::cell::RefCell::default();
}

/// The template compiled and checked (old syntax, syntax, unknown names), or why not.
fn compiled(src: &str) -> Compiled {
    if let Some(c) = COMPILED.with(|m| m.borrow().get(src).cloned()) {
        return c;
    }
    let c = std::rc::Rc::new(compile(src));
    COMPILED.with(|m| {
        let mut m = m.borrow_mut();
        // Edited templates (a reloaded config) leave old entries behind: bound them.
        if m.len() >= 256 {
            m.clear();
        }
        m.insert(src.to_string(), c.clone());
    });
    c
}

fn compile(src: &str) -> Result<minijinja::Environment<'static>, TemplateError> {
    if let Some(name) = old_placeholder(src) {
        return Err(TemplateError::OldSyntax { name });
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_template_owned(TEMPLATE_NAME, src.to_string())
        .map_err(syntax_error)?;
    let tmpl = env.get_template(TEMPLATE_NAME).map_err(syntax_error)?;
    let mut unknown: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !PLACEHOLDERS.contains(&n.as_str()))
        .collect();
    unknown.sort();
    if let Some(name) = unknown.into_iter().next() {
        return Err(TemplateError::UnknownPlaceholder { name });
    }
    Ok(env)
}

fn syntax_error(e: minijinja::Error) -> TemplateError {
    TemplateError::Syntax {
        message: match (e.line(), e.detail()) {
            (Some(l), Some(d)) => format!("line {l}: {}: {d}", e.kind()),
            (Some(l), None) => format!("line {l}: {}", e.kind()),
            (None, Some(d)) => format!("{}: {d}", e.kind()),
            (None, None) => e.kind().to_string(),
        },
    }
}

/// The first `{name}` of the old single-brace form, outside minijinja's `{{ }}` and
/// `{% %}`, if any.
fn old_placeholder(src: &str) -> Option<String> {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            match b.get(i + 1) {
                // An expression, statement or comment: skip to its end.
                Some(b'{') | Some(b'%') | Some(b'#') => {
                    let close = match b[i + 1] {
                        b'{' => "}}",
                        b'%' => "%}",
                        _ => "#}",
                    };
                    match src[i + 2..].find(close) {
                        Some(j) => i += 2 + j + 2,
                        None => return None,
                    }
                    continue;
                }
                _ => {
                    let rest = &src[i + 1..];
                    let end = rest.find('}')?;
                    let name = rest[..end].trim();
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Some(name.to_string());
                    }
                }
            }
        }
        i += 1;
    }
    None
}

/// Placeholders that render empty (no fee, nothing next) would leave blank paragraphs;
/// collapse runs of blank lines so the message reads as if written for the case.
pub fn tidy(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut blank_run = 0;
    for line in body.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Ids of the built-in templates; a policy may override any of them or add its own.
pub const BUILT_IN_IDS: &[&str] = &[
    "heads_up",
    "due_today",
    "catch_up",
    "follow_up",
    "firm",
    "stop_work",
    "final_notice",
    "promise_broken",
    "escalation",
    "escalation_note",
    "ledger_note",
    "plan_agreed",
    "instalment_heads_up",
    "instalment_due",
    "plan_missed",
];

/// The built-in text for `id`, written in the spirit of the collection guides: courteous
/// first, then firm and specific, never threatening; every later message says what comes
/// next before it happens.
pub fn built_in(id: &str) -> Option<MessageTemplate> {
    let (subject, body) = match id {
        "heads_up" => (
            "Invoice {{ invoice_number }} is due on {{ due_date }}",
            "Dear {{ customer_name }},

Thank you for your business{% if payer_profile == 'prompt' %}, and for paying as promptly as you usually do{% endif %}. This is a friendly note that invoice {{ invoice_number }} for {{ amount_due }} falls due on {{ due_date }}.

{{ pay_line }}

If you have already arranged payment, thank you, and please ignore this message. If anything on the invoice looks wrong, just reply and we will put it right.

{{ fee_terms }}

Kind regards",
        ),
        "due_today" => (
            "Invoice {{ invoice_number }} is due today",
            "Dear {{ customer_name }},

A quick reminder that invoice {{ invoice_number }} for {{ amount_due }} is due today, {{ due_date }}. A copy of the invoice is attached.

{{ pay_line }}

Thank you for paying promptly; it helps us keep serving you well. If you have any question about the invoice, simply reply to this message.

{{ fee_terms }}

Kind regards",
        ),
        // The first message to an invoice overdued found already past due: courteous
        // whatever its age, since the customer has not heard from us about it.
        "catch_up" => (
            "Invoice {{ invoice_number }}: our records show it as unpaid",
            "Dear {{ customer_name }},

Our records show invoice {{ invoice_number }} for {{ amount_due }} as unpaid; it was due on {{ due_date }}. If you have already paid, thank you, and please ignore this message or let us know so we can match the payment.{% if payer_profile == 'prompt' %} You usually pay us promptly, so this one may simply have slipped through.{% endif %}

{{ fee_notice }}

{{ pay_line }}

If anything on the invoice looks wrong, just reply and we will put it right.

{{ fee_terms }}

{{ next_step }}

Kind regards",
        ),
        "follow_up" => (
            "Reminder: invoice {{ invoice_number }} was due on {{ due_date }}",
            "Dear {{ customer_name }},

We have not yet received payment of {{ amount_due }} for invoice {{ invoice_number }}, which was due on {{ due_date }}. It may simply have been missed, so a copy is attached.

{{ fee_notice }}

{{ pay_line }}

If you have already paid, thank you, and please let us know so we can match the payment. If there is a problem with the invoice, reply and we will sort it out.

{{ next_step }}

{{ fee_terms }}

Kind regards",
        ),
        "firm" => (
            "Invoice {{ invoice_number }} is {{ days_overdue }} days overdue",
            "Dear {{ customer_name }},

Invoice {{ invoice_number }} for {{ amount_due }} was due on {{ due_date }} and is now {{ days_overdue }} days overdue. We would be grateful if you could arrange payment now.

{{ fee_notice }}

{{ pay_line }}

If you cannot pay the full amount at once, reply with a date you can pay by, or propose instalments, and we will agree a plan with you.

{{ next_step }}

{{ fee_terms }}

Kind regards",
        ),
        "stop_work" => (
            "Invoice {{ invoice_number }}: payment needed to continue work",
            "Dear {{ customer_name }},

Invoice {{ invoice_number }} for {{ amount_due }} has been outstanding since {{ due_date }}, {{ days_overdue }} days ago, and we have not heard from you about it.

{{ fee_notice }}

Until the invoice is settled, we will need to hold new work and orders on your account. We would much rather keep working together, so please pay now or reply today to agree a date or a payment plan.

{{ pay_line }}

{{ next_step }}

Kind regards",
        ),
        "final_notice" => (
            "Final reminder: invoice {{ invoice_number }} ({{ amount_due }})",
            "Dear {{ customer_name }},

Despite our earlier reminders, invoice {{ invoice_number }} for {{ amount_due }}, due on {{ due_date }}, is still unpaid after {{ days_overdue }} days.

{{ fee_notice }}

This is our final reminder. {{ next_step }} We would prefer to settle this directly with you: a payment, a firm payment date or a payment plan agreed before then will stop that step.

{{ pay_line }}

Kind regards",
        ),
        "promise_broken" => (
            "Invoice {{ invoice_number }}: the payment promised for {{ promise_date }}",
            "Dear {{ customer_name }},

Thank you for letting us know that invoice {{ invoice_number }} would be paid by {{ promise_date }}. We have not yet received the payment, and {{ amount_due }} remains due.

{{ pay_line }}

If something has changed, please reply with a new date within the next week, or propose instalments, and we will work with you.

{{ next_step }}

Kind regards",
        ),
        "plan_agreed" => (
            "Payment plan {{ plan_id }} for invoice {{ plan_invoices }}: our confirmation",
            "Dear {{ customer_name }},

Thank you for agreeing a payment plan with us for invoice {{ plan_invoices }}. As agreed, the balance is to be paid in these instalments:

{{ plan_schedule }}

We will send you a short note a few days before each instalment and on its day. While the plan is kept, we will send you no other reminders about these invoices.

{{ pay_line }}

Kind regards",
        ),
        "instalment_heads_up" => (
            "Payment plan: instalment {{ instalment_number }} of {{ instalment_amount }} is due on {{ instalment_date }}",
            "Dear {{ customer_name }},

Thank you for the payment plan we agreed for invoice {{ plan_invoices }}. This is a friendly note that instalment {{ instalment_number }}, {{ instalment_amount }}, falls due on {{ instalment_date }}.

{{ pay_line }}

The instalments still to pay:
{{ plan_schedule }}

Kind regards",
        ),
        "instalment_due" => (
            "Payment plan: instalment {{ instalment_number }} of {{ instalment_amount }} is due today",
            "Dear {{ customer_name }},

Instalment {{ instalment_number }} of the payment plan we agreed for invoice {{ plan_invoices }}, {{ instalment_amount }}, falls due today, {{ instalment_date }}. If you have already paid it, thank you, and please ignore this note.

{{ pay_line }}

The instalments still to pay:
{{ plan_schedule }}

Kind regards",
        ),
        "plan_missed" => (
            "Invoice {{ plan_invoices }}: the payment plan has ended",
            "Dear {{ customer_name }},

We have not received instalment {{ instalment_number }} of the payment plan we agreed for invoice {{ plan_invoices }}, {{ instalment_amount }} due on {{ instalment_date }}, so the plan has ended. {{ amount_due }} remains due on invoice {{ invoice_number }}.

{{ pay_line }}

If something has changed, please reply within the next week and we will work with you.

{{ next_step }}

Kind regards",
        ),
        "escalation" => (
            "Referred for collection: invoice {{ invoice_number }} for {{ customer_name }} ({{ amount_due }})",
            "Invoice {{ invoice_number }} for {{ customer_name }} ({{ amount_due }}, due {{ due_date }}) is {{ days_overdue }} days overdue and has been marked for collection today, {{ today }}.

Automatic reminders for this invoice have stopped. Before referring it to a collection agency, consider calling the customer: {{ customer_name }}, {{ customer_email }}.

{{ fee_notice }}",
        ),
        "escalation_note" => (
            "Marked for collection",
            "overdued: marked for collection on {{ today }}, {{ days_overdue }} days overdue with {{ amount_due }} outstanding. Automatic reminders stopped; the owner has been told.",
        ),
        "ledger_note" => (
            "Collection note",
            "overdued: invoice {{ invoice_number }} is {{ days_overdue }} days overdue with {{ amount_due }} outstanding (checked {{ today }}).",
        ),
        _ => return None,
    };
    Some(MessageTemplate {
        subject: subject.to_string(),
        body: body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(subject: &str, body: &str) -> MessageTemplate {
        MessageTemplate {
            subject: subject.into(),
            body: body.into(),
        }
    }

    #[test]
    fn renders_names_with_the_minijinja_syntax_of_the_template_files() {
        let ctx = MessageContext::sample();
        let m = render_message(
            &t(
                "Invoice {{ invoice_number }}",
                "{{ '{' }}not a placeholder{{ '}' }} {{ amount_due }}{% if fee_notice %} (fee){% endif %}",
            ),
            &ctx,
        )
        .unwrap();
        assert_eq!(m.subject, "Invoice 1037");
        assert_eq!(m.body, "{not a placeholder} USD 362.07 (fee)\n");
    }

    #[test]
    fn unknown_name_is_named() {
        let err =
            render_message(&t("Hi {{ custmer_name }}", ""), &MessageContext::sample()).unwrap_err();
        assert_eq!(
            err,
            TemplateError::UnknownPlaceholder {
                name: "custmer_name".into()
            }
        );
        assert!(err.to_string().contains("\"custmer_name\""), "{err}");
        assert!(err.to_string().contains("customer_name"), "{err}");
    }

    #[test]
    fn the_old_single_brace_form_says_how_to_write_it_now() {
        let err = render_message(
            &t("Invoice {{ invoice_number }}: {due_date}", ""),
            &MessageContext::sample(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            TemplateError::OldSyntax {
                name: "due_date".into()
            }
        );
        assert!(err.to_string().contains("write {{ due_date }}"), "{err}");
    }

    #[test]
    fn malformed_templates_are_errors() {
        let ctx = MessageContext::sample();
        for src in ["a {{ due_date", "a {% if fee %}b", "a {{ due date }}"] {
            assert!(
                matches!(
                    render_message(&t(src, ""), &ctx),
                    Err(TemplateError::Syntax { .. })
                ),
                "{src}"
            );
        }
    }

    #[test]
    fn empty_sentences_leave_no_blank_paragraphs() {
        let mut ctx = MessageContext::sample();
        ctx.fee_notice.clear();
        ctx.next_step.clear();
        let m = render_message(&built_in("stop_work").unwrap(), &ctx).unwrap();
        assert!(!m.body.contains("\n\n\n"), "{}", m.body);
        assert!(m.body.ends_with("Kind regards\n"), "{}", m.body);
    }

    #[test]
    fn every_built_in_renders_and_none_threatens() {
        let ctx = MessageContext::sample();
        for id in BUILT_IN_IDS {
            let m = render_message(&built_in(id).unwrap(), &ctx)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let text = format!("{} {}", m.subject, m.body).to_lowercase();
            for word in [
                "legal action",
                "court",
                "lawyer",
                "solicitor",
                "sue",
                "immediately or",
                "consequences",
            ] {
                assert!(!text.contains(word), "{id} says {word:?}");
            }
        }
        assert!(built_in("nope").is_none());
    }

    #[test]
    fn later_customer_messages_say_what_comes_next() {
        for id in [
            "follow_up",
            "firm",
            "stop_work",
            "final_notice",
            "promise_broken",
            "plan_missed",
        ] {
            assert!(
                built_in(id).unwrap().body.contains("{{ next_step }}"),
                "{id}"
            );
        }
    }
}
