//! The original's trees in this epygibus's model. Times become
//! nanoseconds (the original kept whole seconds); the root, for which the
//! original recorded no attributes, gets a plain directory mode; names
//! are checked as every snapshot name is, so a crafted pickle cannot steer
//! a restore. Content tokens come from the caller, who reads (and
//! verifies) the content or leaves a file out.

use super::sha1::Sha1Hex;
use super::snapshot::{OrigAttrs, OrigDir, OrigNode};
use crate::content::ContentToken;
use crate::snapshot::model::{Attrs, DirNode, Entry, FileName, FileNode, LinkNode, Node};

/// A directory, for the root the original gave no attributes.
const ROOT_MODE: u32 = 0o040755;

fn ns(secs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000)
}

pub fn attrs(a: &OrigAttrs) -> Attrs {
    Attrs {
        mode: a.mode,
        uid: a.uid,
        gid: a.gid,
        mtime_ns: ns(a.mtime),
        atime_ns: ns(a.atime),
        ctime_ns: ns(a.ctime),
        ino: a.ino,
        dev: a.dev,
        nlink: a.nlink,
    }
}

/// What the caller says of a file's content: its token and true size, or
/// `None` to leave the file out.
pub type ContentOf<'a> =
    dyn FnMut(&[&[u8]], &Sha1Hex, &OrigAttrs) -> Option<(ContentToken, u64)> + 'a;

/// Builds the tree; fails (naming the path) on a name no file can have.
pub fn tree(root: &OrigDir, content: &mut ContentOf<'_>) -> Result<DirNode, String> {
    let mut path = Vec::new();
    let mut dir = dir(root, &mut path, content)?;
    if root.attrs.is_none() {
        dir.attrs = Attrs {
            mode: ROOT_MODE,
            ..Attrs::default()
        };
    }
    Ok(dir)
}

fn dir<'a>(
    d: &'a OrigDir,
    path: &mut Vec<&'a [u8]>,
    content: &mut ContentOf<'_>,
) -> Result<DirNode, String> {
    let mut out = DirNode {
        attrs: d.attrs.as_ref().map(attrs).unwrap_or_default(),
        entries: Vec::with_capacity(d.entries.len()),
    };
    for (name, node) in &d.entries {
        path.push(name);
        let file_name = FileName::new(name.clone()).map_err(|_| {
            format!(
                "it names an entry `{}` in /{}, which no file can be called",
                String::from_utf8_lossy(name),
                shown(&path[..path.len() - 1])
            )
        })?;
        let node = match node {
            OrigNode::Dir(sub) => Some(Node::Dir(dir(sub, path, content)?)),
            OrigNode::File { attrs: a, sha1 } => content(path, sha1, a).map(|(token, size)| {
                Node::File(FileNode {
                    attrs: attrs(a),
                    size,
                    token,
                })
            }),
            OrigNode::Link {
                attrs: a, target, ..
            } => Some(Node::Link(LinkNode {
                attrs: attrs(a),
                target: target.clone(),
            })),
        };
        path.pop();
        if let Some(node) = node {
            out.entries.push(Entry {
                name: file_name,
                node,
            });
        }
    }
    // BTreeMap order is byte order, the order snapshots keep.
    Ok(out)
}

/// `a/b/c` of path components, for messages.
pub fn shown(path: &[&[u8]]) -> String {
    path.iter()
        .map(|c| String::from_utf8_lossy(c))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn file(mtime: i64) -> OrigNode {
        OrigNode::File {
            attrs: OrigAttrs {
                mode: 0o100644,
                mtime,
                nlink: 1,
                size: 3,
                ..OrigAttrs::default()
            },
            sha1: Sha1Hex::of(b"abc"),
        }
    }

    #[test]
    fn files_get_their_tokens_and_seconds_become_nanoseconds() {
        let mut sub = OrigDir::default();
        sub.entries.insert(b"f".to_vec(), file(1_433_160_000));
        sub.entries.insert(b"gone".to_vec(), file(1));
        let mut root = OrigDir::default();
        root.entries.insert(b"d".to_vec(), OrigNode::Dir(sub));
        let t = tree(&root, &mut |path, _, _| {
            (path.last() != Some(&&b"gone"[..])).then(|| (ContentToken::of(b"abc"), 3))
        })
        .unwrap();
        assert_eq!(t.attrs.mode, ROOT_MODE);
        let Some(Node::File(f)) = t.lookup([&b"d"[..], b"f"]) else {
            panic!()
        };
        assert_eq!(f.attrs.mtime_ns, 1_433_160_000_000_000_000);
        assert_eq!(f.token, ContentToken::of(b"abc"));
        assert!(t.lookup([&b"d"[..], b"gone"]).is_none());
        assert!(t.check_order().is_ok());
    }

    #[test]
    fn names_no_file_can_have_are_refused() {
        for bad in [&b".."[..], b"a/b", b"", b"x\0"] {
            let mut root = OrigDir {
                attrs: None,
                entries: BTreeMap::new(),
            };
            root.entries.insert(bad.to_vec(), file(0));
            assert!(tree(&root, &mut |_, _, _| Some((ContentToken::of(b""), 0))).is_err());
        }
    }
}
