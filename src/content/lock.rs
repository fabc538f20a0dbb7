//! The repository lock: an object written create-only, holding who took it.
//!
//! It keeps honest runs apart and tells users who is working, but nothing
//! relies on it across machines (docs/design.md: two SMB clients can both
//! win a create race). A lock whose process is dead on this host is broken
//! automatically; another host's lock is reported with its age, and its
//! mtime is refreshed while the holder works so a live lock looks fresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::{Civil, human_duration, now_secs};
use crate::fsio;
use crate::store::{Committed, SharedStore, Store, StoreError};

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
    Corrupt(String),
    #[error("could not create the lock: {0}")]
    Io(StoreError),
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

/// A held lock; released (object removed) on drop.
pub struct RepoLock {
    store: SharedStore,
    name: String,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

impl RepoLock {
    /// Takes the lock `name` in `store`, breaking it if its holder is a
    /// dead process on this host and waiting as `wait` says while it is
    /// held.
    pub fn acquire(
        store: SharedStore,
        name: &str,
        command: &str,
        wait: &LockWait,
    ) -> Result<RepoLock, LockError> {
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
            // Written complete or not at all (create-only), so a run killed
            // at any instant never leaves an empty lock that nobody could
            // attribute (and so break).
            match store.put_new(name, me.encode().as_bytes()) {
                Ok(Committed::Created) => return Ok(RepoLock::held(store, name)),
                Ok(Committed::Existed) => {}
                Err(e) => return Err(LockError::Io(e)),
            }
            match read_holder(store.as_ref(), name) {
                HolderState::Gone => continue,
                HolderState::Holder(h) if h.host == me.host && !fsio::process_alive(h.pid) => {
                    break_stale(store.as_ref(), name, &h);
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
                        return Err(LockError::Corrupt(store.place(name)));
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn held(store: SharedStore, name: &str) -> RepoLock {
        let stop = Arc::new(AtomicBool::new(false));
        let refresher = {
            let stop = Arc::clone(&stop);
            let store = store.clone();
            let name = name.to_owned();
            thread::Builder::new()
                .name("lock-refresh".into())
                .spawn(move || refresh_until(store.as_ref(), &name, &stop))
                .ok()
        };
        RepoLock {
            store,
            name: name.to_owned(),
            stop,
            refresher,
        }
    }

    /// Removes a lock whoever holds it (the `unlock` command); returns
    /// whether there was one and its holder, if it was readable.
    pub fn force_break(
        store: &dyn Store,
        name: &str,
    ) -> Result<(bool, Option<LockHolder>), StoreError> {
        let existed = store.stat(name)?.is_some();
        let holder = match read_holder(store, name) {
            HolderState::Holder(h) => Some(h),
            _ => None,
        };
        store.delete(name)?;
        Ok((existed, holder))
    }

    /// The current holder of the lock `name`, if any.
    pub fn holder(store: &dyn Store, name: &str) -> Option<LockHolder> {
        match read_holder(store, name) {
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
        // Only our own lock: if it was broken and taken by another run
        // meanwhile, that run's lock stays.
        let ours = matches!(
            read_holder(self.store.as_ref(), &self.name),
            HolderState::Holder(h) if h.host == fsio::host_name() && h.pid == std::process::id()
        );
        if ours {
            let _ = self.store.delete(&self.name);
        }
    }
}

enum HolderState {
    Gone,
    Holder(LockHolder),
    Unreadable { age_secs: u64 },
}

fn read_holder(store: &dyn Store, name: &str) -> HolderState {
    let Ok(Some(meta)) = store.stat(name) else {
        return HolderState::Gone;
    };
    let idle_secs = SystemTime::now()
        .duration_since(meta.modified)
        .map_or(0, |d| d.as_secs());
    match store.read(name) {
        Err(e) if e.is_not_found() => HolderState::Gone,
        Ok(bytes) => match std::str::from_utf8(&bytes)
            .ok()
            .and_then(LockHolder::decode)
        {
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
/// If what was moved is not the lock judged stale (a live process took the
/// lock in between), it is put back.
fn break_stale(store: &dyn Store, name: &str, stale: &LockHolder) {
    let aside = fsio::temp_name();
    if store.rename_new(name, &aside).unwrap_or(false) {
        let moved = store
            .read(&aside)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| LockHolder::decode(&t));
        let same = moved.is_some_and(|m| m.pid == stale.pid && m.started == stale.started);
        // A live lock moved by mistake goes back unless the name was taken
        // again meanwhile; what stays aside is removed either way.
        let put_back = !same && store.rename_new(&aside, name).unwrap_or(false);
        if !put_back {
            let _ = store.delete(&aside);
        }
    }
}

fn refresh_until(store: &dyn Store, name: &str, stop: &AtomicBool) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::park_timeout(Duration::from_secs(1));
        if last.elapsed() >= REFRESH_EVERY {
            last = Instant::now();
            let _ = store.touch(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_store() -> (tempfile::TempDir, SharedStore) {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(crate::store::LocalStore::new(dir.path()));
        (dir, store)
    }

    fn take(s: &SharedStore, command: &str) -> Result<RepoLock, LockError> {
        RepoLock::acquire(s.clone(), "lock", command, &LockWait::no_wait())
    }

    #[test]
    fn second_acquire_reports_holder() {
        let (_d, p) = lock_store();
        let _held = take(&p, "bu -A home").unwrap();
        match take(&p, "prune") {
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
        let (_d, p) = lock_store();
        drop(take(&p, "a").unwrap());
        assert!(p.stat("lock").unwrap().is_none());
        assert!(take(&p, "b").is_ok());
    }

    #[test]
    fn stale_lock_of_dead_local_process_is_broken() {
        let (d, p) = lock_store();
        let dead = LockHolder {
            host: fsio::host_name(),
            pid: dead_pid(),
            started: now_secs() - 3600,
            command: "bu".into(),
            idle_secs: 0,
        };
        std::fs::write(d.path().join("lock"), dead.encode()).unwrap();
        let held = take(&p, "prune").unwrap();
        assert_eq!(
            RepoLock::holder(p.as_ref(), "lock").unwrap().pid,
            std::process::id()
        );
        drop(held);
    }

    #[test]
    fn other_hosts_lock_is_not_broken() {
        let (d, p) = lock_store();
        let other = LockHolder {
            host: "some-other-host".into(),
            pid: dead_pid(),
            started: now_secs() - 60,
            command: "bu -A x".into(),
            idle_secs: 0,
        };
        std::fs::write(d.path().join("lock"), other.encode()).unwrap();
        let err = take(&p, "prune").err().unwrap();
        assert!(err.to_string().contains("some-other-host"), "{err}");
        assert!(p.stat("lock").unwrap().is_some());
    }

    #[test]
    fn waits_for_release() {
        let (_d, p) = lock_store();
        let held = take(&p, "a").unwrap();
        let p2 = p.clone();
        let waiter = thread::spawn(move || {
            let told = std::cell::Cell::new(false);
            let tell = |_: &LockHolder| told.set(true);
            let wait = LockWait {
                timeout: Duration::from_secs(20),
                on_wait: Some(&tell),
                notice_after: Duration::from_millis(50),
            };
            let got = RepoLock::acquire(p2, "lock", "b", &wait).is_ok();
            (got, told.get())
        });
        thread::sleep(Duration::from_millis(400));
        drop(held);
        assert_eq!(waiter.join().unwrap(), (true, true));
    }

    #[test]
    fn corrupt_old_lock_is_reported() {
        let (d, p) = lock_store();
        let path = d.path().join("lock");
        std::fs::write(&path, b"garbage").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(matches!(take(&p, "x"), Err(LockError::Corrupt(_))));
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
