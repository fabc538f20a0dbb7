//! Reading every snapshot of some snapshot directories to count the
//! references they make, for `check`.

use std::collections::HashMap;

use super::format::{self, SnapshotError, SnapshotName};
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
    /// The unreadable snapshots whose bytes are damaged (not those that
    /// failed to be read at all, e.g. on an I/O error): what
    /// `check --repair` sets aside.
    pub damaged: Vec<Damaged>,
}

/// A snapshot file that was read but does not decode.
#[derive(Clone, Debug)]
pub struct Damaged {
    /// Which of the scanned directories holds it.
    pub dir: usize,
    pub name: SnapshotName,
    /// Its entry in [`Scan::unreadable`].
    pub message: String,
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
    for (index, &dir) in dirs.iter().enumerate() {
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
                Err(e) => {
                    let message = e.to_string();
                    if matches!(e, SnapshotError::Corrupt { .. }) {
                        scan.damaged.push(Damaged {
                            dir: index,
                            name,
                            message: message.clone(),
                        });
                    }
                    scan.unreadable.push(message);
                }
            }
        }
    }
    scan
}
