//! Command-line front end: clap structs in [`args`], one function per subcommand in
//! [`commands`]. Nothing here computes anything the library does not already expose.

pub mod args;
pub mod commands;

use std::process::ExitCode;

use clap::Parser;

/// Exit status when a command ran but its check failed (e.g. `verify` found a mismatch).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status for any error.
pub const EXIT_ERROR: u8 = 2;

/// Parses the command line, runs the subcommand, prints the error chain once.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprint!("{}", error_text(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its chain of causes, one line each; a cause whose text the lines above already
/// hold (an I/O error's reason, which [`mprm::Error::Io`] prints after the path) is left out.
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("error: {err}\n");
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(&format!("  caused by: {line}\n"));
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn an_io_reason_is_printed_once() {
        let err = mprm::Error::io(
            "missing.jsonl",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(error_text(&err), "error: missing.jsonl: entity not found\n");
    }
}
