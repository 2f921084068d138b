use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    engine: EngineSettings,
    #[serde(default)]
    policies: BTreeMap<String, Policy>,
}

fn parse(s: &str) -> Doc {
    toml::from_str(s).unwrap_or_else(|e| panic!("{e}"))
}

fn paths(e: ValidationErrors) -> Vec<String> {
    e.0.into_iter().map(|e| e.path).collect()
}

#[test]
fn no_policies_section_gives_the_built_in_default() {
    let doc = parse("");
    assert_eq!(doc.engine, EngineSettings::default());
    let book = PolicyBook::compile(&doc.policies).unwrap();
    let p = book.get(DEFAULT_POLICY).unwrap();
    let days: Vec<i64> = p.steps.iter().map(|s| s.day).collect();
    assert_eq!(days, [-3, 0, 7, 14, 30, 60, 90]);
    assert_eq!(p.escalation_day, Some(90));
    assert_eq!(p.max_reminders_per_customer_per_day, 1);
    assert_eq!(p.marker_in("Please #NoChase this"), Some("#nochase"));
    assert!(validate(&doc.engine, &doc.policies).is_ok());
}

#[test]
fn the_documented_example_parses_and_omitted_fields_inherit() {
    let doc = parse(
        r##"
[engine]
time_zone = "Europe/London"
catch_up_horizon_days = 10
promise_grace_days = 2

[policies.default]
minimum_amount_due = "5.00"
exclude_markers = ["#nochase", "#legal"]

[[policies.default.steps]]
offset = "-3d"
action = "remind"
template = "heads_up"

[[policies.default.steps]]
offset = "+30d"
action = "late_fee"

[[policies.default.steps]]
offset = "+30d"
action = "remind"
template = "stop_work"

[[policies.default.steps]]
offset = "+90d"
action = "escalate"

[policies.default.repeat]
every_days = 7
max = 4

[policies.default.late_fee]
model = "statutory_uk"
reference_rates = [{ from = 2025-08-07, percent = 4.0 }, { from = "2026-02-05", percent = "3.75" }]
every_days = 30
cap_percent_of_invoice = 25

[policies.default.send_window]
cron = "* 9-16 * * Mon-Fri"
holidays = [2026-12-25, "2026-12-28"]

[[policies.default.overrides]]
email_domain = "bigcorp.example"
policy = "net60"

[policies.default.templates.heads_up]
subject = "Invoice {{ invoice_number }} due {{ due_date }}"
body = "Hello {{ customer_name }}"

[policies.net60]
minimum_amount_due = 100
"##,
    );
    validate(&doc.engine, &doc.policies).unwrap();
    let book = PolicyBook::compile(&doc.policies).unwrap();
    let net60 = book.get("net60").unwrap();
    assert_eq!(net60.minimum_amount_due, Decimal::from(100));
    assert_eq!(
        net60.steps.len(),
        7,
        "steps inherited from the built-in policy"
    );
    let d = book.get("default").unwrap();
    assert_eq!(
        d.template("heads_up").unwrap().body,
        "Hello {{ customer_name }}"
    );
    assert!(d.late_fee.is_some());
    assert_eq!(doc.engine.tz().unwrap(), chrono_tz::Europe::London);
}

#[test]
fn errors_name_the_field_path() {
    let doc = parse(
        r##"
[engine]
time_zone = "Mars/Olympus"

[[policies.strict.steps]]
offset = "+7"
action = "remind"

[[policies.strict.steps]]
offset = "+14d"
action = "remind"
template = "frim"

[[policies.strict.steps]]
offset = "+14d"
action = "remind"
id = "again"

[[policies.strict.steps]]
offset = "+20d"
action = "escalate"
channel = "email"

[[policies.strict.steps]]
offset = "+21d"
action = "late_fee"

[policies.strict.send_window]
cron = "* 9-17 * * 1-5"
holidays = ["2026-02-30"]

[[policies.strict.overrides]]
customer_id = "7"
customer_name = "Acme"
policy = "missing"

[policies.strict.templates.custom]
subject = "Hi {nmae}"
body = "ok"
"##,
    );
    let errs = validate(&doc.engine, &doc.policies).unwrap_err();
    let text = errs.to_string();
    let p = paths(errs);
    for want in [
        "engine.time_zone",
        "policies.strict.steps[0].offset",
        "policies.strict.steps[1].template",
        "policies.strict.steps[2].offset",
        "policies.strict.steps[3].channel",
        "policies.strict.steps[4].offset",
        "policies.strict.steps[4].action",
        "policies.strict.send_window.holidays[0]",
        "policies.strict.send_window.cron",
        "policies.strict.overrides[0]",
        "policies.strict.overrides[0].policy",
        "policies.strict.templates.custom.subject",
    ] {
        assert!(p.iter().any(|x| x == want), "missing {want} in {p:?}");
    }
    assert!(text.contains("day names"), "{text}");
    assert!(text.contains("{nmae}"), "{text}");
}

#[test]
fn unknown_fields_are_rejected_by_serde() {
    let e = toml::from_str::<Doc>("[policies.x]\nminimum = 5\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown field `minimum`"), "{e}");
    let e = toml::from_str::<Doc>("[[policies.x.steps]]\noffset = \"1d\"\naction = \"shout\"\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown variant `shout`"), "{e}");
}

#[test]
fn fee_table_and_step_go_together() {
    let doc = parse("[policies.x.late_fee]\nmodel = \"fixed\"\namount = 10\n");
    assert_eq!(
        paths(PolicyBook::compile(&doc.policies).unwrap_err()),
        ["policies.x.late_fee"]
    );
    // With a reminder before it: a fee without notice is an error of its own (issue #13).
    let doc = parse("[policies.x.late_fee]\nmodel = \"fixed\"\n[[policies.x.steps]]\noffset = \"0d\"\naction = \"remind\"\n[[policies.x.steps]]\noffset = \"+30d\"\naction = \"late_fee\"\n");
    assert_eq!(
        paths(PolicyBook::compile(&doc.policies).unwrap_err()),
        ["policies.x.late_fee.amount"]
    );
}

#[test]
fn overrides_resolve_by_id_name_and_domain() {
    let doc = parse(
        r#"
[[policies.default.overrides]]
customer_id = "7"
exclude = true
[[policies.default.overrides]]
customer_name = "  big corp ltd "
policy = "vip"
[[policies.default.overrides]]
email_domain = "@Example.COM"
policy = "vip"
[policies.vip]
max_reminders_per_customer_per_day = 3
"#,
    );
    let book = PolicyBook::compile(&doc.policies).unwrap();
    let mut inv = crate::engine::plan::tests_support::invoice("1", "7", 1000);
    assert!(matches!(
        book.resolve("default", &inv),
        Some(Resolution::Excluded { .. })
    ));
    inv.customer.id = "8".into();
    inv.customer.name = "Big Corp Ltd".into();
    assert!(
        matches!(book.resolve("default", &inv), Some(Resolution::Policy { policy, .. }) if policy.name == "vip")
    );
    inv.customer.name = "Other".into();
    inv.customer.email = Some("ap@example.com".into());
    assert!(
        matches!(book.resolve("default", &inv), Some(Resolution::Policy { policy, .. }) if policy.name == "vip")
    );
    inv.customer.email = Some("ap@notexample.com".into());
    assert!(
        matches!(book.resolve("default", &inv), Some(Resolution::Policy { policy, via: None }) if policy.name == "default")
    );
    assert!(book.resolve("nope", &inv).is_none());
}

fn steps(list: &[(&str, &str, Option<&str>)]) -> String {
    let mut s = String::from(
        "[policies.x]\nnotice_days = 7\n[policies.x.late_fee]\nmodel = \"fixed\"\namount = 10\n",
    );
    for (offset, action, template) in list {
        s.push_str(&format!(
            "[[policies.x.steps]]\noffset = \"{offset}\"\naction = \"{action}\"\n"
        ));
        if let Some(t) = template {
            s.push_str(&format!("template = \"{t}\"\n"));
        }
    }
    s
}

#[test]
fn a_fee_without_notice_fails_naming_the_step() {
    let doc = parse(&steps(&[
        ("0d", "remind", Some("due_today")),
        ("+3d", "late_fee", None),
    ]));
    let e = PolicyBook::compile(&doc.policies).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "policies.x.steps[1]");
    assert!(e.0[0].message.contains("step +3d (late_fee)"), "{e}");
    assert!(e.0[0].message.contains("first reminder is at 0d"), "{e}");
    // Seven days later it is fine.
    let doc = parse(&steps(&[
        ("0d", "remind", Some("due_today")),
        ("+7d", "late_fee", None),
    ]));
    PolicyBook::compile(&doc.policies).unwrap();
}

#[test]
fn an_escalation_needs_its_final_notice_notice_days_before() {
    let doc = parse(&steps(&[
        ("0d", "remind", Some("due_today")),
        ("+14d", "late_fee", None),
        ("+30d", "remind", Some("final_notice")),
        ("+33d", "escalate", None),
    ]));
    let e = PolicyBook::compile(&doc.policies).unwrap_err();
    assert_eq!(paths(e.clone()), ["policies.x.steps[3]"], "{e}");
    assert!(e.0[0].message.contains("final notice"), "{e}");
    assert!(e.0[0].message.contains("+30d at +30d"), "{e}");
    // A stop-work notice with no reminder before it is refused too.
    let doc = parse(&steps(&[("+30d", "remind", Some("stop_work"))]).replace(
        "[policies.x.late_fee]\nmodel = \"fixed\"\namount = 10\n",
        "",
    ));
    let e = PolicyBook::compile(&doc.policies).unwrap_err();
    assert!(e.0[0].message.contains("template stop_work"), "{e}");
    assert!(
        e.0[0].message.contains("no step reminds the customer"),
        "{e}"
    );
}

#[test]
fn the_built_in_policy_gives_notice() {
    assert!(Policy::default_policy()
        .validate("policies.default")
        .is_ok());
    assert_eq!(Policy::default_policy().notice_days, 7);
}

#[test]
fn smtp_steps_need_payment_instructions_and_pdfs_attach_by_default() {
    let smtp = r##"
[[policies.mail.steps]]
offset = "+7d"
action = "remind"
channel = "both"
"##;
    let doc = parse(smtp);
    let e = validate(&doc.engine, &doc.policies).unwrap_err();
    let errs: Vec<_> =
        e.0.iter()
            .filter(|e| e.path.ends_with("payment_instructions"))
            .collect();
    assert_eq!(errs.len(), 1, "{e}");
    assert_eq!(errs[0].path, "policies.mail.payment_instructions");
    assert!(errs[0].message.contains("\"mail\""), "{}", errs[0].message);
    assert!(errs[0].message.contains("\"+7d\""), "{}", errs[0].message);

    let doc = parse(&format!(
        "[policies.mail]\npayment_instructions = \"  Bank transfer to 12-34-56 12345678  \"\n{smtp}"
    ));
    let book = PolicyBook::compile(&doc.policies).unwrap();
    let p = book.get("mail").unwrap();
    assert_eq!(
        p.payment_instructions.as_deref(),
        Some("Bank transfer to 12-34-56 12345678")
    );
    assert!(p.attach_pdf);

    let doc = parse(&format!(
        "[policies.mail]\npayment_instructions = \" \"\n{smtp}"
    ));
    assert!(
        validate(&doc.engine, &doc.policies).is_err(),
        "blank counts as missing"
    );

    // The system's own email says how to pay through the ledger's template.
    let doc = parse("[policies.quiet]\nattach_pdf = false\n[[policies.quiet.steps]]\noffset = \"+7d\"\naction = \"remind\"\n");
    let book = PolicyBook::compile(&doc.policies).unwrap();
    assert!(!book.get("quiet").unwrap().attach_pdf);
}

#[test]
fn with_smtp_the_steps_whose_words_matter_go_by_smtp_unless_the_policy_says() {
    let book = PolicyBook::built_in();
    let p = book.get("default").unwrap();
    assert_eq!(
        p.tone_steps_by_system_email(),
        ["+14d (firm)", "+30d (stop_work)", "+60d (final_notice)"]
    );
    // Without SMTP nothing changes.
    assert_eq!(
        p.channel_for("+14d", Some("firm"), Channel::Email),
        Channel::Email
    );

    let book = PolicyBook::built_in().with_smtp(true);
    let p = book.get("default").unwrap();
    for (step, template) in [
        ("+14d", "firm"),
        ("+30d", "stop_work"),
        ("+60d", "final_notice"),
        ("+60d/r2", "final_notice"),
        ("+7d", "catch_up"),
    ] {
        assert_eq!(
            p.channel_for(step, Some(template), Channel::Email),
            Channel::Smtp,
            "{step} {template}"
        );
    }
    for (step, template) in [
        ("-3d", "heads_up"),
        ("0d", "due_today"),
        ("+7d", "follow_up"),
    ] {
        assert_eq!(
            p.channel_for(step, Some(template), Channel::Email),
            Channel::Email,
            "{step} {template}"
        );
    }

    // An explicit channel on the step wins.
    let mut policy = Policy::default_policy();
    policy.steps[3].channel = Some(Channel::Email);
    let book = PolicyBook::compile(&BTreeMap::from([("default".to_string(), policy)]))
        .unwrap()
        .with_smtp(true);
    let p = book.get("default").unwrap();
    assert_eq!(p.steps[3].id, "+14d");
    assert_eq!(
        p.channel_for("+14d", Some("firm"), Channel::Email),
        Channel::Email
    );
    assert_eq!(
        p.channel_for("+30d", Some("stop_work"), Channel::Email),
        Channel::Smtp
    );
}

#[test]
fn a_reminder_on_the_fee_day_is_a_fee_notice_whose_words_matter() {
    let mut policy = Policy::default_policy();
    policy.steps.push(StepConfig {
        offset: "+30d".into(),
        action: StepAction::LateFee,
        template: None,
        channel: None,
        id: None,
    });
    policy.late_fee = Some(toml::from_str("model = \"fixed\"\namount = \"25\"\n").unwrap());
    let book = PolicyBook::compile(&BTreeMap::from([("default".to_string(), policy)]))
        .unwrap()
        .with_smtp(true);
    let p = book.get("default").unwrap();
    assert!(p.tone_matters(Some("follow_up"), Some(30)));
    assert!(!p.tone_matters(Some("follow_up"), Some(7)));
}

#[test]
fn a_policy_text_uses_the_template_files_syntax_and_unknown_names_are_caught() {
    let doc: Doc = parse(
        r#"
[policies.default.templates.custom]
subject = "Hi {{ nmae }}"
body = "Dear {customer_name}"
"#,
    );
    let errs = validate(&doc.engine, &doc.policies).unwrap_err();
    let text = errs.to_string();
    assert!(
        text.contains("policies.default.templates.custom.subject: unknown name \"nmae\""),
        "{text}"
    );
    assert!(
        text.contains("policies.default.templates.custom.body: {customer_name} is the old placeholder form: write {{ customer_name }}"),
        "{text}"
    );
    let doc: Doc = parse(
        r#"
[policies.default.templates.custom]
subject = "Invoice {{ invoice_number }}"
body = "{% if fee_notice %}{{ fee_notice }}{% endif %} {{ pay_line }}"
"#,
    );
    assert!(validate(&doc.engine, &doc.policies).is_ok());
}
