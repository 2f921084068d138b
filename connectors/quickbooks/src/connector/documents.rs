//! What the customer needs to pay: the invoice's online payment link (`InvoiceLink`,
//! read with `include=invoiceLink`) and its PDF (`GET .../invoice/{id}/pdf`). Both are
//! reads through the connection runtime, so limits, retries and token refresh apply.

use overdued_connector::document::check_pdf;
use overdued_connector::runtime::HttpResponse;
use overdued_connector::ConnectorError;
use reqwest::header::ACCEPT;

use super::{path_segment, QuickBooksConnector, MINOR_VERSION};
use crate::wire::{classify, parse_ok, InvoiceEnvelope};

impl QuickBooksConnector {
    /// `InvoiceLink` is present only when the company takes online payments and the
    /// invoice has a bill email; an empty one counts as none.
    pub(super) async fn read_invoice_link(
        &self,
        invoice_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let url = format!("{}/invoice/{}", self.company_url, path_segment(invoice_id)?);
        let env: InvoiceEnvelope = self
            .rt
            .execute(
                "read_invoice_link",
                |c| {
                    c.get(&url)
                        .query(&[("minorversion", MINOR_VERSION), ("include", "invoiceLink")])
                        .header(ACCEPT, "application/json")
                },
                |r| parse_ok::<InvoiceEnvelope>(&r, "invoice read"),
            )
            .await?;
        Ok(env.invoice.invoice_link.filter(|l| !l.trim().is_empty()))
    }

    pub(super) async fn read_invoice_pdf(
        &self,
        invoice_id: &str,
    ) -> Result<Vec<u8>, ConnectorError> {
        let url = format!(
            "{}/invoice/{}/pdf",
            self.company_url,
            path_segment(invoice_id)?
        );
        let pdf = self
            .rt
            .execute(
                "read_invoice_pdf",
                |c| {
                    c.get(&url)
                        .query(&[("minorversion", MINOR_VERSION)])
                        .header(ACCEPT, "application/pdf")
                },
                pdf_body,
            )
            .await?;
        tracing::debug!(connection = %self.settings.connection, invoice = invoice_id, bytes = pdf.len(), "invoice PDF read");
        Ok(pdf)
    }
}

/// The PDF of a 2xx answer. Errors and faults come as JSON and are classified like any
/// other call; a body that is not a whole PDF (cut short on the way) is transient.
fn pdf_body(r: HttpResponse) -> Result<Vec<u8>, ConnectorError> {
    if !(200..300).contains(&r.status) {
        return Err(classify(&r));
    }
    match check_pdf(&r.body) {
        Ok(()) => Ok(r.body),
        // JSON instead of a PDF: a fault inside a 200 (QuickBooks does that), which
        // says more than "not a PDF".
        Err(_) if r.body.starts_with(b"{") => Err(classify(&r)),
        Err(problem) => Err(ConnectorError::transient(format!(
            "QuickBooks invoice PDF unreadable (HTTP {}): {problem}",
            r.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn resp(status: u16, body: &[u8]) -> HttpResponse {
        HttpResponse {
            status,
            headers: HeaderMap::new(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn pdf_answers_are_checked_and_classified() {
        let whole = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
        assert_eq!(pdf_body(resp(200, whole)).unwrap(), whole.to_vec());
        assert!(matches!(
            pdf_body(resp(200, b"%PDF-1.4\n1 0 ob")),
            Err(ConnectorError::Transient { .. })
        ));
        assert!(matches!(
            pdf_body(resp(503, b"Service Unavailable")),
            Err(ConnectorError::Transient { .. })
        ));
        assert!(matches!(
            pdf_body(resp(429, b"")),
            Err(ConnectorError::RateLimited { .. })
        ));
        let not_found = br#"{"Fault":{"Error":[{"Message":"Object Not Found","Detail":"d","code":"610"}],"type":"ValidationFault"},"time":"2026-01-01T00:00:00Z"}"#;
        assert!(matches!(
            pdf_body(resp(400, not_found)),
            Err(ConnectorError::NotFound(_))
        ));
        let throttled = br#"{"Fault":{"Error":[{"Message":"m","Detail":"d","code":"3001"}],"type":"ThrottleExceeded"},"time":"2026-01-01T00:00:00Z"}"#;
        assert!(matches!(
            pdf_body(resp(200, throttled)),
            Err(ConnectorError::RateLimited { .. })
        ));
    }
}
