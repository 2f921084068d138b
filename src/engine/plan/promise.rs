//! The promise track: a promise still standing stops chasing; a broken one schedules a
//! "promise broken" message.

use chrono::Duration;

use super::{Ctx, SkipCode, Skipped};

/// A broken promise's message: its step id (`"promise/2026-11-20"`) and its day.
pub(super) type Broken = (String, i64);

pub(super) enum PromiseState {
    None,
    /// Still standing: nothing is done, for this reason.
    Standing(Skipped),
    Broken(Broken),
}

pub(super) fn state(cx: &Ctx<'_>) -> PromiseState {
    let Some(pr) = &cx.hist.promise else {
        return PromiseState::None;
    };
    let inv = cx.inv;
    let grace_end = pr.until + Duration::days(i64::from(cx.settings.promise_grace_days));
    if cx.today <= grace_end {
        return PromiseState::Standing(cx.skip(
            None,
            SkipCode::PromiseActive,
            format!(
                "promise to pay by {} (not chased until after {grace_end})",
                pr.until
            ),
        ));
    }
    let tolerance = cx.settings.promise_tolerance;
    let kept = inv.amount_due <= tolerance
        || match (pr.amount, pr.balance_when_made) {
            (Some(a), Some(b)) => b - inv.amount_due + tolerance >= a,
            _ => false,
        };
    if kept {
        return PromiseState::None;
    }
    PromiseState::Broken((
        format!("promise/{}", pr.until),
        (grace_end - inv.due_date).num_days() + 1,
    ))
}
