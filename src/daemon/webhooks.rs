//! Inbound webhooks: QuickBooks (`/webhooks/quickbooks`, legacy and CloudEvents bodies)
//! and Xero (`/webhooks/xero`, with its intent-to-receive check). Events carry ids
//! only, so an event just starts the named connection's cycle at once: a payment stops
//! reminders within seconds instead of at the next poll.
//!
//! Body shapes and header names are the vendors' own (`connectors/<vendor>/src/webhook.rs`);
//! this module keeps the signature check and hands the body to the vendor's parser.
//!
//! Signatures are checked over the raw bytes, in constant time, before anything is
//! parsed; a delivery with a bad signature gets 401 and an empty body (Xero's check sends
//! some on purpose).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use overdued_connector::System;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use overdued_connector::webhook::{Event, WebhookError};
pub use overdued_quickbooks::webhook::parse as parse_quickbooks;
pub use overdued_xero::webhook::parse as parse_xero;

/// base64(HMAC-SHA256(body, key)) compared with the header, in constant time.
pub fn signature_ok(body: &[u8], key: &str, header: Option<&str>) -> bool {
    let Some(header) = header else { return false };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return false;
    };
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    expected.len() == given.len() && bool::from(expected.as_slice().ct_eq(&given))
}

/// How many recent event ids are remembered. Vendors redeliver within minutes to hours;
/// at ~100 bytes an id this bounds the memory to about a megabyte.
pub const REMEMBERED_EVENTS: usize = 10_000;

/// Every event for a connection within this window after the first one is served by a
/// single sync at the window's end: a burst (or a replay) costs one sync, not one each,
/// out of Xero's 60 calls a minute.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(5);

/// The window for changes that name invoices (or QuickBooks payments): they are read
/// by id (`crate::targeted`), a few calls whatever the burst, so the window only has to
/// gather one delivery's siblings; a payment stops its reminders a second after.
pub const TARGETED_WINDOW: Duration = Duration::from_secs(1);

/// The vendor's identity of each event in a delivery, for de-duplication: QuickBooks
/// CloudEvents carry an `id`; legacy QuickBooks bodies and Xero bodies carry none, so an
/// event is named by what the vendor sends for one change (realm, entity, id, operation,
/// its `lastUpdated`; Xero's tenant, category, resource, type and `eventDateUtc`).
/// Parsed apart from the vendor parsers because only the daemon needs these fields.
pub fn event_ids(system: System, body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let s = |v: &serde_json::Value, k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut out = Vec::new();
    match system {
        System::QuickBooks => {
            if let Some(events) = v.as_array() {
                for e in events {
                    out.push(format!(
                        "qbo-ce\0{}\0{}",
                        s(e, "intuitaccountid"),
                        s(e, "id")
                    ));
                }
            } else if let Some(ns) = v.get("eventNotifications").and_then(|n| n.as_array()) {
                for n in ns {
                    let realm = s(n, "realmId");
                    let entities = n
                        .get("dataChangeEvent")
                        .and_then(|d| d.get("entities"))
                        .and_then(|e| e.as_array());
                    for e in entities.into_iter().flatten() {
                        out.push(format!(
                            "qbo\0{realm}\0{}\0{}\0{}\0{}",
                            s(e, "name"),
                            s(e, "id"),
                            s(e, "operation"),
                            s(e, "lastUpdated")
                        ));
                    }
                }
            }
        }
        System::Xero => {
            for e in v
                .get("events")
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
            {
                out.push(format!(
                    "xero\0{}\0{}\0{}\0{}\0{}",
                    s(e, "tenantId"),
                    s(e, "eventCategory"),
                    s(e, "resourceId"),
                    s(e, "eventType"),
                    s(e, "eventDateUtc")
                ));
            }
        }
    }
    out
}

/// What the webhook endpoints counted since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Events in deliveries whose signature verified.
    pub events: u64,
    /// Of those, events already seen (replays, redeliveries) and dropped.
    pub duplicates: u64,
    /// Sync requests folded into a sync already scheduled for the connection.
    pub coalesced: u64,
    /// Syncs the webhooks started.
    pub syncs: u64,
}

/// De-duplication and burst coalescing, shared by both webhook endpoints.
#[derive(Default)]
pub struct WebhookGate {
    seen: Mutex<Seen>,
    /// Connections with a sync scheduled at the end of their window, and the changes
    /// reported for each meanwhile.
    pending: Mutex<BTreeMap<String, usize>>,
    events: AtomicU64,
    duplicates: AtomicU64,
    coalesced: AtomicU64,
    syncs: AtomicU64,
    /// What the changes of each scheduled window name, for a targeted cycle.
    targets: Mutex<BTreeMap<String, crate::targeted::Targets>>,
}

#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl WebhookGate {
    /// Which of `ids` are new; remembers them, forgetting the oldest beyond
    /// [`REMEMBERED_EVENTS`]. An empty `ids` (a body whose ids could not be read) is new.
    pub fn fresh(&self, ids: &[String]) -> bool {
        self.events.fetch_add(ids.len() as u64, Ordering::Relaxed);
        if ids.is_empty() {
            return true;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = 0u64;
        for id in ids {
            if seen.ids.insert(id.clone()) {
                new += 1;
                seen.order.push_back(id.clone());
                if seen.order.len() > REMEMBERED_EVENTS {
                    if let Some(old) = seen.order.pop_front() {
                        seen.ids.remove(&old);
                    }
                }
            }
        }
        self.duplicates
            .fetch_add(ids.len() as u64 - new, Ordering::Relaxed);
        new > 0
    }

    /// Asks for a sync of `connection` at the end of its window for `changes` reported
    /// changes; false when one is already scheduled (the request is folded into it).
    pub fn schedule(&self, connection: &str, changes: usize) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match p.get_mut(connection) {
            Some(n) => {
                *n += changes;
                self.coalesced.fetch_add(1, Ordering::Relaxed);
                false
            }
            None => {
                p.insert(connection.to_string(), changes);
                true
            }
        }
    }

    /// The window of `connection` ended: its sync starts now. Returns the changes
    /// reported for it during the window.
    pub fn fire(&self, connection: &str) -> usize {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection)
            .unwrap_or(0)
    }

    /// Adds what a delivery names for `connection` to its next window. Called before
    /// [`WebhookGate::schedule`], so a window that fires in between takes them (and the
    /// window it schedules then finds nothing left to do) rather than leaving them
    /// behind with no window to take them.
    pub fn add_targets(&self, connection: &str, t: crate::targeted::Targets) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(connection.to_string())
            .or_default()
            .merge(t);
    }

    /// What the window of `connection` gathered; called when it fires.
    pub fn take_targets(&self, connection: &str) -> crate::targeted::Targets {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection)
            .unwrap_or_default()
    }

    pub fn counts(&self) -> WebhookCounts {
        WebhookCounts {
            events: self.events.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }
}

/// Events per connection, for the one log line a delivery gets however many it names.
pub fn count_by<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_events_are_dropped_and_counted() {
        let g = WebhookGate::default();
        let body = br#"[{"specversion":"1.0","id":"e1","type":"qbo.invoice.updated.v1","intuitentityid":"130","intuitaccountid":"123"}]"#;
        let ids = event_ids(System::QuickBooks, body);
        assert_eq!(ids.len(), 1);
        assert!(g.fresh(&ids));
        for _ in 0..99 {
            assert!(!g.fresh(&ids));
        }
        let c = g.counts();
        assert_eq!((c.events, c.duplicates), (100, 99));
        let other = event_ids(
            System::QuickBooks,
            br#"[{"id":"e2","intuitaccountid":"123"},{"id":"e1","intuitaccountid":"123"}]"#,
        );
        assert!(g.fresh(&other), "one new event among seen ones is news");
        assert_eq!(g.counts().duplicates, 100);
    }

    #[test]
    fn legacy_and_xero_events_are_named_by_what_identifies_one_change() {
        let legacy = |t: &str| {
            format!(
                r#"{{"eventNotifications":[{{"realmId":"123","dataChangeEvent":{{"entities":[{{"name":"Invoice","id":"130","operation":"Update","lastUpdated":"{t}"}}]}}}}]}}"#
            )
        };
        let a = event_ids(
            System::QuickBooks,
            legacy("2026-11-23T10:00:00.000Z").as_bytes(),
        );
        let b = event_ids(
            System::QuickBooks,
            legacy("2026-11-23T10:05:00.000Z").as_bytes(),
        );
        assert_eq!(a.len(), 1);
        assert_ne!(a, b, "a later change of the same invoice is a new event");
        let xero = |t: &str| {
            format!(
                r#"{{"events":[{{"resourceId":"aa","eventDateUtc":"{t}","eventType":"UPDATE","eventCategory":"INVOICE","tenantId":"t1"}}]}}"#
            )
        };
        let x1 = event_ids(System::Xero, xero("2026-11-23T10:00:00.000").as_bytes());
        assert_eq!(x1.len(), 1);
        assert_eq!(
            x1,
            event_ids(System::Xero, xero("2026-11-23T10:00:00.000").as_bytes())
        );
        assert_ne!(
            x1,
            event_ids(System::Xero, xero("2026-11-23T10:00:01.000").as_bytes())
        );
        assert!(event_ids(System::Xero, br#"{"events":[]}"#).is_empty());
    }

    #[test]
    fn memory_of_events_is_bounded() {
        let g = WebhookGate::default();
        for i in 0..REMEMBERED_EVENTS + 10 {
            assert!(g.fresh(&[format!("e{i}")]));
        }
        let seen = g.seen.lock().unwrap();
        assert_eq!(seen.ids.len(), REMEMBERED_EVENTS);
        assert_eq!(seen.order.len(), REMEMBERED_EVENTS);
        drop(seen);
        assert!(g.fresh(&["e0".to_string()]), "the oldest was forgotten");
        assert!(!g.fresh(&[format!("e{}", REMEMBERED_EVENTS + 9)]));
    }

    #[test]
    fn a_burst_schedules_one_sync() {
        let g = WebhookGate::default();
        assert!(g.schedule("qbo", 8_000));
        for _ in 0..50 {
            assert!(!g.schedule("qbo", 2));
        }
        assert!(g.schedule("xero", 1), "each connection has its own window");
        assert_eq!(g.fire("qbo"), 8_100, "the changes of the whole window");
        assert!(g.schedule("qbo", 1), "a new window after the sync started");
        let c = g.counts();
        assert_eq!((c.coalesced, c.syncs), (50, 1));
    }

    #[test]
    fn a_window_gathers_what_its_deliveries_name() {
        use crate::targeted::Targets;
        let g = WebhookGate::default();
        let named = |e: &str, id: &str| {
            let mut t = Targets::default();
            t.add(e, id);
            t
        };
        g.add_targets("qbo", named("invoice", "130"));
        assert!(g.schedule("qbo", 1));
        g.add_targets("qbo", named("payment", "77"));
        assert!(!g.schedule("qbo", 1));
        g.add_targets("xero", named("invoice", "aa"));
        assert_eq!(g.fire("qbo"), 2);
        let t = g.take_targets("qbo");
        assert_eq!(t.invoices.iter().collect::<Vec<_>>(), ["130"]);
        assert_eq!(t.payments.iter().collect::<Vec<_>>(), ["77"]);
        assert!(g.take_targets("qbo").is_empty(), "taken once");
        assert_eq!(g.take_targets("xero").invoices.len(), 1);
    }

    fn sign(body: &[u8], key: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_over_the_raw_bytes() {
        let body = br#"{"events":[]}"#;
        let good = sign(body, "k");
        assert!(signature_ok(body, "k", Some(&good)));
        assert!(!signature_ok(body, "other", Some(&good)));
        assert!(
            !signature_ok(br#"{"events": []}"#, "k", Some(&good)),
            "one changed byte fails"
        );
        assert!(!signature_ok(body, "k", None));
        assert!(!signature_ok(body, "k", Some("not base64!")));
        assert!(!signature_ok(body, "k", Some("")));
    }

    /// Intuit's own test vector, from its .NET SDK (`../shared/api/quickbooks/`).
    #[test]
    fn the_intuit_golden_vector_verifies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/api/quickbooks");
        let Ok(body) = std::fs::read(dir.join("webhook_legacy_payload.raw.json")) else {
            eprintln!(
                "SKIPPED: {} is absent (../shared sits beside the project in CI only)",
                dir.display()
            );
            return;
        };
        let vector =
            std::fs::read_to_string(dir.join("webhook_legacy_signature_vector.txt")).unwrap();
        let field = |name: &str| {
            vector
                .lines()
                .find_map(|l| {
                    l.strip_prefix("# ")
                        .and_then(|l| l.strip_prefix(name))
                        .map(|v| v.trim_start().trim_start_matches('=').trim().to_string())
                })
                .unwrap_or_else(|| panic!("{name} missing from the vector file"))
        };
        let token = field("verifier token");
        let header = field("intuit-signature header");
        assert!(signature_ok(&body, &token, Some(&header)));
        assert!(!signature_ok(
            &body,
            "00faeec4-08d0-4996-bb37-698ae19f0148",
            Some(&header)
        ));
        let events = parse_quickbooks(&body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            Event {
                tenant: "1269959970".into(),
                entity: "vendor".into(),
                id: "40".into(),
                operation: "update".into()
            }
        );
    }
}
