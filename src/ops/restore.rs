//! Getting files back: restore, extract, cat, ls.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::original;
use super::source::{Source, SourceSpec};
use super::{Context, OpError, Result};
use crate::clock::{Civil, now_secs};
use crate::progress::Progress;
use crate::snapshot::model::{DirNode, FileName, Node};
use crate::snapshot::restore::{RestoreOptions, RestoreReport};
use crate::snapshot::retrieve::{self, Want};

/// What to put back.
#[derive(Clone, Debug)]
pub enum Selection {
    /// A file or symlink at this path (as typed: made absolute here).
    File(PathBuf),
    /// A directory and everything in it.
    Dir(PathBuf),
    /// Everything the snapshot holds (restore only).
    All,
}

/// Options shared by restore and extract.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub source: SourceSpec,
    pub back: i64,
    pub selection: Selection,
    /// Replace differing files instead of moving them aside.
    pub overwrite: bool,
}

/// Where extract puts its copy.
#[derive(Clone, Debug)]
pub struct ExtractTarget {
    pub into_dir: PathBuf,
    pub with_name: Option<OsString>,
}

fn restore_options(overwrite: bool) -> RestoreOptions {
    RestoreOptions {
        overwrite,
        set_owner: rustix::process::geteuid().is_root(),
        aside_stamp: Civil::from_unix(now_secs()).dashed(),
    }
}

fn wanted(selection: &Selection) -> Option<(PathBuf, Want)> {
    match selection {
        Selection::File(p) => Some((retrieve::absolute(p), Want::File)),
        Selection::Dir(p) => Some((retrieve::absolute(p), Want::Dir)),
        Selection::All => None,
    }
}

/// Puts files back where they were.
pub fn restore(
    ctx: &Context,
    req: &RestoreRequest,
    command: &str,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    if let Some(dir) = req.source.original_dir() {
        return original::restore(dir, req, &restore_options(req.overwrite), progress);
    }
    let source = Source::resolve(ctx, &req.source)?;
    let (name, snapshot) = source.pick(req.back)?;
    let opts = restore_options(req.overwrite);
    let stamp = name.stamp();
    // Find the path before taking the lock: a typo should not wait.
    let wanted = wanted(&req.selection);
    let found = match &wanted {
        Some((path, want)) => Some((path, retrieve::lookup(&snapshot, &stamp, path, *want)?)),
        None => None,
    };
    let repo = source.open_repo(ctx, command)?;
    Ok(match found {
        Some((path, node)) => {
            retrieve::restore_path(&repo, &snapshot, node, path, &opts, progress)?
        }
        None => retrieve::restore_all(&repo, &snapshot, &opts, progress)?,
    })
}

/// Copies a file or directory out of a snapshot into a directory.
pub fn extract(
    ctx: &Context,
    req: &RestoreRequest,
    target: &ExtractTarget,
    command: &str,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    if let Some(dir) = req.source.original_dir() {
        let opts = restore_options(req.overwrite);
        return original::extract(dir, req, target, &opts, progress);
    }
    let source = Source::resolve(ctx, &req.source)?;
    let (name, snapshot) = source.pick(req.back)?;
    let Some((path, want)) = wanted(&req.selection) else {
        return Err(OpError::Invalid(
            "extract needs a file or a directory, not everything".into(),
        ));
    };
    let node = retrieve::lookup(&snapshot, &name.stamp(), &path, want)?;
    let opts = restore_options(req.overwrite);
    let repo = source.open_repo(ctx, command)?;
    Ok(retrieve::extract(
        &repo,
        node,
        &path,
        &target.into_dir,
        target.with_name.as_deref(),
        &opts,
        progress,
    )?)
}

/// A reader of a file's content in a snapshot.
pub fn cat(
    ctx: &Context,
    source: &SourceSpec,
    back: i64,
    path: &Path,
    command: &str,
) -> Result<Box<dyn Read + Send>> {
    if let Some(dir) = source.original_dir() {
        return original::cat(dir, back, path);
    }
    let source = Source::resolve(ctx, source)?;
    let (name, snapshot) = source.pick(back)?;
    let path = retrieve::absolute(path);
    let token = match retrieve::lookup(&snapshot, &name.stamp(), &path, Want::File)? {
        Node::File(f) => f.token,
        Node::Link(l) => {
            return Err(OpError::IsSymlink {
                path,
                target: String::from_utf8_lossy(&l.target).into_owned(),
                snapshot: name.stamp(),
            });
        }
        Node::Dir(_) => unreachable!("lookup checked the kind"),
    };
    let repo = source.open_repo(ctx, command)?;
    Ok(Box::new(repo.open_contents_read_only(&token)?))
}

/// One entry of a listed directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    Dir(FileName),
    File(FileName),
    /// A symlink and its target.
    Link(FileName, Vec<u8>),
}

/// The entries of a directory of a snapshot, sorted by name.
pub fn ls(ctx: &Context, source: &SourceSpec, back: i64, path: &Path) -> Result<Vec<Listed>> {
    if let Some(dir) = source.original_dir() {
        return original::ls(dir, back, path);
    }
    let source = Source::resolve(ctx, source)?;
    let (name, snapshot) = source.pick(back)?;
    let path = retrieve::absolute(path);
    match retrieve::find(&snapshot.root, &path) {
        Some(retrieve::NodeRef::Root(d)) | Some(retrieve::NodeRef::Node(Node::Dir(d))) => {
            Ok(listing(d))
        }
        Some(_) => Err(OpError::NotADirectory {
            path,
            snapshot: name.stamp(),
        }),
        None => Err(OpError::NotInSnapshot {
            path,
            snapshot: name.stamp(),
        }),
    }
}

fn listing(dir: &DirNode) -> Vec<Listed> {
    dir.entries
        .iter()
        .map(|e| match &e.node {
            Node::Dir(_) => Listed::Dir(e.name.clone()),
            Node::File(_) => Listed::File(e.name.clone()),
            Node::Link(l) => Listed::Link(e.name.clone(), l.target.clone()),
        })
        .collect()
}
