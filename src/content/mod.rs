//! The content repository: every distinct file content stored once, in a
//! file named by its token, with reference counts so unused content can be
//! pruned. It knows nothing of snapshots; they reach it only through the
//! seed's five operations on a [`ContentToken`] (see [`Repository`]).

mod check;
mod lock;
mod refcount;
mod store;
mod token;

pub use check::{CheckOptions, CheckReport, Finding, report_temp_files_in};
pub use lock::{LockError, LockHolder, LockWait, RepoLock};
pub use refcount::{IndexDecodeError, IndexEntry, RefIndex, StoredForm};
pub use store::{ContentReader, gzip_member};
pub use token::{BadToken, ContentToken};

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::now_secs;
use crate::fsio;

/// The repository layout's version, written to `format`.
const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "format";
const LOCK_FILE: &str = "lock";
const CONTENT_DIR: &str = "content";
/// Directory where archives register the snapshot directories using this
/// repository, so prune and check can see every snapshot (DESIGN.md rule 3).
pub const REGISTRY_DIR: &str = "archives";
/// Conversions between index saves during `compress`.
const COMPRESS_SAVE_EVERY: usize = 2000;

/// Errors of the content repository.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("could not {action} {path}: {err}")]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("{0} is not an epygibus repository (it has no `format` file)")]
    NotARepository(PathBuf),
    #[error("repository format file {path} is not valid: {reason}")]
    CorruptFormat { path: PathBuf, reason: String },
    #[error(
        "reference-count index {path} is corrupt ({reason}); it was left untouched; run `epygibus check --repair` once that command exists, or restore the file from a copy"
    )]
    CorruptIndex {
        path: PathBuf,
        reason: IndexDecodeError,
    },
    #[error("repository {0} has no reference-count index (no `index.N` file)")]
    MissingIndex(PathBuf),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("content {0} is not in the repository")]
    UnknownToken(ContentToken),
    #[error("content file of {token} is missing from the repository (expected {path})")]
    MissingContent { token: ContentToken, path: PathBuf },
    #[error("content file {path} does not match its token: it is damaged")]
    DamagedContent { path: PathBuf },
    #[error("{0} changed while it was being read")]
    ChangedWhileReading(PathBuf),
    /// The file to back up could not be opened or read (vanished,
    /// unreadable); the repository is fine.
    #[error("could not read {path}: {err}")]
    Source { path: PathBuf, err: io::Error },
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
    #[error(
        "index generation {0} was written by another process at the same time; nothing was lost, run the command again"
    )]
    IndexConflict(PathBuf),
    #[error("{0} already exists")]
    AlreadyExists(PathBuf),
}

impl ContentError {
    /// True when the fault is in the file being stored, not the repository:
    /// a backup reports and skips such files and goes on.
    pub fn is_source_problem(&self) -> bool {
        matches!(
            self,
            ContentError::Source { .. }
                | ContentError::ChangedWhileReading(_)
                | ContentError::NotRegularFile(_)
        )
    }
}

fn source_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |err| ContentError::Source {
        path: path.to_owned(),
        err,
    }
}

pub type Result<T, E = ContentError> = std::result::Result<T, E>;

/// Wraps an io::Error with what we were doing and to which path.
fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContentError + 'a {
    move |err| ContentError::Io {
        action,
        path: path.to_owned(),
        err,
    }
}

/// Why content is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// For a new reference (counted).
    Reference,
    /// Only to put a missing content file back (nothing counted).
    Rewrite,
}

/// How a repository is opened.
pub enum Access<'a> {
    /// Reading only; no lock is taken (statistics, listings).
    ReadOnly,
    /// Changing the repository: the lock is held until the value is dropped.
    Locked {
        command: &'a str,
        wait: LockWait<'a>,
    },
}

/// What a `compress` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompressReport {
    pub converted: u64,
    pub kept_plain: u64,
    pub stored_before: u64,
    pub stored_after: u64,
}

/// What a `prune` run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub items: u64,
    pub content_bytes: u64,
    pub stored_bytes: u64,
    /// Unreferenced items kept because they were released or touched
    /// less than the minimum age ago.
    pub kept_young: u64,
    /// Items with a zero count that a snapshot does use (count raised).
    pub kept_referenced: u64,
}

/// What prune must respect.
pub struct PruneRules<'a> {
    /// Token → entries using it, over every snapshot the repository's
    /// registered snapshot directories hold.
    pub referenced: &'a HashMap<ContentToken, u64>,
    /// Keep unreferenced content released or touched more recently.
    pub min_age: Duration,
}

/// Totals over the index, for `repo_stats`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepoStats {
    pub referenced_items: u64,
    pub unreferenced_items: u64,
    pub references: u64,
    pub referenced_content_bytes: u64,
    pub referenced_stored_bytes: u64,
    pub unreferenced_content_bytes: u64,
    pub unreferenced_stored_bytes: u64,
}

/// Content newly written during this session (for `bu --stats`).
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub new_items: AtomicU64,
    pub new_content_bytes: AtomicU64,
    pub new_stored_bytes: AtomicU64,
}

/// An open content repository.
pub struct Repository {
    dir: PathBuf,
    prefer: StoredForm,
    index: Mutex<RefIndex>,
    dirty: AtomicBool,
    durability: fsio::Durability,
    /// Content files were renamed into place without fsync; the file system
    /// must be synced before an index refers to them.
    unsynced: AtomicBool,
    /// Zero-count content referenced again this run, with a source file
    /// that holds it.
    revived: Mutex<Vec<(ContentToken, PathBuf)>>,
    /// Every reference counted since [`Repository::begin_session`], so a
    /// failed backup can give them all back.
    session_refs: Mutex<Vec<ContentToken>>,
    pub session: SessionCounters,
    _lock: Option<RepoLock>,
}

impl Repository {
    /// Creates a repository at `dir`, which must not exist. It is built
    /// under a temp name beside `dir` and renamed into place, so a failure
    /// leaves no half-made repository.
    pub fn create(dir: &Path, compressed: bool) -> Result<()> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        if fs::symlink_metadata(dir).is_ok() {
            return Err(ContentError::AlreadyExists(dir.to_owned()));
        }
        let temp = parent.join(fsio::temp_name());
        fs::create_dir(&temp).map_err(io_err("create directory", &temp))?;
        let built =
            Self::populate(&temp, compressed).and_then(|()| {
                match fsio::rename_no_replace(&temp, dir) {
                    Ok(true) => fsio::sync_dir(parent).map_err(io_err("sync", parent)),
                    Ok(false) => Err(ContentError::AlreadyExists(dir.to_owned())),
                    Err(e) => Err(io_err("create", dir)(e)),
                }
            });
        if built.is_err() {
            let _ = fs::remove_dir_all(&temp);
        }
        built
    }

    fn populate(dir: &Path, compressed: bool) -> Result<()> {
        let compression = if compressed { "gzip" } else { "none" };
        let format = format!(
            "epygibus repository\nformat = {FORMAT_VERSION}\nhash = blake3\ncompression = {compression}\n"
        );
        let format_path = dir.join(FORMAT_FILE);
        fsio::write_new_file(&format_path, format.as_bytes())
            .map_err(io_err("write", &format_path))?;
        for sub in [CONTENT_DIR, REGISTRY_DIR] {
            let p = dir.join(sub);
            fs::create_dir(&p).map_err(io_err("create directory", &p))?;
        }
        fsio::hint_spread_subdirs(&dir.join(CONTENT_DIR));
        // Fan-out directories are made once, here, not probed per file.
        for i in 0..=255u8 {
            let p = dir.join(CONTENT_DIR).join(format!("{i:02x}"));
            fs::create_dir(&p).map_err(io_err("create directory", &p))?;
        }
        let index = RefIndex {
            generation: 1,
            ..RefIndex::default()
        };
        let path = refcount::generation_path(dir, 1);
        fsio::write_new_file(&path, &index.encode()).map_err(io_err("write", &path))?;
        Ok(())
    }

    /// Opens the repository at `dir`.
    pub fn open(dir: &Path, access: Access) -> Result<Repository> {
        let prefer = read_format(dir)?;
        let lock = match access {
            Access::ReadOnly => None,
            Access::Locked { command, wait } => {
                Some(RepoLock::acquire(&dir.join(LOCK_FILE), command, &wait)?)
            }
        };
        let index = load_index(dir)?;
        Ok(Repository {
            dir: dir.to_owned(),
            prefer,
            index: Mutex::new(index),
            dirty: AtomicBool::new(false),
            durability: fsio::durability_of(dir),
            unsynced: AtomicBool::new(false),
            revived: Mutex::new(Vec::new()),
            session_refs: Mutex::new(Vec::new()),
            session: SessionCounters::default(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when new content is gzip-compressed by default.
    pub fn compresses(&self) -> bool {
        self.prefer == StoredForm::Gzip
    }

    fn index(&self) -> std::sync::MutexGuard<'_, RefIndex> {
        // A panic while holding the lock cannot leave counts lower than
        // before (updates are single increments), so poisoning is ignored.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn content_path(&self, token: &ContentToken, form: StoredForm) -> PathBuf {
        let mut name = token.to_hex();
        name.push_str(form.suffix());
        self.dir.join(CONTENT_DIR).join(token.fan_out()).join(name)
    }

    fn fan_out_dir(&self, token: &ContentToken) -> PathBuf {
        self.dir.join(CONTENT_DIR).join(token.fan_out())
    }

    /// Stores the content of the regular file at `path` (once per distinct
    /// content) and counts one more reference to it.
    pub fn store_contents(&self, path: &Path) -> Result<ContentToken> {
        self.store_file(path, Purpose::Reference)
    }

    fn store_file(&self, path: &Path, purpose: Purpose) -> Result<ContentToken> {
        let mut file = store::open_source(path).map_err(source_err(path))?;
        let meta = file.metadata().map_err(source_err(path))?;
        if !meta.is_file() {
            return Err(ContentError::NotRegularFile(path.to_owned()));
        }
        let expected = meta.len();
        if expected <= store::SMALL_FILE as u64 {
            let mut data = Vec::with_capacity(expected as usize + 1);
            (&mut file)
                .take(store::SMALL_FILE as u64 + 1)
                .read_to_end(&mut data)
                .map_err(source_err(path))?;
            if data.len() as u64 != expected {
                return Err(ContentError::ChangedWhileReading(path.to_owned()));
            }
            return self.store_small(&data, path, purpose);
        }
        self.store_large(path, &mut file, expected, purpose)
    }

    fn store_small(&self, data: &[u8], path: &Path, purpose: Purpose) -> Result<ContentToken> {
        let token = ContentToken::of(data);
        if purpose == Purpose::Reference && self.add_reference_if_present(&token, path)? {
            return Ok(token);
        }
        let (form, bytes) = store::encode_small(data, self.prefer);
        let final_path = self.content_path(&token, form);
        let dir = self.fan_out_dir(&token);
        self.note_unsynced();
        store::write_small(&dir, &final_path, &bytes, self.durability, |p| {
            self.file_holds(p, form, &token)
        })
        .map_err(io_err("write", &final_path))?;
        self.record_written(purpose, token, data.len() as u64, form, bytes.len() as u64);
        Ok(token)
    }

    /// Large files are hashed first and only compressed and written when
    /// the repository lacks them: a touched but unchanged video is never
    /// sent to the NAS again.
    fn store_large(
        &self,
        path: &Path,
        file: &mut File,
        expected: u64,
        purpose: Purpose,
    ) -> Result<ContentToken> {
        let (token, size) = store::hash_stream(file).map_err(source_err(path))?;
        if size != expected {
            return Err(ContentError::ChangedWhileReading(path.to_owned()));
        }
        if purpose == Purpose::Reference && self.add_reference_if_present(&token, path)? {
            return Ok(token);
        }
        file.seek(SeekFrom::Start(0)).map_err(source_err(path))?;
        let dir = self.fan_out_dir(&token);
        let mut reader = store::TrackedReader::new(file);
        let written = match store::write_stream(&dir, &mut reader, self.prefer) {
            Ok(w) => w,
            Err(err) if reader.failed() => return Err(source_err(path)(err)),
            Err(err) => return Err(io_err("write content into", &dir)(err)),
        };
        if written.token != token || written.size != expected {
            return Err(ContentError::ChangedWhileReading(path.to_owned()));
        }
        let final_path = self.content_path(&token, written.form);
        self.note_unsynced();
        written
            .temp
            .commit_with(&final_path, self.durability, |p| {
                self.file_holds(p, written.form, &token)
            })
            .map_err(io_err("write", &final_path))?;
        self.record_written(
            purpose,
            token,
            written.size,
            written.form,
            written.stored_size,
        );
        Ok(token)
    }

    fn record_written(
        &self,
        purpose: Purpose,
        token: ContentToken,
        size: u64,
        form: StoredForm,
        stored: u64,
    ) {
        match purpose {
            Purpose::Reference => self.record_new(token, size, form, stored),
            Purpose::Rewrite => {
                if let Some(e) = self.index().entries.get_mut(&token) {
                    e.form = form;
                    e.stored_size = stored;
                    self.dirty.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Makes sure content revived during this run (counted again after its
    /// count had fallen to zero) still exists, writing it again from its
    /// source file if a prune on another machine, which no lock can hold
    /// off (DESIGN.md rule 3), removed it meanwhile. Call after the snapshot
    /// is written; returns how many were written again.
    pub fn confirm_revived(&self) -> Result<u64> {
        let revived = std::mem::take(&mut *self.revived.lock().unwrap_or_else(|p| p.into_inner()));
        let mut rewritten = 0;
        for (token, path) in revived {
            let form = self.index().entries.get(&token).map(|e| e.form);
            let form = form.unwrap_or(self.prefer);
            if self.find_content_file(&token, form).is_some() {
                continue;
            }
            if self.store_file(&path, Purpose::Rewrite)? != token {
                return Err(ContentError::ChangedWhileReading(path));
            }
            rewritten += 1;
        }
        if rewritten > 0 {
            self.commit()?;
        }
        Ok(rewritten)
    }

    /// Runs `work` (storing many files) while a background thread flushes
    /// the file system every second, so the sync that must precede the
    /// index finds little left to write (full benchmark corpus: the
    /// index-and-snapshot step went from 0.6 s to under 0.05 s). Only where
    /// durability is batched; elsewhere every file is already synced.
    pub fn flushing_while<T>(&self, work: impl FnOnce() -> T) -> T {
        if self.durability != fsio::Durability::Batched {
            return work();
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let flusher = scope.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::park_timeout(std::time::Duration::from_secs(1));
                    if !done.load(Ordering::Relaxed) && self.unsynced.load(Ordering::Relaxed) {
                        let _ = fsio::sync_fs(&self.dir);
                    }
                }
            });
            let result = work();
            done.store(true, Ordering::Relaxed);
            flusher.thread().unpark();
            result
        })
    }

    fn note_unsynced(&self) {
        if self.durability == fsio::Durability::Batched {
            self.unsynced.store(true, Ordering::SeqCst);
        }
    }

    /// True when the content file at `path` (in `form`) holds exactly the
    /// content of `token`. Used only when a file we are about to create
    /// exists already without an index entry: a run that crashed before
    /// syncing may have left it incomplete.
    fn file_holds(&self, path: &Path, form: StoredForm, token: &ContentToken) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        let mut reader = ContentReader::new(file, form);
        hash_reader(&mut reader).is_ok_and(|t| t == *token)
    }

    /// Counts a reference if the content is present. An entry whose count
    /// fell to zero may have been pruned by another machine, so its file is
    /// checked before it is trusted, its mtime is refreshed (prune leaves
    /// recently touched content alone) and it is remembered for
    /// [`Repository::confirm_revived`].
    fn add_reference_if_present(&self, token: &ContentToken, source: &Path) -> Result<bool> {
        let form = {
            let mut index = self.index();
            match index.entries.get_mut(token) {
                None => return Ok(false),
                Some(e) if e.refs > 0 => {
                    e.refs += 1;
                    self.dirty.store(true, Ordering::Relaxed);
                    drop(index);
                    self.note_reference(token);
                    return Ok(true);
                }
                Some(e) => e.form,
            }
        };
        let Some((file, _)) = self.find_content_file(token, form) else {
            return Ok(false);
        };
        let _ = file.set_modified(std::time::SystemTime::now());
        let mut index = self.index();
        if let Some(e) = index.entries.get_mut(token) {
            e.refs += 1;
            e.zero_since = 0;
            self.dirty.store(true, Ordering::Relaxed);
            drop(index);
            self.note_reference(token);
            self.revived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((*token, source.to_owned()));
            return Ok(true);
        }
        Ok(false)
    }

    /// Counts a reference to content just written. Two threads may write
    /// the same new content at once; only the first counts it as new.
    fn record_new(&self, token: ContentToken, size: u64, form: StoredForm, stored: u64) {
        let mut index = self.index();
        let fresh = IndexEntry {
            refs: 1,
            size,
            stored_size: stored,
            form,
            zero_since: 0,
        };
        let is_new = match index.entries.entry(token) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(fresh);
                true
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let e = slot.get_mut();
                if e.refs == 0 {
                    // A released entry whose file was written again.
                    *e = IndexEntry { refs: 0, ..fresh };
                }
                e.refs += 1;
                false
            }
        };
        self.dirty.store(true, Ordering::Relaxed);
        drop(index);
        self.note_reference(&token);
        if is_new {
            let s = &self.session;
            s.new_items.fetch_add(1, Ordering::Relaxed);
            s.new_content_bytes.fetch_add(size, Ordering::Relaxed);
            s.new_stored_bytes.fetch_add(stored, Ordering::Relaxed);
        }
    }

    /// Counts one more reference to content already stored, for a file
    /// whose content is known unchanged from an earlier snapshot.
    pub fn reference_contents(&self, token: &ContentToken) -> Result<()> {
        let mut index = self.index();
        let entry = index
            .entries
            .get_mut(token)
            .ok_or(ContentError::UnknownToken(*token))?;
        entry.refs += 1;
        entry.zero_since = 0;
        self.dirty.store(true, Ordering::Relaxed);
        drop(index);
        self.note_reference(token);
        Ok(())
    }

    fn note_reference(&self, token: &ContentToken) {
        self.session_refs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(*token);
    }

    /// Starts counting the references a backup takes (see
    /// [`Repository::rollback_session`]).
    pub fn begin_session(&self) {
        self.session_refs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Gives back every reference counted since [`Repository::begin_session`]
    /// and saves the index, so content stored by a backup that failed is
    /// unreferenced (prunable) rather than counted for nothing or left as
    /// unindexed files. Best effort: on a full disk the index may not be
    /// writable, and counts then stay as they were on disk.
    pub fn rollback_session(&self) -> Result<()> {
        let refs =
            std::mem::take(&mut *self.session_refs.lock().unwrap_or_else(|p| p.into_inner()));
        self.release_contents(&refs);
        self.commit()
    }

    /// Drops one reference per listed token (a token listed twice loses
    /// two). Returns how many tokens were unknown (already counted as
    /// nothing; never an error, so a delete always completes).
    pub fn release_contents<'t>(&self, tokens: impl IntoIterator<Item = &'t ContentToken>) -> u64 {
        let now = now_secs().max(1) as u64;
        let mut unknown = 0;
        let mut index = self.index();
        for token in tokens {
            match index.entries.get_mut(token) {
                Some(e) if e.refs > 0 => {
                    e.refs -= 1;
                    if e.refs == 0 {
                        e.zero_since = now;
                    }
                }
                _ => unknown += 1,
            }
        }
        self.dirty.store(true, Ordering::Relaxed);
        unknown
    }

    /// A reader of the content's bytes.
    pub fn open_contents_read_only(&self, token: &ContentToken) -> Result<ContentReader> {
        // A token the index lacks (an index update lost to two machines
        // writing at once) is still found by its name: content files are
        // named by what they hold.
        let form = self
            .index()
            .entries
            .get(token)
            .map_or(self.prefer, |e| e.form);
        match self.find_content_file(token, form) {
            Some((file, form)) => Ok(ContentReader::new(file, form)),
            None => Err(ContentError::MissingContent {
                token: *token,
                path: self.content_path(token, form),
            }),
        }
    }

    /// Opens the content file in the indexed form, else the other form
    /// (readers accept either at any time).
    fn find_content_file(
        &self,
        token: &ContentToken,
        form: StoredForm,
    ) -> Option<(File, StoredForm)> {
        let other = match form {
            StoredForm::Gzip => StoredForm::Plain,
            StoredForm::Plain => StoredForm::Gzip,
        };
        [form, other].into_iter().find_map(|f| {
            fsio::retry_busy(|| File::open(self.content_path(token, f)))
                .ok()
                .map(|file| (file, f))
        })
    }

    /// Writes the content to `path` (created or truncated); returns its size.
    pub fn copy_contents_to(&self, token: &ContentToken, path: &Path) -> Result<u64> {
        let mut reader = self.open_contents_read_only(token)?;
        let mut out = File::create(path).map_err(io_err("create", path))?;
        io::copy(&mut reader, &mut out).map_err(io_err("write", path))
    }

    /// (stored bytes, reference count) of a content, if the index has it.
    pub fn content_storage_stats(&self, token: &ContentToken) -> Option<(u64, u64)> {
        self.index()
            .entries
            .get(token)
            .map(|e| (e.stored_size, e.refs))
    }

    /// Persists changed reference counts as a new index generation.
    /// Must run before a snapshot that uses them is written (rule 2).
    pub fn commit(&self) -> Result<()> {
        if self.unsynced.swap(false, Ordering::SeqCst) {
            fsio::sync_fs(&self.dir).map_err(|e| {
                self.unsynced.store(true, Ordering::SeqCst);
                io_err("sync the file system of", &self.dir)(e)
            })?;
        }
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let mut index = self.index();
        let old = index.generation;
        index.generation = old + 1;
        let path = refcount::generation_path(&self.dir, index.generation);
        let written = fsio::write_new_file(&path, &index.encode()).map_err(|e| {
            self.dirty.store(true, Ordering::SeqCst);
            io_err("write", &path)(e)
        });
        match written {
            Ok(true) => {}
            Ok(false) => {
                index.generation = old;
                return Err(ContentError::IndexConflict(path));
            }
            Err(e) => {
                index.generation = old;
                return Err(e);
            }
        }
        drop(index);
        self.remove_older_generations(old);
        Ok(())
    }

    fn remove_older_generations(&self, upto: u64) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if refcount::parse_generation(name.as_bytes()).is_some_and(|g| g <= upto) {
                let _ = fsio::remove_file_if_exists(&entry.path());
            }
        }
    }

    /// Totals over all content items.
    pub fn stats(&self) -> RepoStats {
        let index = self.index();
        let mut s = RepoStats::default();
        for e in index.entries.values() {
            if e.refs > 0 {
                s.referenced_items += 1;
                s.references += e.refs;
                s.referenced_content_bytes += e.size;
                s.referenced_stored_bytes += e.stored_size;
            } else {
                s.unreferenced_items += 1;
                s.unreferenced_content_bytes += e.size;
                s.unreferenced_stored_bytes += e.stored_size;
            }
        }
        s
    }

    /// Every content item, sorted by token.
    pub fn items(&self) -> Vec<(ContentToken, IndexEntry)> {
        let mut items: Vec<_> = self.index().entries.iter().map(|(t, e)| (*t, *e)).collect();
        items.sort_unstable_by_key(|(t, _)| *t);
        items
    }

    /// Removes content that no snapshot references: count zero in the
    /// index, absent from `rules.referenced` (every snapshot the repository
    /// knows of, read just now), and released and untouched for at least
    /// `rules.min_age` (a backup on another machine may be about to use it;
    /// no lock is trusted across machines). Zero counts of content some
    /// snapshot uses are raised instead. The index without the removed items
    /// is saved first, so a crash leaves orphan files (found by check), never
    /// index entries pointing at nothing.
    pub fn prune(&self, rules: &PruneRules) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let now = std::time::SystemTime::now();
        let now_secs = now_secs().max(0) as u64;
        let zero: Vec<(ContentToken, IndexEntry)> = self
            .index()
            .entries
            .iter()
            .filter(|(_, e)| e.refs == 0)
            .map(|(t, e)| (*t, *e))
            .collect();
        let mut doomed = Vec::new();
        for (token, entry) in zero {
            if let Some(&found) = rules.referenced.get(&token) {
                if let Some(e) = self.index().entries.get_mut(&token) {
                    e.refs = found;
                    e.zero_since = 0;
                }
                self.dirty.store(true, Ordering::SeqCst);
                report.kept_referenced += 1;
                continue;
            }
            let released_secs = now_secs.saturating_sub(entry.zero_since);
            let young = rules.min_age > Duration::ZERO
                && (released_secs < rules.min_age.as_secs()
                    || self.touched_within(&token, now, rules.min_age));
            if young {
                report.kept_young += 1;
                continue;
            }
            doomed.push((token, entry));
        }
        {
            let mut index = self.index();
            for (token, _) in &doomed {
                index.entries.remove(token);
            }
        }
        if !doomed.is_empty() {
            self.dirty.store(true, Ordering::SeqCst);
        }
        self.commit()?;
        for (token, entry) in doomed {
            for form in [StoredForm::Gzip, StoredForm::Plain] {
                let path = self.content_path(&token, form);
                fsio::remove_file_if_exists(&path).map_err(io_err("remove", &path))?;
            }
            report.items += 1;
            report.content_bytes += entry.size;
            report.stored_bytes += entry.stored_size;
        }
        Ok(report)
    }

    /// True when a content file of `token` was modified within `age` of
    /// `now` (a backup elsewhere revived it).
    fn touched_within(
        &self,
        token: &ContentToken,
        now: std::time::SystemTime,
        age: Duration,
    ) -> bool {
        [StoredForm::Gzip, StoredForm::Plain].iter().any(|f| {
            fs::metadata(self.content_path(token, *f))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d < age)
        })
    }

    /// Rewrites every content file into `target` form (gzip keeps files that
    /// do not shrink plain). Each conversion is checked against its token
    /// before the old file is removed, and old files are removed only after
    /// an index naming the new ones is durable.
    pub fn compress_all(&self, target: StoredForm) -> Result<CompressReport> {
        let todo: Vec<(ContentToken, IndexEntry)> = self
            .items()
            .into_iter()
            .filter(|(_, e)| e.form != target)
            .collect();
        let mut report = CompressReport::default();
        let mut stale = Vec::new();
        for (i, (token, entry)) in todo.iter().enumerate() {
            if let Some(old_path) = self.convert_one(token, entry, target, &mut report)? {
                stale.push(old_path);
            }
            if (i + 1) % COMPRESS_SAVE_EVERY == 0 {
                self.commit_and_remove(&mut stale)?;
            }
        }
        self.commit_and_remove(&mut stale)?;
        Ok(report)
    }

    fn commit_and_remove(&self, stale: &mut Vec<PathBuf>) -> Result<()> {
        self.commit()?;
        for path in stale.drain(..) {
            fsio::remove_file_if_exists(&path).map_err(io_err("remove", &path))?;
        }
        Ok(())
    }

    /// Converts one content file; returns the old file's path once the new
    /// one is written, or None when it stays as it is.
    fn convert_one(
        &self,
        token: &ContentToken,
        entry: &IndexEntry,
        target: StoredForm,
        report: &mut CompressReport,
    ) -> Result<Option<PathBuf>> {
        let Some((file, old_form)) = self.find_content_file(token, entry.form) else {
            return Err(ContentError::MissingContent {
                token: *token,
                path: self.content_path(token, entry.form),
            });
        };
        let old_path = self.content_path(token, old_form);
        let mut reader = ContentReader::new(file, old_form);
        let written = store::write_stream(&self.fan_out_dir(token), &mut reader, target)
            .map_err(io_err("convert", &old_path))?;
        if written.token != *token {
            return Err(ContentError::DamagedContent { path: old_path });
        }
        if written.form == old_form {
            report.kept_plain += 1;
            return Ok(None);
        }
        let new_path = self.content_path(token, written.form);
        self.note_unsynced();
        written
            .temp
            .commit_with(&new_path, self.durability, |p| {
                self.file_holds(p, written.form, token)
            })
            .map_err(io_err("write", &new_path))?;
        report.converted += 1;
        report.stored_before += entry.stored_size;
        report.stored_after += written.stored_size;
        if let Some(e) = self.index().entries.get_mut(token) {
            e.form = written.form;
            e.stored_size = written.stored_size;
        }
        self.dirty.store(true, Ordering::SeqCst);
        Ok(Some(old_path))
    }

    /// Snapshot directories registered as users of this repository.
    pub fn registry_dir(&self) -> PathBuf {
        self.dir.join(REGISTRY_DIR)
    }

    /// Records that snapshots in `snapshot_dir` use this repository, so
    /// prune and check can consult every snapshot, from any host. `id` names
    /// the user (host, user and archive); the file holds the directory,
    /// absolutely and relative to the repository.
    pub fn register_user(&self, id: &str, snapshot_dir: &Path) -> Result<()> {
        let path = self.registry_dir().join(id);
        let text = format!(
            "snapshot_dir = {}\nrelative = {}\n",
            snapshot_dir.display(),
            fsio::relative_path(&self.dir, snapshot_dir).display()
        );
        fsio::write_new_file(&path, text.as_bytes()).map_err(io_err("write", &path))?;
        Ok(())
    }

    /// Snapshot directories registered by archives using this repository:
    /// the path relative to the repository when it exists (the disk may be
    /// mounted elsewhere now), else the absolute one. Unreachable ones are
    /// returned too, so callers can say a check is incomplete.
    pub fn registered_snapshot_dirs(&self) -> Vec<(String, PathBuf)> {
        let dir = self.registry_dir();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if fsio::is_temp_name(name.as_bytes()) {
                continue;
            }
            let Ok(text) = fs::read_to_string(entry.path()) else {
                continue;
            };
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
                    .map(PathBuf::from)
            };
            let relative = field("relative").map(|r| self.dir.join(r));
            let absolute = field("snapshot_dir");
            let path = match (relative, absolute) {
                (Some(r), _) if r.is_dir() => r,
                (_, Some(a)) => a,
                (Some(r), None) => r,
                (None, None) => continue,
            };
            found.push((name.to_string_lossy().into_owned(), path));
        }
        found.sort();
        found
    }

    /// The lock file's path (for `unlock`).
    pub fn lock_path(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    /// Per-token reference counts as a map, for consistency checks.
    pub fn ref_counts(&self) -> HashMap<ContentToken, u64> {
        self.index()
            .entries
            .iter()
            .map(|(t, e)| (*t, e.refs))
            .collect()
    }
}

/// The token of everything `reader` yields (to compare a file on disk with
/// stored content without keeping it in memory).
pub fn hash_reader(reader: &mut impl Read) -> io::Result<ContentToken> {
    store::hash_stream(reader).map(|(token, _)| token)
}

/// Reads `format`; returns the preferred stored form.
fn read_format(dir: &Path) -> Result<StoredForm> {
    let path = dir.join(FORMAT_FILE);
    let text = match fsio::read_small_file(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ContentError::NotARepository(dir.to_owned()));
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let corrupt = |reason: &str| ContentError::CorruptFormat {
        path: path.clone(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(&text).map_err(|_| corrupt("it is not text"))?;
    let mut lines = text.lines();
    if lines.next() != Some("epygibus repository") {
        return Err(corrupt("its first line is not `epygibus repository`"));
    }
    let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(" = ")).collect();
    match fields.get("format").map(|v| v.parse::<u32>()) {
        Some(Ok(FORMAT_VERSION)) => {}
        Some(Ok(v)) => {
            return Err(corrupt(&format!(
                "format {v} is not supported by this epygibus (it reads format {FORMAT_VERSION})"
            )));
        }
        _ => return Err(corrupt("it has no `format = N` line")),
    }
    if fields.get("hash") != Some(&"blake3") {
        return Err(corrupt("its hash is not `blake3`"));
    }
    match fields.get("compression") {
        Some(&"gzip") => Ok(StoredForm::Gzip),
        Some(&"none") => Ok(StoredForm::Plain),
        _ => Err(corrupt("its compression is neither `gzip` nor `none`")),
    }
}

/// Loads the newest index generation.
fn load_index(dir: &Path) -> Result<RefIndex> {
    // A concurrent commit may remove the generation we listed; look again.
    for _ in 0..5 {
        let newest = newest_generation(dir)?;
        let Some(generation) = newest else {
            return Err(ContentError::MissingIndex(dir.to_owned()));
        };
        let path = refcount::generation_path(dir, generation);
        let bytes = match fsio::read_small_file(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let index = RefIndex::decode(&bytes).map_err(|reason| ContentError::CorruptIndex {
            path: path.clone(),
            reason,
        })?;
        if index.generation != generation {
            return Err(ContentError::CorruptIndex {
                path,
                reason: IndexDecodeError::WrongGeneration(index.generation),
            });
        }
        return Ok(index);
    }
    Err(ContentError::MissingIndex(dir.to_owned()))
}

fn newest_generation(dir: &Path) -> Result<Option<u64>> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut newest = None;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(g) = refcount::parse_generation(entry.file_name().as_bytes()) {
            newest = newest.max(Some(g));
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(compressed: bool) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        Repository::create(&dir, compressed).unwrap();
        (tmp, dir)
    }

    fn locked(dir: &Path) -> Repository {
        Repository::open(
            dir,
            Access::Locked {
                command: "test",
                wait: LockWait::no_wait(),
            },
        )
        .unwrap()
    }

    #[test]
    fn same_content_stored_once_with_count_two() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        fs::write(&a, b"same bytes, same bytes, same bytes, same bytes").unwrap();
        fs::write(&b, b"same bytes, same bytes, same bytes, same bytes").unwrap();
        let r = locked(&dir);
        let ta = r.store_contents(&a).unwrap();
        let tb = r.store_contents(&b).unwrap();
        assert_eq!(ta, tb);
        assert_eq!(r.content_storage_stats(&ta).unwrap().1, 2);
        let files: Vec<_> = fs::read_dir(dir.join(CONTENT_DIR).join(ta.fan_out()))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1);
        r.commit().unwrap();
        drop(r);
        let again = Repository::open(&dir, Access::ReadOnly).unwrap();
        assert_eq!(again.content_storage_stats(&ta).unwrap().1, 2);
    }

    #[test]
    fn large_file_round_trip_both_forms() {
        for compressed in [true, false] {
            let (tmp, dir) = repo(compressed);
            let src = tmp.path().join("big");
            let data: Vec<u8> = (0..(store::CHUNK * 2 + 5)).map(|i| (i / 7) as u8).collect();
            fs::write(&src, &data).unwrap();
            let r = locked(&dir);
            let t = r.store_contents(&src).unwrap();
            let mut back = Vec::new();
            r.open_contents_read_only(&t)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data);
            let out = tmp.path().join("out");
            assert_eq!(r.copy_contents_to(&t, &out).unwrap(), data.len() as u64);
            assert_eq!(fs::read(&out).unwrap(), data);
            let gz = r.content_path(&t, StoredForm::Gzip).exists();
            assert_eq!(gz, compressed);
        }
    }

    #[test]
    fn release_then_prune_removes_file() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, b"x".repeat(1000)).unwrap();
        let r = locked(&dir);
        let t = r.store_contents(&a).unwrap();
        r.commit().unwrap();
        assert_eq!(r.release_contents([&t]), 0);
        r.commit().unwrap();
        let nothing = HashMap::new();
        let now = PruneRules {
            referenced: &nothing,
            min_age: Duration::ZERO,
        };
        let report = r.prune(&now).unwrap();
        assert_eq!(report.items, 1);
        assert_eq!(report.content_bytes, 1000);
        assert!(!r.content_path(&t, StoredForm::Gzip).exists());
        assert_eq!(r.prune(&now).unwrap(), PruneReport::default());
    }

    #[test]
    fn prune_respects_snapshots_and_min_age() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, b"y".repeat(500)).unwrap();
        let r = locked(&dir);
        let t = r.store_contents(&a).unwrap();
        r.release_contents([&t]);
        r.commit().unwrap();
        // A snapshot still uses it (a count lost elsewhere): kept, raised.
        let used = HashMap::from([(t, 1)]);
        let rep = r
            .prune(&PruneRules {
                referenced: &used,
                min_age: Duration::ZERO,
            })
            .unwrap();
        assert_eq!((rep.items, rep.kept_referenced), (0, 1));
        assert_eq!(r.content_storage_stats(&t).unwrap().1, 1);
        // Released just now on a shared repository: kept for min_age.
        r.release_contents([&t]);
        let nothing = HashMap::new();
        let rep = r
            .prune(&PruneRules {
                referenced: &nothing,
                min_age: Duration::from_secs(3600),
            })
            .unwrap();
        assert_eq!((rep.items, rep.kept_young), (0, 1));
        assert!(r.open_contents_read_only(&t).is_ok());
    }

    #[test]
    fn compress_round_trip_keeps_reads_correct() {
        let (tmp, dir) = repo(false);
        let a = tmp.path().join("a");
        let data = b"compress me please ".repeat(500);
        fs::write(&a, &data).unwrap();
        let r = locked(&dir);
        let t = r.store_contents(&a).unwrap();
        r.commit().unwrap();
        let rep = r.compress_all(StoredForm::Gzip).unwrap();
        assert_eq!(rep.converted, 1);
        assert!(rep.stored_after < rep.stored_before);
        assert!(r.content_path(&t, StoredForm::Gzip).exists());
        assert!(!r.content_path(&t, StoredForm::Plain).exists());
        let rep = r.compress_all(StoredForm::Plain).unwrap();
        assert_eq!(rep.converted, 1);
        let mut back = Vec::new();
        r.open_contents_read_only(&t)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn index_generations_replace_each_other() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, b"abc").unwrap();
        let r = locked(&dir);
        for _ in 0..3 {
            r.store_contents(&a).unwrap();
            r.commit().unwrap();
        }
        let gens: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| refcount::parse_generation(e.unwrap().file_name().as_bytes()))
            .collect();
        assert_eq!(gens, vec![4]);
    }

    #[test]
    fn corrupt_index_is_reported_and_left() {
        let (_tmp, dir) = repo(true);
        let path = refcount::generation_path(&dir, 1);
        fs::write(&path, b"garbage").unwrap();
        let err = Repository::open(&dir, Access::ReadOnly).err().unwrap();
        assert!(err.to_string().contains("index.000000000001"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"garbage");
    }

    proptest::proptest! {
        #[test]
        fn format_file_reader_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let tmp = tempfile::tempdir().unwrap();
            fs::write(tmp.path().join(FORMAT_FILE), &bytes).unwrap();
            if let Err(e) = read_format(tmp.path()) {
                proptest::prop_assert!(e.to_string().contains(FORMAT_FILE));
            }
        }
    }

    #[test]
    fn revived_content_pruned_meanwhile_is_written_again() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, b"revive me ".repeat(50)).unwrap();
        let r = locked(&dir);
        let t = r.store_contents(&a).unwrap();
        r.release_contents([&t]);
        r.commit().unwrap();
        // Revived: the file exists, so the count goes up without a write.
        assert_eq!(r.store_contents(&a).unwrap(), t);
        // Another machine's prune removes the file before our snapshot.
        for form in [StoredForm::Gzip, StoredForm::Plain] {
            let _ = fs::remove_file(r.content_path(&t, form));
        }
        assert_eq!(r.confirm_revived().unwrap(), 1);
        let mut back = Vec::new();
        r.open_contents_read_only(&t)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, b"revive me ".repeat(50));
        assert_eq!(r.content_storage_stats(&t).unwrap().1, 1);
        assert_eq!(r.confirm_revived().unwrap(), 0);
    }

    #[test]
    fn zero_count_entry_whose_file_vanished_is_rewritten() {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, b"content that another machine pruned").unwrap();
        let r = locked(&dir);
        let t = r.store_contents(&a).unwrap();
        r.release_contents([&t]);
        for form in [StoredForm::Gzip, StoredForm::Plain] {
            let _ = fs::remove_file(r.content_path(&t, form));
        }
        assert!(r.open_contents_read_only(&t).is_err());
        r.store_contents(&a).unwrap();
        assert!(r.open_contents_read_only(&t).is_ok());
    }
}
