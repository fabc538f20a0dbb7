//! The original epygibus's snapshot files, read into a plain tree.
//!
//! Its `bu` pickled one `SnapshotPlus` (protocol 2 or newer): `snapshot`,
//! a `Snapshot` per directory from `/` down (`parent` pointing back up,
//! `attributes`, and the dicts `subdirs`, `files`, `file_links`,
//! `subdir_links`), `_statistics` (files, links, content bytes, new items,
//! released items), `_time_statistics` (cpu, real, io seconds) and
//! `_repo_mgmt_key` (repository directory, `ref_counter` path, lock path,
//! compressed). Snapshots from before June 2016 are a bare `Snapshot`,
//! and those from before July 2016 lack the repository key. Attributes are
//! the first ten fields of `os.lstat` as a tuple, times in whole seconds.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use super::pickle::{self, Id, Pickle, PickleError, Value};
use super::sha1::Sha1Hex;

/// The classes the original's snapshots hold; any other is refused.
pub fn allowed_class(module: &str, name: &str) -> bool {
    module == "epygibus_pkg.snapshot" && matches!(name, "SnapshotPlus" | "Snapshot")
}

/// `os.lstat(path)[:10]`, as the original recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OrigAttrs {
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Whole seconds since the epoch.
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq)]
pub enum OrigNode {
    Dir(OrigDir),
    File {
        attrs: OrigAttrs,
        sha1: Sha1Hex,
    },
    /// A symlink; `to_dir` when the original filed it under `subdir_links`.
    Link {
        attrs: OrigAttrs,
        target: Vec<u8>,
        to_dir: bool,
    },
}

/// A directory: its attributes (the root `/` has none) and entries by name.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OrigDir {
    pub attrs: Option<OrigAttrs>,
    pub entries: BTreeMap<Vec<u8>, OrigNode>,
}

/// What `bu` recorded about itself.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OrigStats {
    pub files: u64,
    pub links: u64,
    pub content_bytes: u64,
    pub new_items: u64,
    /// Seconds of wall-clock time the backup took.
    pub real_secs: f64,
}

/// A decoded snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct OrigSnapshot {
    pub root: OrigDir,
    pub stats: Option<OrigStats>,
    /// The repository directory when the snapshot was made.
    pub repo_dir: Option<Vec<u8>>,
}

/// Why a snapshot pickle is not one the original wrote.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error(transparent)]
    Pickle(#[from] PickleError),
    #[error("it does not hold the original's snapshot: {0}")]
    Shape(String),
}

type Result<T, E = ShapeError> = std::result::Result<T, E>;

fn shape<T>(what: impl Into<String>) -> Result<T> {
    Err(ShapeError::Shape(what.into()))
}

/// Deeper than any real tree; a crafted pickle whose `subdirs` loop back
/// would otherwise recurse forever.
const MAX_DEPTH: usize = 1000;

/// Decodes an (uncompressed) snapshot pickle.
pub fn decode(bytes: &[u8]) -> Result<OrigSnapshot> {
    let p = pickle::read(bytes, &allowed_class)?;
    let walker = Walker {
        p: &p,
        seen: RefCell::new(HashSet::new()),
    };
    let (class, fields) = walker.object(p.root)?;
    match class {
        "SnapshotPlus" => {
            let tree = walker.field(&fields, "snapshot")?;
            let root = walker.dir(tree, 0)?;
            let stats = walker.stats(&fields)?;
            let repo_dir = match fields.get("_repo_mgmt_key") {
                Some(&key) => Some(walker.repo_dir(key)?),
                None => None,
            };
            Ok(OrigSnapshot {
                root,
                stats,
                repo_dir,
            })
        }
        _ => Ok(OrigSnapshot {
            root: walker.dir(p.root, 0)?,
            stats: None,
            repo_dir: None,
        }),
    }
}

struct Walker<'p> {
    p: &'p Pickle,
    /// Directory objects already read: in a real snapshot each appears
    /// once, and a crafted one sharing them would take exponential time.
    seen: RefCell<HashSet<Id>>,
}

impl<'p> Walker<'p> {
    /// An instance's class name and its `__dict__` by field name.
    fn object(&self, id: Id) -> Result<(&'p str, BTreeMap<&'p str, Id>)> {
        let Value::Object { class, state, .. } = self.p.get(id) else {
            return shape("a directory is not a Snapshot instance");
        };
        let Value::Global { name, .. } = self.p.get(*class) else {
            return shape("an instance without a class");
        };
        let mut fields = BTreeMap::new();
        if let Some(state) = state {
            for (k, v) in self.dict(*state)? {
                let key = std::str::from_utf8(self.str(k)?)
                    .map_err(|_| ShapeError::Shape("a field name is not text".into()))?;
                fields.insert(key, v);
            }
        }
        Ok((name, fields))
    }

    fn field(&self, fields: &BTreeMap<&str, Id>, name: &str) -> Result<Id> {
        match fields.get(name) {
            Some(&id) => Ok(id),
            None => shape(format!("the field `{name}` is missing")),
        }
    }

    fn dict(&self, id: Id) -> Result<Vec<(Id, Id)>> {
        match self.p.get(id) {
            Value::Dict(items) => Ok(items.clone()),
            _ => shape("a dictionary was expected"),
        }
    }

    fn tuple(&self, id: Id) -> Result<&'p [Id]> {
        match self.p.get(id) {
            Value::Tuple(items) | Value::List(items) => Ok(items),
            _ => shape("a tuple was expected"),
        }
    }

    /// A name or path: `str` (Python 3) or `bytes`/`str` (Python 2).
    fn str(&self, id: Id) -> Result<&'p [u8]> {
        match self.p.get(id) {
            Value::Str(b) | Value::Bytes(b) => Ok(b),
            _ => shape("a string was expected"),
        }
    }

    fn int(&self, id: Id) -> Result<i64> {
        match self.p.get(id) {
            Value::Int(n) => Ok(*n),
            Value::Bool(b) => Ok(i64::from(*b)),
            // Python 2 could give float times; the original kept seconds.
            Value::Float(f) if f.is_finite() => Ok(f.floor() as i64),
            _ => shape("a number was expected"),
        }
    }

    fn float(&self, id: Id) -> Result<f64> {
        match self.p.get(id) {
            Value::Float(f) => Ok(*f),
            Value::Int(n) => Ok(*n as f64),
            _ => shape("a number was expected"),
        }
    }

    fn attrs(&self, id: Id) -> Result<OrigAttrs> {
        let t = self.tuple(id)?;
        if t.len() < 10 {
            return shape("attributes with fewer than ten fields");
        }
        let n = |i: usize| self.int(t[i]);
        let unsigned = |i: usize| -> Result<u64> {
            u64::try_from(n(i)?).or_else(|_| shape("a negative size, inode or count"))
        };
        let small = |i: usize| -> Result<u32> {
            u32::try_from(n(i)?).or_else(|_| shape("a mode or owner out of range"))
        };
        Ok(OrigAttrs {
            mode: small(0)?,
            ino: unsigned(1)?,
            dev: unsigned(2)?,
            nlink: unsigned(3)?,
            uid: small(4)?,
            gid: small(5)?,
            size: unsigned(6)?,
            atime: n(7)?,
            mtime: n(8)?,
            ctime: n(9)?,
        })
    }

    fn dir(&self, id: Id, depth: usize) -> Result<OrigDir> {
        if depth > MAX_DEPTH {
            return shape("directories nested deeper than any file system allows (a loop)");
        }
        if !self.seen.borrow_mut().insert(id) {
            return shape("one directory object appears in two places");
        }
        let (_, fields) = self.object(id)?;
        let attrs = match fields.get("attributes").map(|&a| self.p.get(a)) {
            None | Some(Value::None) => None,
            Some(_) => Some(self.attrs(fields["attributes"])?),
        };
        let mut dir = OrigDir {
            attrs,
            entries: BTreeMap::new(),
        };
        let mut add = |name: &[u8], node: OrigNode| -> Result<()> {
            if dir.entries.insert(name.to_vec(), node).is_some() {
                return shape(format!(
                    "the name `{}` appears twice in one directory",
                    String::from_utf8_lossy(name)
                ));
            }
            Ok(())
        };
        let list = |key: &str| -> Result<Vec<(Id, Id)>> {
            match fields.get(key) {
                Some(&d) => self.dict(d),
                None => Ok(Vec::new()),
            }
        };
        for (k, v) in list("subdirs")? {
            add(self.str(k)?, OrigNode::Dir(self.dir(v, depth + 1)?))?;
        }
        for (k, v) in list("files")? {
            let pair = self.tuple(v)?;
            let [a, token] = pair else {
                return shape("a file entry is not (attributes, token)");
            };
            let sha1 = Sha1Hex::parse(self.str(*token)?)
                .ok_or_else(|| ShapeError::Shape("a content token is not a SHA-1".into()))?;
            add(
                self.str(k)?,
                OrigNode::File {
                    attrs: self.attrs(*a)?,
                    sha1,
                },
            )?;
        }
        for (key, to_dir) in [("file_links", false), ("subdir_links", true)] {
            for (k, v) in list(key)? {
                let pair = self.tuple(v)?;
                let [a, target] = pair else {
                    return shape("a link entry is not (attributes, target)");
                };
                add(
                    self.str(k)?,
                    OrigNode::Link {
                        attrs: self.attrs(*a)?,
                        target: self.str(*target)?.to_vec(),
                        to_dir,
                    },
                )?;
            }
        }
        Ok(dir)
    }

    fn stats(&self, fields: &BTreeMap<&str, Id>) -> Result<Option<OrigStats>> {
        let Some(&counts) = fields.get("_statistics") else {
            return Ok(None);
        };
        let c = self.tuple(counts)?;
        if c.len() < 4 {
            return shape("statistics with fewer than four fields");
        }
        let count = |i: usize| self.int(c[i]).map(|n| n.max(0) as u64);
        let real_secs = match fields.get("_time_statistics") {
            Some(&t) => match self.tuple(t)? {
                [_, real, ..] => self.float(*real)?,
                _ => 0.0,
            },
            None => 0.0,
        };
        Ok(Some(OrigStats {
            files: count(0)?,
            links: count(1)?,
            content_bytes: count(2)?,
            new_items: count(3)?,
            real_secs,
        }))
    }

    fn repo_dir(&self, key: Id) -> Result<Vec<u8>> {
        match self.tuple(key)?.first() {
            Some(&dir) => Ok(self.str(dir)?.to_vec()),
            None => shape("an empty repository key"),
        }
    }
}

impl OrigDir {
    /// Every content token with its size, once per file entry.
    pub fn files(&self) -> Vec<(Sha1Hex, u64)> {
        let mut out = Vec::new();
        self.walk(&mut |_, node| {
            if let OrigNode::File { attrs, sha1 } = node {
                out.push((*sha1, attrs.size));
            }
        });
        out
    }

    /// Visits every node below (depth first) with its path components.
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&[&'a [u8]], &'a OrigNode)) {
        fn inner<'a>(
            dir: &'a OrigDir,
            path: &mut Vec<&'a [u8]>,
            visit: &mut dyn FnMut(&[&'a [u8]], &'a OrigNode),
        ) {
            for (name, node) in &dir.entries {
                path.push(name);
                visit(path, node);
                if let OrigNode::Dir(d) = node {
                    inner(d, path, visit);
                }
                path.pop();
            }
        }
        inner(self, &mut Vec::new(), visit);
    }

    /// The paths the snapshot was taken of, as components: from `/`,
    /// down through directories that hold a single subdirectory and
    /// nothing else, to the first that holds more (as the original's own
    /// `find_offset_base_subdir_bits` did), for each entry of `/` when it
    /// has several (several includes). Used where its configuration, which
    /// names the includes, is gone.
    pub fn roots(&self) -> Vec<Vec<Vec<u8>>> {
        fn down(dir: &OrigDir, mut path: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
            let mut dir = dir;
            while let [(name, OrigNode::Dir(sub))] = dir.entries.iter().collect::<Vec<_>>()[..] {
                path.push(name.clone());
                dir = sub;
            }
            path
        }
        if self.entries.len() == 1 {
            return vec![down(self, Vec::new())];
        }
        self.entries
            .iter()
            .map(|(name, node)| match node {
                OrigNode::Dir(sub) => down(sub, vec![name.clone()]),
                _ => vec![name.clone()],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::pickle::tests::{PROTO0, PROTO2};
    use super::*;

    #[test]
    fn a_bare_snapshot_tree_decodes_with_its_files_and_links() {
        for bytes in [PROTO0, PROTO2] {
            let s = decode(bytes).unwrap();
            assert!(s.stats.is_none() && s.repo_dir.is_none());
            let Some(OrigNode::Dir(d)) = s.root.entries.get(&b"d"[..]) else {
                panic!("no d")
            };
            assert_eq!(d.attrs.unwrap().mtime, 20);
            let Some(OrigNode::File { attrs, sha1 }) = d.entries.get(&b"f\xe9"[..]) else {
                panic!("no file")
            };
            assert_eq!((attrs.mode, attrs.size, attrs.ctime), (33188, 5, 31));
            assert_eq!(sha1.to_hex(), "a".repeat(40));
            assert!(matches!(
                d.entries.get(&b"l"[..]),
                Some(OrigNode::Link { to_dir: false, .. })
            ));
            assert_eq!(s.root.roots(), vec![vec![b"d".to_vec()]]);
        }
    }

    #[test]
    fn roots_follow_single_directories_for_each_include() {
        fn dir(entries: Vec<(&str, OrigNode)>) -> OrigNode {
            OrigNode::Dir(OrigDir {
                attrs: None,
                entries: entries
                    .into_iter()
                    .map(|(n, e)| (n.as_bytes().to_vec(), e))
                    .collect(),
            })
        }
        let file = || OrigNode::Link {
            attrs: OrigAttrs::default(),
            target: b"t".to_vec(),
            to_dir: false,
        };
        let OrigNode::Dir(one) = dir(vec![(
            "home",
            dir(vec![("me", dir(vec![("a", file()), ("b", file())]))]),
        )]) else {
            unreachable!()
        };
        assert_eq!(one.roots(), vec![vec![b"home".to_vec(), b"me".to_vec()]]);
        let OrigNode::Dir(two) = dir(vec![
            (
                "etc",
                dir(vec![("x", dir(vec![("a", file()), ("b", file())]))]),
            ),
            ("vmlinuz", file()),
        ]) else {
            unreachable!()
        };
        assert_eq!(
            two.roots(),
            vec![
                vec![b"etc".to_vec(), b"x".to_vec()],
                vec![b"vmlinuz".to_vec()]
            ]
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        // A pickled list is data, but not a snapshot.
        assert!(matches!(decode(b"\x80\x02]."), Err(ShapeError::Shape(_))));
        assert!(matches!(
            decode(b"\x80\x02cos\nsystem\n."),
            Err(ShapeError::Pickle(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn mutated_snapshots_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let mut bytes = PROTO2.to_vec();
            for (at, byte) in flips {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = decode(&bytes);
        }
    }
}
