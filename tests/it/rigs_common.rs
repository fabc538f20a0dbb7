//! Helpers for `tests/rigs.rs`: bringing the hostile-file-system rigs of
//! `../shared/rigs` up and (always) down again, running the real binary in
//! an isolated environment with a timeout, building deterministic source
//! trees and comparing trees on disk.
//!
//! Every epygibus invocation gets `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR`
//! and `HOME` inside the test's temp dir, so the real home is never used.

// Not every helper is used by every test.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// No epygibus command may run longer than this.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// A rig's `up` may install Debian packages the first time.
pub const RIG_TIMEOUT: Duration = Duration::from_secs(600);

/// Longer than the racy window (2 s) of change detection.
pub const SETTLE: Duration = Duration::from_millis(2600);

/// Builds an array of `OsString` command-line arguments from anything that
/// is `AsRef<OsStr>` (str, String, Path, PathBuf…).
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        [$(::std::ffi::OsString::from(AsRef::<::std::ffi::OsStr>::as_ref(&$a))),*]
    };
}

/// The rig tests mount file systems, start servers on fixed ports and time
/// things: they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Running children with a timeout
// ---------------------------------------------------------------------------

/// What one child process did.
#[derive(Debug, Clone)]
pub struct Out {
    pub label: String,
    /// None when it was killed (timeout) or died of a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Wall-clock seconds from spawn to exit.
    pub secs: f64,
    pub started: Instant,
    pub ended: Instant,
    pub timed_out: bool,
}

impl Out {
    pub fn describe(&self) -> String {
        let out: String = self.stdout.chars().take(6000).collect();
        let err: String = self.stderr.chars().take(6000).collect();
        format!(
            "{}: exit {:?}{} after {:.2} s\n--- stdout\n{}\n--- stderr\n{}",
            self.label,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.secs,
            out,
            err
        )
    }

    /// Asserts the exit status.
    pub fn expect(self, code: i32) -> Out {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    /// Asserts nothing was written to stderr.
    pub fn quiet(self) -> Out {
        assert!(self.stderr.is_empty(), "{}", self.describe());
        self
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

/// Runs `cmd` (stdin closed, output captured) in its own process group;
/// after `timeout` the whole group is killed and `code` is None.
pub fn run_timeout(cmd: &mut Command, timeout: Duration, label: &str) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ro = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(Instant::now());
        status
    });
    let (ended, timed_out) = match rx.recv_timeout(timeout) {
        Ok(t) => (t, false),
        Err(_) => {
            // SAFETY: kill(2) with a negative pid signals the child's own
            // process group (process_group(0) above); it is not reaped yet.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            (Instant::now(), true)
        }
    };
    let status = waiter.join().unwrap().expect("wait for child");
    let stdout = String::from_utf8_lossy(&ro.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&re.join().unwrap()).into_owned();
    Out {
        label: label.to_owned(),
        code: if timed_out { None } else { status.code() },
        stdout,
        stderr,
        secs: (ended - started).as_secs_f64(),
        started,
        ended,
        timed_out,
    }
}

fn label_of<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

// ---------------------------------------------------------------------------
// Rigs
// ---------------------------------------------------------------------------

/// `../shared/rigs` relative to the project root, canonical.
pub fn rigs_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rigs");
    fs::canonicalize(&dir).unwrap_or_else(|e| {
        panic!(
            "the test rigs are not at {} ({e}); they are expected beside the project",
            dir.display()
        )
    })
}

/// A rig that is (being) brought up at `dir`; dropping it runs
/// `X.sh down DIR`, which also removes a peer mount.
pub struct Rig {
    pub name: String,
    pub dir: PathBuf,
    script: PathBuf,
}

impl Rig {
    /// `X.sh up DIR extra…`. Returns None after printing `SKIP: …` when
    /// the rig exits 77 (cannot run here); any other failure panics.
    pub fn up(name: &str, dir: &Path, extra: &[&str]) -> Option<Rig> {
        let script = rigs_dir().join(format!("{name}.sh"));
        assert!(script.is_file(), "no rig script {}", script.display());
        // Constructed first, so a panic below still runs `down`.
        let rig = Rig {
            name: name.to_owned(),
            dir: dir.to_owned(),
            script,
        };
        let out = rig.script_run("up", &[dir.as_os_str()], extra);
        match out.code {
            Some(0) => {}
            Some(77) => {
                let reason = out
                    .stderr
                    .lines()
                    .rev()
                    .find_map(|l| l.split_once("SKIP: ").map(|(_, r)| r.trim().to_owned()))
                    .unwrap_or_else(|| out.stderr.trim().replace('\n', "; "));
                eprintln!("SKIP: {name}: {reason}");
                return None;
            }
            _ => panic!("rig {name} could not start:\n{}", out.describe()),
        }
        assert!(
            is_mount_point(dir),
            "rig {name} reported success but {} is not a mount point:\n{}",
            dir.display(),
            out.describe()
        );
        eprintln!("rig {name} up at {}", dir.display());
        Some(rig)
    }

    /// `smb.sh peer DIR PEERDIR`: a second, independent client mount.
    pub fn peer(&self, peer_dir: &Path) {
        let out = self.script_run("peer", &[self.dir.as_os_str(), peer_dir.as_os_str()], &[]);
        assert_eq!(
            out.code,
            Some(0),
            "rig {} peer failed:\n{}",
            self.name,
            out.describe()
        );
        assert!(is_mount_point(peer_dir), "{}", out.describe());
    }

    fn script_run(&self, verb: &str, dirs: &[&OsStr], extra: &[&str]) -> Out {
        let mut args: Vec<OsString> = vec![verb.into()];
        args.extend(dirs.iter().map(|d| d.to_os_string()));
        args.extend(extra.iter().map(OsString::from));
        let label = label_of(&self.script.display().to_string(), &args);
        let mut cmd = Command::new(&self.script);
        cmd.args(&args).current_dir("/");
        run_timeout(&mut cmd, RIG_TIMEOUT, &label)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let out = self.script_run("down", &[self.dir.as_os_str()], &[]);
        if out.code != Some(0) {
            eprintln!(
                "warning: rig {} did not come down cleanly:\n{}",
                self.name,
                out.describe()
            );
        }
    }
}

pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(m), Some(parent)) = (fs::metadata(dir), dir.parent()) else {
        return false;
    };
    let Ok(p) = fs::metadata(parent) else {
        return false;
    };
    m.dev() != p.dev() || m.ino() == p.ino()
}

/// A temp dir holding everything of one test; rigs mounted inside it are
/// brought down (fields drop in order) before it is removed.
pub struct World {
    pub rigs: Vec<Rig>,
    pub root: PathBuf,
    _tmp: TempDir,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("epygibus-rigs.")
            .tempdir()
            .unwrap();
        // Canonical, so snapshot paths match what the tests compute.
        let root = fs::canonicalize(tmp.path()).unwrap();
        World {
            rigs: Vec::new(),
            root,
            _tmp: tmp,
        }
    }

    /// A fresh directory `root/name`.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

// ---------------------------------------------------------------------------
// The binary, isolated
// ---------------------------------------------------------------------------

/// One "machine": its own configuration and data directories.
#[derive(Clone)]
pub struct Epy {
    pub config: PathBuf,
    pub data: PathBuf,
    pub home: PathBuf,
    pub cwd: PathBuf,
    pub timeout: Duration,
}

impl Epy {
    pub fn new(root: &Path, tag: &str) -> Epy {
        let base = root.join(tag);
        let e = Epy {
            config: base.join("config"),
            data: base.join("data"),
            home: base.join("home"),
            cwd: base.clone(),
            timeout: TIMEOUT,
        };
        for d in [&e.config, &e.data, &e.home] {
            fs::create_dir_all(d).unwrap();
        }
        e
    }

    pub fn bin() -> &'static str {
        env!("CARGO_BIN_EXE_epygibus")
    }

    /// Sets the isolated environment on any command (e.g. strace).
    pub fn isolate(&self, c: &mut Command) {
        c.env("EPYGIBUS_CONFIG_DIR", &self.config)
            .env("EPYGIBUS_DATA_DIR", &self.data)
            .env("HOME", &self.home)
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(&self.cwd);
    }

    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(Self::bin());
        c.args(args);
        self.isolate(&mut c);
        c
    }

    /// Runs the binary; fails the test if it hung, panicked or crashed.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        let label = label_of("epygibus", args);
        let out = run_timeout(&mut self.command(args), self.timeout, &label);
        check_sane(&out);
        out
    }

    /// Runs the binary; it must exit 0.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.run(args).expect(0)
    }

    /// Runs `wrapper… epygibus args…` (e.g. under strace) with the
    /// isolated environment.
    pub fn run_wrapped<S: AsRef<OsStr>>(&self, wrapper: &[&str], args: &[S]) -> Out {
        let mut c = Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(Self::bin()).args(args);
        self.isolate(&mut c);
        let label = format!("{} {}", wrapper.join(" "), label_of("epygibus", args));
        let out = run_timeout(&mut c, self.timeout * 3, &label);
        check_sane(&out);
        out
    }

    /// The repository directory from `repos/<name>`.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        let spec = fs::read_to_string(self.config.join("repos").join(name)).unwrap();
        let path = spec
            .lines()
            .find_map(|l| l.strip_prefix("path = "))
            .unwrap_or_else(|| panic!("no path line in repo spec: {spec}"));
        PathBuf::from(path)
    }

    /// The archive's snapshot directory, from `show --json`.
    pub fn snapshot_dir(&self, archive: &str) -> PathBuf {
        let v = self.ok(&args!["show", "-A", archive, "--json"]).json();
        PathBuf::from(v["snapshot_dir"].as_str().expect("snapshot_dir"))
    }
}

pub fn check_sane(out: &Out) {
    assert!(!out.timed_out, "timed out: {}", out.describe());
    assert!(out.code.is_some(), "killed by a signal: {}", out.describe());
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    assert_ne!(out.code, Some(101), "{}", out.describe());
}

/// Snapshot names (`YYYY-MM-DD-HH-MM-SS`, without `.gz`) in a snapshot
/// directory, oldest first, read from the directory itself.
pub fn snapshot_stamps(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            let stem = n.strip_suffix(".gz").unwrap_or(&n).to_owned();
            let ok = stem.len() == 19
                && stem.bytes().enumerate().all(|(i, b)| {
                    matches!(i, 4 | 7 | 10 | 13 | 16) == (b == b'-')
                        && (b == b'-' || b.is_ascii_digit())
                });
            ok.then_some(stem)
        })
        .collect();
    v.sort();
    v
}

/// Every path below `dir` whose name starts with `tmp.`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk_paths(dir, &mut |p, _| {
        if p.file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b"tmp."))
        {
            found.push(p.to_owned());
        }
    });
    found
}

/// Calls `f` for every entry below `dir` (not following symlinks).
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

// ---------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------

/// xorshift64*, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text (shared with the other CLI tests).
pub use crate::common::text;

/// Sets atime and mtime (ns since the epoch) without following symlinks.
pub fn set_times(path: &Path, mtime_ns: i64) {
    use rustix::fs::{AtFlags, Timespec, Timestamps};
    let ts = |ns: i64| Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    };
    let times = Timestamps {
        last_access: ts(mtime_ns + 1_000_000_007),
        last_modification: ts(mtime_ns),
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Writes a new file (replacing any) with `mode`.
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
    std::io::Write::write_all(&mut f, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// BLAKE3 hex and size.
    File(String, u64),
    Link(Vec<u8>),
    Other,
}

/// One entry of a tree, everything a restore must reproduce exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    /// For files with more than one name: the smallest relative path of
    /// the same inode in this tree (the hard-link group).
    pub group: Option<PathBuf>,
    pub nlink: u64,
}

pub type Listing = BTreeMap<PathBuf, Item>;

/// Every entry of `root` (the root itself as ``), not following symlinks.
pub fn listing(root: &Path) -> Listing {
    let mut raw: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    raw.push((
        PathBuf::new(),
        fs::symlink_metadata(root).unwrap_or_else(|e| panic!("{}: {e}", root.display())),
    ));
    walk_paths(root, &mut |p, m| {
        raw.push((p.strip_prefix(root).unwrap().to_owned(), m.clone()));
    });
    let mut first_name: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (rel, m) in &raw {
        if m.is_file() && m.nlink() > 1 {
            let slot = first_name
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone());
            if rel < slot {
                *slot = rel.clone();
            }
        }
    }
    raw.into_iter()
        .map(|(rel, m)| {
            let full = root.join(&rel);
            let kind = if m.is_dir() {
                Kind::Dir
            } else if m.file_type().is_symlink() {
                Kind::Link(
                    fs::read_link(&full)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if m.is_file() {
                let data = fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
                Kind::File(blake3::hash(&data).to_hex().to_string(), data.len() as u64)
            } else {
                Kind::Other
            };
            let group =
                (m.is_file() && m.nlink() > 1).then(|| first_name[&(m.dev(), m.ino())].clone());
            let item = Item {
                kind,
                mode: m.permissions().mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                group,
                nlink: m.nlink(),
            };
            (rel, item)
        })
        .collect()
}

/// Differences between two listings, one line each.
pub fn listing_diff(want: &Listing, got: &Listing) -> Vec<String> {
    let mut diff = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => diff.push(format!("missing {:?}", p)),
            Some(g) => {
                let mut what = Vec::new();
                if g.kind != w.kind {
                    what.push(format!("kind {:?} != {:?}", g.kind, w.kind));
                }
                if g.mode != w.mode && !matches!(w.kind, Kind::Link(_)) {
                    what.push(format!("mode {:o} != {:o}", g.mode, w.mode));
                }
                if (g.uid, g.gid) != (w.uid, w.gid) {
                    what.push(format!("owner {}:{} != {}:{}", g.uid, g.gid, w.uid, w.gid));
                }
                if g.mtime_ns != w.mtime_ns {
                    what.push(format!("mtime {} != {}", g.mtime_ns, w.mtime_ns));
                }
                if g.group != w.group {
                    what.push(format!("hard-link group {:?} != {:?}", g.group, w.group));
                }
                if !what.is_empty() {
                    diff.push(format!("{:?}: {}", p, what.join(", ")));
                }
            }
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        diff.push(format!("extra {:?}", p));
    }
    diff
}

/// Asserts two listings are identical (content, type, link target, mode,
/// owner, ns mtime, hard-link grouping).
pub fn assert_same_listing(want: &Listing, got: &Listing, what: &str) {
    let diff = listing_diff(want, got);
    assert!(
        diff.is_empty(),
        "{what}: {} differences:\n{}",
        diff.len(),
        diff.join("\n")
    );
}
