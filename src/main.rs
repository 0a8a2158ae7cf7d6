//! The `mprm` command: parse, run, report. All logic lives in the library.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    mprm::alloc::keep_freed_memory();
    cli::main()
}
