//! Getting files back by path: finding entries in a snapshot and handing
//! them to [`super::restore`] with the right target.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::format::Snapshot;
use super::model::{DirNode, FileName, Node};
use super::restore::{self, ContentSource, RestoreError, RestoreOptions, RestoreReport};
use crate::progress::Progress;

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// `--file`: a regular file or a symlink.
    File,
    /// `--dir`: a directory.
    Dir,
}

/// Why a path cannot be retrieved.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error("{path} is not in snapshot {snapshot}")]
    NotInSnapshot { path: PathBuf, snapshot: String },
    #[error("{path} is a {found} in snapshot {snapshot}, not a {wanted}; use {hint}")]
    WrongKind {
        path: PathBuf,
        snapshot: String,
        found: &'static str,
        wanted: &'static str,
        hint: &'static str,
    },
    #[error("`{0}` cannot be used as a file name")]
    BadName(String),
    #[error("target directory {0} does not exist or is not a directory")]
    NoTargetDir(PathBuf),
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

type Result<T, E = RetrieveError> = std::result::Result<T, E>;

/// The path as absolute and without `.`/`..` (relative to the current
/// directory, as the user typed it).
pub fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut clean = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

/// The node at an absolute path in the tree; `/` is the root itself.
pub fn find<'t>(root: &'t DirNode, path: &Path) -> Option<NodeRef<'t>> {
    let mut node = NodeRef::Root(root);
    for c in path.components() {
        let Component::Normal(name) = c else {
            continue;
        };
        let dir = match node {
            NodeRef::Root(d) | NodeRef::Node(Node::Dir(d)) => d,
            _ => return None,
        };
        node = NodeRef::Node(dir.get(name.as_bytes())?);
    }
    Some(node)
}

/// A found entry: the root directory or a named node.
#[derive(Clone, Copy)]
pub enum NodeRef<'t> {
    Root(&'t DirNode),
    Node(&'t Node),
}

fn kind_name(node: NodeRef) -> &'static str {
    match node {
        NodeRef::Root(_) | NodeRef::Node(Node::Dir(_)) => "directory",
        NodeRef::Node(Node::File(_)) => "file",
        NodeRef::Node(Node::Link(_)) => "symlink",
    }
}

/// Finds `path` and checks it is what was asked for.
pub fn lookup<'t>(
    snapshot: &'t Snapshot,
    stamp: &str,
    path: &Path,
    want: Want,
) -> Result<&'t Node> {
    let found = find(&snapshot.root, path).ok_or_else(|| RetrieveError::NotInSnapshot {
        path: path.to_owned(),
        snapshot: stamp.to_owned(),
    })?;
    let fits = matches!(
        (want, found),
        (Want::Dir, NodeRef::Node(Node::Dir(_)))
            | (Want::File, NodeRef::Node(Node::File(_) | Node::Link(_)))
    );
    match found {
        NodeRef::Node(node) if fits => Ok(node),
        _ => Err(RetrieveError::WrongKind {
            path: path.to_owned(),
            snapshot: stamp.to_owned(),
            found: kind_name(found),
            wanted: if want == Want::Dir {
                "directory"
            } else {
                "file"
            },
            hint: if want == Want::Dir {
                "--file for files and symlinks"
            } else {
                "--dir for directories (or --all)"
            },
        }),
    }
}

fn split(path: &Path) -> Result<(PathBuf, FileName)> {
    let name = path
        .file_name()
        .ok_or_else(|| RetrieveError::BadName(path.display().to_string()))?;
    let name = FileName::new(name.as_bytes().to_vec())
        .map_err(|_| RetrieveError::BadName(path.display().to_string()))?;
    Ok((path.parent().unwrap_or(Path::new("/")).to_owned(), name))
}

/// Puts the entry at `path` back where it was.
pub fn restore_path(
    repo: &dyn ContentSource,
    snapshot: &Snapshot,
    node: &Node,
    path: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let (parent, name) = split(path)?;
    let parent = restore::Parent::original(&parent, &snapshot.root)?;
    Ok(restore::restore_into(
        repo, parent, &name, node, opts, progress,
    )?)
}

/// Restores every path the snapshot was made of.
pub fn restore_all(
    repo: &dyn ContentSource,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let mut total = RestoreReport::default();
    for root in roots(snapshot) {
        let Some(NodeRef::Node(node)) = find(&snapshot.root, &root) else {
            continue;
        };
        let r = restore_path(repo, snapshot, node, &root, opts, progress)?;
        merge(&mut total, r);
    }
    Ok(total)
}

/// The walked roots, or for snapshots without that list the top entries.
fn roots(snapshot: &Snapshot) -> Vec<PathBuf> {
    if !snapshot.header.roots.is_empty() {
        return snapshot
            .header
            .roots
            .iter()
            .map(|b| PathBuf::from(OsStr::from_bytes(b)))
            .collect();
    }
    snapshot
        .root
        .entries
        .iter()
        .map(|e| Path::new("/").join(e.name.as_os_str()))
        .collect()
}

fn merge(total: &mut RestoreReport, r: RestoreReport) {
    total.files += r.files;
    total.bytes += r.bytes;
    total.dirs += r.dirs;
    total.links += r.links;
    total.hard_links += r.hard_links;
    total.unchanged += r.unchanged;
    total.moved_aside.extend(r.moved_aside);
    total.problems.extend(r.problems);
}

/// Copies the entry into `into_dir` under its own name or `with_name`;
/// refuses when that exists, unless overwriting.
pub fn extract(
    repo: &dyn ContentSource,
    node: &Node,
    path: &Path,
    into_dir: &Path,
    with_name: Option<&OsStr>,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    if !into_dir.is_dir() {
        return Err(RetrieveError::NoTargetDir(into_dir.to_owned()));
    }
    let name = match with_name {
        Some(n) => FileName::new(n.as_bytes().to_vec())
            .map_err(|_| RetrieveError::BadName(n.to_string_lossy().into_owned()))?,
        None => split(path)?.1,
    };
    let target = into_dir.join(name.as_os_str());
    if !opts.overwrite && std::fs::symlink_metadata(&target).is_ok() {
        return Err(RestoreError::TargetExists { path: target }.into());
    }
    let parent = restore::Parent::chosen(into_dir)?;
    Ok(restore::restore_into(
        repo, parent, &name, node, opts, progress,
    )?)
}
