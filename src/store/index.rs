//! The summary index: one small fixed-size row per stored invoice with what deciding
//! about it needs (status, dates as day numbers, amount due as a scaled integer, flags),
//! kept in the same sled transaction as the invoice record and updated by journal and
//! hold writes, so reading a million of them costs no record decoding.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use overdued_connector::{Currency, InvoiceStatus};
use rust_decimal::Decimal;

use super::codec::{status_code, status_of};
use super::InvoiceRecord;

/// The layout version a row starts with.
const ROW_VERSION: u8 = 1;
/// Bytes in a row.
pub const ROW_LEN: usize = 44;

pub const FLAG_FEE_INVOICE: u8 = 1;
/// The connection's journal has an entry for the invoice.
pub const FLAG_HAS_JOURNAL: u8 = 1 << 1;
/// A promise or pause is set on the invoice itself (customer pauses are not counted).
pub const FLAG_HAS_HOLDS: u8 = 1 << 2;
/// The amount due did not fit an i64 mantissa: read it from the record.
pub const FLAG_AMOUNT_OVERFLOW: u8 = 1 << 3;

/// One invoice's row of the summary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRow {
    pub status: InvoiceStatus,
    pub flags: u8,
    /// The due date, as days from the common era.
    pub due_day: i32,
    /// The day overdued first saw it.
    pub first_seen_day: i32,
    /// When overdued last read it (exact, as the record has it).
    pub seen_at: DateTime<Utc>,
    /// The amount due is `amount_mantissa` / 10^`amount_scale`.
    pub amount_mantissa: i64,
    pub amount_scale: u8,
    pub currency: Currency,
    /// [`customer_hash`] of the customer id: groups a customer's invoices without strings.
    pub customer: u64,
}

impl IndexRow {
    /// The row a record stands for, with the journal and hold flags given.
    pub fn of(rec: &InvoiceRecord, has_journal: bool, has_holds: bool) -> IndexRow {
        let s = &rec.snapshot;
        let mut flags = 0;
        if s.is_fee_invoice {
            flags |= FLAG_FEE_INVOICE;
        }
        if has_journal {
            flags |= FLAG_HAS_JOURNAL;
        }
        if has_holds {
            flags |= FLAG_HAS_HOLDS;
        }
        let (amount_mantissa, amount_scale) = match i64::try_from(s.amount_due.mantissa()) {
            Ok(m) => (m, s.amount_due.scale() as u8),
            Err(_) => {
                flags |= FLAG_AMOUNT_OVERFLOW;
                (0, 0)
            }
        };
        IndexRow {
            status: s.status,
            flags,
            due_day: s.due_date.num_days_from_ce(),
            first_seen_day: rec.first_seen_at.date_naive().num_days_from_ce(),
            seen_at: rec.seen_at,
            amount_mantissa,
            amount_scale,
            currency: s.currency,
            customer: customer_hash(&s.customer.id),
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn due_date(&self) -> Option<NaiveDate> {
        NaiveDate::from_num_days_from_ce_opt(self.due_day)
    }

    /// The amount due, unless it did not fit the row.
    pub fn amount_due(&self) -> Option<Decimal> {
        if self.has(FLAG_AMOUNT_OVERFLOW) {
            return None;
        }
        Decimal::try_from_i128_with_scale(
            i128::from(self.amount_mantissa),
            u32::from(self.amount_scale),
        )
        .ok()
    }

    pub fn encode(&self) -> [u8; ROW_LEN] {
        let mut b = [0u8; ROW_LEN];
        b[0] = ROW_VERSION;
        b[1] = status_code(self.status);
        b[2] = self.flags;
        b[3] = self.amount_scale;
        b[4..8].copy_from_slice(&self.due_day.to_le_bytes());
        b[8..12].copy_from_slice(&self.first_seen_day.to_le_bytes());
        b[12..20].copy_from_slice(&self.seen_at.timestamp().to_le_bytes());
        b[20..28].copy_from_slice(&self.amount_mantissa.to_le_bytes());
        b[28..31].copy_from_slice(self.currency.code().as_bytes());
        // b[31] reserved.
        b[32..40].copy_from_slice(&self.customer.to_le_bytes());
        b[40..44].copy_from_slice(&self.seen_at.timestamp_subsec_nanos().to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<IndexRow, String> {
        if b.len() != ROW_LEN {
            return Err(format!(
                "index row of {} bytes, expected {ROW_LEN}",
                b.len()
            ));
        }
        if b[0] != ROW_VERSION {
            return Err(format!("index row layout {} is not known", b[0]));
        }
        let le4 = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let le8 = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            a
        };
        Ok(IndexRow {
            status: status_of(b[1]).ok_or_else(|| format!("unknown status {}", b[1]))?,
            flags: b[2],
            amount_scale: b[3],
            due_day: i32::from_le_bytes(le4(4)),
            first_seen_day: i32::from_le_bytes(le4(8)),
            seen_at: DateTime::from_timestamp(
                i64::from_le_bytes(le8(12)),
                u32::from_le_bytes(le4(40)),
            )
            .ok_or("index row seen-at is out of range")?,
            amount_mantissa: i64::from_le_bytes(le8(20)),
            currency: std::str::from_utf8(&b[28..31])
                .ok()
                .and_then(|c| c.parse().ok())
                .ok_or("index row currency is not a currency code")?,
            customer: u64::from_le_bytes(le8(32)),
        })
    }
}

/// FNV-1a of a customer id: stable across releases and platforms, unlike std's hasher.
pub fn customer_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A row of the index that disagrees with the records (or has none behind it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMismatch {
    pub connection: String,
    pub invoice_id: String,
    /// What differs, for a person: "missing row", "row without a record", "status
    /// open in the row, paid in the record", ...
    pub what: String,
}

impl std::fmt::Display for IndexMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connection {} invoice {}: {}",
            self.connection, self.invoice_id, self.what
        )
    }
}

/// What differs between a stored row and the one the record stands for.
pub fn differences(stored: &IndexRow, want: &IndexRow) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a} in the row, {b} in the record"));
        }
    };
    field(
        "status",
        format!("{:?}", stored.status),
        format!("{:?}", want.status),
    );
    field(
        "due day",
        stored.due_day.to_string(),
        want.due_day.to_string(),
    );
    field(
        "first-seen day",
        stored.first_seen_day.to_string(),
        want.first_seen_day.to_string(),
    );
    field(
        "seen at",
        stored.seen_at.to_string(),
        want.seen_at.to_string(),
    );
    field(
        "amount due",
        format!("{:?}", stored.amount_due()),
        format!("{:?}", want.amount_due()),
    );
    field(
        "currency",
        stored.currency.to_string(),
        want.currency.to_string(),
    );
    field(
        "customer hash",
        stored.customer.to_string(),
        want.customer.to_string(),
    );
    for (flag, name) in [
        (FLAG_FEE_INVOICE, "fee-invoice flag"),
        (FLAG_HAS_JOURNAL, "journal flag"),
        (FLAG_HAS_HOLDS, "hold flag"),
        (FLAG_AMOUNT_OVERFLOW, "amount-overflow flag"),
    ] {
        field(
            name,
            stored.has(flag).to_string(),
            want.has(flag).to_string(),
        );
    }
    out
}

/// The open receivables of `connection` by ageing bucket on `today`, from the index
/// rows alone (no record decoded), counted as [`crate::report::ageing::Ageing::add`]
/// counts them. `None` when a row could not hold its amount: count from the records.
pub fn ageing_from_rows(
    store: &dyn super::Store,
    connection: &str,
    today: NaiveDate,
) -> super::Result<Option<crate::report::ageing::Ageing>> {
    use crate::report::ageing::{Ageing, Bucket};
    let today = i64::from(today.num_days_from_ce());
    let mut ageing = Ageing::default();
    let mut whole = true;
    store.index_rows(connection, &mut |_, row| {
        if !row.status.is_open() {
            return true;
        }
        let Some(amount) = row.amount_due() else {
            whole = false;
            return false;
        };
        if amount <= Decimal::ZERO {
            return true;
        }
        let t = ageing
            .by_currency
            .entry(row.currency.code().to_string())
            .or_default()
            .entry(Bucket::of(today - i64::from(row.due_day)))
            .or_default();
        t.count += 1;
        t.amount += amount;
        true
    })?;
    Ok(whole.then_some(ageing))
}

/// `overdued index`: what [`super::Store::check_index`] finds, after a rebuild when
/// asked. Disagreement is exit 65 (EX_DATAERR), naming each row and what differs.
pub fn check_report(
    store: &dyn super::Store,
    rebuild: bool,
) -> Result<String, crate::ops::OpError> {
    use std::fmt::Write;
    let mut out = String::new();
    if rebuild {
        let rows = store.rebuild_index().map_err(crate::ops::io)?;
        let _ = writeln!(out, "summary index rebuilt: {rows} rows");
    }
    let found = store.check_index().map_err(crate::ops::io)?;
    if found.is_empty() {
        let _ = writeln!(out, "summary index agrees with the invoice records");
        return Ok(out);
    }
    let _ = write!(
        out,
        "the summary index disagrees with the invoice records in {} row{}:",
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    );
    for m in found.iter().take(20) {
        let _ = write!(out, "\n  {m}");
    }
    if found.len() > 20 {
        let _ = write!(out, "\n  ... and {} more", found.len() - 20);
    }
    let _ = write!(out, "\nrun `overdued index --rebuild` to build it afresh");
    Err(crate::ops::OpError {
        code: 65,
        message: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_and_keeps_the_amount_exact() {
        let row = IndexRow {
            status: InvoiceStatus::Open,
            flags: FLAG_HAS_HOLDS | FLAG_FEE_INVOICE,
            due_day: 739_000,
            first_seen_day: 738_990,
            seen_at: DateTime::from_timestamp(1_790_000_000, 123).unwrap(),
            amount_mantissa: -123_456,
            amount_scale: 3,
            currency: Currency::GBP,
            customer: customer_hash("c42"),
        };
        let back = IndexRow::decode(&row.encode()).unwrap();
        assert_eq!(back, row);
        assert_eq!(back.amount_due(), Some(Decimal::new(-123_456, 3)));
        assert!(IndexRow::decode(&row.encode()[..43]).is_err());
        assert_ne!(customer_hash("c42"), customer_hash("c24"));
    }
}
