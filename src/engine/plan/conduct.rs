//! Conduct toward the customer, whatever the policy's offsets say: an invoice first seen
//! already past due is *adopted* and hears from us first by a courteous catch-up; the
//! ladder runs from the last message actually sent; and nothing with consequences (a
//! fee, a stop-work or final notice, an escalation) comes without a reminder at least
//! `notice_days` before it.

use chrono::{Duration, NaiveDate};
use overdued_connector::ActionKind;

use super::{Ctx, Occurrence};
use crate::engine::policy::{CompiledPolicy, StepAction, NOTICE_TEMPLATES};

/// The step id and template of the catch-up reminder.
pub const CATCH_UP: &str = "catch_up";

/// What the customer has heard from us about the invoice.
pub(super) struct Contact {
    /// Dates of the reminders sent, oldest first.
    pub sent: Vec<NaiveDate>,
    /// First sighting by overdued came after the due date.
    pub adopted: bool,
    /// How many days the rest of the ladder runs behind the policy's offsets because a
    /// catch-up was sent later than the step it spoke for.
    pub shift: i64,
    /// The day (on the policy's scale) the latest catch-up stood for; later steps shift.
    pub last_stood_for: Option<i64>,
    /// Steps up to this day were spoken for by a catch-up message.
    pub caught_up_to: Option<i64>,
    /// (date, day it stood for) of every reminder sent, to find the one that announced
    /// escalation.
    pub stood: Vec<(NaiveDate, i64)>,
    /// A payment plan that ended: (the policy day the ladder stood at when it was agreed,
    /// the days it lasted). A fee already running then does not count the kept days.
    pub plan_hold: Option<(i64, i64)>,
    /// `last_stood_for` and `shift` as the catch-up alone set them.
    catch_up_pacing: (Option<i64>, i64),
}

impl Contact {
    pub fn read(cx: &Ctx<'_>, track: &[Occurrence]) -> Contact {
        let due = cx.inv.due_date;
        let mut reminds: Vec<_> = cx
            .hist
            .actions
            .iter()
            // A payment plan's instalment messages are not ladder steps and state no fee
            // terms: they neither pace the ladder nor count as notice.
            .filter(|r| {
                r.kind == ActionKind::Remind
                    && !r.step_id.starts_with("instalment/")
                    && !r.step_id.starts_with("plan/")
            })
            .collect();
        reminds.sort_by_key(|r| r.at);
        let customer_days: Vec<i64> = track
            .iter()
            .filter(|o| o.action == StepAction::Remind && o.channel.to_customer())
            .map(|o| o.day)
            .collect();
        let mut stood = Vec::new();
        let mut caught_up_to = None;
        for r in &reminds {
            let date = cx.local(r.at);
            let sent_day = (date - due).num_days();
            let day = if r.step_id == CATCH_UP {
                // It spoke for the latest reminder due when it went out.
                let d = customer_days
                    .iter()
                    .copied()
                    .filter(|d| *d <= sent_day)
                    .max()
                    .unwrap_or(sent_day);
                caught_up_to = Some(caught_up_to.map_or(d, |c: i64| c.max(d)));
                d
            } else {
                track
                    .iter()
                    .find(|o| o.step_id == r.step_id)
                    .map_or(sent_day, |o| o.day)
            };
            stood.push((date, day));
        }
        // Only a catch-up moves the ladder: it stands for a step the customer never had
        // on its day, and the steps after it keep their gaps from it, for good. A step
        // merely caught up a few days late (downtime, a weekend) does not.
        let last = reminds
            .iter()
            .zip(&stood)
            .rev()
            .find(|(r, _)| r.step_id == CATCH_UP)
            .map(|(_, s)| *s);
        let mut shift = last.map_or(0, |(date, day)| ((date - due).num_days() - day).max(0));
        let mut last_stood_for = last.map(|(_, day)| day);
        let mut plan_hold = None;
        let catch_up_pacing = (last_stood_for, shift);
        // A payment plan that ended (broken or cancelled) held the ladder where it stood
        // when it was agreed: the steps not yet due then come later by the plan's time.
        if let Some((agreed, ended)) = cx.hist.arrangement.as_ref().and_then(|a| a.ended()) {
            let at = (agreed - due).num_days() - shift;
            let gap = (ended - agreed).num_days().max(0);
            last_stood_for = Some(last_stood_for.map_or(at, |s| s.max(at)));
            shift += gap;
            plan_hold = Some((at, gap));
        }
        Contact {
            sent: stood.iter().map(|(d, _)| *d).collect(),
            adopted: cx.hist.first_seen_at.is_some_and(|t| cx.local(t) > due),
            shift,
            last_stood_for,
            caught_up_to,
            stood,
            plan_hold,
            catch_up_pacing,
        }
    }

    /// [`Contact::paced`] as if no payment plan had held the ladder.
    pub fn paced_before_plan(&self, day: i64) -> i64 {
        match self.catch_up_pacing {
            (Some(s), shift) if day > s => day + shift,
            _ => day,
        }
    }

    /// The policy day `day` falls on once the ladder runs from the last message sent.
    pub fn paced(&self, day: i64) -> i64 {
        match self.last_stood_for {
            Some(s) if day > s => day + self.shift,
            _ => day,
        }
    }

    /// Reminders sent at least `notice` days before `today`.
    pub fn warned(&self, today: NaiveDate, notice: i64) -> Option<NaiveDate> {
        self.sent
            .iter()
            .copied()
            .find(|d| *d <= today - Duration::days(notice))
    }

    /// When a message announcing escalation (the final notice, or a catch-up that spoke
    /// for it) went out, at least `notice` days before `today`.
    pub fn announced(
        &self,
        policy: &CompiledPolicy,
        today: NaiveDate,
        notice: i64,
    ) -> Option<NaiveDate> {
        let final_day = final_notice_day(policy)?;
        self.stood
            .iter()
            .filter(|(date, day)| *day >= final_day && *date <= today - Duration::days(notice))
            .map(|(date, _)| *date)
            .next()
    }
}

/// The policy day of the final notice: the last reminder to the customer before the
/// escalate step, which tells the customer it is coming.
pub(super) fn final_notice_day(policy: &CompiledPolicy) -> Option<i64> {
    let e = policy.escalation_day?;
    policy
        .steps
        .iter()
        .rev()
        .find(|s| s.reaches_customer() && s.day < e)
        .map(|s| s.day)
}

/// An occurrence that must follow a reminder by `notice_days`.
pub(super) fn needs_notice(o: &Occurrence) -> bool {
    match o.action {
        StepAction::Escalate | StepAction::LateFee => true,
        StepAction::Remind => o
            .template
            .as_deref()
            .is_some_and(|t| NOTICE_TEMPLATES.contains(&t)),
        StepAction::Note | StepAction::Call => false,
    }
}

/// The template for a reminder given the invoice's real state, not the step's name: no
/// "due today" off the due day, and a catch-up when the customer has not heard from us.
pub(super) fn template_for(step_template: &str, d: i64, reminded_before: bool) -> &str {
    const LADDER: &[&str] = &[
        "heads_up",
        "due_today",
        "follow_up",
        "firm",
        "stop_work",
        "final_notice",
    ];
    match step_template {
        t if d > 0 && !reminded_before && LADDER.contains(&t) => CATCH_UP,
        "heads_up" | "due_today" if d == 0 => "due_today",
        "heads_up" | "due_today" if d < 0 => "heads_up",
        "heads_up" | "due_today" => "follow_up",
        t => t,
    }
}
