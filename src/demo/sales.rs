//! New sales during the run, so that the books age the way a trading business's do:
//! each weekday both simulated businesses invoice one or two existing customers. The
//! same invoices go to both worlds, drawn from the seed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use overdued_sandbox::{NewInvoice, TenantInfo};
use rust_decimal::Decimal;

use super::book::Book;

/// Payment terms of new invoices, in days; net 30 is the most common.
const TERMS: [i64; 4] = [14, 30, 30, 45];

/// A small, fixed pseudo-random sequence (SplitMix64): the demo's story must not
/// change when a dependency's generator does.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

pub struct Sales {
    rng: SplitMix64,
    /// (tenant, its customers with an email address as (name, email)), in tenant order.
    tenants: Vec<(TenantInfo, Vec<(String, String)>)>,
}

impl Sales {
    /// `connection_of` names the connection that reads a tenant; its customers are the
    /// ones the first sync saw there.
    pub fn new(
        seed: u64,
        tenants: Vec<TenantInfo>,
        book: &Book,
        connection_of: impl Fn(&TenantInfo) -> Option<String>,
    ) -> Sales {
        let mut by_connection: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
        for ((connection, _), s) in book.invoices() {
            if let Some(email) = &s.customer.email {
                by_connection
                    .entry(connection.as_str())
                    .or_default()
                    .insert((s.customer.name.clone(), email.clone()));
            }
        }
        let tenants = tenants
            .into_iter()
            .map(|t| {
                let customers = connection_of(&t)
                    .and_then(|c| by_connection.get(c.as_str()))
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                (t, customers)
            })
            .collect();
        Sales {
            rng: SplitMix64(seed ^ 0x6f76_6572_6475_6564),
            tenants,
        }
    }

    /// The invoices issued on `day` (none at weekends).
    pub fn for_day(&mut self, day: NaiveDate) -> Vec<NewInvoice> {
        if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (t, customers) in &self.tenants {
            if customers.is_empty() {
                continue;
            }
            for _ in 0..1 + self.rng.below(2) {
                let (name, email) = &customers[self.rng.below(customers.len() as u64) as usize];
                let cents = 20_000 + self.rng.below(580_000);
                let terms = TERMS[self.rng.below(TERMS.len() as u64) as usize];
                out.push(NewInvoice {
                    system: t.system,
                    tenant: Some(t.id.clone()),
                    customer_name: name.clone(),
                    customer_email: email.clone(),
                    number: None,
                    currency: None,
                    total: Decimal::new(cents as i64, 2),
                    issue_date: day,
                    due_date: day + Duration::days(terms),
                    // An existing customer keeps the behaviour the world gave them.
                    behaviour: None,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_fixed_for_a_seed() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], SplitMix64(8).next());
        // The published first output of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64(0).next(), 0xe220_a839_7b1d_cdaf);
        assert!((0..100).all(|_| a.below(3) < 3));
    }
}
