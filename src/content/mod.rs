//! The content repository: every distinct file content stored once, under
//! a name made of its token, with reference counts so unused content can
//! be pruned. It knows nothing of snapshots; they reach it only through
//! the seed's five operations on a [`ContentToken`] (see [`Repository`]
//! and [`BackupSession`]), and it reaches its bytes only through the
//! storage interface ([`crate::store::Store`]).

mod batch;
mod check;
mod codec;
mod compress;
mod layout;
mod lock;
mod pack;
mod packer;
mod persist;
mod prune;
mod ranged;
mod read;
mod refcount;
mod registry;
mod source;
mod token;
mod write;

pub use batch::{BatchData, ReadBatch};
pub use check::{CheckOptions, CheckReport, Finding, report_leftovers};
pub use codec::{ContentReader, gzip_member};
pub use compress::{CompressReport, PackReport};
pub use layout::{KEY_FILE, LOCK_FILE};
pub use lock::{LockError, LockHolder, LockWait, RepoLock};
pub use pack::{MAX_PACKED, PACK_DIR, PackName};
pub use packer::Packer;
pub use prune::{PruneReport, PruneRules};
pub use ranged::RangedContent;
pub use refcount::{IndexDecodeError, IndexEntry, PackId, PackInfo, Place, RefIndex, StoredForm};
pub use registry::{Registration, registrations_in};
pub use token::{BadToken, ContentToken, TokenHasher};
pub use write::{BackupSession, CountedBackup, SessionCounters};

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex};

use crate::crypt::{CryptError, Keyring, RepoKey};
use crate::store::{LocalStore, Location, SharedStore, StoreError};

/// Errors of the content repository.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not an epygibus repository (it has no `format` file)")]
    NotARepository(Location),
    #[error("repository format file {place} is not valid: {reason}")]
    CorruptFormat { place: String, reason: String },
    #[error(
        "reference-count index {place} is corrupt ({reason}); it was left untouched. Run `epygibus check --repair -R <repository>`: it sets the damaged file aside (never deleting it) and rebuilds the counts from every snapshot using the repository"
    )]
    CorruptIndex {
        place: String,
        reason: IndexDecodeError,
    },
    #[error("repository {0} has no reference-count index (no `index.N` file)")]
    MissingIndex(Location),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Crypt(#[from] CryptError),
    #[error(
        "repository {0} is encrypted: its content is always gzip-compressed, then encrypted, and packed as it is written, so there is nothing to convert"
    )]
    Encrypted(Location),
    #[error("content {0} is not in the repository")]
    UnknownToken(ContentToken),
    #[error("content file of {token} is missing from the repository (expected {place})")]
    MissingContent { token: ContentToken, place: String },
    #[error("content file {place} does not match its token: it is damaged")]
    DamagedContent { place: String },
    #[error("content {token} in pack {place} cannot be read: {reason}")]
    DamagedPackEntry {
        token: ContentToken,
        place: String,
        reason: String,
    },
    #[error(
        "the index refers to pack {0}, which was never finished; nothing was saved (this is a bug in epygibus)"
    )]
    UnfinishedPack(ContentToken),
    #[error("{0} changed while it was being read")]
    ChangedWhileReading(PathBuf),
    /// The file to back up could not be opened or read (vanished,
    /// unreadable); the repository is fine.
    #[error("could not read {path}: {err}")]
    Source { path: PathBuf, err: io::Error },
    /// A file outside the repository (a copy target) could not be written.
    #[error("could not write {path}: {err}")]
    Target { path: PathBuf, err: io::Error },
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
    #[error(
        "index generation {0} was written by another process at the same time; nothing was lost, run the command again"
    )]
    IndexConflict(String),
    #[error("{0} already exists")]
    AlreadyExists(PathBuf),
    #[error(
        "cancelled: no snapshot was written, and the content stored so far is unreferenced (prune reclaims it)"
    )]
    Cancelled,
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
    /// Items in packs, the packs and their bytes (entries' headers and the
    /// tables of contents included).
    pub packed_items: u64,
    pub packs: u64,
    pub pack_bytes: u64,
}

/// An open content repository. Per-backup state lives in a
/// [`BackupSession`], not here.
pub struct Repository {
    store: SharedStore,
    /// The form new content takes ([`StoredForm::Sealed`] when encrypted).
    prefer: StoredForm,
    /// The repository key of an encrypted repository.
    key: Option<Arc<RepoKey>>,
    /// How tokens are made (keyed in an encrypted repository).
    tokens: TokenHasher,
    /// The layout version of `format` (1 until the first pack is saved).
    format_version: AtomicU32,
    index: Mutex<RefIndex>,
    /// Counts changed since the index was last saved.
    dirty: AtomicBool,
    /// Pack numbers handed out to packs being written (not yet in the
    /// index's table) start here.
    next_pack: Mutex<u32>,
    /// Every pack's table of contents, read once when an item is not where
    /// the index says (see `read.rs`).
    pack_scan: Mutex<Option<std::collections::HashMap<ContentToken, read::FoundInPack>>>,
    _lock: Option<RepoLock>,
}

impl Repository {
    /// Writes a new, empty repository into an empty store: the index
    /// first, the `format` file last (its presence says "a repository").
    /// With `sealed`, an encrypted repository: its key and the key's
    /// encrypted copy for `key.age` (written before `format`).
    pub fn create(store: &dyn crate::store::Store, settings: &NewRepository) -> Result<()> {
        let index = RefIndex {
            generation: 1,
            ..RefIndex::default()
        };
        let _ = store.put_new(&layout::generation_name(1), &index.encode())?;
        let text = match &settings.sealed {
            Some((key, wrapped)) => {
                let _ = store.put_new(layout::KEY_FILE, wrapped)?;
                layout::encrypted_format_text(&key.recipient())
            }
            None => layout::format_text(settings.compressed),
        };
        let _ = store.put_new(layout::FORMAT_FILE, text.as_bytes())?;
        Ok(())
    }

    /// Creates a repository in directory `dir`, which must not exist. It
    /// is built under a temp name beside `dir` and renamed into place, so
    /// a failure leaves no half-made repository.
    pub fn create_dir(dir: &Path, settings: &NewRepository) -> Result<()> {
        let made = LocalStore::create_dir_new(dir, |store| -> Result<()> {
            // Fan-out directories are made once, here, not probed per file.
            store.make_dirs(Some(layout::CONTENT_DIR), &layout::local_dirs())?;
            Repository::create(store, settings)
        })?;
        if !made {
            return Err(ContentError::AlreadyExists(dir.to_owned()));
        }
        Ok(())
    }

    /// Opens the repository in `store` (a plain one: an encrypted one
    /// needs [`Repository::open_with`]).
    pub fn open(store: SharedStore, access: Access) -> Result<Repository> {
        Repository::open_with(store, access, &Keyring::none())
    }

    /// Opens the repository in `store`, finding its key in `keys` when it
    /// is encrypted. The key is found before the lock is taken: a wrong
    /// key changes nothing.
    pub fn open_with(store: SharedStore, access: Access, keys: &Keyring) -> Result<Repository> {
        let (format, key) = read_format_and_key(&store, keys)?;
        let lock = take_lock(&store, access)?;
        let index = persist::load_index(store.as_ref())?;
        Ok(Repository::with_index(
            store, format, key, index, false, lock,
        ))
    }

    fn with_index(
        store: SharedStore,
        format: layout::RepoFormat,
        key: Option<Arc<RepoKey>>,
        index: RefIndex,
        dirty: bool,
        lock: Option<RepoLock>,
    ) -> Repository {
        Repository {
            store,
            prefer: format.prefer,
            tokens: key
                .as_ref()
                .map_or(TokenHasher::Plain, |k| TokenHasher::Keyed(k.token_key())),
            key,
            format_version: AtomicU32::new(format.version),
            index: Mutex::new(index),
            dirty: AtomicBool::new(dirty),
            next_pack: Mutex::new(0),
            pack_scan: Mutex::new(None),
            _lock: lock,
        }
    }

    /// Opens a repository whose index is corrupt or missing, for
    /// `check --repair` to rebuild the counts from every snapshot: damaged
    /// generations are renamed to `broken-index.<n>` (never deleted) and
    /// the repository starts from an empty index that the next save makes
    /// a new generation. Returns what was set aside.
    pub fn open_rebuilding(
        store: SharedStore,
        access: Access,
        keys: &Keyring,
    ) -> Result<(Repository, Vec<String>)> {
        let (format, key) = read_format_and_key(&store, keys)?;
        let lock = take_lock(&store, access)?;
        let (generation, set_aside) = persist::set_aside_broken(store.as_ref())?;
        let index = RefIndex {
            generation,
            ..RefIndex::default()
        };
        Ok((
            Repository::with_index(store, format, key, index, true, lock),
            set_aside,
        ))
    }

    /// Checks that `store` holds a repository this epygibus can use (its
    /// `format` file), without taking a lock or reading the index.
    pub fn check_format(store: &dyn crate::store::Store) -> Result<()> {
        layout::read_format(store).map(|_| ())
    }

    /// Opens the repository in directory `dir`.
    pub fn open_dir(dir: &Path, access: Access) -> Result<Repository> {
        Repository::open(crate::store::open(&Location::Dir(dir.to_owned())), access)
    }

    /// Where the repository is.
    pub fn location(&self) -> &Location {
        self.store.location()
    }

    /// The store holding the repository's objects.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Runs `work` (storing many files), letting the store flush in the
    /// background meanwhile.
    pub fn flushing_while(&self, work: &mut dyn FnMut()) {
        self.store.flushing_while(work)
    }

    /// True when new content is gzip-compressed by default.
    pub fn compresses(&self) -> bool {
        matches!(self.prefer, StoredForm::Gzip | StoredForm::Sealed)
    }

    /// The repository key, when the repository is encrypted: its
    /// archives' snapshot files are sealed with it too.
    pub fn key(&self) -> Option<&Arc<RepoKey>> {
        self.key.as_ref()
    }

    /// How this repository makes tokens: whoever compares a file with
    /// stored content (restore, `diff --live`) hashes with this.
    pub fn token_hasher(&self) -> TokenHasher {
        self.tokens
    }

    /// How new content is written.
    fn encoding(&self) -> codec::Encoding<'_> {
        codec::Encoding {
            prefer: self.prefer,
            tokens: self.tokens,
            seal: self.key.as_deref(),
        }
    }

    /// A reader of a content object `name` in `form`.
    fn reader(
        &self,
        object: crate::store::ObjectReader,
        form: StoredForm,
        name: &str,
    ) -> Result<ContentReader> {
        Ok(ContentReader::new(
            object,
            form,
            self.key.as_deref(),
            &self.store.place(name),
        )?)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, RefIndex> {
        // A panic while holding the lock cannot leave counts lower than
        // before (updates are single increments), so poisoning is ignored.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A number for a new pack: above every pack in the index and every
    /// number handed out before.
    fn allocate_pack_id(&self) -> PackId {
        let from_index = self.index().next_pack_id().0;
        let mut next = self.next_pack.lock().unwrap_or_else(|p| p.into_inner());
        let id = from_index.max(*next);
        *next = id + 1;
        PackId(id)
    }

    /// The name of a pack the index lists.
    fn pack_name(&self, pack: PackId) -> Option<PackName> {
        self.index().packs.get(&pack).map(|p| p.name.clone())
    }

    /// Removes the lock whoever holds it (the `unlock` command); returns
    /// the holder it removed, if the lock was readable, and whether there
    /// was a lock at all.
    pub fn force_unlock(store: &dyn crate::store::Store) -> Result<(bool, Option<LockHolder>)> {
        Ok(RepoLock::force_break(store, layout::LOCK_FILE)?)
    }

    /// (stored bytes, reference count) of a content, if the index has it.
    pub fn content_storage_stats(&self, token: &ContentToken) -> Option<(u64, u64)> {
        self.index()
            .entries
            .get(token)
            .map(|e| (e.stored_size, e.refs))
    }

    /// Totals over all content items.
    pub fn stats(&self) -> RepoStats {
        let index = self.index();
        let mut s = RepoStats {
            packs: index.packs.len() as u64,
            pack_bytes: index.packs.values().map(|p| p.size).sum(),
            ..RepoStats::default()
        };
        for e in index.entries.values() {
            s.packed_items += u64::from(e.place.pack().is_some());
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

    /// The pack holding an item the index places in one.
    pub fn pack_of(&self, entry: &IndexEntry) -> Option<PackName> {
        entry.place.pack().and_then(|p| self.pack_name(p))
    }

    /// Per-token reference counts as a map, for consistency checks.
    pub fn ref_counts(&self) -> std::collections::HashMap<ContentToken, u64> {
        self.index()
            .entries
            .iter()
            .map(|(t, e)| (*t, e.refs))
            .collect()
    }
}

/// Settings of a new repository.
pub struct NewRepository<'a> {
    /// New content gzip-compressed (always, when sealed).
    pub compressed: bool,
    /// An encrypted repository: its key, and that key encrypted to the
    /// user's recipients or passphrase (the bytes of `key.age`).
    pub sealed: Option<(&'a RepoKey, Vec<u8>)>,
}

/// The key of the repository in `store` when it is encrypted (found in
/// `keys`), None when it is not: what its archives' snapshot directories
/// are sealed with.
pub fn repository_key(store: &SharedStore, keys: &Keyring) -> Result<Option<Arc<RepoKey>>> {
    read_format_and_key(store, keys).map(|(_, key)| key)
}

impl NewRepository<'_> {
    /// A repository that is not encrypted.
    pub fn plain(compressed: bool) -> NewRepository<'static> {
        NewRepository {
            compressed,
            sealed: None,
        }
    }
}

/// The `format` file and, for an encrypted repository, its key from `keys`.
fn read_format_and_key(
    store: &SharedStore,
    keys: &Keyring,
) -> Result<(layout::RepoFormat, Option<Arc<RepoKey>>)> {
    let file = layout::read_format_file(store.as_ref())?;
    let Some(recipient) = file.recipient else {
        return Ok((file.format, None));
    };
    let key_place = store.place(layout::KEY_FILE);
    let key = keys.unlock(
        &store.location().to_string(),
        &recipient,
        &key_place,
        &mut || store.read(layout::KEY_FILE).map_err(|e| e.source),
    )?;
    Ok((file.format, Some(key)))
}

/// The lock `access` asks for, if any.
fn take_lock(store: &SharedStore, access: Access) -> Result<Option<RepoLock>> {
    Ok(match access {
        Access::ReadOnly => None,
        Access::Locked { command, wait } => Some(RepoLock::acquire(
            store.clone(),
            layout::LOCK_FILE,
            command,
            &wait,
        )?),
    })
}

/// The token of everything `reader` yields (to compare a file on disk with
/// stored content without keeping it in memory), made as `tokens` says.
pub fn hash_reader(reader: &mut impl Read, tokens: TokenHasher) -> io::Result<ContentToken> {
    codec::hash_stream(reader, tokens).map(|(token, _)| token)
}

#[cfg(test)]
mod tests;
