//! The command line's definitions (clap) and what is generated from them: the
//! `--version` text, shell completions and the two man pages. `main.rs` only
//! dispatches; a new subcommand or flag goes here, and the man page and
//! completions follow without further work.
//!
//! `ftpsgate.yaml(5)` is rendered from `policies/example.yaml` itself
//! ([`config_page`]), so the page and the example cannot drift apart.

mod config_page;
pub mod passwd;

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// The TLS stack compiled in (Cargo.toml: rustls 0.23 with the `ring` feature;
/// no other provider is enabled, so this is the one in use).
const TLS_PROVIDER: &str = "rustls 0.23, ring crypto provider";

/// `--version`: version, git commit (when built from a checkout) and TLS stack.
fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let commit = match env!("FTPSGATE_GIT_COMMIT") {
            "" => "no git commit recorded".to_owned(),
            c => format!("git {c}"),
        };
        let features = if cfg!(feature = "demo") {
            "features: demo"
        } else {
            "features: none"
        };
        format!(
            "{} ({commit}; TLS: {TLS_PROVIDER}; {features})",
            env!("CARGO_PKG_VERSION")
        )
    })
}

#[derive(Parser)]
#[command(
    name = "ftpsgate",
    version = version(),
    about = "FTPS-aware application-level gateway",
    long_about = "FTPS-aware application-level gateway: terminates TLS from FTP clients, \
                  rewrites the control dialogue and relays each data transfer through a \
                  one-shot pinhole to (often legacy) FTP/FTPS backends. The configuration \
                  format is described in ftpsgate.yaml(5)."
)]
pub struct Cli {
    /// Log format (logs go to stderr; RUST_LOG=ftpsgate=debug for per-command logs).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable; colour only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
    /// Text with syslog priority prefixes for journald (`journalctl -p warning`).
    Journald,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the gateway.
    Run {
        /// Configuration file (ftpsgate.yaml(5)).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config (certificates included); exit 1 on errors. Every error
    /// is one line `FILE:LINE:COL: key.path: message`.
    Check {
        /// Configuration file (ftpsgate.yaml(5)).
        #[arg(long, short)]
        config: PathBuf,
        /// Also print the resolved config as YAML that `check` accepts again
        /// (includes merged in, file paths made absolute).
        #[arg(long)]
        print: bool,
    },
    /// Write a lab CA with a gateway and a backend certificate into DIR
    /// (`gateway.pem`/`.key`, `gateway-ca.pem`, `backend.pem`/`.key`,
    /// `backend-ca.pem`): what the shipped example policies reference. Not for
    /// production.
    LabCerts {
        /// Directory to write into (created if missing; files are overwritten).
        dir: PathBuf,
    },
    /// Self-contained demo: in-process plain FTP backend, generated
    /// certificate, explicit and implicit FTPS listeners on 127.0.0.1.
    #[cfg(feature = "demo")]
    Demo {
        /// Serve this directory instead of a seeded temp dir.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Explicit FTPS port (implicit uses the next one); 0 = any free port.
        #[arg(long, default_value_t = 2121)]
        port: u16,
    },
    /// Talk to a running gateway over its control socket (`control.socket`).
    Ctl {
        /// The control socket.
        #[arg(long, default_value = "/run/ftpsgate/control.sock")]
        socket: PathBuf,
        /// Print the answer as JSON (one object) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: CtlCmd,
    },
    /// Set USER's password in a password file (`auth.providers[].passwd_file`):
    /// an argon2id hash with a random salt, replacing USER's line or adding
    /// one. The password is read from the terminal without echo (asked
    /// twice), or as one line from stdin when stdin is not a terminal.
    /// The gateway reads the file at start and reload.
    Passwd {
        /// The password file (created with mode 0600 if missing).
        #[arg(long, short, default_value = "/etc/ftpsgate/passwd")]
        file: PathBuf,
        /// The user name (no ':', whitespace or control characters).
        user: String,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// bash, zsh or fish.
        shell: CompletionShell,
    },
    /// Write a self-signed certificate and key (DIR/STEM.pem, DIR/STEM.key,
    /// ECDSA P-256) to start with; never replaces existing files.
    SelfSigned {
        /// Directory to write to (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// File name stem.
        #[arg(long, default_value = "gateway")]
        stem: String,
        /// Host name or IP address for the certificate (repeatable).
        #[arg(long = "name", default_value = "localhost")]
        names: Vec<String>,
    },
    /// Print a man page (roff) to stdout; used by the packaging script.
    #[command(hide = true)]
    Man {
        /// Which page.
        page: ManPage,
    },
}

/// `ftpsgate ctl …` requests.
#[derive(Subcommand)]
pub enum CtlCmd {
    /// List running sessions (id, user, certificate identity, auth, client,
    /// listener, backend, state, bytes, age).
    Sessions,
    /// End a session: the client gets 421.
    Kill {
        /// Session id (from `sessions`).
        id: u64,
    },
    /// Take a backend out of rotation (disable, drain) or back in (enable).
    Backend {
        action: ftpsgate::ctl::BackendAction,
        /// Backend name (`backends[].name`).
        name: String,
    },
    /// List pinholes waiting for their data connection.
    Pinholes,
    /// Reload the configuration as SIGHUP does; prints the errors if refused.
    Reload,
}

impl CtlCmd {
    pub fn request(&self) -> ftpsgate::ctl::Request {
        use ftpsgate::ctl::Request;
        match self {
            CtlCmd::Sessions => Request::Sessions,
            CtlCmd::Kill { id } => Request::Kill { id: *id },
            CtlCmd::Backend { action, name } => Request::Backend {
                action: *action,
                name: name.clone(),
            },
            CtlCmd::Pinholes => Request::Pinholes,
            CtlCmd::Reload => Request::Reload,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ManPage {
    /// ftpsgate(1), the command line.
    #[value(name = "ftpsgate.1")]
    Command,
    /// ftpsgate.yaml(5), the configuration format.
    #[value(name = "ftpsgate.yaml.5")]
    Config,
}

/// Writes the completion script for `shell`.
pub fn completions(shell: CompletionShell, out: &mut dyn Write) {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "ftpsgate", out);
}

/// Writes the man page `page` as roff.
pub fn man_page(page: ManPage, out: &mut dyn Write) -> std::io::Result<()> {
    match page {
        ManPage::Command => command_page(out),
        ManPage::Config => out.write_all(config_page::render(version()).as_bytes()),
    }
}

/// ftpsgate(1): clap_mangen's sections plus FILES, EXIT STATUS, SIGNALS.
fn command_page(out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command()).manual("ftpsgate manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.write_all(COMMAND_PAGE_EXTRA.as_bytes())?;
    man.render_version_section(out)
}

/// Hand-written sections of ftpsgate(1) (roff).
const COMMAND_PAGE_EXTRA: &str = r#".SH "EXIT STATUS"
\fBcheck\fR exits 0 for a valid configuration and 1 listing every error with its
file, line and key path. \fBrun\fR exits 64 when the configuration does not
load, 0 after a drain.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reload the configuration and certificates and reopen the transfer log; a
configuration that does not check clean is refused and the running one stays.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop accepting, let running transfers finish for \fBshutdown.grace\fR, exit 0.
.SH FILES
.TP
\fI/etc/ftpsgate/ftpsgate.yaml\fR
The configuration of the packaged service (ftpsgate.service).
.TP
\fI/etc/ftpsgate/tls/\fR
Certificate and key; the package creates a self-signed pair here when none exists.
.TP
\fI/var/log/ftpsgate/xferlog\fR
Transfer log when \fBtransfer_log\fR is configured; rotated by logrotate.
.TP
\fI/run/ftpsgate/control.sock\fR
Control socket for \fBftpsgate ctl\fR when \fBcontrol.socket\fR names it (the default of \fB--socket\fR).
.TP
\fI/usr/share/doc/ftpsgate/examples/example.yaml\fR
Every configuration key with its default.
.SH "SEE ALSO"
\fBftpsgate.yaml\fR(5), \fBsystemctl\fR(1), \fBxferlog\fR(5)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_commit_state_and_tls_provider() {
        let v = version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(v.contains("rustls") && v.contains("ring"), "{v}");
        assert!(v.contains("git ") || v.contains("no git commit"), "{v}");
    }
}
