//! Integration tests of getting files back (`restore`, `extract`, `cat`,
//! `ls`/`ldc`, and the `-E` rescue without configuration), driving the real
//! binary on temp dirs.
//!
//! Every invocation sets `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR` and
//! `HOME` to directories inside a per-test temp dir, so the real home is
//! never read or written.
//!
//! Trees are compared with [`listing`]: for every entry its relative name,
//! type, bytes (BLAKE3), permission bits, owner, mtime to the nanosecond,
//! symlink target bytes, hard-link grouping and (for regular files) atime.
//! Files are read with `O_NOATIME` so that comparing does not itself change
//! what is compared; listings that must hold atimes are taken before a
//! backup reads the files.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::world::files::{assert_no_temp_files, names_starting};
use crate::world::snapshot::dir_at_mut;
use crate::world::tree::{
    Kind, assert_same_listing, assert_same_tree, blake3_of, listing_with_atimes, without_atimes,
};
use crate::world::{Rng, Run, World, chmod, lib_api, noise, ns, set_times, text};
use epygibus::content::ContentToken;
use epygibus::snapshot::format::SnapshotName;
use epygibus::snapshot::model::{Attrs, DirNode, Entry, FileName, FileNode, LinkNode, Node};

/// No command may run longer than this (a hang fails instead of blocking).
const TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------
// The world of a restore test
// ---------------------------------------------------------------------------

/// A world with an output directory `out`.
fn world() -> World {
    let env = World::new().with_timeout(TIMEOUT);
    fs::create_dir(env.out()).unwrap();
    env
}

/// A world whose commands run as `uid` (group the same number); its
/// directories belong to that user.
fn world_as(uid: u32) -> World {
    let env = World::new_as(uid).with_timeout(TIMEOUT);
    fs::create_dir(env.out()).unwrap();
    std::os::unix::fs::chown(env.out(), Some(uid), Some(uid)).unwrap();
    env
}

struct Archive {
    snapshot_dir: PathBuf,
    repo_dir: PathBuf,
}

/// Creates repository `r` (with `repo_opts`) and archive `a` of `include`
/// (with `archive_opts`) at the world's location.
fn make_archive(env: &World, include: &Path, repo_opts: &[&str], archive_opts: &[&str]) -> Archive {
    let repo_dir = env.new_repo_with("r", repo_opts);
    let snapshot_dir = env.new_archive("a", "r", &[include], archive_opts);
    assert!(
        snapshot_dir.starts_with(env.location()),
        "{}",
        snapshot_dir.display()
    );
    assert!(
        repo_dir.starts_with(env.location()),
        "{}",
        repo_dir.display()
    );
    Archive {
        snapshot_dir,
        repo_dir,
    }
}

/// Backs up archive `a`; it must succeed completely.
fn bu(env: &World) {
    env.ok(&["bu", "-A", "a"]);
}

// ---------------------------------------------------------------------------
// Data and fixtures
// ---------------------------------------------------------------------------

/// Writes `len` pseudo-random bytes to `path` without holding them in
/// memory; every 4 KiB block repeats its first half, so gzip saves a
/// little ("compressible-ish").
fn write_large(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut rng = Rng::new(seed);
    let mut block = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        for chunk in block[..2048].chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.step().to_le_bytes());
        }
        block.copy_within(..2048, 2048);
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.into_inner().unwrap().sync_all().unwrap();
}

fn bytes_path(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

/// Times (ns) for the n-th entry of a fixture: distinct, with nanoseconds.
fn mtime_of(n: u32) -> i64 {
    ns(
        1_000_000_000 + i64::from(n) * 1000,
        123_456_789 + i64::from(n),
    )
}

fn atime_of(n: u32) -> i64 {
    ns(
        1_100_000_000 + i64::from(n) * 1000,
        987_654_321 - i64::from(n),
    )
}

/// What [`build_hard_tree`] made that tests look at again.
struct HardTree {
    /// The 5 MB pseudo-random content of `big.bin`.
    big: Vec<u8>,
}

/// The non-UTF-8 name in the hard tree.
const BAD_NAME: &[u8] = b"bad-\xff\xfe-name";

/// Builds the "hard tree" at `tree` (which must not exist): empty, large,
/// compressible files; odd modes (setuid, read-only, sticky); nested, empty
/// and read-only directories; names with spaces, unicode and invalid
/// UTF-8; relative and absolute symlinks to files and directories; a file
/// with three hard-linked names; other owners; and nanosecond times on
/// everything (directory times set last).
fn build_hard_tree(tree: &Path) -> HardTree {
    let big = noise(5 << 20, 1);
    fs::create_dir(tree).unwrap();
    let abs = tree.as_os_str().as_bytes().to_vec();
    let dirs: [(&[u8], u32); 11] = [
        (b"nested", 0o755),
        (b"nested/a", 0o755),
        (b"nested/a/b", 0o750),
        (b"nested/a/b/c", 0o700),
        (b"empty-dir", 0o755),
        (b"sticky-dir", 0o1777),
        (b"setgid-dir", 0o2775),
        (b"owned-dir", 0o750),
        (b"ro-dir", 0o555),
        (b"ro-dir/sub", 0o555),
        ("dïr with space".as_bytes(), 0o755),
    ];
    for (d, _) in &dirs {
        fs::create_dir(bytes_path(tree, d)).unwrap();
    }
    let files: Vec<(&[u8], Vec<u8>, u32)> = vec![
        (b"empty", Vec::new(), 0o644),
        (b"big.bin", big.clone(), 0o600),
        (b"text.txt", text(3 << 20, 2), 0o644),
        (b"script.sh", b"#!/bin/sh\necho restored\n".to_vec(), 0o755),
        (b"readonly.txt", b"read only\n".to_vec(), 0o444),
        (b"setuid-tool", b"\x7fELF not really\n".to_vec(), 0o4755),
        (b"owned-by-other", b"someone else's\n".to_vec(), 0o640),
        (b"with space.txt", b"spaces in the name\n".to_vec(), 0o644),
        (
            "ünïcødé-日本語.txt".as_bytes(),
            "ünïcødé\n".as_bytes().to_vec(),
            0o644,
        ),
        (BAD_NAME, b"not utf-8 name\n".to_vec(), 0o644),
        (b"hello.txt", b"hello\n".to_vec(), 0o644),
        (b"before-1970.txt", b"old\n".to_vec(), 0o644),
        (b"after-2038.txt", b"future\n".to_vec(), 0o644),
        (b"hard-1", b"one inode, three names\n".to_vec(), 0o640),
        (b"nested/a/b/c/deep.txt", b"deep\n".to_vec(), 0o644),
        (b"nested/a/sibling.txt", text(10_000, 3), 0o644),
        (b"owned-dir/theirs.txt", b"theirs\n".to_vec(), 0o600),
        (
            b"ro-dir/inside.txt",
            b"inside a read-only dir\n".to_vec(),
            0o644,
        ),
        (b"ro-dir/sub/f.bin", noise(70_000, 4), 0o600),
        ("dïr with space/ñ file".as_bytes(), b"x\n".to_vec(), 0o666),
    ];
    for (name, content, _) in &files {
        fs::write(bytes_path(tree, name), content).unwrap();
    }
    fs::hard_link(tree.join("hard-1"), tree.join("nested/hard-2")).unwrap();
    fs::hard_link(tree.join("hard-1"), tree.join("ro-dir/hard-3")).unwrap();
    let mut abs_file = abs.clone();
    abs_file.extend_from_slice(b"/text.txt");
    let mut abs_dir = abs.clone();
    abs_dir.extend_from_slice(b"/nested");
    let links: Vec<(&[u8], Vec<u8>)> = vec![
        (b"link-rel-file", b"hello.txt".to_vec()),
        (b"link-rel-dir", b"nested/a".to_vec()),
        (b"link-abs-file", abs_file),
        (b"link-abs-dir", abs_dir),
        (b"link-other-owner", b"hello.txt".to_vec()),
        (b"link-to-bad-name", BAD_NAME.to_vec()),
        (b"nested/up", b"../hello.txt".to_vec()),
    ];
    for (name, target) in &links {
        symlink(OsStr::from_bytes(target), bytes_path(tree, name)).unwrap();
    }
    // Owners before modes: chown clears setuid bits.
    std::os::unix::fs::chown(tree.join("owned-by-other"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(tree.join("owned-dir"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(tree.join("owned-dir/theirs.txt"), Some(2345), Some(6789)).unwrap();
    std::os::unix::fs::lchown(tree.join("link-other-owner"), Some(4321), Some(8765)).unwrap();
    for (name, _, mode) in &files {
        chmod(&bytes_path(tree, name), *mode);
    }
    let mut n = 0;
    for (name, _, _) in &files {
        n += 1;
        set_times(&bytes_path(tree, name), mtime_of(n), atime_of(n));
    }
    // Times outside 1970..2038, to the nanosecond.
    set_times(
        &tree.join("before-1970.txt"),
        ns(-1_000_000_000, 500_000_001),
        ns(-999_999_999, 999_999_999),
    );
    set_times(
        &tree.join("after-2038.txt"),
        ns(4_102_444_800, 1),
        ns(4_102_444_801, 999_999_998),
    );
    for (name, _) in &links {
        n += 1;
        set_times(&bytes_path(tree, name), mtime_of(n), atime_of(n));
    }
    // Directories last, deepest first, after their contents exist.
    let mut by_depth: Vec<&(&[u8], u32)> = dirs.iter().collect();
    by_depth.sort_by_key(|(d, _)| std::cmp::Reverse(d.iter().filter(|&&b| b == b'/').count()));
    for (d, mode) in by_depth {
        n += 1;
        let p = bytes_path(tree, d);
        chmod(&p, *mode);
        set_times(&p, mtime_of(n), atime_of(n));
    }
    chmod(tree, 0o755);
    set_times(tree, mtime_of(n + 1), atime_of(n + 1));
    HardTree { big }
}

// ---------------------------------------------------------------------------
// Looking at trees
// ---------------------------------------------------------------------------

fn dir_is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

fn entry_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// True for `<name>.~epygibus-YYYY-MM-DD-HH-MM-SS~` or `…-SS-N~`.
fn is_aside_name(candidate: &str, name: &str) -> bool {
    let Some(rest) = candidate
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix(".~epygibus-"))
        .and_then(|r| r.strip_suffix('~'))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let widths = [4, 2, 2, 2, 2, 2];
    let stamp_ok = parts.len() >= 6
        && parts
            .iter()
            .zip(widths)
            .all(|(p, w)| p.len() == w && p.bytes().all(|b| b.is_ascii_digit()));
    let counter_ok = match parts.len() {
        6 => true,
        7 => !parts[6].is_empty() && parts[6].bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    };
    stamp_ok && counter_ok
}

/// Names in `dir` that are moved-aside copies of `name`.
fn asides_of(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| is_aside_name(&e.file_name().to_string_lossy(), name))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

#[test]
fn aside_name_checker_works() {
    assert!(is_aside_name(
        "f.txt.~epygibus-2024-01-02-03-04-05~",
        "f.txt"
    ));
    assert!(is_aside_name(
        "f.txt.~epygibus-2024-01-02-03-04-05-2~",
        "f.txt"
    ));
    assert!(!is_aside_name("f.txt.~epygibus-2024-01-02-03-04~", "f.txt"));
    assert!(!is_aside_name(
        "g.txt.~epygibus-2024-01-02-03-04-05~",
        "f.txt"
    ));
    assert!(!is_aside_name("f.txt", "f.txt"));
}

/// Removes a tree, making read-only directories writable first.
fn remove_tree(path: &Path) {
    for (rel, item) in listing_with_atimes(path) {
        if item.kind == Kind::Dir {
            chmod(&path.join(rel), 0o755);
        }
    }
    fs::remove_dir_all(path).unwrap();
}

fn mtime_ns(path: &Path) -> i64 {
    let m = fs::symlink_metadata(path).unwrap();
    ns(m.mtime(), m.mtime_nsec())
}

// ---------------------------------------------------------------------------
// 1, 2: round trips of the hard tree
// ---------------------------------------------------------------------------

#[test]
fn extract_dir_round_trips_the_hard_tree() {
    let env = world();
    let tree = env.src().join("tree");
    build_hard_tree(&tree);
    let before = listing_with_atimes(&tree);
    make_archive(&env, &tree, &[], &[]);
    bu(&env);

    let out = env.out();
    let run = env
        .run(&args![
            "extract",
            "-A",
            "a",
            "--dir",
            tree,
            "--into_dir",
            out,
            "--stats"
        ])
        .code(0);
    assert!(run.stderr.is_empty(), "{}", run.describe());
    assert!(run.stdout.contains("0 problems"), "{}", run.describe());
    assert!(run.stdout.starts_with("Extracted "), "{}", run.describe());
    assert_eq!(entry_names(&out), ["tree"]);
    let copy = out.join("tree");
    // Against the tree as it was before the backup read it (atimes)…
    assert_same_listing(
        &before,
        &listing_with_atimes(&copy),
        "extract vs source before backup",
    );
    // …and against the live tree, walking both.
    assert_same_tree(&tree, &copy, false, "extract vs live source");
    // The fixture really has what it claims.
    let ino = |p: &str| fs::metadata(copy.join(p)).unwrap().ino();
    assert_eq!(ino("hard-1"), ino("nested/hard-2"));
    assert_eq!(ino("hard-1"), ino("ro-dir/hard-3"));
    assert_eq!(
        fs::symlink_metadata(copy.join("setuid-tool"))
            .unwrap()
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(mtime_ns(&copy.join("empty")), 1_000_001_000_123_456_790);
    assert_no_temp_files(&out);
}

#[test]
fn restore_all_after_deleting_recreates_the_hard_tree() {
    let env = world();
    let tree = env.src().join("tree");
    build_hard_tree(&tree);
    let expected = listing_with_atimes(&tree);
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    assert_same_listing(
        &without_atimes(expected.clone()),
        &without_atimes(listing_with_atimes(&tree)),
        "the backup changed the source",
    );

    remove_tree(&tree);
    assert!(!tree.exists());
    let run = env
        .run(&args!["restore", "-A", "a", "--all", "--stats"])
        .code(0);
    assert!(run.stderr.is_empty(), "{}", run.describe());
    let stats = run.stdout;
    assert!(stats.starts_with("Restored "), "{stats}");
    assert!(stats.contains("0 problems"), "{stats}");
    assert!(stats.contains("2 hard links"), "{stats}");
    assert_same_listing(
        &expected,
        &listing_with_atimes(&tree),
        "restore --all vs before deletion",
    );
    assert_no_temp_files(&env.src());

    // A second restore finds everything up to date and changes nothing.
    let run = env
        .run(&args!["restore", "-A", "a", "--all", "--stats"])
        .code(0);
    assert!(run.stderr.is_empty(), "{}", run.describe());
    assert!(run.stdout.contains("0 problems"), "{}", run.describe());
    assert_same_listing(
        &without_atimes(expected),
        &without_atimes(listing_with_atimes(&tree)),
        "second restore --all",
    );
    assert!(
        names_starting(&tree, b"")
            .iter()
            .all(|p| !p.to_string_lossy().contains(".~epygibus-"))
    );
}

/// Missing parent directories of a restored path are recreated with the
/// mode, owner and times the snapshot recorded for them.
#[test]
fn restore_all_recreates_missing_parents_with_their_attributes() {
    let env = world();
    let parent = env.src().join("parent");
    fs::create_dir(&parent).unwrap();
    let tree = parent.join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f.txt"), b"file\n").unwrap();
    set_times(&tree.join("f.txt"), mtime_of(1), atime_of(1));
    set_times(&tree, mtime_of(2), atime_of(2));
    chmod(&parent, 0o710);
    std::os::unix::fs::chown(&parent, Some(3333), Some(4444)).unwrap();
    set_times(&parent, mtime_of(3), atime_of(3));
    let want = fs::symlink_metadata(&parent).unwrap();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    fs::remove_dir_all(&parent).unwrap();

    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    assert_eq!(fs::read(tree.join("f.txt")).unwrap(), b"file\n");
    let got = fs::symlink_metadata(&parent).unwrap();
    assert_eq!(got.mode() & 0o7777, 0o710);
    assert_eq!((got.uid(), got.gid()), (3333, 4444));
    assert_eq!(
        ns(got.mtime(), got.mtime_nsec()),
        ns(want.mtime(), want.mtime_nsec()),
        "mtime of the recreated parent directory"
    );
}

/// What the bug above does to a regular user: the recreated read-only
/// parent gets its mode before the restored directory is created in it,
/// so the restore fails with "Permission denied".
#[test]
fn restore_all_as_a_regular_user_recreates_a_read_only_missing_parent() {
    const NOBODY: u32 = 65534;
    let env = world_as(NOBODY);
    let parent = env.src().join("parent");
    let tree = parent.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f.txt"), b"mine\n").unwrap();
    for p in [&parent, &tree, &tree.join("f.txt")] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    chmod(&parent, 0o555);
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    chmod(&parent, 0o755);
    fs::remove_dir_all(&parent).unwrap();

    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    assert_eq!(fs::read(tree.join("f.txt")).unwrap(), b"mine\n");
    let m = fs::metadata(&parent).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o555);
    assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY));
}

// ---------------------------------------------------------------------------
// 3: --back
// ---------------------------------------------------------------------------

#[test]
fn back_selects_the_right_snapshot() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    let f = tree.join("f.txt");
    let (v1, v2) = (
        &b"version one\n"[..],
        &b"version two, which is longer\n"[..],
    );
    fs::write(&f, v1).unwrap();
    set_times(&f, mtime_of(1), atime_of(1));
    let a = make_archive(&env, &tree, &[], &[]);
    bu(&env);
    fs::write(&f, v2).unwrap();
    set_times(&f, mtime_of(2), atime_of(2));
    bu(&env);
    assert_eq!(lib_api::list_snapshots(&a.snapshot_dir).len(), 2);

    let cat = |back: Option<&str>| {
        let mut a = args!["cat", "-A", "a"];
        if let Some(b) = back {
            a.push(format!("--back={b}").into());
        }
        a.push(f.clone().into());
        env.run(&a).code(0).stdout_bytes
    };
    assert_eq!(cat(None), v2);
    assert_eq!(cat(Some("0")), v2);
    assert_eq!(cat(Some("1")), v1);
    assert_eq!(cat(Some("-1")), v1);
    assert_eq!(cat(Some("-2")), v2);
    // Also as two words.
    assert_eq!(
        env.run(&args!["cat", "-A", "a", "--back", "1", f])
            .code(0)
            .stdout_bytes,
        v1
    );
    assert_eq!(
        env.run(&args!["cat", "-A", "a", "--back", "-1", f])
            .code(0)
            .stdout_bytes,
        v1
    );

    let out = env.out();
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--back",
        "1",
        "--file",
        f,
        "--into_dir",
        out
    ])
    .code(0);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), v1);
    assert_eq!(mtime_ns(&out.join("f.txt")), mtime_of(1));
    fs::remove_file(out.join("f.txt")).unwrap();
    env.run(&args!["extract", "-A", "a", "--file", f, "--into_dir", out])
        .code(0);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), v2);
    fs::remove_file(out.join("f.txt")).unwrap();

    // restore --back 1 puts the old version back, the current one aside.
    env.run(&args!["restore", "-A", "a", "--back", "1", "--file", f])
        .code(0);
    assert_eq!(fs::read(&f).unwrap(), v1);
    let asides = asides_of(&tree, "f.txt");
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert_eq!(fs::read(&asides[0]).unwrap(), v2);
    fs::remove_file(&asides[0]).unwrap();
    fs::write(&f, v2).unwrap();

    // Out of range: an error, and nothing written anywhere.
    for back in ["5", "2", "-3"] {
        let b = format!("--back={back}");
        env.run(&args!["cat", "-A", "a", b, f])
            .failed()
            .stderr_has("out of range");
        env.run(&args!["ls", "-A", "a", b, tree])
            .failed()
            .stderr_has("out of range");
        env.run(&args![
            "extract",
            "-A",
            "a",
            b,
            "--file",
            f,
            "--into_dir",
            out
        ])
        .failed()
        .stderr_has("out of range");
        env.run(&args![
            "extract",
            "-A",
            "a",
            b,
            "--dir",
            tree,
            "--into_dir",
            out
        ])
        .failed()
        .stderr_has("out of range");
        env.run(&args!["restore", "-A", "a", b, "--file", f])
            .failed()
            .stderr_has("out of range");
        env.run(&args!["restore", "-A", "a", b, "--all"])
            .failed()
            .stderr_has("out of range");
    }
    assert!(dir_is_empty(&out));
    assert_eq!(entry_names(&tree), ["f.txt"]);
    assert_eq!(fs::read(&f).unwrap(), v2);
}

// ---------------------------------------------------------------------------
// 4: restore over differing and equal local files
// ---------------------------------------------------------------------------

#[test]
fn restore_moves_differing_files_aside_unless_overwrite_and_skips_equal_ones() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    let f = tree.join("f.txt");
    let snap = b"the snapshot's content\n";
    fs::write(&f, snap).unwrap();
    chmod(&f, 0o640);
    set_times(&f, mtime_of(1), atime_of(1));
    let want = listing_with_atimes(&tree)[Path::new("f.txt")].clone();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);

    // A differing local copy (different size) is moved aside.
    fs::write(&f, b"local edits, longer than before\n").unwrap();
    let run = env
        .run(&args!["restore", "-A", "a", "--file", f, "--stats"])
        .code(0);
    assert!(run.stderr.contains("moved"), "{}", run.describe());
    // The listing first: reading the file would change its atime.
    assert_eq!(listing_with_atimes(&tree)[Path::new("f.txt")], want);
    assert_eq!(fs::read(&f).unwrap(), snap);
    let asides = asides_of(&tree, "f.txt");
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert_eq!(
        fs::read(&asides[0]).unwrap(),
        b"local edits, longer than before\n"
    );
    assert!(
        run.stderr.contains(&asides[0].display().to_string()),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("Restored 1 files"),
        "{}",
        run.describe()
    );

    // Same size, different bytes: also moved aside (a second aside name).
    let same_size: Vec<u8> = snap.iter().map(|b| b.to_ascii_uppercase()).collect();
    fs::write(&f, &same_size).unwrap();
    env.run(&args!["restore", "-A", "a", "--file", f]).code(0);
    assert_eq!(fs::read(&f).unwrap(), snap);
    let asides = asides_of(&tree, "f.txt");
    assert_eq!(asides.len(), 2, "{asides:?}");
    assert!(asides.iter().any(|p| fs::read(p).unwrap() == same_size));

    // --overwrite: no aside file, for either size.
    for local in [&b"overwritten locally\n"[..], &same_size[..]] {
        fs::write(&f, local).unwrap();
        let run = env
            .run(&args!["restore", "-A", "a", "--overwrite", "--file", f])
            .code(0);
        assert!(!run.stderr.contains("moved"), "{}", run.describe());
        assert_eq!(fs::read(&f).unwrap(), snap);
        assert_eq!(asides_of(&tree, "f.txt").len(), 2);
    }

    // Equal content: left alone (same inode), reported as up to date.
    let ino = fs::metadata(&f).unwrap().ino();
    let run = env
        .run(&args!["restore", "-A", "a", "--file", f, "--stats"])
        .code(0);
    assert!(run.stderr.is_empty(), "{}", run.describe());
    assert!(
        run.stdout.contains("1 files already up to date"),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("Restored 0 files"),
        "{}",
        run.describe()
    );
    assert_eq!(fs::metadata(&f).unwrap().ino(), ino);
    assert_eq!(asides_of(&tree, "f.txt").len(), 2);
    assert_eq!(entry_names(&tree).len(), 3);
}

// ---------------------------------------------------------------------------
// 5: extract targets
// ---------------------------------------------------------------------------

#[test]
fn extract_refuses_existing_targets_overwrites_on_request_and_renames() {
    let env = world();
    let tree = env.src().join("tree");
    build_hard_tree(&tree);
    let before = listing_with_atimes(&tree);
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let out = env.out();
    let hello = tree.join("hello.txt");

    // An existing file is not replaced.
    fs::write(out.join("hello.txt"), b"existing\n").unwrap();
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--file",
        hello,
        "--into_dir",
        out
    ])
    .failed()
    .stderr_has("--overwrite");
    assert_eq!(fs::read(out.join("hello.txt")).unwrap(), b"existing\n");
    assert_eq!(entry_names(&out), ["hello.txt"]);

    // --overwrite replaces it: longer and same-size local copies.
    for local in [&b"existing, and much longer\n"[..], b"HELLO\n"] {
        fs::write(out.join("hello.txt"), local).unwrap();
        env.run(&args![
            "extract",
            "-A",
            "a",
            "--file",
            hello,
            "--into_dir",
            out,
            "--overwrite"
        ])
        .code(0);
        // The listing first: reading the file would change its atime.
        let l = listing_with_atimes(&out);
        assert_eq!(l[Path::new("hello.txt")], before[Path::new("hello.txt")]);
        assert_eq!(fs::read(out.join("hello.txt")).unwrap(), b"hello\n");
        assert_eq!(
            entry_names(&out),
            ["hello.txt"],
            "no aside with --overwrite"
        );
    }

    // --with_name: the copy has the new name and the original's attributes.
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--file",
        hello,
        "--into_dir",
        out,
        "--with_name",
        "renamed.txt"
    ])
    .code(0);
    let l = listing_with_atimes(&out);
    let want = before[Path::new("hello.txt")].clone();
    assert_eq!(l[Path::new("renamed.txt")], want);
    assert_eq!(fs::read(out.join("renamed.txt")).unwrap(), b"hello\n");
    assert_eq!(entry_names(&out), ["hello.txt", "renamed.txt"]);

    // A directory under another name, and a refusal when it exists.
    let nested = tree.join("nested");
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--dir",
        nested,
        "--into-dir",
        out,
        "--with-name",
        "nest copy"
    ])
    .code(0);
    assert_same_tree(
        &nested,
        &out.join("nest copy"),
        false,
        "extract --dir --with_name",
    );
    fs::write(out.join("nest copy/nested-local.txt"), b"mine\n").unwrap();
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--dir",
        nested,
        "--into_dir",
        out,
        "--with_name",
        "nest copy"
    ])
    .failed()
    .stderr_has("--overwrite");
    assert_eq!(
        fs::read(out.join("nest copy/nested-local.txt")).unwrap(),
        b"mine\n"
    );

    // A symlink extracts as a symlink.
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--file",
        tree.join("link-rel-dir"),
        "--into_dir",
        out
    ])
    .code(0);
    assert_eq!(
        fs::read_link(out.join("link-rel-dir")).unwrap(),
        Path::new("nested/a")
    );

    // Without --into_dir: the current directory.
    let cwd = env.path("cwd");
    fs::create_dir(&cwd).unwrap();
    env.run_in(
        &cwd,
        &args!["extract", "-A", "a", "--file", tree.join("big.bin")],
    )
    .code(0);
    assert_eq!(entry_names(&cwd), ["big.bin"]);
    assert_eq!(
        listing_with_atimes(&cwd)[Path::new("big.bin")],
        before[Path::new("big.bin")]
    );
    assert_no_temp_files(&out);
}

// ---------------------------------------------------------------------------
// 6: cat and ls
// ---------------------------------------------------------------------------

#[test]
fn cat_prints_exact_bytes_and_ls_decorates() {
    let env = world();
    let tree = env.src().join("tree");
    let hard = build_hard_tree(&tree);
    make_archive(&env, &tree, &[], &[]);
    bu(&env);

    let cat = |p: PathBuf| env.run(&args!["cat", "-A", "a", p]).code(0);
    let run = cat(tree.join("big.bin"));
    assert!(run.stderr.is_empty());
    assert!(
        run.stdout_bytes == hard.big,
        "cat big.bin: {} bytes differ",
        run.stdout_bytes.len()
    );
    assert!(cat(tree.join("empty")).stdout_bytes.is_empty());
    assert_eq!(
        cat(bytes_path(&tree, BAD_NAME)).stdout_bytes,
        b"not utf-8 name\n"
    );
    assert_eq!(
        cat(tree.join("text.txt")).stdout_bytes,
        fs::read(tree.join("text.txt")).unwrap()
    );
    assert_eq!(
        cat(tree.join("ro-dir/hard-3")).stdout_bytes,
        b"one inode, three names\n"
    );
    // A relative path is taken from the current directory.
    let rel = env
        .run_in(&tree, &args!["cat", "-A", "a", "nested/../hello.txt"])
        .code(0);
    assert_eq!(rel.stdout_bytes, b"hello\n");
    env.run(&args!["cat", "-A", "a", tree.join("nested")])
        .failed()
        .stderr_has("--dir");
    env.run(&args!["cat", "-A", "a", tree.join("link-rel-file")])
        .failed()
        .stderr_has("symlink");

    // ls: exactly the directory's entries, sorted by bytes, decorated.
    let mut names: Vec<Vec<u8>> = fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    let mut want = String::new();
    for n in &names {
        let p = bytes_path(&tree, n);
        let m = fs::symlink_metadata(&p).unwrap();
        let shown = String::from_utf8_lossy(n);
        if m.is_dir() {
            want.push_str(&format!("{shown}/\n"));
        } else if m.file_type().is_symlink() {
            let t = fs::read_link(&p).unwrap();
            let t = String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned();
            want.push_str(&format!("{shown} -> {t}\n"));
        } else {
            want.push_str(&format!("{shown}\n"));
        }
    }
    assert!(want.contains("nested/\n") && want.contains("link-rel-file -> hello.txt\n"));
    assert!(want.contains("link-to-bad-name -> bad-\u{fffd}\u{fffd}-name\n"));
    let ls = env.run(&args!["ls", "-A", "a", tree]).code(0);
    assert!(ls.stderr.is_empty());
    assert_eq!(ls.stdout, want);
    let ldc = env.run(&args!["ldc", "-A", "a", tree]).code(0);
    assert_eq!(ldc.stdout, want);
    // A trailing slash and a relative path name the same directory.
    assert_eq!(
        env.run(&args!["ls", "-A", "a", format!("{}/", tree.display())])
            .code(0)
            .stdout,
        want
    );
    assert_eq!(
        env.run_in(&tree, &args!["ls", "-A", "a", "."])
            .code(0)
            .stdout,
        want
    );
    let sub = env
        .run(&args!["ls", "-A", "a", tree.join("nested")])
        .code(0)
        .stdout;
    assert_eq!(sub, "a/\nhard-2\nup -> ../hello.txt\n");
    assert_eq!(
        env.run(&args!["ls", "-A", "a", tree.join("empty-dir")])
            .code(0)
            .stdout,
        ""
    );
    // The root lists the first component of the include's path.
    let first = tree
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        env.run(&args!["ls", "-A", "a"]).code(0).stdout,
        format!("{first}/\n")
    );

    env.run(&args!["ls", "-A", "a", tree.join("hello.txt")])
        .failed()
        .stderr_has("not a directory");
    env.run(&args!["ldc", "-A", "a", tree.join("link-rel-dir")])
        .failed()
        .stderr_has("not a directory");
    env.run(&args!["ls", "-A", "a", tree.join("no-such-dir")])
        .failed()
        .stderr_has("not in snapshot");
}

/// `cat` into a pipe that is closed early is not an error.
#[test]
fn cat_into_a_closed_pipe_is_not_an_error() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("big"), noise(8 << 20, 9)).unwrap();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let mut child = env
        .cmd()
        .args(args!["cat", "-A", "a", tree.join("big")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&first[..], &noise(100, 9)[..]);
}

// ---------------------------------------------------------------------------
// 7: rescue without configuration, and a moved disk
// ---------------------------------------------------------------------------

#[test]
fn rescue_with_exigency_dir_after_config_is_lost_and_disk_moved() {
    let env = world();
    let tree = env.src().join("tree");
    let hard = build_hard_tree(&tree);
    let expected = listing_with_atimes(&tree);
    let a = make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let stamp = lib_api::list_snapshots(&a.snapshot_dir)[0].stamp();

    fs::remove_dir_all(env.config_dir()).unwrap();
    // Without the configuration -A no longer works…
    env.run(&args!["cat", "-A", "a", tree.join("hello.txt")])
        .failed();
    // …but the snapshot directory alone is enough.
    let sd = &a.snapshot_dir;
    let lss = env.run(&args!["lss", "-E", sd]).code(0);
    assert!(lss.stdout.contains(&stamp), "{}", lss.describe());
    let ls = env.run(&args!["ls", "-E", sd, tree]).code(0).stdout;
    assert!(
        ls.contains("nested/\n") && ls.contains("link-rel-file -> hello.txt\n"),
        "{ls}"
    );
    let run = env
        .run(&args!["cat", "-E", sd, tree.join("big.bin")])
        .code(0);
    assert!(run.stdout_bytes == hard.big, "cat -E big.bin differs");
    let out = env.out();
    env.run(&args![
        "extract",
        "-E",
        sd,
        "--dir",
        tree,
        "--into_dir",
        out
    ])
    .code(0);
    assert_same_listing(
        &expected,
        &listing_with_atimes(&out.join("tree")),
        "extract -E",
    );

    remove_tree(&tree);
    env.run(&args!["restore", "-E", sd, "--all"]).code(0);
    assert_same_listing(&expected, &listing_with_atimes(&tree), "restore -E --all");

    // The disk is now mounted elsewhere: the repository is found relative
    // to the snapshot directory.
    let moved = env.path("elsewhere");
    fs::rename(env.location(), &moved).unwrap();
    let new_sd = moved.join(a.snapshot_dir.strip_prefix(env.location()).unwrap());
    assert!(!a.repo_dir.exists());
    let run = env
        .run(&args!["cat", "-E", new_sd, tree.join("big.bin")])
        .code(0);
    assert!(
        run.stdout_bytes == hard.big,
        "cat -E from the moved disk differs"
    );
    assert_eq!(
        env.run(&args!["cat", "-E", new_sd, tree.join("hello.txt")])
            .code(0)
            .stdout_bytes,
        b"hello\n"
    );
    let out2 = env.path("out2");
    fs::create_dir(&out2).unwrap();
    env.run(&args![
        "extract",
        "-E",
        new_sd,
        "--dir",
        tree.join("ro-dir"),
        "--into_dir",
        out2
    ])
    .code(0);
    assert_same_tree(
        &tree.join("ro-dir"),
        &out2.join("ro-dir"),
        false,
        "extract from moved disk",
    );
    // The old location is not recreated.
    assert!(!env.location().exists());

    // A snapshot directory that does not exist, or holds no snapshots.
    env.run(&args!["ls", "-E", env.path("nope")])
        .failed()
        .stderr_has("does not exist");
    env.run(&args!["ls", "-E", env.out()])
        .failed()
        .stderr_has("no snapshots");
}

// ---------------------------------------------------------------------------
// 8: crafted snapshots
// ---------------------------------------------------------------------------

fn fname(s: &[u8]) -> FileName {
    FileName::new(s.to_vec()).unwrap()
}

fn file_node(content: &[u8]) -> Node {
    Node::File(FileNode {
        attrs: Attrs {
            mode: 0o100644,
            mtime_ns: 1_000_000_000_000_000_000,
            atime_ns: 1_000_000_000_000_000_000,
            nlink: 1,
            ..Attrs::default()
        },
        size: content.len() as u64,
        token: ContentToken::of(content),
    })
}

fn dir_node(entries: Vec<Entry>) -> Node {
    Node::Dir(DirNode {
        attrs: Attrs {
            mode: 0o40755,
            mtime_ns: 1_000_000_000_000_000_000,
            nlink: 2,
            ..Attrs::default()
        },
        entries,
    })
}

/// Writes a snapshot newer than the archive's newest one: the newest
/// one's header and tree, with `mutate` applied to the directory at
/// `tree`, and then the entry name `placeholder` replaced by `bad` in the
/// encoded tree (names `FileName` refuses to build). Checks the snapshot
/// decodes when not patched, so any failure is due to the patch. Returns
/// the snapshot file's path.
fn write_crafted(
    snapshot_dir: &Path,
    tree: &Path,
    mutate: impl FnOnce(&mut DirNode),
    patch: Option<(&[u8], &[u8])>,
) -> PathBuf {
    let names = lib_api::list_snapshots(snapshot_dir);
    let newest = *names.last().unwrap();
    let real = lib_api::read_snapshot(snapshot_dir, &newest);
    let mut root = real.root.clone();
    mutate(dir_at_mut(&mut root, tree));
    let mut header = real.header.clone();
    header.started_ns += 100_000_000_000;
    header.finished_ns += 100_000_000_000;
    let assemble = |tree_bytes: &[u8]| {
        let mut bytes = b"epygibus-snapshot 1\n".to_vec();
        bytes.extend_from_slice(&rmp_serde::to_vec_named(&header).unwrap());
        rmp::encode::write_bin(&mut bytes, tree_bytes).unwrap();
        rmp::encode::write_bin(&mut bytes, blake3::hash(tree_bytes).as_bytes()).unwrap();
        bytes
    };
    let mut tree_bytes = rmp_serde::to_vec_named(&root).unwrap();
    let name = SnapshotName {
        secs: newest.secs + 100,
        compressed: false,
    };
    let path = lib_api::snapshot_path(snapshot_dir, &name);
    if let Some((from, to)) = patch {
        let plain = lib_api::decode_snapshot(&assemble(&tree_bytes), &path);
        assert_eq!(plain.root, root, "crafted snapshot does not round-trip");
        assert_eq!(from.len(), to.len());
        // The entry's name: key "n", then a bin8 of the name.
        let mut pattern = vec![0xa1, b'n', 0xc4, from.len() as u8];
        pattern.extend_from_slice(from);
        let hits: Vec<usize> = tree_bytes
            .windows(pattern.len())
            .enumerate()
            .filter(|(_, w)| *w == &pattern[..])
            .map(|(i, _)| i)
            .collect();
        assert_eq!(hits.len(), 1, "placeholder must occur exactly once");
        let at = hits[0] + 4;
        tree_bytes[at..at + to.len()].copy_from_slice(to);
    }
    fs::write(&path, assemble(&tree_bytes)).unwrap();
    path
}

#[test]
fn crafted_snapshots_with_bad_names_are_refused_and_write_nothing() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("keep.txt"), b"keep\n").unwrap();
    let a = make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let tree_before = listing_with_atimes(&tree);
    let out = env.out();

    // The entry names to plant, each with something to write inside.
    let abs_outside = outside.join("pwned").into_os_string().into_encoded_bytes();
    type Mutate = Box<dyn FnOnce(&mut DirNode)>;
    /// Placeholder name and the bad name patched in for it.
    type Patch = Option<(Vec<u8>, Vec<u8>)>;
    let cases: Vec<(&str, Mutate, Patch)> = vec![
        (
            "`..` directory",
            Box::new(|d: &mut DirNode| {
                d.insert(
                    fname(b"QQ"),
                    dir_node(vec![Entry {
                        name: fname(b"pwned"),
                        node: file_node(b"keep\n"),
                    }]),
                );
            }),
            Some((b"QQ".to_vec(), b"..".to_vec())),
        ),
        (
            "`/` in a file name (an absolute path outside)",
            {
                let placeholder = vec![b'Q'; abs_outside.len()];
                Box::new(move |d: &mut DirNode| {
                    d.insert(fname(&placeholder), file_node(b"keep\n"));
                })
            },
            Some((vec![b'Q'; abs_outside.len()], abs_outside.clone())),
        ),
        (
            "`/` in a directory name (`../..` hop)",
            Box::new(|d: &mut DirNode| {
                d.insert(
                    fname(b"QQQQQ"),
                    dir_node(vec![Entry {
                        name: fname(b"pwned"),
                        node: file_node(b"keep\n"),
                    }]),
                );
            }),
            Some((b"QQQQQ".to_vec(), b"../..".to_vec())),
        ),
        (
            "duplicate name: symlink then directory",
            {
                let target = outside.clone().into_os_string().into_encoded_bytes();
                Box::new(move |d: &mut DirNode| {
                    let link = Entry {
                        name: fname(b"a"),
                        node: Node::Link(LinkNode {
                            attrs: Attrs {
                                mode: 0o120777,
                                ..Attrs::default()
                            },
                            target,
                        }),
                    };
                    let dir = Entry {
                        name: fname(b"a"),
                        node: dir_node(vec![Entry {
                            name: fname(b"pwned"),
                            node: file_node(b"keep\n"),
                        }]),
                    };
                    d.entries.insert(0, dir);
                    d.entries.insert(0, link);
                })
            },
            None,
        ),
    ];

    for (what, mutate, patch) in cases {
        let bad = write_crafted(
            &a.snapshot_dir,
            &tree,
            mutate,
            patch.as_ref().map(|(f, t)| (&f[..], &t[..])),
        );
        let shown = bad.display().to_string();
        let commands = [
            args!["restore", "-A", "a", "--all"],
            args!["restore", "-A", "a", "--dir", tree],
            args!["restore", "-A", "a", "--file", tree.join("keep.txt")],
            args!["extract", "-A", "a", "--dir", tree, "--into_dir", out],
            args!["restore", "-E", a.snapshot_dir, "--all"],
            args![
                "extract",
                "-E",
                a.snapshot_dir,
                "--dir",
                tree,
                "--into_dir",
                out
            ],
            args!["cat", "-A", "a", tree.join("keep.txt")],
            args!["ls", "-A", "a", tree],
        ];
        for (i, c) in commands.into_iter().enumerate() {
            let run = env.run(&c).failed();
            if i == 0 {
                eprintln!("crafted {what}: {}", run.stderr.trim());
            }
            assert!(
                run.stderr.contains(&shown),
                "{what}: error does not name {shown}: {}",
                run.describe()
            );
            assert!(
                dir_is_empty(&outside),
                "{what}: wrote outside: {}",
                run.describe()
            );
            assert!(
                dir_is_empty(&out),
                "{what}: wrote into the target: {}",
                run.describe()
            );
            assert_same_listing(&tree_before, &listing_with_atimes(&tree), what);
            assert_eq!(entry_names(&env.src()), ["tree"], "{what}");
            assert!(names_starting(env.root(), b"pwned").is_empty(), "{what}");
            assert!(
                !env.root().parent().unwrap().join("pwned").exists(),
                "{what}"
            );
            assert_no_temp_files(env.root());
        }
        // The real snapshot is still usable with --back 1.
        let run = env
            .run(&args![
                "cat",
                "-A",
                "a",
                "--back",
                "1",
                tree.join("keep.txt")
            ])
            .code(0);
        assert_eq!(run.stdout_bytes, b"keep\n");
        fs::remove_file(&bad).unwrap();
    }
    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    assert_same_listing(
        &tree_before,
        &listing_with_atimes(&tree),
        "after the crafted snapshots",
    );
}

// ---------------------------------------------------------------------------
// 9: bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_paths_kinds_and_targets_are_errors_that_write_nothing() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("f.txt"), b"f\n").unwrap();
    fs::write(tree.join("sub/g.txt"), b"g\n").unwrap();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let before = listing_with_atimes(&tree);
    let out = env.out();
    let (f, sub, nope) = (tree.join("f.txt"), tree.join("sub"), tree.join("nope"));

    for run in [
        env.run(&args![
            "extract",
            "-A",
            "a",
            "--file",
            nope,
            "--into_dir",
            out
        ]),
        env.run(&args![
            "extract",
            "-A",
            "a",
            "--dir",
            nope,
            "--into_dir",
            out
        ]),
        env.run(&args!["restore", "-A", "a", "--file", nope]),
        env.run(&args!["restore", "-A", "a", "--dir", nope]),
        env.run(&args!["cat", "-A", "a", nope]),
        env.run(&args!["ls", "-A", "a", nope]),
        env.run(&args![
            "extract",
            "-A",
            "a",
            "--file",
            env.path("elsewhere/x"),
            "--into_dir",
            out
        ]),
        env.run(&args![
            "restore",
            "-A",
            "a",
            "--file",
            f.join("below-a-file")
        ]),
    ] {
        run.failed().stderr_has("is not in snapshot");
    }
    assert!(!nope.exists());
    assert!(!env.path("elsewhere").exists());

    // --file given a directory: the error points to --dir; and back.
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--file",
        sub,
        "--into_dir",
        out
    ])
    .failed()
    .stderr_has("--dir");
    env.run(&args!["restore", "-A", "a", "--file", sub])
        .failed()
        .stderr_has("--dir");
    env.run(&args!["extract", "-A", "a", "--dir", f, "--into_dir", out])
        .failed()
        .stderr_has("--file");
    env.run(&args!["restore", "-A", "a", "--dir", f])
        .failed()
        .stderr_has("--file");

    // --back out of range with one snapshot.
    env.run(&args!["restore", "-A", "a", "--back", "1", "--all"])
        .failed()
        .stderr_has("out of range");

    // --into_dir that does not exist (or is a file) is not created.
    let missing = env.path("missing-dir");
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--file",
        f,
        "--into_dir",
        missing
    ])
    .failed()
    .stderr_has("does not exist");
    assert!(!missing.exists());
    env.run(&args!["extract", "-A", "a", "--dir", sub, "--into_dir", f])
        .failed()
        .stderr_has("not a directory");

    // --with_name must be one plain file name.
    for bad in ["a/b", "..", ".", "", "/abs"] {
        env.run(&args![
            "extract",
            "-A",
            "a",
            "--file",
            f,
            "--into_dir",
            out,
            "--with_name",
            bad
        ])
        .failed()
        .stderr_has("cannot be used as a file name");
    }

    // Unknown archive, and no source at all.
    env.run(&args!["restore", "-A", "zz", "--all"])
        .failed()
        .stderr_has("zz");
    let run = env.run(&args!["restore", "--all"]);
    assert_eq!(run.code, Some(2), "clap usage error: {}", run.describe());
    let run = env.run(&args!["restore", "-A", "a"]);
    assert_eq!(
        run.code,
        Some(2),
        "no --file/--dir/--all: {}",
        run.describe()
    );
    let run = env.run(&args!["restore", "-A", "a", "--all", "--file", f]);
    assert_eq!(run.code, Some(2), "--all with --file: {}", run.describe());

    assert!(dir_is_empty(&out));
    assert_same_listing(&before, &listing_with_atimes(&tree), "after bad input");
}

#[test]
fn missing_content_file_restores_the_rest_and_exits_3() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a.txt"), b"aaa\n").unwrap();
    fs::write(tree.join("sub/b.txt"), b"bbb\n").unwrap();
    // Large enough to be a loose file of its own (small content is packed:
    // see missing_or_damaged_pack_restores_the_rest_and_exits_3).
    let lost_content = b"only this file has this content\n".repeat(20_000);
    fs::write(tree.join("sub/lost.txt"), &lost_content).unwrap();
    fs::write(tree.join("z.bin"), noise(300_000, 5)).unwrap();
    symlink("sub/b.txt", tree.join("link")).unwrap();
    let expected = listing_with_atimes(&tree);
    let a = make_archive(&env, &tree, &[], &[]);
    bu(&env);

    let token = ContentToken::of(&lost_content).to_hex();
    let fan = a.repo_dir.join("content").join(&token[..2]);
    let stored: Vec<PathBuf> = fs::read_dir(&fan)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&token))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    fs::remove_file(&stored[0]).unwrap();

    remove_tree(&tree);
    let lost = tree.join("sub/lost.txt");
    let run = env
        .run(&args!["restore", "-A", "a", "--all", "--stats"])
        .code(3);
    assert!(
        run.stderr.contains(&lost.display().to_string()),
        "stderr does not name the missing file: {}",
        run.describe()
    );
    assert!(run.stdout.contains("1 problems"), "{}", run.describe());
    let mut want = expected.clone();
    want.remove(Path::new("sub/lost.txt"));
    // The directory's attributes are still applied.
    assert_same_listing(
        &want,
        &listing_with_atimes(&tree),
        "restore with a missing content file",
    );
    assert_no_temp_files(&tree);

    // Extract and cat report the same.
    let out = env.out();
    let run = env
        .run(&args![
            "extract",
            "-A",
            "a",
            "--dir",
            tree,
            "--into_dir",
            out
        ])
        .code(3);
    assert!(run.stderr.contains("lost.txt"), "{}", run.describe());
    assert_same_listing(
        &want,
        &listing_with_atimes(&out.join("tree")),
        "extract with a missing content file",
    );
    assert_no_temp_files(&out);
    env.run(&args!["cat", "-A", "a", lost]).failed();
    // Restoring just that file: exit 3, nothing created.
    env.run(&args!["restore", "-A", "a", "--file", lost])
        .code(3);
    assert!(!lost.exists());
    assert_no_temp_files(&tree);
}

#[test]
fn missing_or_damaged_pack_restores_the_rest_and_exits_3() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..6u64 {
        fs::write(
            tree.join(format!("sub/f{i}.txt")),
            text(4000 + 1000 * i as usize, i),
        )
        .unwrap();
    }
    fs::write(tree.join("big.bin"), noise(700_000, 9)).unwrap();
    let expected = listing_with_atimes(&tree);
    let a = make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let packs = crate::world::packs::packs(&a.repo_dir);
    assert_eq!(packs.len(), 1, "the small files share one pack");
    let pack = &packs[0];
    let pack_name = pack.display().to_string();
    let good = fs::read(pack).unwrap();
    let entries = crate::world::packs::zip_entries(pack);
    let token_of = |i: u64| ContentToken::of(&text(4000 + 1000 * i as usize, i)).to_hex();
    let entry_of = |i: u64| {
        entries
            .iter()
            .find(|e| e.name == token_of(i))
            .unwrap()
            .clone()
    };

    // Restores everything and checks: exit 3 naming exactly the `lost`
    // files (and the pack), everything else exact.
    let restore_expecting = |lost: &[u64], what: &str| {
        remove_tree(&tree);
        let run = env.run(&args!["restore", "-A", "a", "--all"]);
        let mut want = expected.clone();
        if lost.is_empty() {
            assert_eq!(run.code, Some(0), "{what}: {}", run.describe());
        } else {
            assert_eq!(run.code, Some(3), "{what}: {}", run.describe());
            assert!(
                run.stderr.contains(&pack_name),
                "{what}: {}",
                run.describe()
            );
        }
        for i in lost {
            let path = tree.join(format!("sub/f{i}.txt"));
            assert!(
                run.stderr.contains(&path.display().to_string()),
                "{what}: {}",
                run.describe()
            );
            want.remove(&PathBuf::from(format!("sub/f{i}.txt")));
        }
        assert_same_listing(&want, &listing_with_atimes(&tree), what);
        assert_no_temp_files(&tree);
    };

    // One entry's bytes damaged: only its file is skipped.
    let mut bytes = good.clone();
    let e = entry_of(2);
    bytes[e.data_offset as usize + e.compressed as usize / 2] ^= 0x5a;
    fs::write(pack, &bytes).unwrap();
    restore_expecting(&[2], "a damaged entry");
    let check = env.run(&args!["check", "-R", "r", "--read-data"]).code(4);
    assert!(
        check.stdout.contains(&format!(
            "pack {pack_name}: entry {} is damaged",
            token_of(2)
        )),
        "{}",
        check.describe()
    );

    // The table of contents damaged: restores read entries by offset,
    // so everything restores; check names the pack.
    let mut bytes = good.clone();
    let len = bytes.len();
    bytes[len - 22..len - 18].copy_from_slice(b"XXXX");
    fs::write(pack, &bytes).unwrap();
    restore_expecting(&[], "a damaged table of contents");
    let check = env.run(&args!["check", "-R", "r", "--read-data"]).code(4);
    assert!(
        check
            .stdout
            .contains(&format!("pack {pack_name} is damaged")),
        "{}",
        check.describe()
    );

    // Truncated in the middle: the entries beyond the cut are skipped.
    let cut = entry_of(3).data_offset as usize + 10;
    fs::write(pack, &good[..cut]).unwrap();
    let beyond: Vec<u64> = (0..6)
        .filter(|i| {
            let e = entry_of(*i);
            e.data_offset + e.compressed > cut as u64
        })
        .collect();
    assert!(beyond.contains(&3) && beyond.len() < 6, "{beyond:?}");
    restore_expecting(&beyond, "a truncated pack");

    // The pack gone: every packed file is skipped, the loose one restored.
    fs::remove_file(pack).unwrap();
    restore_expecting(&[0, 1, 2, 3, 4, 5], "a missing pack");
    let check = env.run(&args!["check", "-R", "r"]).code(4);
    assert!(check.stdout.contains(&pack_name), "{}", check.describe());

    // Put back, all is well again.
    fs::write(pack, &good).unwrap();
    restore_expecting(&[], "the pack put back");
    env.ok(&["check", "-R", "r", "--read-data"]);
}

/// Unmounts on drop (also when the test fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn no_space_left_is_a_clear_error_and_leaves_no_temp_file() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("big.bin"), noise(5 << 20, 6)).unwrap();
    fs::create_dir(tree.join("d")).unwrap();
    fs::write(tree.join("d/big2.bin"), noise(3 << 20, 7)).unwrap();
    make_archive(&env, &tree, &["-U"], &[]);
    bu(&env);

    let small = env.path("small");
    fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .output();
    match &mounted {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("SKIPPED no_space_left test: cannot mount a tmpfs: {other:?}");
            return;
        }
    }
    let _mount = Mount(small.clone());

    let run = env
        .run(&args![
            "extract",
            "-A",
            "a",
            "--file",
            tree.join("big.bin"),
            "--into_dir",
            small
        ])
        .failed()
        .stderr_has("No space left");
    assert!(run.stderr.contains("big.bin"), "{}", run.describe());
    let left = entry_names(&small);
    assert!(left.is_empty(), "left in the full target: {left:?}");

    let run = env
        .run(&args![
            "extract",
            "-A",
            "a",
            "--dir",
            tree,
            "--into_dir",
            small
        ])
        .failed()
        .stderr_has("No space left");
    assert!(!run.stderr.contains("panicked"));
    assert_no_temp_files(&small);
    assert!(names_starting(&small, b"big").is_empty());
}

// ---------------------------------------------------------------------------
// 10: symlinks are never followed
// ---------------------------------------------------------------------------

#[test]
fn restore_replaces_a_local_dir_by_the_snapshot_symlink_without_following() {
    let env = world();
    let tree = env.src().join("tree");
    let d = tree.join("d");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("f.txt"), b"f\n").unwrap();
    // Outside the target; must never come into existence.
    let outside = env.path("outside-never");
    symlink(&outside, d.join("l")).unwrap();
    make_archive(&env, &tree, &[], &["--keep-broken-soft-links"]);
    bu(&env);
    let ls = env.run(&args!["ls", "-A", "a", d]).code(0).stdout;
    assert_eq!(ls, format!("f.txt\nl -> {}\n", outside.display()));

    for extra in [None, Some("--overwrite")] {
        // Locally, d/l became a real directory with a file in it.
        fs::remove_file(d.join("l")).unwrap();
        fs::create_dir(d.join("l")).unwrap();
        fs::write(d.join("l/x.txt"), b"local\n").unwrap();
        fs::write(d.join("f.txt"), b"changed locally\n").unwrap();
        let mut a = args!["restore", "-A", "a", "--dir", d];
        a.extend(extra.map(OsString::from));
        env.run(&a).code(0);
        assert_eq!(fs::read_link(d.join("l")).unwrap(), outside);
        assert!(!outside.exists(), "wrote through the restored symlink");
        assert!(fs::symlink_metadata(&outside).is_err());
        assert_eq!(fs::read(d.join("f.txt")).unwrap(), b"f\n");
        let asides = asides_of(&d, "l");
        assert_eq!(asides.len(), 1, "{asides:?}");
        assert_eq!(fs::read(asides[0].join("x.txt")).unwrap(), b"local\n");
        for p in asides {
            fs::remove_dir_all(p).unwrap();
        }
        for p in asides_of(&d, "f.txt") {
            fs::remove_file(p).unwrap();
        }
    }
    // restore --all and extract as well.
    fs::remove_file(d.join("l")).unwrap();
    fs::create_dir(d.join("l")).unwrap();
    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    env.run(&args![
        "extract",
        "-A",
        "a",
        "--dir",
        d,
        "--into_dir",
        env.out()
    ])
    .code(0);
    assert_eq!(fs::read_link(env.out().join("d/l")).unwrap(), outside);
    assert!(fs::symlink_metadata(&outside).is_err());
}

#[test]
fn restore_of_a_dir_does_not_write_through_a_local_symlink() {
    let env = world();
    let tree = env.src().join("tree");
    let d = tree.join("d");
    fs::create_dir_all(d.join("l")).unwrap();
    fs::write(d.join("l/x.txt"), b"x from the snapshot\n").unwrap();
    fs::write(d.join("f.txt"), b"f\n").unwrap();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();

    for extra in [None, Some("--overwrite")] {
        // Locally d/l is now a symlink to a directory outside.
        fs::remove_dir_all(d.join("l")).unwrap();
        symlink(&outside, d.join("l")).unwrap();
        let mut a = args!["restore", "-A", "a", "--dir", d];
        a.extend(extra.map(OsString::from));
        env.run(&a).code(0);
        assert!(
            dir_is_empty(&outside),
            "wrote through a symlink ({extra:?})"
        );
        assert!(fs::symlink_metadata(d.join("l")).unwrap().is_dir());
        assert_eq!(
            fs::read(d.join("l/x.txt")).unwrap(),
            b"x from the snapshot\n"
        );
        for p in asides_of(&d, "l") {
            assert_eq!(fs::read_link(&p).unwrap(), outside);
            fs::remove_file(p).unwrap();
        }
    }
    fs::remove_dir_all(d.join("l")).unwrap();
    symlink(&outside, d.join("l")).unwrap();
    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    assert!(
        dir_is_empty(&outside),
        "restore --all wrote through a symlink"
    );
    assert_eq!(
        fs::read(d.join("l/x.txt")).unwrap(),
        b"x from the snapshot\n"
    );
}

/// The newest snapshot has `d/l -> outside`; an older one has `d/l/x.txt`.
/// After restoring the newest, restoring the old file must not follow the
/// symlink the restore itself just created.
#[test]
fn restore_file_does_not_follow_a_restored_symlink_parent() {
    let env = world();
    let tree = env.src().join("tree");
    let d = tree.join("d");
    fs::create_dir_all(d.join("l")).unwrap();
    fs::write(d.join("l/x.txt"), b"old x\n").unwrap();
    make_archive(&env, &tree, &[], &[]);
    bu(&env);
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::remove_dir_all(d.join("l")).unwrap();
    symlink(&outside, d.join("l")).unwrap();
    bu(&env);
    remove_tree(&tree);
    env.run(&args!["restore", "-A", "a", "--all"]).code(0);
    assert_eq!(fs::read_link(d.join("l")).unwrap(), outside);

    let run = env.run(&args![
        "restore",
        "-A",
        "a",
        "--back",
        "1",
        "--file",
        d.join("l/x.txt")
    ]);
    assert!(
        dir_is_empty(&outside),
        "restore wrote into {} through the symlink {}: {}",
        outside.display(),
        d.join("l").display(),
        run.describe()
    );
    if run.code == Some(0) {
        assert!(fs::symlink_metadata(d.join("l")).unwrap().is_dir());
        assert_eq!(fs::read(d.join("l/x.txt")).unwrap(), b"old x\n");
    }
}

// ---------------------------------------------------------------------------
// 11: memory
// ---------------------------------------------------------------------------

/// Runs the binary under `/usr/bin/time -v`; returns the run and the
/// maximum resident set size in KiB, or None without `/usr/bin/time`.
fn run_timed(env: &World, args: Vec<OsString>) -> Option<(Run, u64)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return None;
    }
    let run = env.exec(
        env.wrapped(&[time.as_os_str(), OsStr::new("-v")])
            .args(&args),
        "time -v",
    );
    let kib = run
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .map(|v| v.trim().parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("no max RSS in {}", run.stderr));
    Some((run, kib))
}

#[test]
fn extracting_a_large_file_keeps_memory_small() {
    let env = world();
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    let big = tree.join("large.bin");
    let len: u64 = 200 << 20;
    write_large(&big, len, 11);
    // Uncompressed content keeps the debug-build backup fast; reading is
    // streamed either way.
    make_archive(&env, &tree, &["-U"], &[]);
    bu(&env);
    let want = blake3_of(&big);

    let out = env.out();
    let started = Instant::now();
    let args = args!["extract", "-A", "a", "--file", big, "--into_dir", out];
    let Some((run, kib)) = run_timed(&env, args) else {
        eprintln!("SKIPPED memory test: /usr/bin/time is not installed");
        return;
    };
    let run = run.code(0);
    eprintln!(
        "extract of a {} MiB file: max RSS {} KiB ({:.1} MiB), {:.1}s",
        len >> 20,
        kib,
        kib as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    assert!(run.stdout_bytes.is_empty());
    assert_eq!(fs::metadata(out.join("large.bin")).unwrap().len(), len);
    assert_eq!(blake3_of(&out.join("large.bin")), want);
    assert!(kib < 100 * 1024, "max RSS {kib} KiB is not below 100 MiB");
}

/// The comparison itself notices each attribute it claims to compare.
#[test]
fn listing_notices_every_compared_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), b"f\n").unwrap();
    fs::hard_link(tree.join("f"), tree.join("g")).unwrap();
    fs::write(tree.join("h"), b"f\n").unwrap();
    symlink("f", tree.join("l")).unwrap();
    set_times(&tree.join("f"), mtime_of(1), atime_of(1));
    let base = listing_with_atimes(&tree);
    let changed = |what: &str, k: &str| {
        let now = listing_with_atimes(&tree);
        assert_ne!(now[Path::new(k)], base[Path::new(k)], "{what} not noticed");
    };
    set_times(&tree.join("f"), mtime_of(1) + 1, atime_of(1));
    changed("mtime ns", "f");
    set_times(&tree.join("f"), mtime_of(1), atime_of(1) + 1);
    changed("atime ns", "f");
    set_times(&tree.join("f"), mtime_of(1), atime_of(1));
    assert_eq!(
        listing_with_atimes(&tree),
        base,
        "reading must not change atimes"
    );
    chmod(&tree.join("f"), 0o4644);
    changed("mode", "f");
    chmod(&tree.join("f"), 0o644);
    std::os::unix::fs::chown(tree.join("h"), Some(7), None).unwrap();
    changed("uid", "h");
    std::os::unix::fs::lchown(tree.join("l"), None, Some(7)).unwrap();
    changed("symlink gid", "l");
    fs::remove_file(tree.join("l")).unwrap();
    symlink("h", tree.join("l")).unwrap();
    changed("symlink target", "l");
    fs::remove_file(tree.join("g")).unwrap();
    fs::copy(tree.join("f"), tree.join("g")).unwrap();
    changed("hard-link grouping", "g");
    fs::write(tree.join("h"), b"F\n").unwrap();
    changed("content", "h");
}
