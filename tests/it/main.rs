//! The integration tests: one test binary (`cargo test --test it`), one
//! module per area, all on the shared [`world`] (isolated temp dirs, the
//! real binary, data generators, tree listings, the rigs, and the only
//! uses of the epygibus library in `world::lib_api`).
//! `cargo test --test it rigs::` runs one module.

#[macro_use]
mod world;

mod attach;
mod backup_cli;
mod browse;
mod concurrency;
mod crash;
mod crypt;
mod damaged;
mod forget_cli;
#[cfg(feature = "gui")]
mod gui;
mod house;
mod import;
mod import_written;
mod mount;
mod packs;
mod repo_cli;
mod restore_cli;
mod rigs;
mod s3;
mod schedule;
mod source_trouble;
mod ux_cli;
