//! The promise track: a promise still standing stops chasing; a broken one schedules a
//! "promise broken" message.

use chrono::Duration;

use super::{Ctx, SkipCode, Skipped};

/// A broken promise's message: its step id (`"promise/2026-11-20"`) and its day.
pub(super) type Broken = (String, i64);

/// `Err`: a promise is still standing (nothing is done); `Ok(Some)`: it was broken.
pub(super) fn broken(cx: &Ctx<'_>) -> Result<Option<Broken>, Skipped> {
    let Some(pr) = &cx.hist.promise else {
        return Ok(None);
    };
    let inv = cx.inv;
    let grace_end = pr.until + Duration::days(i64::from(cx.settings.promise_grace_days));
    if cx.today <= grace_end {
        return Err(cx.skip(
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
    Ok((!kept).then(|| {
        (
            format!("promise/{}", pr.until),
            (grace_end - inv.due_date).num_days() + 1,
        )
    }))
}
