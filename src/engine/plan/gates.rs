//! What stops everything for an invoice before any track is looked at: not open, nothing
//! due, excluded, escalated, paused, below the minimum.

use overdued_connector::{ActionKind, InvoiceStatus, Money};
use rust_decimal::Decimal;

use super::{Ctx, PlanError, PlanInputs, SkipCode, Skipped};
use crate::engine::policy::{CompiledPolicy, Resolution};

/// The invoice's policy, or the one reason nothing is done for it.
pub(super) fn policy_for<'p>(
    inputs: &PlanInputs<'p>,
    cx: &Ctx<'_>,
) -> Result<Result<&'p CompiledPolicy, Skipped>, PlanError> {
    let inv = cx.inv;
    let hist = cx.hist;
    let stop = |code: SkipCode, reason: String| Ok(Err(cx.skip(None, code, reason)));

    if !inv.status.is_open() {
        let what = match inv.status {
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Voided => "voided",
            InvoiceStatus::Deleted => "deleted",
            InvoiceStatus::Draft => "a draft (not issued)",
            InvoiceStatus::Open => "open",
        };
        return stop(SkipCode::NotOpen, format!("invoice is {what}"));
    }
    if inv.amount_due <= Decimal::ZERO {
        return stop(
            SkipCode::NothingDue,
            format!("nothing due ({})", inv.due_money().display_human()),
        );
    }
    let payer = hist.payer_profile;
    let policy = match inputs
        .policies
        .resolve_for_payer(inputs.default_policy, inv, payer)
    {
        None => return Err(PlanError::UnknownPolicy(inputs.default_policy.to_string())),
        Some(Resolution::Excluded { reason }) => return stop(SkipCode::Excluded, reason),
        Some(Resolution::Policy { policy, .. }) => policy,
    };
    if let Some(m) = policy.marker_in(&inv.memo) {
        return stop(
            SkipCode::Excluded,
            format!("memo contains the exclusion marker {m:?}"),
        );
    }
    let escalated_on = hist
        .actions
        .iter()
        .filter(|r| r.kind == ActionKind::Escalate)
        .map(|r| r.at)
        .min();
    // Taken back into the ladder: the escalation stays done and is not repeated.
    let resumed = hist.chasing_resumed_on.is_some();
    if (hist.escalated || escalated_on.is_some()) && !resumed {
        let when = escalated_on
            .map(|t| format!(" on {}", cx.local(t)))
            .unwrap_or_default();
        return stop(
            SkipCode::Escalated,
            format!("marked for collection{when}; automatic actions stopped"),
        );
    }
    if let Some(p) = hist.pause.as_ref().filter(|p| p.active_on(cx.today)) {
        return stop(
            SkipCode::Paused,
            format!("invoice paused: {}", p.describe()),
        );
    }
    if let Some(p) = hist
        .customer_pause
        .as_ref()
        .filter(|p| p.active_on(cx.today))
    {
        return stop(
            SkipCode::CustomerPaused,
            format!("customer paused: {}", p.describe()),
        );
    }
    if inv.amount_due < policy.minimum_amount_due {
        return stop(
            SkipCode::BelowMinimum,
            format!(
                "{} due is below the minimum {}",
                inv.due_money().display_human(),
                Money::new(policy.minimum_amount_due, inv.currency).amount_human()
            ),
        );
    }
    Ok(Ok(policy))
}
