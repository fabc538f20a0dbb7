//! Reading content back, and releasing references to it (the seed's
//! `open_contents_read_only`, `copy_contents_to`, `release_contents`).
//!
//! An item is where the index says: a loose content file or a range of a
//! pack. Where that fails because the index is behind (another machine
//! repacked or saved an index this run did not see), the newest index and
//! then the packs' own tables of contents are asked before the item is
//! reported missing: content is never lost to a stale index.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::codec::ContentReader;
use super::layout::content_name;
use super::pack::{self, PackName};
use super::ranged::RangedContent;
use super::source::create_target;
use super::{
    ContentError, ContentToken, IndexEntry, Place, Repository, Result, StoredForm, hash_reader,
};
use crate::clock::now_secs;
use crate::store::ObjectReader;

impl StoredForm {
    /// The forms a loose item may exist in, this one first: plain and
    /// gzip are read either way (a `compress` may be under way); a sealed
    /// item exists only sealed.
    fn candidates(self) -> &'static [StoredForm] {
        match self {
            StoredForm::Gzip => &[StoredForm::Gzip, StoredForm::Plain],
            StoredForm::Plain => &[StoredForm::Plain, StoredForm::Gzip],
            StoredForm::Sealed => &[StoredForm::Sealed],
        }
    }
}

/// An item found in a pack outside the index's knowledge.
#[derive(Clone, Debug)]
pub(super) struct FoundInPack {
    pub pack: PackName,
    pub pack_size: u64,
    pub offset: u64,
    pub stored_size: u64,
    pub size: u64,
    pub form: StoredForm,
}

impl Repository {
    /// A reader of the content's bytes.
    pub fn open_contents_read_only(&self, token: &ContentToken) -> Result<ContentReader> {
        let entry = self.index().entries.get(token).copied();
        if let Some(e) = entry
            && let Place::Packed { pack, offset } = e.place
        {
            if let Some(name) = self.pack_name(pack) {
                match self.read_packed(token, &name, offset, &e) {
                    Ok(Some(data)) => return Ok(ContentReader::Memory(io::Cursor::new(data))),
                    Ok(None) => {}
                    Err(err) => return Err(err),
                }
            }
        } else {
            // A token the index lacks (an index update lost to two machines
            // writing at once) is still found by its name: content objects
            // are named by what they hold.
            let form = entry.map_or(self.prefer, |e| e.form);
            if let Some((object, form)) = self.open_content(token, form)? {
                return self.reader(object, form, &content_name(token, form));
            }
        }
        match self.find_in_packs(token)? {
            Some(found) => match self.read_found(token, &found)? {
                Some(data) => Ok(ContentReader::Memory(io::Cursor::new(data))),
                None => Err(self.missing(token, entry)),
            },
            None => Err(self.missing(token, entry)),
        }
    }

    fn missing(&self, token: &ContentToken, entry: Option<IndexEntry>) -> ContentError {
        let place = match entry.map(|e| e.place) {
            Some(Place::Packed { pack, .. }) => self.pack_name(pack).map_or_else(
                || "an unlisted pack".to_owned(),
                |n| self.store.place(&n.object_name()),
            ),
            _ => self
                .store
                .place(&content_name(token, entry.map_or(self.prefer, |e| e.form))),
        };
        ContentError::MissingContent {
            token: *token,
            place,
        }
    }

    /// The item's content from its pack entry, checked against its token;
    /// None when the pack is not there (any more).
    pub(super) fn read_packed(
        &self,
        token: &ContentToken,
        pack: &PackName,
        offset: u64,
        entry: &IndexEntry,
    ) -> Result<Option<Vec<u8>>> {
        let object = pack.object_name();
        let stored = match self.store.read_range(&object, offset, entry.stored_size) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let damaged = |reason: String| ContentError::DamagedPackEntry {
            token: *token,
            place: self.store.place(&object),
            reason,
        };
        if (stored.len() as u64) < entry.stored_size {
            return Err(damaged(format!(
                "the pack ends {} bytes early (truncated?)",
                entry.stored_size - stored.len() as u64
            )));
        }
        let data = pack::decode_item(&stored, entry.form, entry.size, self.key.as_deref())
            .map_err(|e| damaged(e.to_string()))?;
        if self.tokens.of(&data) != *token {
            return Err(damaged("its bytes do not match its token".to_owned()));
        }
        Ok(Some(data))
    }

    /// Looks for an item in the newest index (another machine may have
    /// moved it since this run loaded its own), then in every pack's table
    /// of contents.
    /// Reads an item [`Repository::find_in_packs`] found, whose index
    /// entry may be missing.
    pub(super) fn read_found(
        &self,
        token: &ContentToken,
        found: &FoundInPack,
    ) -> Result<Option<Vec<u8>>> {
        let probe = IndexEntry {
            refs: 0,
            size: found.size,
            stored_size: found.stored_size,
            form: found.form,
            zero_since: 0,
            place: Place::Loose,
        };
        self.read_packed(token, &found.pack, found.offset, &probe)
    }

    pub(super) fn find_in_packs(&self, token: &ContentToken) -> Result<Option<FoundInPack>> {
        if let Ok(newest) = super::persist::load_index(self.store.as_ref())
            && let Some(e) = newest.entries.get(token)
            && let Place::Packed { pack, offset } = e.place
            && let Some(info) = newest.packs.get(&pack)
            && self.store.stat(&info.name.object_name())?.is_some()
        {
            return Ok(Some(FoundInPack {
                pack: info.name.clone(),
                pack_size: info.size,
                offset,
                stored_size: e.stored_size,
                size: e.size,
                form: e.form,
            }));
        }
        let mut scan = self.pack_scan.lock().unwrap_or_else(|p| p.into_inner());
        if scan.is_none() {
            *scan = Some(self.pack_directory()?);
        }
        Ok(scan.as_ref().and_then(|found| found.get(token).cloned()))
    }

    /// Every item every pack in the store holds, from their tables of
    /// contents (a few range reads per pack). Packs whose table cannot be
    /// read are skipped here; `check` reports them.
    pub(super) fn pack_directory(&self) -> Result<HashMap<ContentToken, FoundInPack>> {
        let mut found = HashMap::new();
        for meta in self.store.list(&format!("{}/", pack::PACK_DIR))? {
            let Some(name) = PackName::from_object_name(&meta.name) else {
                continue;
            };
            let Ok(entries) = pack::remote_table(self.store.as_ref(), &name, meta.size) else {
                continue;
            };
            for entry in entries {
                if found.contains_key(&entry.token) {
                    continue;
                }
                let Ok(offset) = pack::data_offset(self.store.as_ref(), &name, &entry) else {
                    continue;
                };
                found.insert(
                    entry.token,
                    FoundInPack {
                        pack: name.clone(),
                        pack_size: meta.size,
                        offset,
                        stored_size: entry.stored_size,
                        size: entry.size,
                        form: entry.form,
                    },
                );
            }
        }
        Ok(found)
    }

    /// The content opened for reads at any offset, for readers that seek
    /// (the mount): see [`RangedContent`]. Memory stays a few buffers
    /// whatever the content's size. A packed item is read whole and checked
    /// (it is small); for a loose one nothing here checks the token:
    /// `check --read-data` does.
    pub fn open_contents_ranged(&self, token: &ContentToken) -> Result<RangedContent> {
        let entry = self.index().entries.get(token).copied();
        let form = entry.map_or(self.prefer, |e| e.form);
        if entry.is_none_or(|e| e.place == Place::Loose)
            && let Some(found) = self.find_content(token, form)
        {
            return Ok(RangedContent::new(
                self.store.clone(),
                content_name(token, found),
                found,
                self.key.clone(),
            ));
        }
        // Packed, or saved by a run after this one loaded its index (a
        // mount stays open while backups go on): the whole read finds it
        // in the newest index or a pack's table; packed items are small.
        let mut data = Vec::new();
        io::Read::read_to_end(&mut self.open_contents_read_only(token)?, &mut data).map_err(
            |e| ContentError::DamagedPackEntry {
                token: *token,
                place: self.missing(token, entry).to_string(),
                reason: e.to_string(),
            },
        )?;
        Ok(RangedContent::in_memory(self.store.clone(), data))
    }

    /// Opens the content object in `form`, else in the other form (readers
    /// accept either at any time). None when neither exists.
    fn open_content(
        &self,
        token: &ContentToken,
        form: StoredForm,
    ) -> Result<Option<(ObjectReader, StoredForm)>> {
        for &f in form.candidates() {
            match self.store.open(&content_name(token, f)) {
                Ok(object) => return Ok(Some((object, f))),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The form in which the loose content object exists, if it does.
    pub(super) fn find_content(
        &self,
        token: &ContentToken,
        form: StoredForm,
    ) -> Option<StoredForm> {
        form.candidates().iter().copied().find(|f| {
            self.store
                .stat(&content_name(token, *f))
                .is_ok_and(|m| m.is_some())
        })
    }

    /// The object holding an item as the index places it (its loose file,
    /// or its pack), if that object exists.
    pub(super) fn holder_of(&self, token: &ContentToken, entry: &IndexEntry) -> Option<String> {
        match entry.place {
            Place::Loose => self
                .find_content(token, entry.form)
                .map(|f| content_name(token, f)),
            Place::Packed { pack, .. } => {
                let name = self.pack_name(pack)?.object_name();
                self.store
                    .stat(&name)
                    .is_ok_and(|m| m.is_some())
                    .then_some(name)
            }
        }
    }

    /// True when the object `name` (in `form`) holds exactly the content
    /// of `token`.
    pub(super) fn object_holds(&self, name: &str, form: StoredForm, token: &ContentToken) -> bool {
        let Ok(object) = self.store.open(name) else {
            return false;
        };
        let Ok(mut reader) = self.reader(object, form, name) else {
            return false;
        };
        hash_reader(&mut reader, self.tokens).is_ok_and(|t| t == *token)
    }

    /// Writes the content to `path` (created or truncated); returns its size.
    pub fn copy_contents_to(&self, token: &ContentToken, path: &Path) -> Result<u64> {
        let mut reader = self.open_contents_read_only(token)?;
        let target_err = |err| ContentError::Target {
            path: path.to_owned(),
            err,
        };
        let mut out = create_target(path).map_err(target_err)?;
        io::copy(&mut reader, &mut out).map_err(target_err)
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
        drop(index);
        self.mark_dirty();
        unknown
    }
}
