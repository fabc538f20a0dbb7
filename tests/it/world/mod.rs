//! The world the integration tests share: one temp dir per test holding
//! configuration, data, home, a backup location and source trees, and [`Machine`]s running the real binary in it with
//! nothing of the real environment. Also what more than one test module
//! needs: deterministic data ([`data`]), file helpers ([`files`]), tree
//! listings and comparisons ([`tree`]), snapshot-tree lookups
//! ([`snapshot`]), the hostile-file-system rigs ([`rigs`]) and, in
//! [`lib_api`] only, the epygibus library.

use std::fs;
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

pub mod crypt;
pub mod data;
pub mod files;
pub mod lib_api;
mod machine;
pub mod packs;
pub mod rigs;
mod run;
pub mod s3;
pub mod snapshot;
pub mod tree;

pub use data::{Rng, noise, text};
pub use files::{chmod, ns, set_times};
pub use machine::Machine;
pub use run::Run;

/// Builds a `Vec<OsString>` of command-line arguments from anything that
/// is `AsRef<OsStr>` (str, String, Path, PathBuf, OsStr…).
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        Vec::<::std::ffi::OsString>::from([
            $(::std::ffi::OsString::from(AsRef::<::std::ffi::OsStr>::as_ref(&$a))),*
        ])
    };
}

/// No command may run longer than this by default (a hang fails the test
/// instead of blocking the suite).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Longer than the racy window (2 s) of change detection: files last
/// changed this long before a backup starts are trusted by the next one.
pub const SETTLE: Duration = Duration::from_millis(2600);

/// Waits until everything written so far is outside the racy window of a
/// backup started now.
pub fn settle() {
    std::thread::sleep(SETTLE);
}

/// The binary under test, where cargo built it.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_epygibus"))
}

/// One isolated world in a temp dir; derefs to its own [`Machine`], whose
/// directories are `config`, `data` and `home` in it and which runs in it.
pub struct World {
    me: Machine,
    root: PathBuf,
    /// Last, so the directory goes after everything else.
    tmp: Option<TempDir>,
}

impl Deref for World {
    type Target = Machine;

    fn deref(&self) -> &Machine {
        &self.me
    }
}

impl World {
    pub fn new() -> World {
        World::in_dir(None, "epygibus-test.")
    }

    /// A world in a temp dir named `prefix…` in `parent` (default: the
    /// system temp dir).
    pub fn in_dir(parent: Option<&Path>, prefix: &str) -> World {
        let mut b = tempfile::Builder::new();
        b.prefix(prefix);
        let tmp = match parent {
            Some(p) => b.tempdir_in(p),
            None => b.tempdir(),
        }
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        // Canonical, so snapshot paths (which never resolve symlinks in an
        // include's ancestors) match what the tests compute.
        let root = fs::canonicalize(tmp.path()).unwrap();
        for d in ["loc", "src"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        World {
            me: Machine::at(&root, &root, TIMEOUT, bin()),
            root,
            tmp: Some(tmp),
        }
    }

    /// A world whose commands run as `uid` (group the same number): its
    /// directories belong to that user, and it and a copy of the binary
    /// are reachable by every user, wherever the project and its target
    /// directory are (a clone under `/root` is not).
    pub fn new_as(uid: u32) -> World {
        let mut w = World::in_dir(Some(&reachable_temp_dir()), "epygibus-user.");
        chmod(&w.root, 0o755);
        for d in ["config", "data", "home", "loc", "src"] {
            std::os::unix::fs::chown(w.path(d), Some(uid), Some(uid)).unwrap();
        }
        let bin_dir = w.path("bin");
        fs::create_dir(&bin_dir).unwrap();
        chmod(&bin_dir, 0o755);
        let copy = bin_dir.join("epygibus");
        fs::copy(bin(), &copy)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", bin().display(), copy.display()));
        chmod(&copy, 0o755);
        w.me.bin = copy;
        w.me.user = Some(uid);
        w
    }

    /// The same world with another command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> World {
        self.me.timeout = timeout;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The backup location (`--location`).
    pub fn location(&self) -> PathBuf {
        self.path("loc")
    }

    pub fn loc_arg(&self) -> String {
        format!("--location={}", self.location().display())
    }

    /// Where tests build the trees they back up.
    pub fn src(&self) -> PathBuf {
        self.path("src")
    }

    /// Where tests extract to (not created: the tests that want it make it).
    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// Writes `src/name` and returns its path.
    pub fn write_src(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.src().join(name);
        fs::write(&p, data).unwrap();
        p
    }

    /// Another machine in this world: directories `tag/{config,data,home}`,
    /// running in `tag`.
    pub fn machine(&self, tag: &str) -> Machine {
        let base = self.path(tag);
        let mut m = Machine::at(&base, &base, self.me.timeout, self.me.bin.clone());
        m.user = self.me.user;
        m
    }

    /// Keeps the temp dir after the world is gone (to look at a failure);
    /// returns where it is.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.tmp.take().map(TempDir::keep)
    }

    /// Creates a gzip repository at [`World::location`]; returns its
    /// directory.
    pub fn new_repo(&self, name: &str) -> PathBuf {
        self.new_repo_with(name, &[])
    }

    /// Creates a repository with `new_repo` options `opts` (e.g. `-U`).
    pub fn new_repo_with(&self, name: &str, opts: &[&str]) -> PathBuf {
        let loc = self.loc_arg();
        let mut args = vec!["new_repo"];
        args.extend_from_slice(opts);
        args.extend([loc.as_str(), name]);
        let out = self.ok(&args);
        let dir = self.repo_dir(name);
        assert!(
            out.starts_with(&format!("Created repository `{name}` at ")),
            "{out}"
        );
        assert!(out.contains(&dir.display().to_string()), "{out}");
        dir
    }

    /// Creates an archive in repository `repo` at [`World::location`];
    /// `extra` are further `new` options. Returns the snapshot directory.
    pub fn new_archive(
        &self,
        name: &str,
        repo: &str,
        includes: &[&Path],
        extra: &[&str],
    ) -> PathBuf {
        let mut args: Vec<String> = vec!["new".into(), "-A".into(), name.into()];
        for i in includes {
            args.push("-I".into());
            args.push(i.to_str().expect("test paths are UTF-8").into());
        }
        args.extend(["-R".into(), repo.into(), self.loc_arg()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let out = self.ok(&args);
        assert!(
            out.starts_with(&format!("Created archive `{name}`")),
            "{out}"
        );
        let dir = self.snapshot_dir(name);
        assert!(out.contains(&dir.display().to_string()), "{out}");
        assert!(dir.is_dir(), "{}", dir.display());
        dir
    }
}

/// A temp dir every user can reach (every ancestor searchable by others):
/// the system temp dir when it is, else the first of `/tmp`, `/var/tmp`,
/// `/dev/shm` that is.
fn reachable_temp_dir() -> PathBuf {
    let reachable = |dir: &Path| {
        let Ok(dir) = fs::canonicalize(dir) else {
            return false;
        };
        dir.ancestors()
            .all(|d| fs::metadata(d).is_ok_and(|m| m.is_dir() && m.mode() & 0o001 != 0))
    };
    let candidates = [
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev/shm"),
    ];
    candidates
        .iter()
        .find(|d| reachable(d))
        .cloned()
        .unwrap_or_else(|| panic!("none of {candidates:?} can be reached by every user"))
}
