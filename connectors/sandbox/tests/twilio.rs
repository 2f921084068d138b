//! The sandbox's Twilio Messages API against Twilio's official OpenAPI
//! (`../shared/api/twilio/twilio_api_v2010.yaml`; skipped with a message when absent):
//! the create and list responses validate against their schemas (types, nullability,
//! enums, SID patterns, no field the schema lacks), and the parameters overdued sends are
//! the spec's. Twilio's refusals (21211, 21610, 20003, 429) and paging always run.

mod common;

use std::path::PathBuf;

use overdued_sandbox::{SandboxOptions, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM};
use reqwest::StatusCode;
use serde_json::{json, Value};

const MESSAGES: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";

fn spec() -> Option<Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/api/twilio/twilio_api_v2010.yaml");
    if !p.exists() {
        println!(
            "SKIPPED: {} is absent; the Twilio OpenAPI checks did not run",
            p.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&p).expect("read the Twilio spec");
    Some(serde_yaml::from_str(&text).expect("the Twilio spec is YAML"))
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = root;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(root, cur)
        }
        None => s,
    }
}

/// Validates `v` against `schema` (the OpenAPI 3.0 subset Twilio's spec uses).
fn validate(root: &Value, v: &Value, schema: &Value, path: &str, errs: &mut Vec<String>) {
    let s = resolve(root, schema);
    if v.is_null() {
        if s.get("nullable") != Some(&Value::Bool(true)) && s.get("type").is_some() {
            errs.push(format!("{path}: null where the schema does not allow it"));
        }
        return;
    }
    let ty = s.get("type").and_then(Value::as_str);
    let ok = match (ty, v) {
        (None, _) => true,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("number"), Value::Number(_)) => true,
        (Some("integer"), Value::Number(n)) => n.as_i64().is_some(),
        _ => false,
    };
    if !ok {
        errs.push(format!("{path}: expected {}, got {v}", ty.unwrap_or("?")));
        return;
    }
    if let Some(x) = v.as_str() {
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.iter().any(|c| c.as_str() == Some(x)) {
                errs.push(format!("{path}: {x:?} is not one of {e:?}"));
            }
        }
        let len = x.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            errs.push(format!("{path}: {x:?} has the wrong length"));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if !simple_pattern(p, x) {
                errs.push(format!("{path}: {x:?} does not match {p}"));
            }
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time-rfc-2822")
            && chrono::DateTime::parse_from_rfc2822(x).is_err()
        {
            errs.push(format!("{path}: {x:?} is not an RFC 2822 time"));
        }
    }
    if let Value::Object(o) = v {
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(root, x, ps, &format!("{path}.{k}"), errs),
                None if props.is_some() => errs.push(format!("{path}.{k}: not in the schema")),
                None => {}
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (v, s.get("items")) {
        for (i, x) in a.iter().enumerate() {
            validate(root, x, items, &format!("{path}[{i}]"), errs);
        }
    }
}

/// The SID patterns of the spec: `^AC[0-9a-fA-F]{32}$`, `^(SM|MM)[0-9a-fA-F]{32}$`.
fn simple_pattern(p: &str, x: &str) -> bool {
    let Some(body) = p
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix("[0-9a-fA-F]{32}$"))
    else {
        return true; // a pattern this check does not read
    };
    let prefixes: Vec<String> = match body.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        Some(alts) => alts.split('|').map(str::to_string).collect(),
        None => vec![body.to_string()],
    };
    prefixes.iter().any(|pre| {
        x.strip_prefix(pre.as_str())
            .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

fn check(root: &Value, v: &Value, schema: &Value, what: &str) {
    let mut errs = Vec::new();
    validate(root, v, schema, what, &mut errs);
    assert!(errs.is_empty(), "{what}:\n{}\nours: {v}", errs.join("\n"));
}

struct Twilio {
    rs: overdued_sandbox::RunningSandbox,
    http: reqwest::Client,
}

impl Twilio {
    async fn start() -> Twilio {
        let rs = common::start(SandboxOptions {
            customers: 2,
            invoices: 0,
            enforce_limits: false,
            ..SandboxOptions::default()
        })
        .await;
        Twilio {
            rs,
            http: common::client(),
        }
    }

    fn url(&self) -> String {
        format!(
            "{}{}",
            self.rs.url(),
            MESSAGES.replace("{AccountSid}", TWILIO_ACCOUNT_SID)
        )
    }

    async fn send(&self, to: &str, body: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url())
            .basic_auth(TWILIO_ACCOUNT_SID, Some(TWILIO_AUTH_TOKEN))
            .form(&[("To", to), ("From", TWILIO_FROM), ("Body", body)])
            .send()
            .await
            .expect("send");
        (r.status(), r.json().await.expect("json"))
    }

    async fn list(&self, q: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(self.url())
            .basic_auth(TWILIO_ACCOUNT_SID, Some(TWILIO_AUTH_TOKEN))
            .query(q)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/_sandbox/twilio/{path}", self.rs.url()))
            .json(&body)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }
}

#[tokio::test]
async fn messages_match_twilios_openapi() {
    let Some(root) = spec() else { return };
    let path = &root["paths"][MESSAGES];
    let created_schema = &path["post"]["responses"]["201"]["content"]["application/json"]["schema"];
    let list_schema = &path["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(created_schema.is_object() && list_schema.is_object());

    // What overdued sends is what the spec names.
    let form = resolve(
        &root,
        &path["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"],
    );
    for p in ["To", "From", "MessagingServiceSid", "Body"] {
        assert!(
            form["properties"].get(p).is_some(),
            "{p} is a create parameter"
        );
    }
    let query: Vec<&str> = path["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in ["To", "DateSent>", "PageSize", "Page", "PageToken"] {
        assert!(query.contains(&p), "{p} is a list parameter: {query:?}");
    }

    let tw = Twilio::start().await;
    let (status, created) = tw
        .send("+447700900123", "Invoice 1 is due. Reply STOP to opt out")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    check(&root, &created, created_schema, "create");
    // The check can fail: a field the schema lacks, a SID of the wrong shape, a bad time.
    for (k, v) in [
        ("price_per_segment", json!("0.0079")),
        ("sid", json!("SM123")),
        ("date_created", json!("2026-03-04T10:00:00Z")),
        ("num_segments", json!(2)),
    ] {
        let mut bad = created.clone();
        bad[k] = v;
        let mut errs = Vec::new();
        validate(&root, &bad, created_schema, "bad", &mut errs);
        assert!(!errs.is_empty(), "{k} should be refused");
    }
    let (_, unicode) = tw
        .send("+447700900123", "Rechnung fällig – bitte zahlen")
        .await;
    check(&root, &unicode, created_schema, "create (UCS-2)");
    tw.control("reply", json!({"from": "+447700900123", "body": "thanks"}))
        .await;
    for n in 0..3 {
        tw.send("+447700900124", &format!("message {n}")).await;
    }
    let day = tw.rs.sandbox.now().date_naive().to_string();
    let page = tw
        .list(&[
            ("To", "+447700900124"),
            ("DateSent>", &day),
            ("PageSize", "2"),
        ])
        .await;
    check(&root, &page, list_schema, "list");
    let all = tw.list(&[]).await;
    check(&root, &all, list_schema, "list (with an inbound reply)");
}

#[tokio::test]
async fn refusals_paging_and_filters_are_twilios() {
    let tw = Twilio::start().await;
    // 20003: wrong credentials.
    let r = tw
        .http
        .post(tw.url())
        .basic_auth(TWILIO_ACCOUNT_SID, Some("wrong"))
        .form(&[
            ("To", "+447700900123"),
            ("From", TWILIO_FROM),
            ("Body", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 20003);
    // 21211: not a number, or Twilio's magic invalid number.
    for to in ["07700 900123", overdued_sandbox::TWILIO_INVALID_NUMBER] {
        let (s, e) = tw.send(to, "x").await;
        assert_eq!(
            (s, e["code"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(21211)),
            "{e}"
        );
        assert_eq!(e["more_info"], "https://www.twilio.com/docs/errors/21211");
    }
    // 21610 once the number replied STOP; START lets it through again.
    tw.control("reply", json!({"from": "+447700900125", "body": "stop"}))
        .await;
    let (s, e) = tw.send("+447700900125", "x").await;
    assert_eq!(
        (s, e["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(21610)),
        "{e}"
    );
    tw.control("reply", json!({"from": "+447700900125", "body": "START"}))
        .await;
    assert_eq!(tw.send("+447700900125", "x").await.0, StatusCode::CREATED);
    // 429 over the per-second limit, with Retry-After.
    tw.control("limits", json!({"per_second": 2})).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = tw
            .http
            .post(tw.url())
            .basic_auth(TWILIO_ACCOUNT_SID, Some(TWILIO_AUTH_TOKEN))
            .form(&[
                ("To", "+447700900126"),
                ("From", TWILIO_FROM),
                ("Body", "x"),
            ])
            .send()
            .await
            .unwrap();
        codes.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(codes, [(201, false), (201, false), (429, true)]);
    tw.control("limits", json!({"per_second": 0})).await;
    // Paging: newest first, next_page_uri followed to the end.
    for n in 0..5 {
        tw.send("+447700900127", &format!("m{n}")).await;
    }
    let mut bodies = Vec::new();
    let mut page = tw.list(&[("To", "+447700900127"), ("PageSize", "2")]).await;
    loop {
        for m in page["messages"].as_array().unwrap() {
            bodies.push(m["body"].as_str().unwrap().to_string());
        }
        let Some(next) = page["next_page_uri"].as_str() else {
            break;
        };
        page = tw
            .http
            .get(format!("{}{next}", tw.rs.url()))
            .basic_auth(TWILIO_ACCOUNT_SID, Some(TWILIO_AUTH_TOKEN))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    assert_eq!(bodies, ["m4", "m3", "m2", "m1", "m0"]);
    // DateSent> is "on or after that day".
    let tomorrow = (tw.rs.sandbox.now().date_naive() + chrono::Duration::days(1)).to_string();
    let none = tw
        .list(&[("To", "+447700900127"), ("DateSent>", &tomorrow)])
        .await;
    assert!(none["messages"].as_array().unwrap().is_empty());
    // Every message created is in the ledger as kind sms with its to.
    let sms: Vec<_> = tw
        .rs
        .sandbox
        .ledger()
        .effects
        .into_iter()
        .filter(|e| e.kind == "sms")
        .collect();
    assert_eq!(sms.len(), 1 + 2 + 5);
    assert!(sms.iter().all(|e| e.detail["to"].as_str().is_some()));
}
