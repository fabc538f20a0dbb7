//! The versions of one path across an archive's snapshots: "when did this
//! file change, and which snapshot still has the good one?".
//!
//! A version is a run of consecutive snapshots in which the path holds the
//! same thing: the same content (token and size) for a file, the same
//! target for a symlink, or just "a directory". Metadata alone (a `chmod`,
//! a `touch`) does not make a new version, as the content to get back is
//! the same.
//!
//! A snapshot without the path ends the run, and content that comes back
//! after a gap, or after another version (A, B, A), starts a new entry
//! rather than extending the old one. So every snapshot from `first` to
//! `last` holds exactly that version and `extract --back` of any of them
//! gets it; [`Version::same_as`] points at the earlier entry with the same
//! content, so a face can say "same as version 1" instead of hiding the
//! gap.
//!
//! [`History`] takes one snapshot at a time, so a caller can decode, feed
//! and drop each tree and hold only one in memory.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::path::Path;

use super::lookup::{Kind, components};
use super::model::{DirNode, Node};
use crate::content::ContentToken;

/// One version of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<I> {
    /// The first and last snapshot of the run holding it.
    pub first: I,
    pub last: I,
    /// How many snapshots the run spans.
    pub snapshots: usize,
    pub kind: Kind,
    /// Content size of a file, target length of a symlink, 0 for a
    /// directory.
    pub size: u64,
    /// The mtime in the run's first snapshot (when this content was
    /// written; a later `touch` does not make a new version).
    pub mtime_ns: i64,
    /// The content token of a file.
    pub token: Option<ContentToken>,
    /// The target of a symlink.
    pub target: Option<Vec<u8>>,
    /// Index of the earliest earlier entry with the same content, when this
    /// one is that content back again.
    pub same_as: Option<usize>,
}

/// What makes two versions the same.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Identity {
    File(ContentToken, u64),
    Link(Vec<u8>),
    Dir,
}

fn identity(node: &Node) -> Identity {
    match node {
        Node::File(f) => Identity::File(f.token, f.size),
        Node::Link(l) => Identity::Link(l.target.clone()),
        Node::Dir(_) => Identity::Dir,
    }
}

/// Builds a history one snapshot at a time, oldest first.
pub struct History<I> {
    names: Vec<Vec<u8>>,
    versions: Vec<Version<I>>,
    /// Index of the first entry with each content.
    seen: HashMap<Identity, usize>,
    /// The identity of the last version while the previous snapshot still
    /// held it (the run is open).
    open: Option<Identity>,
}

impl<I: Clone> History<I> {
    /// The history of an absolute path (`/` itself has none).
    pub fn new(path: &Path) -> History<I> {
        History {
            names: components(path).into_iter().map(<[u8]>::to_vec).collect(),
            versions: Vec::new(),
            seen: HashMap::new(),
            open: None,
        }
    }

    /// Adds the next snapshot (snapshots must come oldest first).
    pub fn push(&mut self, id: I, root: &DirNode) {
        let node = if self.names.is_empty() {
            None
        } else {
            root.lookup(self.names.iter().map(Vec::as_slice))
        };
        let Some(node) = node else {
            self.open = None;
            return;
        };
        let ident = identity(node);
        if self.open.as_ref() == Some(&ident) {
            let v = self.versions.last_mut().expect("an open run has a version");
            v.last = id;
            v.snapshots += 1;
            return;
        }
        let index = self.versions.len();
        let same_as = match self.seen.get(&ident) {
            Some(&i) => Some(i),
            None => {
                self.seen.insert(ident.clone(), index);
                None
            }
        };
        let (size, token, target) = match node {
            Node::File(f) => (f.size, Some(f.token), None),
            Node::Link(l) => (l.target.len() as u64, None, Some(l.target.clone())),
            Node::Dir(_) => (0, None, None),
        };
        self.versions.push(Version {
            first: id.clone(),
            last: id,
            snapshots: 1,
            kind: Kind::of(node),
            size,
            mtime_ns: node.attrs().mtime_ns,
            token,
            target,
            same_as,
        });
        self.open = Some(ident);
    }

    /// The versions, oldest first.
    pub fn finish(self) -> Vec<Version<I>> {
        self.versions
    }
}

/// The versions of `path` in `snapshots` (oldest first; trees borrowed or
/// owned). Empty when no snapshot has the path.
pub fn history<I, R>(snapshots: impl IntoIterator<Item = (I, R)>, path: &Path) -> Vec<Version<I>>
where
    I: Clone,
    R: Borrow<DirNode>,
{
    let mut h = History::new(path);
    for (id, root) in snapshots {
        h.push(id, root.borrow());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::model::FileNode;
    use crate::snapshot::testtree::{d, f, l, tree, tree_bytes, with};

    /// One row per version: kind, first, last, count, same_as.
    fn runs(v: &[Version<u32>]) -> Vec<(Kind, u32, u32, usize, Option<usize>)> {
        v.iter()
            .map(|v| (v.kind, v.first, v.last, v.snapshots, v.same_as))
            .collect()
    }

    #[test]
    fn versions_with_gaps_and_returns() {
        use Kind::*;
        let a = || f(b"version A");
        let b = || f(b"B");
        let p = "home/u/doc";
        let snaps: Vec<(u32, DirNode)> = vec![
            (1, tree(&[(p, a())])),
            (2, tree(&[(p, with(a(), |x| x.mtime_ns = 9))])), // touch: same version
            (3, tree(&[(p, b())])),
            (4, tree(&[("home/u/other", a())])), // gap
            (5, tree(&[(p, b())])),              // B again after a gap
            (6, tree(&[(p, a())])),              // A again after B
            (7, tree(&[(p, a())])),
            (8, tree(&[(p, l("elsewhere"))])),
            (9, tree(&[(p, d())])),
            (10, tree(&[(p, d()), ("home/u/doc/inner", f(b"x"))])), // still a dir
            (11, tree(&[("home", d())])),                           // gone again
        ];
        let v = history(snaps.iter().map(|(i, t)| (*i, t)), Path::new("/home/u/doc"));
        assert_eq!(
            runs(&v),
            [
                (File, 1, 2, 2, None),
                (File, 3, 3, 1, None),
                (File, 5, 5, 1, Some(1)),
                (File, 6, 7, 2, Some(0)),
                (Link, 8, 8, 1, None),
                (Dir, 9, 10, 2, None),
            ]
        );
        assert_eq!(v[0].token, Some(ContentToken::of(b"version A")));
        assert_eq!(
            (v[0].size, v[0].mtime_ns),
            (9, 0),
            "mtime of the run's first"
        );
        assert_eq!(v[4].target.as_deref(), Some(&b"elsewhere"[..]));
        assert_eq!(v[4].size, 9);
        assert_eq!(v[5].token, None);
    }

    #[test]
    fn size_alone_is_a_new_version() {
        let grown = match f(b"x") {
            Node::File(x) => Node::File(FileNode { size: 7, ..x }),
            _ => unreachable!(),
        };
        let snaps = [tree(&[("x", f(b"x"))]), tree(&[("x", grown)])];
        let v = history(snaps.iter().enumerate(), Path::new("/x"));
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].first, v[1].first), (0, 1));
    }

    #[test]
    fn missing_everywhere_or_root_is_empty() {
        let snaps = [tree(&[("a", f(b"1"))]), tree(&[("b", f(b"1"))])];
        assert!(history(snaps.iter().enumerate(), Path::new("/c")).is_empty());
        assert!(history(snaps.iter().enumerate(), Path::new("/a/x")).is_empty());
        assert!(history(snaps.iter().enumerate(), Path::new("/")).is_empty());
        // Owned trees work too (decode, feed, drop).
        let owned = snaps.into_iter().enumerate();
        assert_eq!(history(owned, Path::new("/a")).len(), 1);
    }

    #[test]
    fn non_utf8_path() {
        use std::os::unix::ffi::OsStrExt;
        let snaps = [
            tree_bytes(&[(b"d/\xff", f(b"1"))]),
            tree_bytes(&[(b"d/\xff", f(b"2"))]),
        ];
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/d/\xff"));
        assert_eq!(history(snaps.iter().enumerate(), path).len(), 2);
    }
}
