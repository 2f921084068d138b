//! Checks on documents the systems render for customers (invoice PDFs).

/// Why bytes that were answered as a PDF are not a whole PDF document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfProblem {
    #[error("the body ({0} bytes) does not start with %PDF-")]
    NotPdf(usize),
    #[error("the PDF ({0} bytes) has no %%EOF at its end: cut short")]
    Incomplete(usize),
}

/// A PDF starts with `%PDF-` and ends (give or take trailing whitespace or an
/// incremental-update trailer within the last kilobyte) with `%%EOF`. A body cut short
/// on the way fails the second test, so a truncated download is never attached.
pub fn check_pdf(body: &[u8]) -> Result<(), PdfProblem> {
    if !body.starts_with(b"%PDF-") {
        return Err(PdfProblem::NotPdf(body.len()));
    }
    let tail = &body[body.len().saturating_sub(1024)..];
    if tail.windows(5).any(|w| w == b"%%EOF") {
        Ok(())
    } else {
        Err(PdfProblem::Incomplete(body.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_pdfs_pass_and_cut_or_foreign_bodies_do_not() {
        assert_eq!(check_pdf(b"%PDF-1.4\n1 0 obj\nendobj\n%%EOF\n"), Ok(()));
        assert_eq!(check_pdf(b"%PDF-1.7\n...\n%%EOF"), Ok(()));
        assert_eq!(
            check_pdf(b"%PDF-1.4\n1 0 obj\nendo"),
            Err(PdfProblem::Incomplete(21))
        );
        assert_eq!(check_pdf(br#"{"Fault":{}}"#), Err(PdfProblem::NotPdf(12)));
        assert_eq!(check_pdf(b""), Err(PdfProblem::NotPdf(0)));
        let mut far = b"%PDF-1.4\n%%EOF\n".to_vec();
        far.extend(vec![b'x'; 2000]);
        assert!(check_pdf(&far).is_err(), "%%EOF must be at the end");
    }
}
