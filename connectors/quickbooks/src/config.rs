//! QuickBooks' rules for the values of a `[quickbooks.NAME]` table, shared by the root
//! config (which reports them at the file position) and the connector (which refuses
//! settings built any other way).

/// QuickBooks' built-in "Services" item, used for fee lines unless the config names the
/// company's own late-fee item.
pub const DEFAULT_FEE_ITEM: &str = "1";

/// A realm (company) id is what Intuit puts in `realmId`: ASCII digits, nothing else.
pub fn check_realm_id(realm_id: &str) -> Result<(), String> {
    if realm_id.is_empty() || !realm_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{realm_id:?} is not a QuickBooks realm id (digits only)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_ids_are_digits_only() {
        assert!(check_realm_id("9341453").is_ok());
        assert!(check_realm_id("9130357766900456").is_ok());
        for bad in ["", " ", "acme", "123a", "12 3", "１２"] {
            let e = check_realm_id(bad).unwrap_err();
            assert!(e.contains("realm id"), "{bad:?}: {e}");
        }
    }
}
