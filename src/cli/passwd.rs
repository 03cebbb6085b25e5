//! `ftpsgate passwd [--file F] USER`: reads a password (no echo on a
//! terminal) and writes USER's argon2id entry with `auth::passwd::update`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;

use ftpsgate::auth::{passwd, Secret};

/// Runs the subcommand; messages go to stderr, never the password.
pub fn run(file: &Path, user: &str) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match passwd::update(file, user, &password) {
        Ok(true) => {
            eprintln!("{}: added user {user}", file.display());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("{}: changed the password of {user}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// From the terminal (asked twice, must match) or one line of stdin.
fn read_password() -> Result<Secret, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        return Ok(Secret(first.into_bytes()));
    }
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    if line.is_empty() {
        return Err("empty password (give it as one line on stdin)".into());
    }
    Ok(Secret(line))
}
