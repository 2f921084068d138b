use chrono::{DateTime, NaiveDate, Utc};
use overdued_connector::{
    ConnectionId, Currency, CustomerRef, InvoiceSnapshot, InvoiceStatus, System,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;
use crate::store::InvoiceRecord;

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn figs(paid: u32, paid_late: u32, open_late: u32) -> PayerFigures {
    PayerFigures {
        paid,
        paid_late,
        open_late,
        ..PayerFigures::default()
    }
}

fn cfg() -> PayerProfilesConfig {
    PayerProfilesConfig::default()
}

#[test]
fn too_little_history_is_new() {
    assert_eq!(classify(&figs(0, 0, 0), &cfg()).0, PayerProfile::New);
    assert_eq!(classify(&figs(2, 0, 0), &cfg()).0, PayerProfile::New);
    // Open late invoices count as history: two paid and one already late is enough.
    assert_eq!(classify(&figs(2, 0, 1), &cfg()).0, PayerProfile::Occasional);
}

#[test]
fn min_invoices_is_read() {
    let c = PayerProfilesConfig {
        min_invoices: 5,
        ..cfg()
    };
    assert_eq!(classify(&figs(4, 0, 0), &c).0, PayerProfile::New);
    assert_eq!(classify(&figs(5, 0, 0), &c).0, PayerProfile::Prompt);
}

#[test]
fn never_late_is_prompt_once_late_is_occasional() {
    assert_eq!(classify(&figs(6, 0, 0), &cfg()).0, PayerProfile::Prompt);
    let (p, why) = classify(&figs(6, 1, 0), &cfg());
    assert_eq!(p, PayerProfile::Occasional);
    assert_eq!(
        why,
        "1 of 6 invoices late (more than 3 days after the due date)"
    );
}

#[test]
fn prompt_max_share_late_tolerates_a_slip() {
    let c = PayerProfilesConfig {
        prompt_max_share_late: 20,
        ..cfg()
    };
    // 1 in 5 is exactly 20%: still prompt; 2 in 5 is not.
    assert_eq!(classify(&figs(5, 1, 0), &c).0, PayerProfile::Prompt);
    assert_eq!(classify(&figs(5, 2, 0), &c).0, PayerProfile::Occasional);
}

#[test]
fn chronic_share_late_is_a_floor() {
    // Half late is chronic by default, just under half is occasional.
    assert_eq!(classify(&figs(4, 2, 0), &cfg()).0, PayerProfile::Chronic);
    assert_eq!(classify(&figs(5, 2, 0), &cfg()).0, PayerProfile::Occasional);
    let c = PayerProfilesConfig {
        chronic_share_late: 75,
        ..cfg()
    };
    assert_eq!(classify(&figs(4, 2, 0), &c).0, PayerProfile::Occasional);
    assert_eq!(classify(&figs(4, 3, 0), &c).0, PayerProfile::Chronic);
    // Never paid and everything late.
    assert_eq!(classify(&figs(0, 0, 3), &cfg()).0, PayerProfile::Chronic);
}

#[test]
fn a_broken_promise_or_plan_is_chronic_unless_configured_off() {
    let mut f = figs(10, 0, 0);
    f.promises_broken = 1;
    let (p, why) = classify(&f, &cfg());
    assert_eq!(p, PayerProfile::Chronic);
    assert_eq!(why, "1 broken promise to pay in the last 365 days");
    let mut g = figs(10, 0, 0);
    g.plans_broken = 2;
    assert_eq!(
        classify(&g, &cfg()).1,
        "2 broken payment plans in the last 365 days"
    );
    let off = PayerProfilesConfig {
        broken_promise_is_chronic: false,
        ..cfg()
    };
    assert_eq!(classify(&f, &off).0, PayerProfile::Prompt);
    // Even with too little history otherwise.
    let mut h = figs(0, 0, 0);
    h.promises_broken = 1;
    assert_eq!(classify(&h, &cfg()).0, PayerProfile::Chronic);
}

#[test]
fn config_defaults_and_bounds() {
    let c: PayerProfilesConfig = toml::from_str("").expect("empty table");
    assert_eq!(c, PayerProfilesConfig::default());
    assert!(c.validate("payer_profiles").is_ok());
    let bad = |text: &str| -> String {
        let c: PayerProfilesConfig = toml::from_str(text).expect("parses");
        c.validate("payer_profiles").expect_err(text).0
    };
    assert_eq!(bad("history_days = 7"), "payer_profiles.history_days");
    assert_eq!(bad("min_invoices = 0"), "payer_profiles.min_invoices");
    assert_eq!(
        bad("late_after_days = -1"),
        "payer_profiles.late_after_days"
    );
    assert_eq!(
        bad("chronic_share_late = 0"),
        "payer_profiles.chronic_share_late"
    );
    assert_eq!(
        bad("chronic_share_late = 101"),
        "payer_profiles.chronic_share_late"
    );
    assert_eq!(
        bad("prompt_max_share_late = 50"),
        "payer_profiles.prompt_max_share_late"
    );
    assert_eq!(
        bad("unexpected_after_days = -5"),
        "payer_profiles.unexpected_after_days"
    );
    assert_eq!(
        bad("expect_from_last = 0"),
        "payer_profiles.expect_from_last"
    );
    assert!(toml::from_str::<PayerProfilesConfig>("min_paid = 3").is_err());
}

#[test]
fn late_after_days_decides_what_counts_as_late() {
    // Built from records so the threshold is applied where the figures are counted.
    let today = d("2026-06-30");
    let recs: Vec<InvoiceRecord> = (0..4)
        .map(|i| paid_record(&format!("{i}"), "C1", d("2026-03-01"), d("2026-03-05")))
        .collect();
    let (_dir, store) = store_with(&recs);
    let p = |late_after_days| {
        let c = PayerProfilesConfig {
            late_after_days,
            ..cfg()
        };
        ledger_profiles(&store, "c", today, chrono_tz::UTC, &c, &PlanOutcomes::new())
            .expect("profiles")
            .profile_of("C1")
    };
    assert_eq!(p(3), Some(PayerProfile::Chronic));
    assert_eq!(p(4), Some(PayerProfile::Prompt));
}

#[test]
fn history_days_bounds_the_window() {
    let today = d("2026-06-30");
    let mut recs: Vec<InvoiceRecord> = (0..3)
        .map(|i| paid_record(&format!("old{i}"), "C1", d("2025-01-01"), d("2025-02-20")))
        .collect();
    recs.push(paid_record("new", "C1", d("2026-06-01"), d("2026-06-01")));
    let (_dir, store) = store_with(&recs);
    let year = ledger_profiles(
        &store,
        "c",
        today,
        chrono_tz::UTC,
        &cfg(),
        &PlanOutcomes::new(),
    )
    .expect("profiles");
    assert_eq!(year.customers[0].figures.paid, 1);
    assert_eq!(year.profile_of("C1"), Some(PayerProfile::New));
    let two = PayerProfilesConfig {
        history_days: 730,
        ..cfg()
    };
    let longer = ledger_profiles(
        &store,
        "c",
        today,
        chrono_tz::UTC,
        &two,
        &PlanOutcomes::new(),
    )
    .expect("profiles");
    assert_eq!(longer.customers[0].figures.paid, 4);
    assert_eq!(longer.profile_of("C1"), Some(PayerProfile::Chronic));
}

#[test]
fn plan_outcomes_feed_the_figures() {
    let today = d("2026-06-30");
    let recs: Vec<InvoiceRecord> = (0..3)
        .map(|i| paid_record(&format!("{i}"), "C1", d("2026-05-01"), d("2026-05-01")))
        .collect();
    let (_dir, store) = store_with(&recs);
    let none = ledger_profiles(
        &store,
        "c",
        today,
        chrono_tz::UTC,
        &cfg(),
        &PlanOutcomes::new(),
    )
    .expect("profiles");
    assert_eq!(none.profile_of("C1"), Some(PayerProfile::Prompt));
    let mut plans = PlanOutcomes::new();
    plans.insert("C1".into(), (1, 1));
    let broken =
        ledger_profiles(&store, "c", today, chrono_tz::UTC, &cfg(), &plans).expect("profiles");
    assert_eq!(broken.profile_of("C1"), Some(PayerProfile::Chronic));
    assert_eq!(broken.customers[0].figures.plans_kept, 1);
}

#[test]
fn paid_date_is_when_the_balance_last_reached_zero() {
    let mut r = paid_record("1", "C1", d("2026-03-01"), d("2026-03-10"));
    r.balance_history = vec![
        (d("2026-02-01"), dec!(100)),
        (d("2026-03-02"), dec!(0)),
        (d("2026-03-04"), dec!(100)),
        (d("2026-03-12"), dec!(40)),
        (d("2026-03-20"), dec!(0)),
    ];
    assert_eq!(paid_on(&r).map(|p| p.on), Some(d("2026-03-20")));
    r.snapshot.status = InvoiceStatus::Voided;
    assert_eq!(paid_on(&r), None);
    // The system's own payment date wins over what sync observed.
    r.snapshot.status = InvoiceStatus::Paid;
    r.snapshot.paid_on = Some(d("2026-03-18"));
    assert_eq!(
        paid_on(&r),
        Some(PaidDate {
            on: d("2026-03-18"),
            source: PaidDateSource::Ledger
        })
    );
    // First seen already paid: the one observation is the date the ledger gave it.
    let first = paid_record("2", "C1", d("2026-03-01"), d("2026-02-27"));
    assert_eq!(
        paid_on(&first),
        Some(PaidDate {
            on: d("2026-02-27"),
            source: PaidDateSource::BalanceHistory
        })
    );
}

#[test]
fn expected_dates_follow_the_customers_median() {
    let today = d("2026-06-30");
    let mut f = figs(3, 3, 0);
    f.median_days_late = Some(20);
    f.max_days_late = Some(40);
    let c = cfg();
    // Due in the future: due + median.
    let e = expected_date(d("2026-07-10"), today, &f, Some(2), Some(60), &c);
    assert_eq!(e.on, Some(d("2026-07-30")));
    assert!(e.basis.contains("this customer's median"), "{}", e.basis);
    // Past the median but within the latest payment (+ unexpected_after_days): tomorrow.
    let e = expected_date(d("2026-06-01"), today, &f, Some(2), Some(60), &c);
    assert_eq!(e.on, Some(d("2026-07-01")));
    // Later than ever before by more than unexpected_after_days: not expected.
    let e = expected_date(d("2026-04-01"), today, &f, Some(2), Some(60), &c);
    assert_eq!(e.on, None);
    assert!(e.basis.starts_with("90 days past due"), "{}", e.basis);
    let wider = PayerProfilesConfig {
        unexpected_after_days: 60,
        ..cfg()
    };
    assert_eq!(
        expected_date(d("2026-04-01"), today, &f, Some(2), Some(60), &wider).on,
        Some(d("2026-07-01"))
    );
    // No payments of its own: the ledger's median.
    let e = expected_date(
        d("2026-07-10"),
        today,
        &figs(0, 0, 0),
        Some(2),
        Some(60),
        &c,
    );
    assert_eq!(e.on, Some(d("2026-07-12")));
    assert!(e.basis.contains("ledger's"), "{}", e.basis);
    // No payments and already late elsewhere: nothing is expected.
    assert_eq!(
        expected_date(
            d("2026-07-10"),
            today,
            &figs(0, 0, 2),
            Some(2),
            Some(60),
            &c
        )
        .on,
        None
    );
}

#[test]
fn forecast_buckets_are_cumulative_per_currency() {
    let today = d("2026-06-30");
    let mut f = Forecast::default();
    f.add(today, d("2026-06-30"), "USD", dec!(10));
    f.add(today, d("2026-07-06"), "USD", dec!(20));
    f.add(today, d("2026-07-07"), "USD", dec!(40));
    f.add(today, d("2026-08-28"), "USD", dec!(80));
    f.add(today, d("2026-08-29"), "USD", dec!(160));
    f.add(today, d("2026-06-29"), "USD", dec!(320));
    f.add(today, d("2026-07-01"), "EUR", dec!(5));
    assert_eq!(f.within(7, "USD"), dec!(30));
    assert_eq!(f.within(30, "USD"), dec!(70));
    assert_eq!(f.within(60, "USD"), dec!(150));
    assert_eq!(f.within(30, "EUR"), dec!(5));
    assert_eq!(f.within(30, "GBP"), Decimal::ZERO);
    let lines = render::forecast_lines(&f);
    assert_eq!(
        lines,
        vec![
            "EUR 5.00 within 7 days, EUR 5.00 within 30 days, EUR 5.00 within 60 days",
            "USD 30.00 within 7 days, USD 70.00 within 30 days, USD 150.00 within 60 days",
        ]
    );
}

#[test]
fn open_invoices_are_forecast_and_owed_per_currency() {
    let today = d("2026-06-30");
    let mut recs: Vec<InvoiceRecord> = (0..3)
        .map(|i| paid_record(&format!("p{i}"), "C1", d("2026-04-01"), d("2026-04-11")))
        .collect();
    recs.push(open_record("o1", "C1", d("2026-07-05"), dec!(250)));
    recs.push(open_record("o2", "C2", d("2026-07-01"), dec!(100)));
    let (_dir, store) = store_with(&recs);
    let p = ledger_profiles(
        &store,
        "c",
        today,
        chrono_tz::UTC,
        &cfg(),
        &PlanOutcomes::new(),
    )
    .expect("profiles");
    assert_eq!(p.ledger_median_days_late, Some(10));
    assert_eq!(p.profile_of("C1"), Some(PayerProfile::Chronic));
    assert_eq!(p.profile_of("C2"), Some(PayerProfile::New));
    assert_eq!(p.expected("o1").and_then(|e| e.on), Some(d("2026-07-15")));
    // C2 has no history: the ledger's median.
    assert_eq!(p.expected("o2").and_then(|e| e.on), Some(d("2026-07-11")));
    assert_eq!(p.forecast.within(7, "USD"), Decimal::ZERO);
    assert_eq!(p.forecast.within(30, "USD"), dec!(350));
    let c1 = &p.customers[0];
    assert_eq!(c1.owed.get("USD").map(String::as_str), Some("250.00"));
    let text = render::customers_text(&p);
    assert!(
        text.contains("Customer C1 [chronic] · USD 250.00 owed"),
        "{text}"
    );
    assert!(text.contains("expected 2026-07-15"), "{text}");
}

// ---- fixtures ----------------------------------------------------------------------

fn at(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(12, 0, 0).expect("time").and_utc()
}

fn snapshot(id: &str, customer: &str, due: NaiveDate, amount_due: Decimal) -> InvoiceSnapshot {
    InvoiceSnapshot {
        connection: ConnectionId::new("c"),
        system: System::Xero,
        remote_id: id.into(),
        number: Some(format!("INV-{id}")),
        customer: CustomerRef {
            id: customer.into(),
            name: format!("Customer {customer}"),
            email: None,
        },
        currency: Currency::USD,
        total: dec!(250),
        amount_due,
        issue_date: due - chrono::Duration::days(30),
        due_date: due,
        status: if amount_due > Decimal::ZERO {
            InvoiceStatus::Open
        } else {
            InvoiceStatus::Paid
        },
        updated_at: at(due),
        version: None,
        memo: String::new(),
        is_fee_invoice: false,
        pay_url: None,
        paid_on: None,
    }
}

fn paid_record(id: &str, customer: &str, due: NaiveDate, paid: NaiveDate) -> InvoiceRecord {
    InvoiceRecord {
        snapshot: snapshot(id, customer, due, Decimal::ZERO),
        seen_at: at(paid),
        first_seen_at: at(paid),
        balance_history: vec![(paid, Decimal::ZERO)],
    }
}

fn open_record(id: &str, customer: &str, due: NaiveDate, amount: Decimal) -> InvoiceRecord {
    InvoiceRecord {
        snapshot: snapshot(id, customer, due, amount),
        seen_at: at(due),
        first_seen_at: at(due),
        balance_history: vec![(due, amount)],
    }
}

fn store_with(recs: &[InvoiceRecord]) -> (tempfile::TempDir, crate::store::SledStore) {
    use crate::store::Store;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::store::SledStore::open(dir.path()).expect("store");
    store.put_invoices(recs).expect("put");
    (dir, store)
}

// ---- policies select by profile -----------------------------------------------------

fn book(text: &str) -> crate::engine::PolicyBook {
    #[derive(serde::Deserialize)]
    struct Doc {
        policies: std::collections::BTreeMap<String, crate::engine::Policy>,
    }
    let doc: Doc = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    crate::engine::PolicyBook::compile(&doc.policies).unwrap_or_else(|e| panic!("{e}"))
}

fn chosen(b: &crate::engine::PolicyBook, customer: &str, payer: Option<PayerProfile>) -> String {
    let s = snapshot("1", customer, d("2026-06-01"), dec!(10));
    match b.resolve_for_payer("default", &s, payer) {
        Some(crate::engine::policy::Resolution::Policy { policy, .. }) => policy.name.clone(),
        Some(crate::engine::policy::Resolution::Excluded { .. }) => "excluded".into(),
        None => "none".into(),
    }
}

#[test]
fn a_payer_override_selects_by_profile_and_a_customer_override_wins() {
    let b = book(
        r#"
[[policies.default.overrides]]
payer = "chronic"
policy = "firm"
[[policies.default.overrides]]
payer = "new"
exclude = true
[[policies.default.overrides]]
customer_id = "VIP"
policy = "gentle"
[policies.firm]
[policies.gentle]
"#,
    );
    assert_eq!(chosen(&b, "C1", Some(PayerProfile::Chronic)), "firm");
    assert_eq!(chosen(&b, "C1", Some(PayerProfile::New)), "excluded");
    assert_eq!(chosen(&b, "C1", Some(PayerProfile::Prompt)), "default");
    assert_eq!(chosen(&b, "C1", None), "default");
    // Written after the payer override, the customer's own still wins.
    assert_eq!(chosen(&b, "VIP", Some(PayerProfile::Chronic)), "gentle");
    // resolve without a profile is what it always was.
    let s = snapshot("1", "C1", d("2026-06-01"), dec!(10));
    assert!(matches!(
        b.resolve("default", &s),
        Some(crate::engine::policy::Resolution::Policy { policy, via: None }) if policy.name == "default"
    ));
}

#[test]
fn a_payer_override_is_checked_like_the_others() {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[allow(dead_code)]
        policies: std::collections::BTreeMap<String, crate::engine::Policy>,
    }
    let e = toml::from_str::<Doc>(
        "[[policies.default.overrides]]\npayer = \"sometimes\"\npolicy = \"x\"\n",
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("sometimes") && e.contains("chronic"), "{e}");
    let doc: Doc = toml::from_str(
        "[[policies.default.overrides]]\npayer = \"chronic\"\ncustomer_id = \"7\"\npolicy = \"firm\"\n[policies.firm]\n",
    )
    .expect("parses");
    let errs = crate::engine::PolicyBook::compile(&doc.policies).expect_err("two matchers");
    assert!(
        errs.0
            .iter()
            .any(|e| e.path == "policies.default.overrides[0]" && e.message.contains("payer")),
        "{errs}"
    );
}

#[test]
fn the_config_file_reads_payer_profiles_and_names_a_bad_key() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.toml");
    let base = "[daemon]\nstate_dir = \"state\"\n";
    let c = crate::config::parse(base, &path).expect("no table");
    assert_eq!(c.payer_profiles, PayerProfilesConfig::default());
    let c = crate::config::parse(
        &format!("{base}[payer_profiles]\nmin_invoices = 4\nchronic_share_late = 60\n"),
        &path,
    )
    .expect("table");
    assert_eq!(c.payer_profiles.min_invoices, 4);
    assert_eq!(c.payer_profiles.chronic_share_late, 60);
    let e = crate::config::parse(
        &format!("{base}[payer_profiles]\nchronic_share_late = 0\n"),
        &path,
    )
    .expect_err("zero");
    assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
    assert!(
        e.message.starts_with("payer_profiles.chronic_share_late"),
        "{e}"
    );
    let e = crate::config::parse(&format!("{base}[payer_profiles]\nmin_paid = 3\n"), &path)
        .expect_err("unknown key");
    assert!(e.message.contains("min_paid"), "{e}");
}

#[test]
fn only_a_prompt_payer_is_thanked_for_promptness() {
    use crate::engine::templates::{built_in, render_message, MessageContext};
    for id in ["heads_up", "catch_up"] {
        let t = built_in(id).expect("built-in");
        let mut ctx = MessageContext::sample();
        ctx.payer_profile = "prompt".into();
        let thanked = render_message(&t, &ctx).expect("renders").body;
        assert!(thanked.contains("promptly"), "{id}: {thanked}");
        for other in ["", "new", "occasional", "chronic"] {
            ctx.payer_profile = other.into();
            let body = render_message(&t, &ctx).expect("renders").body;
            assert!(!body.contains("promptly"), "{id} {other}: {body}");
        }
    }
}

#[test]
fn promises_count_and_a_standing_one_dates_the_payment() {
    use crate::store::{AuditEvent, Hold, HoldTarget, Store};
    let today = d("2026-06-30");
    let mut recs: Vec<InvoiceRecord> = (0..3)
        .map(|i| paid_record(&format!("p{i}"), "C1", d("2026-05-01"), d("2026-05-01")))
        .collect();
    recs.push(open_record("o1", "C1", d("2026-06-20"), dec!(80)));
    let (_dir, store) = store_with(&recs);
    // A promise kept on p0 (paid, no "promise broken" message).
    store
        .append_audit(&AuditEvent {
            at: at(d("2026-04-25")),
            connection: "c".into(),
            invoice_id: Some("p0".into()),
            kind: "promise".into(),
            message: "promise to pay".into(),
            detail: serde_json::Value::Null,
        })
        .expect("audit");
    // One standing on o1.
    store
        .put_hold(
            "c",
            &HoldTarget::Invoice("o1".into()),
            &Hold::Promise {
                until: d("2026-07-03"),
                amount: None,
                balance_when_made: Some(dec!(80)),
                set_at: at(d("2026-06-29")),
            },
        )
        .expect("hold");
    let p = ledger_profiles(
        &store,
        "c",
        today,
        chrono_tz::UTC,
        &cfg(),
        &PlanOutcomes::new(),
    )
    .expect("profiles");
    let f = &p.customers[0].figures;
    assert_eq!((f.promises_kept, f.promises_broken), (1, 0));
    let e = p.expected("o1").expect("open invoice");
    assert_eq!(e.on, Some(d("2026-07-03")));
    assert_eq!(e.basis, "promised by 2026-07-03");
    assert_eq!(p.forecast.within(7, "USD"), dec!(80));
}

#[test]
fn expect_from_last_dates_by_the_latest_payments() {
    let today = d("2026-06-30");
    // Four old debts paid 40 days late, then three paid on time.
    let mut recs: Vec<InvoiceRecord> = (0..4)
        .map(|i| paid_record(&format!("old{i}"), "C1", d("2026-01-01"), d("2026-02-10")))
        .collect();
    for i in 0..3 {
        recs.push(paid_record(
            &format!("new{i}"),
            "C1",
            d("2026-05-01"),
            d("2026-05-01"),
        ));
    }
    recs.push(open_record("o1", "C1", d("2026-07-10"), dec!(10)));
    let (_dir, store) = store_with(&recs);
    let with = |n| {
        let c = PayerProfilesConfig {
            expect_from_last: n,
            ..cfg()
        };
        ledger_profiles(&store, "c", today, chrono_tz::UTC, &c, &PlanOutcomes::new())
            .expect("profiles")
    };
    // The whole window's median is 40 days late; the last three say on time.
    assert_eq!(
        with(7).expected("o1").and_then(|e| e.on),
        Some(d("2026-08-19"))
    );
    assert_eq!(
        with(3).expected("o1").and_then(|e| e.on),
        Some(d("2026-07-10"))
    );
    // The profile still counts the whole window: 4 of 7 late.
    assert_eq!(with(3).profile_of("C1"), Some(PayerProfile::Chronic));
}

#[test]
fn payment_terms_at_send_time_follow_the_payer_policy() {
    use crate::channels::facts::{PayTerms, PolicyChoice};
    let b = book(
        r#"
[policies.default]
payment_instructions = "pay by card"
[[policies.default.overrides]]
payer = "chronic"
policy = "firm"
[policies.firm]
payment_instructions = "pay by bank transfer today"
attach_pdf = false
"#,
    );
    let choice = Some(PolicyChoice {
        book: &b,
        default: "default",
    });
    let s = snapshot("1", "C1", d("2026-06-01"), dec!(10));
    let chronic = PayTerms::for_payer(choice, &s, Some(PayerProfile::Chronic));
    assert_eq!(
        chronic.payment_instructions.as_deref(),
        Some("pay by bank transfer today")
    );
    assert!(!chronic.attach_pdf);
    let prompt = PayTerms::for_payer(choice, &s, Some(PayerProfile::Prompt));
    assert_eq!(prompt.payment_instructions.as_deref(), Some("pay by card"));
    assert_eq!(PayTerms::for_invoice(choice, &s), prompt);
}

#[test]
fn the_planner_gets_each_customers_profile() {
    let today = d("2026-06-30");
    let mut recs: Vec<InvoiceRecord> = (0..3)
        .map(|i| paid_record(&format!("p{i}"), "C1", d("2026-05-01"), d("2026-05-20")))
        .collect();
    recs.push(open_record("o1", "C1", d("2026-06-20"), dec!(80)));
    recs.push(open_record("o2", "C2", d("2026-06-25"), dec!(50)));
    let (_dir, store) = store_with(&recs);
    let mut cases = crate::cycle::load_cases(&store, "c", at(today)).expect("cases");
    attach_profiles(&store, "c", today, chrono_tz::UTC, &cfg(), &mut cases).expect("attach");
    let of = |id: &str| {
        cases
            .iter()
            .find(|c| c.invoice.remote_id == id)
            .and_then(|c| c.history.payer_profile)
    };
    assert_eq!(of("o1"), Some(PayerProfile::Chronic));
    assert_eq!(of("o2"), Some(PayerProfile::New));
}

#[test]
fn stored_payment_plans_count_as_kept_or_broken() {
    use crate::arrangements::{Arrangement, CoveredInvoice, Instalment};
    use crate::store::Store;
    let today = d("2026-06-30");
    // Invoice 1 paid in full since its plan; invoice 2 still owes all of it.
    let recs = vec![
        paid_record("1", "C1", d("2026-04-01"), d("2026-05-20")),
        open_record("2", "C2", d("2026-04-01"), dec!(300)),
        open_record("3", "C3", d("2026-04-01"), dec!(300)),
    ];
    let (_dir, store) = store_with(&recs);
    let plan = |id: &str, customer: &str, invoice: &str| Arrangement {
        id: id.into(),
        connection: "c".into(),
        customer_id: customer.into(),
        customer_name: customer.into(),
        currency: recs[0].snapshot.currency,
        invoices: vec![CoveredInvoice {
            id: invoice.into(),
            number: invoice.into(),
            balance_when_agreed: dec!(300),
        }],
        instalments: vec![
            Instalment {
                due: d("2026-05-01"),
                amount: dec!(150),
            },
            Instalment {
                due: d("2026-05-15"),
                amount: dec!(150),
            },
        ],
        agreed_at: at(d("2026-04-20")),
        agreed_on: d("2026-04-20"),
        cancelled_on: None,
        broken_on: None,
    };
    store.put_arrangement(&plan("P1", "C1", "1")).unwrap();
    store
        .put_arrangement(&Arrangement {
            broken_on: Some(d("2026-05-05")),
            ..plan("P2", "C2", "2")
        })
        .unwrap();
    // Cancelled by the owner: neither kept nor broken.
    store
        .put_arrangement(&Arrangement {
            cancelled_on: Some(d("2026-05-02")),
            ..plan("P3", "C3", "3")
        })
        .unwrap();
    let got = plan_outcomes(&store, "c", window_start(today, &cfg())).unwrap();
    assert_eq!(got.get("C1"), Some(&(1, 0)), "{got:?}");
    assert_eq!(got.get("C2"), Some(&(0, 1)), "{got:?}");
    assert_eq!(got.get("C3"), None, "{got:?}");
    let profiles =
        ledger_profiles(&store, "c", today, chrono_tz::UTC, &cfg(), &got).expect("profiles");
    assert_eq!(profiles.profile_of("C2"), Some(PayerProfile::Chronic));
}
