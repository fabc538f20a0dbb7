//! Test helpers: snapshot trees written as tables of paths, and trees read
//! from a directory on disk the way a backup records them (lstat, content
//! tokens), so diff and find can be checked against restic without the
//! backup code.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::model::{Attrs, DirNode, FileName, FileNode, LinkNode, Node};
use crate::content::ContentToken;

const FILE: u32 = 0o100644;
const DIR: u32 = 0o040755;
const LINK: u32 = 0o120777;

fn attrs(mode: u32) -> Attrs {
    Attrs {
        mode,
        nlink: 1,
        ..Attrs::default()
    }
}

/// A regular file holding `content`.
pub fn f(content: &[u8]) -> Node {
    Node::File(FileNode {
        attrs: attrs(FILE),
        size: content.len() as u64,
        token: ContentToken::of(content),
    })
}

/// A symlink to `target`.
pub fn l(target: &str) -> Node {
    Node::Link(LinkNode {
        attrs: attrs(LINK),
        target: target.as_bytes().to_vec(),
    })
}

/// An empty directory (entries come from longer paths in the table).
pub fn d() -> Node {
    Node::Dir(DirNode {
        attrs: attrs(DIR),
        entries: Vec::new(),
    })
}

/// The node with its attributes changed.
pub fn with(mut node: Node, change: impl FnOnce(&mut Attrs)) -> Node {
    change(match &mut node {
        Node::Dir(x) => &mut x.attrs,
        Node::File(x) => &mut x.attrs,
        Node::Link(x) => &mut x.attrs,
    });
    node
}

/// A tree from `(path, node)` rows; missing parent directories are made.
pub fn tree(rows: &[(&str, Node)]) -> DirNode {
    let rows: Vec<(&[u8], Node)> = rows
        .iter()
        .map(|(p, n)| (p.as_bytes(), n.clone()))
        .collect();
    tree_bytes(&rows)
}

/// [`tree`] with byte-string paths, for names that are not UTF-8.
pub fn tree_bytes(rows: &[(&[u8], Node)]) -> DirNode {
    let mut root = DirNode {
        attrs: attrs(DIR),
        entries: Vec::new(),
    };
    for (path, node) in rows {
        let names: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|n| !n.is_empty())
            .collect();
        let (last, parents) = names.split_last().expect("a path with a name");
        let mut dir = &mut root;
        for p in parents {
            if dir.get(p).is_none() {
                dir.insert(name(p), d());
            }
            let Some(Node::Dir(sub)) = dir.get_mut(p) else {
                panic!("{} is not a directory", String::from_utf8_lossy(p));
            };
            dir = sub;
        }
        match (dir.get_mut(last), node) {
            // A directory row for one made implicitly keeps its entries.
            (Some(Node::Dir(existing)), Node::Dir(new)) => existing.attrs = new.attrs,
            _ => {
                dir.insert(name(last), node.clone());
            }
        }
    }
    root
}

fn name(bytes: &[u8]) -> FileName {
    FileName::new(bytes.to_vec()).expect("a valid test name")
}

/// The tree a backup of `top` would record: every directory from `/` down
/// to `top` (with its own attributes), then everything below `top`.
/// Sockets and other special files are left out, as backups skip them.
pub fn from_disk(top: &Path) -> DirNode {
    let top = fs::canonicalize(top).unwrap();
    let mut root = DirNode {
        attrs: Attrs::from_metadata(&fs::symlink_metadata("/").unwrap()),
        entries: Vec::new(),
    };
    let mut dir = &mut root;
    let mut at = std::path::PathBuf::from("/");
    let names: Vec<_> = top.components().skip(1).collect();
    for (i, c) in names.iter().enumerate() {
        at.push(c);
        let meta = fs::symlink_metadata(&at).unwrap();
        let node = if i + 1 == names.len() {
            Node::Dir(read_dir(&at, &meta))
        } else {
            Node::Dir(DirNode {
                attrs: Attrs::from_metadata(&meta),
                entries: Vec::new(),
            })
        };
        let n = name(c.as_os_str().as_bytes());
        let Node::Dir(sub) = dir.insert(n, node) else {
            unreachable!()
        };
        dir = sub;
    }
    root
}

fn read_dir(path: &Path, meta: &fs::Metadata) -> DirNode {
    let mut out = DirNode {
        attrs: Attrs::from_metadata(meta),
        entries: Vec::new(),
    };
    for entry in fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let p = entry.path();
        let meta = fs::symlink_metadata(&p).unwrap();
        let a = Attrs::from_metadata(&meta);
        let t = meta.file_type();
        let node = if t.is_dir() {
            Node::Dir(read_dir(&p, &meta))
        } else if t.is_file() {
            let bytes = fs::read(&p).unwrap();
            Node::File(FileNode {
                attrs: a,
                size: bytes.len() as u64,
                token: ContentToken::of(&bytes),
            })
        } else if t.is_symlink() {
            Node::Link(LinkNode {
                attrs: a,
                target: fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
            })
        } else {
            continue;
        };
        out.entries.push(super::model::Entry {
            name: name(entry.file_name().as_bytes()),
            node,
        });
    }
    out.sort_entries();
    out
}

/// `dirs` directories of `files` files each (`/dir-0000/file-0000.txt`…),
/// every file with its own content: a corpus-sized tree for timings.
pub fn synthetic(dirs: u32, files: u32) -> DirNode {
    let mut root = DirNode::default();
    for i in 0..dirs {
        let mut dir = DirNode::default();
        for j in 0..files {
            let content = format!("{i}-{j}");
            dir.entries.push(super::model::Entry {
                name: name(format!("file-{j:04}.txt").as_bytes()),
                node: Node::File(FileNode {
                    attrs: attrs(FILE),
                    size: content.len() as u64,
                    token: ContentToken::of(content.as_bytes()),
                }),
            });
        }
        root.insert(name(format!("dir-{i:04}").as_bytes()), Node::Dir(dir));
    }
    root
}
