//! The invoice as Xero renders it for the customer: `GET /Invoices/{id}` with
//! `Accept: application/pdf`, through the same call path (tenant header, day budget,
//! limits, retries, 403 handling) as every other read.

use overdued_connector::document::check_pdf;
use overdued_connector::runtime::HttpResponse;
use overdued_connector::ConnectorError;

use super::{path_segment, Call, XeroConnector};
use crate::errors::malformed;

impl XeroConnector {
    pub(super) async fn read_invoice_pdf(
        &self,
        invoice_id: &str,
    ) -> Result<Vec<u8>, ConnectorError> {
        let op = "read Xero invoice PDF";
        let mut call = Call::get(
            op,
            self.settings
                .api(&format!("Invoices/{}", path_segment(invoice_id))),
        );
        call.accept = "application/pdf";
        let pdf = self.call(call, |r| pdf_body(op, r)).await?;
        tracing::debug!(connection = %self.settings.connection, invoice = invoice_id, bytes = pdf.len(), "invoice PDF read");
        Ok(pdf)
    }
}

/// A 2xx answer's PDF; one that is not a whole PDF (cut short, or JSON where a PDF was
/// asked for) is an unreadable answer, transient like the other unreadable ones.
fn pdf_body(op: &str, r: &HttpResponse) -> Result<Vec<u8>, ConnectorError> {
    check_pdf(&r.body).map_err(|e| malformed(op, e))?;
    Ok(r.body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn resp(body: &[u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: HeaderMap::new(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn only_whole_pdfs_are_accepted() {
        let whole = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
        assert_eq!(pdf_body("op", &resp(whole)).unwrap(), whole.to_vec());
        for bad in [&b"%PDF-1.4\n1 0 o"[..], b"{\"Invoices\":[]}", b""] {
            assert!(matches!(
                pdf_body("op", &resp(bad)),
                Err(ConnectorError::Transient { .. })
            ));
        }
    }
}
