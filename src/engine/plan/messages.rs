//! The messages: the facts every text is rendered from, "what happens next", and the
//! planned actions of the day with their rendered texts.

use overdued_connector::{ActionKind, InvoiceSnapshot};

use super::conduct::{self, Contact};
use super::fees::{latest_fee, FeeCandidate};
use super::reminders::expand;
use super::{day_text, Candidate, Ctx, Occurrence, PlanError, PlannedAction};
use crate::engine::dates::long_date;
use crate::engine::policy::{Channel, CompiledPolicy, StepAction};
use crate::engine::templates::{render_message, MessageContext, RenderedMessage};

pub(super) fn candidates(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    track: &[Occurrence],
    picked: &[Occurrence],
    fee_candidate: Option<FeeCandidate>,
) -> Result<Vec<Candidate>, PlanError> {
    let inv = cx.inv;
    let d = cx.d;
    let ctx = context(cx, policy, contact, track, fee_candidate.as_ref());
    let reminded_before = contact.sent.iter().any(|s| *s < cx.today);
    let render = |template: &str| -> Result<RenderedMessage, PlanError> {
        render_with(policy, template, &ctx)
    };
    let when = |day: i64| -> String {
        let due_on = day_text(inv.due_date, day);
        let rel = if d < 0 {
            format!("due in {} days", -d)
        } else if d == 0 {
            "due today".into()
        } else {
            format!("{d} days overdue")
        };
        // The step's own date, named as such: "due on" alone read as the invoice's due date.
        if d > day {
            format!(
                "{rel}; the step fell on {due_on}, caught up {} day(s) late",
                d - day
            )
        } else {
            format!("{rel}; the step falls on {due_on}")
        }
    };
    let base = |kind: ActionKind, step_id: &str, channel: Channel, reason: String| PlannedAction {
        connection: inv.connection.clone(),
        invoice_id: inv.remote_id.clone(),
        invoice_number: inv.display_number().to_string(),
        customer_id: inv.customer.id.clone(),
        kind,
        step_id: step_id.to_string(),
        key: cx.key(kind, step_id),
        channel,
        policy: policy.name.clone(),
        days_overdue: d,
        message: None,
        template: None,
        context: None,
        ledger_text: None,
        fee: None,
        fee_posting: None,
        reason,
    };

    let mut candidates = Vec::new();
    // The messages rendered with `ctx`, which keep it: the last takes it, not a copy.
    let mut with_context: Vec<usize> = Vec::new();
    if let Some((id, q, start)) = fee_candidate {
        let mut a = base(
            ActionKind::LateFee,
            &id,
            Channel::Ledger,
            format!(
                "late fee period {} ({}): {}",
                q.period,
                when(start),
                q.explanation
            ),
        );
        a.ledger_text = Some(format!(
            "Late payment fee on invoice {} ({d} days overdue)",
            inv.display_number()
        ));
        a.fee_posting = policy.late_fee.as_ref().map(|f| f.posting);
        a.fee = Some(q);
        candidates.push(Candidate {
            action: a,
            email_reminder: false,
            render: false,
        });
    }
    for o in picked {
        for (kind, channel, template) in expand(o) {
            if cx.is_done(kind, &o.step_id) {
                continue;
            }
            let template = template.or(o.template.clone()).map(|t| {
                if kind == ActionKind::Remind && channel.to_customer() {
                    conduct::template_for(&t, d, reminded_before).to_string()
                } else {
                    t
                }
            });
            let channel = if kind == ActionKind::Remind {
                policy.channel_for(&o.step_id, template.as_deref(), channel)
            } else {
                channel
            };
            let mut a = base(
                kind,
                &o.step_id,
                channel,
                format!("{} ({})", o.label, when(o.day)),
            );
            match kind {
                ActionKind::Note => {
                    a.ledger_text = template
                        .as_deref()
                        .map(render)
                        .transpose()?
                        .map(|m| m.body.trim_end().to_string())
                }
                _ => {
                    // Rendered by `plan` once the window and the daily limit have kept
                    // it: most candidates of a big book are held back by the limit.
                    if let Some(t) = template.as_deref() {
                        template_of(policy, t)?;
                        a.template = template.clone();
                        with_context.push(candidates.len());
                    }
                }
            }
            candidates.push(Candidate {
                email_reminder: kind == ActionKind::Remind && channel.to_customer(),
                render: a.template.is_some(),
                action: a,
            });
        }
    }
    if let Some((&last, rest)) = with_context.split_last() {
        for &i in rest {
            candidates[i].action.context = Some(ctx.clone());
        }
        candidates[last].action.context = Some(ctx);
    }
    Ok(candidates)
}

fn template_of<'p>(
    policy: &'p CompiledPolicy,
    template: &str,
) -> Result<&'p crate::engine::templates::MessageTemplate, PlanError> {
    policy
        .template(template)
        .ok_or_else(|| PlanError::MissingTemplate {
            policy: policy.name.clone(),
            template: template.to_string(),
        })
}

/// The policy's template `template` rendered with `ctx`.
pub(super) fn render_with(
    policy: &CompiledPolicy,
    template: &str,
    ctx: &MessageContext,
) -> Result<RenderedMessage, PlanError> {
    render_message(template_of(policy, template)?, ctx).map_err(|error| PlanError::Template {
        policy: policy.name.clone(),
        template: template.to_string(),
        error,
    })
}

/// The facts every message of the invoice is rendered with today.
fn context(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    track: &[Occurrence],
    fee_candidate: Option<&FeeCandidate>,
) -> MessageContext {
    let inv = cx.inv;
    let hist = cx.hist;
    let fee_notice = match (fee_candidate, latest_fee(hist)) {
        (Some((_, q, _)), _) => format!(
            "A late payment fee of {} has been added today, as set out in our payment terms.",
            q.amount.display_human()
        ),
        (None, Some((m, at))) => format!(
            "A late payment fee of {} was added on {}, as set out in our payment terms.",
            m.display_human(),
            long_date(cx.local(at))
        ),
        (None, None) => String::new(),
    };
    let fee_invoices = cx
        .fee_invoices
        .iter()
        .map(|f| {
            format!(
                "invoice {} for {}",
                f.display_number(),
                f.due_money().display_human()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let fee_notice = if fee_invoices.is_empty() {
        fee_notice
    } else {
        format!("{fee_notice} The late fee is on {fee_invoices}; please pay it together with this invoice.")
            .trim_start()
            .to_string()
    };
    let fee_text = match (fee_candidate, latest_fee(hist)) {
        (Some((_, q, _)), _) => q.amount.display_human().to_string(),
        (None, Some((m, _))) => m.display_human().to_string(),
        (None, None) => "none".into(),
    };
    let (pay_link, pay_line) = match inv.pay_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(u) => (
            u.to_string(),
            format!("You can pay online at {u}, or by any of the methods shown on the invoice."),
        ),
        None => (
            String::new(),
            "Payment details are shown on the invoice.".to_string(),
        ),
    };
    let earlier: Vec<_> = contact.sent.iter().filter(|s| **s < cx.today).collect();
    let mut ctx = MessageContext {
        earlier_reminders: earlier.len().to_string(),
        first_reminder_date: earlier.first().map(|f| long_date(**f)).unwrap_or_default(),
        fee_terms: fee_terms(policy, inv, hist),
        fee_invoices,
        customer_name: inv.customer.name.clone(),
        customer_email: inv
            .customer
            .email
            .clone()
            .unwrap_or_else(|| "no email on file".into()),
        invoice_number: inv.display_number().to_string(),
        amount_due: inv.due_money().display_human().to_string(),
        invoice_total: inv.total_money().display_human().to_string(),
        due_date: long_date(inv.due_date),
        days_overdue: cx.d.to_string(),
        today: long_date(cx.today),
        fee: fee_text,
        fee_notice,
        next_step: next_step_text(cx, policy, contact, track, fee_candidate),
        pay_link,
        pay_line,
        promise_date: hist
            .promise
            .as_ref()
            .map(|p| long_date(p.until))
            .unwrap_or_default(),
        payer_profile: hist
            .payer_profile
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        ..MessageContext::default()
    };
    // A broken plan's message names the instalment that was missed.
    if let Some(a) = &hist.arrangement {
        let missed = match a.standing {
            crate::arrangements::Standing::Broken { index, .. } => Some(index),
            _ => None,
        };
        a.fill(&mut ctx, missed);
    }
    ctx
}

/// The day the next late fee will really be charged, as the fee track will decide it:
/// from the fee step as paced from the last message, not before a reminder has given
/// `notice_days` of notice (this message counts from today), skipping periods already
/// charged or charged today, and periods the catch-up horizon will let pass. None when
/// no fee is to come before escalation.
fn next_fee_day(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    fee_candidate: Option<&FeeCandidate>,
) -> Option<i64> {
    let inv = cx.inv;
    let fee = policy.late_fee.as_ref()?;
    let step = policy
        .steps
        .iter()
        .find(|s| s.action == StepAction::LateFee)?;
    if inv.is_fee_invoice || fee.min_invoice_amount.is_some_and(|m| inv.total < m) {
        return None;
    }
    let d = cx.d;
    let day_of = |date: chrono::NaiveDate| (date - inv.due_date).num_days();
    let notice = policy.notice_days;
    let warned_from = contact
        .sent
        .iter()
        .find(|s| **s < cx.today)
        .map_or(d + notice, |first| day_of(*first) + notice);
    // A fee charged today is told as done ("has been added today"); the next is later.
    let earliest = (d + 1).max(warned_from);
    // A catch-up going out today moves the ladder as it will stand once sent: it stands
    // for the latest reminder due, and later steps (the fee's too) keep their gaps from
    // today (see the reminder track).
    let catch_up_today = d > 0 && contact.sent.iter().all(|s| *s >= cx.today);
    let step_day = if catch_up_today {
        let stood = policy
            .steps
            .iter()
            .filter(|s| s.action == StepAction::Remind && s.reaches_customer() && s.day <= d)
            .map(|s| s.day)
            .max()
            .unwrap_or(d);
        if step.day > stood {
            step.day + (d - stood)
        } else {
            step.day
        }
    } else {
        contact.paced(step.day)
    };
    let charged_today = fee_candidate.map(|(id, _, _)| id.as_str());
    for period in 0..10_000u32 {
        let start = fee.period_start(period, step_day);
        if policy.escalation_day.is_some_and(|e| start >= e) {
            return None;
        }
        let id = format!("{}/p{period}", step.id);
        let next_start = fee
            .every_days
            .map(|_| fee.period_start(period + 1, step_day));
        let done = cx.is_done(ActionKind::LateFee, &id) || charged_today == Some(id.as_str());
        let day = start.max(earliest);
        let passes = day - start > cx.horizon || next_start.is_some_and(|n| day >= n);
        if !done && !passes {
            return Some(day);
        }
        next_start?;
    }
    None
}

/// The policy's fee terms, stated in every reminder until a fee is charged, so that no
/// fee comes undisclosed.
fn fee_terms(
    policy: &CompiledPolicy,
    inv: &InvoiceSnapshot,
    hist: &super::InvoiceHistory,
) -> String {
    let Some(fee) = &policy.late_fee else {
        return String::new();
    };
    let Some(step) = policy
        .steps
        .iter()
        .find(|s| s.action == StepAction::LateFee)
    else {
        return String::new();
    };
    if inv.is_fee_invoice
        || fee.min_invoice_amount.is_some_and(|m| inv.total < m)
        || latest_fee(hist).is_some()
    {
        return String::new();
    }
    format!(
        "Under our payment terms, {} is added to invoices unpaid {} days after their due date.",
        fee.describe(inv.currency, inv.due_date),
        step.day.max(0)
    )
}

/// "What happens next", for the customer: the next reminder, fee or escalation after today.
fn next_step_text(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    track: &[Occurrence],
    fee_candidate: Option<&FeeCandidate>,
) -> String {
    let inv = cx.inv;
    let d = cx.d;
    let next_reminder = track
        .iter()
        .filter(|o| o.day > d && !o.step_id.starts_with("promise/"))
        .find(|o| {
            o.action == StepAction::Escalate
                || (o.action == StepAction::Remind && o.channel.to_customer())
        });
    let next_fee = next_fee_day(cx, policy, contact, fee_candidate).and_then(|day| {
        let fee = policy.late_fee.as_ref()?;
        Some((day, fee.describe(inv.currency, inv.due_date)))
    });
    let date = |day: i64| long_date(day_text(inv.due_date, day));
    let fee = next_fee
        .filter(|(fday, _)| next_reminder.is_none_or(|r| *fday <= r.day))
        .map(|(fday, desc)| format!("If the invoice is still unpaid on {}, {desc} will be added, as set out in our payment terms.", date(fday)));
    match (next_reminder, fee) {
        // Escalation is always announced, even when a fee comes first: the message
        // before it is the customer's notice of it.
        (Some(r), fee) if r.action == StepAction::Escalate => {
            let esc = format!(
                "If the invoice is still unpaid on {}, we will refer it for collection.",
                date(r.day)
            );
            match fee {
                Some(f) => format!("{f} {esc}"),
                None => esc,
            }
        }
        (_, Some(f)) => f,
        (Some(r), None) => format!(
            "If payment has not reached us by {}, we will write to you again.",
            date(r.day)
        ),
        (None, None) => String::new(),
    }
}
