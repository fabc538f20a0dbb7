//! `check`: is every snapshot's content present, and no count too low?
//! The order matters: read every snapshot first, then compare the index
//! and the stored objects with what they reference.

use super::housekeeping::registered;
use super::source::archive;
use super::{Context, OpError, Result};
use crate::content::{
    Access, CheckOptions, CheckReport, ContentError, Repository, report_leftovers,
};
use crate::snapshot::damaged;
use crate::snapshot::format;
use crate::snapshot::scan::{self, Scan};
use crate::store::{Location, SharedStore, Store};

/// What to check.
#[derive(Clone, Debug)]
pub enum CheckTarget {
    /// A repository against every snapshot directory registered in it.
    Repo(String),
    /// One archive's snapshots against its repository.
    Archive(String),
}

/// How thorough, and what may change.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckRequest {
    pub read_data: bool,
    pub repair: bool,
    /// With repair on a whole repository: lower counts that are too high.
    pub lower_counts: bool,
}

/// What check read and found.
pub struct CheckOutcome {
    pub scan: Scan,
    /// Damaged snapshots that were set aside (with --repair): why each
    /// could not be read. They are no longer in `scan.unreadable`.
    pub set_aside: Vec<String>,
    /// The snapshot directories read.
    pub dirs: Vec<Location>,
    pub report: CheckReport,
}

pub fn check(
    ctx: &Context,
    target: &CheckTarget,
    req: CheckRequest,
    command: &str,
) -> Result<CheckOutcome> {
    let (repo_name, repo_dir, archive_dir) = match target {
        CheckTarget::Repo(r) => {
            let name: crate::config::Name = r.parse()?;
            let location = ctx.config.repo(&name)?.location;
            (name, location, None)
        }
        CheckTarget::Archive(a) => {
            let a = archive(ctx, a)?;
            let location = ctx.config.repo(&a.spec.repo)?.location;
            (a.spec.repo, location, Some(a.snapshots))
        }
    };
    let whole_repo = archive_dir.is_none();
    let mut rebuilt = Vec::new();
    let mut rebuilding = false;
    let repo = match (req.repair, ctx.lock_at(&repo_dir, command)) {
        (false, _) => {
            Repository::open_with(super::store_at(&repo_dir), Access::ReadOnly, &ctx.keys)?
        }
        (true, Ok(repo)) => repo,
        (
            true,
            Err(OpError::Content(
                ContentError::CorruptIndex { .. } | ContentError::MissingIndex(_),
            )),
        ) if whole_repo => {
            let access = Access::Locked {
                command,
                wait: ctx.lock_wait(),
            };
            let (repo, aside) =
                Repository::open_rebuilding(super::store_at(&repo_dir), access, &ctx.keys)?;
            rebuilt = aside;
            rebuilding = true;
            repo
        }
        (true, Err(e)) => return Err(e),
    };
    let mut unreadable = Vec::new();
    let stores: Vec<SharedStore> = match archive_dir {
        Some(s) => vec![s],
        None => {
            let r = registered(&repo)?;
            unreadable = r.unreadable;
            r.stores
        }
    };
    let refs: Vec<&dyn Store> = stores.iter().map(|s| s.as_ref()).collect();
    let mut scan = scan::scan(&refs);
    scan.unreadable.extend(unreadable);
    let set_aside = match req.repair {
        true => set_damaged_aside(&mut scan, &refs, &repo, &repo_name, rebuilding),
        false => Vec::new(),
    };
    let complete = whole_repo && scan.complete();
    if req.lower_counts && !complete {
        return Err(OpError::LowerCountsIncomplete);
    }
    if rebuilding {
        // Counts rebuilt from snapshots are right only if every snapshot
        // was read; the damaged index stays set aside either way.
        if !complete {
            return Err(OpError::Invalid(format!(
                "the index cannot be rebuilt: not every snapshot using the repository could be read ({}); the damaged index was set aside as {}",
                scan.unreachable
                    .iter()
                    .chain(&scan.unreadable)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
                rebuilt.join(", ")
            )));
        }
    }
    let opts = CheckOptions {
        read_data: req.read_data,
        repair: req.repair,
        complete,
        lower_counts: req.lower_counts,
    };
    let mut report = repo.check(&scan.refs, opts);
    report
        .repaired
        .splice(0..0, set_aside.iter().map(|(_, done)| done.clone()));
    for aside in &rebuilt {
        report.repaired.insert(
            0,
            format!(
                "set the damaged index aside as {aside} and rebuilt the counts from the snapshots"
            ),
        );
    }
    for store in &stores {
        report_leftovers(store.as_ref(), req.repair, &mut report);
    }
    if req.repair {
        repo.commit()?;
    }
    Ok(CheckOutcome {
        scan,
        set_aside: set_aside.into_iter().map(|(problem, _)| problem).collect(),
        dirs: stores.iter().map(|s| s.location().clone()).collect(),
        report,
    })
}

/// Sets every damaged snapshot of the scan aside and salvages what it can
/// of each (not while the index is rebuilt: salvage needs the counts), so
/// that prune works again; the scan then counts the salvaged snapshots'
/// references instead. Returns, for each, the problem found and what was
/// done. A snapshot that cannot be renamed stays unreadable in the scan.
fn set_damaged_aside(
    scan: &mut Scan,
    stores: &[&dyn Store],
    repo: &Repository,
    repo_name: &crate::config::Name,
    rebuilding: bool,
) -> Vec<(String, String)> {
    let mut done = Vec::new();
    for d in std::mem::take(&mut scan.damaged) {
        let store = stores[d.dir];
        let place = store.place(&d.name.file_name());
        let aside = match damaged::set_aside(store, &d.name) {
            Ok(aside) => aside,
            Err(e) => {
                if let Some(m) = scan.unreadable.iter_mut().find(|m| **m == d.message) {
                    *m = format!("{m} (it could not be set aside: {e})");
                }
                scan.damaged.push(d);
                continue;
            }
        };
        scan.unreadable.retain(|m| *m != d.message);
        let Some(first) = aside.first() else {
            continue; // gone meanwhile
        };
        let mut note = format!(
            "set the damaged snapshot {place} aside as {} (kept as it is; the content it used keeps its counts until `epygibus check -R {repo_name} --repair --lower-counts`)",
            store.place(first)
        );
        if rebuilding {
            note += "; nothing was salvaged from it while the index is rebuilt";
        } else {
            match damaged::salvage(store, repo, &d.name, first) {
                Ok(Some(s)) => {
                    if let Ok(snapshot) = format::read_snapshot(store, &s.name) {
                        scan.snapshots += 1;
                        for token in snapshot.root.tokens() {
                            *scan.refs.entry(token).or_default() += 1;
                        }
                    }
                    note += &format!(
                        "; salvaged {} entries of its readable start into snapshot {}{}",
                        s.entries,
                        s.name.stamp(),
                        match s.dropped_files {
                            0 => String::new(),
                            n => format!(
                                " ({n} files left out: their content is not in the repository)"
                            ),
                        }
                    );
                }
                Ok(None) => note += "; nothing of it could be salvaged",
                Err(e) => note += &format!("; salvaging from it failed: {e}"),
            }
        }
        done.push((d.message, note));
    }
    done
}
