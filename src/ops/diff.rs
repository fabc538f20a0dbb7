//! `diff`: what changed between two snapshots of an archive, or between
//! a snapshot and the files on disk now (`--live`: what the next backup
//! would record, reading only the files it would read and storing
//! nothing). Which snapshots `--back` means is decided here, once.

use std::path::{Path, PathBuf};

use super::source::{Source, SourceSpec, archive};
use super::{Context, OpError, Result};
use crate::content::TokenHasher;
use crate::progress::Progress;
use crate::snapshot::diff::{DiffReport, diff};
use crate::snapshot::exclude::Excludes;
use crate::snapshot::format::{Snapshot, SnapshotName};
use crate::snapshot::generate::{BackupPlan, Problem};
use crate::snapshot::live::live_tree;
use crate::snapshot::lookup::node_at;
use crate::snapshot::retrieve;

/// The newer side of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewSide {
    /// A snapshot, by `--back`.
    Back(i64),
    /// The files on disk now.
    Live,
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct DiffRequest {
    pub source: SourceSpec,
    /// The older side, by `--back`.
    pub old: i64,
    pub new: NewSide,
    /// Only this path and what is below it (as typed: made absolute here).
    pub path: Option<PathBuf>,
    /// Also report entries whose mode, owner or mtime alone changed (`U`).
    pub metadata: bool,
}

impl DiffRequest {
    /// The sides `--back` values select: none compares the newest with
    /// the one before; one (`I`) compares snapshot I with the newest, or
    /// with `live` with the files on disk (so `--back` names "since when");
    /// two compare the first with the second, in the order given.
    pub fn sides(backs: &[i64], live: bool) -> Result<(i64, NewSide)> {
        match (backs, live) {
            ([], false) => Ok((1, NewSide::Back(0))),
            ([], true) => Ok((0, NewSide::Live)),
            ([old], false) => Ok((*old, NewSide::Back(0))),
            ([old], true) => Ok((*old, NewSide::Live)),
            ([old, new], false) => Ok((*old, NewSide::Back(*new))),
            _ => Err(OpError::Invalid(
                "diff takes at most two --back values, and one with --live".into(),
            )),
        }
    }
}

/// What `diff` found.
pub struct DiffOutcome {
    pub old: (SnapshotName, i64),
    /// None for the files on disk.
    pub new: Option<(SnapshotName, i64)>,
    /// The absolute path compared (`/` for everything).
    pub path: PathBuf,
    pub report: DiffReport,
    /// `--live`: entries the walk could not read (they are left out, as a
    /// backup would leave them out).
    pub problems: Vec<Problem>,
    /// `--live`: files read and hashed (the rest were trusted unchanged).
    pub files_read: u64,
}

/// Compares as `req` says.
pub fn diff_snapshots(
    ctx: &Context,
    req: &DiffRequest,
    progress: &dyn Progress,
) -> Result<DiffOutcome> {
    let source = Source::resolve(ctx, &req.source)?;
    let names = source.snapshots()?;
    if names.len() < 2 && req.new != NewSide::Live && req.old == 1 && req.new == NewSide::Back(0) {
        return Err(OpError::Invalid(format!(
            "archive has only {} snapshot(s) in {}, so there is nothing to compare with; use --live to compare the newest with the files on disk",
            names.len(),
            source.snapshots.location()
        )));
    }
    let (old_name, old) = source.pick(req.old)?;
    let path = req
        .path
        .as_deref()
        .map_or_else(|| PathBuf::from("/"), retrieve::absolute);
    let (new, new_snapshot, problems, files_read) = match req.new {
        NewSide::Back(back) => {
            let (name, snap) = source.pick(back)?;
            (Some((name, back)), snap, Vec::new(), 0)
        }
        NewSide::Live => {
            let (snap, problems, read) = live(ctx, &req.source, &old, progress)?;
            (None, snap, problems, read)
        }
    };
    if path != Path::new("/")
        && node_at(&old.root, &path).is_none()
        && node_at(&new_snapshot.root, &path).is_none()
    {
        let mut where_ = old_name.stamp();
        if let Some((n, _)) = new {
            where_ = format!("{where_} nor in snapshot {}", n.stamp());
        } else {
            where_.push_str(" nor on disk among the archive's includes");
        }
        return Err(OpError::NotInSnapshot {
            path,
            snapshot: where_,
        });
    }
    let under = (path != Path::new("/")).then_some(path.as_path());
    let report = diff(&old.root, &new_snapshot.root, under, req.metadata);
    Ok(DiffOutcome {
        old: (old_name, req.old),
        new,
        path,
        report,
        problems,
        files_read,
    })
}

/// The tree a backup now would record, against `previous`.
fn live(
    ctx: &Context,
    spec: &SourceSpec,
    previous: &Snapshot,
    progress: &dyn Progress,
) -> Result<(Snapshot, Vec<Problem>, u64)> {
    let SourceSpec::Archive(name) = spec else {
        return Err(OpError::Invalid(
            "--live needs a configured archive (-A NAME): its includes and excludes say what a backup would read".into(),
        ));
    };
    let a = archive(ctx, name)?;
    let spec = &a.spec;
    let excludes = Excludes::new(&spec.excluded_dirs, &spec.excluded_files)
        .map_err(crate::snapshot::ArchiveError::from)?;
    // Directories the walk must not enter (the backup's own; on a bucket
    // there is nothing to skip).
    let mut skip_dirs: Vec<PathBuf> = spec
        .snapshot_dir
        .as_dir()
        .map(Path::to_owned)
        .into_iter()
        .collect();
    if let Ok(repo) = ctx.config.repo(&spec.repo)
        && let Some(dir) = repo.location.as_dir()
    {
        skip_dirs.push(dir.to_owned());
    }
    let plan = BackupPlan {
        includes: &spec.includes,
        excludes: &excludes,
        keep_broken_soft_links: spec.keep_broken_soft_links,
        compare_inodes: spec.compare_inodes,
        force_read: false,
        skip_dirs,
    };
    let tokens = a
        .key
        .as_ref()
        .map_or(TokenHasher::Plain, |k| TokenHasher::Keyed(k.token_key()));
    let built = live_tree(
        &plan,
        (&previous.root, previous.header.started_ns),
        tokens,
        progress,
    );
    progress.finish();
    let built = built?;
    let snapshot = Snapshot {
        header: previous.header.clone(),
        root: built.root,
    };
    Ok((snapshot, built.problems, built.files_read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_values_select_sides() {
        use NewSide::*;
        type Row<'a> = (&'a [i64], bool, Option<(i64, NewSide)>);
        let table: &[Row] = &[
            (&[], false, Some((1, Back(0)))),
            (&[], true, Some((0, Live))),
            (&[3], false, Some((3, Back(0)))),
            (&[-1], true, Some((-1, Live))),
            (&[4, 2], false, Some((4, Back(2)))),
            (&[0, 4], false, Some((0, Back(4)))),
            (&[1, 2], true, None),
            (&[1, 2, 3], false, None),
        ];
        for (backs, live, want) in table {
            let got = DiffRequest::sides(backs, *live).ok();
            assert_eq!(got, *want, "{backs:?} live={live}");
        }
    }
}
