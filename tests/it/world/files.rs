//! Small file-system helpers: modes, nanosecond times, walking a tree,
//! finding leftover temp files, reading a snapshot directory's file names.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Nanoseconds since the epoch.
pub fn ns(secs: i64, nanos: i64) -> i64 {
    secs * 1_000_000_000 + nanos
}

/// Sets mtime and atime (ns since the epoch) of a file, directory or
/// symlink itself (never following it).
pub fn set_times(path: &Path, mtime_ns: i64, atime_ns: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let ts = |ns: i64| Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    };
    let times = Timestamps {
        last_access: ts(atime_ns),
        last_modification: ts(mtime_ns),
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Writes a new file (a new inode, replacing any file there) with `mode`,
/// creating missing parents.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
    chmod(path, mode);
}

/// Calls `f` for every entry below `dir` (not following symlinks); entries
/// that vanish or cannot be listed are passed over.
pub fn walk_paths(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        f(&p, &m);
        if m.is_dir() {
            walk_paths(&p, f);
        }
    }
}

/// Every path below `dir` whose name starts with `prefix`.
pub fn names_starting(dir: &Path, prefix: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk_paths(dir, &mut |p, _| {
        if p.file_name()
            .is_some_and(|n| n.as_bytes().starts_with(prefix))
        {
            found.push(p.to_owned());
        }
    });
    found
}

/// Every path below `dir` named `tmp.*` (what an interrupted write leaves).
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    names_starting(dir, b"tmp.")
}

pub fn assert_no_temp_files(dir: &Path) {
    let temps = temp_files(dir);
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}

/// The snapshot files of a snapshot directory, read from the directory
/// itself: (stamp `YYYY-MM-DD-HH-MM-SS`, compressed) per file, sorted (a
/// stamp present in both forms is listed twice).
pub fn snapshot_files(dir: &Path) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            let (stem, compressed) = match n.strip_suffix(".gz") {
                Some(stem) => (stem, true),
                None => (n.as_str(), false),
            };
            let is_stamp = stem.len() == 19
                && stem.bytes().enumerate().all(|(i, b)| {
                    if [4, 7, 10, 13, 16].contains(&i) {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            is_stamp.then(|| (stem.to_owned(), compressed))
        })
        .collect();
    v.sort();
    v
}

/// The content of a gzip stream.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Only root can give a file away or mount (the tests are meant to run as
/// root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
