//! File-system helpers that keep data safe on hostile storage (the
//! durable-write rules of docs/design.md); the local directory store
//! ([`crate::store::LocalStore`]) is built on them.
//!
//! Every durable file is written to a temp name in its final directory,
//! fsynced, then renamed to a name that must not exist yet. Nothing here
//! renames over an existing file, creates hard links or changes modes, because
//! exFAT and SMB shares either refuse those or do them non-atomically.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// Prefix of every temp file the tool creates, so `check` can find leftovers.
pub const TEMP_PREFIX: &str = "tmp.";

/// How often an operation that failed with EBUSY (SMB share modes) is retried.
const BUSY_RETRIES: u32 = 20;

/// A fresh temp-file name: prefix, host, pid and a per-process counter,
/// using only `[0-9a-z.-]` so every file system accepts it unchanged.
/// Host and pid let `check` tell a dead local run's leftovers at once.
pub fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{TEMP_PREFIX}{}.{n}.{nanos:x}", owner_tag())
}

/// The host as it appears in temp names: lowercase, `[0-9a-z-]`, short.
fn temp_host_tag(host: &str) -> String {
    host.chars()
        .take(32)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect()
}

/// True when a temp name was made by a process of this host that is no
/// longer running (its file can only be a leftover).
pub fn temp_owner_is_dead(name: &[u8]) -> bool {
    name.strip_prefix(TEMP_PREFIX.as_bytes())
        .is_some_and(owner_is_dead)
}

/// This process as it appears in the names of what it writes (temp files,
/// packs): `<host tag>.<pid>`, so a later run can tell what a dead process
/// of this host left.
pub fn owner_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| format!("{}.{}", temp_host_tag(&host_name()), std::process::id()))
}

/// True when `name` starts with the [`owner_tag`] of a process of this host
/// that is no longer running.
pub fn owner_is_dead(name: &[u8]) -> bool {
    let mut parts = name.split(|&b| b == b'.');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let pid = std::str::from_utf8(pid)
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    host == temp_host_tag(&host_name()).as_bytes() && pid.is_some_and(|p| !process_alive(p))
}

/// True for names produced by [`temp_name`].
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX.as_bytes())
}

/// Retries `op` while it fails with EINTR or EBUSY (SMB refuses to rename or
/// unlink files another client holds open; such refusals are short-lived).
pub fn retry_busy<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

/// A file being written under a temp name; [`TempFile::commit`] makes it
/// durable under its final name. Dropped without commit, the temp file is
/// removed.
pub struct TempFile {
    file: Option<File>,
    path: PathBuf,
}

impl TempFile {
    /// Creates a new, empty temp file in `dir`.
    pub fn create_in(dir: &Path) -> io::Result<TempFile> {
        let path = dir.join(temp_name());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        Ok(TempFile {
            file: Some(file),
            path,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file used after commit")
    }

    /// Flushes to stable storage and renames to `final_path`, which must not
    /// exist. Returns `Ok(false)` (and removes the temp file) when it does.
    pub fn commit(self, final_path: &Path) -> io::Result<bool> {
        self.commit_with(final_path, Durability::EachFile, |_| true)
    }

    /// Renames to `final_path` (flushing first unless `durability` is
    /// batched: the caller then syncs the file system before relying on it).
    /// When `final_path` exists and `intact` says it is not what this temp
    /// file holds (a crash left it incomplete), it is replaced; otherwise the
    /// temp file is dropped and `Ok(false)` returned.
    pub fn commit_with(
        mut self,
        final_path: &Path,
        durability: Durability,
        intact: impl FnOnce(&Path) -> bool,
    ) -> io::Result<bool> {
        let file = self.file.take().expect("temp file committed twice");
        if durability == Durability::EachFile {
            sync_file(&file)?;
        }
        drop(file);
        let mut renamed = rename_no_replace(&self.path, final_path)?;
        if !renamed && !intact(final_path) {
            remove_file_if_exists(final_path)?;
            renamed = rename_no_replace(&self.path, final_path)?;
        }
        if !renamed {
            remove_file_if_exists(&self.path)?;
        }
        // Either way the temp file is gone; Drop must not remove anything.
        self.path = PathBuf::new();
        Ok(renamed)
    }
}

impl TempFile {
    /// Flushes and renames over `final_path`, replacing what is there. Only
    /// for files on this machine's own disk (the configuration), where the
    /// rename is atomic; never for the backup disk.
    pub fn replace(mut self, final_path: &Path) -> io::Result<()> {
        let file = self.file.take().expect("temp file committed twice");
        sync_file(&file)?;
        drop(file);
        fs::rename(&self.path, final_path)?;
        self.path = PathBuf::new();
        sync_dir(parent_dir(final_path))
    }
}

/// How new content files are made durable before anything refers to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync every file before its rename (network and FUSE file systems,
    /// where only fsync reaches the server).
    EachFile,
    /// One syncfs before the index that refers to them is written (local
    /// journaling file systems, where syncfs flushes everything at once).
    Batched,
}

/// Batched on local file systems whose syncfs is known to flush all data,
/// per file everywhere else.
pub fn durability_of(dir: &Path) -> Durability {
    if is_known_local(dir) {
        Durability::Batched
    } else {
        Durability::EachFile
    }
}

/// True when `dir` is on a local file system we know: its syncfs flushes
/// all data and a close is done when it returns (unlike FUSE's).
pub fn is_known_local(dir: &Path) -> bool {
    const LOCAL: [u64; 5] = [
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // f2fs
    ];
    rustix::fs::statfs(dir).is_ok_and(|st| LOCAL.contains(&(st.f_type as u64)))
}

/// Flushes the whole file system holding `dir` (syncfs).
pub fn sync_fs(dir: &Path) -> io::Result<()> {
    let file = File::open(dir)?;
    rustix::fs::syncfs(&file).map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file().write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file.take();
            let _ = retry_busy(|| fs::remove_file(&self.path));
        }
    }
}

/// Writes `bytes` durably to `final_path`, which must not exist yet.
/// Returns `Ok(false)` when it already existed (nothing is changed then).
pub fn write_new_file(final_path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let dir = parent_dir(final_path);
    let mut temp = TempFile::create_in(dir)?;
    temp.write_all(bytes)?;
    let renamed = temp.commit(final_path)?;
    if renamed {
        sync_dir(dir)?;
    }
    Ok(renamed)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync, retrying EINTR.
pub fn sync_file(file: &File) -> io::Result<()> {
    retry_busy(|| file.sync_all())
}

/// fsyncs a directory so a rename in it is durable. Network shares and some
/// FUSE file systems refuse this (EINVAL/ENOTSUP); the rename is then as
/// durable as that file system can make it, so the refusal is not an error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let file = match File::open(dir) {
        Ok(f) => f,
        Err(e) if is_unsupported(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    match retry_busy(|| file.sync_all()) {
        Err(e) if is_unsupported(&e) || e.raw_os_error() == Some(libc::EBADF) => Ok(()),
        other => other,
    }
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOTSUP) | Some(libc::ENOSYS) | Some(libc::EACCES)
    )
}

/// Renames `from` to `to` only if `to` does not exist. Returns `Ok(false)`
/// when it exists. Uses `renameat2(RENAME_NOREPLACE)` where the file system
/// supports it; elsewhere (FUSE, SMB) checks first and then renames under
/// a claim directory, so that two clients of one share never both win.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    // Once refused (FUSE, SMB), not asked again: each refusal is a round
    // trip to the server.
    static UNSUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return check_then_rename(from, to);
    }
    let c_from = c_path(from)?;
    let c_to = c_path(to)?;
    let rc = retry_busy(|| {
        // SAFETY: both arguments are valid NUL-terminated C strings.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                c_from.as_ptr(),
                libc::AT_FDCWD,
                c_to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    });
    match rc {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if is_unsupported(&e) => {
            UNSUPPORTED.store(true, Ordering::Relaxed);
            check_then_rename(from, to)
        }
        Err(e) => Err(e),
    }
}

/// The fallback where `renameat2(RENAME_NOREPLACE)` is refused: check,
/// then rename, under a claim on `to`. Without the claim two SMB clients
/// can both find `to` absent and both rename, the second replacing the
/// first (seen as lost index counts when two machines commit the same
/// index generation). Making a directory is atomic on the server, so one
/// claim wins; the other run waits for `to` to appear.
fn check_then_rename(from: &Path, to: &Path) -> io::Result<bool> {
    let claim = claim_path(to)?;
    if !take_claim(&claim, to)? {
        return Ok(false);
    }
    let renamed = if fs::symlink_metadata(to).is_ok() {
        Ok(false)
    } else {
        retry_busy(|| fs::rename(from, to)).map(|()| true)
    };
    let _ = fs::remove_dir(&claim);
    renamed
}

/// How long a claim may stand before it counts as a dead run's.
const STALE_CLAIM: Duration = Duration::from_secs(60);

/// `tmp.claim.<name>` beside `to`: a temp name, so listings skip it.
fn claim_path(to: &Path) -> io::Result<PathBuf> {
    let name = to
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut claim = std::ffi::OsString::from(format!("{TEMP_PREFIX}claim."));
    claim.push(name);
    Ok(parent_dir(to).join(claim))
}

/// Takes the claim on `to`: true when taken, false when `to` appeared
/// while another run held it.
fn take_claim(claim: &Path, to: &Path) -> io::Result<bool> {
    loop {
        match fs::create_dir(claim) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
        if fs::symlink_metadata(to).is_ok() {
            return Ok(false);
        }
        let stale = fs::symlink_metadata(claim)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_CLAIM));
        if stale {
            let _ = fs::remove_dir(claim);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Removes a file; a file that is already gone is not an error.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match retry_busy(|| fs::remove_file(path)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates a directory; one that exists already is not an error.
pub fn create_dir_if_missing(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Creates `dir` and its missing parents; returns those it created,
/// outermost first, so a failed caller can remove them again.
pub fn create_dir_chain(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    missing.reverse();
    let mut created = Vec::new();
    for p in missing {
        if let Err(e) = create_dir_if_missing(p) {
            remove_dir_chain(&created);
            return Err(io::Error::new(
                e.kind(),
                format!("could not create directory {}: {e}", p.display()),
            ));
        }
        created.push(p.to_owned());
    }
    Ok(created)
}

/// Removes directories made by [`create_dir_chain`] if they are empty.
pub fn remove_dir_chain(created: &[PathBuf]) {
    for p in created.iter().rev() {
        let _ = fs::remove_dir(p);
    }
}

/// Asks ext2/3/4 to place the subdirectories of `dir` in different block
/// groups (the "top of hierarchy" flag). Content files land in their
/// fan-out directory's group; spread over many groups, creating thousands
/// of them stays cheap even right after thousands were deleted (ext4
/// without a journal scans a group's recently freed inodes on every
/// allocation: measured 4-6x less kernel time for a first backup). Other
/// file systems do not know the flag; failure changes nothing.
pub fn hint_spread_subdirs(dir: &Path) {
    if let Ok(f) = File::open(dir)
        && let Ok(flags) = rustix::fs::ioctl_getflags(&f)
    {
        let _ = rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::TOPDIR);
    }
}

/// Reads a whole small file, retrying EBUSY.
pub fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    retry_busy(|| fs::read(path))
}

/// The current user's login name, for the `<user>` path component.
pub fn user_name() -> String {
    if let Some(name) = user_name_from_passwd() {
        return name;
    }
    std::env::var("USER").unwrap_or_else(|_| format!("uid{}", unsafe { libc::geteuid() }))
}

fn user_name_from_passwd() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the given length; result is checked.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf and is NUL-terminated on success.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

/// This machine's host name, for the `<host>` path component and locks.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// True when a process with this pid exists on this machine.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `path` with `.` components dropped and each `..` taking the component
/// before it away, without asking the file system: for paths made by
/// joining a recorded relative path (`repos/u/r/../../../snapshots/h/u/a`)
/// so that messages name the directory as people know it. Only for paths
/// whose components are real directories epygibus made, where `..` means
/// the parent (no symlinks in between).
pub fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let pop = matches!(clean.components().next_back(), Some(Component::Normal(_)));
                if pop {
                    clean.pop();
                } else if !clean.has_root() {
                    clean.push("..");
                }
            }
            other => clean.push(other),
        }
    }
    clean
}

/// `to` relative to directory `from` (both absolute and clean), e.g.
/// `/m/e/snapshots/h/u/a` to `/m/e/repos/u/r` is `../../../../repos/u/r`.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to_parts: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to_parts[common..] {
        rel.push(c);
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_of_racing_renames_without_replace_wins() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("index.7");
        let winners: Vec<bool> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..8)
                .map(|i| {
                    let from = dir.path().join(format!("{TEMP_PREFIX}{i}"));
                    fs::write(&from, format!("run {i}")).unwrap();
                    let to = &to;
                    s.spawn(move || check_then_rename(&from, to).unwrap())
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
        let winner = winners.iter().position(|w| *w).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), format!("run {winner}"));
        assert!(!claim_path(&to).unwrap().exists(), "the claim is released");
    }

    #[test]
    fn a_held_claim_waits_for_the_name_and_a_stale_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("tmp.a"), dir.path().join("snap"));
        fs::write(&from, "mine").unwrap();
        let claim = claim_path(&to).unwrap();
        fs::create_dir(&claim).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                fs::write(&to, "theirs").unwrap();
            });
            assert!(!check_then_rename(&from, &to).unwrap());
        });
        assert_eq!(fs::read_to_string(&to).unwrap(), "theirs");
        // A claim left by a dead run, older than STALE_CLAIM.
        let to = dir.path().join("snap2");
        let claim = claim_path(&to).unwrap();
        fs::create_dir(&claim).unwrap();
        let old = std::time::SystemTime::now() - STALE_CLAIM - Duration::from_secs(5);
        File::open(&claim).unwrap().set_modified(old).unwrap();
        assert!(check_then_rename(&from, &to).unwrap());
        assert_eq!(fs::read_to_string(&to).unwrap(), "mine");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(
                Path::new("/m/e/snapshots/h/u/a"),
                Path::new("/m/e/repos/u/r")
            ),
            Path::new("../../../../repos/u/r")
        );
        assert_eq!(
            relative_path(Path::new("/a"), Path::new("/a/b")),
            Path::new("b")
        );
    }

    #[test]
    fn clean_paths() {
        let c = |p: &str| clean_path(Path::new(p));
        assert_eq!(
            c("/m/e/repos/u/r/../../../snapshots/h/u/a"),
            Path::new("/m/e/snapshots/h/u/a")
        );
        assert_eq!(c("/a/./b/"), Path::new("/a/b"));
        assert_eq!(c("/../a"), Path::new("/a"));
        assert_eq!(c("a/../../b"), Path::new("../b"));
        assert_eq!(c("../../x"), Path::new("../../x"));
    }

    #[test]
    fn write_new_file_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(write_new_file(&path, b"one").unwrap());
        assert!(!write_new_file(&path, b"two").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| is_temp_name(n.as_bytes()))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn damaged_final_file_is_replaced_intact_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"").unwrap();
        let mut t = TempFile::create_in(dir.path()).unwrap();
        t.write_all(b"full").unwrap();
        assert!(
            t.commit_with(&path, Durability::Batched, |_| false)
                .unwrap()
        );
        assert_eq!(fs::read(&path).unwrap(), b"full");
        let mut t = TempFile::create_in(dir.path()).unwrap();
        t.write_all(b"other").unwrap();
        assert!(!t.commit_with(&path, Durability::Batched, |_| true).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"full");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TempFile::create_in(dir.path()).unwrap();
        t.write_all(b"x").unwrap();
        drop(t);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn temp_names_are_unique_and_portable() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == b'.' || c == b'-')
        );
        assert!(!temp_owner_is_dead(a.as_bytes()), "we are alive");
        let dead = format!("tmp.{}.{}.0.0", temp_host_tag(&host_name()), u32::MAX - 1);
        assert!(temp_owner_is_dead(dead.as_bytes()));
        let other_host = format!("tmp.elsewhere.{}.0.0", u32::MAX - 1);
        assert!(!temp_owner_is_dead(other_host.as_bytes()));
    }
}
