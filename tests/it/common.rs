//! Helpers shared by CLI integration tests: an isolated world per test
//! (config, data, home, backup location and source trees in one temp dir),
//! running the real binary, decoding snapshots through the library and
//! checking reference counts against them.
//!
//! Every invocation sets `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR` and
//! `HOME` inside the temp dir and removes `VISUAL` and `EDITOR`, so the
//! real home and the developer's editor are never used.

// Each test crate that includes this module uses a different subset.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use epygibus::content::{Access, ContentToken, Repository};
use epygibus::snapshot::format::{self, Snapshot, SnapshotName};
use epygibus::snapshot::model::{DirNode, Node};
use tempfile::TempDir;

/// No command may run longer than this (a hang fails the test instead of
/// blocking the suite).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Longer than the racy window (2 s) of change detection: files last
/// changed this long before a backup starts are trusted by the next one.
pub const SETTLE: Duration = Duration::from_millis(2600);

/// Waits until everything written so far is outside the racy window of a
/// backup started now.
pub fn settle() {
    std::thread::sleep(SETTLE);
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub label: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{}: exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.label, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the exit status.
    pub fn code(self, want: i32) -> Run {
        assert_eq!(self.code, Some(want), "{}", self.describe());
        self
    }

    /// Asserts nothing was written to stderr.
    pub fn quiet(self) -> Run {
        assert!(self.stderr.is_empty(), "{}", self.describe());
        self
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// One isolated world inside a temp dir.
pub struct Env {
    _tmp: TempDir,
    root: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        // Canonical, so snapshot paths (which never resolve symlinks in an
        // include's ancestors) match what the tests compute.
        let root = fs::canonicalize(tmp.path()).unwrap();
        for d in ["config", "data", "home", "loc", "src"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        Env { _tmp: tmp, root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The backup location (`--location`).
    pub fn location(&self) -> PathBuf {
        self.root.join("loc")
    }

    pub fn loc_arg(&self) -> String {
        format!("--location={}", self.location().display())
    }

    /// Where tests build the trees they back up.
    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    /// The binary as a `std` command with the isolated environment.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(Self::bin());
        self.isolate(&mut c);
        c
    }

    /// Sets the isolated environment on any command (e.g. strace).
    pub fn isolate(&self, c: &mut std::process::Command) {
        c.env("EPYGIBUS_CONFIG_DIR", self.config_dir())
            .env("EPYGIBUS_DATA_DIR", self.data_dir())
            .env("HOME", self.root.join("home"))
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("XDG_DATA_HOME")
            .current_dir(&self.root);
    }

    pub fn bin() -> PathBuf {
        PathBuf::from(assert_cmd::cargo::cargo_bin!("epygibus"))
    }

    /// The binary with the isolated environment and [`TIMEOUT`].
    pub fn cmd(&self) -> Command {
        let mut c = Command::from_std(self.std_cmd());
        c.timeout(TIMEOUT);
        c
    }

    /// Runs a prepared command; fails the test if it panicked or hung.
    pub fn exec(&self, cmd: &mut Command, label: &str) -> Run {
        let out = cmd.output().unwrap();
        let run = Run {
            label: label.to_owned(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            run.code.is_some(),
            "killed (timeout after {TIMEOUT:?}?): {}",
            run.describe()
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.describe());
        assert_ne!(run.code, Some(101), "{}", run.describe());
        run
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        let label = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.exec(self.cmd().args(args), &label)
    }

    /// Runs a command that must exit 0 without writing to stderr; returns
    /// its stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        self.run(args).code(0).quiet().stdout
    }

    /// Runs a command that must fail with status 1, print nothing on stdout
    /// and exactly one `epygibus: error:` line on stderr; returns the line.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let run = self.run(args).code(1);
        assert!(run.stdout.is_empty(), "printed on failure: {run:?}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "want one stderr line: {run:?}");
        assert!(lines[0].starts_with("epygibus: error: "), "{run:?}");
        lines[0].to_owned()
    }

    /// Creates a gzip repository at [`Env::location`]; returns its directory.
    pub fn new_repo(&self, name: &str) -> PathBuf {
        let out = self.ok(&["new_repo", &self.loc_arg(), name]);
        assert!(
            out.starts_with(&format!("Created repository `{name}`")),
            "{out}"
        );
        self.repo_dir(name)
    }

    /// The repository directory, from its spec file.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        let spec = fs::read_to_string(self.config_dir().join("repos").join(name)).unwrap();
        let path = spec
            .lines()
            .find_map(|l| l.strip_prefix("path = "))
            .unwrap_or_else(|| panic!("no path line in spec: {spec}"));
        PathBuf::from(path)
    }

    /// Creates an archive in repository `repo` at [`Env::location`];
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

    /// The archive's snapshot directory, as `show` reports it.
    pub fn snapshot_dir(&self, archive: &str) -> PathBuf {
        let out = self.ok(&["show", "-A", archive]);
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("Snapshot directory:"))
            .unwrap_or_else(|| panic!("no snapshot directory in {out}"));
        PathBuf::from(line.trim())
    }

    /// The archive's snapshots, oldest first, read from its directory.
    pub fn snapshot_names(&self, archive: &str) -> Vec<SnapshotName> {
        format::list_snapshots(&self.snapshot_dir(archive)).unwrap()
    }

    /// Every snapshot of the archive, decoded, oldest first.
    pub fn snapshots(&self, archive: &str) -> Vec<(SnapshotName, Snapshot)> {
        let dir = self.snapshot_dir(archive);
        format::list_snapshots(&dir)
            .unwrap()
            .into_iter()
            .map(|n| {
                let s = format::read_snapshot(&dir, &n)
                    .unwrap_or_else(|e| panic!("snapshot {} does not decode: {e}", n.stamp()));
                (n, s)
            })
            .collect()
    }

    /// The newest snapshot of the archive, decoded.
    pub fn newest(&self, archive: &str) -> Snapshot {
        self.snapshots(archive)
            .pop()
            .unwrap_or_else(|| panic!("archive {archive} has no snapshot"))
            .1
    }

    /// `lss -A archive` lines (plus `extra` options).
    pub fn lss(&self, archive: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["lss", "-A", archive];
        args.extend_from_slice(extra);
        self.ok(&args).lines().map(str::to_owned).collect()
    }

    /// Asserts that the repository's reference counts are exactly the file
    /// references of every snapshot of `archives` (plus `extra`, e.g. the
    /// references of a snapshot that can no longer be read): each token's
    /// count equals how many file entries name it, and no token nobody
    /// names has a count above zero. Returns the expected counts.
    pub fn assert_ref_counts(
        &self,
        repo: &str,
        archives: &[&str],
        extra: &[ContentToken],
        when: &str,
    ) -> HashMap<ContentToken, u64> {
        let mut want: HashMap<ContentToken, u64> = HashMap::new();
        for archive in archives {
            for (_, snap) in self.snapshots(archive) {
                for t in snap.root.tokens() {
                    *want.entry(t).or_default() += 1;
                }
            }
        }
        for t in extra {
            *want.entry(*t).or_default() += 1;
        }
        let got = Repository::open(&self.repo_dir(repo), Access::ReadOnly)
            .unwrap()
            .ref_counts();
        let mut diff = Vec::new();
        for (t, n) in &want {
            match got.get(t) {
                Some(c) if c == n => {}
                other => diff.push(format!(
                    "{}: referenced {n} times, counted {other:?}",
                    t.to_hex()
                )),
            }
        }
        for (t, c) in &got {
            if *c > 0 && !want.contains_key(t) {
                diff.push(format!(
                    "{}: referenced by nothing, counted {c}",
                    t.to_hex()
                ));
            }
        }
        diff.sort();
        assert!(
            diff.is_empty(),
            "{when}: reference counts are wrong:\n{diff:#?}"
        );
        want
    }

    /// Asserts every token's content can be read from the repository and
    /// hashes to the token.
    pub fn assert_content_intact(
        &self,
        repo: &str,
        tokens: impl IntoIterator<Item = ContentToken>,
    ) {
        let repo = Repository::open(&self.repo_dir(repo), Access::ReadOnly).unwrap();
        for t in tokens {
            let mut data = Vec::new();
            repo.open_contents_read_only(&t)
                .unwrap_or_else(|e| panic!("content {} unreadable: {e}", t.to_hex()))
                .read_to_end(&mut data)
                .unwrap();
            assert_eq!(
                ContentToken::of(&data),
                t,
                "content {} is damaged",
                t.to_hex()
            );
        }
    }
}

/// Path components of an absolute path, as the snapshot tree names them.
pub fn components(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

/// The directory node of an absolute path in a snapshot tree.
pub fn dir_at<'a>(root: &'a DirNode, path: &Path) -> &'a DirNode {
    match root.lookup(components(path)) {
        Some(Node::Dir(d)) => d,
        other => panic!(
            "{} is not a directory in the snapshot: {other:?}",
            path.display()
        ),
    }
}

/// Every node below `dir`, by path relative to it.
pub fn flatten(dir: &DirNode) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    dir.walk(&mut |names, node| {
        let rel: PathBuf = names.iter().map(|n| n.as_os_str()).collect();
        out.insert(rel, node.clone());
    });
    out
}

/// Every entry below `dir` on disk (not following symlinks), by relative
/// path, with its lstat metadata.
pub fn disk_entries(dir: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, fs::Metadata>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            out.insert(p.strip_prefix(root).unwrap().to_owned(), meta.clone());
            if meta.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What a directory holds, by content, to show a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Dir(u32),
    File(u32, [u8; 32]),
    Link(PathBuf),
    Other,
}

pub fn fs_state(dir: &Path) -> BTreeMap<PathBuf, State> {
    use std::os::unix::fs::PermissionsExt;
    disk_entries(dir)
        .into_iter()
        .map(|(rel, m)| {
            let mode = m.permissions().mode();
            let state = if m.is_dir() {
                State::Dir(mode)
            } else if m.file_type().is_symlink() {
                State::Link(fs::read_link(dir.join(&rel)).unwrap())
            } else if m.is_file() {
                State::File(
                    mode,
                    *blake3::hash(&fs::read(dir.join(&rel)).unwrap()).as_bytes(),
                )
            } else {
                State::Other
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

/// Compressible text: numbered lines from a small vocabulary.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "backup",
        "content",
        "repository",
        "snapshot",
        "archive",
        "token",
        "gzip",
        "prune",
    ];
    let mut out = Vec::with_capacity(len + 64);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut line = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        line += 1;
        let w = WORDS[(x % 8) as usize];
        out.extend_from_slice(format!("{seed} line {line}: the {w} is kept once.\n").as_bytes());
    }
    out.truncate(len);
    out
}

/// Incompressible bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
