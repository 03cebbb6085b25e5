//! The `ftpsgate` command line: `run`, `check`, `demo`, `ctl`, `completions`,
//! `self-signed`. The clap definitions, `--version`, completions and man pages
//! are in `cli.rs`; everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use ftpsgate::config::Config;
use ftpsgate::gateway::{Gateway, Prepared};

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
        Cmd::Run { config } => rt.block_on(run(config)),
        Cmd::Ctl {
            socket,
            json,
            command,
        } => rt.block_on(ctl(&socket, json, &command)),
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

fn check(path: &std::path::Path, print: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return ExitCode::from(1);
        }
    };
    for w in config.warnings().into_iter().chain(config.key_warnings()) {
        eprintln!("warning: {w}");
    }
    if print {
        // As `run` would apply it: unset session caps derived from the fd limit.
        let nofile = ftpsgate::gateway::fds::soft_nofile();
        println!("# file descriptor limit: {nofile}");
        println!(
            "{:#?}",
            ftpsgate::gateway::fds::with_default_limits(&config, nofile)
        );
    }
    match Prepared::check(&config) {
        Ok(()) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
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

fn mtimes(paths: &[PathBuf]) -> Vec<Option<std::time::SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}
