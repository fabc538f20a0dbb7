//! `check`: is every snapshot's content present, and no count too low?
//! The order matters: read every snapshot first, then compare the index
//! and the stored objects with what they reference.

use super::housekeeping::registered;
use super::source::archive;
use super::{Context, OpError, Result};
use crate::content::{Access, CheckOptions, CheckReport, Repository, report_leftovers};
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
    let (repo_dir, archive_dir) = match target {
        CheckTarget::Repo(r) => {
            let name: crate::config::Name = r.parse()?;
            (ctx.config.repo(&name)?.path, None)
        }
        CheckTarget::Archive(a) => {
            let a = archive(ctx, a)?;
            (ctx.config.repo(&a.spec.repo)?.path, Some(a.snapshots))
        }
    };
    let repo = if req.repair {
        ctx.lock_dir(&repo_dir, command)?
    } else {
        Repository::open_dir(&repo_dir, Access::ReadOnly)?
    };
    let whole_repo = archive_dir.is_none();
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
    let complete = whole_repo && scan.complete();
    if req.lower_counts && !complete {
        return Err(OpError::LowerCountsIncomplete);
    }
    let opts = CheckOptions {
        read_data: req.read_data,
        repair: req.repair,
        complete,
        lower_counts: req.lower_counts,
    };
    let mut report = repo.check(&scan.refs, opts);
    for store in &stores {
        report_leftovers(store.as_ref(), req.repair, &mut report);
    }
    if req.repair {
        repo.commit()?;
    }
    Ok(CheckOutcome {
        scan,
        dirs: stores.iter().map(|s| s.location().clone()).collect(),
        report,
    })
}
