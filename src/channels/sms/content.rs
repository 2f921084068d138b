//! The words of a text message: short and true, rendered at send time from the invoice
//! as just re-read. Who is writing, the invoice number, the amount due now, the pay
//! link, and how to stop. Templates `sms_TEMPLATE.txt` (the step's template id, e.g.
//! `sms_catch_up.txt`) or else `sms_reminder.txt`, built in and overridable in
//! `[channels] templates_dir`; one plain text, minijinja like the email templates.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use minijinja::{Environment, UndefinedBehavior};
use overdued_connector::InvoiceSnapshot;
use serde::Serialize;

use super::segments::{self, Segments};
use crate::engine::dates::long_date;

/// The SMS templates shipped in the binary.
pub const DEFAULTS: &[(&str, &str)] = &[
    (
        "sms_reminder",
        include_str!("../../../templates/sms_reminder.txt"),
    ),
    (
        "sms_catch_up",
        include_str!("../../../templates/sms_catch_up.txt"),
    ),
];

/// Every message must say how to stop: carriers and Twilio expect it, and it is the
/// customer's right.
pub const STOP_TEXT: &str = "Reply STOP to opt out";

/// What a message is rendered from.
#[derive(Debug, Clone, Serialize)]
pub struct SmsContext {
    pub sender_name: String,
    pub customer_name: String,
    pub invoice_number: String,
    pub amount_due: String,
    pub due_date: String,
    pub days_overdue: i64,
    pub pay_link: String,
}

impl SmsContext {
    pub fn new(sender_name: &str, inv: &InvoiceSnapshot, pay_link: &str, today: NaiveDate) -> Self {
        SmsContext {
            sender_name: sender_name.to_string(),
            customer_name: inv.customer.name.clone(),
            invoice_number: inv.display_number().to_string(),
            amount_due: inv.due_money().display_human().to_string(),
            due_date: long_date(inv.due_date),
            days_overdue: inv.days_overdue(today),
            pay_link: pay_link.to_string(),
        }
    }

    /// The longest values a real message is likely to carry, for `check`.
    pub fn sample(sender_name: &str) -> Self {
        SmsContext {
            sender_name: sender_name.to_string(),
            customer_name: "Northern Lights Trading Company Ltd".into(),
            invoice_number: "INV-000123".into(),
            amount_due: "GBP 123,456.78".into(),
            due_date: long_date(NaiveDate::from_ymd_opt(2026, 9, 30).expect("a date")),
            days_overdue: 45,
            pay_link: "https://in.xero.com/vK2tMB4hXoWZbyTgcE4mHfS1bpLZSPwq7Gz0gJdL".into(),
        }
    }
}

/// The SMS templates: built-ins overlaid with `sms_*.txt` in the templates directory.
pub struct SmsTemplates {
    env: Environment<'static>,
    origins: BTreeMap<String, String>,
}

impl std::fmt::Debug for SmsTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsTemplates")
            .field("origins", &self.origins)
            .finish()
    }
}

impl SmsTemplates {
    pub fn load(dir: Option<&Path>) -> Result<SmsTemplates, String> {
        let mut files: BTreeMap<String, (String, String)> = DEFAULTS
            .iter()
            .map(|(n, s)| (n.to_string(), (format!("built-in:{n}.txt"), s.to_string())))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                format!(
                    "{}: cannot read the templates directory: {e}",
                    dir.display()
                )
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Some(id) = name.strip_suffix(".txt").filter(|n| n.starts_with("sms_")) else {
                    continue;
                };
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
                files.insert(id.to_string(), (path.display().to_string(), text));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        let mut origins = BTreeMap::new();
        for (id, (origin, text)) in files {
            env.add_template_owned(id.clone(), text)
                .map_err(|e| format!("{origin}:{}: {e}", e.line().unwrap_or(0)))?;
            origins.insert(id, origin);
        }
        Ok(SmsTemplates { env, origins })
    }

    /// The template a step's text message uses: `sms_STEP_TEMPLATE`, else `sms_reminder`.
    pub fn for_step(&self, step_template: Option<&str>) -> String {
        step_template
            .map(|t| format!("sms_{t}"))
            .filter(|t| self.origins.contains_key(t))
            .unwrap_or_else(|| "sms_reminder".into())
    }

    pub fn ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.origins.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Renders `id`; the text is one line with single spaces, as a phone shows it best.
    pub fn render(&self, id: &str, ctx: &SmsContext) -> Result<String, String> {
        let origin = self.origins.get(id).cloned().unwrap_or_else(|| id.into());
        let t = self
            .env
            .get_template(id)
            .map_err(|e| format!("{origin}: {e}"))?;
        let text = t
            .render(ctx)
            .map_err(|e| format!("{origin}:{}: {e}", e.line().unwrap_or(0)))?;
        Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Renders `id` and checks it: it says how to stop and fits in `max_segments`.
    pub fn render_checked(
        &self,
        id: &str,
        ctx: &SmsContext,
        max_segments: u32,
    ) -> Result<(String, Segments), String> {
        let text = self.render(id, ctx)?;
        let origin = self.origins.get(id).map(String::as_str).unwrap_or(id);
        if !text.contains(STOP_TEXT) {
            return Err(format!(
                "{origin}: a text message must tell the customer how to stop: include \"{STOP_TEXT}\""
            ));
        }
        let s = segments::count(&text);
        if s.count > max_segments as usize {
            return Err(format!(
                "{origin}: {s}, over max_segments = {max_segments} (each segment is billed): shorten it"
            ));
        }
        Ok((text, s))
    }
}

/// `overdued check`'s lines about text messages: the sender, quiet hours, and each SMS
/// template's size with the longest likely values (their cost in segments).
pub fn check_report(sms: &super::SmsConfig, c: &crate::config::Config) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let from = match &sms.sender {
        super::config::Sender::Number(n) => format!("from {n}"),
        super::config::Sender::Service(m) => format!("through messaging service {m}"),
    };
    let quiet = match sms.quiet_hours {
        Some(q) => format!("quiet hours {q} local time"),
        None => "no text outside each policy's send window".to_string(),
    };
    let _ = writeln!(
        s,
        "sms: Twilio account {}, {from}, signed \"{}\", {quiet}, at most {} segment(s) a message; only to customers opted in (overdued sms opt-in)",
        sms.account_sid,
        sms.sender_name.as_deref().unwrap_or(""),
        sms.max_segments
    );
    match super::config::check_templates(sms, c.channels.templates_dir.as_deref()) {
        Ok(list) => {
            for (id, segs) in list {
                let _ = writeln!(s, "sms: template {id}: {segs} with long sample values: ok");
            }
        }
        Err((field, m)) => {
            let _ = writeln!(s, "sms: error: {field}: {m}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_fit_two_segments_with_long_values_and_say_stop() {
        let t = SmsTemplates::load(None).unwrap();
        let ctx = SmsContext::sample("Example Trading Ltd");
        for (id, _) in DEFAULTS {
            let (text, s) = t.render_checked(id, &ctx, 2).unwrap();
            assert!(
                text.contains("INV-000123") && text.contains("GBP 123,456.78"),
                "{text}"
            );
            assert!(text.contains(&ctx.pay_link), "{text}");
            assert!(s.count <= 2, "{id}: {s}");
        }
    }

    #[test]
    fn over_the_cap_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("sms_reminder.txt"),
            format!(
                "{{{{ sender_name }}}} {} Reply STOP to opt out",
                "x".repeat(400)
            ),
        )
        .unwrap();
        let t = SmsTemplates::load(Some(dir.path())).unwrap();
        let e = t
            .render_checked("sms_reminder", &SmsContext::sample("A"), 2)
            .unwrap_err();
        assert!(
            e.contains("sms_reminder.txt") && e.contains("over max_segments = 2"),
            "{e}"
        );
    }

    #[test]
    fn the_step_template_picks_its_own_sms_template() {
        let t = SmsTemplates::load(None).unwrap();
        assert_eq!(t.for_step(Some("catch_up")), "sms_catch_up");
        assert_eq!(t.for_step(Some("firm")), "sms_reminder");
        assert_eq!(t.for_step(None), "sms_reminder");
    }
}
