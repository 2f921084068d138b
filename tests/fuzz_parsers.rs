//! Fuzzing, bounded for CI, of everything overdued reads from outside: both vendors' JSON
//! (pages, single reads, change feeds, faults, error bodies, limit and Retry-After
//! headers), Xero's dates, OAuth token answers, inbound webhook bodies and the config file.
//!
//! The checks live in `fuzz/harness.rs` and are shared with the cargo-fuzz targets in
//! `fuzz/` (long runs on nightly). Inputs come from three sources per target: byte-level
//! mutations of realistic bodies, structurally generated documents whose fields take
//! values of every JSON type (huge numbers, exponents, dates of every shape, nulls), and
//! plain random bytes.
//!
//! `OVERDUED_FUZZ_CASES` sets the cases per target (default 300, a few seconds each in a
//! debug build); `OVERDUED_FUZZ_CASES=2000000 cargo test --release --test fuzz_parsers`
//! is a long run.

#[path = "../fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

fn cases() -> u32 {
    std::env::var("OVERDUED_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

// ---- input generators -----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = any::<usize>();
    prop_oneof![
        pos.prop_map(Edit::Truncate),
        (pos, any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        (
            pos,
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..4),
                prop::sample::select(TOKENS.to_vec()).prop_map(|t| t.as_bytes().to_vec()),
            ]
        )
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (pos, 1usize..40).prop_map(|(p, n)| Edit::Delete(p, n)),
        (pos, 1usize..60).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for e in edits {
        let len = b.len().max(1);
        match e {
            Edit::Truncate(p) => b.truncate(p % len),
            Edit::Flip(p, v) => {
                if !b.is_empty() {
                    let i = p % b.len();
                    b[i] = *v;
                }
            }
            Edit::Insert(p, bytes) => {
                let i = p % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(p, n) => {
                let i = p % len;
                let end = (i + n).min(b.len());
                if i < end {
                    b.drain(i..end);
                }
            }
            Edit::Duplicate(p, n) => {
                let i = p % len;
                let end = (i + n).min(b.len());
                if i < end {
                    let part: Vec<u8> = b[i..end].to_vec();
                    b.splice(end..end, part);
                }
            }
        }
    }
    b
}

/// JSON value texts that stress the readers: exact decimals beyond Decimal's range,
/// exponents, negative zero, dates of every shape, wrong types.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "-0",
    "-1",
    "1.5",
    "-362.07",
    "1e3",
    "1E-7",
    "1e999",
    "-1e999",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "0.00000000000000000000000000001",
    "123456789012345678901234567890.123456789",
    "18446744073709551616",
    "\"\"",
    "\" \"",
    "\"12.50\"",
    "\"abc\"",
    "\"NaN\"",
    "\"1e400\"",
    "\"USD\"",
    "\"usd\"",
    "\"XX\"",
    "\"€€€\"",
    "\"Deleted\"",
    "\"AUTHORISED\"",
    "\"PAID\"",
    "\"VOIDED\"",
    "\"DRAFT\"",
    "\"SUBMITTED\"",
    "\"ACCREC\"",
    "\"ACCPAY\"",
    "\"Voided\"",
    "\"2025-11-14\"",
    "\"2025-02-30\"",
    "\"+275760-09-13\"",
    "\"2025-11-20T10:01:02-08:00\"",
    "\"2025-11-20T10:01:02\"",
    "\"/Date(1762000000000+0000)/\"",
    "\"/Date(-62135596800001)/\"",
    "\"/Date(9223372036854775807)/\"",
    "\"/Date(99999999999999999999)/\"",
    "\"/Date(1+9999)/\"",
    "\"/Date()/\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "[]",
    "{}",
    "[null]",
    "{\"value\":\"1\"}",
    "{\"value\":null}",
    "{\"Address\":5}",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TOKENS.to_vec()).prop_map(str::to_string),
        1 => "[ -~]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| if f.is_finite() { f.to_string() } else { "1".into() }),
    ]
}

/// An object with some of `keys` (and a stray key or two), each holding any value.
fn object(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![
                9 => prop::sample::select(keys.to_vec()).prop_map(str::to_string),
                1 => "[a-zA-Z]{1,8}",
            ],
            token(),
        ),
        0..keys.len() + 2,
    )
    .prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k)))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

const QBO_INVOICE_KEYS: &[&str] = &[
    "Id",
    "status",
    "SyncToken",
    "DocNumber",
    "TxnDate",
    "DueDate",
    "TotalAmt",
    "Balance",
    "CustomerRef",
    "CurrencyRef",
    "BillEmail",
    "PrivateNote",
    "CustomerMemo",
    "MetaData",
    "InvoiceLink",
    "Line",
];

const XERO_INVOICE_KEYS: &[&str] = &[
    "Type",
    "InvoiceID",
    "InvoiceNumber",
    "Reference",
    "Status",
    "Contact",
    "Date",
    "DateString",
    "DueDate",
    "DueDateString",
    "UpdatedDateUTC",
    "CurrencyCode",
    "Total",
    "AmountDue",
    "AmountPaid",
    "AmountCredited",
    "LineItems",
    "Payments",
    "HasErrors",
    "ValidationErrors",
];

/// A QuickBooks invoice whose required fields are mostly present and well-typed, with
/// the others drawn from anything: reaches the mapping, not just the JSON reader.
fn qbo_invoice() -> impl Strategy<Value = String> {
    (
        object(QBO_INVOICE_KEYS),
        token(),
        token(),
        prop::sample::select(vec![
            "\"2025-11-20T10:01:02-08:00\"",
            "\"2025-11-20T10:01:02Z\"",
            "\"bad\"",
        ]),
        prop::option::of(prop::sample::select(vec!["USD", "GBP", "usd", "X1Z", ""])),
    )
        .prop_map(|(extra, balance, total, updated, currency)| {
            let cur = currency
                .map(|c| format!(",\"CurrencyRef\":{{\"value\":\"{c}\"}}"))
                .unwrap_or_default();
            let base = format!(
                "{{\"Id\":\"7\",\"TxnDate\":\"2025-11-14\",\"Balance\":{balance},\"TotalAmt\":{total},\"CustomerRef\":{{\"value\":\"3\"}},\"MetaData\":{{\"LastUpdatedTime\":{updated}}}{cur}"
            );
            // Later keys of `extra` override the base ones in half the cases.
            if extra.len() > 2 {
                format!("{base},{}", &extra[1..])
            } else {
                format!("{base}}}")
            }
        })
}

fn xero_invoice() -> impl Strategy<Value = String> {
    (
        object(XERO_INVOICE_KEYS),
        token(),
        token(),
        prop::sample::select(vec!["AUTHORISED", "PAID", "VOIDED", "DELETED", "DRAFT", "SUBMITTED", "WHAT"]),
        prop::sample::select(vec![
            "/Date(1762000000000+0000)/",
            "2025-11-02T10:00:00",
            "/Date(1+1)/",
            "",
        ]),
    )
        .prop_map(|(extra, due, total, status, date)| {
            let base = format!(
                "{{\"Type\":\"ACCREC\",\"InvoiceID\":\"i-1\",\"Status\":\"{status}\",\"AmountDue\":{due},\"Total\":{total},\"CurrencyCode\":\"GBP\",\"Contact\":{{\"ContactID\":\"c\"}},\"Date\":\"{date}\",\"DueDate\":\"{date}\",\"UpdatedDateUTC\":\"{date}\""
            );
            if extra.len() > 2 {
                format!("{base},{}", &extra[1..])
            } else {
                format!("{base}}}")
            }
        })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => Just(200u16),
        1 => prop::sample::select(vec![201u16, 400, 401, 403, 404, 409, 429, 500, 503]),
        1 => 0u16..1000,
    ]
}

fn header_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "retry-after",
                "x-minlimit-remaining",
                "x-daylimit-remaining",
                "x-appminlimit-remaining",
                "x-rate-limit-problem",
                "content-type",
                "intuit_tid",
            ])
            .prop_map(str::to_string),
            prop_oneof![
                "[0-9]{1,25}",
                "-?[0-9]{0,3}\\.[0-9]{0,3}",
                prop::sample::select(vec![
                    "NaN", "inf", "-1", "1e308", "1e309", " 5 ", "minute", "day"
                ])
                .prop_map(str::to_string),
                "[ -~]{0,10}",
            ],
        ),
        0..4,
    )
}

fn body(
    seeds: &'static [&'static str],
    structured: BoxedStrategy<String>,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (prop::sample::select(seeds.to_vec()), prop::collection::vec(edit(), 1..6))
            .prop_map(|(s, e)| apply(s, &e)),
        3 => structured.prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

// ---- targets --------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn xero_dates_any_text(s in prop_oneof![
        "\\PC{0,40}",
        "/Date\\(-?[0-9]{0,22}([+-][0-9]{0,6})?\\)/",
        " */Date\\([0-9+\\- ]{0,20}\\)/ *",
        "[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}(T[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:?[0-9]{2})?)?",
        (prop::sample::select(harness::XERO_DATE_SEEDS.to_vec()), prop::collection::vec(edit(), 1..4))
            .prop_map(|(s, e)| String::from_utf8_lossy(&apply(s, &e)).into_owned()),
    ]) {
        harness::xero_date(&s);
    }

    #[test]
    fn xero_dates_from_numbers(
        ms in prop_oneof![any::<i64>(), -8_334_632_851_200_000i64..8_210_298_412_799_999],
        offset in prop::option::of((any::<bool>(), 0u32..100, 0u32..100)),
    ) {
        harness::xero_date_ms(ms, offset);
    }

    #[test]
    fn quickbooks_responses(
        status in status(),
        headers in header_pairs(),
        body in body(
            &[harness::QBO_QUERY, harness::QBO_CDC, harness::QBO_FAULT],
            prop_oneof![
                prop::collection::vec(qbo_invoice(), 0..4).prop_map(|v| format!("{{\"QueryResponse\":{{\"Invoice\":[{}]}}}}", v.join(","))),
                qbo_invoice().prop_map(|i| format!("{{\"Invoice\":{i}}}")),
                prop::collection::vec(qbo_invoice(), 0..3).prop_map(|v| format!("{{\"CDCResponse\":[{{\"QueryResponse\":[{{\"Invoice\":[{}]}}]}}]}}", v.join(","))),
                (object(&["Message", "Detail", "code", "element"]), token())
                    .prop_map(|(e, t)| format!("{{\"Fault\":{{\"Error\":[{e}],\"type\":{t}}}}}")),
            ].boxed(),
        ),
    ) {
        harness::qbo_response(status, &headers, &body);
    }

    #[test]
    fn xero_responses(
        status in status(),
        headers in header_pairs(),
        body in body(
            &[harness::XERO_INVOICES, harness::XERO_CONTACTS, harness::XERO_ERROR],
            prop_oneof![
                prop::collection::vec(xero_invoice(), 0..4).prop_map(|v| format!("{{\"Invoices\":[{}]}}", v.join(","))),
                prop::collection::vec(object(&["ContactID", "Name", "EmailAddress", "UpdatedDateUTC"]), 0..3)
                    .prop_map(|v| format!("{{\"Contacts\":[{}]}}", v.join(","))),
                (object(&["ErrorNumber", "Type", "Message", "Detail"]), object(&["ValidationErrors", "InvoiceID"]))
                    .prop_map(|(e, el)| format!("{},\"Elements\":[{el}]}}", &e[..e.len() - 1])),
            ].boxed(),
        ),
    ) {
        harness::xero_response(status, &headers, &body);
    }

    #[test]
    fn token_responses(
        status in status(),
        body in body(
            &[harness::TOKEN_OK, harness::TOKEN_ERR],
            object(&["access_token", "refresh_token", "expires_in", "x_refresh_token_expires_in", "refresh_token_expires_in", "token_type", "error", "error_description"]).boxed(),
        ),
    ) {
        harness::token_response(status, &body);
    }

    #[test]
    fn webhook_bodies(body in prop_oneof![
        2 => prop::collection::vec(edit(), 1..6).prop_map(|e| apply(harness::QBO_WEBHOOK, &e)),
        2 => prop::collection::vec(edit(), 1..6).prop_map(|e| apply(harness::QBO_CLOUDEVENTS, &e)),
        2 => prop::collection::vec(edit(), 1..6).prop_map(|e| apply(harness::XERO_WEBHOOK, &e)),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]) {
        harness::webhook_body(&body);
    }

    #[test]
    fn config_files(text in prop_oneof![
        4 => prop::collection::vec(edit(), 1..6)
            .prop_map(|e| String::from_utf8_lossy(&apply(harness::CONFIG_EXAMPLE, &e)).into_owned()),
        2 => config_doc(),
        1 => "\\PC{0,200}",
    ]) {
        harness::config_text(&text);
    }
}

/// A config assembled from valid and invalid values for its fields.
fn config_doc() -> impl Strategy<Value = String> {
    let v = || {
        prop_oneof![
            prop::sample::select(vec![
                "\"15m\"",
                "\"0s\"",
                "\"1d\"",
                "\"-5m\"",
                "\"99999999999999d\"",
                "\"1.5h\"",
                "\"m\"",
                "\"Europe/London\"",
                "\"Mars/Olympus\"",
                "\"live\"",
                "\"dry-run\"",
                "\"dry_run\"",
                "\"127.0.0.1:9464\"",
                "\"[::1]:0\"",
                "\"host:99999\"",
                "true",
                "1",
                "-1",
                "1e400",
                "[]",
                "{}",
                "\"\"",
                "\"separate_invoice\"",
                "\"line_item\"",
                "\"sandbox\"",
                "\"production\"",
                "\"https://example.com/\"",
                "\"not a url\"",
                "\"../../etc/passwd\"",
                "\"/\"",
            ])
            .prop_map(str::to_string),
            "[ -~]{0,12}".prop_map(|s| serde_json::Value::String(s).to_string()),
        ]
    };
    let daemon_keys = vec![
        "state_dir",
        "poll_interval",
        "full_sync_interval",
        "time_zone",
        "mode",
        "allow_clock_override",
        "http_listen",
        "bogus",
    ];
    let conn_keys = vec![
        "realm_id",
        "client_id",
        "client_secret",
        "client_secret_file",
        "refresh_token_file",
        "environment",
        "policy",
        "fee_posting",
        "enabled",
        "tenant",
        "scopes",
        "api_base",
        "token_url",
        "fee_account_code",
        "fee_item_code",
        "fee_item_id",
        "limits_time_scale",
    ];
    (
        prop::collection::vec((prop::sample::select(daemon_keys), v()), 0..8),
        prop::collection::vec(
            (
                prop::sample::select(vec!["quickbooks", "xero", "myob"]),
                "[a-z\\-]{0,6}",
                prop::collection::vec((prop::sample::select(conn_keys), v()), 0..10),
            ),
            0..3,
        ),
    )
        .prop_map(|(daemon, conns)| {
            let mut t = String::from("[daemon]\n");
            for (k, v) in daemon {
                t.push_str(&format!("{k} = {v}\n"));
            }
            for (system, name, fields) in conns {
                t.push_str(&format!("\n[{system}.\"{name}\"]\n"));
                for (k, v) in fields {
                    t.push_str(&format!("{k} = {v}\n"));
                }
            }
            t
        })
}

/// The realistic seeds themselves parse, so the mutations start from the success path.
#[test]
fn seeds_parse() {
    use overdued_quickbooks::wire::{CdcEnvelope, QueryEnvelope};
    use overdued_xero::wire::{ContactsEnvelope, InvoicesEnvelope};
    let q: QueryEnvelope = serde_json::from_str(harness::QBO_QUERY).unwrap();
    assert_eq!(q.query.invoices.len(), 2);
    for i in &q.query.invoices {
        i.to_snapshot(
            &overdued_connector::ConnectionId::new("s"),
            overdued_connector::Currency::USD,
        )
        .unwrap();
    }
    let c: CdcEnvelope = serde_json::from_str(harness::QBO_CDC).unwrap();
    assert_eq!(c.responses[0].queries[0].invoices.len(), 1);
    let x: InvoicesEnvelope = serde_json::from_str(harness::XERO_INVOICES).unwrap();
    assert_eq!(x.invoices.len(), 2);
    for i in &x.invoices {
        i.to_snapshot(&overdued_connector::ConnectionId::new("s"))
            .unwrap();
    }
    let xc: ContactsEnvelope = serde_json::from_str(harness::XERO_CONTACTS).unwrap();
    assert_eq!(xc.contacts.len(), 1);
    overdued::config::parse(
        harness::CONFIG_EXAMPLE,
        std::path::Path::new("/nonexistent-overdued-fuzz/overdued.toml"),
    )
    .unwrap();
    for s in harness::XERO_DATE_SEEDS {
        overdued_xero::dates::parse_instant(s).unwrap();
    }
}

/// The inputs fuzzing found crashing, kept as fixed cases.
#[test]
fn regressions() {
    // A multi-byte character where the zone offset starts sliced a str mid-character.
    harness::xero_date("/Date(1546128000000\u{fffd}d+0000)/");
    assert!(overdued_xero::dates::parse_instant("/Date(1€0000)/").is_err());
    // Retry-After beyond Duration's range panicked; a merely huge one overflowed
    // `Instant::now() + after` later.
    for v in ["1e308", "20000000000000000000", "99999999999"] {
        let h = vec![("retry-after".to_string(), v.to_string())];
        harness::qbo_response(429, &h, b"");
        harness::xero_response(429, &h, b"");
    }
    // An absurd token lifetime overflowed the expiry instant.
    for body in [
        r#"{"access_token":"a","refresh_token":"r","expires_in":1e300}"#,
        r#"{"access_token":"a","refresh_token":"r","expires_in":"9223372036854775807"}"#,
        r#"{"access_token":"a","refresh_token":"r","expires_in":-9223372036854775808}"#,
        r#"{"access_token":"a","refresh_token":"r","x_refresh_token_expires_in":9223372036854775807}"#,
    ] {
        harness::token_response(200, body.as_bytes());
    }
}
