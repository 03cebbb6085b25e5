//! The `ftpsgate` command line: `run`, `check`, `demo`, `ctl`, `completions`,
//! `self-signed`, `lab-certs`. The clap definitions, `--version`, completions and
//! man pages are in `cli.rs`; everything else lives in the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use ftpsgate::config::Config;
use ftpsgate::gateway::{Gateway, Prepared, StartError};

mod cli;

use cli::{Cli, Cmd, LogFormat};

/// Exit code for a configuration error (sysexits EX_CONFIG-like `64`).
const EXIT_CONFIG: u8 = 64;

fn init_logging(format: LogFormat) {
    ftpsgate::logging::init(match format {
        LogFormat::Text => ftpsgate::logging::Format::Text,
        LogFormat::Json => ftpsgate::logging::Format::Json,
        LogFormat::Journald => ftpsgate::logging::Format::Journald,
    });
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Idle connections must not exhaust a low soft limit; defaults derive from it.
    let nofile = ftpsgate::gateway::fds::raise_nofile();
    tracing::debug!(nofile, "file descriptor limit");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Cmd::Check { config, print } => check(&config, print),
        Cmd::LabCerts { dir } => lab_certs(&dir),
        Cmd::Run { config } => rt.block_on(run(config)),
        Cmd::Ctl {
            socket,
            json,
            command,
        } => rt.block_on(ctl(&socket, json, &command)),
        Cmd::Passwd { file, user } => cli::passwd::run(&file, &user),
        Cmd::Completions { shell } => {
            cli::completions(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Cmd::Man { page } => match cli::man_page(page, &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the man page: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::SelfSigned { dir, stem, names } => {
            match ftpsgate::demo::selfsigned::generate_for_names(&dir, &stem, &names) {
                Ok(c) => {
                    println!(
                        "wrote {} and {}",
                        c.cert_path.display(),
                        c.key_path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "demo")]
        Cmd::Demo { root, port } => rt.block_on(async move {
            match ftpsgate::demo::run(root, port).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo failed: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }),
    };
    // After a second termination signal sessions may still run: do not wait.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// `ftpsgate check`: errors one per line as `FILE:LINE:COL: key.path: message`
/// on stderr, exit 1 on any; stdout gets `FILE: ok`, or with `--print` only the
/// resolved YAML (so the output can be saved and checked again). Creates nothing.
fn check(path: &std::path::Path, print: bool) -> ExitCode {
    let top = path.display().to_string();
    let mut out = Stdout::default();
    let (loaded, tls_sections) = Config::load_for_check(path);
    let config = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {}", e.located(&top));
            }
            // Certificates and keys of the sections that were fine on their own:
            // every phase's errors in one run.
            for e in ftpsgate::gateway::check_tls_sections(&tls_sections) {
                eprintln!("error: {}", e.located(&top));
            }
            return ExitCode::from(1);
        }
    };
    // A client_auth CA or CRL that cannot be used, at its own key and line;
    // loading the listener below reports the same error at the section.
    let client_auth = ftpsgate::gateway::check_client_auth_files(&tls_sections);
    for e in &client_auth {
        eprintln!("error: {}", e.located(&top));
    }
    // TLS material (certificates, keys, CAs) is loaded by the same code `run` uses.
    if let Err(errors) = Prepared::check(&config) {
        for e in errors {
            let repeated = matches!(&e, StartError::Invalid { message, .. }
                if client_auth.iter().any(|c| &c.message == message));
            if !repeated {
                eprintln!("error: {}", located_start_error(&e, &config, &top));
            }
        }
        return ExitCode::from(1);
    }
    if !client_auth.is_empty() {
        return ExitCode::from(1);
    }
    if print {
        match Config::resolved_yaml(path) {
            Ok(yaml) => out.text(&yaml),
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("error: {}", e.located(&top));
                }
                return ExitCode::from(1);
            }
        }
        // stdout is only the YAML (so it can be saved and checked); the verdict
        // and the files it was resolved from go to stderr.
        for w in config.warnings().into_iter().chain(config.key_warnings()) {
            eprintln!("warning: {top}: {w}");
        }
        derived_limits_note(&config, &top);
        let files: Vec<String> = config
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        eprintln!("{top}: ok (resolved from {})", files.join(", "));
        return ExitCode::SUCCESS;
    }
    for w in config.warnings().into_iter().chain(config.key_warnings()) {
        eprintln!("warning: {top}: {w}");
    }
    derived_limits_note(&config, &top);
    out.line(&format!("{top}: ok"));
    ExitCode::SUCCESS
}

/// On stderr, the session caps the config leaves out and `run` would derive
/// from this process's descriptor limit (what `limits:` would have to say to
/// change them), like HAProxy's computed `maxconn`.
fn derived_limits_note(config: &Config, top: &str) {
    let nofile = ftpsgate::gateway::fds::soft_nofile();
    let derived = ftpsgate::policy::bounds::default_limits(nofile);
    let l = &config.limits;
    let unset: Vec<String> = [
        ("max_sessions", l.max_sessions, derived.max_sessions),
        (
            "max_sessions_per_ip",
            l.max_sessions_per_ip,
            derived.max_sessions_per_ip,
        ),
        (
            "max_unauthenticated_per_ip",
            l.max_unauthenticated_per_ip,
            derived.max_unauthenticated_per_ip,
        ),
    ]
    .into_iter()
    .filter(|(_, set, _)| set.is_none())
    .map(|(key, _, value)| format!("limits.{key}: {value}"))
    .collect();
    if !unset.is_empty() {
        eprintln!(
            "note: {top}: derived from the open-files limit {nofile}: {}",
            unset.join(", ")
        );
    }
}

/// A start error as `FILE:LINE:COL: key.path: message` when its key is in the
/// top file (with includes, list indexes span files, so no line is claimed).
fn located_start_error(e: &StartError, config: &Config, top: &str) -> String {
    match e {
        StartError::Invalid { path, message } => {
            let at = if config.sources.len() <= 1 {
                ftpsgate::config::position_in_file(std::path::Path::new(top), path)
            } else {
                None
            };
            match at {
                Some((line, column)) => format!("{top}:{line}:{column}: {path}: {message}"),
                None => format!("{top}: {path}: {message}"),
            }
        }
        other => format!("{top}: {other}"),
    }
}

/// `ftpsgate lab-certs DIR`.
fn lab_certs(dir: &std::path::Path) -> ExitCode {
    let mut out = Stdout::default();
    for stem in ["gateway", "backend"] {
        match ftpsgate::demo::selfsigned::generate_ca_signed(dir, stem) {
            Ok(g) => out.line(&format!(
                "{}: wrote {} (chain), {} and CA {}",
                stem,
                g.cert_path.display(),
                g.key_path.display(),
                g.ca_path.display()
            )),
            Err(e) => {
                eprintln!(
                    "error: cannot write lab certificates into {}: {e:#}",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Standard output for command results: once the reader went away (`| head`),
/// further output is dropped instead of panicking.
#[derive(Default)]
struct Stdout {
    closed: bool,
}

impl Stdout {
    fn line(&mut self, text: &str) {
        self.text(&format!("{text}\n"));
    }

    fn text(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            self.closed = true;
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` to a closed pipe panics ("failed printing
/// to stdout: Broken pipe"). Output that does not go through [`Stdout`] (the
/// demo's instructions) ends the process quietly instead, as a Unix tool would.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("Broken pipe") && text.contains("stdout") {
            std::process::exit(0);
        }
        default(info);
    }));
}

async fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            let top = path.display().to_string();
            for e in &errors.0 {
                eprintln!("error: {}", e.located(&top));
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let gw = match Gateway::start(config).await {
        Ok(g) => g,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    serve(gw, path).await
}

/// Run until SIGTERM/SIGINT: SIGHUP (and, when `reload.watch` is on, a
/// change of any config file's or TLS file's mtime) reloads; a refused reload
/// keeps the running configuration and says so in the sd_notify status.
/// Termination drains (`shutdown.grace`); a second SIGTERM/SIGINT during the
/// drain exits at once.
async fn serve(gw: Gateway, path: PathBuf) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(h), Ok(t), Ok(i)) => (h, t, i),
        _ => {
            eprintln!("error: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    // systemd Type=notify: ready once every listener is bound (no-op outside systemd).
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    let mut stamps = mtimes(&gw.watched_files());
    loop {
        let reload = gw.config().reload;
        let poll = tokio::time::sleep(reload.interval);
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", path.display());
                let _ = reload_from(&gw, &path);
                stamps = mtimes(&gw.watched_files());
            }
            _ = poll, if reload.watch => {
                let now = mtimes(&gw.watched_files());
                if now != stamps {
                    tracing::info!(
                        "configuration files changed (config, certificates or keys): reloading {}",
                        path.display()
                    );
                    let _ = reload_from(&gw, &path);
                    // After a failed reload the files stay as they are, so a
                    // broken edit is retried only when the files change again.
                    stamps = mtimes(&gw.watched_files());
                }
            }
            Some(req) = gw.control_reload() => {
                tracing::info!("control socket: reloading {}", path.display());
                req.answer(reload_from(&gw, &path));
                stamps = mtimes(&gw.watched_files());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: draining sessions (a second SIGTERM/SIGINT exits at once)");
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining"),
    ]);
    let active = gw.session_counter();
    tokio::select! {
        _ = gw.shutdown() => ExitCode::SUCCESS,
        _ = term.recv() => exit_now(active()),
        _ = int.recv() => exit_now(active()),
    }
}

/// A second termination signal: leave without waiting for the drain.
fn exit_now(sessions: usize) -> ExitCode {
    tracing::warn!(
        sessions,
        outcome = %"cut",
        "second termination signal: exiting now, cutting the remaining sessions"
    );
    ExitCode::FAILURE
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Reload, returning every error (for `ftpsgate ctl reload`).
fn reload_from(gw: &Gateway, path: &std::path::Path) -> Result<(), Vec<String>> {
    notify(&[
        sd_notify::NotifyState::Reloading,
        sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Ready),
    ]);
    // `systemctl status` shows the last one until the next reload.
    let res = reload_config(gw, path);
    let status = match &res {
        Ok(()) => "serving; configuration reloaded".to_string(),
        Err(errors) => format!(
            "serving the previous configuration; reload refused: {}",
            first_error(errors.iter().cloned())
        ),
    };
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    res
}

/// Load and apply `path`; on refusal every error (all are logged).
fn reload_config(gw: &Gateway, path: &std::path::Path) -> Result<(), Vec<String>> {
    match Config::load(path) {
        Ok(config) => gw
            .reload(config)
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect()),
        Err(errors) => {
            gw.metrics().config_reload(false);
            for e in &errors.0 {
                tracing::error!(error = %e, "reload refused; keeping the running configuration");
            }
            Err(errors.0.iter().map(|e| e.to_string()).collect())
        }
    }
}

/// `ftpsgate ctl`: one request; exit 1 when the gateway refused it, 69
/// (EX_UNAVAILABLE) when the socket cannot be reached.
async fn ctl(socket: &std::path::Path, json: bool, command: &cli::CtlCmd) -> ExitCode {
    match ftpsgate::ctl::request(socket, &command.request()).await {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", ftpsgate::ctl::render_table(&r));
            }
            if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {}: {e}", socket.display());
            ExitCode::from(69)
        }
    }
}

/// The first message, and how many more there are.
fn first_error(mut errors: impl Iterator<Item = String>) -> String {
    let first = errors.next().unwrap_or_else(|| "unknown error".into());
    match errors.count() {
        0 => first,
        n => format!("{first} (and {n} more; see the log)"),
    }
}

/// `(mtime, mtime_nsec, ctime, ctime_nsec, size, inode)` of a watched file.
type FileStamp = (i64, i64, i64, i64, u64, u64);

/// What `reload.watch` compares: per file its modification and change times
/// (to the nanosecond), size and inode, so an edit in place, a rename over the
/// file (editors, certbot, Kubernetes secrets) and a same-size rewrite all count.
fn mtimes(paths: &[PathBuf]) -> Vec<Option<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p).ok().map(|m| {
                (
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.len(),
                    m.ino(),
                )
            })
        })
        .collect()
}
