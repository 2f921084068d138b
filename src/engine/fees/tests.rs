use super::*;
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn cfg(model: FeeModelKind) -> LateFeeConfig {
    LateFeeConfig {
        model,
        amount: None,
        percent: None,
        reference_rates: vec![],
        grace_days: 0,
        every_days: None,
        cap_amount: None,
        cap_percent_of_invoice: None,
        min_invoice_amount: None,
        posting: FeePosting::SeparateInvoice,
    }
}

fn input<'a>(cur: Currency, total: Decimal, as_of: NaiveDate) -> FeeInput<'a> {
    FeeInput {
        currency: cur,
        invoice_total: total,
        amount_due: total,
        due_date: d(2026, 10, 31),
        as_of,
        period: 0,
        balance_history: &[],
        fees_charged: &[],
        is_fee_invoice: false,
    }
}

fn uk_rates() -> Vec<ReferenceRateConfig> {
    vec![
        ReferenceRateConfig {
            from: ConfigDate::new("2025-01-01"),
            percent: dec!(4.75),
        },
        ReferenceRateConfig {
            from: ConfigDate::new("2026-07-01"),
            percent: dec!(4.00),
        },
        ReferenceRateConfig {
            from: ConfigDate::new("2026-09-15"),
            percent: dec!(3.50),
        },
    ]
}

#[test]
fn fixed_and_percentage() {
    let fee = LateFeeConfig {
        amount: Some(dec!(25)),
        ..cfg(FeeModelKind::Fixed)
    }
    .compile()
    .unwrap();
    let q = quote_fee(&fee, &input(Currency::USD, dec!(362.07), d(2026, 11, 30))).unwrap();
    assert_eq!(q.amount, Money::new(dec!(25), Currency::USD));
    assert!(
        q.explanation.contains("fixed fee USD 25.00"),
        "{}",
        q.explanation
    );

    let fee = LateFeeConfig {
        percent: Some(dec!(1.5)),
        ..cfg(FeeModelKind::Percentage)
    }
    .compile()
    .unwrap();
    let q = quote_fee(&fee, &input(Currency::USD, dec!(362.07), d(2026, 11, 30))).unwrap();
    // 5.43105 rounds half away from zero to 5.43.
    assert_eq!(q.amount.amount, dec!(5.43));
    let jpy: Currency = "JPY".parse().unwrap();
    let q = quote_fee(&fee, &input(jpy, dec!(10_100), d(2026, 11, 30))).unwrap();
    assert_eq!(q.amount, Money::new(dec!(152), jpy)); // 151.5 -> 152
}

#[test]
fn interest_accrues_daily_on_the_balance_outstanding() {
    let fee = LateFeeConfig {
        percent: Some(dec!(10)),
        ..cfg(FeeModelKind::Interest)
    }
    .compile()
    .unwrap();
    // 1000 at 10 % for 30 days = 8.219... -> 8.22
    let q = quote_fee(&fee, &input(Currency::USD, dec!(1000), d(2026, 11, 30))).unwrap();
    assert_eq!(q.amount.amount, dec!(8.22));
    // Half paid on 10 Nov: 9 days (1-9 Nov) on 1000, 21 days on 500 = 19,500 currency-days.
    let history = [BalanceChange {
        on: d(2026, 11, 10),
        balance: dec!(500),
    }];
    let mut i = input(Currency::USD, dec!(1000), d(2026, 11, 30));
    i.amount_due = dec!(500);
    i.balance_history = &history;
    let q = quote_fee(&fee, &i).unwrap();
    assert_eq!(q.amount.amount, dec!(5.34)); // 19500 * 10 / 36500 = 5.342
                                             // A period later, the 5.34 already charged is subtracted.
    let charged = [ChargedFee {
        period: 0,
        amount: dec!(5.34),
        on: d(2026, 11, 30),
    }];
    i.fees_charged = &charged;
    i.as_of = d(2026, 12, 30);
    i.period = 1;
    let q = quote_fee(&fee, &i).unwrap();
    // 19500 + 30*500 = 34500 currency-days -> 9.45 owed, 4.11 new.
    assert_eq!(q.amount.amount, dec!(4.11));
    assert!(
        q.explanation.contains("USD 9.45 accrued"),
        "{}",
        q.explanation
    );
}

#[test]
fn statutory_uk_uses_the_half_year_rate_and_compensation_by_size() {
    let fee = LateFeeConfig {
        reference_rates: uk_rates(),
        ..cfg(FeeModelKind::StatutoryUk)
    }
    .compile()
    .unwrap();
    // Due 31 Oct 2026: the half-year began 1 Jul 2026, rate 4.00 (the September cut is later).
    assert_eq!(
        reference_rate(
            &[(d(2026, 7, 1), dec!(4)), (d(2026, 9, 15), dec!(3.5))],
            d(2026, 10, 31)
        )
        .unwrap()
        .1,
        dec!(4)
    );
    let q = quote_fee(&fee, &input(Currency::GBP, dec!(1200), d(2026, 11, 30))).unwrap();
    // 1200 * 12 % * 30 / 365 = 11.835... -> 11.84, plus GBP 70 for a debt under 10,000.
    assert_eq!(q.amount, Money::new(dec!(81.84), Currency::GBP));
    assert!(q.explanation.contains("12% a year"), "{}", q.explanation);
    for (debt, comp) in [
        (dec!(999.99), dec!(40)),
        (dec!(1000), dec!(70)),
        (dec!(9999.99), dec!(70)),
        (dec!(10000), dec!(100)),
    ] {
        assert_eq!(
            compensation(Statutory::Uk, Currency::GBP, debt).0,
            comp,
            "{debt}"
        );
    }
    // No rate in force when the invoice fell due.
    let early = LateFeeConfig {
        reference_rates: vec![uk_rates().remove(2)],
        ..cfg(FeeModelKind::StatutoryUk)
    }
    .compile()
    .unwrap();
    assert_eq!(
        quote_fee(&early, &input(Currency::GBP, dec!(1200), d(2026, 11, 30)))
            .unwrap_err()
            .reason,
        NoFeeReason::NoReferenceRate
    );
}

#[test]
fn statutory_eu_adds_eur_40_only_in_euros() {
    let rates = vec![ReferenceRateConfig {
        from: ConfigDate::new("2026-07-01"),
        percent: dec!(2.15),
    }];
    let fee = LateFeeConfig {
        reference_rates: rates,
        ..cfg(FeeModelKind::StatutoryEu)
    }
    .compile()
    .unwrap();
    let q = quote_fee(&fee, &input(Currency::EUR, dec!(500), d(2026, 11, 30))).unwrap();
    // 500 * 10.15 % * 30 / 365 = 4.171 -> 4.17, + 40.
    assert_eq!(q.amount.amount, dec!(44.17));
    let q = quote_fee(&fee, &input(Currency::USD, dec!(500), d(2026, 11, 30))).unwrap();
    assert_eq!(q.amount.amount, dec!(4.17));
    assert!(
        q.explanation.contains("no fixed compensation"),
        "{}",
        q.explanation
    );
}

#[test]
fn caps_minimums_and_fee_invoices() {
    let fee = LateFeeConfig {
        amount: Some(dec!(40)),
        cap_amount: Some(dec!(100)),
        cap_percent_of_invoice: Some(dec!(10)),
        min_invoice_amount: Some(dec!(50)),
        ..cfg(FeeModelKind::Fixed)
    }
    .compile()
    .unwrap();
    let mut i = input(Currency::USD, dec!(500), d(2026, 11, 30));
    assert_eq!(quote_fee(&fee, &i).unwrap().amount.amount, dec!(40));
    let charged = [ChargedFee {
        period: 0,
        amount: dec!(40),
        on: d(2026, 11, 30),
    }];
    i.fees_charged = &charged;
    let q = quote_fee(&fee, &i).unwrap();
    assert_eq!(q.amount.amount, dec!(10)); // 10 % of 500 = 50, 40 already charged
    assert!(
        q.explanation.contains("limited by the cap 10%"),
        "{}",
        q.explanation
    );
    let charged = [ChargedFee {
        period: 0,
        amount: dec!(50),
        on: d(2026, 11, 30),
    }];
    i.fees_charged = &charged;
    assert_eq!(
        quote_fee(&fee, &i).unwrap_err().reason,
        NoFeeReason::CapReached
    );
    let small = input(Currency::USD, dec!(49.99), d(2026, 11, 30));
    assert_eq!(
        quote_fee(&fee, &small).unwrap_err().reason,
        NoFeeReason::BelowMinimum
    );
    let mut on_fee = input(Currency::USD, dec!(500), d(2026, 11, 30));
    on_fee.is_fee_invoice = true;
    assert_eq!(
        quote_fee(&fee, &on_fee).unwrap_err().reason,
        NoFeeReason::FeeInvoice
    );
}

#[test]
fn line_fees_are_not_principal() {
    let mut c = cfg(FeeModelKind::Interest);
    c.percent = Some(dec!(10));
    c.posting = FeePosting::LineOnOriginal;
    let fee = c.compile().unwrap();
    // The fee of 100 was added to the invoice on 30 Nov; interest must not run on it.
    let charged = [ChargedFee {
        period: 0,
        amount: dec!(100),
        on: d(2026, 11, 30),
    }];
    let history = [BalanceChange {
        on: d(2026, 11, 30),
        balance: dec!(1100),
    }];
    let mut i = input(Currency::USD, dec!(1000), d(2026, 12, 30));
    i.amount_due = dec!(1100);
    i.balance_history = &history;
    i.fees_charged = &charged;
    assert_eq!(principal_days(&i, FeePosting::LineOnOriginal), dec!(60_000));
    // 60,000 currency-days at 10 % is 16.44, less than the 100 already charged.
    assert_eq!(
        quote_fee(&fee, &i).unwrap_err().reason,
        NoFeeReason::NothingAccrued
    );
}

#[test]
fn periods_follow_the_step_grace_and_recurrence() {
    let mut c = LateFeeConfig {
        amount: Some(dec!(10)),
        ..cfg(FeeModelKind::Fixed)
    };
    let once = c.compile().unwrap();
    assert_eq!(once.period_on(29, 30), None);
    assert_eq!(once.period_on(30, 30), Some((0, 30)));
    assert_eq!(once.period_on(300, 30), Some((0, 30)));
    c.every_days = Some(30);
    c.grace_days = 40;
    let rec = c.compile().unwrap();
    assert_eq!(rec.period_on(40, 30), None);
    assert_eq!(rec.period_on(41, 30), Some((0, 41)));
    assert_eq!(rec.period_on(70, 30), Some((0, 41)));
    assert_eq!(rec.period_on(71, 30), Some((1, 71)));
    assert_eq!(rec.period_start(2, 30), 101);
}

#[test]
fn compile_names_the_bad_field() {
    let errs = cfg(FeeModelKind::Fixed).compile().unwrap_err();
    assert_eq!(errs[0].0, "amount");
    let errs = LateFeeConfig {
        amount: Some(dec!(1)),
        percent: Some(dec!(1)),
        every_days: Some(0),
        ..cfg(FeeModelKind::Fixed)
    }
    .compile()
    .unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(fields, ["percent", "every_days"]);
    let bad_date = vec![ReferenceRateConfig {
        from: ConfigDate::new("2026-13-01"),
        percent: dec!(1),
    }];
    let errs = LateFeeConfig {
        reference_rates: bad_date,
        ..cfg(FeeModelKind::StatutoryUk)
    }
    .compile()
    .unwrap_err();
    assert_eq!(errs[0].0, "reference_rates[0].from");
}

fn any_model() -> impl Strategy<Value = LateFeeConfig> {
    let amount = (1u32..100_000).prop_map(|c| Decimal::new(i64::from(c), 2));
    let pct = (1u32..5_000).prop_map(|c| Decimal::new(i64::from(c), 2));
    prop_oneof![
        amount.prop_map(|a| LateFeeConfig {
            amount: Some(a),
            ..cfg(FeeModelKind::Fixed)
        }),
        pct.clone().prop_map(|p| LateFeeConfig {
            percent: Some(p),
            ..cfg(FeeModelKind::Percentage)
        }),
        pct.clone().prop_map(|p| LateFeeConfig {
            percent: Some(p),
            ..cfg(FeeModelKind::Interest)
        }),
        Just(LateFeeConfig {
            reference_rates: uk_rates(),
            ..cfg(FeeModelKind::StatutoryUk)
        }),
        Just(LateFeeConfig {
            reference_rates: vec![ReferenceRateConfig {
                from: ConfigDate::new("2020-01-01"),
                percent: dec!(2.15)
            }],
            ..cfg(FeeModelKind::StatutoryEu)
        }),
    ]
}

fn any_currency() -> impl Strategy<Value = Currency> {
    prop_oneof![
        Just(Currency::USD),
        Just(Currency::GBP),
        Just(Currency::EUR),
        Just("JPY".parse().unwrap()),
        Just("KWD".parse().unwrap())
    ]
}

proptest! {
    #[test]
    fn fees_are_never_negative_and_never_exceed_a_cap(
        mut c in any_model(),
        cur in any_currency(),
        total_cents in 1i64..10_000_000,
        due_frac in 1u32..=100,
        days in 1i64..400,
        already_cents in 0i64..100_000,
        cap_cents in proptest::option::of(0i64..50_000),
        cap_pct in proptest::option::of(0u32..3_000),
    ) {
        c.cap_amount = cap_cents.map(|v| Decimal::new(v, 2));
        c.cap_percent_of_invoice = cap_pct.map(|v| Decimal::new(i64::from(v), 2));
        let fee = c.compile().unwrap();
        let total = Decimal::new(total_cents, 2);
        let due = cur.round(total * Decimal::from(due_frac) / Decimal::ONE_HUNDRED);
        let as_of = d(2026, 10, 31) + chrono::Duration::days(days);
        let charged = [ChargedFee { period: 0, amount: cur.round(Decimal::new(already_cents, 2)), on: d(2026, 10, 31) }];
        let i = FeeInput { amount_due: due, fees_charged: &charged, period: 1, ..input(cur, total, as_of) };
        if let Ok(q) = quote_fee(&fee, &i) {
            prop_assert!(q.amount.amount > Decimal::ZERO);
            prop_assert_eq!(q.amount.amount, cur.round(q.amount.amount));
            prop_assert_eq!(q.amount.currency, cur);
            let after = charged[0].amount + q.amount.amount;
            if let Some(cap) = c.cap_amount {
                prop_assert!(q.amount.amount <= cap && after <= cap.max(charged[0].amount), "{} + {} > cap {}", charged[0].amount, q.amount.amount, cap);
            }
            if let Some(p) = c.cap_percent_of_invoice {
                let cap = total * p / Decimal::ONE_HUNDRED;
                prop_assert!(after <= cap.max(charged[0].amount), "{} > {}% of {}", after, p, total);
            }
        }
    }

    #[test]
    fn interest_after_partial_payments_matches_a_day_by_day_count(
        c in any_model().prop_filter("cumulative", |c| matches!(c.model, FeeModelKind::Interest | FeeModelKind::StatutoryUk | FeeModelKind::StatutoryEu)),
        total_cents in 100i64..10_000_000,
        payments in proptest::collection::vec((1i64..200, 1u32..60), 0..5),
        periods in 1u32..8,
        every in 5u32..60,
    ) {
        let cur = Currency::GBP;
        let total = Decimal::new(total_cents, 2);
        let due = d(2026, 10, 31);
        // Payments shrink the balance by a share each time, on increasing days.
        let mut history = Vec::new();
        let mut balance = total;
        let mut day = 0;
        for (gap, pct) in &payments {
            day += gap;
            balance = cur.round(balance * Decimal::from(100 - pct) / Decimal::ONE_HUNDRED);
            history.push(BalanceChange { on: due + chrono::Duration::days(day), balance });
        }
        let fee = LateFeeConfig { every_days: Some(every), ..c }.compile().unwrap();
        let mut charged: Vec<ChargedFee> = Vec::new();
        let mut last_owed = Decimal::ZERO;
        for p in 0..periods {
            let as_of = due + chrono::Duration::days(fee.period_start(p, 1));
            let amount_due = history.iter().rev().find(|c| c.on <= as_of).map(|c| c.balance).unwrap_or(total);
            let i = FeeInput { amount_due, balance_history: &history, fees_charged: &charged, period: p, ..input(cur, total, as_of) };
            // Reference: principal summed one day at a time.
            let mut reference = Decimal::ZERO;
            let mut t = due.succ_opt().unwrap();
            while t <= as_of {
                reference += history.iter().rev().find(|c| c.on <= t).map(|c| c.balance).unwrap_or(total);
                t = t.succ_opt().unwrap();
            }
            prop_assert_eq!(principal_days(&i, FeePosting::SeparateInvoice), reference);
            if let Ok(q) = quote_fee(&fee, &i) {
                prop_assert!(q.amount.amount > Decimal::ZERO);
                charged.push(ChargedFee { period: p, amount: q.amount.amount, on: as_of });
            }
            // What the law allows by now: accrued interest plus compensation, rounded.
            let rate = match &fee.model {
                FeeModel::Interest { annual_percent } => *annual_percent,
                FeeModel::Statutory { rates, .. } => reference_rate(rates, due).unwrap().1 + STATUTORY_MARGIN,
                _ => unreachable!(),
            };
            let debt = history.iter().rev().find(|c| c.on <= due).map(|c| c.balance).unwrap_or(total);
            let comp = match &fee.model {
                FeeModel::Statutory { regime, .. } => compensation(*regime, cur, debt).0,
                _ => Decimal::ZERO,
            };
            let owed = cur.round(reference * rate / Decimal::from(36_500)) + comp;
            let total_charged: Decimal = charged.iter().map(|f| f.amount).sum();
            prop_assert!(total_charged <= owed, "charged {} > owed {}", total_charged, owed);
            // Interest never goes backwards, so charging each period catches up exactly.
            prop_assert!(owed >= last_owed);
            if owed > Decimal::ZERO { prop_assert_eq!(total_charged, owed); }
            last_owed = owed;
        }
    }
}
