//! The binary encoding of invoice records, the store's hot record (a million of them is
//! read by every plan). JSON cost more to decode than sled took to read them.
//!
//! A record is one header byte, `0x80 | version`, which no JSON text starts with (JSON
//! starts with `{` or whitespace, all below 0x80), so a reader tells the two formats
//! apart by the first byte and old JSON records stay readable. The fields the load
//! filters on (status, `seen_at`) come first so [`peek`] decides without decoding the
//! rest. Integers are little-endian and fixed-width; dates are day numbers from the
//! common era; instants are seconds and nanoseconds, so a round trip is exact; decimals
//! are their 96-bit mantissa as an i128 and their scale; strings are a LEB128 length
//! and UTF-8 bytes.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use overdued_connector::{
    ConnectionId, Currency, CustomerRef, InvoiceSnapshot, InvoiceStatus, System,
};
use rust_decimal::Decimal;

use super::InvoiceRecord;

/// The record format version of binary invoice records (the same numbering as
/// [`super::FORMAT_VERSION`]; version 3 is the first binary one).
pub const BINARY_VERSION: u8 = 3;

const BINARY: u8 = 0x80;

const F_FEE: u8 = 1;
const F_NUMBER: u8 = 1 << 1;
const F_EMAIL: u8 = 1 << 2;
const F_VERSION: u8 = 1 << 3;
const F_PAY_URL: u8 = 1 << 4;
const F_PAID_ON: u8 = 1 << 5;

/// Whether `bytes` is a binary record (of any version), as opposed to a JSON envelope.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|b| b & BINARY != 0)
}

/// The version a binary record declares.
pub fn binary_version(bytes: &[u8]) -> Option<u8> {
    bytes
        .first()
        .filter(|b| *b & BINARY != 0)
        .map(|b| b & !BINARY)
}

pub fn status_code(s: InvoiceStatus) -> u8 {
    match s {
        InvoiceStatus::Open => 0,
        InvoiceStatus::Paid => 1,
        InvoiceStatus::Voided => 2,
        InvoiceStatus::Deleted => 3,
        InvoiceStatus::Draft => 4,
    }
}

pub fn status_of(code: u8) -> Option<InvoiceStatus> {
    Some(match code {
        0 => InvoiceStatus::Open,
        1 => InvoiceStatus::Paid,
        2 => InvoiceStatus::Voided,
        3 => InvoiceStatus::Deleted,
        4 => InvoiceStatus::Draft,
        _ => return None,
    })
}

pub fn encode(rec: &InvoiceRecord) -> Vec<u8> {
    let s = &rec.snapshot;
    let mut out = Vec::with_capacity(
        96 + s.connection.as_str().len()
            + s.remote_id.len()
            + s.number.as_ref().map_or(0, |n| n.len())
            + s.customer.id.len()
            + s.customer.name.len()
            + s.customer.email.as_ref().map_or(0, |e| e.len())
            + s.memo.len()
            + s.pay_url.as_ref().map_or(0, |u| u.len())
            + rec.balance_history.len() * 21,
    );
    out.push(BINARY | BINARY_VERSION);
    out.push(status_code(s.status));
    put_instant(&mut out, rec.seen_at);
    let mut flags = 0;
    for (set, bit) in [
        (s.is_fee_invoice, F_FEE),
        (s.number.is_some(), F_NUMBER),
        (s.customer.email.is_some(), F_EMAIL),
        (s.version.is_some(), F_VERSION),
        (s.pay_url.is_some(), F_PAY_URL),
        (s.paid_on.is_some(), F_PAID_ON),
    ] {
        if set {
            flags |= bit;
        }
    }
    out.push(flags);
    put_instant(&mut out, rec.first_seen_at);
    put_instant(&mut out, s.updated_at);
    put_date(&mut out, s.issue_date);
    put_date(&mut out, s.due_date);
    if let Some(d) = s.paid_on {
        put_date(&mut out, d);
    }
    out.push(match s.system {
        System::QuickBooks => 0,
        System::Xero => 1,
    });
    out.extend_from_slice(s.currency.code().as_bytes());
    put_decimal(&mut out, s.total);
    put_decimal(&mut out, s.amount_due);
    put_str(&mut out, s.connection.as_str());
    put_str(&mut out, &s.remote_id);
    if let Some(n) = &s.number {
        put_str(&mut out, n);
    }
    put_str(&mut out, &s.customer.id);
    put_str(&mut out, &s.customer.name);
    if let Some(e) = &s.customer.email {
        put_str(&mut out, e);
    }
    if let Some(v) = &s.version {
        put_str(&mut out, v);
    }
    put_str(&mut out, &s.memo);
    if let Some(u) = &s.pay_url {
        put_str(&mut out, u);
    }
    put_len(&mut out, rec.balance_history.len());
    for (on, amount) in &rec.balance_history {
        put_date(&mut out, *on);
        put_decimal(&mut out, *amount);
    }
    out
}

/// Status and `seen_at` of a binary record of this version, read from its first bytes;
/// `None` for anything else (JSON, another version, too short), which the caller then
/// decodes in full.
pub fn peek(bytes: &[u8]) -> Option<(InvoiceStatus, DateTime<Utc>)> {
    if bytes.first() != Some(&(BINARY | BINARY_VERSION)) {
        return None;
    }
    let mut r = Reader { b: bytes, at: 1 };
    let status = status_of(r.u8().ok()?)?;
    let seen_at = r.instant().ok()?;
    Some((status, seen_at))
}

/// Decodes a binary record of [`BINARY_VERSION`]; the error says what was wrong where.
pub fn decode(bytes: &[u8]) -> Result<InvoiceRecord, String> {
    let mut r = Reader { b: bytes, at: 0 };
    let head = r.u8()?;
    if head != BINARY | BINARY_VERSION {
        return Err(format!("unknown binary record header {head:#04x}"));
    }
    let code = r.u8()?;
    let status = status_of(code).ok_or_else(|| format!("unknown invoice status {code}"))?;
    let seen_at = r.instant()?;
    let flags = r.u8()?;
    let has = |bit: u8| flags & bit != 0;
    let first_seen_at = r.instant()?;
    let updated_at = r.instant()?;
    let issue_date = r.date()?;
    let due_date = r.date()?;
    let paid_on = if has(F_PAID_ON) {
        Some(r.date()?)
    } else {
        None
    };
    let system = match r.u8()? {
        0 => System::QuickBooks,
        1 => System::Xero,
        other => return Err(format!("unknown system {other}")),
    };
    let code = r.take(3)?;
    let currency: Currency = std::str::from_utf8(code)
        .map_err(|_| "currency code is not text".to_string())?
        .parse()
        .map_err(|e: overdued_connector::CurrencyError| e.to_string())?;
    let total = r.decimal()?;
    let amount_due = r.decimal()?;
    let connection = ConnectionId(r.string()?);
    let remote_id = r.string()?;
    let number = if has(F_NUMBER) {
        Some(r.string()?)
    } else {
        None
    };
    let customer_id = r.string()?;
    let customer_name = r.string()?;
    let email = if has(F_EMAIL) {
        Some(r.string()?)
    } else {
        None
    };
    let version = if has(F_VERSION) {
        Some(r.string()?)
    } else {
        None
    };
    let memo = r.string()?;
    let pay_url = if has(F_PAY_URL) {
        Some(r.string()?)
    } else {
        None
    };
    let n = r.len()?;
    // Each entry takes 21 bytes: a bound from the bytes left, not from the count read.
    let mut balance_history = Vec::with_capacity(n.min(r.left() / 21));
    for _ in 0..n {
        let on = r.date()?;
        balance_history.push((on, r.decimal()?));
    }
    if r.left() != 0 {
        return Err(format!("{} bytes left over after the record", r.left()));
    }
    Ok(InvoiceRecord {
        snapshot: InvoiceSnapshot {
            connection,
            system,
            remote_id,
            number,
            customer: CustomerRef {
                id: customer_id,
                name: customer_name,
                email,
            },
            currency,
            total,
            amount_due,
            issue_date,
            due_date,
            status,
            updated_at,
            version,
            memo,
            is_fee_invoice: has(F_FEE),
            pay_url,
            paid_on,
        },
        seen_at,
        first_seen_at,
        balance_history,
    })
}

fn put_instant(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_le_bytes());
    out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
}

fn put_date(out: &mut Vec<u8>, d: NaiveDate) {
    out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
}

fn put_decimal(out: &mut Vec<u8>, d: Decimal) {
    out.extend_from_slice(&d.mantissa().to_le_bytes());
    // At most 28.
    out.push(d.scale() as u8);
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.left() < n {
            return Err(format!(
                "record ends at byte {} where {n} more were expected",
                self.b.len()
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn instant(&mut self) -> Result<DateTime<Utc>, String> {
        let at = self.at;
        let secs = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        DateTime::from_timestamp(secs, nanos)
            .ok_or_else(|| format!("byte {at}: instant {secs}s {nanos}ns is out of range"))
    }

    fn date(&mut self) -> Result<NaiveDate, String> {
        let at = self.at;
        let days = i32::from_le_bytes(self.array()?);
        NaiveDate::from_num_days_from_ce_opt(days)
            .ok_or_else(|| format!("byte {at}: day number {days} is out of range"))
    }

    fn decimal(&mut self) -> Result<Decimal, String> {
        let at = self.at;
        let mantissa = i128::from_le_bytes(self.array()?);
        let scale = self.u8()?;
        Decimal::try_from_i128_with_scale(mantissa, u32::from(scale))
            .map_err(|e| format!("byte {at}: amount: {e}"))
    }

    fn len(&mut self) -> Result<usize, String> {
        let at = self.at;
        let mut n: usize = 0;
        for shift in (0..35).step_by(7) {
            let b = self.u8()?;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!("byte {at}: length runs past 5 bytes"))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let at = self.at;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|e| format!("byte {at}: text is not UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date() -> impl Strategy<Value = NaiveDate> {
        (-200_000i32..3_000_000).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).unwrap())
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (-50_000_000_000i64..50_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
    }

    fn decimal() -> impl Strategy<Value = Decimal> {
        (any::<i64>(), any::<u32>(), 0u32..=28).prop_map(|(m, hi, scale)| {
            let mantissa = (i128::from(hi) << 64 | i128::from(m as u64)) * i128::from(m.signum());
            Decimal::try_from_i128_with_scale(mantissa % (1i128 << 96), scale).unwrap()
        })
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".{0,12}", ".{100,300}"]
    }

    fn status() -> impl Strategy<Value = InvoiceStatus> {
        (0u8..5).prop_map(|c| status_of(c).unwrap())
    }

    prop_compose! {
        fn snapshot()(
            connection in text(),
            xero in any::<bool>(),
            remote_id in text(),
            number in proptest::option::of(text()),
            customer in (text(), text(), proptest::option::of(text())),
            currency in "[A-Z]{3}",
            amounts in (decimal(), decimal()),
            dates in (date(), date(), proptest::option::of(date())),
            status in status(),
            updated_at in instant(),
            version in proptest::option::of(text()),
            memo in text(),
            is_fee_invoice in any::<bool>(),
            pay_url in proptest::option::of(text()),
        ) -> InvoiceSnapshot {
            InvoiceSnapshot {
                connection: ConnectionId(connection),
                system: if xero { System::Xero } else { System::QuickBooks },
                remote_id,
                number,
                customer: CustomerRef { id: customer.0, name: customer.1, email: customer.2 },
                currency: currency.parse().unwrap(),
                total: amounts.0,
                amount_due: amounts.1,
                issue_date: dates.0,
                due_date: dates.1,
                status,
                updated_at,
                version,
                memo,
                is_fee_invoice,
                pay_url,
                paid_on: dates.2,
            }
        }
    }

    prop_compose! {
        fn record()(
            snapshot in snapshot(),
            seen_at in instant(),
            first_seen_at in instant(),
            balance_history in proptest::collection::vec((date(), decimal()), 0..6),
        ) -> InvoiceRecord {
            InvoiceRecord { snapshot, seen_at, first_seen_at, balance_history }
        }
    }

    proptest! {
        #[test]
        fn every_record_round_trips_exactly(rec in record()) {
            let bytes = encode(&rec);
            prop_assert!(is_binary(&bytes));
            prop_assert_eq!(decode(&bytes).unwrap(), rec.clone());
            prop_assert_eq!(peek(&bytes), Some((rec.snapshot.status, rec.seen_at)));
        }

        #[test]
        fn a_cut_or_damaged_record_is_an_error_not_a_panic(
            rec in record(),
            cut in any::<prop::sample::Index>(),
            flip in any::<(prop::sample::Index, u8)>(),
        ) {
            let bytes = encode(&rec);
            let n = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..n]).is_err());
            let mut damaged = bytes.clone();
            let i = flip.0.index(damaged.len());
            damaged[i] ^= flip.1;
            let _ = decode(&damaged);
            let _ = peek(&damaged);
        }
    }

    #[test]
    fn json_is_never_taken_for_binary() {
        for b in [b'{', b' ', b'\n', b'\t', b'\r', b'"', b'['] {
            assert!(!is_binary(&[b]));
        }
        assert_eq!(binary_version(&[0x80 | 7]), Some(7));
    }
}
