//! The reminder track: the policy's remind/note/escalate steps, repeats of the last
//! reminder, and a pending "promise broken" message. Only the latest occurrence now due
//! is considered.

use overdued_connector::ActionKind;

use super::conduct::{self, Contact, CATCH_UP};
use super::promise::Broken;
use super::{day_text, Ctx, Occurrence, SkipCode, Skipped};
use crate::engine::policy::{Channel, CompiledPolicy, StepAction};

pub(super) struct Reminders {
    /// The whole track, for "what happens next".
    pub track: Vec<Occurrence>,
    /// The occurrences to act on today.
    pub picked: Vec<Occurrence>,
    pub notes: Vec<Skipped>,
    pub contact: Contact,
}

pub(super) fn pick(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    promise_broken: Option<&Broken>,
) -> Reminders {
    let inv = cx.inv;
    let d = cx.d;
    let horizon = cx.horizon;
    // A late-fee invoice is owed and gets the reminders, but neither a heads-up before it
    // is due nor an escalation of its own: referring a small fee to collection apart from
    // the invoice it belongs to would embarrass the owner.
    let mut track = reminder_track(policy, d);
    if inv.is_fee_invoice {
        track
            .retain(|o| o.day >= 0 && !matches!(o.action, StepAction::Escalate | StepAction::Note));
    }
    // The ladder runs from the last message actually sent: each later step keeps its gap.
    let contact = Contact::read(cx, &track);
    for o in &mut track {
        o.day = contact.paced(o.day);
    }
    let customer_channel = policy
        .steps
        .iter()
        .rev()
        .find(|s| s.action == StepAction::Remind && s.channel.to_customer())
        .map_or(Channel::Email, |s| s.channel);
    let broken_sent_day = cx
        .hist
        .actions
        .iter()
        .filter(|r| r.kind == ActionKind::Remind && r.step_id.starts_with("promise/"))
        .map(|r| (cx.local(r.at) - inv.due_date).num_days())
        .max();
    if let Some((id, day)) = promise_broken {
        let plan = id.strip_prefix("promise/plan-");
        track.push(Occurrence {
            day: *day,
            step_id: id.clone(),
            action: StepAction::Remind,
            template: Some(
                if plan.is_some() {
                    "plan_missed"
                } else {
                    "promise_broken"
                }
                .into(),
            ),
            // By the way the policy reaches the customer; a plan's end in overdued's own
            // words where it has its own email, like the plan's other messages.
            channel: if plan.is_some() && policy.tone_by_smtp && customer_channel == Channel::Email
            {
                Channel::Smtp
            } else {
                customer_channel
            },
            label: match plan {
                Some(p) => format!("payment plan {p} missed"),
                None => format!("promise broken ({})", id.trim_start_matches("promise/")),
            },
        });
        track.sort_by_key(|o| o.day);
    }
    // Taken back from collection: reminders again from the day chasing resumed, then at
    // the policy's repeat interval (14 days without one), by the last reminder that
    // announces no consequence (a final notice would name a referral already made), by
    // its channel; a promise-broken message on the same day speaks for it.
    if let (Some(from), Some(last)) = (
        cx.hist.chasing_resumed_on,
        policy.steps.iter().rev().find(|s| {
            s.action == StepAction::Remind
                && !s
                    .template
                    .as_deref()
                    .is_some_and(|t| crate::engine::policy::NOTICE_TEMPLATES.contains(&t))
        }),
    ) {
        let start = (from - inv.due_date).num_days();
        let every = policy
            .repeat
            .as_ref()
            .map_or(14, |r| i64::from(r.every_days.max(1)));
        let mut n = 0i64;
        loop {
            let day = start + n * every;
            if day > d.max(start) + every {
                break;
            }
            if !track.iter().any(|o| o.day == day) {
                track.push(Occurrence {
                    day,
                    step_id: if n == 0 {
                        format!("resumed/{from}")
                    } else {
                        format!("resumed/{from}/r{n}")
                    },
                    action: StepAction::Remind,
                    template: last.template.clone(),
                    channel: last.channel,
                    label: format!("chasing resumed on {from} ({})", n + 1),
                });
            }
            n += 1;
        }
        track.sort_by_key(|o| o.day);
    }

    let mut picked: Vec<Occurrence> = Vec::new();
    let mut notes: Vec<Skipped> = Vec::new();
    let latest_day = track.iter().filter(|o| o.day <= d).map(|o| o.day).max();
    // Only while it can still be sent: a promise-broken message past the catch-up
    // horizon is dropped and the ordinary sequence takes over again.
    let broken_pending = promise_broken.filter(|(id, day)| {
        !cx.is_done(ActionKind::Remind, id) && *day <= d && d - *day <= horizon
    });
    // An invoice the customer has not heard about from us gets a courteous catch-up
    // first, whatever its age and whatever step is due: adopted invoices always, others
    // when the due step is one with consequences. But a broken payment plan's message is
    // the first word after it, whatever else is due.
    let plan_missed_first = broken_pending.is_some_and(|(id, _)| id.starts_with("promise/plan-"));
    if let Some(day) = latest_day.filter(|_| contact.sent.is_empty() && d > 0 && !plan_missed_first)
    {
        let group: Vec<&Occurrence> = track.iter().filter(|o| o.day == day).collect();
        let plain = group.iter().any(|o| {
            o.action == StepAction::Remind && o.channel.to_customer() && !conduct::needs_notice(o)
        });
        if contact.adopted || !plain {
            let why = if contact.adopted {
                "adopted: overdued first saw it already past due"
            } else {
                "the customer has had no reminder about it"
            };
            for o in &group {
                notes.push(cx.skip(
                    Some(o.step_id.clone()),
                    SkipCode::AwaitingNotice,
                    format!("{} held: {why}, so the first message is a courteous catch-up; the ladder runs on from it", o.label),
                ));
            }
            // Say what follows as it will follow: once sent, the catch-up stands for the
            // latest reminder due and the later steps keep their gaps from today.
            let stood = track
                .iter()
                .filter(|o| o.action == StepAction::Remind && o.channel.to_customer() && o.day <= d)
                .map(|o| o.day)
                .max()
                .unwrap_or(d);
            for o in &mut track {
                if o.day > stood && !o.step_id.starts_with("promise/") {
                    o.day += d - stood;
                }
            }
            picked.push(Occurrence {
                day: d,
                step_id: CATCH_UP.into(),
                action: StepAction::Remind,
                template: Some(CATCH_UP.into()),
                channel: customer_channel,
                label: format!("catch-up reminder ({why})"),
            });
            return Reminders {
                track,
                picked,
                notes,
                contact,
            };
        }
    }
    let covered = |o: &Occurrence| {
        !o.step_id.starts_with("promise/") && contact.caught_up_to.is_some_and(|c| o.day <= c)
    };
    if let Some(day) = latest_day {
        let group: Vec<&Occurrence> = track.iter().filter(|o| o.day == day).collect();
        let escalating = group.iter().any(|o| o.action == StepAction::Escalate);
        let undone: Vec<&Occurrence> = group
            .iter()
            .copied()
            .filter(|o| {
                !covered(o)
                    && expand(o)
                        .iter()
                        .any(|(k, _, _)| !cx.is_done(*k, &o.step_id))
            })
            .collect();
        let late = d - day;
        if undone.is_empty() {
            let when = group
                .iter()
                .flat_map(|o| {
                    expand(o)
                        .into_iter()
                        .filter_map(|(k, _, _)| cx.done.get(&cx.key(k, &o.step_id)))
                })
                .map(|r| cx.local(r.at))
                .max();
            notes.push(cx.skip(
                Some(group[0].step_id.clone()),
                SkipCode::AlreadyDone,
                match when {
                    None if covered(group[0]) => {
                        format!("{} covered by the catch-up reminder", group[0].label)
                    }
                    _ => format!(
                        "{} already done{}",
                        group[0].label,
                        when.map(|w| format!(" on {w}")).unwrap_or_default()
                    ),
                },
            ));
        } else if late > horizon && !escalating {
            for o in &undone {
                notes.push(cx.skip(
                    Some(o.step_id.clone()),
                    SkipCode::BeyondHorizon,
                    format!(
                        "{} was due on {}, {late} days ago, beyond the catch-up horizon of {horizon} days",
                        o.label,
                        day_text(inv.due_date, day)
                    ),
                ));
            }
        } else {
            for o in undone {
                // A pending "promise broken" message speaks for the reminders missed
                // during the promise; once sent, it supersedes them.
                let is_broken_msg = o.step_id.starts_with("promise/");
                let superseded = o.action == StepAction::Remind
                    && !is_broken_msg
                    && (broken_pending.is_some() || broken_sent_day.is_some_and(|b| b >= o.day));
                if superseded && !escalating {
                    notes.push(cx.skip(
                        Some(o.step_id.clone()),
                        SkipCode::AlreadyDone,
                        format!("{} superseded by the promise-broken message", o.label),
                    ));
                } else {
                    picked.push(o.clone());
                }
            }
        }
    }
    // A promise-broken message due on a day with no other occurrence is its own group;
    // when a later step is the latest group, still send it unless that group escalates.
    if let Some((id, day)) = broken_pending {
        let escalating = picked.iter().any(|o| o.action == StepAction::Escalate);
        if !escalating && !picked.iter().any(|o| &o.step_id == id) && *day <= d {
            picked.retain(|o| o.action != StepAction::Remind);
            if let Some(o) = track.iter().find(|o| &o.step_id == id) {
                picked.push(o.clone());
            }
        }
    }
    hold_for_notice(cx, policy, &contact, &track, &mut picked, &mut notes);
    Reminders {
        track,
        picked,
        notes,
        contact,
    }
}

/// Holds back what has consequences until the customer was warned `notice_days` before;
/// an escalation waits for the final notice that announces it, which is sent first when
/// it never went out.
fn hold_for_notice(
    cx: &Ctx<'_>,
    policy: &CompiledPolicy,
    contact: &Contact,
    track: &[Occurrence],
    picked: &mut Vec<Occurrence>,
    notes: &mut Vec<Skipped>,
) {
    let notice = policy.notice_days;
    let today = cx.today;
    let mut announce: Option<Occurrence> = None;
    let mut held = Vec::new();
    picked.retain(|o| {
        if !conduct::needs_notice(o) {
            return true;
        }
        if contact.warned(today, notice).is_none() {
            let last = contact
                .sent
                .last()
                .map(|l| format!("the last reminder went out on {l}"))
                .unwrap_or_else(|| "no reminder has gone out".into());
            held.push(cx.skip(
                Some(o.step_id.clone()),
                SkipCode::AwaitingNotice,
                format!("{} held: it needs a reminder at least {notice} days before (notice_days) and {last}; it comes later", o.label),
            ));
            return false;
        }
        if o.action != StepAction::Escalate || contact.announced(policy, today, notice).is_some() {
            return true;
        }
        // The final notice: the last reminder to the customer before the escalation.
        let fin = track
            .iter()
            .rev()
            .filter(|f| f.action == StepAction::Remind && f.channel.to_customer() && f.day < o.day)
            .find(|f| !f.step_id.starts_with("promise/"));
        let sent = fin.is_some_and(|f| cx.is_done(ActionKind::Remind, &f.step_id));
        if let (Some(f), false) = (fin, sent) {
            announce = Some(f.clone());
        }
        held.push(cx.skip(
            Some(o.step_id.clone()),
            SkipCode::AwaitingNotice,
            format!(
                "{} held: escalation comes at least {notice} days (notice_days) after the final notice announcing it, {}",
                o.label,
                if sent { "which went out too recently" } else { "which is sent first" }
            ),
        ));
        false
    });
    notes.extend(held);
    if let Some(f) = announce {
        if !picked.iter().any(|p| p.step_id == f.step_id) {
            picked.retain(|p| p.action != StepAction::Remind);
            picked.push(f);
        }
    }
}

/// The planned actions one occurrence stands for: escalation also writes a ledger note.
pub(super) fn expand(o: &Occurrence) -> Vec<(ActionKind, Channel, Option<String>)> {
    match o.action {
        StepAction::Escalate => vec![
            (
                ActionKind::Note,
                Channel::Ledger,
                Some("escalation_note".into()),
            ),
            (ActionKind::Escalate, o.channel, None),
        ],
        a => vec![(a.kind(), o.channel, None)],
    }
}

/// The reminder track: every non-fee step, then repeats of the last reminder up to the
/// limit, before escalation, and far enough past `today_day` to say what comes next.
fn reminder_track(policy: &CompiledPolicy, today_day: i64) -> Vec<Occurrence> {
    let mut out: Vec<Occurrence> = policy
        .steps
        .iter()
        // A call step is a task for a person (`overdued calls`), not an action.
        .filter(|s| !matches!(s.action, StepAction::LateFee | StepAction::Call))
        .map(|s| Occurrence {
            day: s.day,
            step_id: s.id.clone(),
            action: s.action,
            template: s.template.clone(),
            channel: s.channel,
            label: format!("step {}", s.id),
        })
        .collect();
    if let (Some(r), Some(last)) = (
        &policy.repeat,
        policy
            .steps
            .iter()
            .rev()
            .find(|s| s.action == StepAction::Remind),
    ) {
        let every = i64::from(r.every_days.max(1));
        let mut n: u32 = 1;
        loop {
            let day = last.day + i64::from(n) * every;
            if r.max.is_some_and(|m| n > m)
                || policy.escalation_day.is_some_and(|e| day >= e)
                || day > today_day.max(last.day) + every
            {
                break;
            }
            out.push(Occurrence {
                day,
                step_id: format!("{}/r{n}", last.id),
                action: StepAction::Remind,
                template: last.template.clone(),
                channel: last.channel,
                label: format!("repeat {n} of step {}", last.id),
            });
            n += 1;
        }
    }
    out.sort_by_key(|o| o.day);
    out
}
