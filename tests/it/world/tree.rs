//! Listing a tree on disk and comparing listings: everything a restore
//! must reproduce exactly (type, bytes, link target, mode, owner, times
//! to the nanosecond, hard-link grouping), or just what a command that
//! must change nothing could have changed ([`fs_state`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Size and BLAKE3 (hex).
    File(u64, String),
    /// Target bytes.
    Link(Vec<u8>),
    /// Anything else, by its file-type bits.
    Other(u32),
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    /// Of regular files, in listings taken with atimes.
    pub atime_ns: Option<i128>,
    pub nlink: u64,
    /// For files with more than one name: the smallest relative path of
    /// the same inode in this tree (the hard-link group).
    pub group: Option<PathBuf>,
}

/// Relative path (`""` for the root itself) to item.
pub type Listing = BTreeMap<PathBuf, Item>;

/// Every entry of `root` and `root` itself, not following symlinks.
pub fn listing(root: &Path) -> Listing {
    try_listing(root, false).unwrap_or_else(|e| panic!("{e}"))
}

/// [`listing`] with the atimes of regular files. Every entry is lstat()ed
/// before any file is read, and files are read with `O_NOATIME`, so that
/// listing does not change what it lists.
pub fn listing_with_atimes(root: &Path) -> Listing {
    try_listing(root, true).unwrap_or_else(|e| panic!("{e}"))
}

/// The listing without file atimes (for trees whose files were read).
pub fn without_atimes(mut l: Listing) -> Listing {
    for item in l.values_mut() {
        item.atime_ns = None;
    }
    l
}

pub fn try_listing(root: &Path, atimes: bool) -> Result<Listing, String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) -> Result<(), String> {
        let abs = root.join(rel);
        let meta =
            fs::symlink_metadata(&abs).map_err(|e| format!("lstat {}: {e}", abs.display()))?;
        let is_dir = meta.is_dir();
        out.push((rel.to_owned(), meta));
        if is_dir {
            let mut names = Vec::new();
            for e in fs::read_dir(&abs).map_err(|e| format!("list {}: {e}", abs.display()))? {
                names.push(
                    e.map_err(|e| format!("list {}: {e}", abs.display()))?
                        .file_name(),
                );
            }
            names.sort();
            for name in names {
                walk(root, &rel.join(name), out)?;
            }
        }
        Ok(())
    }
    let mut metas = Vec::new();
    walk(root, Path::new(""), &mut metas)?;
    let mut first_name: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (rel, m) in &metas {
        if m.is_file() && m.nlink() > 1 {
            let slot = first_name
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone());
            if rel < slot {
                *slot = rel.clone();
            }
        }
    }
    let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    let mut out = Listing::new();
    for (rel, m) in &metas {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            let target = fs::read_link(root.join(rel))
                .map_err(|e| format!("readlink {}: {e}", root.join(rel).display()))?;
            Kind::Link(target.as_os_str().as_bytes().to_vec())
        } else if ft.is_file() {
            Kind::File(m.len(), String::new())
        } else {
            Kind::Other(m.mode() & 0o170000)
        };
        let item = Item {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            atime_ns: (atimes && ft.is_file()).then(|| ns(m.atime(), m.atime_nsec())),
            nlink: m.nlink(),
            group: (ft.is_file() && m.nlink() > 1).then(|| first_name[&(m.dev(), m.ino())].clone()),
        };
        out.insert(rel.clone(), item);
    }
    // Content last, after every atime was taken.
    for (rel, item) in out.iter_mut() {
        if let Kind::File(size, hash) = &mut item.kind {
            (*size, *hash) = hash_file(&root.join(rel))?;
        }
    }
    Ok(out)
}

/// BLAKE3 (hex) of a file's content, read without changing its atime.
pub fn blake3_of(path: &Path) -> String {
    hash_file(path).unwrap_or_else(|e| panic!("{e}")).1
}

/// Size and BLAKE3 (hex) of a file, read without changing its atime
/// where the file system allows.
fn hash_file(path: &Path) -> Result<(u64, String), String> {
    let open = |flags| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
    };
    let mut f = open(libc::O_NOATIME | libc::O_NOFOLLOW)
        .or_else(|_| open(libc::O_NOFOLLOW))
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, h.finalize().to_hex().to_string()))
}

/// How [`listing_diff`] compares hard links.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Which names of the tree share an inode, and whether a file has
    /// other names at all (inside the tree or not).
    Exact,
    /// Only which names of the tree share an inode: a file whose other
    /// names are all outside the tree counts as one without hard links
    /// (as it is when that subtree alone is extracted).
    WithinTree,
}

/// Differences between two listings, one line each: kind and content,
/// mode, owner, mtime, atime (listings without atimes have none) and
/// hard-link grouping.
pub fn listing_diff(want: &Listing, got: &Listing, links: Links) -> Vec<String> {
    let mut diff = Vec::new();
    for (p, w) in want {
        let Some(g) = got.get(p) else {
            diff.push(format!("missing {p:?}: want {w:?}"));
            continue;
        };
        let mut what = Vec::new();
        if g.kind != w.kind {
            what.push(format!("kind {:?} != {:?}", g.kind, w.kind));
        }
        if g.mode != w.mode {
            what.push(format!("mode {:o} != {:o}", g.mode, w.mode));
        }
        if (g.uid, g.gid) != (w.uid, w.gid) {
            what.push(format!("owner {}:{} != {}:{}", g.uid, g.gid, w.uid, w.gid));
        }
        if g.mtime_ns != w.mtime_ns {
            what.push(format!("mtime {} != {}", g.mtime_ns, w.mtime_ns));
        }
        if g.atime_ns != w.atime_ns {
            what.push(format!("atime {:?} != {:?}", g.atime_ns, w.atime_ns));
        }
        let same_group = match links {
            Links::Exact => g.group == w.group,
            Links::WithinTree => g.group.as_ref().unwrap_or(p) == w.group.as_ref().unwrap_or(p),
        };
        if !same_group {
            what.push(format!("hard-link group {:?} != {:?}", g.group, w.group));
        }
        if !what.is_empty() {
            diff.push(format!("{p:?}: {}", what.join(", ")));
        }
    }
    for (p, g) in got {
        if !want.contains_key(p) {
            diff.push(format!("extra {p:?}: {g:?}"));
        }
    }
    diff
}

fn assert_no_diff(diff: &[String], what: &str) {
    assert!(
        diff.is_empty(),
        "{what}: {} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
}

/// Asserts two listings are identical (see [`listing_diff`], with
/// [`Links::Exact`]).
pub fn assert_same_listing(want: &Listing, got: &Listing, what: &str) {
    assert_no_diff(&listing_diff(want, got, Links::Exact), what);
}

/// Walks two trees and asserts they are the same in every compared
/// respect, file atimes only when `atimes`; hard links to names outside
/// either tree are not compared ([`Links::WithinTree`]).
pub fn assert_same_tree(a: &Path, b: &Path, atimes: bool, what: &str) {
    let (la, lb) = if atimes {
        (listing_with_atimes(a), listing_with_atimes(b))
    } else {
        (listing(a), listing(b))
    };
    assert_no_diff(&listing_diff(&la, &lb, Links::WithinTree), what);
}

/// What an entry holds, by content, to show a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Permission bits.
    Dir(u32),
    /// Permission bits and BLAKE3 (hex).
    File(u32, String),
    Link(Vec<u8>),
    Other,
}

/// Every entry below `dir` (not `dir` itself) by relative path, with
/// its type, mode, content and link target (no times, no owners).
pub fn fs_state(dir: &Path) -> BTreeMap<PathBuf, State> {
    listing(dir)
        .into_iter()
        .filter(|(rel, _)| !rel.as_os_str().is_empty())
        .map(|(rel, item)| {
            let state = match item.kind {
                Kind::Dir => State::Dir(item.mode),
                Kind::File(_, hash) => State::File(item.mode, hash),
                Kind::Link(target) => State::Link(target),
                Kind::Other(_) => State::Other,
            };
            (rel, state)
        })
        .collect()
}

/// Fails with the differing paths when two listings of a tree (such as
/// [`fs_state`]s) differ.
pub fn assert_same_state<V: PartialEq>(
    before: &BTreeMap<PathBuf, V>,
    after: &BTreeMap<PathBuf, V>,
    what: &str,
) {
    let mut diff = Vec::new();
    for (p, s) in before {
        match after.get(p) {
            None => diff.push(format!("removed {}", p.display())),
            Some(t) if t != s => diff.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("added {}", p.display()));
    }
    assert!(diff.is_empty(), "{what} changed files: {diff:#?}");
}
