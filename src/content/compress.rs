//! `compress [-U] -R`: rewriting every content item into the other form,
//! loose files and packed items alike; `compress --pack -R`: moving the
//! small loose content of a repository made before packs into packs.
//! Reads work the same before, during and after: nothing is removed before
//! an index naming its new place is durable.

use super::codec;
use super::layout::content_name;
use super::pack::{EncodedItem, MAX_PACKED};
use super::packer::Packer;
use super::{
    ContentError, ContentToken, IndexEntry, PackId, Place, Repository, Result, StoredForm,
};
use crate::progress::Progress;

/// Conversions between index saves.
const COMPRESS_SAVE_EVERY: usize = 2000;

/// What a `compress` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompressReport {
    pub converted: u64,
    pub kept_plain: u64,
    pub stored_before: u64,
    pub stored_after: u64,
    /// Packs rewritten because some of their items changed form.
    pub packs_rewritten: u64,
}

/// What `compress --pack` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PackReport {
    /// Loose items moved into packs.
    pub packed: u64,
    pub bytes: u64,
    /// Packs written.
    pub packs: u64,
}

impl Repository {
    /// Rewrites every content item into `target` form (gzip keeps content
    /// that does not shrink plain). Each conversion is checked against its
    /// token before the old copy is removed, and old copies are removed
    /// only after an index naming the new ones is durable. Packs holding an
    /// item in the other form are rewritten whole.
    pub fn compress_all(&self, target: StoredForm) -> Result<CompressReport> {
        self.refuse_if_encrypted()?;
        let todo: Vec<(ContentToken, IndexEntry)> = self
            .items()
            .into_iter()
            .filter(|(_, e)| e.form != target && e.place == Place::Loose)
            .collect();
        let mut report = CompressReport::default();
        let mut stale = Vec::new();
        for (i, (token, entry)) in todo.iter().enumerate() {
            if let Some(old) = self.convert_one(token, entry, target, &mut report)? {
                stale.push(old);
            }
            if (i + 1) % COMPRESS_SAVE_EVERY == 0 {
                self.commit_and_remove(&mut stale)?;
            }
        }
        self.commit_and_remove(&mut stale)?;
        self.convert_packs(target, &mut report)?;
        Ok(report)
    }

    /// An encrypted repository's items are always gzip, then sealed, and
    /// were packed when written: there is nothing to convert.
    fn refuse_if_encrypted(&self) -> Result<()> {
        match self.key {
            Some(_) => Err(ContentError::Encrypted(self.location().clone())),
            None => Ok(()),
        }
    }

    fn commit_and_remove(&self, stale: &mut Vec<String>) -> Result<()> {
        self.commit()?;
        for name in stale.drain(..) {
            self.store.delete(&name)?;
        }
        Ok(())
    }

    /// Rewrites, one at a time, each pack holding an item not in `target`
    /// form: every item it holds goes into a new pack (converted where
    /// needed), the index is saved, then the old pack removed.
    fn convert_packs(&self, target: StoredForm, report: &mut CompressReport) -> Result<()> {
        let packs: Vec<PackId> = {
            let index = self.index();
            let mut p: Vec<PackId> = index
                .entries
                .values()
                .filter(|e| e.form != target)
                .filter_map(|e| e.place.pack())
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        };
        for pack in packs {
            let Some(name) = self.pack_name(pack) else {
                continue;
            };
            // Everything the pack holds, re-encoded where the form is to
            // change; a pack whose items all stay as they are (content
            // that does not shrink) is left alone.
            let mut encoded = Vec::new();
            let mut changes = false;
            for (token, entry) in self.items_in(pack) {
                let Place::Packed { offset, .. } = entry.place else {
                    continue;
                };
                let data = self
                    .read_packed(&token, &name, offset, &entry)?
                    .ok_or_else(|| ContentError::MissingContent {
                        token,
                        place: self.store.place(&name.object_name()),
                    })?;
                let item = EncodedItem::encode(&data, target, None);
                if entry.form != target {
                    if item.form == entry.form {
                        report.kept_plain += 1;
                    } else {
                        changes = true;
                        report.converted += 1;
                        report.stored_before += entry.stored_size;
                        report.stored_after += item.bytes.len() as u64;
                    }
                }
                encoded.push((token, item));
            }
            if !changes {
                continue;
            }
            let packer = Packer::new(self);
            for (token, item) in encoded {
                let stored = item.bytes.len() as u64;
                let form = item.form;
                packer.append(&token, &item, |e, place| {
                    if let Some(e) = e {
                        e.place = place;
                        e.form = form;
                        e.stored_size = stored;
                    }
                    None
                })?;
            }
            packer.finish()?;
            self.index().packs.remove(&pack);
            self.mark_dirty();
            self.commit()?;
            self.store.delete(&name.object_name())?;
            report.packs_rewritten += 1;
        }
        Ok(())
    }

    /// Items the index places in `pack`, by offset.
    fn items_in(&self, pack: PackId) -> Vec<(ContentToken, IndexEntry)> {
        let mut items: Vec<(ContentToken, IndexEntry)> = self
            .index()
            .entries
            .iter()
            .filter(|(_, e)| e.place.pack() == Some(pack))
            .map(|(t, e)| (*t, *e))
            .collect();
        items.sort_unstable_by_key(|(_, e)| match e.place {
            Place::Packed { offset, .. } => offset,
            Place::Loose => 0,
        });
        items
    }

    /// Moves loose items up to the pack size limit into packs (a repository
    /// made before packs), in their present form. Each item is read and
    /// checked against its token; its loose file is removed once an index
    /// naming its pack is durable.
    pub fn pack_loose(&self, progress: &dyn Progress) -> Result<PackReport> {
        self.refuse_if_encrypted()?;
        let todo: Vec<(ContentToken, IndexEntry)> = self
            .items()
            .into_iter()
            .filter(|(_, e)| e.place == Place::Loose && e.size <= MAX_PACKED)
            .collect();
        progress.phase(
            "packing",
            todo.len() as u64,
            todo.iter().map(|(_, e)| e.size).sum(),
        );
        let mut report = PackReport::default();
        let packer = Packer::new(self);
        let mut moved: Vec<String> = Vec::new();
        for (token, entry) in &todo {
            if progress.cancelled() {
                break;
            }
            let Some(form) = self.find_content(token, entry.form) else {
                return Err(ContentError::MissingContent {
                    token: *token,
                    place: self.store.place(&content_name(token, entry.form)),
                });
            };
            let name = content_name(token, form);
            let mut data = Vec::with_capacity(entry.size as usize);
            let read = std::io::Read::read_to_end(
                &mut self.reader(self.store.open(&name)?, form, &name)?,
                &mut data,
            );
            if read.is_err() || self.tokens.of(&data) != *token {
                return Err(ContentError::DamagedContent {
                    place: self.store.place(&name),
                });
            }
            let item = EncodedItem::encode(&data, form, None);
            let (stored, item_form) = (item.bytes.len() as u64, item.form);
            let sealed_before = packer.finished().len();
            packer.append(token, &item, |e, place| {
                if let Some(e) = e {
                    e.place = place;
                    e.form = item_form;
                    e.stored_size = stored;
                }
                None
            })?;
            moved.push(name);
            report.packed += 1;
            report.bytes += entry.size;
            progress.file_done(entry.size);
            if packer.finished().len() > sealed_before {
                // The pack just finished holds every item moved so far.
                self.commit_and_remove(&mut moved)?;
            }
        }
        packer.finish()?;
        self.commit_and_remove(&mut moved)?;
        report.packs = packer.finished().len() as u64;
        progress.finish();
        Ok(report)
    }

    /// Converts one loose content object; returns the old object's name
    /// once the new one is written, or None when it stays as it is.
    fn convert_one(
        &self,
        token: &ContentToken,
        entry: &IndexEntry,
        target: StoredForm,
        report: &mut CompressReport,
    ) -> Result<Option<String>> {
        let Some(old_form) = self.find_content(token, entry.form) else {
            return Err(ContentError::MissingContent {
                token: *token,
                place: self.store.place(&content_name(token, entry.form)),
            });
        };
        let old_name = content_name(token, old_form);
        let store = self.store.as_ref();
        let mut reader = self.reader(store.open(&old_name)?, old_form, &old_name)?;
        let encoding = codec::Encoding {
            prefer: target,
            tokens: self.tokens,
            seal: None,
        };
        let written = codec::write_stream(&mut reader, encoding, |form| {
            store
                .create(&content_name(token, form))
                .map_err(std::io::Error::other)
        });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                return Err(match e.downcast::<crate::store::StoreError>() {
                    Ok(store_err) => store_err.into(),
                    // A decoding error: the stored bytes are not what they
                    // claim to be.
                    Err(_) => ContentError::DamagedContent {
                        place: store.place(&old_name),
                    },
                });
            }
        };
        if written.token != *token {
            return Err(ContentError::DamagedContent {
                place: store.place(&old_name),
            });
        }
        if written.form == old_form {
            report.kept_plain += 1;
            return Ok(None);
        }
        let new_form = written.form;
        let stored_after = written.stored_size;
        // An object already in the new form (a compress interrupted after
        // writing it) is kept when it is whole; one a crash tore before it
        // was synced is written again, before the old object goes.
        let new_name = content_name(token, new_form);
        if written.object.commit()? == crate::store::Committed::Existed
            && !self.object_holds(&new_name, new_form, token)
        {
            store.delete(&new_name)?;
            return self.convert_one(token, entry, target, report);
        }
        report.converted += 1;
        report.stored_before += entry.stored_size;
        report.stored_after += stored_after;
        if let Some(e) = self.index().entries.get_mut(token) {
            e.form = new_form;
            e.stored_size = stored_after;
        }
        self.mark_dirty();
        Ok(Some(old_name))
    }
}
