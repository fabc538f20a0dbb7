//! The tree a snapshot describes: directories, regular files and symlinks
//! with their attributes, from `/` down to each include. Names are bytes,
//! so names that are not UTF-8 survive a round trip.

use std::fmt;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::content::ContentToken;

/// One path component: never empty, `.`, `..`, and never holds `/` or NUL.
/// Checked when decoded, so a crafted snapshot cannot make restore write
/// outside its target (docs/design.md, "restore never writes outside its target").
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(Vec<u8>);

/// A byte string that cannot be a single path component.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{}` is not a valid file name in a snapshot", String::from_utf8_lossy(.0))]
pub struct BadFileName(pub Vec<u8>);

impl FileName {
    pub fn new(bytes: Vec<u8>) -> Result<FileName, BadFileName> {
        let bad = bytes.is_empty()
            || bytes == b"."
            || bytes == b".."
            || bytes.iter().any(|&b| b == b'/' || b == 0);
        if bad {
            Err(BadFileName(bytes))
        } else {
            Ok(FileName(bytes))
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        FileName::new(bytes.into_vec()).map_err(serde::de::Error::custom)
    }
}

/// Attributes common to every entry (from lstat). Times are nanoseconds
/// since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attrs {
    #[serde(rename = "m")]
    pub mode: u32,
    #[serde(rename = "u")]
    pub uid: u32,
    #[serde(rename = "g")]
    pub gid: u32,
    #[serde(rename = "mt")]
    pub mtime_ns: i64,
    #[serde(rename = "at")]
    pub atime_ns: i64,
    #[serde(rename = "ct")]
    pub ctime_ns: i64,
    #[serde(rename = "i")]
    pub ino: u64,
    #[serde(rename = "dv")]
    pub dev: u64,
    #[serde(rename = "nl")]
    pub nlink: u64,
}

impl Attrs {
    pub fn from_metadata(m: &std::fs::Metadata) -> Attrs {
        let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        Attrs {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            atime_ns: ns(m.atime(), m.atime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
            nlink: m.nlink(),
        }
    }

    /// Permission bits only (with setuid/setgid/sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// A regular file: its attributes, size and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNode {
    #[serde(rename = "a")]
    pub attrs: Attrs,
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "t")]
    pub token: ContentToken,
}

/// A symbolic link; its target is stored as it was, never resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkNode {
    #[serde(rename = "a")]
    pub attrs: Attrs,
    #[serde(rename = "l", with = "serde_bytes")]
    pub target: Vec<u8>,
}

/// A directory and its entries, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DirNode {
    #[serde(rename = "a")]
    pub attrs: Attrs,
    #[serde(rename = "e")]
    pub entries: Vec<Entry>,
}

/// A named entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "n")]
    pub name: FileName,
    #[serde(rename = "k")]
    pub node: Node,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    #[serde(rename = "d")]
    Dir(DirNode),
    #[serde(rename = "f")]
    File(FileNode),
    #[serde(rename = "l")]
    Link(LinkNode),
}

impl Node {
    pub fn attrs(&self) -> &Attrs {
        match self {
            Node::Dir(d) => &d.attrs,
            Node::File(f) => &f.attrs,
            Node::Link(l) => &l.attrs,
        }
    }
}

impl DirNode {
    /// The entry called `name`, if any (entries are sorted).
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.entries[i].node)
    }

    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut Node> {
        match self
            .entries
            .binary_search_by(|e| e.name.as_bytes().cmp(name))
        {
            Ok(i) => Some(&mut self.entries[i].node),
            Err(_) => None,
        }
    }

    /// Inserts or replaces the entry `name`, keeping entries sorted.
    pub fn insert(&mut self, name: FileName, node: Node) -> &mut Node {
        let i = match self.entries.binary_search_by(|e| e.name.cmp(&name)) {
            Ok(i) => {
                self.entries[i].node = node;
                i
            }
            Err(i) => {
                self.entries.insert(i, Entry { name, node });
                i
            }
        };
        &mut self.entries[i].node
    }

    /// Sorts entries by name and drops duplicates (keeping the last).
    pub fn sort_entries(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
        self.entries.dedup_by(|later, earlier| {
            if later.name == earlier.name {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
    }

    /// The node at a path of components below this directory.
    pub fn lookup<'a>(&self, components: impl IntoIterator<Item = &'a [u8]>) -> Option<&Node> {
        let mut dir = self;
        let mut found: Option<&Node> = None;
        for c in components {
            if let Some(Node::Dir(d)) = found {
                dir = d;
            } else if found.is_some() {
                return None;
            }
            found = Some(dir.get(c)?);
        }
        found
    }

    /// Visits every node below this directory (depth first) with its path
    /// components.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&[&'a FileName], &'a Node)) {
        let mut path = Vec::new();
        self.walk_inner(&mut path, visit);
    }

    fn walk_inner<'a>(
        &'a self,
        path: &mut Vec<&'a FileName>,
        visit: &mut dyn FnMut(&[&'a FileName], &'a Node),
    ) {
        for e in &self.entries {
            path.push(&e.name);
            visit(path, &e.node);
            if let Node::Dir(d) = &e.node {
                d.walk_inner(path, visit);
            }
            path.pop();
        }
    }

    /// Checks that every directory's names are strictly increasing, so no
    /// name appears twice (a crafted snapshot could otherwise place a
    /// symlink and a directory under one name).
    pub fn check_order(&self) -> Result<(), String> {
        for pair in self.entries.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(format!(
                    "entries `{}` and `{}` are out of order or repeated",
                    pair[0].name, pair[1].name
                ));
            }
        }
        for e in &self.entries {
            if let Node::Dir(d) = &e.node {
                d.check_order()?;
            }
        }
        Ok(())
    }

    /// Every content token in the tree, once per file entry.
    pub fn tokens(&self) -> Vec<ContentToken> {
        let mut tokens = Vec::new();
        self.walk(&mut |_, node| {
            if let Node::File(f) = node {
                tokens.push(f.token);
            }
        });
        tokens
    }

    /// Replaces every file's token by what `map` gives (a copy between
    /// repositories that make tokens differently).
    pub fn map_tokens(&mut self, map: &dyn Fn(&ContentToken) -> ContentToken) {
        for entry in &mut self.entries {
            match &mut entry.node {
                Node::Dir(d) => d.map_tokens(map),
                Node::File(f) => f.token = map(&f.token),
                Node::Link(_) => {}
            }
        }
    }

    /// Counts of (directories, files, symlinks, content bytes) below here.
    pub fn counts(&self) -> TreeCounts {
        let mut c = TreeCounts::default();
        self.walk(&mut |_, node| match node {
            Node::Dir(_) => c.dirs += 1,
            Node::File(f) => {
                c.files += 1;
                c.content_bytes += f.size;
            }
            Node::Link(_) => c.links += 1,
        });
        c
    }
}

/// Sizes of a tree, for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeCounts {
    pub dirs: u64,
    pub files: u64,
    pub links: u64,
    pub content_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn bad_names_rejected() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", b"/"] {
            assert!(FileName::new(bad.to_vec()).is_err(), "{bad:?}");
        }
        assert!(FileName::new(b"..x".to_vec()).is_ok());
        assert!(FileName::new(vec![0xff, 0xfe]).is_ok());
    }

    #[test]
    fn insert_keeps_sorted_and_lookup_finds() {
        let mut root = DirNode::default();
        let sub = root.insert(name("b"), Node::Dir(DirNode::default()));
        let Node::Dir(sub) = sub else { unreachable!() };
        sub.insert(
            name("f"),
            Node::File(FileNode {
                attrs: Attrs::default(),
                size: 3,
                token: ContentToken::of(b"abc"),
            }),
        );
        root.insert(name("a"), Node::Dir(DirNode::default()));
        let names: Vec<_> = root.entries.iter().map(|e| e.name.to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(
            root.lookup([&b"b"[..], b"f"]),
            Some(Node::File(_))
        ));
        assert!(root.lookup([&b"b"[..], b"x"]).is_none());
        assert!(root.lookup([&b"a"[..], b"f"]).is_none());
        assert_eq!(root.tokens(), vec![ContentToken::of(b"abc")]);
        assert_eq!(root.counts().files, 1);
        assert_eq!(root.counts().dirs, 2);
    }

    #[test]
    fn crafted_names_fail_to_decode() {
        let entry = Entry {
            name: name("x"),
            node: Node::Link(LinkNode {
                attrs: Attrs::default(),
                target: b"t".to_vec(),
            }),
        };
        let mut bytes = rmp_serde::to_vec_named(&entry).unwrap();
        let pos = bytes.windows(1).position(|w| w == b"x").unwrap();
        bytes[pos] = b'/';
        assert!(rmp_serde::from_slice::<Entry>(&bytes).is_err());
        let ok: Entry = rmp_serde::from_slice(&rmp_serde::to_vec_named(&entry).unwrap()).unwrap();
        assert_eq!(ok, entry);
    }
}
