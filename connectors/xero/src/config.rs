//! Xero's rules for the values of a `[xero.NAME]` table, shared by the root config
//! (which reports them at the file position) and the settings builder.

pub use crate::oauth::DEFAULT_SCOPES;

/// The organisation is named by tenant id or by name; either way it cannot be blank.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    if tenant.trim().is_empty() {
        return Err("is empty: give the organisation's tenant id or name".into());
    }
    Ok(())
}

/// Without `offline_access` Xero issues no refresh token.
pub fn check_scopes(scopes: &[String]) -> Result<(), String> {
    if !scopes.iter().any(|s| s == "offline_access") {
        return Err("must include offline_access, or Xero gives no refresh token and the connection dies after 30 minutes".into());
    }
    Ok(())
}

/// The scopes asked for when the config names none.
pub fn default_scopes() -> Vec<String> {
    DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_and_scopes_are_checked() {
        assert!(check_tenant("Acme UK Ltd").is_ok());
        assert!(check_tenant("  ")
            .unwrap_err()
            .contains("tenant id or name"));
        assert!(check_scopes(&default_scopes()).is_ok());
        let e = check_scopes(&["accounting.transactions".to_string()]).unwrap_err();
        assert!(e.contains("offline_access"), "{e}");
    }
}
