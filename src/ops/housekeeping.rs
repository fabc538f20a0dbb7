//! Repository and archive housekeeping: prune, compress, delete, unlock.

use std::time::Duration;

use super::source::archive;
use super::{Context, OpError, Result, store_at};
use crate::config::Name;
use crate::content::{
    CompressReport, LockHolder, PackReport, PruneReport, PruneRules, Repository, StoredForm,
};
use crate::snapshot::format::{self, SnapshotError, SnapshotName};
use crate::snapshot::{self, ArchiveError, DeleteReport, damaged, scan};
use crate::store::{Location, SharedStore};

/// How long unreferenced content of a repository shared by several
/// machines is kept before prune removes it: a backup running elsewhere
/// may be about to use it, and no lock holds it off over a network share.
pub const SHARED_MIN_AGE: Duration = Duration::from_secs(3600);

/// The snapshot directories registered in a repository, as stores: a
/// registration's path relative to the repository when it exists there
/// (the disk may be mounted elsewhere now), else its absolute path.
/// Registrations that cannot be read are returned as messages.
pub struct Registered {
    pub stores: Vec<SharedStore>,
    pub unreadable: Vec<String>,
    /// Some registered archive belongs to another host.
    pub shared: bool,
}

pub fn registered(repo: &Repository) -> Result<Registered> {
    let host = crate::fsio::host_name();
    let mut out = Registered {
        stores: Vec::new(),
        unreadable: Vec::new(),
        shared: false,
    };
    for reg in repo.registrations()? {
        let reg = match reg {
            Ok(r) => r,
            Err(why) => {
                out.unreadable.push(why);
                continue;
            }
        };
        out.shared |= reg.is_other_host(&host);
        match registered_location(repo.location(), &reg) {
            // An encrypted repository's archives keep sealed snapshots.
            Ok(location) => out.stores.push(crate::store::sealed::seal_if(
                store_at(&location),
                repo.key(),
            )),
            Err(why) => out.unreadable.push(why),
        }
    }
    Ok(out)
}

/// Where a registered snapshot directory is now: relative to the
/// repository when it is there (the disk may be mounted elsewhere, the
/// prefix copied to another bucket), else where it was registered.
fn registered_location(
    repo: &Location,
    reg: &crate::content::Registration,
) -> std::result::Result<Location, String> {
    let absolute = Location::parse(std::ffi::OsStr::new(&reg.snapshot_dir)).map_err(|e| {
        format!(
            "archive registration {} names no usable snapshot directory: {e}",
            reg.id
        )
    })?;
    let Some(relative) = &reg.relative else {
        return Ok(absolute);
    };
    let found = match repo {
        Location::Dir(d) => {
            let there = crate::fsio::clean_path(&d.join(relative));
            there.is_dir().then_some(Location::Dir(there))
        }
        Location::S3(_) => {
            let there = repo.join(relative);
            store_at(&there)
                .list("")
                .is_ok_and(|objects| !objects.is_empty())
                .then_some(there)
        }
        Location::Memory(_) => None,
    };
    Ok(found.unwrap_or(absolute))
}

/// Options of `prune`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PruneOptions {
    /// Keep unreferenced content released less than this ago; None = 0,
    /// or [`SHARED_MIN_AGE`] when other machines' archives use the
    /// repository.
    pub min_age: Option<Duration>,
}

/// What prune did, and the minimum age it applied.
pub struct PruneOutcome {
    pub report: PruneReport,
    pub min_age: Duration,
}

/// Removes content no snapshot references. Refuses to remove anything
/// unless every snapshot of every registered snapshot directory was read.
pub fn prune(ctx: &Context, repo: &str, opts: PruneOptions, command: &str) -> Result<PruneOutcome> {
    let (repo_name, repo) = ctx.open_repo_locked(repo, command)?;
    let registered = registered(&repo)?;
    let stores: Vec<&dyn crate::store::Store> =
        registered.stores.iter().map(|s| s.as_ref()).collect();
    let scan = scan::scan(&stores);
    let mut why: Vec<String> = registered.unreadable.clone();
    why.extend(scan.unreachable.iter().cloned());
    why.extend(scan.unreadable.iter().cloned());
    if !why.is_empty() {
        let mut hint = String::new();
        if !scan.damaged.is_empty() {
            hint = format!(
                "; `epygibus check -R {repo_name} --repair` sets damaged snapshots aside (renamed to <name>.damaged and kept, what can still be read salvaged), after which prune works"
            );
        }
        if !scan.unreachable.is_empty() {
            hint.push_str("; is the disk holding the snapshot directory mounted?");
        }
        return Err(OpError::PruneIncomplete { why, hint });
    }
    let min_age = match opts.min_age {
        Some(age) => age,
        None if registered.shared => SHARED_MIN_AGE,
        None => Duration::ZERO,
    };
    let report = repo.prune(&PruneRules {
        referenced: &scan.refs,
        min_age,
    })?;
    Ok(PruneOutcome { report, min_age })
}

/// Converts every content object of a repository into `target` form.
pub fn compress_repo(
    ctx: &Context,
    repo: &str,
    target: StoredForm,
    command: &str,
) -> Result<CompressReport> {
    let (_, repo) = ctx.open_repo_locked(repo, command)?;
    Ok(repo.compress_all(target)?)
}

/// Moves a repository's small loose content files into packs.
pub fn pack_repo(
    ctx: &Context,
    repo: &str,
    progress: &dyn crate::progress::Progress,
    command: &str,
) -> Result<PackReport> {
    let (_, repo) = ctx.open_repo_locked(repo, command)?;
    Ok(repo.pack_loose(progress)?)
}

/// What converting one snapshot file did.
pub enum SnapshotCompress {
    /// It is in the asked-for form already.
    NothingToDo,
    Converted {
        name: SnapshotName,
        before: u64,
        after: u64,
    },
}

/// Compresses (or uncompresses) one snapshot file of an archive.
pub fn compress_snapshot(
    ctx: &Context,
    archive_name: &str,
    back: i64,
    uncompress: bool,
    command: &str,
) -> Result<SnapshotCompress> {
    let a = archive(ctx, archive_name)?;
    // Held so no `del` removes the snapshot while it is rewritten.
    let _repo = a.lock_repo(ctx, command)?;
    let name = a.select(back)?;
    if name.compressed != uncompress {
        return Ok(SnapshotCompress::NothingToDo);
    }
    let store = a.snapshots.as_ref();
    let before = format::file_size(store, &name);
    let converted = format::convert_snapshot(store, &name)?;
    Ok(SnapshotCompress::Converted {
        name,
        before,
        after: format::file_size(store, &converted),
    })
}

/// Which snapshots `del` removes.
#[derive(Clone, Copy, Debug)]
pub enum Doomed {
    /// One, by `--back` (-1 = the oldest).
    Back(i64),
    /// All but the newest N.
    AllButNewest(usize),
    /// One, by name (`--snapshot`).
    Named(SnapshotName),
}

/// Options of `del`.
#[derive(Clone, Copy, Debug)]
pub struct DeleteOptions {
    pub which: Doomed,
    /// Allow deleting the archive's last snapshot.
    pub remove_last_ok: bool,
    /// When the one snapshot chosen cannot be read, set it aside instead
    /// (renamed, kept; its references cannot be released).
    pub force: bool,
}

/// A snapshot `del --force` set aside because it could not be read.
pub struct SetAside {
    pub name: SnapshotName,
    /// The archive's repository, whose counts stay as they were.
    pub repo: Name,
    /// Where its file(s) went.
    pub places: Vec<String>,
    /// Why it could not be read.
    pub reason: String,
}

/// What `del` did.
pub struct DeleteOutcome {
    pub deleted: Vec<DeleteReport>,
    pub set_aside: Option<SetAside>,
}

/// Deletes snapshots, calling `each` after each one. An unreadable
/// snapshot is refused with the way out named, or with `force` (one
/// snapshot only) set aside.
pub fn delete(
    ctx: &Context,
    archive_name: &str,
    opts: DeleteOptions,
    command: &str,
    each: &mut dyn FnMut(&DeleteReport),
) -> Result<DeleteOutcome> {
    let a = archive(ctx, archive_name)?;
    let repo = a.lock_repo(ctx, command)?;
    let names = a.list()?;
    let store = a.snapshots.as_ref();
    let doomed: Vec<SnapshotName> = match opts.which {
        Doomed::AllButNewest(keep) => names[..names.len().saturating_sub(keep)].to_vec(),
        Doomed::Back(back) => vec![snapshot::select(&names, back, a.snapshots.location())?],
        Doomed::Named(wanted) => {
            let found = names.iter().find(|n| n.secs == wanted.secs);
            vec![*found.ok_or_else(|| OpError::NoSuchSnapshot {
                archive: a.spec.name.clone(),
                stamp: wanted.stamp(),
            })?]
        }
    };
    if let ([one], true) = (doomed.as_slice(), opts.force) {
        match format::read_snapshot(store, one) {
            Err(e) if !matches!(&e, SnapshotError::Store(s) if s.is_not_found()) => {
                // No backup to keep: the last-snapshot rule does not apply.
                let places = damaged::set_aside(store, one)?;
                return Ok(DeleteOutcome {
                    deleted: Vec::new(),
                    set_aside: Some(SetAside {
                        name: *one,
                        repo: a.spec.repo.clone(),
                        places: places.iter().map(|p| store.place(p)).collect(),
                        reason: e.to_string(),
                    }),
                });
            }
            _ => {}
        }
    }
    if doomed.len() >= names.len() && !names.is_empty() && !opts.remove_last_ok {
        return Err(ArchiveError::OnlySnapshot.into());
    }
    let mut deleted = Vec::new();
    for name in &doomed {
        let report = match snapshot::delete(store, &repo, name) {
            Ok(r) => r,
            Err(ArchiveError::Snapshot(e @ SnapshotError::Corrupt { .. })) => {
                return Err(OpError::DamagedSnapshot {
                    archive: a.spec.name.clone(),
                    stamp: name.stamp(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        each(&report);
        deleted.push(report);
    }
    Ok(DeleteOutcome {
        deleted,
        set_aside: None,
    })
}

/// What `unlock` found.
pub struct Unlocked {
    pub name: Name,
    pub existed: bool,
    pub holder: Option<LockHolder>,
}

/// Removes a repository's lock whoever holds it.
pub fn unlock(ctx: &Context, repo: &str) -> Result<Unlocked> {
    let name: Name = repo.parse()?;
    let spec = ctx.config.repo(&name)?;
    let (existed, holder) = Repository::force_unlock(store_at(&spec.location).as_ref())?;
    Ok(Unlocked {
        name,
        existed,
        holder,
    })
}
