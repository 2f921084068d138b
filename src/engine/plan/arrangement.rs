//! The payment-plan gate: while a plan is kept its invoices get no ordinary reminder,
//! fee or escalation, only the agreement's note in the ledger, a heads-up before each
//! instalment and a reminder on its day; a broken plan schedules one "plan missed"
//! message (on the promise-broken track), after which the ladder resumes where it stood
//! when the plan was agreed (see `conduct::Contact::read`).

use chrono::{Duration, NaiveDate};
use overdued_connector::{ActionKind, Currency, Money};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::promise::Broken;
use super::{Candidate, Ctx, PlanError, PlannedAction, SkipCode, Skipped};
use crate::arrangements::{Credited, Standing};
use crate::engine::dates::long_date;
use crate::engine::policy::{Channel, CompiledPolicy};
use crate::engine::templates::{render_message, MessageContext};

/// What the planner knows of the payment plan covering an invoice (the latest one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrangementCase {
    pub id: String,
    pub agreed_on: NaiveDate,
    pub standing: Standing,
    /// This invoice carries the plan's instalment messages: the first covered invoice
    /// still open, so a plan over several invoices sends one message per instalment.
    pub carrier: bool,
    /// The covered invoices' numbers, "1001, 1002".
    pub numbers: String,
    pub currency: Currency,
    /// The instalments with the payments credited to them in date order.
    pub instalments: Vec<Credited>,
    /// The ledger note written on each covered invoice once agreed.
    pub agreement_note: String,
    /// The number of the invoice carrying the plan's messages.
    #[serde(default)]
    pub carrier_number: String,
    /// The "plan missed" message went out (on the carrier).
    #[serde(default)]
    pub missed_sent: bool,
}

impl ArrangementCase {
    /// For a plan that is over before being paid: the day it was agreed and the day it
    /// ended. The ladder resumes where it stood on the first, late by the time between.
    pub fn ended(&self) -> Option<(NaiveDate, NaiveDate)> {
        match self.standing {
            Standing::Broken { on, .. } | Standing::Cancelled { on } => Some((self.agreed_on, on)),
            _ => None,
        }
    }

    /// The step id of the "plan missed" message, on the promise-broken track.
    pub fn missed_step(&self) -> String {
        missed_step(&self.id)
    }

    fn money(&self, a: Decimal) -> Money {
        Money::new(a, self.currency)
    }

    /// The instalments still to pay, one per line.
    fn remaining(&self) -> String {
        self.instalments
            .iter()
            .enumerate()
            .filter(|(_, c)| c.outstanding() > Decimal::ZERO)
            .map(|(i, c)| {
                let part = if c.paid > Decimal::ZERO {
                    format!(
                        " of {} (the rest paid)",
                        self.money(c.amount).display_human()
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}. {}: {}{part}",
                    i + 1,
                    long_date(c.due),
                    self.money(c.outstanding()).display_human()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fills the plan's placeholders; `index` is the instalment the message is about.
    pub fn fill(&self, ctx: &mut MessageContext, index: Option<usize>) {
        ctx.plan_id = self.id.clone();
        ctx.plan_invoices = self.numbers.clone();
        ctx.plan_schedule = self.remaining();
        if let Some(c) = index.and_then(|i| self.instalments.get(i)) {
            let i = index.unwrap_or(0);
            ctx.instalment_number = (i + 1).to_string();
            ctx.instalment_date = long_date(c.due);
            ctx.instalment_amount = self.money(c.outstanding()).display_human().to_string();
        }
    }
}

pub fn missed_step(plan_id: &str) -> String {
    format!("promise/plan-{plan_id}")
}

pub(super) enum Gate {
    /// No plan, or one that is over and left the ladder to run (cancelled, completed).
    None,
    /// A plan runs: these are the invoice's actions and skips today, nothing else.
    Running(Vec<Candidate>, Vec<Skipped>),
    /// The plan broke: its message, on the promise-broken track.
    Missed(Broken),
}

pub(super) fn gate(cx: &Ctx<'_>, policy: &CompiledPolicy) -> Result<Gate, PlanError> {
    let Some(a) = &cx.hist.arrangement else {
        return Ok(Gate::None);
    };
    let inv = cx.inv;
    match a.standing {
        Standing::Kept | Standing::Due { .. } => {}
        // One message says the plan has ended, on the invoice that carries its messages;
        // the others wait for it, then resume their ladders.
        Standing::Broken { on, .. } if a.carrier => {
            return Ok(Gate::Missed((
                a.missed_step(),
                (on - inv.due_date).num_days(),
            )))
        }
        Standing::Broken { .. } if !a.missed_sent => {
            return Ok(Gate::Running(
                vec![],
                vec![cx.skip(
                    None,
                    SkipCode::ArrangementActive,
                    format!(
                        "payment plan {} ended unpaid: chasing resumes once the message saying so has gone (with invoice {})",
                        a.id, a.carrier_number
                    ),
                )],
            ))
        }
        Standing::Broken { .. } => return Ok(Gate::None),
        Standing::Cancelled { .. } | Standing::Completed => return Ok(Gate::None),
    }
    let next = a
        .instalments
        .iter()
        .position(|c| c.outstanding() > Decimal::ZERO);
    let base =
        |kind: ActionKind, step_id: String, channel: Channel, reason: String| PlannedAction {
            connection: inv.connection.clone(),
            invoice_id: inv.remote_id.clone(),
            invoice_number: inv.display_number().to_string(),
            customer_id: inv.customer.id.clone(),
            kind,
            key: cx.key(kind, &step_id),
            step_id,
            channel,
            policy: policy.name.clone(),
            days_overdue: cx.d,
            message: None,
            template: None,
            context: None,
            ledger_text: None,
            fee: None,
            fee_posting: None,
            reason,
        };
    let mut candidates = Vec::new();
    let agreed_step = format!("plan/{}/agreed", a.id);
    if !cx.is_done(ActionKind::Note, &agreed_step) {
        let mut n = base(
            ActionKind::Note,
            agreed_step,
            Channel::Ledger,
            format!(
                "payment plan {} agreed: its schedule goes on the invoice",
                a.id
            ),
        );
        n.ledger_text = Some(a.agreement_note.clone());
        candidates.push(Candidate {
            action: n,
            email_reminder: false,
            render: false,
        });
    }
    // Where overdued has its own email the plan's messages carry its words; without it
    // the system's invoice email (which shows the balance) is what reaches the customer.
    let channel = if policy.tone_by_smtp {
        Channel::Smtp
    } else {
        Channel::Email
    };
    let render = |template: &str, ctx: &MessageContext| {
        let t = policy
            .template(template)
            .ok_or_else(|| PlanError::MissingTemplate {
                policy: policy.name.clone(),
                template: template.to_string(),
            })?;
        render_message(t, ctx).map_err(|error| PlanError::Template {
            policy: policy.name.clone(),
            template: template.to_string(),
            error,
        })
    };
    let confirm_step = format!("plan/{}/confirmation", a.id);
    let confirming =
        a.carrier && channel == Channel::Smtp && !cx.is_done(ActionKind::Remind, &confirm_step);
    if confirming {
        let ctx = context(cx, a, None);
        let mut r = base(
            ActionKind::Remind,
            confirm_step,
            channel,
            format!(
                "payment plan {} agreed: confirmation to the customer with its dates and amounts",
                a.id
            ),
        );
        r.message = Some(render("plan_agreed", &ctx)?);
        r.template = Some("plan_agreed".into());
        r.context = Some(ctx);
        candidates.push(Candidate {
            action: r,
            email_reminder: true,
            render: false,
        });
    }
    let mut skipped = Vec::new();
    let what = match next {
        Some(i) => format!(
            "in payment plan {} ({}; instalment {} of {} due {})",
            a.id,
            a.standing.label(),
            i + 1,
            a.money(a.instalments[i].outstanding()).display_human(),
            a.instalments[i].due
        ),
        None => format!("in payment plan {}", a.id),
    };
    if let (true, Some(i)) = (a.carrier, next) {
        let c = &a.instalments[i];
        let heads_up = i64::from(cx.settings.plan_heads_up_days);
        let due = c.due;
        let pick = if cx.today >= due {
            Some(("due", due))
        } else if heads_up > 0 && cx.today >= due - Duration::days(heads_up) {
            Some(("heads_up", due - Duration::days(heads_up)))
        } else {
            None
        };
        if let Some((kind, on)) = pick {
            let step = format!("instalment/{}/{}/{kind}", a.id, i + 1);
            let late = (cx.today - on).num_days();
            if confirming {
                // One message a day: the confirmation lists every date and amount.
                skipped.push(cx.skip(
                    Some(step),
                    SkipCode::AlreadyDone,
                    format!("{what}: the confirmation going today lists it; its {kind} message waits for tomorrow"),
                ));
            } else if cx.is_done(ActionKind::Remind, &step) {
                skipped.push(cx.skip(
                    Some(step),
                    SkipCode::AlreadyDone,
                    format!("{what}: the instalment's {kind} message already went"),
                ));
            } else if late > cx.horizon {
                skipped.push(cx.skip(
                    Some(step),
                    SkipCode::BeyondHorizon,
                    format!("{what}: its {kind} message fell on {on}, beyond the catch-up horizon"),
                ));
            } else {
                let template = format!("instalment_{kind}");
                let ctx = context(cx, a, Some(i));
                let message = render(&template, &ctx)?;
                let mut r = base(
                    ActionKind::Remind,
                    step,
                    channel,
                    format!(
                        "payment plan {}: instalment {} ({} due on {due}): {}",
                        a.id,
                        i + 1,
                        a.money(c.outstanding()).display_human(),
                        if kind == "due" {
                            "reminder on its day".to_string()
                        } else {
                            format!("heads-up {heads_up} day(s) before")
                        }
                    ),
                );
                r.message = Some(message);
                r.template = Some(template);
                r.context = Some(ctx);
                candidates.push(Candidate {
                    action: r,
                    email_reminder: true,
                    render: false,
                });
            }
        }
    }
    skipped.push(cx.skip(
        None,
        SkipCode::ArrangementActive,
        format!("{what}: no ordinary reminder, fee or escalation while it is kept"),
    ));
    Ok(Gate::Running(candidates, skipped))
}

/// The facts an instalment message is rendered with.
fn context(cx: &Ctx<'_>, a: &ArrangementCase, index: Option<usize>) -> MessageContext {
    let inv = cx.inv;
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
    let mut ctx = MessageContext {
        customer_name: inv.customer.name.clone(),
        customer_email: inv.customer.email.clone().unwrap_or_default(),
        invoice_number: inv.display_number().to_string(),
        amount_due: inv.due_money().display_human().to_string(),
        invoice_total: inv.total_money().display_human().to_string(),
        due_date: long_date(inv.due_date),
        days_overdue: cx.d.to_string(),
        today: long_date(cx.today),
        fee: "none".into(),
        pay_link,
        pay_line,
        ..MessageContext::default()
    };
    a.fill(&mut ctx, index);
    ctx
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, TimeZone, Utc};
    use rust_decimal_macros::dec;

    use super::*;
    use crate::arrangements::{Arrangement, CoveredInvoice, Instalment};
    use crate::engine::plan::tests_support::{invoice, record};
    use crate::engine::plan::{plan, InvoiceCase, InvoiceHistory, PlanInputs};
    use crate::engine::policy::{EngineSettings, Policy, PolicyBook};

    fn book() -> PolicyBook {
        book_with("[policies.default.late_fee]\nmodel = \"fixed\"\namount = \"25\"\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"late_fee\"\n")
    }

    fn book_with(fee: &str) -> PolicyBook {
        #[derive(serde::Deserialize)]
        struct Doc {
            policies: BTreeMap<String, Policy>,
        }
        let doc: Doc = toml::from_str(&format!(
            "[policies.default.send_window]\ncron = \"* * * * *\"\n[[policies.default.steps]]\noffset = \"0d\"\naction = \"remind\"\ntemplate = \"due_today\"\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\ntemplate = \"follow_up\"\n[[policies.default.steps]]\noffset = \"+14d\"\naction = \"remind\"\ntemplate = \"firm\"\n[[policies.default.steps]]\noffset = \"+30d\"\naction = \"remind\"\ntemplate = \"stop_work\"\n{fee}"
        ))
        .unwrap();
        PolicyBook::compile(&doc.policies).unwrap_or_else(|e| panic!("{e}"))
    }

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    fn at(d: NaiveDate) -> DateTime<Utc> {
        Utc.from_utc_datetime(&d.and_hms_opt(10, 0, 0).unwrap())
    }

    fn arrangement() -> Arrangement {
        Arrangement {
            id: "P1".into(),
            connection: "acme-qbo".into(),
            customer_id: "c1".into(),
            customer_name: "Customer c1".into(),
            currency: overdued_connector::Currency::USD,
            invoices: vec![CoveredInvoice {
                id: "1".into(),
                number: "101".into(),
                balance_when_agreed: dec!(300),
            }],
            instalments: [day(11, 20), day(12, 4), day(12, 18)]
                .into_iter()
                .map(|due| Instalment {
                    due,
                    amount: dec!(100),
                })
                .collect(),
            agreed_at: at(day(11, 10)),
            agreed_on: day(11, 10),
            cancelled_on: None,
            broken_on: None,
        }
    }

    /// Runs one invoice of 300 due 31 October from `from` to `to`, with the plan agreed on
    /// 10 November and `payments` (date, amount) applied; returns (date, step) of every
    /// action carried out.
    fn run(
        payments: &[(NaiveDate, rust_decimal::Decimal)],
        to: NaiveDate,
    ) -> Vec<(NaiveDate, String)> {
        run_cancelled(payments, to, None)
    }

    fn run_cancelled(
        payments: &[(NaiveDate, rust_decimal::Decimal)],
        to: NaiveDate,
        cancelled_on: Option<NaiveDate>,
    ) -> Vec<(NaiveDate, String)> {
        run_in(&book(), payments, to, cancelled_on)
    }

    fn run_in(
        book: &PolicyBook,
        payments: &[(NaiveDate, rust_decimal::Decimal)],
        to: NaiveDate,
        cancelled_on: Option<NaiveDate>,
    ) -> Vec<(NaiveDate, String)> {
        let settings = EngineSettings::default();
        let mut case = InvoiceCase {
            invoice: invoice("1", "c1", 300),
            history: InvoiceHistory::default(),
        };
        case.history.first_seen_at = Some(at(day(10, 1)));
        let plan_rec = arrangement();
        let mut log = Vec::new();
        let mut today = day(10, 31);
        while today <= to {
            for (on, amount) in payments {
                if *on == today {
                    case.invoice.amount_due -= *amount;
                }
            }
            if today >= plan_rec.agreed_on {
                let paid = plan_rec.paid(&|_| Some(case.invoice.amount_due));
                let mut p = plan_rec.clone();
                p.cancelled_on = cancelled_on.filter(|c| *c <= today);
                if let Some(r) = case
                    .history
                    .actions
                    .iter()
                    .find(|r| r.step_id == missed_step("P1"))
                {
                    p.broken_on = Some(r.at.date_naive());
                }
                case.history.arrangement = Some(ArrangementCase {
                    id: "P1".into(),
                    agreed_on: p.agreed_on,
                    standing: p.standing(paid, today, settings.plan_grace_days),
                    carrier: true,
                    numbers: p.numbers(),
                    currency: p.currency,
                    instalments: p.credited(paid),
                    agreement_note: p.agreement_note(),
                    carrier_number: "101".into(),
                    missed_sent: false,
                });
            }
            if case.invoice.amount_due <= rust_decimal::Decimal::ZERO {
                case.invoice.status = overdued_connector::InvoiceStatus::Paid;
            }
            let cases = vec![case.clone()];
            let pl = plan(&PlanInputs {
                now: at(today),
                time_zone: chrono_tz::UTC,
                settings: &settings,
                policies: book,
                default_policy: "default",
                ledger: "quickbooks:1",
                invoices: &cases,
            })
            .unwrap();
            for a in &pl.actions {
                if a.step_id.starts_with("instalment/") || a.step_id.starts_with("promise/plan") {
                    let m = a.message.as_ref().unwrap();
                    assert!(m.body.contains("https://pay.example/x"), "{}", m.body);
                }
                case.history.actions.push(record(a, at(today)));
                log.push((today, a.step_id.clone()));
            }
            today += Duration::days(1);
        }
        log
    }

    fn steps(log: &[(NaiveDate, String)], from: NaiveDate) -> Vec<(NaiveDate, &str)> {
        log.iter()
            .filter(|(d, _)| *d >= from)
            .map(|(d, s)| (*d, s.as_str()))
            .collect()
    }

    #[test]
    fn a_kept_plan_sends_only_its_own_messages_and_credits_part_payments() {
        let log = run(
            &[
                (day(11, 19), dec!(100)),
                // The second instalment in two parts, the second within the grace days.
                (day(12, 3), dec!(50)),
                (day(12, 6), dec!(50)),
                (day(12, 19), dec!(100)),
            ],
            day(12, 31),
        );
        assert_eq!(
            steps(&log, day(11, 10)),
            [
                (day(11, 10), "plan/P1/agreed"),
                (day(11, 17), "instalment/P1/1/heads_up"),
                // Paid the day before: no reminder on the first instalment's day.
                (day(12, 1), "instalment/P1/2/heads_up"),
                (day(12, 4), "instalment/P1/2/due"),
                (day(12, 15), "instalment/P1/3/heads_up"),
                (day(12, 18), "instalment/P1/3/due"),
            ]
        );
        // Before the plan the ladder ran as usual.
        assert!(
            steps(&log, day(10, 31)).contains(&(day(11, 7), "+7d")),
            "{log:?}"
        );
    }

    #[test]
    fn a_missed_instalment_ends_the_plan_with_its_message_first_then_the_ladder_resumes() {
        let log = run(&[], day(12, 31));
        let after = steps(&log, day(11, 10));
        assert_eq!(
            &after[..4],
            [
                (day(11, 10), "plan/P1/agreed"),
                (day(11, 17), "instalment/P1/1/heads_up"),
                (day(11, 20), "instalment/P1/1/due"),
                // Grace of 3 days: broken on the 24th, and that day's message says so.
                (day(11, 24), "promise/plan-P1"),
            ],
            "{after:?}"
        );
        // The ladder stood at +7d when the plan was agreed on day 10: the next step
        // (+14d) comes 14 days (the plan's time) late, on day 28; the fee and stop-work
        // of +30d likewise on day 44, after the notice they need.
        assert_eq!(after[4], (day(11, 28), "+14d"), "{after:?}");
        assert!(after.contains(&(day(12, 14), "+30d/p0")), "{after:?}");
        assert!(
            !after.iter().any(|(d, s)| *d < day(11, 24)
                && !s.starts_with("instalment/")
                && !s.starts_with("plan/")),
            "{after:?}"
        );
    }

    #[test]
    fn a_cancelled_plan_resumes_the_ladder_where_it_stood_without_a_message() {
        // Cancelled on the 18th, after the first heads-up, before any instalment is due.
        let log = run_cancelled(&[], day(12, 31), Some(day(11, 18)));
        let after = steps(&log, day(11, 10));
        assert_eq!(
            &after[..3],
            [
                (day(11, 10), "plan/P1/agreed"),
                (day(11, 17), "instalment/P1/1/heads_up"),
                // Agreed on day 10 after +7d; the plan held it 8 days: +14d on day 22.
                (day(11, 22), "+14d"),
            ],
            "{after:?}"
        );
        assert!(
            !after.iter().any(|(_, s)| s.starts_with("promise/plan")),
            "{after:?}"
        );
    }

    #[test]
    fn a_fee_running_when_the_plan_was_agreed_does_not_count_the_kept_days() {
        // A fee every 10 days from +7d: period 0 on 7 November, before the plan.
        let book = book_with(
            "[policies.default.late_fee]\nmodel = \"fixed\"\namount = \"25\"\nevery_days = 10\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"late_fee\"\n",
        );
        let log = run_in(&book, &[], day(12, 31), None);
        let fees: Vec<(NaiveDate, &str)> = steps(&log, day(10, 31))
            .into_iter()
            .filter(|(_, s)| s.starts_with("+7d/"))
            .collect();
        // Agreed on day 10 (period 1 would start on day 17), broken and told on the 24th:
        // 14 kept days, so period 1 starts on day 31, 1 December, not at once on the 24th.
        assert_eq!(
            fees[..3],
            [
                (day(11, 7), "+7d/p0"),
                (day(12, 1), "+7d/p1"),
                (day(12, 11), "+7d/p2"),
            ],
            "{log:?}"
        );
    }

    #[test]
    fn fees_during_plan_keeps_the_fee_running_through_the_plan() {
        let book = book_with(
            "[policies.default]\nfees_during_plan = true\n[policies.default.late_fee]\nmodel = \"fixed\"\namount = \"25\"\nevery_days = 10\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"late_fee\"\n",
        );
        let log = run_in(&book, &[], day(12, 31), None);
        let fees: Vec<(NaiveDate, &str)> = steps(&log, day(10, 31))
            .into_iter()
            .filter(|(_, s)| s.starts_with("+7d/"))
            .collect();
        // Every 10 days from day 7, the kept days included, and nothing moved after.
        assert_eq!(
            fees[..4],
            [
                (day(11, 7), "+7d/p0"),
                (day(11, 17), "+7d/p1"),
                (day(11, 27), "+7d/p2"),
                (day(12, 7), "+7d/p3"),
            ],
            "{log:?}"
        );
        // The plan's own messages still went, and no ordinary reminder while it was kept.
        assert!(log.contains(&(day(11, 17), "instalment/P1/1/heads_up".to_string())));
        assert!(!log
            .iter()
            .any(|(d, s)| *d > day(11, 10) && *d < day(11, 24) && s == "+14d"));
    }

    /// A plan over two invoices of one customer, through [`crate::arrangements::attach`]
    /// and the store: the first open invoice carries the plan's messages, and after a
    /// miss the other waits for the one "plan missed" message before its ladder resumes.
    #[test]
    fn a_plan_over_two_invoices_sends_each_message_once() {
        use crate::store::{SledStore, Store};
        let book = book();
        let settings = EngineSettings::default();
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut p = arrangement();
        p.invoices.push(CoveredInvoice {
            id: "2".into(),
            number: "102".into(),
            balance_when_agreed: dec!(200),
        });
        p.instalments = vec![
            Instalment {
                due: day(11, 20),
                amount: dec!(250),
            },
            Instalment {
                due: day(12, 4),
                amount: dec!(250),
            },
        ];
        store.put_arrangement(&p).unwrap();
        let mut cases = vec![
            InvoiceCase {
                invoice: invoice("1", "c1", 300),
                history: InvoiceHistory::default(),
            },
            InvoiceCase {
                invoice: invoice("2", "c1", 200),
                history: InvoiceHistory::default(),
            },
        ];
        for c in &mut cases {
            c.history.first_seen_at = Some(at(day(10, 1)));
        }
        let mut log: Vec<(NaiveDate, String, String)> = Vec::new();
        let mut today = day(11, 10);
        while today <= day(12, 10) {
            for c in &mut cases {
                c.history.arrangement = None;
            }
            crate::arrangements::attach(
                &store,
                "acme-qbo",
                &mut cases,
                today,
                chrono_tz::UTC,
                &settings,
            )
            .unwrap();
            let pl = plan(&PlanInputs {
                now: at(today),
                time_zone: chrono_tz::UTC,
                settings: &settings,
                policies: &book,
                default_policy: "default",
                ledger: "quickbooks:1",
                invoices: &cases,
            })
            .unwrap();
            for a in &pl.actions {
                let c = cases
                    .iter_mut()
                    .find(|c| c.invoice.remote_id == a.invoice_id)
                    .unwrap();
                c.history.actions.push(record(a, at(today)));
                log.push((today, a.invoice_id.clone(), a.step_id.clone()));
            }
            today += Duration::days(1);
        }
        let on = |inv: &str| -> Vec<(NaiveDate, &str)> {
            log.iter()
                .filter(|(_, i, _)| i == inv)
                .map(|(d, _, s)| (*d, s.as_str()))
                .collect()
        };
        let first = on("1");
        let second = on("2");
        assert_eq!(
            &first[..4],
            [
                (day(11, 10), "plan/P1/agreed"),
                (day(11, 17), "instalment/P1/1/heads_up"),
                (day(11, 20), "instalment/P1/1/due"),
                (day(11, 24), "promise/plan-P1"),
            ],
            "{log:?}"
        );
        assert_eq!(second[0], (day(11, 10), "plan/P1/agreed"), "{log:?}");
        // Nothing else on the second invoice until the day after the message.
        assert!(second[1..].iter().all(|(d, _)| *d > day(11, 24)), "{log:?}");
        assert!(second.len() > 1, "its ladder resumed: {log:?}");
        let missed = log
            .iter()
            .filter(|(_, _, s)| s.starts_with("promise/plan"))
            .count();
        assert_eq!(missed, 1, "{log:?}");
        assert!(
            !second.iter().any(|(_, s)| s.starts_with("instalment/")),
            "{log:?}"
        );
    }
}
