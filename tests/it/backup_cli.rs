//! Integration tests of the snapshot-archive commands (`new`, `edit`, `la`,
//! `show`, `bu`, `lss`, `del`, `compress -A`) together with the repository
//! commands that see their effects (`repo_stats`, `prune`,
//! `list_content_items`), driving the real binary on temp dirs and decoding
//! the snapshots it writes through the library.
//!
//! See `world` for the isolation of every run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::world::files::{gunzip, is_root};
use crate::world::snapshot::{components, dir_at, flatten};
use crate::world::tree::{State, assert_same_state, fs_state};
use crate::world::{Run, World, chmod, lib_api, noise, ns, settle, text};
use epygibus::content::ContentToken;
use epygibus::snapshot::format::{Snapshot, SnapshotName};
use epygibus::snapshot::model::{DirNode, FileNode, Node};

// ---------------------------------------------------------------------------
// The hard tree
// ---------------------------------------------------------------------------

/// Content shared by three files in different directories.
const DUP: &[u8] = b"the same bytes in three files\n";
/// Pseudo-random, so it stays plain in a gzip repository.
const BIG_LEN: usize = 5 * 1024 * 1024 + 12_345;
/// Compressible text.
const TEXT_LEN: usize = 3 * 1024 * 1024 + 7;
/// Exclusions every hard-tree archive uses (as `new` options).
const EXCLUDES: [&str; 4] = ["-Xd", "cache", "-Xf", "*.o"];

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn put(path: &Path, data: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

fn mksocket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(fs::symlink_metadata(path).unwrap().file_type().is_socket());
}

/// mtime of `old.txt`: before 1970, so its nanoseconds are negative.
fn old_mtime() -> SystemTime {
    UNIX_EPOCH - Duration::from_millis(1500)
}

/// mtime of `precise.txt`, to the nanosecond.
fn precise_mtime() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789)
}

/// Builds the hard tree at `r` (see the lists below for what it holds).
fn hard_tree(r: &Path) {
    fs::create_dir_all(r).unwrap();
    put(&r.join("empty.txt"), b"", 0o644);
    put(&r.join("empty-too"), b"", 0o640);
    put(&r.join("big.bin"), &noise(BIG_LEN, 1), 0o644);
    put(&r.join("text.log"), &text(TEXT_LEN, 2), 0o644);
    put(&r.join("private.key"), b"not really a key\n", 0o600);
    put(&r.join("run.sh"), b"#!/bin/sh\necho hello\n", 0o755);
    put(&r.join("readonly.txt"), b"look, don't touch\n", 0o444);
    put(&r.join("with space.txt"), b"spaces in the name\n", 0o644);
    put(&r.join("café é.txt"), "accents: é\n".as_bytes(), 0o644);
    put(&r.join("日本/語 file.txt"), "日本語\n".as_bytes(), 0o644);
    put(&r.join(os(b"bad\xffname.txt")), b"not UTF-8\n", 0o644);
    put(
        &r.join(os(b"dir\xfe")).join("inner.txt"),
        b"inside\n",
        0o644,
    );
    put(&r.join("dup-a.txt"), DUP, 0o644);
    put(&r.join("sub/dup-b.txt"), DUP, 0o600);
    put(&r.join("deep/a/b/c/dup-c.txt"), DUP, 0o644);
    put(&r.join("hard-1"), b"one inode, two names\n", 0o644);
    fs::hard_link(r.join("hard-1"), r.join("sub/hard-2")).unwrap();
    fs::create_dir(r.join("empty-dir")).unwrap();
    fs::create_dir_all(r.join("deep/a/b/c/d/e")).unwrap();
    put(&r.join("setgid-dir/inside.txt"), b"setgid\n", 0o644);
    chmod(&r.join("setgid-dir"), 0o2775);
    fs::create_dir(r.join("sticky-dir")).unwrap();
    chmod(&r.join("sticky-dir"), 0o1777);
    put(&r.join("owned.txt"), b"owned by someone else\n", 0o644);
    if is_root() {
        std::os::unix::fs::lchown(r.join("owned.txt"), Some(1234), Some(5678)).unwrap();
    }
    put(&r.join("old.txt"), b"from before 1970\n", 0o644);
    set_mtime(&r.join("old.txt"), old_mtime());
    put(&r.join("precise.txt"), b"nanoseconds\n", 0o644);
    set_mtime(&r.join("precise.txt"), precise_mtime());
    symlink("text.log", r.join("link-to-file")).unwrap();
    symlink("deep/a", r.join("link-to-dir")).unwrap();
    symlink(r.join("run.sh"), r.join("abs-link")).unwrap();
    symlink(os(b"bad\xffname.txt"), r.join("link-odd-bytes")).unwrap();
    symlink("../dup-a.txt", r.join("sub/link-up")).unwrap();
    symlink("does/not/exist", r.join("broken-link")).unwrap();
    // Left out by `-Xf '*.o'` and `-Xd cache`. The FIFO makes a walk into
    // an excluded directory visible (it would be reported, exit 3).
    put(&r.join("x.o"), b"object\n", 0o644);
    put(&r.join("sub/y.o"), b"object y\n", 0o644);
    put(&r.join("deep/a/z.o"), b"object z\n", 0o644);
    symlink("text.log", r.join("link.o")).unwrap();
    symlink("nowhere", r.join("broken.o")).unwrap();
    put(&r.join("cache/c1.txt"), b"cached\n", 0o644);
    put(&r.join("cache/nested/c2.txt"), b"cached too\n", 0o644);
    mkfifo(&r.join("cache/fifo"));
    put(&r.join("sub/cache/c3.txt"), b"cached three\n", 0o644);
    fs::create_dir_all(r.join("deep/a/b/cache")).unwrap();
    // Look like excluded ones but are kept: a file called `cache`, a
    // directory called `*.o`, names that only resemble `*.o`.
    put(&r.join("sub/other/cache"), b"a file named cache\n", 0o644);
    put(
        &r.join("dir.o/kept.txt"),
        b"in a directory named dir.o\n",
        0o644,
    );
    put(&r.join("x.oo"), b"not an object\n", 0o644);
    put(&r.join("o"), b"just o\n", 0o644);
}

fn rel(bytes: &[u8]) -> PathBuf {
    PathBuf::from(os(bytes))
}

const PRESENT_FILES: [&[u8]; 25] = [
    b"empty.txt",
    b"empty-too",
    b"big.bin",
    b"text.log",
    b"private.key",
    b"run.sh",
    b"readonly.txt",
    b"with space.txt",
    "café é.txt".as_bytes(),
    "日本/語 file.txt".as_bytes(),
    b"bad\xffname.txt",
    b"dir\xfe/inner.txt",
    b"dup-a.txt",
    b"sub/dup-b.txt",
    b"deep/a/b/c/dup-c.txt",
    b"hard-1",
    b"sub/hard-2",
    b"setgid-dir/inside.txt",
    b"owned.txt",
    b"old.txt",
    b"precise.txt",
    b"sub/other/cache",
    b"dir.o/kept.txt",
    b"x.oo",
    b"o",
];

const PRESENT_DIRS: [&[u8]; 9] = [
    b"empty-dir",
    b"deep/a/b/c/d/e",
    b"setgid-dir",
    b"sticky-dir",
    "日本".as_bytes(),
    b"dir\xfe",
    b"dir.o",
    b"sub/other",
    b"sub",
];

const ABSENT: [&[u8]; 11] = [
    b"x.o",
    b"sub/y.o",
    b"deep/a/z.o",
    b"link.o",
    b"broken.o",
    b"cache",
    b"cache/c1.txt",
    b"sub/cache",
    b"deep/a/b/cache",
    b"broken-link",
    b"link-to-dir/b",
];

/// The links the hard tree keeps, with their targets as stored.
fn present_links(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    vec![
        (rel(b"link-to-file"), b"text.log".to_vec()),
        (rel(b"link-to-dir"), b"deep/a".to_vec()),
        (
            rel(b"abs-link"),
            root.join("run.sh").as_os_str().as_bytes().to_vec(),
        ),
        (rel(b"link-odd-bytes"), b"bad\xffname.txt".to_vec()),
        (rel(b"sub/link-up"), b"../dup-a.txt".to_vec()),
    ]
}

/// What a snapshot of `root` should hold, by the archive rules written out
/// independently: directories named `cache` and non-directories named
/// `*.o` are left out, broken symlinks unless kept, sockets and FIFOs
/// always. Values are lstat metadata.
fn expected_entries(root: &Path, keep_broken: bool) -> BTreeMap<PathBuf, fs::Metadata> {
    fn walk(root: &Path, dir: &Path, keep: bool, out: &mut BTreeMap<PathBuf, fs::Metadata>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().as_bytes();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let keep_it = if ft.is_dir() {
                name != b"cache"
            } else if name.ends_with(b".o") {
                false
            } else if ft.is_symlink() {
                keep || fs::metadata(&p).is_ok()
            } else {
                ft.is_file()
            };
            if !keep_it {
                continue;
            }
            out.insert(p.strip_prefix(root).unwrap().to_owned(), m.clone());
            if ft.is_dir() {
                walk(root, &p, keep, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, keep_broken, &mut out);
    out
}

/// Asserts the snapshot holds exactly [`expected_entries`] below `root`,
/// each with the type, size, mode, owner, times, inode, link count, link
/// target and content of the source, and the ancestors of `root` as bare
/// directories with their own attributes. Returns the nodes by path.
fn assert_matches_source(
    snap: &Snapshot,
    root: &Path,
    keep_broken: bool,
) -> BTreeMap<PathBuf, Node> {
    let want = expected_entries(root, keep_broken);
    let got = flatten(dir_at(&snap.root, root));
    let missing: Vec<_> = want.keys().filter(|p| !got.contains_key(*p)).collect();
    let extra: Vec<_> = got.keys().filter(|p| !want.contains_key(*p)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "snapshot differs from the source:\nmissing {missing:#?}\nextra {extra:#?}"
    );
    for (path, m) in &want {
        let node = &got[path];
        let a = node.attrs();
        let src = root.join(path);
        let what = path.display();
        assert_eq!(a.mode, m.mode(), "{what}: mode");
        assert_eq!((a.uid, a.gid), (m.uid(), m.gid()), "{what}: owner");
        assert_eq!(a.mtime_ns, ns(m.mtime(), m.mtime_nsec()), "{what}: mtime");
        assert_eq!(a.ctime_ns, ns(m.ctime(), m.ctime_nsec()), "{what}: ctime");
        assert_eq!(
            (a.ino, a.dev, a.nlink),
            (m.ino(), m.dev(), m.nlink()),
            "{what}: inode"
        );
        match node {
            Node::File(f) => {
                assert!(m.is_file(), "{what}: stored as a file");
                assert_eq!(f.size, m.len(), "{what}: size");
                let data = fs::read(&src).unwrap();
                assert_eq!(f.token, ContentToken::of(&data), "{what}: token");
            }
            Node::Link(l) => {
                assert!(m.file_type().is_symlink(), "{what}: stored as a link");
                let target = fs::read_link(&src).unwrap();
                assert_eq!(l.target, target.as_os_str().as_bytes(), "{what}: target");
            }
            Node::Dir(_) => assert!(m.is_dir(), "{what}: stored as a directory"),
        }
    }
    // From `/` down to the include, directories with their attributes;
    // with one include, nothing else beside them.
    let single = snap.header.includes.len() == 1;
    let mut dir: &DirNode = &snap.root;
    let mut path = PathBuf::from("/");
    for c in components(root) {
        if single {
            let names: Vec<_> = dir.entries.iter().map(|e| e.name.as_bytes()).collect();
            assert_eq!(
                names,
                [c],
                "{} holds only the way to the include",
                path.display()
            );
        }
        path.push(os(c));
        let Some(Node::Dir(d)) = dir.get(c) else {
            panic!("{} is not a directory in the snapshot", path.display())
        };
        let m = fs::symlink_metadata(&path).unwrap();
        assert_eq!(d.attrs.mode, m.mode(), "{}: mode", path.display());
        assert_eq!(d.attrs.ino, m.ino(), "{}: inode", path.display());
        dir = d;
    }
    got
}

fn file<'a>(nodes: &'a BTreeMap<PathBuf, Node>, path: &[u8]) -> &'a FileNode {
    match nodes.get(&rel(path)) {
        Some(Node::File(f)) => f,
        other => panic!("{}: not a file: {other:?}", rel(path).display()),
    }
}

/// Number of distinct inodes among the regular files of `entries`.
fn distinct_inodes(entries: &BTreeMap<PathBuf, fs::Metadata>) -> usize {
    entries
        .values()
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()))
        .collect::<HashSet<_>>()
        .len()
}

/// A repository `r` and an archive over a fresh hard tree.
fn hard_env(archive: &str, extra: &[&str]) -> (World, PathBuf) {
    let env = World::new();
    env.new_repo("r");
    let tree = env.src().join("tree");
    hard_tree(&tree);
    let mut opts = EXCLUDES.to_vec();
    opts.extend_from_slice(extra);
    env.new_archive(archive, "r", &[&tree], &opts);
    (env, tree)
}

fn broken_link_line(tree: &Path) -> String {
    format!(
        "epygibus: skipped broken symlink {} -> does/not/exist",
        tree.join("broken-link").display()
    )
}

/// The numbers of `bu --stats`: (files read, new content items, skipped).
fn bu_stats(out: &str) -> (u64, u64, u64) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("files read "))
        .unwrap_or_else(|| panic!("no `files read` line in {out}"));
    let num = |key: &str| -> u64 {
        let at = line
            .find(key)
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("bad {key} in {line}"))
    };
    (
        num("files read "),
        num("new content items "),
        num("skipped "),
    )
}

/// A table's rows split into cells (columns are two or more spaces apart).
fn table(lines: &[String]) -> Vec<Vec<String>> {
    lines
        .iter()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn stamps(names: &[SnapshotName]) -> Vec<String> {
    names.iter().map(SnapshotName::stamp).collect()
}

/// `date -u` spelling of a Unix time in the snapshot naming scheme.
fn date_stamp(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d-%H-%M-%S"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ---------------------------------------------------------------------------
// 1. What a snapshot holds
// ---------------------------------------------------------------------------

#[test]
fn hard_tree_snapshot_matches_the_source() {
    let (env, tree) = hard_env("hard", &[]);
    let run = env.run(&["bu", "-A", "hard"]).code(0);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr_lines(), [broken_link_line(&tree)], "{run:?}");

    let snaps = env.snapshots("hard");
    assert_eq!(snaps.len(), 1);
    let (name, snap) = &snaps[0];
    let nodes = assert_matches_source(snap, &tree, false);

    // Explicit expectations, independent of lstat.
    for p in PRESENT_FILES {
        file(&nodes, p);
    }
    for p in PRESENT_DIRS {
        assert!(
            matches!(nodes.get(&rel(p)), Some(Node::Dir(_))),
            "{:?}",
            rel(p)
        );
    }
    for (p, target) in present_links(&tree) {
        match nodes.get(&p) {
            Some(Node::Link(l)) => assert_eq!(l.target, target, "{}", p.display()),
            other => panic!("{}: not a link: {other:?}", p.display()),
        }
    }
    for p in ABSENT {
        assert!(
            !nodes.contains_key(&rel(p)),
            "{:?} should be left out",
            rel(p)
        );
    }
    let perms = |p: &[u8]| nodes[&rel(p)].attrs().mode & 0o7777;
    assert_eq!(perms(b"private.key"), 0o600);
    assert_eq!(perms(b"run.sh"), 0o755);
    assert_eq!(perms(b"readonly.txt"), 0o444);
    assert_eq!(perms(b"setgid-dir"), 0o2775);
    assert_eq!(perms(b"sticky-dir"), 0o1777);
    if is_root() {
        let owned = file(&nodes, b"owned.txt").attrs;
        assert_eq!((owned.uid, owned.gid), (1234, 5678));
    }
    assert_eq!(file(&nodes, b"old.txt").attrs.mtime_ns, -1_500_000_000);
    assert_eq!(
        file(&nodes, b"precise.txt").attrs.mtime_ns,
        1_000_000_000_123_456_789
    );
    assert_eq!(file(&nodes, b"big.bin").size, BIG_LEN as u64);
    assert_eq!(file(&nodes, b"text.log").size, TEXT_LEN as u64);
    assert_eq!(file(&nodes, b"empty.txt").size, 0);

    // Non-UTF-8 names come back byte for byte.
    let odd = dir_at(&snap.root, &tree)
        .entries
        .iter()
        .find(|e| e.name.as_bytes() == b"bad\xffname.txt")
        .expect("non-UTF-8 name kept");
    assert!(matches!(odd.node, Node::File(_)));

    // Hard links: one inode, one token; duplicates: one token.
    let (h1, h2) = (file(&nodes, b"hard-1"), file(&nodes, b"sub/hard-2"));
    assert_eq!((h1.attrs.ino, h1.attrs.dev), (h2.attrs.ino, h2.attrs.dev));
    assert_eq!(h1.attrs.nlink, 2);
    assert_eq!(h1.token, h2.token);
    let dups: HashSet<ContentToken> =
        [&b"dup-a.txt"[..], b"sub/dup-b.txt", b"deep/a/b/c/dup-c.txt"]
            .iter()
            .map(|p| file(&nodes, p).token)
            .collect();
    assert_eq!(dups.len(), 1);
    assert_eq!(dups.into_iter().next(), Some(ContentToken::of(DUP)));
    assert_eq!(
        file(&nodes, b"empty.txt").token,
        file(&nodes, b"empty-too").token
    );
    assert_ne!(
        file(&nodes, b"big.bin").token,
        file(&nodes, b"text.log").token
    );

    // The header and its statistics.
    let want = expected_entries(&tree, false);
    let h = &snap.header;
    assert_eq!(h.archive, "hard");
    assert_eq!(h.includes.len(), 1);
    assert_eq!(h.includes[0].as_slice(), tree.as_os_str().as_bytes());
    assert!(h.started_ns <= h.finished_ns);
    let files = nodes
        .values()
        .filter(|n| matches!(n, Node::File(_)))
        .count() as u64;
    let links = nodes
        .values()
        .filter(|n| matches!(n, Node::Link(_)))
        .count() as u64;
    assert_eq!(h.stats.counts.files, files);
    assert_eq!(h.stats.counts.links, links);
    assert_eq!(h.stats.files_read, distinct_inodes(&want) as u64);
    let tokens: HashSet<ContentToken> = snap.root.tokens().into_iter().collect();
    // Exactly one per distinct content: see
    // identical_new_files_are_one_new_item (files with the same content
    // stored at once can each count as new).
    assert!(h.stats.new_items >= tokens.len() as u64);
    assert_eq!(h.stats.skipped, 0);

    // The name is the start second, in UTC.
    assert!(name.compressed);
    assert_eq!(name.secs, h.started_ns.div_euclid(1_000_000_000));
    assert_eq!(name.stamp(), date_stamp(name.secs));
    assert_eq!(
        env.lss("hard", &[]),
        [format!("{}**", date_stamp(name.secs))]
    );

    // The content is in the repository, byte for byte.
    env.assert_content_intact("r", tokens);
    env.assert_ref_counts("r", &["hard"], &[], "after the first bu");
}

#[test]
fn quiet_hides_broken_links_and_nothing_else_is_reported() {
    let (env, tree) = hard_env("hard", &[]);
    let loud = env.run(&["bu", "-A", "hard"]).code(0);
    assert_eq!(loud.stderr_lines(), [broken_link_line(&tree)]);
    let quiet = env.run(&["bu", "--quiet", "-A", "hard"]).code(0).quiet();
    assert!(quiet.stdout.is_empty(), "{quiet:?}");
    let short = env.run(&["bu", "-q", "-A", "hard"]).code(0).quiet();
    assert!(short.stdout.is_empty());
    let snaps = env.snapshots("hard");
    assert_eq!(snaps.len(), 3);
    for (_, s) in &snaps {
        let nodes = flatten(dir_at(&s.root, &tree));
        assert!(!nodes.contains_key(&rel(b"broken-link")));
    }
}

#[test]
fn keep_broken_soft_links_keeps_them() {
    let (env, tree) = hard_env("keep", &["--keep-broken-soft-links"]);
    assert!(
        env.ok(&["show", "-A", "keep"])
            .contains("Broken symlinks:    kept")
    );
    let run = env.run(&["bu", "-A", "keep"]).code(0).quiet();
    assert!(run.stdout.is_empty());
    let snap = env.newest("keep");
    let nodes = assert_matches_source(&snap, &tree, true);
    match nodes.get(&rel(b"broken-link")) {
        Some(Node::Link(l)) => assert_eq!(l.target, b"does/not/exist"),
        other => panic!("broken link not kept: {other:?}"),
    }
    // Excluded broken links stay excluded.
    assert!(!nodes.contains_key(&rel(b"broken.o")));
}

// ---------------------------------------------------------------------------
// 2, 3. Reference counts and prune
// ---------------------------------------------------------------------------

#[test]
fn reference_counts_follow_every_bu_and_del() {
    let env = World::new();
    env.new_repo("r");
    let tree = env.src().join("tree");
    hard_tree(&tree);
    env.new_archive("one", "r", &[&tree], &EXCLUDES);
    // A second archive on the same repository, over part of the tree.
    env.new_archive(
        "two",
        "r",
        &[&tree.join("sub"), &tree.join("deep")],
        &EXCLUDES,
    );
    let both = ["one", "two"];
    let check = |when: &str| env.assert_ref_counts("r", &both, &[], when);

    settle();
    env.run(&["bu", "-q", "-A", "one", "-A", "two"]).code(0);
    let first = check("after bu of both");
    assert_eq!(
        first[&ContentToken::of(DUP)],
        3 + 2,
        "dup shared by both archives"
    );

    // Unchanged files are taken from the previous snapshot from now on.
    env.run(&["bu", "-q", "-A", "one"]).code(0);
    check("after an unchanged bu");

    // Changes: new duplicate, removed file, changed content, a third name
    // for the hard-linked inode.
    fs::write(tree.join("sub/new.txt"), DUP).unwrap();
    fs::remove_file(tree.join("dup-a.txt")).unwrap();
    let mut longer = fs::read(tree.join("text.log")).unwrap();
    longer.extend_from_slice(b"one more line\n");
    fs::write(tree.join("text.log"), &longer).unwrap();
    fs::hard_link(tree.join("hard-1"), tree.join("deep/hard-3")).unwrap();
    env.run(&["bu", "-q", "-A", "one"]).code(0);
    check("after bu of a changed tree");
    env.ok(&["del", "-A", "one"]);
    check("after del of the oldest");
    env.run(&["bu", "-q", "-A", "two"]).code(0);
    env.run(&["bu", "-q", "-A", "one"]).code(0);
    check("after two more bu");
    env.ok(&["del", "-A", "one", "--back", "0"]);
    check("after del of the newest");
    env.ok(&["del", "-A", "two", "--back=-1"]);
    check("after del in the other archive");

    // Bigger changes: a big file replaced by a copy of another, a whole
    // directory gone.
    fs::copy(tree.join("text.log"), tree.join("big.bin")).unwrap();
    fs::remove_dir_all(tree.join("deep/a")).unwrap();
    env.run(&["bu", "-q", "-A", "one", "-A", "two"]).code(0);
    let counts = check("after bu of a much changed tree");
    assert_eq!(env.snapshot_names("one").len(), 3);
    assert_eq!(
        counts[&ContentToken::of(&longer)],
        1 + 2,
        "the longer text.log in one snapshot, it and its copy big.bin in the newest"
    );
    env.ok(&["del", "-A", "one", "--all_but_newest", "1"]);
    env.ok(&["del", "-A", "two", "--all-but-newest", "1"]);
    assert_eq!(env.snapshot_names("one").len(), 1);
    assert_eq!(env.snapshot_names("two").len(), 1);
    let last = check("after del --all_but_newest 1");
    assert!(last.values().any(|&n| n > 1), "the check is not vacuous");
    env.assert_content_intact("r", last.keys().copied());
}

#[test]
fn prune_after_deleting_every_snapshot_leaves_no_content() {
    let (env, _tree) = hard_env("hard", &[]);
    for _ in 0..3 {
        env.run(&["bu", "-q", "-A", "hard"]).code(0);
    }
    let stats = |env: &World| -> Vec<Vec<String>> {
        let out = env.ok(&["repo_stats", "-R", "r"]);
        let lines: Vec<String> = out.lines().skip(1).map(str::to_owned).collect();
        table(&lines)
    };
    let before = stats(&env);
    assert_eq!(before[1][0], "referenced");
    assert!(before[1][1].parse::<u64>().unwrap() > 0, "{before:?}");

    let out = env.ok(&[
        "del",
        "--all_but_newest",
        "0",
        "--remove_last_ok",
        "-A",
        "hard",
    ]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("Deleted snapshot"))
            .count(),
        3,
        "{out}"
    );
    assert!(env.lss("hard", &[]).is_empty());
    env.assert_ref_counts("r", &["hard"], &[], "after deleting everything");
    let after_del = stats(&env);
    assert_eq!(
        after_del[1][1..3],
        ["0", "0"],
        "no referenced items: {after_del:?}"
    );
    assert_eq!(after_del[2][0], "unreferenced");
    assert_eq!(after_del[2][1], before[1][1], "all items unreferenced");

    let out = env.ok(&["prune", "-R", "r"]);
    assert!(
        out.starts_with(&format!(
            "Removed {} unreferenced content items",
            before[1][1]
        )),
        "{out}"
    );
    let after = stats(&env);
    assert_eq!(after[1], ["referenced", "0", "0", "0 B", "0 B"]);
    assert_eq!(after[2], ["unreferenced", "0", "0", "0 B", "0 B"]);
    let items = env.ok(&["list_content_items", "-R", "r"]);
    assert_eq!(items.lines().count(), 1, "only the header: {items}");
    let content = env.repo_dir("r").join("content");
    let fan_outs: Vec<_> = fs::read_dir(&content)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(fan_outs.len(), 256);
    for d in fan_outs {
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{} still holds {left:?}", d.display());
    }
    assert_eq!(env.ok(&["prune", "-R", "r"]), "Nothing to do.\n");
}

// ---------------------------------------------------------------------------
// 4, 5. Change detection
// ---------------------------------------------------------------------------

/// Decodes a path printed by `strace -xx` (every byte as `\xHH`).
fn strace_path(line: &str) -> Option<(PathBuf, &str)> {
    let start = line.find('"')? + 1;
    let len = line[start..].find('"')?;
    let quoted = &line[start..start + len];
    let mut bytes = Vec::new();
    let mut rest = quoted;
    while let Some(hex) = rest.strip_prefix("\\x") {
        bytes.push(u8::from_str_radix(&hex[..2], 16).ok()?);
        rest = &hex[2..];
    }
    if !rest.is_empty() {
        return None;
    }
    Some((PathBuf::from(os(&bytes)), &line[start + len + 1..]))
}

/// Runs `bu` under strace; returns the run and the non-directory paths
/// under `tree` that it opened (or tried to).
fn bu_under_strace(env: &World, tree: &Path, args: &[&str]) -> (Run, BTreeSet<PathBuf>) {
    let log = env.root().join("strace.log");
    let mut wrapper = vec![OsStr::new("strace")];
    wrapper.extend(["-f", "-qq", "-xx", "-s", "65536"].map(OsStr::new));
    wrapper.extend(["-e", "trace=open,openat,openat2,creat", "-o"].map(OsStr::new));
    wrapper.push(log.as_os_str());
    let run = env.exec(
        env.wrapped(&wrapper).args(args),
        &format!("strace {args:?}"),
    );
    let mut opened = BTreeSet::new();
    for line in fs::read_to_string(&log).unwrap().lines() {
        if !line.contains("open") {
            continue;
        }
        let Some((path, rest)) = strace_path(line) else {
            continue;
        };
        if path.starts_with(tree) && !rest.contains("O_DIRECTORY") {
            opened.insert(path);
        }
    }
    fs::remove_file(&log).unwrap();
    (run, opened)
}

fn strace_available() -> bool {
    std::process::Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn unchanged_tree_is_not_read_again() {
    let (env, tree) = hard_env("hard", &[]);
    let want = expected_entries(&tree, false);
    let inodes = distinct_inodes(&want) as u64;
    // Everything in the tree is now older than the racy window of the
    // first backup, so the second trusts it.
    settle();
    let first = env
        .run(&["bu", "--stats", "-q", "-A", "hard"])
        .code(0)
        .quiet();
    let (read, new, _) = bu_stats(&first.stdout);
    assert_eq!(read, inodes, "the first backup reads every file once");
    assert!(new > 0);

    let second = env
        .run(&["bu", "--stats", "-q", "-A", "hard"])
        .code(0)
        .quiet();
    assert_eq!(bu_stats(&second.stdout), (0, 0, 0), "{}", second.stdout);
    assert!(
        second
            .stdout
            .contains("files read 0, new content items 0 (0 B of content, 0 B stored), skipped 0"),
        "{}",
        second.stdout
    );
    let snaps = env.snapshots("hard");
    let tokens_of = |s: &Snapshot| -> BTreeMap<PathBuf, ContentToken> {
        flatten(dir_at(&s.root, &tree))
            .into_iter()
            .filter_map(|(p, n)| match n {
                Node::File(f) => Some((p, f.token)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(tokens_of(&snaps[0].1), tokens_of(&snaps[1].1));
    assert_matches_source(&snaps[1].1, &tree, false);

    if strace_available() {
        let (run, opened) = bu_under_strace(&env, &tree, &["bu", "--stats", "-q", "-A", "hard"]);
        let run = run.code(0);
        assert_eq!(bu_stats(&run.stdout), (0, 0, 0));
        assert!(opened.is_empty(), "an unchanged backup opened {opened:#?}");
        // The same probe sees every file a forced read opens.
        let (run, opened) = bu_under_strace(
            &env,
            &tree,
            &["bu", "--stats", "-q", "--force-read", "-A", "hard"],
        );
        let run = run.code(0);
        assert_eq!(bu_stats(&run.stdout), (inodes, 0, 0));
        assert_eq!(
            opened.len() as u64,
            inodes,
            "one name per inode: {opened:#?}"
        );
        let opened_inodes: HashSet<(u64, u64)> = opened
            .iter()
            .map(|p| {
                let m = fs::symlink_metadata(p).unwrap();
                assert!(m.is_file(), "{} opened", p.display());
                (m.dev(), m.ino())
            })
            .collect();
        assert_eq!(opened_inodes.len() as u64, inodes);
    } else {
        eprintln!("strace is not installed: skipping the system-call proof");
        let forced = env
            .run(&["bu", "--stats", "-q", "--force_read", "-A", "hard"])
            .code(0);
        assert_eq!(bu_stats(&forced.stdout), (inodes, 0, 0));
    }
    // A forced read finds the same content.
    let snaps = env.snapshots("hard");
    let n = snaps.len();
    assert_eq!(tokens_of(&snaps[n - 1].1), tokens_of(&snaps[0].1));
    assert_eq!(snaps[n - 1].1.header.stats.files_read, inodes);
    env.assert_ref_counts("r", &["hard"], &[], "after unchanged backups");
}

#[test]
fn changed_file_is_detected_and_lss_lists_snapshots() {
    let (env, tree) = hard_env("hard", &[]);
    settle();
    env.run(&["bu", "-q", "-A", "hard"]).code(0);
    let old_token = ContentToken::of(b"spaces in the name\n");

    // A change of size.
    let changed = tree.join("with space.txt");
    fs::write(&changed, b"now longer than it was before\n").unwrap();
    let run = env.run(&["bu", "--stats", "-q", "-A", "hard"]).code(0);
    assert_eq!(bu_stats(&run.stdout), (1, 1, 0), "{}", run.stdout);
    let snaps = env.snapshots("hard");
    assert_eq!(snaps.len(), 2);
    let token = |s: &Snapshot, p: &[u8]| file(&flatten(dir_at(&s.root, &tree)), p).token;
    assert_eq!(token(&snaps[0].1, b"with space.txt"), old_token);
    assert_eq!(
        token(&snaps[1].1, b"with space.txt"),
        ContentToken::of(b"now longer than it was before\n")
    );
    assert_matches_source(&snaps[1].1, &tree, false);

    // Same size, different bytes, mtime put back: ctime still tells.
    let target = tree.join("private.key");
    let before = fs::symlink_metadata(&target).unwrap();
    let mtime = before.modified().unwrap();
    fs::write(&target, b"NOT REALLY A KEY\n").unwrap();
    set_mtime(&target, mtime);
    let after = fs::symlink_metadata(&target).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), mtime);
    // Past the racy window too: only the ctime shows the change.
    settle();
    // Read again: this file, and `with space.txt` if it was changed within
    // the racy window of the previous backup (it was, unless the machine
    // stalled for two seconds).
    let run = env.run(&["bu", "--stats", "-q", "-A", "hard"]).code(0);
    let (read, new, _) = bu_stats(&run.stdout);
    assert!((1..=2).contains(&read) && new == 1, "{}", run.stdout);
    let snaps = env.snapshots("hard");
    assert_eq!(
        token(&snaps[2].1, b"private.key"),
        ContentToken::of(b"NOT REALLY A KEY\n")
    );
    assert_eq!(
        token(&snaps[1].1, b"private.key"),
        ContentToken::of(b"not really a key\n")
    );
    env.assert_ref_counts("r", &["hard"], &[], "after changes");

    // lss: oldest first, --newest_first reversed.
    let names: Vec<SnapshotName> = snaps.iter().map(|(n, _)| *n).collect();
    let listed = env.lss("hard", &[]);
    let want: Vec<String> = stamps(&names).into_iter().map(|s| s + "**").collect();
    assert_eq!(listed, want);
    assert!(names.windows(2).all(|w| w[0].secs < w[1].secs));
    let mut reversed = want.clone();
    reversed.reverse();
    assert_eq!(env.lss("hard", &["--newest_first"]), reversed);
    assert_eq!(env.lss("hard", &["--newest-first"]), reversed);

    // --build_stats: header and one row per snapshot with its counts.
    let rows = table(&env.lss("hard", &["--build_stats"]));
    assert_eq!(
        rows[0],
        [
            "SNAPSHOT",
            "FILES",
            "LINKS",
            "CONTENT",
            "NEW ITEMS",
            "NEW STORED",
            "SKIPPED",
            "TIME"
        ]
    );
    assert_eq!(rows.len(), 4);
    for (row, (name, s)) in rows[1..].iter().zip(&snaps) {
        let c = s.root.counts();
        assert_eq!(row[0], name.stamp());
        assert_eq!(row[1], c.files.to_string());
        assert_eq!(row[2], c.links.to_string());
        assert_eq!(row[4], s.header.stats.new_items.to_string());
        assert_eq!(row[6], "0");
        assert!(row[7].ends_with('s'), "{row:?}");
    }
    assert_eq!(rows[2][4], "1", "one new item in the second snapshot");
    let newest = table(&env.lss("hard", &["--build-stats", "--newest-first"]));
    assert_eq!(newest[1][0], names[2].stamp());

    // --storage_stats: header and files, links and distinct items.
    let rows = table(&env.lss("hard", &["--storage_stats"]));
    assert_eq!(
        rows[0],
        [
            "SNAPSHOT", "OCCUPIES", "FILES", "LINKS", "HOLDS", "ITEMS", "STORED", "SHARE"
        ]
    );
    assert_eq!(rows.len(), 4);
    for (row, (name, s)) in rows[1..].iter().zip(&snaps) {
        let c = s.root.counts();
        let distinct: HashSet<_> = s.root.tokens().into_iter().collect();
        assert_eq!(row[0], name.stamp());
        assert_eq!(row[2], c.files.to_string());
        assert_eq!(row[3], c.links.to_string());
        assert_eq!(row[5], distinct.len().to_string());
    }
}

// ---------------------------------------------------------------------------
// 6. Two backups in one second
// ---------------------------------------------------------------------------

fn small_tree(env: &World) -> PathBuf {
    let t = env.src().join("small");
    put(&t.join("a.txt"), b"alpha\n", 0o644);
    put(&t.join("sub/b.txt"), b"beta\n", 0o644);
    put(&t.join("sub/c.txt"), b"alpha\n", 0o644);
    t
}

#[test]
fn two_backups_in_one_second_keep_both() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("s", "r", &[&t], &[]);
    let mut runs = 0;
    let mut collided = false;
    while runs < 20 && !(collided && runs >= 2) {
        env.ok(&["bu", "-A", "s"]);
        runs += 1;
        let snaps = env.snapshots("s");
        assert_eq!(snaps.len(), runs, "every bu leaves its own snapshot");
        let secs: Vec<i64> = snaps
            .iter()
            .map(|(_, s)| s.header.started_ns.div_euclid(1_000_000_000))
            .collect();
        collided = secs.windows(2).any(|w| w[0] == w[1]);
    }
    assert!(
        collided,
        "no two of {runs} backups started in the same second"
    );
    let snaps = env.snapshots("s");
    let mut started: Vec<i64> = snaps.iter().map(|(_, s)| s.header.started_ns).collect();
    started.dedup();
    assert_eq!(started.len(), runs, "no snapshot was overwritten");
    for w in snaps.windows(2) {
        assert!(w[0].0.secs < w[1].0.secs, "names strictly increase");
        assert!(w[0].1.header.started_ns < w[1].1.header.started_ns);
    }
    for (name, s) in &snaps {
        assert!(name.secs >= s.header.started_ns.div_euclid(1_000_000_000));
        assert_matches_source(s, &t, false);
    }
    let listed = env.lss("s", &[]);
    assert_eq!(listed.len(), runs);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), runs);
    env.assert_ref_counts("r", &["s"], &[], "after fast backups");
}

// ---------------------------------------------------------------------------
// 7. Compressed and uncompressed snapshots
// ---------------------------------------------------------------------------

const MAGIC: &[u8] = b"epygibus-snapshot 1\n";

#[test]
fn uncompressed_snapshots_and_compress_of_one_snapshot() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    let dir = env.new_archive("c", "r", &[&t], &[]);

    env.ok(&["bu", "-U", "-A", "c"]);
    let names = env.snapshot_names("c");
    let plain = names[0];
    assert!(!plain.compressed);
    assert_eq!(env.lss("c", &[]), [plain.stamp()]);
    let plain_path = dir.join(plain.stamp());
    assert!(fs::read(&plain_path).unwrap().starts_with(MAGIC));
    let original = lib_api::read_snapshot(&dir, &plain);

    let out = env.ok(&["compress", "-A", "c", "--back", "0"]);
    assert!(
        out.starts_with(&format!("Compressed snapshot {}: ", plain.stamp())),
        "{out}"
    );
    assert_eq!(env.lss("c", &[]), [format!("{}**", plain.stamp())]);
    assert!(!plain_path.exists());
    let gz_path = dir.join(format!("{}.gz", plain.stamp()));
    assert!(gunzip(&fs::read(&gz_path).unwrap()).starts_with(MAGIC));
    let gz = env.snapshot_names("c")[0];
    assert!(gz.compressed);
    assert_eq!(lib_api::read_snapshot(&dir, &gz), original);
    assert_eq!(env.ok(&["compress", "-A", "c"]), "Nothing to do.\n");

    let out = env.ok(&["compress", "-U", "-A", "c", "--back=-1"]);
    assert!(
        out.starts_with(&format!("Uncompressed snapshot {}: ", plain.stamp())),
        "{out}"
    );
    assert!(plain_path.exists() && !gz_path.exists());
    assert_eq!(env.lss("c", &[]), [plain.stamp()]);
    assert_eq!(lib_api::read_snapshot(&dir, &plain), original);
    assert_eq!(env.ok(&["compress", "-U", "-A", "c"]), "Nothing to do.\n");

    // The archive's default (compressed) and -U / -C per backup.
    env.ok(&["bu", "-A", "c"]);
    env.ok(&["bu", "--uncompressed", "-A", "c"]);
    env.ok(&["bu", "-C", "-A", "c"]);
    let marks: Vec<bool> = env
        .snapshot_names("c")
        .iter()
        .map(|n| n.compressed)
        .collect();
    assert_eq!(marks, [false, true, false, true]);
    let listed = env.lss("c", &[]);
    assert_eq!(
        listed.iter().filter(|l| l.ends_with("**")).count(),
        2,
        "{listed:?}"
    );
    // --back picks from either end.
    let out = env.ok(&["compress", "-A", "c", "--back", "1"]);
    let names = env.snapshot_names("c");
    assert!(out.contains(&names[2].stamp()), "{out}");
    assert!(names[2].compressed && !names[0].compressed);
    let out = env.ok(&["compress", "-A", "c", "--back=-1"]);
    assert!(out.contains(&names[0].stamp()), "{out}");
    assert!(env.snapshot_names("c").iter().all(|n| n.compressed));
    for (_, s) in env.snapshots("c") {
        assert_matches_source(&s, &t, false);
    }
    // -U and -C together are a usage error.
    let both = env.run(&["bu", "-U", "-C", "-A", "c"]).code(2);
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");
    assert_eq!(env.snapshot_names("c").len(), 4);

    // An archive made with `new -U` writes plain snapshots by default.
    env.new_archive("u", "r", &[&t], &["-U"]);
    assert!(
        env.ok(&["show", "-A", "u"])
            .contains("Compressed:         no")
    );
    env.ok(&["bu", "-A", "u"]);
    env.ok(&["bu", "-C", "-A", "u"]);
    let marks: Vec<bool> = env
        .snapshot_names("u")
        .iter()
        .map(|n| n.compressed)
        .collect();
    assert_eq!(marks, [false, true]);
    let listed = env.lss("u", &[]);
    assert!(
        !listed[0].ends_with("**") && listed[1].ends_with("**"),
        "{listed:?}"
    );
    env.assert_ref_counts("r", &["c", "u"], &[], "after compress");
}

// ---------------------------------------------------------------------------
// 8. del
// ---------------------------------------------------------------------------

#[test]
fn del_picks_the_right_snapshot_and_guards_the_last() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("d", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "d"]);
    let only = env.snapshot_names("d");
    for args in [
        &["del", "-A", "d"][..],
        &["del", "-A", "d", "--back", "0"],
        &["del", "-A", "d", "--all_but_newest", "0"],
    ] {
        let err = env.fail(args);
        assert!(
            err.contains("only snapshot") && err.contains("--remove-last-ok"),
            "{err}"
        );
        assert_eq!(env.snapshot_names("d"), only, "{args:?} deleted something");
    }
    env.assert_ref_counts("r", &["d"], &[], "after refusals");

    // Five snapshots, each different.
    for i in 0..4 {
        fs::write(t.join(format!("n{i}.txt")), format!("file {i}\n")).unwrap();
        env.ok(&["bu", "-A", "d"]);
    }
    let all = env.snapshot_names("d");
    assert_eq!(all.len(), 5);
    let del = |args: &[&str], gone: SnapshotName, left: &[SnapshotName]| {
        let tokens = lib_api::read_snapshot(&env.snapshot_dir("d"), &gone)
            .root
            .tokens()
            .len();
        let out = env.ok(args);
        assert_eq!(
            out,
            format!(
                "Deleted snapshot {} of `d` ({tokens} content references released).\n",
                gone.stamp()
            ),
            "{args:?}"
        );
        assert_eq!(env.snapshot_names("d"), left, "{args:?}");
        env.assert_ref_counts("r", &["d"], &[], &format!("after {args:?}"));
    };
    del(&["del", "-A", "d", "--back", "0"], all[4], &all[..4]);
    del(&["del", "-A", "d", "--back=-1"], all[0], &all[1..4]);
    del(&["del", "-A", "d"], all[1], &all[2..4]);

    for back in ["2", "-3", "99", "-99"] {
        let err = env.fail(&["del", "-A", "d", &format!("--back={back}")]);
        assert!(err.contains("out of range") && err.contains(back), "{err}");
        assert_eq!(
            env.snapshot_names("d"),
            &all[2..4],
            "--back {back} changed things"
        );
    }
    del(&["del", "-A", "d", "--back", "1"], all[2], &all[3..4]);
    del(&["del", "--remove_last_ok", "-A", "d"], all[3], &[]);
    let err = env.fail(&["del", "-A", "d"]);
    assert!(err.contains("has no snapshots"), "{err}");
    assert_eq!(
        env.ok(&["del", "--all-but-newest", "0", "-A", "d"]),
        "Nothing to do.\n"
    );
}

// ---------------------------------------------------------------------------
// 9. Entries that cannot be backed up
// ---------------------------------------------------------------------------

#[test]
fn fifos_sockets_and_missing_includes_are_skipped_with_status_3() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    mkfifo(&t.join("fifo"));
    mksocket(&t.join("sub/sock"));
    let gone = env.src().join("gone");
    fs::create_dir(&gone).unwrap();
    env.new_archive("f", "r", &[&t, &gone], &[]);
    fs::remove_dir(&gone).unwrap();

    let run = env
        .exec_timeout(
            env.cmd().args(["bu", "--stats", "-A", "f"]),
            Duration::from_secs(60),
            "bu with a fifo",
        )
        .code(3);
    let mut lines = run.stderr_lines();
    lines.sort();
    let fifo = format!(
        "{} is a socket, FIFO or device: not backed up",
        t.join("fifo").display()
    );
    let sock = format!(
        "{} is a socket, FIFO or device: not backed up",
        t.join("sub/sock").display()
    );
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(
        lines.contains(&format!("epygibus: {fifo}").as_str()),
        "{run:?}"
    );
    assert!(
        lines.contains(&format!("epygibus: {sock}").as_str()),
        "{run:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&gone.display().to_string()) && l.contains("does not exist")),
        "{run:?}"
    );
    assert_eq!(bu_stats(&run.stdout).2, 3);

    let snaps = env.snapshots("f");
    assert_eq!(snaps.len(), 1, "the snapshot is written anyway");
    let snap = &snaps[0].1;
    assert_eq!(snap.header.stats.skipped, 3);
    let nodes = assert_matches_source(snap, &t, false);
    assert_eq!(
        nodes.keys().cloned().collect::<Vec<_>>(),
        [
            rel(b"a.txt"),
            rel(b"sub"),
            rel(b"sub/b.txt"),
            rel(b"sub/c.txt")
        ]
    );
    assert!(snap.root.lookup(components(&gone)).is_none());
    let rows = table(&env.lss("f", &["--build_stats"]));
    assert_eq!(rows[1][6], "3", "{rows:?}");

    // --quiet hides only broken links.
    let run = env
        .exec_timeout(
            env.cmd().args(["bu", "--quiet", "-A", "f"]),
            Duration::from_secs(60),
            "bu --quiet with a fifo",
        )
        .code(3);
    assert_eq!(run.stderr_lines().len(), 3, "{run:?}");
    env.assert_ref_counts("r", &["f"], &[], "after skipping");
}

// ---------------------------------------------------------------------------
// 10. Bad input
// ---------------------------------------------------------------------------

/// Everything a command could change: configuration, data and location.
fn world(env: &World) -> BTreeMap<PathBuf, State> {
    let mut all = BTreeMap::new();
    for d in ["config", "data", "loc", "src"] {
        for (p, s) in fs_state(&env.root().join(d)) {
            all.insert(Path::new(d).join(p), s);
        }
    }
    all
}

#[test]
fn unknown_archive_is_an_error_everywhere() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("real", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "real"]);
    let before = world(&env);
    for args in [
        &["bu", "-A", "nope"][..],
        &["bu", "--stats", "-A", "nope"],
        &["lss", "-A", "nope"],
        &["lss", "--build_stats", "-A", "nope"],
        &["del", "-A", "nope"],
        &["show", "-A", "nope"],
        &["compress", "-A", "nope"],
        &["compress", "-U", "-A", "nope"],
        &["edit", "--includes", "-A", "nope"],
    ] {
        let err = env.fail(args);
        assert!(err.contains("no archive named `nope`"), "{args:?}: {err}");
        assert!(err.contains("epygibus la"), "{args:?}: {err}");
    }
    assert_same_state(&before, &world(&env), "commands on an unknown archive");
}

#[test]
fn new_refuses_bad_input_and_changes_nothing() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("taken", "r", &[&t], &[]);
    let spec_dir = env.config_dir().join("archives/taken");
    let before = world(&env);
    let ts = t.to_str().unwrap();
    let loc = env.loc_arg();
    let missing = env.src().join("missing");
    let ms = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["new", "-A", "x", "-I", ts, "-R", "nope", &loc],
            vec!["no repository named `nope`"],
        ),
        (
            vec!["new", "-A", "taken", "-I", ts, "-R", "r", &loc],
            vec!["taken", "already"],
        ),
        (
            vec!["new", "-A", "x", "-I", ms, "-R", "r", &loc],
            vec![ms, "does not exist"],
        ),
        (
            vec!["new", "-A", "x", "-I", ts, "-R", "r", &loc, "-Xf", "a["],
            vec!["`a[` is not a valid glob"],
        ),
        (
            vec!["new", "-A", "x", "-I", ts, "-R", "r", &loc, "-Xd", "b["],
            vec!["`b[` is not a valid glob"],
        ),
        (
            vec!["new", "-A", "bad/name", "-I", ts, "-R", "r", &loc],
            vec!["bad/name"],
        ),
    ];
    for (args, needles) in &cases {
        let err = env.fail(args);
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err} lacks {n}");
        }
        assert_same_state(&before, &world(&env), &format!("{args:?}"));
    }
    assert!(spec_dir.is_dir());
    let la = env.ok(&["la"]);
    assert_eq!(la.lines().count(), 2, "{la}");
}

#[test]
fn back_out_of_range_is_an_error_for_compress_too() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("b", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "b"]);
    env.ok(&["bu", "-A", "b"]);
    let before = world(&env);
    for back in ["2", "-3"] {
        for cmd in ["compress", "del"] {
            let err = env.fail(&[cmd, "-A", "b", &format!("--back={back}")]);
            assert!(
                err.contains("--back") && err.contains("out of range"),
                "{err}"
            );
            assert!(err.contains("2 snapshot(s)"), "{err}");
        }
    }
    assert_same_state(&before, &world(&env), "--back out of range");
}

#[test]
fn corrupt_snapshot_is_named_and_worked_around() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    let dir = env.new_archive("k", "r", &[&t], &[]);
    for i in 0..3 {
        fs::write(t.join(format!("v{i}.txt")), format!("version {i}\n")).unwrap();
        env.ok(&["bu", "-A", "k"]);
    }
    let names = env.snapshot_names("k");
    let bad = names[2];
    // Its references stay counted: nothing can release them any more.
    let bad_tokens = lib_api::read_snapshot(&dir, &bad).root.tokens();
    fs::write(
        lib_api::snapshot_path(&dir, &bad),
        b"this is not a snapshot at all\n",
    )
    .unwrap();

    assert_eq!(env.lss("k", &[]).len(), 3);
    let rows = env.lss("k", &["--build_stats"]);
    let row = rows
        .iter()
        .find(|l| l.starts_with(&bad.stamp()))
        .unwrap_or_else(|| panic!("no row for {}: {rows:?}", bad.stamp()));
    assert!(row.contains("unreadable"), "{row}");
    for r in rows.iter().filter(|l| l.starts_with(&names[0].stamp())) {
        assert!(!r.contains("unreadable"), "{r}");
    }
    let storage = env.lss("k", &["--storage_stats"]);
    assert!(
        storage
            .iter()
            .any(|l| l.starts_with(&bad.stamp()) && l.contains("unreadable"))
    );
    assert!(env.ok(&["show", "-A", "k"]).contains("unreadable"));

    // Another snapshot can still be deleted.
    let out = env.ok(&["del", "-A", "k", "--back", "1"]);
    assert!(
        out.starts_with(&format!("Deleted snapshot {}", names[1].stamp())),
        "{out}"
    );
    assert_eq!(env.snapshot_names("k"), [names[0], bad]);
    env.assert_ref_counts(
        "r",
        &[],
        &tokens_of_readable(&env, "k", &bad_tokens),
        "after del",
    );

    // bu works, warns, and reads everything (even files old enough to be
    // trusted had a readable previous snapshot been used).
    settle();
    let run = env.run(&["bu", "--stats", "-A", "k"]).code(0);
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(
        lines[0].starts_with("epygibus: warning: the previous snapshot could not be used"),
        "{run:?}"
    );
    assert!(
        lines[0].contains(&lib_api::snapshot_path(&dir, &bad).display().to_string()),
        "{run:?}"
    );
    let files = expected_entries(&t, false);
    assert_eq!(bu_stats(&run.stdout).0, distinct_inodes(&files) as u64);
    let now = env.snapshot_names("k");
    assert_eq!(now.len(), 3);
    assert!(now[2].secs > bad.secs);
    let newest = lib_api::read_snapshot(&dir, &now[2]);
    assert_matches_source(&newest, &t, false);
    env.assert_ref_counts(
        "r",
        &[],
        &tokens_of_readable(&env, "k", &bad_tokens),
        "after bu",
    );
}

/// Tokens of every readable snapshot of the archive plus `extra`.
fn tokens_of_readable(env: &World, archive: &str, extra: &[ContentToken]) -> Vec<ContentToken> {
    let dir = env.snapshot_dir(archive);
    let mut all = extra.to_vec();
    for n in env.snapshot_names(archive) {
        if let Ok(s) = lib_api::try_read_snapshot(&dir, &n) {
            all.extend(s.root.tokens());
        }
    }
    all
}

/// Makes a directory immutable (even root cannot create files in it) for
/// its lifetime; None where `chattr +i` does not work.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let guard = Immutable(dir.to_owned());
        let probe = dir.join("probe");
        if fs::write(&probe, b"x").is_ok() {
            let _ = fs::remove_file(&probe);
            return None;
        }
        Some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A repository, an archive with one snapshot, and its snapshot directory
/// made unwritable; None (after saying so) where that cannot be done.
fn unwritable_snapshot_dir() -> Option<(World, PathBuf, Immutable)> {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    let dir = env.new_archive("w", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "w"]);
    fs::write(t.join("new.txt"), b"content no snapshot will hold\n").unwrap();
    // Running as root, permissions do not stop writes; the immutable flag
    // does.
    match Immutable::set(&dir) {
        Some(guard) => Some((env, t, guard)),
        None => {
            eprintln!("cannot make a directory unwritable here (chattr +i): skipped");
            None
        }
    }
}

#[test]
fn unwritable_snapshot_directory_fails_cleanly() {
    let Some((env, t, guard)) = unwritable_snapshot_dir() else {
        return;
    };
    let before = env.snapshot_names("w");
    let err = env.fail(&["bu", "-A", "w"]);
    assert!(err.contains("archive `w`"), "{err}");
    assert!(err.contains(&guard.0.display().to_string()), "{err}");
    assert_eq!(env.snapshot_names("w"), before);
    let left: Vec<_> = fs::read_dir(&guard.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with("spec."))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "only the old snapshot (and the spec copy): {left:?}"
    );
    // Counts may be too high after a failure, never too low.
    let counts = lib_api::ref_counts(&env.repo_dir("r"));
    let mut refs: BTreeMap<ContentToken, u64> = BTreeMap::new();
    for t in env.newest("w").root.tokens() {
        *refs.entry(t).or_default() += 1;
    }
    for (t, n) in refs {
        let c = counts.get(&t).copied().unwrap_or(0);
        assert!(c >= n, "{}: {n} references, counted {c}", t.to_hex());
    }
    // The lock was released: once writable again, bu works.
    drop(guard);
    env.ok(&["bu", "-A", "w"]);
    assert_matches_source(&env.newest("w"), &t, false);
}

#[test]
fn unwritable_snapshot_directory_leaves_counts_unchanged() {
    let Some((env, _t, guard)) = unwritable_snapshot_dir() else {
        return;
    };
    env.fail(&["bu", "-A", "w"]);
    drop(guard);
    env.assert_ref_counts("r", &["w"], &[], "after a bu that wrote no snapshot");
}

// ---------------------------------------------------------------------------
// 11. edit
// ---------------------------------------------------------------------------

/// An editor script that appends `line` to the file it is given.
fn appending_editor(env: &World, name: &str, line: &str) -> PathBuf {
    let path = env.root().join(name);
    fs::write(
        &path,
        format!("#!/bin/sh\nprintf '%s\\n' '{line}' >> \"$1\"\n"),
    )
    .unwrap();
    chmod(&path, 0o755);
    path
}

fn edit(env: &World, editor: &Path, list: &str, archive: &str) -> Run {
    env.exec(
        env.cmd()
            .env("EDITOR", editor)
            .args(["edit", list, "-A", archive]),
        &format!("edit {list}"),
    )
}

#[test]
fn edit_includes_adds_an_include_and_rejects_bad_globs() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    let second = env.src().join("second");
    put(&second.join("s.txt"), b"second include\n", 0o644);
    env.new_archive("e", "r", &[&t], &["-Xf", "*.tmp"]);
    let includes_path = env.config_dir().join("archives/e/includes");

    let editor = appending_editor(&env, "add-include.sh", second.to_str().unwrap());
    let run = edit(&env, &editor, "--includes", "e").code(0).quiet();
    assert_eq!(
        run.stdout,
        format!("Updated {}.\n", includes_path.display())
    );
    let show = env.ok(&["show", "-A", "e"]);
    let includes: Vec<&str> = show
        .lines()
        .skip_while(|l| *l != "Includes:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(
        includes,
        [t.to_str().unwrap(), second.to_str().unwrap()],
        "{show}"
    );
    env.ok(&["bu", "-A", "e"]);
    let snap = env.newest("e");
    assert_matches_source(&snap, &t, false);
    let nodes = assert_matches_source(&snap, &second, false);
    assert!(nodes.contains_key(&rel(b"s.txt")));
    assert_eq!(
        snap.header
            .includes
            .iter()
            .map(|i| i.to_vec())
            .collect::<Vec<_>>(),
        [
            t.as_os_str().as_bytes().to_vec(),
            second.as_os_str().as_bytes().to_vec()
        ]
    );

    // An invalid glob is refused and the list stays as it was.
    let excluded = env.config_dir().join("archives/e/excluded_files");
    let before = fs::read(&excluded).unwrap();
    let bad = appending_editor(&env, "bad-glob.sh", "a[");
    let run = edit(&env, &bad, "--excluded_files", "e").code(1);
    assert!(run.stdout.is_empty(), "{run:?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("`a[` is not a valid glob"), "{run:?}");
    assert!(run.stderr.contains("nothing was changed"), "{run:?}");
    assert_eq!(fs::read(&excluded).unwrap(), before);
    let leftovers: Vec<_> = fs::read_dir(env.config_dir().join("archives/e"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b"."))
        .collect();
    assert!(leftovers.is_empty(), "draft left behind: {leftovers:?}");
    assert!(env.ok(&["show", "-A", "e"]).contains("  *.tmp\n"));

    // A relative include and a failing editor change nothing either.
    let includes_before = fs::read(&includes_path).unwrap();
    let relative = appending_editor(&env, "relative.sh", "not/absolute");
    let run = edit(&env, &relative, "--includes", "e").code(1);
    assert!(run.stderr.contains("not an absolute path"), "{run:?}");
    let run = edit(&env, Path::new("false"), "--excluded-dirs", "e").code(1);
    assert!(run.stderr.contains("failed"), "{run:?}");
    assert_eq!(fs::read(&includes_path).unwrap(), includes_before);
    // A valid glob is taken.
    let good = appending_editor(&env, "good-glob.sh", "sub");
    edit(&env, &good, "--excluded-dirs", "e").code(0).quiet();
    env.ok(&["bu", "-A", "e"]);
    let nodes = flatten(dir_at(&env.newest("e").root, &t));
    assert!(nodes.contains_key(&rel(b"a.txt")) && !nodes.contains_key(&rel(b"sub")));
}

// ---------------------------------------------------------------------------
// 12. Several archives in one bu
// ---------------------------------------------------------------------------

#[test]
fn several_archives_in_one_bu_are_backed_up_in_order() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("m1", "r", &[&t], &[]);
    env.new_archive("m2", "r", &[&t.join("sub")], &[]);
    let out = env.ok(&["bu", "--stats", "-A", "m2", "-A", "m1"]);
    let at = |p: &str| out.find(p).unwrap_or_else(|| panic!("no {p} in {out}"));
    assert!(at("m2: snapshot ") < at("m1: snapshot "), "{out}");
    let (m1, m2) = (env.snapshots("m1"), env.snapshots("m2"));
    assert_eq!((m1.len(), m2.len()), (1, 1));
    assert!(
        m2[0].1.header.finished_ns <= m1[0].1.header.started_ns,
        "m2 was backed up before m1"
    );
    assert_matches_source(&m1[0].1, &t, false);
    assert_matches_source(&m2[0].1, &t.join("sub"), false);
    let la = table(
        &env.ok(&["la"])
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    assert_eq!(la[0], ["NAME", "REPO", "SNAPSHOTS", "SNAPSHOT DIRECTORY"]);
    assert_eq!(la[1][..3], ["m1", "r", "1"]);
    assert_eq!(la[2][..3], ["m2", "r", "1"]);
    env.assert_ref_counts("r", &["m1", "m2"], &[], "after bu of two archives");

    // An unknown archive among them: the others are still backed up.
    let run = env
        .run(&["bu", "-A", "m1", "-A", "nope", "-A", "m2"])
        .code(1);
    assert_eq!(run.stderr_lines().len(), 1, "{run:?}");
    assert!(run.stderr.contains("archive `nope`"), "{run:?}");
    assert_eq!(env.snapshot_names("m1").len(), 2);
    assert_eq!(env.snapshot_names("m2").len(), 2);
}

#[test]
fn error_outranks_skipped_files_whatever_the_order() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    mkfifo(&t.join("fifo"));
    env.new_archive("skips", "r", &[&t], &[]);
    env.run(&["bu", "-A", "skips", "-A", "nope"]).code(1);
    env.run(&["bu", "-A", "nope", "-A", "skips"]).code(1);
}

// ---------------------------------------------------------------------------
// 13. Spellings of the exclude options
// ---------------------------------------------------------------------------

#[test]
fn exclude_option_spellings_are_equivalent() {
    let env = World::new();
    env.new_repo("r");
    let tree = env.src().join("tree");
    hard_tree(&tree);
    let spellings: [(&str, &[&str]); 5] = [
        ("short", &["-Xd", "cache", "-Xf", "*.o"]),
        ("attached", &["-Xd=cache", "-Xf=*.o"]),
        ("glued", &["-Xdcache", "-Xf*.o"]),
        (
            "long",
            &[
                "--exclude-dirs-matching",
                "cache",
                "--exclude-files-matching",
                "*.o",
            ],
        ),
        (
            "underscore",
            &[
                "--exclude_dirs_matching=cache",
                "--exclude_files_matching=*.o",
            ],
        ),
    ];
    let mut seen: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (name, opts) in spellings {
        env.new_archive(name, "r", &[&tree], opts);
        let show = env.ok(&["show", "-A", name]);
        assert!(
            show.contains("Excluded directories:\n  cache\nExcluded files:\n  *.o\n"),
            "{name}: {show}"
        );
        env.run(&["bu", "-q", "-A", name]).code(0).quiet();
        let nodes = assert_matches_source(&env.newest(name), &tree, false);
        seen.push(nodes.into_keys().collect());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
    // Without excludes the same tree has more: the control.
    env.new_archive("none", "r", &[&tree], &[]);
    let run = env.run(&["bu", "-q", "-A", "none"]).code(3);
    assert!(run.stderr.contains("cache/fifo"), "{run:?}");
    let all = flatten(dir_at(&env.newest("none").root, &tree));
    for p in [&b"x.o"[..], b"cache/c1.txt", b"sub/cache/c3.txt", b"link.o"] {
        assert!(all.contains_key(&rel(p)), "{:?}", rel(p));
    }
    let names: Vec<&str> = spellings.iter().map(|(n, _)| *n).chain(["none"]).collect();
    env.assert_ref_counts("r", &names, &[], "after every spelling");
}

// ---------------------------------------------------------------------------
// More about includes, options and concurrent runs
// ---------------------------------------------------------------------------

#[test]
fn includes_symlinked_nested_non_utf8_or_named_like_an_exclude() {
    let env = World::new();
    env.new_repo("r");
    let src = env.src();
    put(
        &src.join("elsewhere/real/r.txt"),
        b"behind a symlink\n",
        0o644,
    );
    put(&src.join("t/x.txt"), b"beside the link\n", 0o644);
    symlink(src.join("elsewhere/real"), src.join("t/link")).unwrap();
    let odd = src.join(os(b"odd\xff"));
    put(&odd.join("z.txt"), b"under a non-UTF-8 include\n", 0o644);
    put(
        &src.join("cache/c.txt"),
        b"an include is never excluded\n",
        0o644,
    );
    put(&src.join("cache/inner/i.txt"), b"nested include\n", 0o644);
    let link = src.join("t/link");
    let mut args: Vec<&OsStr> = vec![OsStr::new("new"), OsStr::new("-A"), OsStr::new("i")];
    let cache = src.join("cache");
    let inner = src.join("cache/inner");
    for inc in [&link, &odd, &cache, &inner] {
        args.push(OsStr::new("-I"));
        args.push(inc.as_os_str());
    }
    let loc = env.loc_arg();
    args.extend(["-R", "r", &loc, "-Xd", "cache"].map(OsStr::new));
    env.run(&args).code(0).quiet();
    env.run(&["bu", "-A", "i"]).code(0).quiet();

    let snap = env.newest("i");
    let includes: Vec<&[u8]> = snap.header.includes.iter().map(|i| i.as_slice()).collect();
    for inc in [&link, &odd, &cache, &inner] {
        assert!(
            includes.contains(&inc.as_os_str().as_bytes()),
            "{}",
            inc.display()
        );
    }
    // The link is kept as a link, its target backed up where it really is.
    match snap.root.lookup(components(&link)) {
        Some(Node::Link(l)) => {
            assert_eq!(l.target, src.join("elsewhere/real").as_os_str().as_bytes())
        }
        other => panic!("symlinked include not kept as a link: {other:?}"),
    }
    let real = assert_matches_source(&snap, &src.join("elsewhere/real"), false);
    assert_eq!(real.keys().collect::<Vec<_>>(), [&rel(b"r.txt")]);
    // Only the include's ancestors, not their other entries.
    let t = flatten(dir_at(&snap.root, &src.join("t")));
    assert_eq!(t.keys().collect::<Vec<_>>(), [&rel(b"link")]);
    let z = flatten(dir_at(&snap.root, &odd));
    assert!(matches!(z.get(&rel(b"z.txt")), Some(Node::File(_))));
    // Excluded names do not apply to includes; a nested include is walked
    // once (a second walk would count its files twice).
    let c = flatten(dir_at(&snap.root, &cache));
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        [&rel(b"c.txt"), &rel(b"inner"), &rel(b"inner/i.txt")]
    );
    assert_eq!(snap.header.stats.files_read, 4);
    env.assert_ref_counts("r", &["i"], &[], "after bu of odd includes");
    let show = env.ok(&["show", "-A", "i"]);
    assert!(show.contains(&format!("  {}\n", link.display())), "{show}");
}

#[test]
fn new_records_its_options_and_the_snapshot_directory_layout() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    let dir = env.new_archive(
        "opts",
        "r",
        &[&t],
        &["-U", "--keep-broken-soft-links", "--compare-inodes"],
    );
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap()
        .stdout;
    let want = env
        .location()
        .join("epygibus.d/snapshots")
        .join(host.trim())
        .join(String::from_utf8(user).unwrap().trim())
        .join("opts");
    assert_eq!(dir, want);
    let show = env.ok(&["show", "-A", "opts"]);
    for line in [
        "Archive:            opts\n",
        "Repository:         r\n",
        "Compressed:         no\n",
        "Broken symlinks:    kept\n",
        "Compare inodes:     yes\n",
        "Snapshots: 0\n",
    ] {
        assert!(show.contains(line), "{line:?} missing from {show}");
    }
    env.new_archive("plain", "r", &[&t], &[]);
    let show = env.ok(&["show", "-A", "plain"]);
    for line in [
        "Compressed:         yes\n",
        "Broken symlinks:    skipped\n",
        "Compare inodes:     no\n",
    ] {
        assert!(show.contains(line), "{line:?} missing from {show}");
    }
    assert!(!show.contains("Excluded"), "{show}");
    env.ok(&["bu", "-A", "opts"]);
    let show = env.ok(&["show", "-A", "opts"]);
    let name = env.snapshot_names("opts")[0];
    assert!(show.contains("Snapshots: 1\n"), "{show}");
    assert!(show.contains(&name.stamp()), "{show}");
}

#[test]
fn concurrent_backups_of_one_repository_lose_nothing() {
    let env = World::new();
    env.new_repo("r");
    let t = small_tree(&env);
    env.new_archive("x", "r", &[&t], &[]);
    env.new_archive("y", "r", &[&t.join("sub")], &[]);
    let children: Vec<_> = ["x", "y", "x", "y", "x"]
        .iter()
        .map(|a| {
            env.cmd()
                .args(["bu", "-A", a])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr
                .lines()
                .all(|l| l.contains("waiting for the repository lock")),
            "{stderr}"
        );
    }
    assert_eq!(env.snapshot_names("x").len(), 3);
    assert_eq!(env.snapshot_names("y").len(), 2);
    for (_, s) in env.snapshots("x") {
        assert_matches_source(&s, &t, false);
    }
    env.assert_ref_counts("r", &["x", "y"], &[], "after concurrent backups");
    assert!(!env.repo_dir("r").join("lock").exists(), "lock left behind");
}

#[test]
fn include_below_an_excluded_directory_is_backed_up() {
    let env = World::new();
    env.new_repo("r");
    let home = env.src().join("home");
    put(&home.join("a.txt"), b"ordinary\n", 0o644);
    put(&home.join(".cache/junk"), b"left out\n", 0o644);
    put(
        &home.join(".cache/keep/k.txt"),
        b"explicitly included\n",
        0o644,
    );
    put(
        &home.join("build/keep.o"),
        b"explicitly included file\n",
        0o644,
    );
    let keep = home.join(".cache/keep");
    let object = home.join("build/keep.o");
    env.new_archive(
        "h",
        "r",
        &[&home, &keep, &object],
        &["-Xd", ".cache", "-Xf", "*.o"],
    );
    env.run(&["bu", "-A", "h"]).code(0).quiet();
    let nodes = flatten(dir_at(&env.newest("h").root, &home));
    assert!(nodes.contains_key(&rel(b"a.txt")));
    assert!(
        !nodes.contains_key(&rel(b".cache/junk")),
        "the exclude still applies"
    );
    assert!(
        matches!(nodes.get(&rel(b".cache/keep/k.txt")), Some(Node::File(_))),
        "include {} is missing: {:?}",
        keep.display(),
        nodes.keys().collect::<Vec<_>>()
    );
    assert!(
        matches!(nodes.get(&rel(b"build/keep.o")), Some(Node::File(_))),
        "include {} is missing: {:?}",
        object.display(),
        nodes.keys().collect::<Vec<_>>()
    );
    env.assert_ref_counts("r", &["h"], &[], "after bu");
}

#[test]
fn identical_new_files_are_one_new_item() {
    let env = World::new();
    env.new_repo("r");
    let t = env.src().join("same");
    for i in 0..200 {
        put(&t.join(format!("f{i}")), b"same\n", 0o644);
        put(&t.join(format!("e{i}")), b"", 0o644);
    }
    env.new_archive("same", "r", &[&t], &[]);
    // Parallel stores race, so try several times from an empty repository.
    for round in 0..10 {
        let out = env.ok(&["bu", "--stats", "-A", "same"]);
        assert_eq!(bu_stats(&out), (400, 2, 0), "round {round}: {out}");
        assert!(
            out.contains("new content items 2 (5 B of content, "),
            "round {round}: {out}"
        );
        assert_eq!(
            env.newest("same").header.stats.new_items,
            2,
            "round {round}"
        );
        env.assert_ref_counts("r", &["same"], &[], "after bu");
        env.ok(&["del", "--remove-last-ok", "-A", "same"]);
        env.ok(&["prune", "-R", "r"]);
    }
}
