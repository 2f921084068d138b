//! Large worlds generate quickly and page through in linear time.

mod common;

use std::time::Instant;

use common::Api;
use overdued_sandbox::SandboxOptions;
use reqwest::Method;
use serde_json::Value;

/// The benchmark size; slow in an unoptimised test build, so CI runs the 20k size above
/// and this one runs on demand:
/// `OVERDUED_SCALE_INVOICES=100000 cargo test -p overdued-sandbox --release --test scale`.
#[tokio::test]
async fn sized_world_generates_and_syncs() {
    match std::env::var("OVERDUED_SCALE_INVOICES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => sync_all(n).await,
        None => eprintln!(
            "set OVERDUED_SCALE_INVOICES=100000 (release build) for the benchmark-sized world"
        ),
    }
}

#[tokio::test]
async fn twenty_thousand_invoices_generate_and_sync() {
    sync_all(20_000).await;
}

async fn sync_all(size: usize) {
    let started = Instant::now();
    let opts = SandboxOptions {
        customers: 400,
        invoices: size,
        quickbooks_tenants: 1,
        xero_tenants: 1,
        enforce_limits: false,
        ..SandboxOptions::default()
    };
    let api = Api::new(opts).await;
    let generated = started.elapsed();
    println!("generated 2 x {size} invoices in {generated:?}");
    let t = Instant::now();
    let mut n = 0;
    for page in 1..=(size / 1000 + 1) {
        let v: Value = api
            .xero(Method::GET, "Invoices")
            .query(&[
                ("page", page.to_string()),
                ("pageSize", "1000".into()),
                ("where", r#"Type=="ACCREC""#.into()),
            ])
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let k = v["Invoices"].as_array().expect("a").len();
        n += k;
        if k < 1000 {
            break;
        }
    }
    assert_eq!(n, size);
    println!("xero sync of {size} invoices in {:?}", t.elapsed());
    let t = Instant::now();
    let mut n = 0;
    let mut start = 1;
    loop {
        let (_, v) = api.qbo_query(&format!("SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 1000")).await;
        let k = v["QueryResponse"]
            .get("Invoice")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        n += k;
        start += k;
        if k < 1000 {
            break;
        }
    }
    assert_eq!(n, size);
    println!("quickbooks sync of {size} invoices in {:?}", t.elapsed());
    assert!(generated.as_secs() < 30, "generation took {generated:?}");
}
