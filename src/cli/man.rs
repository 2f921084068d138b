//! `overdued man`: the manual pages, generated from the clap definition so they can
//! never describe options the binary does not have. `overdued man` prints overdued(1);
//! `overdued man --dir DIR` writes it and one page per subcommand (overdued-plan(1),
//! ...), which the package installs (`packaging/man/`, kept equal by a test).

use std::path::Path;

use clap::CommandFactory;

use super::{exit, Cli};

/// Every page, as (file name, roff): overdued.1 first, then one per subcommand.
pub fn pages() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    let mut top = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut top)?;
    top.extend_from_slice(EXTRA.as_bytes());
    out.push(("overdued.1".to_string(), top));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let mut page = Vec::new();
        man.render(&mut page)?;
        out.push((man.get_filename(), page));
    }
    Ok(out)
}

/// What clap does not know: exit codes, files, environment, and where to read more.
const EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success (for \fBrun \-\-once\fR: the cycles ran, including when no connection is enabled).
.TP
\fB64\fR
Usage error: a bad argument, an unknown connection, invoice or customer.
.TP
\fB69\fR
A service needed is unavailable: the vendor, the SMTP server, or the running daemon's admin endpoint.
.TP
\fB70\fR
Internal error.
.TP
\fB74\fR
The state directory (the store) cannot be used.
.TP
\fB78\fR
Configuration error; the message names file:line:col and the field.
.SH FILES
.TP
\fI/etc/overdued/config.toml\fR
The configuration (see \fIconfig.example.toml\fR in the documentation).
.TP
\fI/var/lib/overdued\fR
The state directory: the store, OAuth tokens, and \fIhttp.addr\fR and \fIadmin.token\fR through which the CLI reaches the running daemon.
.SH ENVIRONMENT
.TP
\fBOVERDUED_CONFIG\fR
The config file when \fB\-\-config\fR is not given.
.TP
\fBOVERDUED_LOG\fR, \fBRUST_LOG\fR
Log filter (default \fBinfo\fR).
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

pub fn run(dir: Option<&Path>) -> u8 {
    let pages = match pages() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot render the manual: {e}");
            return exit::SOFTWARE;
        }
    };
    match dir {
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if out
                .write_all(&pages[0].1)
                .and_then(|_| out.flush())
                .is_err()
            {
                return exit::IOERR;
            }
            0
        }
        Some(dir) => {
            for (name, page) in &pages {
                let p = dir.join(name);
                if let Err(e) = std::fs::write(&p, page) {
                    eprintln!("error: writing {}: {e}", p.display());
                    return exit::IOERR;
                }
            }
            println!("{} pages written to {}", pages.len(), dir.display());
            0
        }
    }
}
