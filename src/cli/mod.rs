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
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}
