//! epygibus: a backup tool for NAS shares and USB drives.
//!
//! Two parts that know little of each other: the content repository
//! ([`content`]), which stores each distinct file content once under its
//! hash, and snapshot archives ([`snapshot`]), which describe backed-up
//! trees and reach content only through the repository's interface.

pub mod cli;
pub mod clock;
pub mod config;
pub mod content;
pub mod crypt;
pub mod fsio;
#[cfg(feature = "gui")]
pub mod gui;
pub mod legacy;
pub mod mount;
pub mod ops;
pub mod pool;
pub mod progress;
pub mod setup;
pub mod snapshot;
pub mod store;
