//! What each simulated world looked like, day by day, as read back through sync: the
//! payments seen, and the figures of the closing report.
//!
//! Both worlds (chased and unchased) are measured the same way, from the invoices
//! overdued's sync stored, so any bias of observing once a day is the same on both sides.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overdued_connector::{InvoiceSnapshot, InvoiceStatus};
use rust_decimal::Decimal;

use crate::store::{Store, StoreError};

/// (connection, remote invoice id)
pub type InvoiceKey = (String, String);

/// Amounts per currency code, in code order so reports are stable.
pub type PerCurrency = BTreeMap<String, Decimal>;

/// Days past due at which each ageing bucket starts: current, 1-30, 31-60, 61-90, 90+.
pub const BUCKETS: [(&str, i64); 5] = [
    ("current", i64::MIN),
    ("1-30", 1),
    ("31-60", 31),
    ("61-90", 61),
    ("90+", 91),
];

/// A payment seen by one day's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPayment {
    pub key: InvoiceKey,
    pub number: String,
    pub customer: String,
    pub currency: String,
    pub amount: Decimal,
    /// Nothing left to pay after it.
    pub in_full: bool,
    pub fee_invoice: bool,
}

/// An invoice open on the first day or issued later: the population every comparison
/// is over.
#[derive(Debug, Clone)]
struct Opening {
    currency: String,
    issue_date: NaiveDate,
    amount_due: Decimal,
    /// (day seen, amount) of every payment seen on it.
    payments: Vec<(NaiveDate, Decimal)>,
}

impl Opening {
    fn of(s: &InvoiceSnapshot) -> Opening {
        Opening {
            currency: s.currency.code().to_string(),
            issue_date: s.issue_date,
            amount_due: s.amount_due,
            payments: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Book {
    /// Invoices first seen after the first reading (new sales), also in `opening`.
    issued: std::collections::BTreeSet<InvoiceKey>,
    opened_on: Option<NaiveDate>,
    opening: BTreeMap<InvoiceKey, Opening>,
    last: BTreeMap<InvoiceKey, InvoiceSnapshot>,
    last_day: Option<NaiveDate>,
    fees_collected: PerCurrency,
}

/// The figures of one world at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// Open on the first day, and issued since.
    pub opening_invoices: usize,
    pub opening_due: PerCurrency,
    pub issued_invoices: usize,
    pub issued: PerCurrency,
    /// Paid on those invoices (late fees not included).
    pub collected: PerCurrency,
    pub fees_collected: PerCurrency,
    pub paid_in_full: usize,
    /// Open balances (late-fee invoices not included) per currency, one per bucket.
    pub ageing: BTreeMap<String, [Decimal; 5]>,
    /// Tenths of a day, to keep the report exact and deterministic.
    pub dso_tenths: i64,
}

impl Book {
    /// Reads every stored invoice of the connections as of `day`; returns the payments
    /// that appeared since the previous reading. The first reading only opens the book.
    pub fn observe(
        &mut self,
        store: &dyn Store,
        connections: &[String],
        day: NaiveDate,
    ) -> Result<Vec<SeenPayment>, StoreError> {
        let mut now: BTreeMap<InvoiceKey, InvoiceSnapshot> = BTreeMap::new();
        for c in connections {
            store.for_each_invoice(c, &mut |r| {
                now.insert((c.clone(), r.snapshot.remote_id.clone()), r.snapshot);
                true
            })?;
        }
        let first = self.opened_on.is_none();
        let mut seen = Vec::new();
        if first {
            self.opened_on = Some(day);
            for (k, s) in &now {
                if s.status.is_open() && !s.is_fee_invoice && s.amount_due > Decimal::ZERO {
                    self.opening.insert(k.clone(), Opening::of(s));
                }
            }
        } else {
            for (k, s) in &now {
                // Voids and deletions also lower the amount due, but nobody paid them.
                if !matches!(s.status, InvoiceStatus::Open | InvoiceStatus::Paid) {
                    continue;
                }
                let before = match self.last.get(k) {
                    Some(p) => p.amount_due,
                    // An invoice issued (or a fee charged) since the last reading.
                    None => {
                        if !s.is_fee_invoice && s.status.is_open() {
                            self.issued.insert(k.clone());
                            let mut o = Opening::of(s);
                            o.amount_due = s.total;
                            self.opening.insert(k.clone(), o);
                        }
                        s.total
                    }
                };
                let amount = before - s.amount_due;
                if amount <= Decimal::ZERO {
                    continue;
                }
                if s.is_fee_invoice {
                    *self
                        .fees_collected
                        .entry(s.currency.code().to_string())
                        .or_default() += amount;
                } else if let Some(o) = self.opening.get_mut(k) {
                    o.payments.push((day, amount));
                }
                seen.push(SeenPayment {
                    key: k.clone(),
                    number: s.display_number().to_string(),
                    customer: s.customer.name.clone(),
                    currency: s.currency.code().to_string(),
                    amount,
                    in_full: s.amount_due <= Decimal::ZERO,
                    fee_invoice: s.is_fee_invoice,
                });
            }
        }
        self.last = now;
        self.last_day = Some(day);
        Ok(seen)
    }

    pub fn invoice(&self, key: &InvoiceKey) -> Option<&InvoiceSnapshot> {
        self.last.get(key)
    }

    /// Every invoice as last read (fee invoices included).
    pub fn invoices(&self) -> impl Iterator<Item = (&InvoiceKey, &InvoiceSnapshot)> {
        self.last.iter()
    }

    pub fn opening_count(&self) -> usize {
        self.opening.len() - self.issued.len()
    }

    /// The amounts of the invoices open on the first day (`issued`: false) or of those
    /// issued since (true), as first seen.
    pub fn amounts(&self, issued: bool) -> PerCurrency {
        let mut m = PerCurrency::new();
        for (k, o) in &self.opening {
            if self.issued.contains(k) == issued {
                *m.entry(o.currency.clone()).or_default() += o.amount_due;
            }
        }
        m
    }

    /// The open balances of `day`'s reading by ageing bucket (late-fee invoices apart).
    pub fn ageing(&self, day: NaiveDate) -> BTreeMap<String, [Decimal; 5]> {
        let mut m: BTreeMap<String, [Decimal; 5]> = BTreeMap::new();
        for o in self.opening.values() {
            m.entry(o.currency.clone()).or_default();
        }
        for s in self.last.values() {
            if !s.status.is_open() || s.is_fee_invoice || s.amount_due <= Decimal::ZERO {
                continue;
            }
            let late = s.days_overdue(day);
            let b = BUCKETS
                .iter()
                .rposition(|(_, from)| late >= *from)
                .unwrap_or(0);
            m.entry(s.currency.code().to_string()).or_default()[b] += s.amount_due;
        }
        m
    }

    pub fn closing(&self) -> Closing {
        let end = self.last_day.unwrap_or_default();
        let mut collected = PerCurrency::new();
        let mut paid_in_full = 0;
        // Days sales outstanding, as the report states it: for each invoice open on the
        // first day or issued since, the days from its issue date to each payment, weighted by the share
        // of the opening balance paid; a share still unpaid counts up to the last day.
        // Averaged over invoices (not amounts) so that several currencies can be mixed.
        let mut dso_sum = Decimal::ZERO;
        for (k, o) in &self.opening {
            let mut paid = Decimal::ZERO;
            let mut days = Decimal::ZERO;
            for (on, amount) in &o.payments {
                paid += amount;
                days += Decimal::from((*on - o.issue_date).num_days()) * amount;
            }
            let unpaid = (o.amount_due - paid).max(Decimal::ZERO);
            days += Decimal::from((end - o.issue_date).num_days()) * unpaid;
            if o.amount_due > Decimal::ZERO {
                dso_sum += days / (paid + unpaid).max(o.amount_due);
            }
            *collected.entry(o.currency.clone()).or_default() += paid;
            let settled = self.last.get(k).is_some_and(|s| {
                s.status == InvoiceStatus::Paid
                    || (s.status.is_open() && s.amount_due <= Decimal::ZERO)
            });
            if settled {
                paid_in_full += 1;
            }
        }
        let dso_tenths = if self.opening.is_empty() {
            0
        } else {
            let avg = dso_sum / Decimal::from(self.opening.len()) * Decimal::TEN;
            avg.round().try_into().unwrap_or(0)
        };
        Closing {
            opening_invoices: self.opening_count(),
            opening_due: self.amounts(false),
            issued_invoices: self.issued.len(),
            issued: self.amounts(true),
            collected,
            fees_collected: self.fees_collected.clone(),
            paid_in_full,
            ageing: self.ageing(end),
            dso_tenths,
        }
    }
}
