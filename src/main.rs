//! The `sitefs` command line: argument parsing and printing only; every
//! decision lives in the library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
