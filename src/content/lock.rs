//! The repository lock: a file created with O_EXCL holding who took it.
//!
//! It keeps honest runs apart and tells users who is working, but nothing
//! relies on it across machines (DESIGN.md rule 3: two SMB clients can both
//! win an O_EXCL race). A lock whose process is dead on this host is broken
//! automatically; another host's lock is reported with its age, and its
//! mtime is refreshed while the holder works so a live lock looks fresh.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{Civil, human_duration, now_secs};
use crate::fsio;

/// How often a held lock's mtime is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// A lock file with unreadable contents younger than this is assumed to be
/// being written right now.
const FRESH_GRACE_SECS: u64 = 10;

/// Who holds a lock, as written in the lock file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
    /// Unix seconds when the lock was taken.
    pub started: i64,
    pub command: String,
    /// Seconds since the holder last refreshed the lock (file mtime).
    pub idle_secs: u64,
}

impl LockHolder {
    fn encode(&self) -> String {
        format!(
            "host = {}\npid = {}\nstarted = {}\nstarted_utc = {}\ncommand = {}\n",
            self.host,
            self.pid,
            self.started,
            Civil::from_unix(self.started).rfc3339(),
            self.command.replace('\n', " ")
        )
    }

    fn decode(text: &str) -> Option<LockHolder> {
        let mut holder = LockHolder {
            host: String::new(),
            pid: 0,
            started: 0,
            command: String::new(),
            idle_secs: 0,
        };
        let mut seen = 0;
        for line in text.lines() {
            let Some((k, v)) = line.split_once(" = ") else {
                continue;
            };
            match k {
                "host" => holder.host = v.to_owned(),
                "pid" => holder.pid = v.parse().ok()?,
                "started" => holder.started = v.parse().ok()?,
                "command" => holder.command = v.to_owned(),
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(holder)
    }

    /// One line for error messages: host, pid, command and age.
    pub fn describe(&self) -> String {
        let age = (now_secs() - self.started).max(0) as f64;
        format!(
            "`{}` (pid {} on host {}, started {} ago, last active {} ago)",
            self.command,
            self.pid,
            self.host,
            human_duration(age),
            human_duration(self.idle_secs as f64)
        )
    }
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the repository is locked by {holder}; if that run is no longer alive (e.g. its machine crashed), remove the lock with `epygibus unlock -R <repository>`",
        holder = .0.describe()
    )]
    Held(LockHolder),
    #[error(
        "lock file {0} is unreadable or corrupt; if no epygibus run is using the repository, remove it with `epygibus unlock -R <repository>`"
    )]
    Corrupt(PathBuf),
    #[error("could not create lock file {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

/// How long to wait for a lock and whom to tell that we are waiting.
pub struct LockWait<'a> {
    pub timeout: Duration,
    /// Called once, after `notice_after`, with the holder we are waiting for.
    pub on_wait: Option<&'a dyn Fn(&LockHolder)>,
    pub notice_after: Duration,
}

impl LockWait<'_> {
    pub fn no_wait() -> LockWait<'static> {
        LockWait {
            timeout: Duration::ZERO,
            on_wait: None,
            notice_after: Duration::ZERO,
        }
    }
}

/// A held lock; released (file removed) on drop.
pub struct RepoLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

impl RepoLock {
    /// Takes the lock at `path`, breaking it if its holder is a dead process
    /// on this host and waiting as `wait` says while it is held.
    pub fn acquire(path: &Path, command: &str, wait: &LockWait) -> Result<RepoLock, LockError> {
        let me = LockHolder {
            host: fsio::host_name(),
            pid: std::process::id(),
            started: now_secs(),
            command: command.to_owned(),
            idle_secs: 0,
        };
        let began = Instant::now();
        let mut told = false;
        loop {
            match try_create(path, &me) {
                Ok(()) => return Ok(RepoLock::held(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(LockError::Io {
                        path: path.to_owned(),
                        err,
                    });
                }
            }
            match read_holder(path) {
                HolderState::Gone => continue,
                HolderState::Holder(h) if h.host == me.host && !fsio::process_alive(h.pid) => {
                    break_stale(path, &h);
                    continue;
                }
                HolderState::Holder(h) => {
                    if began.elapsed() >= wait.timeout {
                        return Err(LockError::Held(h));
                    }
                    if !told && began.elapsed() >= wait.notice_after {
                        told = true;
                        if let Some(tell) = wait.on_wait {
                            tell(&h);
                        }
                    }
                }
                HolderState::Unreadable { age_secs } => {
                    let timed_out = began.elapsed() >= wait.timeout;
                    if age_secs > FRESH_GRACE_SECS || (timed_out && age_secs > 1) {
                        return Err(LockError::Corrupt(path.to_owned()));
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn held(path: &Path) -> RepoLock {
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let stop = Arc::clone(&stop);
            let path = path.to_owned();
            thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || refresh_until(&path, &stop))
                .ok()
        };
        RepoLock {
            path: path.to_owned(),
            stop,
            refresher,
        }
    }

    /// Removes a lock whoever holds it (the `unlock` command); returns the
    /// holder it removed, if the file was readable.
    pub fn force_break(path: &Path) -> io::Result<Option<LockHolder>> {
        let holder = match read_holder(path) {
            HolderState::Holder(h) => Some(h),
            _ => None,
        };
        fsio::remove_file_if_exists(path)?;
        Ok(holder)
    }

    /// The current holder of the lock at `path`, if any.
    pub fn holder(path: &Path) -> Option<LockHolder> {
        match read_holder(path) {
            HolderState::Holder(h) => Some(h),
            _ => None,
        }
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.refresher.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let _ = fsio::remove_file_if_exists(&self.path);
    }
}

/// Creates the lock complete or not at all: the holder is written to a
/// temp file that is then renamed to `lock` without replacing one, so a
/// run killed at any instant never leaves an empty lock that nobody could
/// attribute (and so break).
fn try_create(path: &Path, me: &LockHolder) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = fsio::TempFile::create_in(dir)?;
    temp.write_all(me.encode().as_bytes())?;
    if temp.commit(path)? {
        Ok(())
    } else {
        Err(io::Error::from(io::ErrorKind::AlreadyExists))
    }
}

enum HolderState {
    Gone,
    Holder(LockHolder),
    Unreadable { age_secs: u64 },
}

fn read_holder(path: &Path) -> HolderState {
    let Ok(meta) = fs::metadata(path) else {
        return HolderState::Gone;
    };
    let idle_secs = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .map_or(0, |d| d.as_secs());
    match fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => HolderState::Gone,
        Ok(text) => match LockHolder::decode(&text) {
            Some(h) => HolderState::Holder(LockHolder { idle_secs, ..h }),
            None => HolderState::Unreadable {
                age_secs: idle_secs,
            },
        },
        Err(_) => HolderState::Unreadable {
            age_secs: idle_secs,
        },
    }
}

/// Moves a dead process's lock aside under a unique name, then removes it.
/// If what we moved is not the lock we judged stale (a live process took
/// the lock in between), it is put back.
fn break_stale(path: &Path, stale: &LockHolder) {
    let aside = path.with_file_name(fsio::temp_name());
    if fsio::rename_no_replace(path, &aside).unwrap_or(false) {
        let moved = fs::read_to_string(&aside)
            .ok()
            .and_then(|t| LockHolder::decode(&t));
        let same = moved.is_some_and(|m| m.pid == stale.pid && m.started == stale.started);
        // A live lock moved by mistake goes back unless the name was taken
        // again meanwhile; what stays aside is removed either way.
        let put_back = !same && fsio::rename_no_replace(&aside, path).unwrap_or(false);
        if !put_back {
            let _ = fsio::remove_file_if_exists(&aside);
        }
    }
}

fn refresh_until(path: &Path, stop: &AtomicBool) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::park_timeout(Duration::from_secs(1));
        if last.elapsed() >= REFRESH_EVERY {
            last = Instant::now();
            // By path, without opening: smbnetfs hangs and then fails
            // opening a file for appending, and takes other I/O down with it.
            let now = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_NOW,
                },
            };
            let _ =
                rustix::fs::utimensat(rustix::fs::CWD, path, &now, rustix::fs::AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        (dir, p)
    }

    #[test]
    fn second_acquire_reports_holder() {
        let (_d, p) = lock_path();
        let _held = RepoLock::acquire(&p, "bu -A home", &LockWait::no_wait()).unwrap();
        match RepoLock::acquire(&p, "prune", &LockWait::no_wait()) {
            Err(LockError::Held(h)) => {
                assert_eq!(h.pid, std::process::id());
                assert_eq!(h.command, "bu -A home");
                assert!(h.describe().contains("bu -A home"));
            }
            other => panic!("expected Held, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn released_on_drop() {
        let (_d, p) = lock_path();
        drop(RepoLock::acquire(&p, "a", &LockWait::no_wait()).unwrap());
        assert!(!p.exists());
        assert!(RepoLock::acquire(&p, "b", &LockWait::no_wait()).is_ok());
    }

    #[test]
    fn stale_lock_of_dead_local_process_is_broken() {
        let (_d, p) = lock_path();
        let dead = LockHolder {
            host: fsio::host_name(),
            pid: dead_pid(),
            started: now_secs() - 3600,
            command: "bu".into(),
            idle_secs: 0,
        };
        fs::write(&p, dead.encode()).unwrap();
        let held = RepoLock::acquire(&p, "prune", &LockWait::no_wait()).unwrap();
        assert_eq!(RepoLock::holder(&p).unwrap().pid, std::process::id());
        drop(held);
    }

    #[test]
    fn other_hosts_lock_is_not_broken() {
        let (_d, p) = lock_path();
        let other = LockHolder {
            host: "some-other-host".into(),
            pid: dead_pid(),
            started: now_secs() - 60,
            command: "bu -A x".into(),
            idle_secs: 0,
        };
        fs::write(&p, other.encode()).unwrap();
        let err = RepoLock::acquire(&p, "prune", &LockWait::no_wait())
            .err()
            .unwrap();
        assert!(err.to_string().contains("some-other-host"), "{err}");
        assert!(p.exists());
    }

    #[test]
    fn waits_for_release() {
        let (_d, p) = lock_path();
        let held = RepoLock::acquire(&p, "a", &LockWait::no_wait()).unwrap();
        let p2 = p.clone();
        let waiter = thread::spawn(move || {
            let told = std::cell::Cell::new(false);
            let tell = |_: &LockHolder| told.set(true);
            let wait = LockWait {
                timeout: Duration::from_secs(20),
                on_wait: Some(&tell),
                notice_after: Duration::from_millis(50),
            };
            let got = RepoLock::acquire(&p2, "b", &wait).is_ok();
            (got, told.get())
        });
        thread::sleep(Duration::from_millis(400));
        drop(held);
        assert_eq!(waiter.join().unwrap(), (true, true));
    }

    #[test]
    fn corrupt_old_lock_is_reported() {
        let (_d, p) = lock_path();
        fs::write(&p, b"garbage").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(
            RepoLock::acquire(&p, "x", &LockWait::no_wait()),
            Err(LockError::Corrupt(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn lock_file_decoder_never_panics(text in ".{0,200}") {
            let _ = LockHolder::decode(&text);
        }
    }

    /// A pid that no process has: a child that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }
}
