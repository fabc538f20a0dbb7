//! Reading every snapshot of some snapshot directories to count the
//! references they make, for `check`.

use std::collections::HashMap;

use super::format;
use crate::content::ContentToken;
use crate::store::Store;

/// References found in snapshot directories, and what could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Token → number of file entries using it, over all snapshots read.
    pub refs: HashMap<ContentToken, u64>,
    pub snapshots: u64,
    /// Snapshot files that could not be decoded (with the error).
    pub unreadable: Vec<String>,
    /// Directories that could not be listed, with why.
    pub unreachable: Vec<String>,
}

impl Scan {
    /// True when every snapshot of every directory was read.
    pub fn complete(&self) -> bool {
        self.unreadable.is_empty() && self.unreachable.is_empty()
    }
}

/// Reads every snapshot in `dirs`.
pub fn scan(dirs: &[&dyn Store]) -> Scan {
    let mut scan = Scan::default();
    for &dir in dirs {
        let names = match format::list_snapshots(dir) {
            Ok(n) => n,
            Err(e) => {
                scan.unreachable.push(format!(
                    "snapshot directory {} cannot be read ({})",
                    dir.location(),
                    e
                ));
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
