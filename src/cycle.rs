//! One cycle for one connection: sync, plan, act.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use overdued_connector::{ActionKind, Clock, Connector, IdempotencyKey, Money};
use rust_decimal::Decimal;
use serde::Serialize;
use tracing::info;

use crate::config::{Config, ConnectionConfig, Mode};
use crate::engine::{
    plan, ActionRecord, BalanceChange, InvoiceCase, InvoiceHistory, Pause, Plan, PlanError,
    PlanInputs, PlannedAction, Promise,
};
use crate::executor::{ActionPayload, CustomerLimits, ExecError, ExecReport, Executor, Intent};
use crate::store::{Hold, HoldTarget, InvoiceRecord, JournalState, Store, StoreError};
use crate::sync::{sync_connection, SyncError, SyncReport};

/// Days a fee invoice gives the customer to pay it.
pub const FEE_INVOICE_TERMS_DAYS: u32 = 14;

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("connection {connection}: {source}")]
    Store {
        connection: String,
        source: StoreError,
    },
    #[error("connection {connection}: planning: {source}")]
    Plan {
        connection: String,
        source: PlanError,
    },
    #[error("connection {connection}: {source}")]
    Exec {
        connection: String,
        source: ExecError,
    },
    #[error("connection {connection}: which {what} it is bound to is not known yet: run `overdued connect {connection}` (or give it in the config)")]
    UnknownLedger {
        connection: String,
        what: &'static str,
    },
    #[error("connection {connection}: {source}")]
    Channels {
        connection: String,
        source: crate::channels::ChannelError,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub connection: String,
    #[serde(skip)]
    pub sync: SyncReport,
    pub plan: Plan,
    pub exec: ExecReport,
    pub dry_run: bool,
}

/// Syncs, plans and (unless in dry-run mode) acts for one connection.
pub async fn run_cycle(
    config: &Config,
    conn_cfg: &ConnectionConfig,
    connector: &dyn Connector,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<CycleReport, CycleError> {
    let name = conn_cfg.name.clone();
    // Circuit breakers count failures within one cycle: each cycle tries every endpoint again.
    if let Some(rt) = connector.runtime() {
        rt.breakers().reset();
    }
    let sync = sync_connection(
        connector,
        store,
        clock,
        config.daemon.full_sync_interval.as_duration(),
        false,
    )
    .await?;
    let now = clock.now();
    let ledger = ledger_of(conn_cfg, connector, store).await?;
    let (plan, cases) = make_plan(config, conn_cfg, &ledger, store, now)?;
    let dry_run = config.daemon.mode == Mode::DryRun;
    if dry_run {
        for a in &plan.actions {
            info!(connection = %name, invoice = %a.invoice_number, customer = %a.context.as_ref().map_or(a.customer_id.as_str(), |c| c.customer_name.as_str()), step = %a.step_id, action = %a.kind, invoice_id = %a.invoice_id, key = %a.key, reason = %a.reason, "dry run: would act");
        }
        return Ok(CycleReport {
            connection: name,
            sync,
            plan,
            exec: ExecReport::default(),
            dry_run,
        });
    }
    let due: HashMap<&str, Decimal> = cases
        .iter()
        .map(|c| (c.invoice.remote_id.as_str(), c.invoice.amount_due))
        .collect();
    let intents: Vec<Intent> = plan
        .actions
        .iter()
        .map(|a| {
            intent_from(
                a,
                conn_cfg,
                plan.local_date,
                due.get(a.invoice_id.as_str()).copied().unwrap_or_default(),
            )
        })
        .collect();
    let mailer = crate::channels::Mailer::from_config(&config.channels).map_err(|source| {
        CycleError::Channels {
            connection: name.clone(),
            source,
        }
    })?;
    let hooks = config
        .channels
        .webhook
        .as_ref()
        .map(crate::channels::webhook::shared);
    let sms = crate::channels::sms::Sms::from_config(&config.channels).map_err(|e| {
        CycleError::Channels {
            connection: name.clone(),
            source: crate::channels::ChannelError::Transport(e),
        }
    })?;
    let sms_breakers = overdued_connector::runtime::Breakers::new(
        overdued_connector::ConnectionId::new(name.clone()),
        Default::default(),
    );
    let executor = Executor {
        connector,
        store,
        clock,
        today: plan.local_date,
        mailer: mailer.as_ref(),
        hooks: hooks.as_ref(),
        policies: Some(crate::channels::facts::PolicyChoice {
            book: &config.policy_book,
            default: &conn_cfg.policy,
        }),
        ledger: &ledger,
        limits: customer_limits(config, conn_cfg, &plan, &cases),
        sms: sms
            .as_ref()
            .map(|sms| crate::channels::sms::deliver::Sender {
                sms,
                time_zone: config.daemon.time_zone,
                breakers: &sms_breakers,
            }),
    };
    let exec = executor
        .run(intents)
        .await
        .map_err(|source| CycleError::Exec {
            connection: name.clone(),
            source,
        })?;
    Ok(CycleReport {
        connection: name,
        sync,
        plan,
        exec,
        dry_run,
    })
}

/// [`open_ledger`], asking the connector for the realm or tenant id when neither the
/// config nor the token store has it (a Xero organisation named by its name, never
/// bound through `overdued connect`).
pub async fn ledger_of(
    conn_cfg: &ConnectionConfig,
    connector: &dyn Connector,
    store: &dyn Store,
) -> Result<String, CycleError> {
    let name = conn_cfg.name.as_str();
    let bound = store
        .get_tokens(name)
        .map_err(|source| CycleError::Store {
            connection: name.to_string(),
            source,
        })?
        .and_then(|t| t.bound_to);
    let resolved = match conn_cfg.ledger(bound.as_deref()) {
        Some(_) => None,
        None => Some(connector.ledger_id().await.map_err(|source| {
            CycleError::Sync(SyncError::Connector {
                connection: name.to_string(),
                source,
            })
        })?),
    };
    open_ledger(conn_cfg, store, resolved.as_deref())
}

/// The ledger a connection is bound to ([`overdued_connector::ledger_scope`]), from the
/// config, the token store or `resolved` (the connector's answer), with the journal the
/// connection wrote before keys were derived from it re-keyed (once).
pub fn open_ledger(
    conn_cfg: &ConnectionConfig,
    store: &dyn Store,
    resolved: Option<&str>,
) -> Result<String, CycleError> {
    let name = conn_cfg.name.as_str();
    let st = |source| CycleError::Store {
        connection: name.to_string(),
        source,
    };
    let bound = store.get_tokens(name).map_err(st)?.and_then(|t| t.bound_to);
    let ledger = conn_cfg
        .ledger(bound.as_deref().or(resolved))
        .ok_or_else(|| CycleError::UnknownLedger {
            connection: name.to_string(),
            what: match conn_cfg.system() {
                overdued_connector::System::QuickBooks => "QuickBooks company (realm id)",
                overdued_connector::System::Xero => "Xero organisation (tenant id)",
            },
        })?;
    let moved = store
        .rekey_journal(name, &ledger, &|e| {
            IdempotencyKey::derive(&ledger, &e.invoice_id, e.kind, &e.step_id)
        })
        .map_err(st)?;
    if moved > 0 {
        info!(connection = %name, ledger = %ledger, moved, "journal re-keyed by ledger: unfinished actions keep the key already sent");
    }
    Ok(ledger)
}

/// The plan for one connection from what the store holds, as of `now`, with the
/// invoices it was made from; `ledger` is [`open_ledger`]'s.
pub fn make_plan(
    config: &Config,
    conn_cfg: &ConnectionConfig,
    ledger: &str,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<(Plan, Vec<InvoiceCase>), CycleError> {
    let name = conn_cfg.name.as_str();
    let st = |source| CycleError::Store {
        connection: name.to_string(),
        source,
    };
    let mut cases = load_cases_of(store, name, Some(ledger), now).map_err(st)?;
    crate::arrangements::attach(
        store,
        name,
        &mut cases,
        now.with_timezone(&config.daemon.time_zone).date_naive(),
        config.daemon.time_zone,
        &config.engine,
    )
    .map_err(st)?;
    let today = now.with_timezone(&config.daemon.time_zone).date_naive();
    crate::profiles::attach_profiles(
        store,
        name,
        today,
        config.daemon.time_zone,
        &config.payer_profiles,
        &mut cases,
    )
    .map_err(st)?;
    let inputs = PlanInputs {
        now,
        time_zone: config.daemon.time_zone,
        settings: &config.engine,
        policies: &config.policy_book,
        default_policy: &conn_cfg.policy,
        ledger,
        invoices: &cases,
    };
    let mut p = plan(&inputs).map_err(|source| CycleError::Plan {
        connection: name.to_string(),
        source,
    })?;
    if p.actions.iter().any(|a| a.channel.uses_sms()) {
        let consents = store.sms_consents(Some(name)).map_err(st)?;
        crate::channels::sms::route::route(
            &mut p,
            config.channels.sms.as_ref(),
            config.channels.smtp.is_some(),
            &consents,
            now,
            config.daemon.time_zone,
        );
    }
    Ok((p, cases))
}

/// Every invoice the planner needs: the open ones, and those closed in the last days
/// (their reminders today still count against the per-customer daily limit).
pub fn load_cases(
    store: &dyn Store,
    connection: &str,
    now: DateTime<Utc>,
) -> Result<Vec<InvoiceCase>, StoreError> {
    load_cases_of(store, connection, None, now)
}

/// [`load_cases`], with each invoice's history read by `ledger` too (whatever name the
/// connection had when it acted).
pub fn load_cases_of(
    store: &dyn Store,
    connection: &str,
    ledger: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<InvoiceCase>, StoreError> {
    // Holds first, then one pass over the invoices that builds each case as it is read:
    // with a million invoices an intermediate list of records doubled the peak memory.
    let mut invoice_holds: BTreeMap<String, Vec<Hold>> = BTreeMap::new();
    let mut customer_pauses: BTreeMap<String, Pause> = BTreeMap::new();
    for (target, hold) in store.holds(connection)? {
        match target {
            HoldTarget::Invoice(id) => invoice_holds.entry(id).or_default().push(hold),
            HoldTarget::Customer(id) => {
                if let Hold::Pause { reason, .. } = hold {
                    customer_pauses.insert(
                        id,
                        Pause {
                            reason,
                            until: None,
                        },
                    );
                }
            }
        }
    }
    // Which invoices have journal entries, read once, instead of an index scan for
    // each of a million invoices most of which have none.
    let journalled = Journalled {
        own: store.journalled_invoices(connection, false)?,
        ledger: match ledger {
            Some(l) => store.journalled_invoices(l, true)?,
            None => Some(Default::default()),
        },
    };
    let recent = now - Duration::days(2);
    let mut cases = Vec::new();
    let mut failed = None;
    let keep = |status: overdued_connector::InvoiceStatus, seen_at: DateTime<Utc>| {
        status.is_open() || seen_at >= recent
    };
    store.for_each_invoice_where(connection, &keep, &mut |r| {
        let holds = invoice_holds
            .remove(&r.snapshot.remote_id)
            .unwrap_or_default();
        match case_of(
            store,
            connection,
            ledger,
            &journalled,
            r,
            holds,
            &customer_pauses,
        ) {
            Ok(case) => {
                cases.push(case);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(cases)
}

/// The invoices with journal entries, under the connection's name and under its
/// ledger; `None` where the store could not say (look the invoice up).
struct Journalled {
    own: Option<HashSet<String>>,
    ledger: Option<HashSet<String>>,
}

fn case_of(
    store: &dyn Store,
    connection: &str,
    ledger: Option<&str>,
    journalled: &Journalled,
    r: InvoiceRecord,
    holds: Vec<Hold>,
    customer_pauses: &BTreeMap<String, Pause>,
) -> Result<InvoiceCase, StoreError> {
    let mut history = InvoiceHistory {
        balance_history: r
            .balance_history
            .into_iter()
            .map(|(on, balance)| BalanceChange { on, balance })
            .collect(),
        customer_pause: customer_pauses.get(&r.snapshot.customer.id).cloned(),
        first_seen_at: Some(r.first_seen_at),
        ..InvoiceHistory::default()
    };
    for hold in holds {
        match hold {
            Hold::Promise {
                until,
                amount,
                balance_when_made,
                ..
            } => {
                history.promise = Some(Promise {
                    until,
                    amount,
                    balance_when_made,
                })
            }
            Hold::Pause { reason, .. } => {
                history.pause = Some(Pause {
                    reason,
                    until: None,
                })
            }
        }
    }
    let id = r.snapshot.remote_id.as_str();
    let listed = |set: &Option<HashSet<String>>| set.as_ref().is_none_or(|s| s.contains(id));
    let mut entries = if listed(&journalled.own) {
        store.journal_for_invoice(connection, id)?
    } else {
        Vec::new()
    };
    if let Some(ledger) = ledger.filter(|_| listed(&journalled.ledger)) {
        let mut seen: HashSet<IdempotencyKey> = entries.iter().map(|e| e.key.clone()).collect();
        for e in store.journal_for_ledger(ledger, &r.snapshot.remote_id)? {
            if seen.insert(e.key.clone()) {
                entries.push(e);
            }
        }
    }
    for e in entries {
        let JournalState::Done { at, .. } = e.state else {
            continue;
        };
        let (fee, period) = match e.payload.action() {
            Some(ActionPayload::LateFee { amount, period, .. }) => (Some(*amount), Some(*period)),
            _ => (None, None),
        };
        if e.kind == ActionKind::Escalate {
            history.escalated = true;
        }
        history.actions.push(ActionRecord {
            kind: e.kind,
            step_id: e.step_id,
            key: e.key,
            at,
            fee,
            period,
        });
    }
    if history.escalated {
        history.chasing_resumed_on = crate::calls::escalation::resumed_from_audit(
            &store.audit_for_invoice(connection, &r.snapshot.remote_id)?,
        );
    }
    let mut invoice = r.snapshot;
    // The invoice may carry no address (QuickBooks: no BillEmail) while the customer
    // record has one: the planner judges "no email anywhere in the ledger" on both.
    if invoice.customer.email.is_none() {
        invoice.customer.email = store
            .get_customer(connection, &invoice.customer.id)?
            .and_then(|c| c.email);
    }
    Ok(InvoiceCase { invoice, history })
}

/// Each customer's reminders done this local day (from the journal, as the cases carry
/// it) and daily limit (the strictest of the policies of the reminders planned for them).
fn customer_limits(
    config: &Config,
    conn_cfg: &ConnectionConfig,
    plan: &Plan,
    cases: &[InvoiceCase],
) -> CustomerLimits {
    let tz = config.daemon.time_zone;
    let mut limits = CustomerLimits {
        default_limit: config
            .policy_book
            .get(&conn_cfg.policy)
            .map_or(0, |p| p.max_reminders_per_customer_per_day),
        ..CustomerLimits::default()
    };
    for c in cases {
        for r in &c.history.actions {
            if r.kind == ActionKind::Remind
                && r.at.with_timezone(&tz).date_naive() == plan.local_date
            {
                *limits
                    .sent_today
                    .entry(c.invoice.customer.id.clone())
                    .or_default() += 1;
            }
        }
    }
    for a in plan.actions.iter().filter(|a| a.kind == ActionKind::Remind) {
        let Some(p) = config.policy_book.get(&a.policy) else {
            continue;
        };
        let l = p.max_reminders_per_customer_per_day;
        if l == 0 {
            continue;
        }
        limits
            .limit
            .entry(a.customer_id.clone())
            .and_modify(|x| *x = (*x).min(l))
            .or_insert(l);
    }
    limits
}

/// The journal intent for a planned action: `planned_for` is the plan's local date and
/// `amount_due` the balance the planner saw, which the executor re-checks.
pub fn intent_from(
    a: &PlannedAction,
    conn_cfg: &ConnectionConfig,
    planned_for: NaiveDate,
    amount_due: Decimal,
) -> Intent {
    let text = || {
        a.ledger_text
            .clone()
            .or_else(|| a.message.as_ref().map(|m| m.body.clone()))
            .unwrap_or_else(|| a.reason.clone())
    };
    let payload = match a.kind {
        ActionKind::Remind => {
            let (subject, body) = a
                .message
                .as_ref()
                .map(|m| (m.subject.clone(), m.body.clone()))
                .unwrap_or_default();
            // Only channels that change how the reminder goes are recorded, so journals
            // of system-email reminders read as they always have.
            let smtp = a.channel.uses_smtp() || a.channel.uses_sms();
            ActionPayload::Remind {
                subject,
                body,
                channel: smtp.then_some(a.channel),
                template: if smtp { a.template.clone() } else { None },
                context: if smtp {
                    a.context.clone().map(Box::new)
                } else {
                    None
                },
            }
        }
        ActionKind::LateFee => {
            let fee = a.fee.as_ref();
            ActionPayload::LateFee {
                amount: fee
                    .map(|f| f.amount)
                    .unwrap_or_else(|| Money::zero(overdued_connector::Currency::USD)),
                description: a
                    .ledger_text
                    .clone()
                    .unwrap_or_else(|| format!("Late payment fee on invoice {}", a.invoice_number)),
                posting: a.fee_posting.unwrap_or(conn_cfg.fee_posting),
                explanation: fee.map(|f| f.explanation.clone()).unwrap_or_default(),
                period: fee.map(|f| f.period).unwrap_or(0),
                due_in_days: FEE_INVOICE_TERMS_DAYS,
            }
        }
        ActionKind::Note => ActionPayload::Note { text: text() },
        ActionKind::Escalate => ActionPayload::Escalate { text: text() },
    };
    Intent {
        key: a.key.clone(),
        connection: a.connection.as_str().to_string(),
        invoice_id: a.invoice_id.clone(),
        customer_id: a.customer_id.clone(),
        kind: a.kind,
        step_id: a.step_id.clone(),
        planned_for,
        expected_amount_due: amount_due,
        payload,
    }
}

/// One cycle on every enabled connection, concurrently: a slow or broken connection
/// holds up none of the others. Each connection's result is reported separately. Then
/// the owner's digest, once all the cycles have ended.
pub async fn run_all_once(
    config: &Config,
    store: std::sync::Arc<dyn crate::store::Store>,
    tokens: std::sync::Arc<dyn overdued_connector::TokenStore>,
    clock: std::sync::Arc<dyn Clock>,
) -> Vec<(String, Result<CycleReport, String>)> {
    let shared =
        config.shared_ledger(|n| store.get_tokens(n).ok().flatten().and_then(|t| t.bound_to));
    let tasks = config
        .connections
        .iter()
        .filter(|c| c.enabled)
        .map(|conn_cfg| {
            let refused = shared
                .as_ref()
                .filter(|d| d.second == conn_cfg.name)
                .map(|d| format!("{d} (as bound at `overdued connect`)"));
            let store = store.clone();
            let tokens = tokens.clone();
            let clock = clock.clone();
            async move {
                if let Some(refused) = refused {
                    return (conn_cfg.name.clone(), Err(refused));
                }
                let result = match crate::connections::build(conn_cfg, tokens, clock.clone()) {
                    Ok(connector) => run_cycle(
                        config,
                        conn_cfg,
                        connector.as_ref(),
                        store.as_ref(),
                        clock.as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (conn_cfg.name.clone(), result)
            }
        });
    let results = futures::future::join_all(tasks).await;
    send_digest(config, store.as_ref(), clock.as_ref()).await;
    results
}

/// The owner's daily digest, if one is configured and due: run once all connections'
/// cycles of the day have ended. Its failure fails no cycle; the next try sends it.
pub async fn send_digest(config: &Config, store: &dyn Store, clock: &dyn Clock) {
    if config.daemon.mode == Mode::DryRun || config.channels.digest.is_none() {
        return;
    }
    let mailer = match crate::channels::Mailer::from_config(&config.channels) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "daily digest not sent");
            return;
        }
    };
    if let Err(e) = crate::channels::digest::send_if_due(config, store, clock, &mailer).await {
        tracing::warn!(error = %e, "daily digest not sent");
    }
}
