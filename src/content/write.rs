//! Storing content for a backup. A [`BackupSession`] owns the order the
//! safety rules need (content, then durable counts, then the snapshot the
//! caller writes) and gives every reference it took back when it is
//! dropped before the snapshot exists: a failed or cancelled backup leaves
//! its new content unreferenced (prunable), never counted for nothing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{self, TrackedReader};
use super::layout::content_name;
use super::pack::{EncodedItem, MAX_PACKED};
use super::packer::Packer;
use super::source::open_source;
use super::{
    ContentError, ContentToken, IndexEntry, Place, Repository, Result, StoredForm, source_err,
};
use crate::store::{Committed, NewObject, Store, StoreError};

/// Content newly written during a session (for `bu --stats`).
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub new_items: AtomicU64,
    pub new_content_bytes: AtomicU64,
    pub new_stored_bytes: AtomicU64,
}

impl SessionCounters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Why content is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// For a new reference (counted).
    Reference,
    /// Only to put a missing content object back (nothing counted).
    Rewrite,
}

/// The references one backup takes, until its snapshot is written.
pub struct BackupSession<'r> {
    repo: &'r Repository,
    /// Every reference counted, so a failed backup can give them back.
    refs: Mutex<Vec<ContentToken>>,
    /// Zero-count content referenced again, with a source file holding it.
    revived: Mutex<Vec<(ContentToken, PathBuf)>>,
    pub counters: SessionCounters,
    /// Small content goes into packs.
    pub(super) packer: Packer<'r>,
    /// The snapshot exists: dropping must not give anything back.
    kept: bool,
}

/// A session whose counts are durable: the caller may now write the
/// snapshot, then call [`CountedBackup::snapshot_written`]. Dropped
/// without that call, the references are given back.
pub struct CountedBackup<'r> {
    session: BackupSession<'r>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Repository {
    /// Starts storing content for one backup.
    pub fn begin_backup(&self) -> BackupSession<'_> {
        BackupSession {
            repo: self,
            refs: Mutex::new(Vec::new()),
            revived: Mutex::new(Vec::new()),
            counters: SessionCounters::default(),
            packer: Packer::new(self),
            kept: false,
        }
    }

    /// Writes a content object create-only; `write` streams it and says
    /// its form and stored size. When one of that name exists without an
    /// index entry, a run that crashed before its barrier may have left it
    /// incomplete: it is checked, and written again if damaged.
    // The named lifetime ties the objects `write` makes to this store
    // (clippy's suggestion to elide it does not compile).
    #[allow(clippy::needless_lifetimes)]
    fn put_content<'s>(
        &'s self,
        token: &ContentToken,
        mut write: impl FnMut() -> Result<(Box<dyn NewObject + 's>, StoredForm, u64)>,
    ) -> Result<(StoredForm, u64)> {
        let (object, form, stored) = write()?;
        let name = content_name(token, form);
        if object.commit()? == Committed::Existed
            && !self.index().entries.contains_key(token)
            && !self.object_holds(&name, form, token)
        {
            self.store.delete(&name)?;
            let (again, form, stored) = write()?;
            let _ = again.commit()?;
            return Ok((form, stored));
        }
        Ok((form, stored))
    }
}

impl Repository {
    /// The stored form and bytes of small content kept loose.
    fn encode_loose(&self, data: &[u8]) -> (StoredForm, Vec<u8>) {
        match &self.key {
            Some(key) => (StoredForm::Sealed, codec::seal_small(data, key)),
            None => codec::encode_small(data, self.prefer),
        }
    }
}

impl<'r> BackupSession<'r> {
    pub fn repository(&self) -> &'r Repository {
        self.repo
    }

    /// Stores the content of the regular file at `path` (once per distinct
    /// content) and counts one more reference to it.
    pub fn store_contents(&self, path: &Path) -> Result<ContentToken> {
        self.store_file(path, Purpose::Reference)
    }

    /// Stores content that is not a file of its own (the original
    /// epygibus's gzip content files, when importing) and counts one more
    /// reference to it. `open` gives a fresh reader of the content each
    /// time it is called: once for content up to `SMALL_FILE`, twice for
    /// larger (hash, then write only when the repository lacks it). A read
    /// error (such as a checking reader refusing damaged content) is a
    /// source error naming `what`, and nothing is counted. Content whose
    /// count is zero is written again rather than revived, as there is no
    /// source file to restore it from later; its object is touched so a
    /// prune elsewhere sees it young.
    pub fn store_reader(
        &self,
        what: &Path,
        open: &mut dyn FnMut() -> std::io::Result<Box<dyn Read + Send>>,
    ) -> Result<ContentToken> {
        let mut first = open().map_err(source_err(what))?;
        let mut head = Vec::new();
        (&mut first)
            .take(codec::SMALL_FILE as u64 + 1)
            .read_to_end(&mut head)
            .map_err(source_err(what))?;
        let small = head.len() <= codec::SMALL_FILE;
        let (token, size) = if small {
            (self.repo.tokens.of(&head), head.len() as u64)
        } else {
            codec::hash_stream(
                &mut std::io::Cursor::new(&head).chain(first),
                self.repo.tokens,
            )
            .map_err(source_err(what))?
        };
        let revived = {
            let mut index = self.repo.index();
            match index.entries.get_mut(&token) {
                Some(e) if e.refs > 0 => {
                    e.refs += 1;
                    drop(index);
                    self.repo.mark_dirty();
                    lock(&self.refs).push(token);
                    return Ok(token);
                }
                found => found.is_some(),
            }
        };
        if small && size <= MAX_PACKED {
            // Written again into a pack when its count was zero (its old
            // copy stays until a prune, as a revived one would).
            return self.store_packed(token, &head, Purpose::Reference);
        }
        let store = self.repo.store.as_ref();
        let (form, stored) = if small {
            let (form, bytes) = self.repo.encode_loose(&head);
            let name = content_name(&token, form);
            self.repo.put_content(&token, || {
                let mut o = store.create(&name)?;
                o.write_all(&bytes)
                    .map_err(|e| StoreError::new("write", store.place(&name), e))?;
                Ok((o, form, bytes.len() as u64))
            })?
        } else {
            self.repo.put_content(&token, || {
                let mut reader = TrackedReader::new(open().map_err(source_err(what))?);
                let written = codec::write_stream(&mut reader, self.repo.encoding(), |form| {
                    store
                        .create(&content_name(&token, form))
                        .map_err(std::io::Error::other)
                });
                let written = match written {
                    Ok(w) => w,
                    Err(err) if reader.failed() => return Err(source_err(what)(err)),
                    Err(err) => return Err(write_err(store, &token, err)),
                };
                if written.token != token || written.size != size {
                    return Err(ContentError::ChangedWhileReading(what.to_owned()));
                }
                Ok((written.object, written.form, written.stored_size))
            })?
        };
        if revived {
            let _ = store.touch(&content_name(&token, form));
        }
        self.record_new(token, size, form, stored, Place::Loose);
        Ok(token)
    }

    /// Counts one more reference to content already stored, for a file
    /// whose content is known unchanged from an earlier snapshot.
    pub fn reference_contents(&self, token: &ContentToken) -> Result<()> {
        let mut index = self.repo.index();
        let entry = index
            .entries
            .get_mut(token)
            .ok_or(ContentError::UnknownToken(*token))?;
        entry.refs += 1;
        entry.zero_since = 0;
        drop(index);
        self.repo.mark_dirty();
        lock(&self.refs).push(*token);
        Ok(())
    }

    /// Counts a reference for a file known unchanged since an earlier
    /// snapshot, with `source` holding its content. Returns false when
    /// the content is not present (any more): the caller stores the file.
    /// Content whose count had fallen to zero may have been pruned by
    /// another machine, so it is checked and touched as a revive is.
    pub fn reference_unchanged(&self, token: &ContentToken, source: &Path) -> Result<bool> {
        self.add_reference_if_present(token, source)
    }

    /// Counts one more reference to `token` for a snapshot copied from
    /// another repository (`copy`): when this repository lacks the content
    /// (or keeps it uncounted), `open` yields its bytes, which are stored
    /// as a file's would be and must hash to `token`. Content already
    /// counted here is not read at all.
    pub fn store_copied(
        &self,
        token: &ContentToken,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
    ) -> Result<()> {
        if let Some(e) = self.repo.index().entries.get_mut(token)
            && e.refs > 0
        {
            e.refs += 1;
            self.repo.mark_dirty();
            lock(&self.refs).push(*token);
            return Ok(());
        }
        // Small content is read whole and goes into a pack.
        let mut head = Vec::new();
        let source_err = |err| {
            ContentError::from(StoreError::new(
                "read",
                format!("the source of content {token}"),
                err,
            ))
        };
        open()?
            .take(MAX_PACKED + 1)
            .read_to_end(&mut head)
            .map_err(source_err)?;
        if head.len() as u64 <= MAX_PACKED {
            if self.repo.tokens.of(&head) != *token {
                return Err(ContentError::DamagedContent {
                    place: format!("the source of content {token}"),
                });
            }
            self.store_packed(*token, &head, Purpose::Reference)?;
            return Ok(());
        }
        drop(head);
        let store = self.repo.store.as_ref();
        let mut size = 0;
        let (form, stored) = self.repo.put_content(token, || {
            let mut reader = TrackedReader::new(open()?);
            let written = codec::write_stream(&mut reader, self.repo.encoding(), |form| {
                store
                    .create(&content_name(token, form))
                    .map_err(std::io::Error::other)
            })
            .map_err(|err| match reader.failed() {
                true => {
                    StoreError::new("read", format!("the source of content {token}"), err).into()
                }
                false => write_err(store, token, err),
            })?;
            if written.token != *token {
                return Err(ContentError::DamagedContent {
                    place: format!("the source of content {token}"),
                });
            }
            size = written.size;
            Ok((written.object, written.form, written.stored_size))
        })?;
        self.record_new(*token, size, form, stored, Place::Loose);
        Ok(())
    }

    /// Makes the counts durable (after a barrier for the content): the
    /// snapshot may be written next. On failure every reference is given
    /// back.
    pub fn commit_counts(self) -> Result<CountedBackup<'r>> {
        self.packer.finish()?;
        self.repo.commit()?;
        Ok(CountedBackup { session: self })
    }

    fn store_file(&self, path: &Path, purpose: Purpose) -> Result<ContentToken> {
        let mut file = open_source(path).map_err(source_err(path))?;
        let meta = file.metadata().map_err(source_err(path))?;
        if !meta.is_file() {
            return Err(ContentError::NotRegularFile(path.to_owned()));
        }
        let expected = meta.len();
        if expected <= codec::SMALL_FILE as u64 {
            let mut data = Vec::with_capacity(expected as usize + 1);
            (&mut file)
                .take(codec::SMALL_FILE as u64 + 1)
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
        let token = self.repo.tokens.of(data);
        if purpose == Purpose::Reference && self.add_reference_if_present(&token, path)? {
            return Ok(token);
        }
        if data.len() as u64 <= MAX_PACKED {
            return self.store_packed(token, data, purpose);
        }
        let (form, bytes) = self.repo.encode_loose(data);
        let store = self.repo.store.as_ref();
        let name = content_name(&token, form);
        self.repo.put_content(&token, || {
            let mut o = store.create(&name)?;
            o.write_all(&bytes)
                .map_err(|e| StoreError::new("write", store.place(&name), e))?;
            Ok((o, form, bytes.len() as u64))
        })?;
        let size = data.len() as u64;
        self.record_written(purpose, token, size, form, bytes.len() as u64, Place::Loose);
        Ok(token)
    }

    /// Appends small content to the session's pack; its index entry points
    /// into the pack from now on, and the pack is finished (durable) before
    /// any index generation is saved.
    fn store_packed(
        &self,
        token: ContentToken,
        data: &[u8],
        purpose: Purpose,
    ) -> Result<ContentToken> {
        let item = EncodedItem::encode(data, self.repo.prefer, self.repo.key.as_deref());
        let stored = item.bytes.len() as u64;
        let fresh = |place| IndexEntry {
            refs: 0,
            size: item.size,
            stored_size: stored,
            form: item.form,
            zero_since: 0,
            place,
        };
        let mut is_new = false;
        self.packer
            .append(&token, &item, |entry, place| match (entry, purpose) {
                (None, Purpose::Reference) => {
                    is_new = true;
                    Some(IndexEntry {
                        refs: 1,
                        ..fresh(place)
                    })
                }
                (None, Purpose::Rewrite) => None,
                (Some(e), purpose) => {
                    // Written again: a released entry whose object was gone,
                    // or a revived one another machine pruned meanwhile.
                    *e = IndexEntry {
                        refs: e.refs,
                        zero_since: e.zero_since,
                        ..fresh(place)
                    };
                    if purpose == Purpose::Reference {
                        e.refs += 1;
                        e.zero_since = 0;
                    }
                    None
                }
            })?;
        if purpose == Purpose::Reference {
            lock(&self.refs).push(token);
            if is_new {
                self.count_new(item.size, stored);
            }
        }
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
        let (token, size) = codec::hash_stream(file, self.repo.tokens).map_err(source_err(path))?;
        if size != expected {
            return Err(ContentError::ChangedWhileReading(path.to_owned()));
        }
        if purpose == Purpose::Reference && self.add_reference_if_present(&token, path)? {
            return Ok(token);
        }
        let store = self.repo.store.as_ref();
        let (form, stored) = self.repo.put_content(&token, || {
            file.seek(SeekFrom::Start(0)).map_err(source_err(path))?;
            let mut reader = TrackedReader::new(&mut *file);
            // The name depends on the form, known after the first batch.
            let written = codec::write_stream(&mut reader, self.repo.encoding(), |form| {
                store
                    .create(&content_name(&token, form))
                    .map_err(std::io::Error::other)
            });
            let written = match written {
                Ok(w) => w,
                Err(err) if reader.failed() => return Err(source_err(path)(err)),
                Err(err) => return Err(write_err(store, &token, err)),
            };
            if written.token != token || written.size != expected {
                return Err(ContentError::ChangedWhileReading(path.to_owned()));
            }
            Ok((written.object, written.form, written.stored_size))
        })?;
        self.record_written(purpose, token, size, form, stored, Place::Loose);
        Ok(token)
    }

    fn record_written(
        &self,
        purpose: Purpose,
        token: ContentToken,
        size: u64,
        form: StoredForm,
        stored: u64,
        place: Place,
    ) {
        match purpose {
            Purpose::Reference => self.record_new(token, size, form, stored, place),
            Purpose::Rewrite => {
                if let Some(e) = self.repo.index().entries.get_mut(&token) {
                    e.form = form;
                    e.stored_size = stored;
                    e.place = place;
                    self.repo.mark_dirty();
                }
            }
        }
    }

    /// Counts a reference if the content is present. An entry whose count
    /// fell to zero may have been pruned by another machine, so its object
    /// is checked before it is trusted, touched (prune leaves recently
    /// touched content alone) and remembered for
    /// [`CountedBackup::snapshot_written`].
    fn add_reference_if_present(&self, token: &ContentToken, source: &Path) -> Result<bool> {
        let entry = {
            let mut index = self.repo.index();
            match index.entries.get_mut(token) {
                None => return Ok(false),
                Some(e) if e.refs > 0 => {
                    e.refs += 1;
                    drop(index);
                    self.repo.mark_dirty();
                    lock(&self.refs).push(*token);
                    return Ok(true);
                }
                Some(e) => *e,
            }
        };
        let Some(holder) = self.repo.holder_of(token, &entry) else {
            return Ok(false);
        };
        let _ = self.repo.store.touch(&holder);
        let mut index = self.repo.index();
        if let Some(e) = index.entries.get_mut(token) {
            e.refs += 1;
            e.zero_since = 0;
            drop(index);
            self.repo.mark_dirty();
            lock(&self.refs).push(*token);
            lock(&self.revived).push((*token, source.to_owned()));
            return Ok(true);
        }
        Ok(false)
    }

    /// Counts a reference to content just written. Two threads may write
    /// the same new content at once; only the first counts it as new.
    fn record_new(
        &self,
        token: ContentToken,
        size: u64,
        form: StoredForm,
        stored: u64,
        place: Place,
    ) {
        let mut index = self.repo.index();
        let fresh = IndexEntry {
            refs: 1,
            size,
            stored_size: stored,
            form,
            zero_since: 0,
            place,
        };
        let is_new = match index.entries.entry(token) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(fresh);
                true
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                let e = slot.get_mut();
                if e.refs == 0 {
                    // A released entry whose object was written again.
                    *e = IndexEntry { refs: 0, ..fresh };
                }
                e.refs += 1;
                false
            }
        };
        drop(index);
        self.repo.mark_dirty();
        lock(&self.refs).push(token);
        if is_new {
            self.count_new(size, stored);
        }
    }

    fn count_new(&self, size: u64, stored: u64) {
        let c = &self.counters;
        c.new_items.fetch_add(1, Ordering::Relaxed);
        c.new_content_bytes.fetch_add(size, Ordering::Relaxed);
        c.new_stored_bytes.fetch_add(stored, Ordering::Relaxed);
    }

    /// Gives back every reference counted and saves the index, so content
    /// stored by a backup that failed is unreferenced (prunable). Best
    /// effort: on a full disk the index may not be writable, and counts
    /// then stay as they were on disk (too high, never too low).
    fn roll_back(&self) {
        self.packer.abandon();
        let refs = std::mem::take(&mut *lock(&self.refs));
        if refs.is_empty() {
            return;
        }
        self.repo.release_contents(&refs);
        let _ = self.repo.commit();
    }
}

impl Drop for BackupSession<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.roll_back();
        }
    }
}

impl CountedBackup<'_> {
    pub fn counters(&self) -> &SessionCounters {
        &self.session.counters
    }

    /// The snapshot is written: the references stay. Content this backup
    /// revived may have been pruned from another machine while it ran
    /// (no lock holds that off); what is missing is written again from its
    /// source file, now that the snapshot is there for every later prune
    /// to see. Returns how many were written again.
    pub fn snapshot_written(mut self) -> Result<u64> {
        self.session.kept = true;
        let session = &self.session;
        let revived = std::mem::take(&mut *lock(&session.revived));
        let mut rewritten = 0;
        for (token, path) in revived {
            let entry = session.repo.index().entries.get(&token).copied();
            if entry.is_some_and(|e| session.repo.holder_of(&token, &e).is_some()) {
                continue;
            }
            if session.store_file(&path, Purpose::Rewrite)? != token {
                return Err(ContentError::ChangedWhileReading(path));
            }
            rewritten += 1;
        }
        if rewritten > 0 {
            session.packer.finish()?;
            session.repo.commit()?;
        }
        Ok(rewritten)
    }
}

/// A write error from streaming: the store's own error when it came from
/// the store, else one naming the object.
fn write_err(store: &dyn Store, token: &ContentToken, err: std::io::Error) -> ContentError {
    match err.downcast::<StoreError>() {
        Ok(e) => e.into(),
        Err(err) => StoreError::new(
            "write",
            store.place(&content_name(token, StoredForm::Gzip)),
            err,
        )
        .into(),
    }
}
