//! The simulated world: tenants, customers, invoices, scheduled customer payments and the
//! ledger of effects. Everything here is synchronous and runs under the sandbox's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::credentials::AuthState;
use crate::System;

/// How a customer reacts to invoices and reminders. Deterministic: the same events at the
/// same sandbox times always produce the same payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behaviour {
    /// Pays the whole balance `days_before_due` days before the due date.
    PaysEarly { days_before_due: i64 },
    /// Pays the balance `days` days after the first reminder email for that invoice.
    PaysAfterFirstReminder { days: i64 },
    /// Ignores reminders; pays `days` days after a late fee is charged (the fee too).
    PaysAfterFee { days: i64 },
    /// Pays without being chased, but always `days_late` days after the due date.
    ChronicallyLate { days_late: i64 },
    /// Never pays.
    Never,
    /// Pays in `parts` equal instalments, one every `every_days` days from the issue date.
    PaysInParts { parts: u32, every_days: i64 },
    /// Disputes the invoice when reminded and never pays it.
    Disputes,
}

impl Behaviour {
    pub fn name(&self) -> &'static str {
        match self {
            Behaviour::PaysEarly { .. } => "pays_early",
            Behaviour::PaysAfterFirstReminder { .. } => "pays_after_first_reminder",
            Behaviour::PaysAfterFee { .. } => "pays_after_fee",
            Behaviour::ChronicallyLate { .. } => "chronically_late",
            Behaviour::Never => "never",
            Behaviour::PaysInParts { .. } => "pays_in_parts",
            Behaviour::Disputes => "disputes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Draft,
    Submitted,
    Authorised,
    Paid,
    Voided,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "DRAFT",
            Status::Submitted => "SUBMITTED",
            Status::Authorised => "AUTHORISED",
            Status::Paid => "PAID",
            Status::Voided => "VOIDED",
            Status::Deleted => "DELETED",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.to_ascii_uppercase().as_str() {
            "DRAFT" => Status::Draft,
            "SUBMITTED" => Status::Submitted,
            "AUTHORISED" => Status::Authorised,
            "PAID" => Status::Paid,
            "VOIDED" => Status::Voided,
            "DELETED" => Status::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub company: Option<String>,
    pub email: String,
    pub behaviour: Behaviour,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub sync_token: u64,
    /// Sum of the open balances of the customer's invoices, kept up to date on every change.
    pub balance: Decimal,
    /// Telephone numbers, main line first; worlds saved before numbers existed have none.
    #[serde(default)]
    pub phones: Vec<PhoneNumber>,
}

/// A telephone number as both vendors split it (Xero keeps the parts apart; QuickBooks
/// shows them as one free-form string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub mobile: bool,
    pub country_code: String,
    pub area_code: String,
    pub number: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub id: String,
    pub description: String,
    pub item: String,
    pub item_id: String,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub date: NaiveDate,
    pub amount: Decimal,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub at: DateTime<Utc>,
    pub changes: String,
    pub user: String,
    pub details: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invoice {
    pub id: String,
    pub number: String,
    /// Xero `Type` (ACCREC, ACCPAY); QuickBooks invoices are always ACCREC.
    pub kind: String,
    pub customer: usize,
    pub currency: String,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub lines: Vec<Line>,
    pub total: Decimal,
    pub paid: Decimal,
    pub credited: Decimal,
    pub credit_id: Option<String>,
    pub payments: Vec<Payment>,
    pub status: Status,
    pub sync_token: u64,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// QuickBooks EmailStatus: NotSet, NeedToSend or EmailSent.
    pub email_status: String,
    pub delivery_time: Option<DateTime<Utc>>,
    pub bill_email: Option<String>,
    pub sent_to_contact: bool,
    /// Xero Reference.
    pub reference: String,
    /// QuickBooks PrivateNote.
    pub private_note: String,
    /// QuickBooks CustomerMemo.
    pub customer_memo: String,
    pub history: Vec<HistoryRecord>,
    /// Reminder emails applied so far (drives behaviours).
    pub reminders: u32,
    /// Fees charged for this invoice so far (drives behaviours).
    pub fees: u32,
    /// Set on fee invoices: the index of the invoice the fee is for.
    pub fee_for: Option<usize>,
    pub fully_paid_on: Option<NaiveDate>,
}

impl Invoice {
    pub fn balance(&self) -> Decimal {
        match self.status {
            Status::Voided | Status::Deleted => Decimal::ZERO,
            _ => {
                let b = self.total - self.paid - self.credited;
                if b < Decimal::ZERO {
                    Decimal::ZERO
                } else {
                    b
                }
            }
        }
    }
    /// Open for chasing and for customer payments.
    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::Submitted | Status::Authorised)
            && self.balance() > Decimal::ZERO
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeletedStub {
    pub id: String,
    pub at: DateTime<Utc>,
}

/// A stored write response, replayed for a repeated idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
    /// When the key was stored, in sandbox time (absent from older state files).
    #[serde(default)]
    pub stored_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub system: System,
    pub id: String,
    pub name: String,
    pub base_currency: String,
    pub created: DateTime<Utc>,
    /// Xero connection id (the `id` of GET /connections).
    pub connection_id: String,
    pub customers: Vec<Customer>,
    pub invoices: Vec<Invoice>,
    pub deleted: Vec<DeletedStub>,
    /// QuickBooks ids are small integers, one counter per company for every entity.
    pub next_numeric_id: u64,
    pub next_number: u64,
    pub idempotency: BTreeMap<String, StoredResponse>,
    /// Whether the company takes online payments; `None` is the seeded default (see
    /// `documents::takes_online_payments`). Absent from older state files.
    #[serde(default)]
    pub online_payments: Option<bool>,
    #[serde(skip)]
    pub idx: TenantIndex,
}

/// Lookup structures rebuilt from the invoices after loading a state file.
#[derive(Debug, Clone, Default)]
pub struct TenantIndex {
    pub by_id: HashMap<String, usize>,
    pub by_number: HashMap<String, usize>,
    pub customer_by_id: HashMap<String, usize>,
    /// (updated, index): the order of "ORDER BY LastUpdatedTime / UpdatedDateUTC".
    pub by_updated: BTreeSet<(DateTime<Utc>, usize)>,
    /// Bumped on every change; query results are cached per generation.
    pub generation: u64,
    pub query_cache: HashMap<String, (u64, Arc<Vec<usize>>)>,
}

impl Tenant {
    pub fn rebuild_index(&mut self) {
        let mut idx = TenantIndex::default();
        for (i, inv) in self.invoices.iter().enumerate() {
            idx.by_id.insert(inv.id.to_ascii_lowercase(), i);
            idx.by_number.insert(inv.number.clone(), i);
            idx.by_updated.insert((inv.updated, i));
        }
        for (i, c) in self.customers.iter().enumerate() {
            idx.customer_by_id.insert(c.id.to_ascii_lowercase(), i);
        }
        self.idx = idx;
    }

    pub fn invoice_index(&self, id: &str) -> Option<usize> {
        self.idx.by_id.get(&id.to_ascii_lowercase()).copied()
    }

    pub fn customer_index(&self, id: &str) -> Option<usize> {
        self.idx
            .customer_by_id
            .get(&id.to_ascii_lowercase())
            .copied()
    }

    pub fn next_numeric(&mut self) -> String {
        self.next_numeric_id += 1;
        self.next_numeric_id.to_string()
    }

    pub fn add_customer(&mut self, c: Customer) -> usize {
        let i = self.customers.len();
        self.idx.customer_by_id.insert(c.id.to_ascii_lowercase(), i);
        self.customers.push(c);
        self.idx.generation += 1;
        i
    }

    pub fn add_invoice(&mut self, inv: Invoice) -> usize {
        let i = self.invoices.len();
        self.idx.by_id.insert(inv.id.to_ascii_lowercase(), i);
        self.idx.by_number.insert(inv.number.clone(), i);
        self.idx.by_updated.insert((inv.updated, i));
        let bal = inv.balance();
        let cust = inv.customer;
        self.invoices.push(inv);
        self.customers[cust].balance += bal;
        self.idx.generation += 1;
        i
    }

    /// Every change to an invoice goes through here so the customer balance, the update
    /// order index and the query cache stay right. `touch` is the new updated time, if the
    /// change bumps it.
    pub fn modify<R>(
        &mut self,
        i: usize,
        touch: Option<DateTime<Utc>>,
        f: impl FnOnce(&mut Invoice) -> R,
    ) -> R {
        let (old_bal, old_updated, old_number) = {
            let inv = &self.invoices[i];
            (inv.balance(), inv.updated, inv.number.clone())
        };
        let r = f(&mut self.invoices[i]);
        if let Some(t) = touch {
            // Never move backwards, so "changed since" polling cannot miss a change.
            let t = t.max(old_updated);
            self.invoices[i].updated = t;
        }
        let inv = &mut self.invoices[i];
        if inv.status == Status::Authorised
            && inv.balance() == Decimal::ZERO
            && inv.total > Decimal::ZERO
        {
            inv.status = Status::Paid;
            inv.fully_paid_on = inv.payments.last().map(|p| p.date);
        }
        let (new_bal, new_updated, new_number, cust) =
            (inv.balance(), inv.updated, inv.number.clone(), inv.customer);
        if new_updated != old_updated {
            self.idx.by_updated.remove(&(old_updated, i));
            self.idx.by_updated.insert((new_updated, i));
        }
        if new_number != old_number {
            self.idx.by_number.remove(&old_number);
            self.idx.by_number.insert(new_number, i);
        }
        self.customers[cust].balance += new_bal - old_bal;
        self.idx.generation += 1;
        r
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduledPayment {
    pub tenant: usize,
    pub invoice: usize,
    /// None pays whatever is still due.
    pub amount: Option<Decimal>,
    pub reason: String,
}

/// One effect applied to the world by a client write, after idempotency de-duplication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub system: System,
    pub tenant: String,
    pub invoice_id: String,
    /// "email", "fee", "note", or "sms" (a text message through the Twilio API).
    pub kind: String,
    pub at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct World {
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub tenants: Vec<Tenant>,
    pub auth: AuthState,
    pub ledger: Vec<Effect>,
    /// Customer payments waiting for the clock, keyed by (when, sequence).
    #[serde(with = "scheduled_serde")]
    pub scheduled: BTreeMap<(DateTime<Utc>, u64), ScheduledPayment>,
    pub next_seq: u64,
    /// Counter behind every id and token minted after generation.
    pub minted: u64,
    /// How long idempotency keys are remembered (see `keys`).
    #[serde(default = "crate::keys::default_window_secs")]
    pub idempotency_window_secs: i64,
    /// The Twilio account's messages and opt-outs (see `twilio`).
    #[serde(default)]
    pub twilio: crate::twilio::TwilioState,
}

impl World {
    pub fn rebuild_indexes(&mut self) {
        for t in &mut self.tenants {
            t.rebuild_index();
        }
    }

    pub fn tenant_index(&self, system: System, id: &str) -> Option<usize> {
        self.tenants
            .iter()
            .position(|t| t.system == system && t.id.eq_ignore_ascii_case(id))
    }

    fn mint(&mut self, kind: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        self.minted += 1;
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(kind.as_bytes());
        h.update(self.minted.to_le_bytes());
        h.finalize().into()
    }

    /// Xero's `authEventId` of grant `grant`: one per consent, deterministic for the seed,
    /// drawn without advancing the sequence the other ids come from.
    pub fn auth_event_id(&self, grant: usize) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(b"auth-event");
        h.update((grant as u64).to_le_bytes());
        let b: [u8; 32] = h.finalize().into();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&b[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    /// A fresh uuid, deterministic for the seed and the sequence of calls.
    pub fn new_uuid(&mut self) -> String {
        let b = self.mint("uuid");
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&b[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    /// A fresh opaque token with a readable prefix.
    pub fn new_token(&mut self, prefix: &str) -> String {
        let b = self.mint(prefix);
        let mut s = String::with_capacity(prefix.len() + 48);
        s.push_str(prefix);
        for byte in &b[..24] {
            s.push_str(&format!("{byte:02x}"));
        }
        s
    }

    pub fn schedule(&mut self, at: DateTime<Utc>, p: ScheduledPayment) {
        self.next_seq += 1;
        self.scheduled.insert((at, self.next_seq), p);
    }

    /// Moves the clock. Moving forward applies every scheduled customer payment due by then,
    /// in time order, each at its own time.
    pub fn set_now(&mut self, t: DateTime<Utc>) {
        while let Some((&(at, seq), _)) = self.scheduled.iter().next() {
            if at > t {
                break;
            }
            let Some(p) = self.scheduled.remove(&(at, seq)) else {
                break;
            };
            self.apply_scheduled(at, p);
        }
        self.now = t;
    }

    fn apply_scheduled(&mut self, at: DateTime<Utc>, p: ScheduledPayment) {
        let Some(tenant) = self.tenants.get(p.tenant) else {
            return;
        };
        let Some(inv) = tenant.invoices.get(p.invoice) else {
            return;
        };
        if !inv.is_open() {
            return;
        }
        let amount = p.amount.unwrap_or_else(|| inv.balance()).min(inv.balance());
        if amount <= Decimal::ZERO {
            return;
        }
        let _ = self.pay(p.tenant, p.invoice, amount, at.date_naive(), at);
        tracing::debug!(reason = %p.reason, %amount, "customer payment applied");
    }

    /// Records a payment. Returns an error message when the invoice cannot take it.
    pub fn pay(
        &mut self,
        t: usize,
        i: usize,
        amount: Decimal,
        date: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<(), String> {
        let payment_id = if self.tenants[t].system == System::QuickBooks {
            self.tenants[t].next_numeric()
        } else {
            self.new_uuid()
        };
        let tenant = &mut self.tenants[t];
        let inv = &tenant.invoices[i];
        if !matches!(inv.status, Status::Submitted | Status::Authorised) {
            return Err(format!(
                "invoice is {} and cannot take a payment",
                inv.status.as_str()
            ));
        }
        if amount <= Decimal::ZERO || amount > inv.balance() {
            return Err(format!(
                "payment {amount} must be positive and at most the amount due {}",
                inv.balance()
            ));
        }
        tenant.modify(i, Some(at), |inv| {
            inv.paid += amount;
            inv.sync_token += 1;
            inv.payments.push(Payment {
                id: payment_id,
                date,
                amount,
                at,
            });
            if inv.balance() == Decimal::ZERO && inv.status == Status::Submitted {
                inv.status = Status::Paid;
                inv.fully_paid_on = Some(date);
            }
        });
        Ok(())
    }

    /// Appends an effect to the ledger and lets the customer react to it.
    pub fn record_effect(
        &mut self,
        t: usize,
        i: usize,
        kind: &str,
        key: Option<&str>,
        detail: Value,
    ) {
        let now = self.now;
        let tenant = &self.tenants[t];
        self.ledger.push(Effect {
            system: tenant.system,
            tenant: tenant.id.clone(),
            invoice_id: tenant.invoices[i].id.clone(),
            kind: kind.to_string(),
            at: now,
            idempotency_key: key.map(str::to_string),
            detail,
        });
        let behaviour = tenant.customers[tenant.invoices[i].customer]
            .behaviour
            .clone();
        match kind {
            "email" => {
                let first = tenant.invoices[i].reminders == 0;
                self.tenants[t].invoices[i].reminders += 1;
                if first {
                    if let Behaviour::PaysAfterFirstReminder { days } = behaviour {
                        let reason = format!("pays {days} days after the first reminder");
                        self.schedule(
                            now + Duration::days(days),
                            ScheduledPayment {
                                tenant: t,
                                invoice: i,
                                amount: None,
                                reason,
                            },
                        );
                    }
                }
            }
            "fee" => {
                let first = tenant.invoices[i].fees == 0;
                self.tenants[t].invoices[i].fees += 1;
                if first {
                    if let Behaviour::PaysAfterFee { days } = behaviour {
                        let reason = format!("pays {days} days after the fee");
                        self.schedule(
                            now + Duration::days(days),
                            ScheduledPayment {
                                tenant: t,
                                invoice: i,
                                amount: None,
                                reason: reason.clone(),
                            },
                        );
                        // The fee invoice itself is paid with the original.
                        let fee_invoices: Vec<usize> = self.tenants[t]
                            .invoices
                            .iter()
                            .enumerate()
                            .filter(|(_, f)| f.fee_for == Some(i))
                            .map(|(j, _)| j)
                            .collect();
                        for j in fee_invoices {
                            self.schedule(
                                now + Duration::days(days),
                                ScheduledPayment {
                                    tenant: t,
                                    invoice: j,
                                    amount: None,
                                    reason: reason.clone(),
                                },
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Finds the invoice a fee invoice's memo or reference names, by invoice number.
    pub fn named_original(&self, t: usize, text: &str, own: &str) -> Option<usize> {
        let tenant = &self.tenants[t];
        text.split(|c: char| c.is_whitespace() || ",;:()[]\"'#".contains(c))
            .map(|w| w.trim_end_matches('.'))
            .filter(|w| !w.is_empty() && *w != own)
            .find_map(|w| tenant.idx.by_number.get(w).copied())
    }
}

/// QuickBooks companies in the sandbox keep US Pacific standard time.
pub fn qbo_offset() -> FixedOffset {
    FixedOffset::west_opt(8 * 3600)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
}

pub fn qbo_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&qbo_offset())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

pub fn qbo_time_ms(t: DateTime<Utc>) -> String {
    t.with_timezone(&qbo_offset())
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

pub fn qbo_local_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&qbo_offset()).date_naive()
}

pub fn xero_date(t: DateTime<Utc>) -> String {
    format!("/Date({}+0000)/", t.timestamp_millis())
}

pub fn xero_day(d: NaiveDate) -> String {
    xero_date(midnight(d))
}

pub fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// A JSON number with exactly the decimal's digits (serde_json keeps them with
/// `arbitrary_precision`).
pub fn num(d: Decimal) -> Value {
    let s = money_str(d);
    match s.parse::<serde_json::Number>() {
        Ok(n) => Value::Number(n),
        Err(_) => Value::Number(0.into()),
    }
}

/// Money with at least two decimal places, as both vendors show it.
pub fn money_str(d: Decimal) -> String {
    let mut d = d;
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// Money from a JSON number or string, exactly.
pub fn parse_money(v: &Value) -> Option<Decimal> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    s.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(&s).ok())
}

/// A uuid from generator randomness.
pub fn random_uuid(rng: &mut impl rand::RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Parses the date and time forms the control API and the vendors accept.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&t));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(midnight)
}

/// JSON object keys must be strings, so the schedule is stored as a list of entries.
mod scheduled_serde {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ScheduledPayment;

    type Map = BTreeMap<(DateTime<Utc>, u64), ScheduledPayment>;

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        let v: Vec<(&(DateTime<Utc>, u64), &ScheduledPayment)> = m.iter().collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        let v: Vec<((DateTime<Utc>, u64), ScheduledPayment)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}
