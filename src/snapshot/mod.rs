//! Snapshot archives: per archive, a series of snapshot files each
//! describing a whole backed-up tree. Content is reached only through
//! [`crate::content::Repository`]; this module never builds a path to a
//! content file.

pub mod change;
pub mod copy;
pub mod damaged;
pub mod diff;
pub mod exclude;
pub mod find;
pub mod forget;
pub mod format;
pub mod generate;
pub mod history;
pub mod live;
pub mod lookup;
pub mod model;
#[cfg(test)]
mod restic_compare;
pub mod restore;
pub mod retrieve;
pub mod scan;
pub mod spec;
#[cfg(test)]
mod testtree;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use crate::clock::now_nanos;
use crate::config::ArchiveSpec;
use crate::content::{ContentError, ContentToken, Repository, SessionCounters};
use crate::fsio;
use crate::progress::Progress;
use crate::store::{Location, Store};
use exclude::{BadGlob, Excludes};
use format::{BuildStats, Header, RepoRef, Snapshot, SnapshotError, SnapshotName};
use generate::{BackupPlan, Problem};

/// Errors of archive operations.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Glob(#[from] BadGlob),
    #[error("archive has no snapshots in {0}")]
    NoSnapshots(Location),
    #[error(
        "--back {back} is out of range: the archive has {count} snapshot(s), so use 0..{max} (newest first) or -1..-{count} (oldest first)",
        max = .count.saturating_sub(1)
    )]
    BackOutOfRange { back: i64, count: usize },
    #[error(
        "refusing to delete the only snapshot of the archive; add --remove-last-ok to delete it anyway"
    )]
    OnlySnapshot,
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// Picks a snapshot: `back` ≥ 0 counts from the newest (0 = newest),
/// negative counts from the oldest (-1 = oldest).
pub fn select(names: &[SnapshotName], back: i64, dir: &Location) -> Result<SnapshotName> {
    if names.is_empty() {
        return Err(ArchiveError::NoSnapshots(dir.clone()));
    }
    let count = names.len();
    let index = if back >= 0 {
        (count as i64 - 1).checked_sub(back)
    } else {
        back.checked_neg().map(|b| b - 1)
    };
    match index {
        Some(i) if (0..count as i64).contains(&i) => Ok(names[i as usize]),
        _ => Err(ArchiveError::BackOutOfRange { back, count }),
    }
}

/// Options of one backup run.
#[derive(Clone, Copy, Debug)]
pub struct BackupOptions {
    pub compress: bool,
    pub force_read: bool,
    /// Record the snapshot as taken at this time (`bu --time`) instead of
    /// now. Change detection still uses the real clock.
    pub time: Option<forget::BackupTime>,
}

/// What a backup did.
pub struct BackupReport {
    pub name: SnapshotName,
    pub header: Header,
    pub problems: Vec<Problem>,
    /// Why the previous snapshot could not be used for change detection.
    pub previous_unusable: Option<String>,
    pub size_on_disk: u64,
    /// Things the caller should tell (the run succeeded).
    pub warnings: Vec<String>,
}

/// Takes a snapshot of the archive into `snapshots`. Content is stored and
/// its counts made durable before the snapshot file is written (counts
/// before snapshots), so a crash leaves counts too high, never too low; a
/// failed or cancelled backup gives its references back.
pub fn backup(
    spec: &ArchiveSpec,
    snapshots: &dyn Store,
    repo: &Repository,
    options: BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let began = Instant::now();
    let started_ns = now_nanos() as i64;
    let excludes = Excludes::new(&spec.excluded_dirs, &spec.excluded_files)?;
    let existing = format::list_snapshots(snapshots)?;
    let (previous, previous_unusable) = match existing.last() {
        Some(name) => match format::read_snapshot(snapshots, name) {
            Ok(s) if s.header.salvaged_from.is_some() => (
                None,
                Some(format!(
                    "snapshot {} was salvaged from a damaged one and may lack entries",
                    name.stamp()
                )),
            ),
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    let plan = BackupPlan {
        includes: &spec.includes,
        excludes: &excludes,
        keep_broken_soft_links: spec.keep_broken_soft_links,
        compare_inodes: spec.compare_inodes,
        force_read: options.force_read,
        skip_dirs: [repo.location(), snapshots.location()]
            .iter()
            .filter_map(|l| l.as_dir().map(Path::to_owned))
            .collect(),
    };
    let prev = previous.as_ref().map(|s| (&s.root, s.header.started_ns));
    let session = repo.begin_backup();
    let built = generate::build_tree(&session, &plan, prev, progress);
    progress.finish();
    // Dropping the session on any error below gives its references back.
    let built = built?;
    drop(previous);
    let write_began = Instant::now();
    let counted = session.commit_counts()?;
    let c = counted.counters();
    let skipped = built
        .problems
        .iter()
        .filter(|p| p.kind != generate::ProblemKind::BrokenLink)
        .count() as u64;
    let mut header = Header {
        archive: spec.name.to_string(),
        host: fsio::host_name(),
        user: fsio::user_name(),
        started_ns,
        finished_ns: 0,
        repo: repo_ref(spec, snapshots.location(), repo),
        includes: spec
            .includes
            .iter()
            .map(|p| serde_bytes::ByteBuf::from(path_bytes(p)))
            .collect(),
        roots: built
            .roots
            .iter()
            .map(|p| serde_bytes::ByteBuf::from(path_bytes(p)))
            .collect(),
        stats: BuildStats {
            counts: built.root.counts(),
            new_items: SessionCounters::get(&c.new_items),
            new_content_bytes: SessionCounters::get(&c.new_content_bytes),
            new_stored_bytes: SessionCounters::get(&c.new_stored_bytes),
            files_read: built.files_read,
            skipped,
            walk_secs: built.walk_secs,
            store_secs: built.store_secs,
            write_secs: 0.0,
            elapsed_secs: 0.0,
        },
        utc_offset: Some(match options.time {
            Some(t) => t.offset,
            None => forget::local_offset(started_ns.div_euclid(1_000_000_000)),
        }),
        time_ns: options.time.map(|t| t.unix.saturating_mul(1_000_000_000)),
        salvaged_from: None,
    };
    header.finished_ns = now_nanos() as i64;
    header.stats.write_secs = write_began.elapsed().as_secs_f64();
    header.stats.elapsed_secs = began.elapsed().as_secs_f64();
    let snapshot = Snapshot {
        header,
        root: built.root,
    };
    let name = match format::write_snapshot(snapshots, &snapshot, options.compress) {
        Ok(name) => name,
        Err(e) => {
            // The file may be in place although its write reported an
            // error (a directory sync failing after the rename): then, or
            // when that cannot be told, the references must stay (too high
            // is safe, too low is not).
            let more = format::list_snapshots(snapshots).map_or(true, |n| n.len() > existing.len());
            if more {
                let _ = counted.snapshot_written();
            }
            return Err(e.into());
        }
    };
    counted.snapshot_written()?;
    Ok(BackupReport {
        name,
        size_on_disk: format::file_size(snapshots, &name),
        header: snapshot.header,
        problems: built.problems,
        previous_unusable,
        warnings: Vec::new(),
    })
}

fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// Where the repository is, absolutely and relative to the snapshot
/// directory (for the rescue when the configuration is lost).
pub fn repo_ref(spec: &ArchiveSpec, snapshots: &Location, repo: &Repository) -> RepoRef {
    RepoRef {
        name: spec.repo.to_string(),
        path: repo.location().to_bytes(),
        relative: Location::relative(snapshots, repo.location())
            .map_or_else(Vec::new, |r| path_bytes(&r)),
    }
}

/// What deleting a snapshot released.
pub struct DeleteReport {
    pub name: SnapshotName,
    pub released: usize,
}

/// Deletes one snapshot: the file goes first (durably), then its
/// references are released and the lower counts saved (counts are never
/// lower than the snapshots that use them).
pub fn delete(
    snapshots: &dyn Store,
    repo: &Repository,
    name: &SnapshotName,
) -> Result<DeleteReport> {
    let snapshot = format::read_snapshot(snapshots, name)?;
    let tokens = snapshot.root.tokens();
    format::remove_snapshot(snapshots, name)?;
    repo.release_contents(&tokens);
    repo.commit()?;
    Ok(DeleteReport {
        name: *name,
        released: tokens.len(),
    })
}

/// What deleting several snapshots did.
#[derive(Default)]
pub struct DeleteMany {
    pub deleted: Vec<DeleteReport>,
    /// Snapshots left in place because they could not be read (their
    /// references cannot be released), with why.
    pub unreadable: Vec<(SnapshotName, SnapshotError)>,
}

/// Deletes snapshots in the order given, as [`delete`] does one, but with
/// one barrier and one index save for all: every file is removed, then
/// the barrier makes the removals durable, and only then are the lower
/// counts saved (a crash in between leaves counts too high, never too
/// low). Each snapshot is read just before its file goes, and its
/// references are dropped from the in-memory counts at once, so only one
/// tree is held at a time. A snapshot that cannot be read is left in
/// place and reported. On an error, the removals so far are still made
/// durable and their releases saved (best effort) before it is returned.
pub fn delete_many(
    snapshots: &dyn Store,
    repo: &Repository,
    names: &[SnapshotName],
    each: &mut dyn FnMut(&DeleteReport),
) -> Result<DeleteMany> {
    let mut out = DeleteMany::default();
    let mut failed = None;
    for name in names {
        let tokens = match format::read_snapshot(snapshots, name) {
            Ok(s) => s.root.tokens(),
            Err(e) => {
                out.unreadable.push((*name, e));
                continue;
            }
        };
        if let Err(e) = format::remove_snapshot_files(snapshots, name) {
            failed = Some(e);
            break;
        }
        repo.release_contents(&tokens);
        let report = DeleteReport {
            name: *name,
            released: tokens.len(),
        };
        each(&report);
        out.deleted.push(report);
    }
    if out.deleted.is_empty() {
        return match failed {
            Some(e) => Err(e.into()),
            None => Ok(out),
        };
    }
    // The releases are in memory only; they are saved only after the
    // removals are durable.
    snapshots.barrier().map_err(SnapshotError::from)?;
    repo.commit()?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// Storage statistics of one snapshot (`lss --storage_stats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageStats {
    /// Size of the snapshot file.
    pub occupies: u64,
    pub files: u64,
    pub links: u64,
    /// Bytes of content the snapshot describes.
    pub holds: u64,
    /// Distinct content items it uses.
    pub content_items: u64,
    /// Stored bytes of those items.
    pub stored_bytes: u64,
    /// Its share of the stored bytes: each item's stored size divided
    /// among all references to it.
    pub share: f64,
}

pub fn storage_stats(
    dir: &dyn Store,
    name: &SnapshotName,
    repo: &Repository,
) -> Result<StorageStats> {
    let snapshot = format::read_snapshot(dir, name)?;
    let counts = snapshot.root.counts();
    let mut stats = StorageStats {
        occupies: format::file_size(dir, name),
        files: counts.files,
        links: counts.links,
        holds: counts.content_bytes,
        ..StorageStats::default()
    };
    let mut seen: HashSet<ContentToken> = HashSet::new();
    for token in snapshot.root.tokens() {
        let Some((stored, refs)) = repo.content_storage_stats(&token) else {
            continue;
        };
        if seen.insert(token) {
            stats.content_items += 1;
            stats.stored_bytes += stored;
        }
        stats.share += stored as f64 / refs.max(1) as f64;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn names(n: usize) -> Vec<SnapshotName> {
        (0..n as i64)
            .map(|secs| SnapshotName {
                secs,
                compressed: false,
            })
            .collect()
    }

    #[test]
    fn back_selects_from_either_end() {
        let n = names(3);
        let d = &Location::Dir(PathBuf::from("/d"));
        assert_eq!(select(&n, 0, d).unwrap().secs, 2);
        assert_eq!(select(&n, 2, d).unwrap().secs, 0);
        assert_eq!(select(&n, -1, d).unwrap().secs, 0);
        assert_eq!(select(&n, -3, d).unwrap().secs, 2);
        for bad in [3, -4, i64::MAX, i64::MIN] {
            assert!(matches!(
                select(&n, bad, d),
                Err(ArchiveError::BackOutOfRange { .. })
            ));
        }
        assert!(matches!(
            select(&[], 0, d),
            Err(ArchiveError::NoSnapshots(_))
        ));
    }
}
