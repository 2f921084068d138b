//! The manual: generated from the clap definition (`overdued man`), installed by the
//! package from `packaging/man/` (kept equal to what the binary generates), named by
//! the unit's `Documentation=`, and listing every subcommand the binary has.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_overdued");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run overdued");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommands `overdued --help` lists.
fn subcommands() -> Vec<String> {
    let (code, help, err) = run(&["--help"]);
    assert_eq!(code, 0, "{err}");
    let list = help
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("Options:")
        .next()
        .unwrap();
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{help}");
    names
}

#[test]
fn the_man_page_lists_every_subcommand_and_renders() {
    let (code, page, err) = run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH overdued 1"),
        "{page}"
    );
    assert!(page.contains(".TH overdued 1"), "{page}");
    for sub in subcommands() {
        assert!(
            page.contains(&format!("overdued\\-{}(1)", sub.replace('-', "\\-"))),
            "overdued(1) does not list `{sub}`"
        );
    }
    for section in ["EXIT STATUS", "FILES", "ENVIRONMENT"] {
        assert!(
            page.contains(&format!(".SH \"{section}\""))
                || page.contains(&format!(".SH {section}")),
            "{section}"
        );
    }
    // Rendered as `man` would, with groff's warnings on: none.
    match Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(page.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(warnings.trim().is_empty(), "groff: {warnings}");
        }
        Err(e) => eprintln!("groff not installed ({e}); the page is not rendered here"),
    }
}

#[test]
fn the_package_installs_the_pages_the_binary_generates_and_the_unit_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = root.join("packaging/man");
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut generated: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    generated.sort();
    let mut shipped: Vec<String> = std::fs::read_dir(&installed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    let regen = "regenerate with `cargo run --bin overdued -- man --dir packaging/man` (after removing the old pages)";
    assert_eq!(shipped, generated, "packaging/man is out of date: {regen}");
    for name in &generated {
        let want = std::fs::read(dir.path().join(name)).unwrap();
        let have = std::fs::read(installed.join(name)).unwrap();
        assert!(want == have, "packaging/man/{name} is out of date: {regen}");
    }
    for sub in subcommands() {
        assert!(
            generated.contains(&format!("overdued-{sub}.1")),
            "no page for `{sub}`"
        );
    }
    // The unit points at the page the package installs.
    let unit = std::fs::read_to_string(root.join("packaging/overdued.service")).unwrap();
    assert!(unit.contains("\nDocumentation=man:overdued(1)\n"), "{unit}");
    assert!(generated.contains(&"overdued.1".to_string()));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"["packaging/man/*.1", "usr/share/man/man1/", "644"]"#),
        "the Debian package must install the pages"
    );
}
