//! `[payer_profiles]`: the thresholds a profile is judged by.

use serde::{Deserialize, Serialize};

/// `[payer_profiles]`. Every key is optional; the defaults are argued beside each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayerProfilesConfig {
    /// How far back payments count, in days. A year: the collection guides speak of a
    /// customer's habits, and one year covers every season of a trading year once.
    pub history_days: u32,
    /// The fewest invoices (paid, or open and already late) a customer needs before a
    /// profile other than `new` is given: one or two invoices are an anecdote, three
    /// are a habit.
    pub min_invoices: u32,
    /// Paid this many days or fewer after the due date still counts as on time: a bank
    /// transfer sent on the due date can take a few working days to reach the ledger.
    pub late_after_days: i64,
    /// At most this share (percent) of late invoices is still `prompt`. 0: a single
    /// late invoice in the window makes a customer `occasional`, "a loyal one who
    /// slipped once" (`DUNNING.md`).
    pub prompt_max_share_late: u32,
    /// From this share (percent) of late invoices a customer is `chronic`: usually late
    /// means late more often than not, so half.
    pub chronic_share_late: u32,
    /// A broken promise to pay (or a broken payment plan) in the window makes a customer
    /// `chronic` whatever their other figures: the guides treat a broken promise as the
    /// point where the sequence resumes firmly.
    pub broken_promise_is_chronic: bool,
    /// An open invoice more than this many days later than its customer has ever paid
    /// (or, for a customer with no payments, than anyone has) is not expected at all
    /// and is left out of the cash forecast.
    pub unexpected_after_days: i64,
    /// An invoice is expected by the median lateness of the customer's last this many
    /// payments in the window: habits change once a customer is reminded, and the
    /// latest payments say more about the next than old debts do.
    pub expect_from_last: u32,
}

impl Default for PayerProfilesConfig {
    fn default() -> Self {
        PayerProfilesConfig {
            history_days: 365,
            min_invoices: 3,
            late_after_days: 3,
            prompt_max_share_late: 0,
            chronic_share_late: 50,
            broken_promise_is_chronic: true,
            unexpected_after_days: 30,
            expect_from_last: 6,
        }
    }
}

impl PayerProfilesConfig {
    /// The first invalid key, as (path, message).
    pub fn validate(&self, at: &str) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("{at}.{k}"), m));
        if !(30..=3660).contains(&self.history_days) {
            return err(
                "history_days",
                format!(
                    "{} is out of range: give 30 to 3660 days",
                    self.history_days
                ),
            );
        }
        if self.min_invoices == 0 {
            return err(
                "min_invoices",
                "must be at least 1: a profile needs some history".into(),
            );
        }
        if !(0..=365).contains(&self.late_after_days) {
            return err(
                "late_after_days",
                format!(
                    "{} is out of range: give 0 to 365 days",
                    self.late_after_days
                ),
            );
        }
        if self.chronic_share_late == 0 || self.chronic_share_late > 100 {
            return err(
                "chronic_share_late",
                format!(
                    "{} is not a percentage from 1 to 100",
                    self.chronic_share_late
                ),
            );
        }
        if self.prompt_max_share_late >= self.chronic_share_late {
            return err(
                "prompt_max_share_late",
                format!(
                    "{} must be below chronic_share_late ({}): otherwise nobody is occasional",
                    self.prompt_max_share_late, self.chronic_share_late
                ),
            );
        }
        if !(0..=3660).contains(&self.unexpected_after_days) {
            return err(
                "unexpected_after_days",
                format!(
                    "{} is out of range: give 0 to 3660 days",
                    self.unexpected_after_days
                ),
            );
        }
        if self.expect_from_last == 0 {
            return err(
                "expect_from_last",
                "must be at least 1: the expected date needs a payment to go by".into(),
            );
        }
        Ok(())
    }
}
