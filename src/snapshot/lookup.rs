//! What diff, find and history share: the kind of an entry and the node at
//! an absolute path. They live here rather than in each module so the three
//! commands name kinds and resolve paths the same way.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::model::{DirNode, Node};

/// What an entry is. Serialized as restic names it (`dir`, `file`,
/// `symlink`), so scripts written for `restic find --json` read ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    #[serde(rename = "symlink")]
    Link,
}

impl Kind {
    pub fn of(node: &Node) -> Kind {
        match node {
            Node::Dir(_) => Kind::Dir,
            Node::File(_) => Kind::File,
            Node::Link(_) => Kind::Link,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Link => "symlink",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names along a path inside a snapshot tree. Only normal components
/// count (`/`, `.` are skipped), as [`super::retrieve::find`] does; a
/// caller turns a user's relative path absolute first.
pub fn components(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

/// The node at an absolute path; `None` when it is missing, when a
/// component is not a directory, or for `/` itself (the root is no entry).
pub fn node_at<'t>(root: &'t DirNode, path: &Path) -> Option<&'t Node> {
    let names = components(path);
    if names.is_empty() {
        return None;
    }
    root.lookup(names)
}

/// An absolute path (`/a/b`, as built by the walks: `/` then the name for
/// each level) as a `PathBuf`, keeping non-UTF-8 bytes.
pub(crate) fn path_of(bytes: &[u8]) -> PathBuf {
    if bytes.is_empty() {
        PathBuf::from("/")
    } else {
        PathBuf::from(OsStr::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testtree::{d, f, tree};

    #[test]
    fn node_at_finds_entries_not_root() {
        let root = tree(&[("a/b", f(b"x")), ("c", d())]);
        assert!(matches!(
            node_at(&root, Path::new("/a/b")),
            Some(Node::File(_))
        ));
        assert!(matches!(
            node_at(&root, Path::new("a/./b")),
            Some(Node::File(_))
        ));
        assert!(matches!(
            node_at(&root, Path::new("/c/")),
            Some(Node::Dir(_))
        ));
        assert!(node_at(&root, Path::new("/")).is_none());
        assert!(node_at(&root, Path::new("/a/b/c")).is_none());
        assert!(node_at(&root, Path::new("/z")).is_none());
    }

    #[test]
    fn kinds_are_named_as_restic_does() {
        let json = serde_json::to_string(&[Kind::Dir, Kind::File, Kind::Link]).unwrap();
        assert_eq!(json, r#"["dir","file","symlink"]"#);
        assert_eq!(Kind::Link.to_string(), "symlink");
    }
}
