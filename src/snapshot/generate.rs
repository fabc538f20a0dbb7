//! Walking an archive's includes into a snapshot tree.
//!
//! The walk lstat()s every entry once and never follows symlinks inside
//! included directories. A file whose size and times match the previous
//! snapshot keeps its token without being read; the others are stored by
//! the repository on all cores once the walk is done. Trouble with one
//! source file (vanished, unreadable, a socket) is reported and skipped;
//! trouble with the repository aborts the backup before any snapshot is
//! written.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::change::{ChangeRules, unchanged};
use super::exclude::Excludes;
use super::model::{Attrs, DirNode, Entry, FileName, FileNode, LinkNode, Node};
use crate::content::{BackupSession, ContentError, ContentToken};
use crate::progress::Progress;

/// Where the walk's file contents go: a backup session stores them and
/// counts references; `diff --live` only hashes them ([`super::live`]).
pub trait ContentSink: Sync {
    /// Whether a file known unchanged may keep `token` (a backup checks
    /// that the content is still present and counts a reference).
    fn reuse(&self, token: &ContentToken, path: &Path) -> Result<bool, ContentError>;
    /// The token of the file at `path` (a backup stores it).
    fn store(&self, path: &Path) -> Result<ContentToken, ContentError>;
    /// One more name of a hard-linked file whose content was stored.
    fn again(&self, token: &ContentToken) -> Result<(), ContentError>;
    /// Runs the storing phase (a backup lets its store flush meanwhile).
    fn storing(&self, work: &mut dyn FnMut()) {
        work()
    }
    /// The walk found one more file to [`store`](Self::store) later (an
    /// encrypted repository prepares its key exchange meanwhile).
    fn will_store(&self) {}
    /// Every file found was stored (or failed): nothing more to prepare.
    fn stored_all(&self) {}
}

impl ContentSink for BackupSession<'_> {
    fn reuse(&self, token: &ContentToken, path: &Path) -> Result<bool, ContentError> {
        self.reference_unchanged(token, path)
    }

    fn store(&self, path: &Path) -> Result<ContentToken, ContentError> {
        self.store_contents(path)
    }

    fn again(&self, token: &ContentToken) -> Result<(), ContentError> {
        self.reference_contents(token)
    }

    fn storing(&self, work: &mut dyn FnMut()) {
        self.repository().flushing_while(work)
    }

    fn will_store(&self) {
        if let Some(key) = self.repository().key() {
            key.expect_seals(1);
        }
    }

    fn stored_all(&self) {
        if let Some(key) = self.repository().key() {
            key.expect_no_more_seals();
        }
    }
}

/// Placeholder token of a file whose content is being stored; replaced
/// before the tree leaves this module.
const PENDING: ContentToken = ContentToken::from_bytes([0; 32]);
/// How many symlinked includes are followed from one include.
const MAX_INCLUDE_HOPS: u32 = 8;

/// What to back up and how.
pub struct BackupPlan<'a> {
    pub includes: &'a [PathBuf],
    pub excludes: &'a Excludes,
    pub keep_broken_soft_links: bool,
    pub compare_inodes: bool,
    /// Read every file, trusting nothing from the previous snapshot.
    pub force_read: bool,
    /// Directories never backed up: the repository and the snapshot
    /// directory, should an include contain them.
    pub skip_dirs: Vec<PathBuf>,
}

/// Why an entry is missing from a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A symlink whose target does not exist (skipped by design unless the
    /// archive keeps broken links; not an error).
    BrokenLink,
    /// An include that does not exist.
    MissingInclude,
    /// Vanished, unreadable, changed while read, or not a file we store.
    Skipped,
}

/// One entry that was left out, and why.
#[derive(Clone, Debug)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: PathBuf,
    pub message: String,
}

/// The result of a walk.
pub struct Built {
    pub root: DirNode,
    /// Paths walked (existing includes and symlinked includes' targets).
    pub roots: Vec<PathBuf>,
    pub problems: Vec<Problem>,
    /// Files whose content was read this time.
    pub files_read: u64,
    pub walk_secs: f64,
    pub store_secs: f64,
}

/// A regular file waiting for its content to be stored.
struct Pending {
    path: PathBuf,
    /// Size when listed, for progress.
    size: u64,
    /// For the second and later names of a hard-linked file: the pending
    /// entry that stores the content.
    same_as: Option<usize>,
}

struct Walker<'a> {
    repo: &'a dyn ContentSink,
    /// (device, inode) of the plan's skipped directories.
    skip: Vec<(u64, u64)>,
    progress: &'a dyn Progress,
    plan: &'a BackupPlan<'a>,
    rules: Option<ChangeRules>,
    pending: Vec<Pending>,
    hard_links: HashMap<(u64, u64), usize>,
    problems: Vec<Problem>,
    /// Includes walked so far, so a symlink target inside one is not
    /// walked twice.
    walked: Vec<PathBuf>,
    /// Targets of symlinked includes, walked after the current include.
    deferred: Vec<(PathBuf, u32)>,
    /// Includes that lie inside another include.
    nested: Vec<PathBuf>,
    /// Excluded paths with a nested include below them: that include is
    /// walked on its own (includes are never excluded).
    reopened: Vec<PathBuf>,
}

/// Tells the sink, however the walk ends, that nothing more will be stored.
struct StoredAll<'a>(&'a dyn ContentSink);

impl Drop for StoredAll<'_> {
    fn drop(&mut self) {
        self.0.stored_all();
    }
}

/// Walks the plan's includes and stores new content; `previous` is the
/// archive's newest snapshot (root and walk start), if any.
pub fn build_tree(
    repo: &dyn ContentSink,
    plan: &BackupPlan,
    previous: Option<(&DirNode, i64)>,
    progress: &dyn Progress,
) -> Result<Built, ContentError> {
    let walk_started = std::time::Instant::now();
    let _done = StoredAll(repo);
    let rules = previous.map(|(_, started)| ChangeRules {
        previous_started_ns: started,
        compare_inodes: plan.compare_inodes,
    });
    progress.phase("scanning", 0, 0);
    let mut walker = Walker {
        repo,
        skip: plan
            .skip_dirs
            .iter()
            .filter_map(|d| fs::metadata(d).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect(),
        progress,
        plan,
        rules,
        pending: Vec::new(),
        hard_links: HashMap::new(),
        problems: Vec::new(),
        walked: Vec::new(),
        deferred: Vec::new(),
        nested: Vec::new(),
        reopened: Vec::new(),
    };
    let mut root = DirNode {
        attrs: fs::symlink_metadata("/")
            .map(|m| Attrs::from_metadata(&m))
            .unwrap_or_default(),
        entries: Vec::new(),
    };
    let prev_root = if plan.force_read {
        None
    } else {
        previous.map(|(r, _)| r)
    };
    let includes = normalized_includes(plan.includes);
    walker.nested = includes
        .iter()
        .filter(|p| includes.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect();
    let mut queue: Vec<(PathBuf, u32)> = includes.into_iter().rev().map(|p| (p, 0)).collect();
    while let Some((include, hops)) = queue.pop() {
        walker.add_include(&mut root, prev_root, &include, hops);
        queue.extend(walker.deferred.drain(..).rev());
        if progress.cancelled() {
            return Err(ContentError::Cancelled);
        }
    }
    let walk_secs = walk_started.elapsed().as_secs_f64();
    let store_started = std::time::Instant::now();
    let files_read = walker.store_pending(&mut root)?;
    Ok(Built {
        root,
        roots: walker.walked,
        problems: walker.problems,
        files_read,
        walk_secs,
        store_secs: store_started.elapsed().as_secs_f64(),
    })
}

/// Includes in walking order (a directory before what lies inside it),
/// without duplicates.
fn normalized_includes(includes: &[PathBuf]) -> Vec<PathBuf> {
    let mut sorted: Vec<PathBuf> = includes.iter().map(|p| lexical_clean(p)).collect();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// `/a/./b/` → `/a/b` (`..` is refused when an archive is created).
fn lexical_clean(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn names_of(path: &Path) -> Vec<FileName> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => FileName::new(n.to_owned().into_vec()).ok(),
            _ => None,
        })
        .collect()
}

fn as_dir(node: Option<&Node>) -> Option<&DirNode> {
    match node {
        Some(Node::Dir(d)) => Some(d),
        _ => None,
    }
}

/// The directory entry `name` of `dir`, made a directory with `attrs` if
/// it is not one yet.
fn ensure_dir<'d>(dir: &'d mut DirNode, name: &FileName, attrs: Attrs) -> &'d mut DirNode {
    if !matches!(dir.get(name.as_bytes()), Some(Node::Dir(_))) {
        dir.insert(
            name.clone(),
            Node::Dir(DirNode {
                attrs,
                entries: Vec::new(),
            }),
        );
    }
    match dir.get_mut(name.as_bytes()) {
        Some(Node::Dir(d)) => d,
        _ => unreachable!("a directory was inserted above"),
    }
}

impl<'a> Walker<'a> {
    fn problem(&mut self, kind: ProblemKind, path: &Path, message: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Adds an include: its ancestors (attributes only) and itself.
    fn add_include(
        &mut self,
        root: &mut DirNode,
        prev: Option<&DirNode>,
        include: &Path,
        hops: u32,
    ) {
        let covered = self.walked.iter().any(|w| include.starts_with(w))
            && !self.reopened.iter().any(|r| include.starts_with(r));
        if covered {
            return;
        }
        let names = names_of(include);
        let Some((leaf, ancestors)) = names.split_last() else {
            self.walked.push(PathBuf::from("/"));
            return self.walk_dir(Path::new("/"), root, prev);
        };
        let mut dir = root;
        let mut prev_dir = prev;
        let mut path = PathBuf::from("/");
        for name in ancestors {
            path.push(name.as_os_str());
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    let msg = format!("include {} cannot be reached: {e}", include.display());
                    return self.problem(ProblemKind::MissingInclude, include, msg);
                }
            };
            if meta.file_type().is_symlink() {
                // An include below a symlinked directory: keep the link and
                // back up the include at its real location.
                self.add_link(dir, name.clone(), &path, &meta);
                dir.sort_entries();
                return self.defer_target(include, hops);
            }
            if !meta.is_dir() {
                let msg = format!(
                    "include {}: {} is not a directory",
                    include.display(),
                    path.display()
                );
                return self.problem(ProblemKind::MissingInclude, include, msg);
            }
            prev_dir = as_dir(prev_dir.and_then(|p| p.get(name.as_bytes())));
            dir = ensure_dir(dir, name, Attrs::from_metadata(&meta));
        }
        path.push(leaf.as_os_str());
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("include {} does not exist: {e}", include.display());
                return self.problem(ProblemKind::MissingInclude, include, msg);
            }
        };
        self.walked.push(path.clone());
        if meta.is_dir() {
            let prev_leaf = as_dir(prev_dir.and_then(|p| p.get(leaf.as_bytes())));
            let sub = ensure_dir(dir, leaf, Attrs::from_metadata(&meta));
            return self.walk_dir(&path, sub, prev_leaf);
        }
        let is_link = meta.file_type().is_symlink();
        let kept = self.add_entry(dir, prev_dir, leaf.clone(), &path, &meta, true);
        dir.sort_entries();
        if is_link && kept {
            self.defer_target(&path, hops);
        }
    }

    /// Remembers an excluded path when an include lies at or below it.
    fn note_excluded(&mut self, path: &Path) {
        if self.nested.iter().any(|n| n.starts_with(path)) {
            self.reopened.push(path.to_owned());
        }
    }

    /// Queues what a symlinked include points to, as an include of its own.
    fn defer_target(&mut self, link: &Path, hops: u32) {
        if hops >= MAX_INCLUDE_HOPS {
            let msg = "too many levels of symlinked includes";
            return self.problem(ProblemKind::Skipped, link, msg);
        }
        if let Ok(target) = fs::canonicalize(link) {
            self.deferred.push((target, hops + 1));
        }
    }

    /// Walks the contents of directory `path` into `node`.
    fn walk_dir(&mut self, path: &Path, node: &mut DirNode, prev: Option<&DirNode>) {
        let entries = match fs::read_dir(path) {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("could not list directory {}: {e}", path.display());
                return self.problem(ProblemKind::Skipped, path, msg);
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let msg = format!("could not list directory {}: {e}", path.display());
                    self.problem(ProblemKind::Skipped, path, msg);
                    break;
                }
            };
            let os_name = entry.file_name();
            let child = path.join(&os_name);
            let meta = match fs::symlink_metadata(&child) {
                Ok(m) => m,
                Err(e) => {
                    let msg = if e.kind() == io::ErrorKind::NotFound {
                        format!("{} vanished during the backup", child.display())
                    } else {
                        format!("could not stat {}: {e}", child.display())
                    };
                    self.problem(ProblemKind::Skipped, &child, msg);
                    continue;
                }
            };
            let Ok(name) = FileName::new(os_name.into_vec()) else {
                continue;
            };
            self.progress.walked();
            if self.progress.cancelled() {
                break;
            }
            self.add_entry(node, prev, name, &child, &meta, false);
        }
        node.sort_entries();
    }

    /// Adds one entry of any kind (unsorted); returns whether it was kept.
    /// Includes themselves are never excluded.
    fn add_entry(
        &mut self,
        node: &mut DirNode,
        prev: Option<&DirNode>,
        name: FileName,
        path: &Path,
        meta: &Metadata,
        is_include: bool,
    ) -> bool {
        let excludes = self.plan.excludes;
        let os_name = name.as_os_str();
        let file_type = meta.file_type();
        if file_type.is_dir() {
            if !is_include && excludes.excludes_dir(os_name, path) {
                self.note_excluded(path);
                return false;
            }
            if self.skip.contains(&(meta.dev(), meta.ino())) {
                return false;
            }
            let prev_sub = as_dir(prev.and_then(|p| p.get(name.as_bytes())));
            let mut sub = DirNode {
                attrs: Attrs::from_metadata(meta),
                entries: Vec::new(),
            };
            self.walk_dir(path, &mut sub, prev_sub);
            node.entries.push(Entry {
                name,
                node: Node::Dir(sub),
            });
            return true;
        }
        if !is_include && excludes.excludes_file(os_name, path) {
            self.note_excluded(path);
            return false;
        }
        if file_type.is_file() {
            let prev_file = match prev.and_then(|p| p.get(name.as_bytes())) {
                Some(Node::File(f)) => Some(f),
                _ => None,
            };
            self.add_file(node, prev_file, name, path, meta);
            true
        } else if file_type.is_symlink() {
            self.add_link(node, name, path, meta)
        } else {
            let msg = format!(
                "{} is a socket, FIFO or device: not backed up",
                path.display()
            );
            self.problem(ProblemKind::Skipped, path, msg);
            false
        }
    }

    /// Adds a symlink unless it is broken and the archive skips broken
    /// links; returns whether it was added.
    fn add_link(
        &mut self,
        node: &mut DirNode,
        name: FileName,
        path: &Path,
        meta: &Metadata,
    ) -> bool {
        let target = match fs::read_link(path) {
            Ok(t) => t.into_os_string().into_vec(),
            Err(e) => {
                let msg = format!("could not read symlink {}: {e}", path.display());
                self.problem(ProblemKind::Skipped, path, msg);
                return false;
            }
        };
        if fs::metadata(path).is_err() && !self.plan.keep_broken_soft_links {
            let msg = format!(
                "skipped broken symlink {} -> {}",
                path.display(),
                String::from_utf8_lossy(&target)
            );
            self.problem(ProblemKind::BrokenLink, path, msg);
            return false;
        }
        node.entries.push(Entry {
            name,
            node: Node::Link(LinkNode {
                attrs: Attrs::from_metadata(meta),
                target,
            }),
        });
        true
    }

    /// Adds a regular file: with the previous token when unchanged, else
    /// as pending content to store.
    fn add_file(
        &mut self,
        node: &mut DirNode,
        prev: Option<&FileNode>,
        name: FileName,
        path: &Path,
        meta: &Metadata,
    ) {
        let attrs = Attrs::from_metadata(meta);
        let size = meta.len();
        let reusable = match (prev, self.rules) {
            (Some(p), Some(rules)) => unchanged(p, &attrs, size, rules).then_some(p.token),
            _ => None,
        };
        let token = match reusable {
            Some(t) if self.repo.reuse(&t, path).unwrap_or(false) => t,
            _ => {
                self.queue_content(path, &attrs, size);
                PENDING
            }
        };
        node.entries.push(Entry {
            name,
            node: Node::File(FileNode { attrs, size, token }),
        });
    }

    fn queue_content(&mut self, path: &Path, attrs: &Attrs, size: u64) {
        let index = self.pending.len();
        let same_as = if attrs.nlink > 1 {
            match self.hard_links.entry((attrs.dev, attrs.ino)) {
                MapEntry::Occupied(first) => Some(*first.get()),
                MapEntry::Vacant(slot) => {
                    slot.insert(index);
                    None
                }
            }
        } else {
            None
        };
        if same_as.is_none() {
            self.repo.will_store();
        }
        self.pending.push(Pending {
            path: path.to_owned(),
            size,
            same_as,
        });
    }

    /// Stores pending content on all cores and puts the tokens in the tree;
    /// files that could not be read are reported and removed. Returns how
    /// many files were read.
    fn store_pending(&mut self, root: &mut DirNode) -> Result<u64, ContentError> {
        let repo = self.repo;
        let progress = self.progress;
        let abort = AtomicBool::new(false);
        let total_bytes: u64 = self
            .pending
            .iter()
            .filter(|p| p.same_as.is_none())
            .map(|p| p.size)
            .sum();
        let total_files = self.pending.iter().filter(|p| p.same_as.is_none()).count();
        progress.phase("storing", total_files as u64, total_bytes);
        let mut stored: Vec<Option<Result<ContentToken, ContentError>>> = Vec::new();
        repo.storing(&mut || {
            stored = crate::pool::io_pool().install(|| {
                self.pending
                    .par_iter()
                    .map(|p| {
                        if p.same_as.is_some() || abort.load(Ordering::Relaxed) {
                            return None;
                        }
                        if progress.cancelled() {
                            abort.store(true, Ordering::Relaxed);
                            return Some(Err(ContentError::Cancelled));
                        }
                        let result = repo.store(&p.path);
                        progress.file_done(p.size);
                        if matches!(&result, Err(e) if !e.is_source_problem()) {
                            abort.store(true, Ordering::Relaxed);
                        }
                        Some(result)
                    })
                    .collect()
            })
        });
        if abort.load(Ordering::Relaxed) {
            let first_failure = stored
                .into_iter()
                .flatten()
                .find_map(|r| r.err().filter(|e| !e.is_source_problem()));
            return Err(first_failure.expect("abort is set only after a repository error"));
        }
        let mut outcomes: Vec<Result<ContentToken, String>> = Vec::with_capacity(stored.len());
        let mut files_read = 0;
        for (i, result) in stored.into_iter().enumerate() {
            let outcome = match (result, self.pending[i].same_as) {
                (Some(Ok(token)), _) => {
                    files_read += 1;
                    Ok(token)
                }
                (Some(Err(e)), _) => Err(e.to_string()),
                (None, Some(first)) => match &outcomes[first] {
                    Ok(token) => {
                        repo.again(token)?;
                        Ok(*token)
                    }
                    Err(why) => Err(why.clone()),
                },
                (None, None) => unreachable!("every file is stored unless storing was aborted"),
            };
            outcomes.push(outcome);
        }
        for (pending, outcome) in self.pending.iter().zip(&outcomes) {
            let names = names_of(&pending.path);
            match outcome {
                Ok(token) => set_token(root, &names, *token),
                Err(why) => {
                    remove_entry(root, &names);
                    self.problems.push(Problem {
                        kind: ProblemKind::Skipped,
                        path: pending.path.clone(),
                        message: format!("skipped {}: {why}", pending.path.display()),
                    });
                }
            }
        }
        Ok(files_read)
    }
}

fn parent_dir_mut<'d>(root: &'d mut DirNode, names: &[FileName]) -> Option<&'d mut DirNode> {
    let mut dir = root;
    for name in names {
        match dir.get_mut(name.as_bytes()) {
            Some(Node::Dir(d)) => dir = d,
            _ => return None,
        }
    }
    Some(dir)
}

fn set_token(root: &mut DirNode, names: &[FileName], token: ContentToken) {
    let Some((leaf, parents)) = names.split_last() else {
        return;
    };
    if let Some(Node::File(f)) =
        parent_dir_mut(root, parents).and_then(|d| d.get_mut(leaf.as_bytes()))
    {
        f.token = token;
    }
}

fn remove_entry(root: &mut DirNode, names: &[FileName]) {
    let Some((leaf, parents)) = names.split_last() else {
        return;
    };
    if let Some(dir) = parent_dir_mut(root, parents) {
        dir.entries.retain(|e| e.name != *leaf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_sorted_outer_first_without_duplicates() {
        let got = normalized_includes(&[
            PathBuf::from("/home/u/docs"),
            PathBuf::from("/home/u"),
            PathBuf::from("/etc/./x"),
            PathBuf::from("/etc/x"),
            PathBuf::from("/home/u2"),
        ]);
        assert_eq!(
            got,
            [
                PathBuf::from("/etc/x"),
                PathBuf::from("/home/u"),
                PathBuf::from("/home/u/docs"),
                PathBuf::from("/home/u2")
            ]
        );
    }
}
