//! The pack being filled. Storing threads append items to it one at a
//! time; a full pack is finished outside the lock, then listed in the
//! index, so an index generation never points into a pack that is not
//! complete and durable (the repository's commit saves the index only after
//! a barrier). A pack that fails leaves the index as it was before its
//! items went in.

use std::sync::Mutex;

use super::pack::{EncodedItem, PackName, PackWriter};
use super::{ContentError, ContentToken, PackId, PackInfo, Place, Repository, Result, StoredForm};

/// Where an item was before it went into the open pack, to put it back if
/// the pack fails: None for an item that was not in the index.
type Before = Option<(Place, StoredForm, u64)>;

struct OpenPack<'r> {
    writer: PackWriter<'r>,
    id: PackId,
    items: Vec<(ContentToken, Before)>,
}

/// Appends items to packs of one repository, for one operation (a backup,
/// a prune's repacking, a compress). Call [`Packer::finish`] before the
/// repository's commit; dropped with a pack open, the pack is abandoned
/// and its items taken out of the index again.
pub struct Packer<'r> {
    repo: &'r Repository,
    open: Mutex<Option<OpenPack<'r>>>,
    /// Packs finished by this packer, for reports.
    finished: Mutex<Vec<PackName>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'r> Packer<'r> {
    pub fn new(repo: &'r Repository) -> Packer<'r> {
        Packer {
            repo,
            open: Mutex::new(None),
            finished: Mutex::new(Vec::new()),
        }
    }

    /// Appends an item and points its index entry at it: `update` gets the
    /// entry (None when the index lacks the token) and the new place, and
    /// says what the entry becomes. Runs under the index lock, so no count
    /// changed by another thread meanwhile is lost.
    pub fn append(
        &self,
        token: &ContentToken,
        item: &EncodedItem,
        update: impl FnOnce(Option<&mut super::IndexEntry>, Place) -> Option<super::IndexEntry>,
    ) -> Result<Place> {
        let full = {
            let mut open = lock(&self.open);
            if open.is_none() {
                *open = Some(self.start_pack()?);
            }
            let pack = open.as_mut().expect("opened above");
            let offset = match pack.writer.append(token, item) {
                Ok(offset) => offset,
                Err(e) => {
                    let failed = open.take().expect("open");
                    drop(open);
                    self.undo(failed);
                    return Err(e.into());
                }
            };
            let place = Place::Packed {
                pack: pack.id,
                offset,
            };
            let mut index = self.repo.index();
            let entry = index.entries.get_mut(token);
            let before = entry.as_ref().map(|e| (e.place, e.form, e.stored_size));
            if let Some(new) = update(entry, place) {
                index.entries.insert(*token, new);
            }
            drop(index);
            self.repo.mark_dirty();
            pack.items.push((*token, before));
            let full = if pack.writer.is_full() {
                open.take()
            } else {
                None
            };
            (place, full)
        };
        let (place, full) = full;
        if let Some(pack) = full {
            self.seal(pack)?;
        }
        Ok(place)
    }

    /// Finishes the open pack, if any: call before the repository's commit.
    pub fn finish(&self) -> Result<()> {
        let open = lock(&self.open).take();
        match open {
            Some(pack) => self.seal(pack),
            None => Ok(()),
        }
    }

    /// Abandons the open pack: nothing of it is kept, and its items are
    /// taken out of the index (or put back where they were).
    pub fn abandon(&self) {
        if let Some(pack) = lock(&self.open).take() {
            self.undo(pack);
        }
    }

    /// Names of the packs this packer finished.
    pub fn finished(&self) -> Vec<PackName> {
        lock(&self.finished).clone()
    }

    fn start_pack(&self) -> Result<OpenPack<'r>> {
        Ok(OpenPack {
            writer: PackWriter::create(self.repo.store.as_ref(), PackName::new_unique())?,
            id: self.repo.allocate_pack_id(),
            items: Vec::new(),
        })
    }

    fn seal(&self, pack: OpenPack<'r>) -> Result<()> {
        let OpenPack { writer, id, items } = pack;
        match writer.finish() {
            Ok((name, size)) => {
                self.repo.index().packs.insert(
                    id,
                    PackInfo {
                        name: name.clone(),
                        size,
                    },
                );
                self.repo.mark_dirty();
                lock(&self.finished).push(name);
                Ok(())
            }
            Err(e) => {
                self.undo_items(id, items);
                Err(ContentError::from(e))
            }
        }
    }

    fn undo(&self, pack: OpenPack<'r>) {
        let OpenPack { writer, id, items } = pack;
        drop(writer);
        self.undo_items(id, items);
    }

    /// Entries still pointing into the failed pack go back to where they
    /// were, or out of the index when they were not in it; their counts
    /// stay as they are.
    fn undo_items(&self, id: PackId, items: Vec<(ContentToken, Before)>) {
        let mut index = self.repo.index();
        for (token, before) in items.into_iter().rev() {
            let Some(entry) = index.entries.get_mut(&token) else {
                continue;
            };
            if entry.place.pack() != Some(id) {
                continue;
            }
            match before {
                Some((place, form, stored_size)) => {
                    entry.place = place;
                    entry.form = form;
                    entry.stored_size = stored_size;
                }
                None => {
                    index.entries.remove(&token);
                }
            }
        }
        drop(index);
        self.repo.mark_dirty();
    }
}

impl Drop for Packer<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}
