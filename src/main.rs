//! The `mprm` command: parse, run, report. All logic lives in the library.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::main()
}
