use super::*;

fn dir_with_secret(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret");
    std::fs::write(&p, "s3cr3t\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

fn parse_in(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    parse(text, &dir.join("config.toml"))
}

const GOOD: &str = r#"
[daemon]
state_dir = "state"
poll_interval = "15m"
time_zone = "Europe/London"

[quickbooks.acme-us]
realm_id = "9341453"
client_id = "abc"
client_secret_file = "secret"
environment = "sandbox"

[xero.acme-uk]
client_id = "def"
client_secret = "inline"
tenant = "Acme UK Ltd"
"#;

#[test]
fn a_good_file_loads_with_defaults_filled_in() {
    let dir = dir_with_secret(0o600);
    let c = parse_in(dir.path(), GOOD).unwrap();
    assert_eq!(c.daemon.time_zone, chrono_tz::Europe::London);
    assert_eq!(c.daemon.state_dir, dir.path().join("state"));
    assert_eq!(c.daemon.full_sync_interval.to_string(), "1d");
    assert_eq!(c.daemon.mode, Mode::Live);
    assert_eq!(c.connections.len(), 2);
    let q = c.connection("acme-us").unwrap();
    assert_eq!(q.client_secret.expose(), "s3cr3t");
    assert_eq!(q.policy, "default");
    let x = c.connection("acme-uk").unwrap();
    assert_eq!(x.system(), System::Xero);
    match &x.system {
        SystemConfig::Xero(xc) => assert!(xc.scopes.contains(&"offline_access".to_string())),
        _ => unreachable!(),
    }
}

#[test]
fn debug_output_holds_no_secret() {
    let dir = dir_with_secret(0o600);
    let c = parse_in(dir.path(), GOOD).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t") && !dbg.contains("inline"), "{dbg}");
}

#[test]
fn a_misspelt_key_is_named_with_its_line() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace("poll_interval = \"15m\"", "pol_interval = \"15m\"");
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
    assert!(e.message.contains("pol_interval"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:4:", dir.path().join("config.toml").display())),
        "{e}"
    );
}

#[test]
fn an_unknown_table_is_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), "[deamon]\n").unwrap_err();
    assert!(e.message.contains("deamon"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(1));
}

#[test]
fn an_unknown_time_zone_is_located() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("Europe/London", "Europe/Londn")).unwrap_err();
    assert_eq!(e.position, Some((5, 13)), "{e}");
    assert!(
        e.message.contains("daemon.time_zone") && e.message.contains("unknown time zone"),
        "{e}"
    );
}

#[test]
fn a_bad_duration_is_located() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("\"15m\"", "\"15 minutes\"")).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
    assert!(e.message.contains("invalid duration"), "{e}");
}

#[test]
fn too_short_a_poll_interval_is_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("\"15m\"", "\"10s\"")).unwrap_err();
    assert!(e.message.contains("at least 1m"), "{e}");
}

#[test]
fn a_group_readable_secret_file_is_refused_and_located() {
    let dir = dir_with_secret(0o644);
    let e = parse_in(dir.path(), GOOD).unwrap_err();
    assert!(
        e.message.contains("readable by other users") && e.message.contains("0644"),
        "{e}"
    );
    assert_eq!(e.position.map(|p| p.0), Some(10), "{e}");
}

#[test]
fn a_missing_secret_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = parse_in(dir.path(), GOOD).unwrap_err();
    assert!(
        e.message.contains("client_secret_file") && e.message.contains("no such file"),
        "{e}"
    );
}

#[test]
fn inline_and_file_secret_together_are_refused() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace(
        "client_secret_file = \"secret\"",
        "client_secret_file = \"secret\"\nclient_secret = \"x\"",
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(e.message.contains("not both"), "{e}");
}

#[test]
fn a_missing_secret_is_refused() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace("client_secret = \"inline\"\n", "");
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(
        e.message
            .contains("client_secret or client_secret_file is required"),
        "{e}"
    );
}

#[test]
fn duplicate_connection_names_across_systems_are_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(
        dir.path(),
        &GOOD.replace("[xero.acme-uk]", "[xero.acme-us]"),
    )
    .unwrap_err();
    assert!(e.message.contains("must be unique"), "{e}");
}

#[test]
fn bad_connection_names_are_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(
        dir.path(),
        &GOOD.replace("[xero.acme-uk]", "[xero.\"acme uk\"]"),
    )
    .unwrap_err();
    assert!(e.message.contains("only letters"), "{e}");
}

#[test]
fn a_bad_realm_id_is_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("9341453", "acme")).unwrap_err();
    assert!(e.message.contains("realm id"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(8));
}

#[test]
fn xero_scopes_need_offline_access() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace(
        "tenant = \"Acme UK Ltd\"",
        "tenant = \"Acme UK Ltd\"\nscopes = [\"accounting.transactions\"]",
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(e.message.contains("offline_access"), "{e}");
}

#[test]
fn an_empty_tenant_is_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("\"Acme UK Ltd\"", "\"\"")).unwrap_err();
    assert!(e.message.contains("tenant"), "{e}");
}

#[test]
fn a_bad_url_is_refused() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace(
        "environment = \"sandbox\"",
        "environment = \"sandbox\"\napi_base = \"not a url\"",
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(
        e.message.contains("api_base") && e.message.contains("not a URL"),
        "{e}"
    );
    let text = GOOD.replace(
        "environment = \"sandbox\"",
        "environment = \"sandbox\"\napi_base = \"ftp://x\"",
    );
    assert!(parse_in(dir.path(), &text)
        .unwrap_err()
        .message
        .contains("http"));
}

#[test]
fn an_unknown_environment_is_refused() {
    let dir = dir_with_secret(0o600);
    let e = parse_in(dir.path(), &GOOD.replace("\"sandbox\"", "\"staging\"")).unwrap_err();
    assert!(
        e.message.contains("staging") || e.message.contains("unknown variant"),
        "{e}"
    );
    assert_eq!(e.position.map(|p| p.0), Some(11), "{e}");
}

#[test]
fn an_undefined_policy_is_refused() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace(
        "tenant = \"Acme UK Ltd\"",
        "tenant = \"Acme UK Ltd\"\npolicy = \"strict\"",
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(e.message.contains("no policy named \"strict\""), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(17), "{e}");
}

#[test]
fn a_bad_listen_address_is_refused() {
    let dir = dir_with_secret(0o600);
    let text = GOOD.replace("[daemon]", "[daemon]\nhttp_listen = \"localhost\"");
    assert!(parse_in(dir.path(), &text)
        .unwrap_err()
        .message
        .contains("http_listen"));
}

#[test]
fn a_remote_listen_address_needs_allow_remote_admin() {
    let dir = dir_with_secret(0o600);
    for addr in ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464"] {
        let text = GOOD.replace("[daemon]", &format!("[daemon]\nhttp_listen = \"{addr}\""));
        let e = parse_in(dir.path(), &text).unwrap_err();
        assert!(e.message.contains("daemon.http_listen"), "{e}");
        assert!(e.message.contains("allow_remote_admin"), "{e}");
        let allowed = text.replace("[daemon]", "[daemon]\nallow_remote_admin = true");
        let c = parse_in(dir.path(), &allowed).unwrap();
        assert!(c.daemon.allow_remote_admin);
        assert_eq!(c.daemon.http_listen, addr.parse().unwrap());
    }
    for addr in ["127.0.0.1:0", "[::1]:9464"] {
        let text = GOOD.replace("[daemon]", &format!("[daemon]\nhttp_listen = \"{addr}\""));
        assert!(
            !parse_in(dir.path(), &text)
                .unwrap()
                .daemon
                .allow_remote_admin
        );
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let e = load(Path::new("/nonexistent/overdued.toml")).unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
}

#[test]
fn the_config_path_comes_from_flag_then_env_then_default() {
    assert_eq!(
        resolve_path(Some(Path::new("/x.toml"))),
        PathBuf::from("/x.toml")
    );
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let c = load(&path).unwrap();
    assert_eq!(c.connections.len(), 2);
    assert_eq!(c.daemon.time_zone, chrono_tz::Europe::London);
}

#[test]
fn channels_parse_with_secrets_and_defaults() {
    let dir = dir_with_secret(0o600);
    let text = format!(
        "{GOOD}\n[channels]\nowner_email = \"Owner <owner@acme.example>\"\n\n[channels.smtp]\nhost = \"smtp.acme.example\"\nusername = \"billing\"\npassword_file = \"secret\"\nfrom = \"billing@acme.example\"\nfrom_name = \"Acme Accounts\"\ncopy_owner = true\n\n[channels.digest]\n\n[channels.webhook]\nurl = \"https://hooks.example/x\"\nsecret_file = \"secret\"\n\n[policies.default]\npayment_instructions = \"Bank transfer\"\n"
    );
    let c = parse_in(dir.path(), &text).unwrap();
    let s = c.channels.smtp.unwrap();
    assert_eq!(s.port, 587);
    assert_eq!(s.password.unwrap().expose(), "s3cr3t");
    assert_eq!(s.from.to_string(), "Acme Accounts <billing@acme.example>");
    assert_eq!(
        s.copy_owner.unwrap().email.to_string(),
        "owner@acme.example"
    );
    let d = c.channels.digest.unwrap();
    assert_eq!(
        (d.hour, d.to.email.to_string()),
        (8, "owner@acme.example".into())
    );
    assert_eq!(c.channels.webhook.unwrap().secret.expose(), "s3cr3t");
}

#[test]
fn channel_errors_are_located() {
    let dir = dir_with_secret(0o600);
    let text = format!("{GOOD}\n[channels.smtp]\nhost = \"h\"\nfrom = \"not an address\"\n");
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(e.message.starts_with("channels.smtp.from:"), "{e}");
    assert!(e.position.is_some(), "{e}");

    let text = format!(
        "{GOOD}\n[policies.default]\npayment_instructions = \"Bank transfer\"\n\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\nchannel = \"smtp\"\n"
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(
        e.message.contains("policies.default.steps[0].channel")
            && e.message.contains("[channels.smtp]"),
        "{e}"
    );

    let text = format!(
        "{GOOD}\n[channels.smtp]\nhost = \"h\"\nfrom = \"a@b.example\"\ncopy_owner = true\n"
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(e.message.contains("owner_email"), "{e}");
}

#[test]
fn email_is_still_the_system_channel_and_system_is_its_alias() {
    let dir = dir_with_secret(0o600);
    for ch in ["email", "system"] {
        let text = format!(
            "{GOOD}\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\nchannel = \"{ch}\"\n"
        );
        let c = parse_in(dir.path(), &text).unwrap();
        let p = c.policy_book.get("default").unwrap();
        assert_eq!(p.steps[0].channel, crate::engine::Channel::Email, "{ch}");
    }
}

#[test]
fn webhook_keys_are_secrets_and_located() {
    let dir = dir_with_secret(0o600);
    let text = format!("{GOOD}\n[daemon.webhooks]\nxero_webhook_key_file = \"secret\"\n");
    let c = parse_in(dir.path(), &text).unwrap();
    assert_eq!(
        c.daemon.webhooks.xero_webhook_key.unwrap().expose(),
        "s3cr3t"
    );
    assert!(
        c.daemon.webhooks.quickbooks_verifier_token.is_none(),
        "off unless configured"
    );
    let text = format!(
        "{GOOD}\n[daemon.webhooks]\nxero_webhook_key_file = \"secret\"\nxero_webhook_key = \"x\"\n"
    );
    let e = parse_in(dir.path(), &text).unwrap_err();
    assert!(
        e.message.contains("daemon.webhooks.xero_webhook_key") && e.message.contains("not both"),
        "{e}"
    );
    let e = parse_in(
        dir.path(),
        &format!("{GOOD}\n[daemon.webhooks]\nqbo_token = \"x\"\n"),
    )
    .unwrap_err();
    assert!(e.message.contains("qbo_token"), "{e}");
}

#[test]
fn with_smtp_a_policy_whose_steps_smtp_takes_over_must_say_how_to_pay() {
    let dir = dir_with_secret(0o600);
    let smtp = "\n[channels.smtp]\nhost = \"h\"\nfrom = \"a@b.example\"\n";
    // The built-in policy: its catch-ups and firm notices would go by SMTP.
    let e = parse_in(dir.path(), &format!("{GOOD}{smtp}")).unwrap_err();
    assert!(e.message.starts_with("channels.smtp:"), "{e}");
    assert!(e.message.contains("payment_instructions"), "{e}");
    assert!(e.message.contains("\"default\""), "{e}");

    // A declared policy is blamed at its own table.
    let declared = "\n[policies.default]\nnotice_days = 7\n";
    let e = parse_in(dir.path(), &format!("{GOOD}{smtp}{declared}")).unwrap_err();
    assert!(
        e.message
            .starts_with("policies.default.payment_instructions:"),
        "{e}"
    );
    assert!(e.position.is_some(), "{e}");

    // Saying how to pay, or keeping every step on the system's email, is accepted.
    let ok = "\n[policies.default]\npayment_instructions = \"Bank transfer\"\n";
    parse_in(dir.path(), &format!("{GOOD}{smtp}{ok}")).unwrap();
    let system_only = "\n[[policies.default.steps]]\noffset = \"+7d\"\naction = \"remind\"\nchannel = \"email\"\n";
    parse_in(dir.path(), &format!("{GOOD}{smtp}{system_only}")).unwrap();
    // Without SMTP nothing is asked.
    parse_in(dir.path(), GOOD).unwrap();
}
