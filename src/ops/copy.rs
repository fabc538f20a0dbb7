//! `copy`: snapshots of one archive into another archive on another
//! repository (a NAS to a bucket, a bucket to a USB disk), without reading
//! the backed-up files: names and times are kept, and only content the
//! target repository lacks is copied. Which snapshots: `--back N` picks
//! one; without it, every snapshot the target does not have yet, oldest
//! first.

use super::source::{Source, SourceSpec, archive};
use super::{Context, OpError, Result};
use crate::progress::Progress;
use crate::snapshot::copy::{CopiedSnapshot, CopyTarget, copy_snapshot};
use crate::snapshot::format::SnapshotName;
use crate::snapshot::select;

/// Options of `copy`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// Only this snapshot (as `--back` selects); None: every snapshot the
    /// target lacks.
    pub back: Option<i64>,
}

/// What `copy` did.
#[derive(Debug, Default)]
pub struct CopyOutcome {
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots selected that the target had already.
    pub already: Vec<SnapshotName>,
}

/// Copies snapshots of archive `from` into archive `to`, holding both
/// repositories' locks (the source's so no prune removes content while it
/// is read, the target's as a backup would). `each` is told of every
/// snapshot copied.
pub fn copy(
    ctx: &Context,
    from: &str,
    to: &str,
    opts: CopyOptions,
    command: &str,
    progress: &dyn Progress,
    each: &mut dyn FnMut(&CopiedSnapshot),
) -> Result<CopyOutcome> {
    let source = archive(ctx, from)?;
    let target = archive(ctx, to)?;
    target.check_writable()?;
    let from_repo = ctx.config.repo(&source.spec.repo)?;
    let to_repo = ctx.config.repo(&target.spec.repo)?;
    if from_repo.location == to_repo.location {
        return Err(OpError::Invalid(format!(
            "archives `{from}` and `{to}` use the same repository ({}), whose content both share already; copy copies snapshots to an archive of another repository",
            from_repo.location
        )));
    }
    if source.spec.snapshot_dir == target.spec.snapshot_dir {
        return Err(OpError::Invalid(format!(
            "archives `{from}` and `{to}` keep their snapshots in the same place ({})",
            source.spec.snapshot_dir
        )));
    }
    let names = source.list()?;
    let wanted: Vec<SnapshotName> = match opts.back {
        Some(back) => vec![select(&names, back, source.snapshots.location())?],
        None => names,
    };
    let have: std::collections::HashSet<i64> = target.list()?.iter().map(|n| n.secs).collect();
    let mut outcome = CopyOutcome::default();
    let todo: Vec<SnapshotName> = wanted
        .into_iter()
        .filter(|n| {
            let there = have.contains(&n.secs);
            if there {
                outcome.already.push(*n);
            }
            !there
        })
        .collect();
    if todo.is_empty() {
        return Ok(outcome);
    }
    let to_repo = target.lock_repo(ctx, command)?;
    let from_repo =
        Source::resolve(ctx, &SourceSpec::Archive(from.to_owned()))?.open_repo(ctx, command)?;
    let to = CopyTarget {
        archive: &target.spec,
        snapshots: target.snapshots.as_ref(),
        repo: &to_repo,
    };
    for name in todo {
        match copy_snapshot(source.snapshots.as_ref(), &from_repo, &name, &to, progress)? {
            Some(c) => {
                each(&c);
                outcome.copied.push(c);
            }
            None => outcome.already.push(name),
        }
    }
    Ok(outcome)
}
