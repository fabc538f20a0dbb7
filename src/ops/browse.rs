//! Browsing snapshots a page at a time, for faces that show one directory
//! of one snapshot at once (the web GUI): a snapshot is chosen by its
//! name (not by `--back`, which moves when a backup lands), its tree is
//! decoded once and kept for the next pages, and paths are resolved only
//! by walking that tree, so no typed path ever reaches the file system.
//! Content is read without the repository's lock, as the mount does:
//! content a snapshot uses cannot be pruned while the snapshot exists.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::source::{Source, SourceSpec};
use super::{Context, OpError, Result};
use crate::content::ContentToken;
use crate::snapshot::format::{Snapshot, SnapshotName};
use crate::snapshot::lookup::Kind;
use crate::snapshot::model::{Attrs, DirNode, FileName, Node};
use crate::snapshot::retrieve::{self, NodeRef};

/// Decoded trees kept: a 60k-entry tree is about 10 MB in memory; a
/// person browsing, comparing or restoring uses two or three at once.
const TREES_KEPT: usize = 4;

/// Most entries one page holds, so one answer stays small however large
/// the directory.
pub const MAX_PAGE: usize = 2000;

/// One entry as a face shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub attrs: Attrs,
    /// File size; for a directory, its number of entries.
    pub size: u64,
    pub token: Option<ContentToken>,
    /// A symlink's target, as recorded.
    pub target: Option<Vec<u8>>,
}

/// One page of a directory listing.
#[derive(Clone, Debug)]
pub struct DirPage {
    /// The directory listed (absolute, as in the snapshot).
    pub path: PathBuf,
    /// The directory's own entry (`/` has the root's attributes).
    pub dir: EntryInfo,
    /// Entries that pass the filter, in all.
    pub total: usize,
    pub offset: usize,
    pub entries: Vec<EntryInfo>,
}

/// What a page asks for.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub offset: usize,
    /// At most [`MAX_PAGE`]; 0 means [`MAX_PAGE`].
    pub limit: usize,
    /// Only names containing this (case-insensitive), to find one entry in
    /// a directory of thousands.
    pub filter: Option<String>,
}

/// One item of a subtree being exported (an archive stream of a
/// directory): its path relative to the exported directory's parent.
pub struct ExportItem<'t> {
    pub path: PathBuf,
    pub info: EntryInfo,
    /// The content of a file, opened when the item is handed over.
    pub content: Option<Box<dyn Read + Send + 't>>,
}

/// Snapshot trees and content for a browsing face, shared by its requests.
pub struct Browser {
    ctx: Context,
    trees: Mutex<Vec<(String, Arc<Snapshot>)>>,
}

/// Checks a path typed into a face: absolute, without `..`, `.` or NUL
/// (names in a snapshot never are such, so such a path names nothing and
/// is refused rather than resolved).
pub fn check_path(path: &str) -> Result<PathBuf> {
    let bad = |why: &str| Err(OpError::Invalid(format!("path `{path}` {why}")));
    if path.contains('\0') {
        return bad("holds a NUL byte");
    }
    if !path.starts_with('/') {
        return bad("is not absolute");
    }
    // Split by hand: `Path::components` drops `.` in the middle.
    if path.split('/').any(|c| c == "." || c == "..") {
        return bad("holds `.` or `..`");
    }
    Ok(Path::new(path).components().collect())
}

fn info(name: &[u8], node: &Node) -> EntryInfo {
    let (size, token, target) = match node {
        Node::Dir(d) => (d.entries.len() as u64, None, None),
        Node::File(f) => (f.size, Some(f.token), None),
        Node::Link(l) => (l.target.len() as u64, None, Some(l.target.clone())),
    };
    EntryInfo {
        name: name.to_vec(),
        kind: Kind::of(node),
        attrs: *node.attrs(),
        size,
        token,
        target,
    }
}

fn root_info(root: &DirNode) -> EntryInfo {
    EntryInfo {
        name: b"/".to_vec(),
        kind: Kind::Dir,
        attrs: root.attrs,
        size: root.entries.len() as u64,
        token: None,
        target: None,
    }
}

fn key(source: &SourceSpec, secs: i64) -> String {
    match source {
        SourceSpec::Archive(a) => format!("A\0{a}\0{secs}"),
        SourceSpec::SnapshotDir(d) => format!("E\0{d}\0{secs}"),
    }
}

fn refuse_original(source: &SourceSpec) -> Result<()> {
    match source.original_dir() {
        Some(dir) => Err(OpError::Invalid(format!(
            "{} holds snapshots of the original epygibus, which are browsed with the command line (`epygibus ls -E {}`) or imported first (`epygibus import`)",
            dir.display(),
            dir.display()
        ))),
        None => Ok(()),
    }
}

impl Browser {
    pub fn new(ctx: Context) -> Browser {
        Browser {
            ctx,
            trees: Mutex::new(Vec::new()),
        }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The snapshots of a source, oldest first.
    pub fn snapshots(&self, source: &SourceSpec) -> Result<Vec<SnapshotName>> {
        refuse_original(source)?;
        Source::resolve(&self.ctx, source)?.snapshots()
    }

    /// The snapshot named `stamp` (`YYYY-MM-DD-HH-MM-SS`), decoded or kept
    /// from before.
    pub fn tree(&self, source: &SourceSpec, stamp: &str) -> Result<(SnapshotName, Arc<Snapshot>)> {
        refuse_original(source)?;
        let resolved = Source::resolve(&self.ctx, source)?;
        let name = named(&resolved, stamp)?;
        let key = key(source, name.secs);
        {
            let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = trees.iter().position(|(k, _)| *k == key) {
                let hit = trees.remove(i);
                let tree = hit.1.clone();
                trees.push(hit);
                return Ok((name, tree));
            }
        }
        let tree = Arc::new(crate::snapshot::format::read_snapshot(
            resolved.snapshots.as_ref(),
            &name,
        )?);
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        if trees.len() >= TREES_KEPT {
            trees.remove(0);
        }
        trees.push((key, tree.clone()));
        Ok((name, tree))
    }

    /// The `--back` number that names snapshot `stamp` for operations
    /// that take one (restore, extract, diff): counted from the oldest
    /// (negative), so a backup finishing meanwhile does not move it. Only
    /// a deletion of an older snapshot between this call and the
    /// operation's own listing could; restore and extract then take the
    /// repository lock, which deletions need too.
    pub fn back_of(&self, source: &SourceSpec, stamp: &str) -> Result<i64> {
        let names = self.snapshots(source)?;
        let at = names
            .iter()
            .position(|n| n.stamp() == stamp)
            .ok_or_else(|| no_such(stamp))?;
        Ok(-(at as i64) - 1)
    }

    /// One page of the directory at `path` in snapshot `stamp`.
    pub fn list(
        &self,
        source: &SourceSpec,
        stamp: &str,
        path: &str,
        page: &PageRequest,
    ) -> Result<DirPage> {
        let path = check_path(path)?;
        let (name, snap) = self.tree(source, stamp)?;
        let (dir, dir_info) = match retrieve::find(&snap.root, &path) {
            Some(NodeRef::Root(d)) => (d, root_info(d)),
            Some(NodeRef::Node(n @ Node::Dir(d))) => (d, info(last_name(&path), n)),
            Some(_) => {
                return Err(OpError::NotADirectory {
                    path,
                    snapshot: name.stamp(),
                });
            }
            None => {
                return Err(OpError::NotInSnapshot {
                    path,
                    snapshot: name.stamp(),
                });
            }
        };
        let limit = match page.limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let needle = page.filter.as_deref().map(str::to_lowercase);
        let passes = |n: &FileName| match &needle {
            None => true,
            Some(s) => String::from_utf8_lossy(n.as_bytes())
                .to_lowercase()
                .contains(s.as_str()),
        };
        let mut total = 0;
        let mut entries = Vec::new();
        for e in &dir.entries {
            if !passes(&e.name) {
                continue;
            }
            if total >= page.offset && entries.len() < limit {
                entries.push(info(e.name.as_bytes(), &e.node));
            }
            total += 1;
        }
        Ok(DirPage {
            path,
            dir: dir_info,
            total,
            offset: page.offset,
            entries,
        })
    }

    /// The entry at `path` in snapshot `stamp`.
    pub fn stat(&self, source: &SourceSpec, stamp: &str, path: &str) -> Result<EntryInfo> {
        let path = check_path(path)?;
        let (name, snap) = self.tree(source, stamp)?;
        match retrieve::find(&snap.root, &path) {
            Some(NodeRef::Root(d)) => Ok(root_info(d)),
            Some(NodeRef::Node(n)) => Ok(info(last_name(&path), n)),
            None => Err(OpError::NotInSnapshot {
                path,
                snapshot: name.stamp(),
            }),
        }
    }

    /// The content of the regular file at `path` in snapshot `stamp`.
    pub fn open_file(
        &self,
        source: &SourceSpec,
        stamp: &str,
        path: &str,
    ) -> Result<(EntryInfo, Box<dyn Read + Send>)> {
        let found = self.stat(source, stamp, path)?;
        let Some(token) = &found.token else {
            return Err(OpError::Invalid(format!(
                "{path} is not a regular file in snapshot {stamp}"
            )));
        };
        let repo = Source::resolve(&self.ctx, source)?.open_repo_read_only(&self.ctx)?;
        let reader = repo.open_contents_read_only(token)?;
        Ok((found, Box::new(reader)))
    }

    /// Hands every entry of the subtree at `path` to `sink`, the directory
    /// itself first and each directory before what it holds, with file
    /// content opened as it goes (an archive stream of a directory). The
    /// sink's error stops the walk (the reader went away).
    pub fn export(
        &self,
        source: &SourceSpec,
        stamp: &str,
        path: &str,
        sink: &mut dyn FnMut(ExportItem<'_>) -> std::io::Result<()>,
    ) -> Result<()> {
        let top = self.stat(source, stamp, path)?;
        if top.kind != Kind::Dir {
            return Err(OpError::Invalid(format!(
                "{path} is not a directory in snapshot {stamp}"
            )));
        }
        let (_, snap) = self.tree(source, stamp)?;
        let repo = Source::resolve(&self.ctx, source)?.open_repo_read_only(&self.ctx)?;
        let abs = check_path(path)?;
        let dir = match retrieve::find(&snap.root, &abs) {
            Some(NodeRef::Root(d)) | Some(NodeRef::Node(Node::Dir(d))) => d,
            _ => unreachable!("stat said it is a directory"),
        };
        let base = PathBuf::from(match abs.file_name() {
            Some(n) => n.to_owned(),
            None => "root".into(),
        });
        let io = |e: std::io::Error| OpError::Invalid(format!("the download stopped: {e}"));
        sink(ExportItem {
            path: base.clone(),
            info: top,
            content: None,
        })
        .map_err(io)?;
        let mut failed: Option<OpError> = None;
        let mut walk_err: Option<std::io::Error> = None;
        dir.walk(&mut |names, node| {
            if failed.is_some() || walk_err.is_some() {
                return;
            }
            let mut rel = base.clone();
            for n in names {
                rel.push(n.as_os_str());
            }
            let name = names.last().map(|n| n.as_bytes()).unwrap_or(b"");
            let content = match node {
                Node::File(f) => match repo.open_contents_read_only(&f.token) {
                    Ok(r) => Some(Box::new(r) as Box<dyn Read + Send>),
                    Err(e) => {
                        failed = Some(e.into());
                        return;
                    }
                },
                _ => None,
            };
            let item = ExportItem {
                path: rel,
                info: info(name, node),
                content,
            };
            if let Err(e) = sink(item) {
                walk_err = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(e) = walk_err {
            return Err(io(e));
        }
        Ok(())
    }
}

/// Where selected items go.
#[derive(Clone, Debug)]
pub enum Destination {
    /// Back to their original paths (as `restore`).
    Original,
    /// Into this directory (as `extract`), the one item under a new name
    /// when given.
    Into {
        dir: String,
        with_name: Option<String>,
    },
}

/// Items of one snapshot to get back.
#[derive(Clone, Debug)]
pub struct RestoreSelected {
    pub source: SourceSpec,
    pub stamp: String,
    pub paths: Vec<String>,
    pub destination: Destination,
    /// Replace differing files instead of moving them aside.
    pub overwrite: bool,
}

/// Checks a directory to extract into: absolute, no `.`, `..` or NUL, an
/// existing directory; returned canonical (symlinks resolved now, so what
/// was checked is where the files go).
pub fn extract_target(dir: &str) -> Result<PathBuf> {
    let checked = check_path(dir)?;
    let canonical = std::fs::canonicalize(&checked)
        .map_err(|e| OpError::Invalid(format!("cannot extract into {dir}: {e}")))?;
    if !canonical.is_dir() {
        return Err(OpError::Invalid(format!(
            "cannot extract into {dir}: it is not a directory"
        )));
    }
    Ok(canonical)
}

impl Browser {
    /// Restores or extracts each selected item of snapshot `stamp` in
    /// turn, adding up what was done. Everything is checked before
    /// anything is written: the paths, the kinds, the destination.
    pub fn restore_selected(
        &self,
        req: &RestoreSelected,
        command: &str,
        progress: &dyn crate::progress::Progress,
    ) -> Result<crate::snapshot::restore::RestoreReport> {
        use super::restore::{ExtractTarget, RestoreRequest, Selection, extract, restore};
        if req.paths.is_empty() {
            return Err(OpError::Invalid("select something to restore".into()));
        }
        let back = self.back_of(&req.source, &req.stamp)?;
        let mut selections = Vec::new();
        for p in &req.paths {
            let info = self.stat(&req.source, &req.stamp, p)?;
            let path = check_path(p)?;
            selections.push(match info.kind {
                Kind::Dir if path == Path::new("/") => Selection::All,
                Kind::Dir => Selection::Dir(path),
                _ => Selection::File(path),
            });
        }
        let target = match &req.destination {
            Destination::Original => None,
            Destination::Into { dir, with_name } => {
                let with_name = match with_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) if req.paths.len() > 1 => {
                        return Err(OpError::Invalid(format!(
                            "a new name (`{n}`) fits one selected item, not {}",
                            req.paths.len()
                        )));
                    }
                    Some(n) => Some(
                        FileName::new(n.as_bytes().to_vec())
                            .map_err(|e| OpError::Invalid(e.to_string()))?
                            .as_os_str()
                            .to_owned(),
                    ),
                    None => None,
                };
                if selections.iter().any(|s| matches!(s, Selection::All)) {
                    return Err(OpError::Invalid(
                        "extract a directory below `/`, or restore everything to its original place".into(),
                    ));
                }
                Some(ExtractTarget {
                    into_dir: extract_target(dir)?,
                    with_name,
                })
            }
        };
        let mut total = crate::snapshot::restore::RestoreReport::default();
        for selection in selections {
            if progress.cancelled() {
                break;
            }
            let r = RestoreRequest {
                source: req.source.clone(),
                back,
                selection,
                overwrite: req.overwrite,
            };
            let one = match &target {
                None => restore(&self.ctx, &r, command, progress)?,
                Some(t) => extract(&self.ctx, &r, t, command, progress)?,
            };
            add_report(&mut total, one);
        }
        Ok(total)
    }
}

fn add_report(
    total: &mut crate::snapshot::restore::RestoreReport,
    one: crate::snapshot::restore::RestoreReport,
) {
    total.files += one.files;
    total.bytes += one.bytes;
    total.dirs += one.dirs;
    total.links += one.links;
    total.hard_links += one.hard_links;
    total.unchanged += one.unchanged;
    total.moved_aside.extend(one.moved_aside);
    total.problems.extend(one.problems);
}

fn last_name(path: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    path.file_name().map(|n| n.as_bytes()).unwrap_or(b"/")
}

/// A snapshot name that is not (or no longer) among the snapshots.
fn no_such(stamp: &str) -> OpError {
    OpError::Invalid(format!(
        "there is no snapshot {stamp} (deleted since, or mistyped)"
    ))
}

fn named(source: &Source, stamp: &str) -> Result<SnapshotName> {
    source
        .snapshots()?
        .into_iter()
        .find(|n| n.stamp() == stamp)
        .ok_or_else(|| no_such(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_paths_are_checked() {
        assert_eq!(check_path("/a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(check_path("/").unwrap(), PathBuf::from("/"));
        for bad in ["a/b", "", "/a/../b", "/a/./b", "/..", "/a\0b", "../etc"] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn extract_targets_are_canonical_directories() {
        let t = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::os::unix::fs::symlink(real.join("d"), real.join("link")).unwrap();
        std::fs::write(real.join("f"), b"x").unwrap();
        let via_link = format!("{}/link", real.display());
        assert_eq!(extract_target(&via_link).unwrap(), real.join("d"));
        assert!(extract_target(&format!("{}/f", real.display())).is_err());
        assert!(extract_target(&format!("{}/d/../d", real.display())).is_err());
        assert!(extract_target(&format!("{}/missing", real.display())).is_err());
        assert!(extract_target("relative/dir").is_err());
    }
}
