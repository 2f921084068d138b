//! The seeded world generator. Every tenant draws from its own ChaCha stream derived from
//! (seed, system, tenant number), so adding tenants never changes the existing ones.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use crate::credentials::AuthState;
use crate::world::{
    qbo_local_date, random_uuid, Behaviour, Customer, Invoice, Line, PhoneNumber, ScheduledPayment,
    Status, Tenant, World,
};
use crate::{SandboxOptions, System};

const FIRST: &[&str] = &[
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Ava",
    "Elijah",
    "Sophia",
    "James",
    "Isabella",
    "William",
    "Mia",
    "Benjamin",
    "Charlotte",
    "Lucas",
    "Harper",
    "Henry",
    "Evelyn",
    "Theodore",
    "Aisha",
    "Mateo",
    "Priya",
    "Kenji",
    "Fatima",
    "Sven",
    "Chloé",
    "Diego",
    "Ngozi",
    "Hannah",
    "Tomás",
    "Ingrid",
    "Rahul",
    "Mei",
    "Connor",
    "Zara",
    "Pierre",
    "Lena",
    "Omar",
    "Grace",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "O'Brien",
    "Nakamura",
    "Okafor",
    "Kowalski",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Patel",
    "Chen",
    "Novak",
    "Larsen",
    "Silva",
    "Murphy",
    "Kim",
    "Cohen",
    "Haddad",
    "Fischer",
    "Byrne",
    "Costa",
    "Walsh",
];
const COMPANY_A: &[&str] = &[
    "Bluebird",
    "Harbor",
    "Summit",
    "Cedar",
    "Northwind",
    "Granite",
    "Maple",
    "Riverside",
    "Beacon",
    "Copper",
    "Lighthouse",
    "Orchard",
    "Pioneer",
    "Redwood",
    "Silverline",
    "Tidewater",
    "Evergreen",
    "Keystone",
    "Foxglove",
    "Juniper",
];
const COMPANY_B: &[&str] = &[
    "Bakery",
    "Design Studio",
    "Plumbing",
    "Logistics",
    "Dental",
    "Consulting",
    "Builders",
    "Landscaping",
    "Analytics",
    "Catering",
    "Print Co",
    "Architects",
    "Veterinary",
    "Motors",
    "Florists",
    "Media",
    "Legal",
    "Robotics",
    "Coffee Roasters",
    "Fitness",
];
const SUFFIX: &[&str] = &["LLC", "Inc.", "Ltd", "& Co", "Group", "Partners"];
pub const ITEMS: &[(&str, &str)] = &[
    ("Services", "Consulting services"),
    ("Design", "Design work"),
    ("Hours", "Hourly labour"),
    ("Hardware", "Hardware supplies"),
    ("Maintenance", "Monthly maintenance"),
    ("Training", "Staff training session"),
    ("Licence", "Software licence"),
    ("Delivery", "Delivery and handling"),
];

fn rng_for(seed: u64, system: System, n: usize) -> ChaCha8Rng {
    let sys = match system {
        System::QuickBooks => 0x51b0u64,
        System::Xero => 0x9e70u64,
    };
    ChaCha8Rng::seed_from_u64(
        seed ^ sys.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (n as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    )
}

fn behaviour(rng: &mut ChaCha8Rng) -> Behaviour {
    match rng.gen_range(0..100) {
        0..=14 => Behaviour::PaysEarly {
            days_before_due: rng.gen_range(0..=5),
        },
        15..=39 => Behaviour::PaysAfterFirstReminder {
            days: rng.gen_range(1..=7),
        },
        40..=49 => Behaviour::PaysAfterFee {
            days: rng.gen_range(2..=10),
        },
        50..=69 => Behaviour::ChronicallyLate {
            days_late: rng.gen_range(10..=45),
        },
        70..=77 => Behaviour::Never,
        78..=89 => Behaviour::PaysInParts {
            parts: rng.gen_range(2..=4),
            every_days: rng.gen_range(7..=21),
        },
        _ => Behaviour::Disputes,
    }
}

fn at(d: NaiveDate, secs: u32) -> DateTime<Utc> {
    crate::world::midnight(d) + Duration::seconds(secs as i64)
}

/// One customer in sixteen has no email address at all.
pub fn no_email_customer(index: usize) -> bool {
    index % 16 == 15
}

/// The invoices of one customer in sixteen carry no BillEmail, though the customer has
/// an address of their own.
pub fn no_bill_email(index: usize) -> bool {
    index % 16 == 7
}

fn customers(
    rng: &mut ChaCha8Rng,
    system: System,
    n: usize,
    start: DateTime<Utc>,
    tenant: &mut Tenant,
) {
    let mut names = HashSet::new();
    for i in 0..n {
        let given = FIRST[rng.gen_range(0..FIRST.len())];
        let family = LAST[rng.gen_range(0..LAST.len())];
        let (name, company, email) = if rng.gen_bool(0.55) {
            let company = format!(
                "{} {} {}",
                COMPANY_A[rng.gen_range(0..COMPANY_A.len())],
                COMPANY_B[rng.gen_range(0..COMPANY_B.len())],
                SUFFIX[rng.gen_range(0..SUFFIX.len())]
            );
            let domain: String = company
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join("")
                .to_ascii_lowercase()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            (
                company.clone(),
                Some(company),
                format!("{}@{domain}.example.com", ascii(given)),
            )
        } else {
            (
                format!("{given} {family}"),
                None,
                format!("{}.{}@mail.example.net", ascii(given), ascii(family)),
            )
        };
        // Some customers have no email address anywhere in the ledger (chosen by
        // position, so the random stream and every other fact of a seeded world stay).
        let email = if no_email_customer(i) {
            String::new()
        } else {
            email
        };
        // Display names are unique in both systems.
        let mut unique = name.clone();
        let mut k = 2;
        while !names.insert(unique.clone()) {
            unique = format!("{name} ({k})");
            k += 1;
        }
        let created = start - Duration::days(rng.gen_range(200..900))
            + Duration::seconds(rng.gen_range(0..86400));
        let id = match system {
            System::QuickBooks => tenant.next_numeric(),
            System::Xero => random_uuid(rng),
        };
        let behaviour = behaviour(rng);
        let phones = phones_of(system, i);
        tenant.customers.push(Customer {
            id,
            name: unique,
            given_name: given.to_string(),
            family_name: family.to_string(),
            company,
            email,
            behaviour,
            created,
            updated: created,
            sync_token: 0,
            balance: Decimal::ZERO,
            phones,
        });
    }
}

/// Most customers have one number, one in four a mobile too, one in nine none at all.
/// Chosen by position, so the random stream and every other fact of a seeded world stay;
/// the numbers are in the ranges reserved for fiction (US 555-01xx, UK Ofcom drama).
pub fn phones_of(system: System, index: usize) -> Vec<PhoneNumber> {
    if index % 9 == 4 {
        return Vec::new();
    }
    let n = index % 100;
    let (main, mobile) = match system {
        System::QuickBooks => (
            PhoneNumber {
                mobile: false,
                country_code: "1".into(),
                area_code: "415".into(),
                number: format!("555-01{n:02}"),
            },
            PhoneNumber {
                mobile: true,
                country_code: "1".into(),
                area_code: "650".into(),
                number: format!("555-01{:02}", (n + 50) % 100),
            },
        ),
        System::Xero => (
            PhoneNumber {
                mobile: false,
                country_code: "44".into(),
                area_code: "20".into(),
                number: format!("7946 0{:03}", index % 1000),
            },
            PhoneNumber {
                mobile: true,
                country_code: "44".into(),
                area_code: "7700".into(),
                number: format!("900{:03}", index % 1000),
            },
        ),
    };
    if index % 4 == 1 {
        vec![main, mobile]
    } else {
        vec![main]
    }
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' => 'e',
            'á' => 'a',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

struct Draft {
    created: DateTime<Utc>,
    issue: NaiveDate,
    due: NaiveDate,
    customer: usize,
    currency: String,
    lines: Vec<(usize, Decimal, Decimal)>,
    status: Status,
    credited_pct: Option<u32>,
    extra_partial_pct: Option<u32>,
}

/// Builds the whole world for the options.
pub fn generate(opts: &SandboxOptions) -> World {
    let mut world = World {
        seed: opts.seed,
        start: opts.start,
        now: opts.start,
        tenants: Vec::new(),
        auth: AuthState::with_default_clients(),
        ledger: Vec::new(),
        scheduled: BTreeMap::new(),
        next_seq: 0,
        minted: 0,
        idempotency_window_secs: crate::keys::DEFAULT_WINDOW_SECS,
        twilio: Default::default(),
    };
    let plan: Vec<(System, usize)> = (0..opts.quickbooks_tenants)
        .map(|n| (System::QuickBooks, n))
        .chain((0..opts.xero_tenants).map(|n| (System::Xero, n)))
        .collect();
    for (system, n) in plan {
        let mut rng = rng_for(opts.seed, system, n);
        let t = world.tenants.len();
        let tenant = tenant(&mut world, &mut rng, system, n, opts);
        world.tenants.push(tenant);
        invoices(&mut world, &mut rng, t, opts);
    }
    world
}

fn tenant(
    _w: &mut World,
    rng: &mut ChaCha8Rng,
    system: System,
    n: usize,
    opts: &SandboxOptions,
) -> Tenant {
    let (id, name, base) = match system {
        System::QuickBooks => (
            format!(
                "{}",
                rng.gen_range(9_130_000_000_000_000u64..9_341_999_999_999_999)
            ),
            format!("Sandbox Company US {}", n + 1),
            "USD",
        ),
        System::Xero => (
            random_uuid(rng),
            format!("Demo Company (UK) {}", n + 1),
            "GBP",
        ),
    };
    let connection_id = random_uuid(rng);
    let mut t = Tenant {
        system,
        id,
        name,
        base_currency: base.to_string(),
        created: opts.start - Duration::days(1000),
        connection_id,
        customers: Vec::new(),
        invoices: Vec::new(),
        deleted: Vec::new(),
        next_numeric_id: 0,
        next_number: 0,
        idempotency: BTreeMap::new(),
        online_payments: None,
        idx: Default::default(),
    };
    customers(rng, system, opts.customers.max(1), opts.start, &mut t);
    t.rebuild_index();
    t
}

fn invoices(w: &mut World, rng: &mut ChaCha8Rng, t: usize, opts: &SandboxOptions) {
    let start = opts.start;
    let system = w.tenants[t].system;
    let ncust = w.tenants[t].customers.len();
    let mut drafts: Vec<Draft> = (0..opts.invoices)
        .map(|_| {
            let age = rng.gen_range(0..150i64);
            let issue = qbo_local_date(start) - Duration::days(age);
            let terms = [7i64, 14, 30, 30, 30, 45, 60][rng.gen_range(0..7)];
            let due = issue + Duration::days(terms);
            // Created during the issue day, but never after the clock's start.
            let created = (at(issue, rng.gen_range(8 * 3600..18 * 3600))
                + Duration::milliseconds(rng.gen_range(0..1000)))
            .min(start - Duration::seconds(rng.gen_range(60..3600)));
            let customer = rng.gen_range(0..ncust);
            let currency = match system {
                System::QuickBooks => "USD",
                System::Xero => [
                    "GBP", "GBP", "GBP", "GBP", "GBP", "GBP", "EUR", "EUR", "USD", "USD",
                ][rng.gen_range(0..10)],
            }
            .to_string();
            let lines = (0..rng.gen_range(1..=3))
                .map(|_| {
                    let item = rng.gen_range(0..ITEMS.len());
                    let qty = Decimal::from(rng.gen_range(1..=10));
                    let unit = Decimal::new(rng.gen_range(2_000..60_000), 2);
                    (item, qty, unit)
                })
                .collect();
            let roll = rng.gen_range(0..100);
            let status = match (system, roll) {
                (_, 0..=2) => Status::Voided,
                (System::Xero, 3..=5) => Status::Draft,
                (System::Xero, 6..=8) => Status::Submitted,
                _ => Status::Authorised,
            };
            let credited_pct = rng.gen_bool(0.05).then(|| rng.gen_range(10..=30));
            let extra_partial_pct = rng.gen_bool(0.08).then(|| rng.gen_range(20..=60));
            Draft {
                created,
                issue,
                due,
                customer,
                currency,
                lines,
                status,
                credited_pct,
                extra_partial_pct,
            }
        })
        .collect();
    // Ids and numbers ascend with creation time, as in the real systems.
    drafts.sort_by_key(|d| d.created);
    for d in drafts {
        let tenant = &mut w.tenants[t];
        let id = match system {
            System::QuickBooks => tenant.next_numeric(),
            System::Xero => random_uuid(rng),
        };
        tenant.next_number += 1;
        let number = match system {
            System::QuickBooks => format!("{}", 1000 + tenant.next_number),
            System::Xero => format!("INV-{:04}", tenant.next_number),
        };
        let lines: Vec<Line> = d
            .lines
            .iter()
            .enumerate()
            .map(|(k, &(item, qty, unit))| Line {
                id: match system {
                    System::QuickBooks => (k + 1).to_string(),
                    System::Xero => random_uuid(rng),
                },
                description: ITEMS[item].1.to_string(),
                item: ITEMS[item].0.to_string(),
                item_id: (item + 1).to_string(),
                quantity: qty,
                unit_amount: unit,
                amount: qty * unit,
            })
            .collect();
        let total: Decimal = lines.iter().map(|l| l.amount).sum();
        let credited = d
            .credited_pct
            .map(|p| (total * Decimal::from(p) / Decimal::from(100)).round_dp(2))
            .unwrap_or(Decimal::ZERO);
        let credit_id = (credited > Decimal::ZERO).then(|| match system {
            System::QuickBooks => tenant.next_numeric(),
            System::Xero => random_uuid(rng),
        });
        let email = tenant.customers[d.customer].email.clone();
        // Some invoices carry no BillEmail although their customer has an address: the
        // reminder then names the customer's own address (QuickBooks `sendTo`).
        let bill_email = Some(email).filter(|e| !e.is_empty() && !no_bill_email(d.customer));
        let inv = Invoice {
            id,
            number,
            kind: "ACCREC".into(),
            customer: d.customer,
            currency: d.currency,
            issue_date: d.issue,
            due_date: d.due,
            lines,
            total,
            paid: Decimal::ZERO,
            credited,
            credit_id,
            payments: Vec::new(),
            status: d.status,
            sync_token: 0,
            created: d.created,
            updated: d.created,
            email_status: if rng.gen_bool(0.7) {
                "EmailSent"
            } else {
                "NotSet"
            }
            .into(),
            delivery_time: None,
            bill_email,
            sent_to_contact: d.status != Status::Draft,
            reference: String::new(),
            private_note: String::new(),
            customer_memo: "Thank you for your business!".into(),
            history: Vec::new(),
            reminders: 0,
            fees: 0,
            fee_for: None,
            fully_paid_on: None,
        };
        let i = tenant.add_invoice(inv);
        if tenant.invoices[i].email_status == "EmailSent" {
            let created = tenant.invoices[i].created;
            tenant.invoices[i].delivery_time = Some(created);
        }
        if !matches!(d.status, Status::Authorised | Status::Submitted) {
            continue;
        }
        let behaviour = tenant.customers[d.customer].behaviour.clone();
        let mut plan: Vec<(DateTime<Utc>, Option<Decimal>, String)> = Vec::new();
        let pay_time =
            |day: NaiveDate, rng: &mut ChaCha8Rng| at(day, rng.gen_range(15 * 3600..23 * 3600));
        if let Some(p) = d.extra_partial_pct {
            let bal = total - credited;
            let amount = (bal * Decimal::from(p) / Decimal::from(100)).round_dp(2);
            let day = d.issue + Duration::days(rng.gen_range(1..20));
            plan.push((pay_time(day, rng), Some(amount), "partial payment".into()));
        }
        match behaviour {
            Behaviour::PaysEarly { days_before_due } => {
                let day =
                    (d.due - Duration::days(days_before_due)).max(d.issue + Duration::days(1));
                plan.push((pay_time(day, rng), None, "pays early".into()));
            }
            Behaviour::ChronicallyLate { days_late } => {
                plan.push((
                    pay_time(d.due + Duration::days(days_late), rng),
                    None,
                    format!("pays {days_late} days late"),
                ));
            }
            Behaviour::PaysInParts { parts, every_days } => {
                let bal = total - credited;
                let part = (bal / Decimal::from(parts)).round_dp(2);
                for k in 0..parts {
                    let day = d.issue + Duration::days(every_days * (k as i64 + 1));
                    let amount = if k + 1 == parts { None } else { Some(part) };
                    plan.push((
                        pay_time(day, rng),
                        amount,
                        format!("instalment {} of {parts}", k + 1),
                    ));
                }
            }
            _ => {}
        }
        for (when, amount, reason) in plan {
            if when < start {
                let bal = w.tenants[t].invoices[i].balance();
                let amount = amount.unwrap_or(bal).min(bal);
                if amount > Decimal::ZERO {
                    let _ = w.pay(t, i, amount, when.date_naive(), when);
                }
            } else {
                w.schedule(
                    when,
                    ScheduledPayment {
                        tenant: t,
                        invoice: i,
                        amount,
                        reason,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let opts = SandboxOptions {
            customers: 10,
            invoices: 50,
            ..SandboxOptions::default()
        };
        let a = serde_json::to_string(&generate(&opts)).expect("serialize");
        let b = serde_json::to_string(&generate(&opts)).expect("serialize");
        assert_eq!(a, b);
        let c = serde_json::to_string(&generate(&SandboxOptions { seed: 2, ..opts }))
            .expect("serialize");
        assert_ne!(a, c);
    }

    #[test]
    fn world_has_the_promised_spread() {
        let opts = SandboxOptions {
            customers: 40,
            invoices: 400,
            ..SandboxOptions::default()
        };
        let w = generate(&opts);
        assert_eq!(w.tenants.len(), 2);
        for t in &w.tenants {
            assert_eq!(t.invoices.len(), 400);
            assert!(t
                .invoices
                .iter()
                .all(|i| i.updated <= opts.start && i.created <= i.updated));
            assert!(t
                .invoices
                .iter()
                .any(|i| i.due_date < opts.start.date_naive()));
            assert!(t
                .invoices
                .iter()
                .any(|i| i.due_date > opts.start.date_naive()));
            assert!(t.invoices.iter().any(|i| i.status == Status::Voided));
            assert!(t
                .invoices
                .iter()
                .any(|i| i.paid > Decimal::ZERO && i.balance() > Decimal::ZERO));
            assert!(t.invoices.iter().any(|i| i.credited > Decimal::ZERO));
            let names: HashSet<_> = t.customers.iter().map(|c| &c.name).collect();
            assert_eq!(names.len(), t.customers.len());
            let total: Decimal = t.invoices.iter().map(|i| i.balance()).sum();
            let by_customer: Decimal = t.customers.iter().map(|c| c.balance).sum();
            assert_eq!(total, by_customer);
        }
        let xero = &w.tenants[1];
        let currencies: HashSet<_> = xero.invoices.iter().map(|i| i.currency.as_str()).collect();
        assert_eq!(currencies.len(), 3);
        assert!(!w.scheduled.is_empty());
    }
}
