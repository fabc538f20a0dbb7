//! `find` and `history`: searching every snapshot of one or more archives
//! for entries matching globs, and the distinct versions of one path. One
//! snapshot is decoded at a time (two on two cores) and dropped after use,
//! so memory stays that of one tree. A snapshot that cannot be read is
//! reported with its error and the others are searched all the same.

use std::path::PathBuf;

use rayon::prelude::*;

use super::source::{Source, SourceSpec, archive};
use super::{Context, OpError, Result};
use crate::snapshot::ArchiveError;
use crate::snapshot::find::{Match, Patterns, TimeRange, find};
use crate::snapshot::format::{self, SnapshotName};
use crate::snapshot::history::{History, Version};
use crate::snapshot::lookup::node_at;
use crate::snapshot::model::DirNode;
use crate::snapshot::retrieve;

/// Which archives `find` searches, and for what.
#[derive(Clone, Debug)]
pub struct FindRequest {
    /// Archive names; ignored with `all`.
    pub archives: Vec<String>,
    /// Every configured archive.
    pub all: bool,
    /// Globs with the exclude rules (no `/`: a name at any depth).
    pub patterns: Vec<String>,
    /// Only entries whose mtime lies in this range.
    pub mtime: TimeRange,
}

/// One snapshot searched.
pub struct SnapshotHits {
    pub snapshot: SnapshotName,
    /// The matches in tree order, or why the snapshot could not be read.
    pub result: std::result::Result<Vec<Match>, String>,
}

/// One archive searched.
pub struct ArchiveHits {
    pub archive: String,
    /// Oldest first; every snapshot, with or without matches.
    pub snapshots: Vec<SnapshotHits>,
}

impl ArchiveHits {
    /// Snapshots that could not be read.
    pub fn damaged(&self) -> impl Iterator<Item = (&SnapshotName, &str)> {
        self.snapshots
            .iter()
            .filter_map(|s| s.result.as_ref().err().map(|e| (&s.snapshot, e.as_str())))
    }
}

/// Searches every snapshot of the archives. Bad globs and unknown
/// archives are errors before anything is read; a damaged snapshot is
/// only reported in its [`SnapshotHits`].
pub fn find_entries(ctx: &Context, req: &FindRequest) -> Result<Vec<ArchiveHits>> {
    let patterns = Patterns::new(&req.patterns).map_err(ArchiveError::from)?;
    let names: Vec<String> = if req.all {
        ctx.config
            .archive_names()?
            .into_iter()
            .map(|n| n.to_string())
            .collect()
    } else {
        req.archives.clone()
    };
    if names.is_empty() {
        return Err(OpError::Invalid(
            "no archives to search: name some with -A, or use --all once `epygibus new` has made one".into(),
        ));
    }
    // Resolve every archive first: a typo fails before any work.
    let archives = names
        .iter()
        .map(|n| archive(ctx, n).map(|a| (n.clone(), a)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(archives.len());
    for (name, a) in archives {
        let store = a.snapshots.as_ref();
        let listed = a.list()?;
        let snapshots = listed
            .par_iter()
            .with_max_len(1)
            .map(|snap| SnapshotHits {
                snapshot: *snap,
                result: format::read_snapshot(store, snap)
                    .map(|s| find(&s.root, &patterns, &req.mtime))
                    .map_err(|e| e.to_string()),
            })
            .collect();
        out.push(ArchiveHits {
            archive: name,
            snapshots,
        });
    }
    Ok(out)
}

/// A snapshot in a history: its name and its `--back` number now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    pub name: SnapshotName,
    /// Counted from the newest (0 = newest), as `extract --back` takes it.
    pub back: i64,
}

/// The versions of one path.
pub struct HistoryOutcome {
    /// The absolute path.
    pub path: PathBuf,
    /// How many snapshots were looked at.
    pub snapshots: usize,
    /// Oldest first.
    pub versions: Vec<Version<SnapshotRef>>,
    /// Snapshots that could not be read (each ends a run of a version, as
    /// it cannot be said to hold it).
    pub damaged: Vec<(SnapshotName, String)>,
}

/// Every distinct version of `path` across the snapshots of `source`.
pub fn history(
    ctx: &Context,
    source: &SourceSpec,
    path: &std::path::Path,
) -> Result<HistoryOutcome> {
    let source = Source::resolve(ctx, source)?;
    let names = source.snapshots()?;
    let path = retrieve::absolute(path);
    let count = names.len();
    let mut h = History::new(&path);
    let mut damaged = Vec::new();
    let mut seen = false;
    let empty = DirNode::default();
    // Decode two at a time (in order), feeding them oldest first.
    for pair in names.chunks(2) {
        let decoded: Vec<_> = pair
            .par_iter()
            .map(|n| format::read_snapshot(source.snapshots.as_ref(), n))
            .collect();
        for (name, snap) in pair.iter().zip(decoded) {
            let index = names.iter().position(|n| n == name).unwrap_or(0);
            let at = SnapshotRef {
                name: *name,
                back: (count - 1 - index) as i64,
            };
            match snap {
                Ok(s) => {
                    seen |= node_at(&s.root, &path).is_some();
                    h.push(at, &s.root);
                }
                Err(e) => {
                    damaged.push((*name, e.to_string()));
                    h.push(at, &empty);
                }
            }
        }
    }
    if count == 0 {
        return Err(ArchiveError::NoSnapshots(source.snapshots.location().clone()).into());
    }
    if !seen {
        let unread = if damaged.is_empty() {
            String::new()
        } else {
            format!(" ({} could not be read)", damaged.len())
        };
        return Err(OpError::Invalid(format!(
            "{} is in none of the {count} snapshot(s) of {}{unread}; `epygibus find` searches by name",
            path.display(),
            source.snapshots.location()
        )));
    }
    Ok(HistoryOutcome {
        path,
        snapshots: count,
        versions: h.finish(),
        damaged,
    })
}
