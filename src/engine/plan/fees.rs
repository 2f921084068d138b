//! The fee track: one occurrence per fee period (`"+30d/p0"`, `"+30d/p1"`, ...), the
//! latest now due, until escalation.

use chrono::{DateTime, Utc};
use overdued_connector::{ActionKind, Money};

use super::conduct::Contact;
use super::{day_text, Ctx, InvoiceHistory, SkipCode, Skipped};
use crate::engine::fees::{quote_fee, ChargedFee, FeeInput, FeeQuote};
use crate::engine::policy::{CompiledPolicy, StepAction};

/// A fee to charge today: its occurrence id, the quote, and the day its period began.
pub(super) type FeeCandidate = (String, FeeQuote, i64);

/// `no_reminder_today`: an "already charged" note is only worth showing when nothing
/// else is done for the invoice today.
pub(super) fn candidate(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    no_reminder_today: bool,
    notes: &mut Vec<Skipped>,
) -> Option<FeeCandidate> {
    let inv = cx.inv;
    let d = cx.d;
    let horizon = cx.horizon;
    let fee = policy.late_fee.as_ref()?;
    let step = policy
        .steps
        .iter()
        .find(|s| s.action == StepAction::LateFee)?;
    // The fee's periods run from its step as paced from the last message sent.
    // A fee already running when a payment plan was agreed pauses for the kept days,
    // unless the policy charges fees during plans (then the plan moves nothing).
    let step_day = if policy.fees_during_plan {
        contact.paced_before_plan(step.day)
    } else {
        contact.paced(step.day)
    };
    let d = match contact.plan_hold {
        Some((at, gap)) if step_day <= at && !policy.fees_during_plan => d - gap,
        _ => d,
    };
    let (period, start) = fee.period_on(d, step_day)?;
    let id = format!("{}/p{period}", step.id);
    if policy.escalation_day.is_some_and(|e| start >= e) {
        // Fees stop with escalation; the escalation step handles the invoice.
        return None;
    }
    if let Some(r) = cx.done.get(&cx.key(ActionKind::LateFee, &id)) {
        if no_reminder_today {
            notes.push(cx.skip(
                Some(id),
                SkipCode::AlreadyDone,
                format!(
                    "late fee period {period} already charged on {}",
                    cx.local(r.at)
                ),
            ));
        }
        return None;
    }
    // A fee only once the customer was told of it, in time: every reminder before the
    // fee states its terms, so a reminder `notice_days` back is that disclosure.
    if contact.warned(cx.today, policy.notice_days).is_none() {
        notes.push(cx.skip(
            Some(id),
            SkipCode::AwaitingNotice,
            format!(
                "late fee period {period} held: it needs a reminder stating the fee at least {} days before (notice_days){}; it comes later",
                policy.notice_days,
                contact
                    .sent
                    .last()
                    .map(|l| format!(", and the last went out on {l}"))
                    .unwrap_or_else(|| ", and none has gone out".into())
            ),
        ));
        return None;
    }
    if d - start > horizon {
        notes.push(cx.skip(
            Some(id),
            SkipCode::BeyondHorizon,
            format!(
                "late fee period {period} began on {}, {} days ago, beyond the catch-up horizon of {horizon} days",
                day_text(inv.due_date, start),
                d - start
            ),
        ));
        return None;
    }
    let charged: Vec<ChargedFee> = cx
        .hist
        .actions
        .iter()
        .filter(|r| r.kind == ActionKind::LateFee)
        .filter_map(|r| {
            let m = r.fee.filter(|m| m.currency == inv.currency)?;
            Some(ChargedFee {
                period: r.period.unwrap_or(0),
                amount: m.amount,
                on: cx.local(r.at),
            })
        })
        .collect();
    let input = FeeInput {
        currency: inv.currency,
        invoice_total: inv.total,
        amount_due: inv.amount_due,
        due_date: inv.due_date,
        as_of: cx.today,
        period,
        balance_history: &cx.hist.balance_history,
        fees_charged: &charged,
        is_fee_invoice: inv.is_fee_invoice,
    };
    match quote_fee(fee, &input) {
        Ok(q) => Some((id, q, start)),
        Err(no) => {
            notes.push(cx.skip(
                Some(id),
                SkipCode::NoFee,
                format!("late fee step: {}", no.explanation),
            ));
            None
        }
    }
}

/// The last fee charged on the invoice, for the messages that mention it.
pub(super) fn latest_fee(hist: &InvoiceHistory) -> Option<(Money, DateTime<Utc>)> {
    hist.actions
        .iter()
        .filter(|r| r.kind == ActionKind::LateFee)
        .filter_map(|r| r.fee.map(|m| (m, r.at)))
        .max_by_key(|(_, at)| *at)
}
