//! The integration tests: one test binary (`cargo test --test it`), one
//! module per area.

#[macro_use]
mod rigs_common;
mod common;

mod backup_cli;
mod concurrency;
mod crash;
mod repo_cli;
mod restore_cli;
mod rigs;
mod source_trouble;
mod ux_cli;
