//! The `epygibus` command: parse, run, report. All work is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    epygibus::cli::main()
}
