//! What a customer is sent to pay: the invoice's online payment page and its PDF, for
//! both vendors, and whether a company takes online payments at all.
//!
//! A leaf: the vendor modules (`qbo`, `xero`) answer the requests and call in here for
//! links, tokens and PDF bytes; nothing here knows a vendor's wire format.
//!
//! # Choices worth knowing
//! - **Online payments per company.** Real companies differ: a QuickBooks company
//!   without QuickBooks Payments has no `InvoiceLink`, a Xero organisation without online
//!   invoicing gives no `OnlineInvoiceUrl`. A tenant's flag is seeded from its id (about
//!   one tenant in five takes no online payments, without drawing from the world's random
//!   stream, so existing seeds produce the same invoices), and
//!   `POST /_sandbox/online-payments` or [`Sandbox::set_online_payments`] sets it.
//! - **QuickBooks.** `InvoiceLink` is added to an invoice read only with
//!   `include=invoiceLink`, and only when the company takes online payments and the
//!   invoice has a `BillEmail` (as Intuit documents). `GET .../invoice/{id}/pdf` needs
//!   `Accept: application/pdf`.
//! - **Xero.** `GET /Invoices/{id}/OnlineInvoice` answers the `OnlineInvoices` envelope of
//!   the official OpenAPI; a DRAFT (or deleted) invoice or a bill (`ACCPAY`) has no online
//!   invoice and gets a `ValidationException`, as Xero's documentation says for drafts; an
//!   organisation without online invoicing gets an empty `OnlineInvoices` array.
//!   `GET /Invoices/{id}` with `Accept: application/pdf` answers the PDF.
//! - **PDF.** A minimal but valid PDF 1.4 document (cross-reference table with exact
//!   offsets) that names the company, the invoice number, the due date and the amount
//!   due, so tests can read what was rendered.

use std::fmt::Write as _;

use overdued_connector::{Currency, Money};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::wire::{Reply, Req};
use crate::world::{Invoice, Status, Tenant};
use crate::{Sandbox, SandboxError, System};

/// Whether the company takes online payments: its set flag, else the seeded default.
pub fn takes_online_payments(t: &Tenant) -> bool {
    t.online_payments
        .unwrap_or_else(|| !digest(&[t.id.as_str(), "online-payments"])[0].is_multiple_of(5))
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

/// A stable token for an invoice's public page, as long as the vendors' (40 characters).
fn page_token(t: &Tenant, inv: &Invoice) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let a = digest(&[t.id.as_str(), inv.id.as_str(), "page"]);
    let b = digest(&[t.id.as_str(), inv.id.as_str(), "page2"]);
    a.iter()
        .chain(b.iter())
        .take(40)
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// QuickBooks' `InvoiceLink` for an invoice, when the vendor would give one.
pub fn quickbooks_invoice_link(t: &Tenant, inv: &Invoice) -> Option<String> {
    let has_email = inv.bill_email.as_deref().is_some_and(|e| !e.is_empty());
    (takes_online_payments(t) && has_email && inv.status != Status::Deleted).then(|| {
        format!(
            "https://connect.intuit.com/t/scs-v1-{}",
            page_token(t, inv).to_ascii_lowercase()
        )
    })
}

/// Xero's `OnlineInvoiceUrl` for an invoice of an organisation with online invoicing.
pub fn xero_online_invoice_url(t: &Tenant, inv: &Invoice) -> Option<String> {
    takes_online_payments(t).then(|| format!("https://in.xero.com/{}", page_token(t, inv)))
}

/// True when the request asks for a PDF.
pub fn wants_pdf(req: &Req) -> bool {
    req.header("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("application/pdf"))
}

/// The invoice rendered as the customer would receive it.
pub fn pdf_reply(t: &Tenant, inv: &Invoice) -> Reply {
    let mut r = Reply::empty(200).with_header("content-type", "application/pdf");
    r.body = bytes::Bytes::from(invoice_pdf(t, inv));
    r
}

fn human(amount: rust_decimal::Decimal, currency: &str) -> String {
    match currency.parse::<Currency>() {
        Ok(c) => Money::new(amount, c).display_human().to_string(),
        Err(_) => format!("{currency} {amount}"),
    }
}

/// A one-page PDF 1.4 document naming the invoice and what is due on it.
pub fn invoice_pdf(t: &Tenant, inv: &Invoice) -> Vec<u8> {
    let customer = t
        .customers
        .get(inv.customer)
        .map(|c| c.name.as_str())
        .unwrap_or("");
    let lines = [
        t.name.clone(),
        format!("Invoice {}", inv.number),
        format!("Bill to: {customer}"),
        format!("Issued: {}", inv.issue_date),
        format!("Due date: {}", inv.due_date),
        format!("Total: {}", human(inv.total, &inv.currency)),
        format!("Amount due: {}", human(inv.balance(), &inv.currency)),
    ];
    let mut content = String::from("BT\n/F1 12 Tf\n16 TL\n72 720 Td\n");
    for l in &lines {
        let _ = writeln!(content, "({}) Tj T*", pdf_escape(l));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = write!(out, "{} 0 obj\n{o}\nendobj\n", i + 1);
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for off in offsets {
        let _ = writeln!(out, "{off:010} 00000 n ");
    }
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.into_bytes()
}

/// Text inside a PDF string literal: the delimiters escaped, anything outside printable
/// ASCII replaced, since the standard font's encoding is single-byte.
fn pdf_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            ' '..='~' => o.push(c),
            _ => o.push('?'),
        }
    }
    o
}

#[derive(Deserialize)]
struct OnlinePayments {
    system: System,
    #[serde(default)]
    tenant: Option<String>,
    enabled: bool,
}

/// `POST /_sandbox/online-payments` `{"system", "tenant"?, "enabled"}`.
pub fn control(sb: &Sandbox, req: &Req) -> Reply {
    let body: OnlinePayments = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => return Reply::json(400, &json!({"error": e.to_string()})),
    };
    let tenant = match body.tenant {
        Some(t) => t,
        None => match sb.tenants().into_iter().find(|t| t.system == body.system) {
            Some(t) => t.id,
            None => return Reply::json(404, &json!({"error": "no such tenant"})),
        },
    };
    match sb.set_online_payments(body.system, &tenant, body.enabled) {
        Ok(()) => Reply::json(
            200,
            &json!({"system": body.system, "tenant": tenant, "online_payments": body.enabled}),
        ),
        Err(e) => Reply::json(404, &json!({"error": e.to_string()})),
    }
}

impl Sandbox {
    /// Turns online payments on or off for one company or organisation.
    pub fn set_online_payments(
        &self,
        system: System,
        tenant: &str,
        enabled: bool,
    ) -> Result<(), SandboxError> {
        let mut w = self.world();
        let t = w
            .tenant_index(system, tenant)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: tenant.to_string(),
            })?;
        w.tenants[t].online_payments = Some(enabled);
        drop(w);
        self.mark_dirty();
        Ok(())
    }

    /// Whether one company or organisation takes online payments.
    pub fn online_payments(&self, system: System, tenant: &str) -> Result<bool, SandboxError> {
        let w = self.world();
        let t = w
            .tenant_index(system, tenant)
            .ok_or_else(|| SandboxError::UnknownTenant {
                system,
                tenant: tenant.to_string(),
            })?;
        Ok(takes_online_payments(&w.tenants[t]))
    }
}
