//! Reading every snapshot of some snapshot directories to count the
//! references they make, for `check`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::format;
use crate::content::ContentToken;

/// References found in snapshot directories, and what could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Token → number of file entries using it, over all snapshots read.
    pub refs: HashMap<ContentToken, u64>,
    pub snapshots: u64,
    /// Snapshot files that could not be decoded (with the error).
    pub unreadable: Vec<String>,
    /// Directories that could not be listed.
    pub unreachable: Vec<PathBuf>,
}

impl Scan {
    /// True when every snapshot of every directory was read.
    pub fn complete(&self) -> bool {
        self.unreadable.is_empty() && self.unreachable.is_empty()
    }
}

/// Reads every snapshot in `dirs`.
pub fn scan(dirs: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    for dir in dirs {
        let names = match format::list_snapshots(dir) {
            Ok(n) => n,
            Err(_) => {
                scan.unreachable.push(dir.clone());
                continue;
            }
        };
        for name in names {
            match format::read_snapshot(dir, &name) {
                Ok(snapshot) => {
                    scan.snapshots += 1;
                    for token in snapshot.root.tokens() {
                        *scan.refs.entry(token).or_default() += 1;
                    }
                }
                Err(e) => scan.unreadable.push(e.to_string()),
            }
        }
    }
    scan
}
