//! One "machine": its own configuration, data and home directories, and
//! the real binary run with them and nothing else. Every command gets
//! `EPYGIBUS_CONFIG_DIR`, `EPYGIBUS_DATA_DIR` and `HOME` from here and
//! loses `VISUAL`, `EDITOR`, `XDG_DATA_HOME` and `XDG_CONFIG_HOME`, so the
//! real home and the developer's editor are never used.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use epygibus::content::ContentToken;
use epygibus::snapshot::format::{Snapshot, SnapshotName};

use super::lib_api;
use super::run::{Run, check_sane, label_of, run_timeout};

/// The developer's own AWS settings never reach a command.
const AWS_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

#[derive(Clone)]
pub struct Machine {
    pub config: PathBuf,
    pub data: PathBuf,
    pub home: PathBuf,
    /// The commands' current directory.
    pub cwd: PathBuf,
    /// No command may run longer (a hang fails the test).
    pub timeout: Duration,
    /// Run commands as this user and group (the same number).
    pub(super) user: Option<u32>,
    pub(super) bin: PathBuf,
    /// Run commands with this host name (in a UTS namespace of their own).
    host: Option<String>,
    /// Extra environment of every command (the S3 server's address and keys).
    env: Vec<(String, String)>,
}

impl Machine {
    /// A machine whose directories are `base/{config,data,home}` (created
    /// here), running `bin` in `cwd`.
    pub(super) fn at(base: &Path, cwd: &Path, timeout: Duration, bin: PathBuf) -> Machine {
        let m = Machine {
            config: base.join("config"),
            data: base.join("data"),
            home: base.join("home"),
            cwd: cwd.to_owned(),
            timeout,
            user: None,
            bin,
            host: None,
            env: Vec::new(),
        };
        for d in [&m.config, &m.data, &m.home] {
            fs::create_dir_all(d).unwrap();
        }
        m
    }

    pub fn config_dir(&self) -> PathBuf {
        self.config.clone()
    }

    /// The binary this machine runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Sets the isolated environment (and user) on any command.
    pub fn isolate(&self, c: &mut Command) {
        c.env("EPYGIBUS_CONFIG_DIR", &self.config)
            .env("EPYGIBUS_DATA_DIR", &self.data)
            .env("HOME", &self.home)
            .env_remove("VISUAL")
            .env_remove("EDITOR")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("EPYGIBUS_IDENTITY")
            .env_remove("EPYGIBUS_PASSPHRASE")
            .current_dir(&self.cwd);
        for k in AWS_VARS {
            c.env_remove(k);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(id) = self.user {
            c.uid(id).gid(id);
        }
    }

    /// The same machine, its commands seeing `host` as the host name
    /// (`unshare --uts`, so root only: see [`Machine::can_rename_host`]).
    pub fn with_host(mut self, host: &str) -> Machine {
        self.host = Some(host.to_owned());
        self
    }

    /// The same machine, its commands given `vars` in their environment.
    pub fn with_env<K: ToString, V: ToString>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Machine {
        self.env.extend(
            vars.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self
    }

    /// True when commands can be given a host name of their own.
    pub fn can_rename_host() -> bool {
        super::files::is_root()
            && Command::new("unshare")
                .args(["--uts", "hostname", "epygibus-probe"])
                .status()
                .is_ok_and(|s| s.success())
    }

    /// The binary, without arguments, with the isolated environment.
    pub fn cmd(&self) -> Command {
        let mut c = match &self.host {
            None => Command::new(&self.bin),
            Some(host) => {
                let mut c = Command::new("unshare");
                c.args(["--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\""])
                    .arg(host)
                    .arg(&self.bin);
                c
            }
        };
        self.isolate(&mut c);
        c
    }

    /// `wrapper… epygibus` (e.g. under strace) with the isolated
    /// environment; the caller adds epygibus's arguments.
    pub fn wrapped<S: AsRef<OsStr>>(&self, wrapper: &[S]) -> Command {
        let mut c = Command::new(wrapper[0].as_ref());
        c.args(&wrapper[1..]).arg(&self.bin);
        self.isolate(&mut c);
        c
    }

    /// Runs a prepared command with this machine's timeout; fails the test
    /// if it hung, died of a signal or panicked.
    pub fn exec(&self, cmd: &mut Command, label: &str) -> Run {
        self.exec_timeout(cmd, self.timeout, label)
    }

    pub fn exec_timeout(&self, cmd: &mut Command, timeout: Duration, label: &str) -> Run {
        let run = run_timeout(cmd, timeout, label);
        check_sane(&run);
        run
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.exec(self.cmd().args(args), &label_of(args))
    }

    /// Runs with another current directory.
    pub fn run_in<S: AsRef<OsStr>>(&self, dir: &Path, args: &[S]) -> Run {
        self.exec(self.cmd().current_dir(dir).args(args), &label_of(args))
    }

    /// Runs `wrapper… epygibus args…` with three times the timeout.
    pub fn run_wrapped<S: AsRef<OsStr>>(&self, wrapper: &[&str], args: &[S]) -> Run {
        let label = format!("{} epygibus {}", wrapper.join(" "), label_of(args));
        self.exec_timeout(self.wrapped(wrapper).args(args), self.timeout * 3, &label)
    }

    /// Runs a command that must exit 0 without writing to stderr (both
    /// outputs UTF-8); returns its stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        self.run(args).code(0).quiet().utf8().stdout
    }

    /// Runs a command that must fail with status 1, print nothing on stdout
    /// and exactly one `epygibus: error:` line on stderr; returns the line.
    pub fn fail<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let run = self.run(args).code(1).utf8();
        assert!(run.stdout_bytes.is_empty(), "printed on failure: {run:?}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "want one stderr line: {run:?}");
        assert!(lines[0].starts_with("epygibus: error: "), "{run:?}");
        lines[0].to_owned()
    }

    /// The repository directory, from its spec file's `path = ` line.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        let spec = fs::read_to_string(self.config.join("repos").join(name)).unwrap();
        let path = spec
            .lines()
            .find_map(|l| l.strip_prefix("path = "))
            .unwrap_or_else(|| panic!("no path line in spec: {spec}"));
        PathBuf::from(path)
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
        lib_api::list_snapshots(&self.snapshot_dir(archive))
    }

    /// Every snapshot of the archive, decoded, oldest first.
    pub fn snapshots(&self, archive: &str) -> Vec<(SnapshotName, Snapshot)> {
        let dir = self.snapshot_dir(archive);
        lib_api::list_snapshots(&dir)
            .into_iter()
            .map(|n| (n, lib_api::read_snapshot(&dir, &n)))
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
        let got = lib_api::ref_counts(&self.repo_dir(repo));
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
        let dir = self.repo_dir(repo);
        for t in tokens {
            let data = lib_api::read_content(&dir, &t)
                .unwrap_or_else(|e| panic!("content {} unreadable: {e}", t.to_hex()));
            assert_eq!(
                ContentToken::of(&data),
                t,
                "content {} is damaged",
                t.to_hex()
            );
        }
    }
}
