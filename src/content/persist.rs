//! Loading and saving the reference-count index as numbered generations
//! (`index.<n>`): each save is a new object, the newest is the truth, and
//! older ones are removed only after the new one is durable.

use std::sync::atomic::Ordering;

use super::layout::{FORMAT_VERSION, generation_name, parse_generation, upgrade_format};
use super::{ContentError, RefIndex, Repository, Result};
use crate::store::{Committed, Store};

/// Loads the newest index generation.
pub fn load_index(store: &dyn Store) -> Result<RefIndex> {
    // A concurrent save may remove the generation we listed; look again.
    for _ in 0..5 {
        let Some(generation) = newest_generation(store)? else {
            return Err(ContentError::MissingIndex(store.location().clone()));
        };
        let name = generation_name(generation);
        let bytes = match store.read(&name) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let index = RefIndex::decode(&bytes).map_err(|reason| ContentError::CorruptIndex {
            place: store.place(&name),
            reason,
        })?;
        if index.generation != generation {
            return Err(ContentError::CorruptIndex {
                place: store.place(&name),
                reason: super::IndexDecodeError::WrongGeneration(index.generation),
            });
        }
        return Ok(index);
    }
    Err(ContentError::MissingIndex(store.location().clone()))
}

/// Renames every index generation that does not decode to
/// `broken-index.<n>`; returns the newest generation number seen (the
/// rebuilt index goes after it) and the names set aside.
pub fn set_aside_broken(store: &dyn Store) -> Result<(u64, Vec<String>)> {
    let mut newest = 0;
    let mut set_aside = Vec::new();
    for meta in store.list(super::layout::INDEX_PREFIX)? {
        let Some(generation) = parse_generation(&meta.name) else {
            continue;
        };
        newest = newest.max(generation);
        let sound = store
            .read(&meta.name)
            .ok()
            .and_then(|b| RefIndex::decode(&b).ok())
            .is_some_and(|i| i.generation == generation);
        if !sound {
            let aside = format!("broken-index.{generation:012}.{}", crate::clock::now_secs());
            if store.rename_new(&meta.name, &aside)? {
                set_aside.push(store.place(&aside));
            }
        }
    }
    Ok((newest, set_aside))
}

pub fn newest_generation(store: &dyn Store) -> Result<Option<u64>> {
    Ok(store
        .list(super::layout::INDEX_PREFIX)?
        .iter()
        .filter_map(|m| parse_generation(&m.name))
        .max())
}

impl Repository {
    /// Persists changed reference counts as a new index generation, after
    /// a barrier that makes every content object written so far durable.
    /// Must run before a snapshot that uses them is written (counts before
    /// snapshots).
    pub fn commit(&self) -> Result<()> {
        self.store.barrier()?;
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let mut index = self.index();
        if let Some(token) = index.unlisted_pack() {
            self.mark_dirty();
            return Err(ContentError::UnfinishedPack(token));
        }
        if !index.packs.is_empty() && self.format_version.load(Ordering::SeqCst) < FORMAT_VERSION {
            // An older epygibus must refuse the repository rather than
            // miss its packed content.
            if let Err(e) = upgrade_format(self.store.as_ref(), self.prefer) {
                self.mark_dirty();
                return Err(e);
            }
            self.format_version.store(FORMAT_VERSION, Ordering::SeqCst);
        }
        let old = index.generation;
        index.generation = old + 1;
        let name = generation_name(index.generation);
        match self.store.put_new(&name, &index.encode()) {
            Ok(Committed::Created) => {}
            Ok(Committed::Existed) => {
                index.generation = old;
                self.mark_dirty();
                return Err(ContentError::IndexConflict(self.store.place(&name)));
            }
            Err(e) => {
                index.generation = old;
                self.mark_dirty();
                return Err(e.into());
            }
        }
        // Another machine may have saved newer generations meanwhile (and
        // removed ours' predecessor, so the create succeeded): then ours is
        // not the truth, and is removed again rather than left to shadow
        // nothing. Counts from the other machine stand; prune's full scan
        // of the snapshots covers what this run counted.
        let mine = index.generation;
        if newest_generation(self.store.as_ref())?.is_some_and(|n| n > mine) {
            index.generation = old;
            drop(index);
            let _ = self.store.delete(&name);
            self.mark_dirty();
            return Err(ContentError::IndexConflict(self.store.place(&name)));
        }
        drop(index);
        self.remove_older_generations(old);
        Ok(())
    }

    fn remove_older_generations(&self, upto: u64) {
        let Ok(listed) = self.store.list(super::layout::INDEX_PREFIX) else {
            return;
        };
        for m in listed {
            if parse_generation(&m.name).is_some_and(|g| g <= upto) {
                let _ = self.store.delete(&m.name);
            }
        }
    }
}
