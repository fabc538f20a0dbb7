//! Finding things in a decoded snapshot tree by the absolute paths the
//! tests built them at.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use epygibus::snapshot::model::{DirNode, Node};

/// Path components of an absolute path, as the snapshot tree names them.
pub fn components(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

/// The directory node of an absolute path in a snapshot tree.
pub fn dir_at<'a>(root: &'a DirNode, path: &Path) -> &'a DirNode {
    match root.lookup(components(path)) {
        Some(Node::Dir(d)) => d,
        other => panic!(
            "{} is not a directory in the snapshot: {other:?}",
            path.display()
        ),
    }
}

/// The same, to change it.
pub fn dir_at_mut<'a>(root: &'a mut DirNode, path: &Path) -> &'a mut DirNode {
    let mut dir = root;
    for c in components(path) {
        match dir.get_mut(c) {
            Some(Node::Dir(d)) => dir = d,
            other => panic!(
                "{} is not a directory in the snapshot: {other:?}",
                path.display()
            ),
        }
    }
    dir
}

/// Every node below `dir`, by path relative to it.
pub fn flatten(dir: &DirNode) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    dir.walk(&mut |names, node| {
        let rel: PathBuf = names.iter().map(|n| n.as_os_str()).collect();
        out.insert(rel, node.clone());
    });
    out
}
