//! Removing content no snapshot references: loose content files, packs
//! whose items are all unreferenced, and the dead part of packs that are
//! mostly dead (their live items are copied into a new pack first).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::layout::content_name;
use super::pack::{ENTRY_OVERHEAD, EncodedItem, PackName};
use super::packer::Packer;
use super::{ContentToken, IndexEntry, PackId, Place, Repository, Result, StoredForm};
use crate::clock::now_secs;

/// A pack is rewritten when less than this share of it is live: the
/// rewrite then copies at most as many bytes as it frees.
const REPACK_BELOW: f64 = 0.5;

/// What a `prune` run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub items: u64,
    pub content_bytes: u64,
    /// Bytes the removed items took in the repository.
    pub stored_bytes: u64,
    /// Unreferenced items kept because they were released or touched
    /// less than the minimum age ago.
    pub kept_young: u64,
    /// Items with a zero count that a snapshot does use (count raised).
    pub kept_referenced: u64,
    /// Packs removed because none of their items is used any more.
    pub packs_removed: u64,
    /// Mostly dead packs whose live items were copied into new packs.
    pub packs_rewritten: u64,
    /// Files' bytes freed on the disk: loose files and packs removed, less
    /// the packs written.
    pub bytes_freed: u64,
    /// Packs left as they were because an item in them is damaged (check
    /// --read-data names it).
    pub packs_damaged: Vec<String>,
}

/// What prune must respect.
pub struct PruneRules<'a> {
    /// Token → entries using it, over every snapshot the repository's
    /// registered snapshot directories hold.
    pub referenced: &'a HashMap<ContentToken, u64>,
    /// Keep unreferenced content released or touched more recently.
    pub min_age: Duration,
}

/// What happens to each pack.
struct PackPlan {
    /// No item is used: remove the pack after the index is saved.
    dead: Vec<PackId>,
    /// Mostly dead: copy the live items, then remove the pack.
    rewrite: Vec<PackId>,
}

impl Repository {
    /// Removes content that no snapshot references: count zero in the
    /// index, absent from `rules.referenced` (every snapshot the repository
    /// knows of, read just now), and released and untouched for at least
    /// `rules.min_age` (a backup on another machine may be about to use it;
    /// no lock is trusted across machines). Zero counts of content some
    /// snapshot uses are raised instead. The index without the removed items
    /// (and pointing at the new copies of rewritten packs' items) is saved
    /// first, so a crash leaves orphan objects (found by check), never index
    /// entries pointing at nothing.
    pub fn prune(&self, rules: &PruneRules) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let doomed = self.doomed_items(rules, &mut report);
        {
            let mut index = self.index();
            for (token, _) in &doomed {
                index.entries.remove(token);
            }
        }
        if !doomed.is_empty() {
            self.mark_dirty();
        }
        let plan = self.plan_packs(rules.min_age);
        let packer = Packer::new(self);
        let rewritten = self.rewrite_packs(&plan.rewrite, &packer, &mut report)?;
        packer.finish()?;
        let written: u64 = self.pack_sizes(&packer.finished());
        let gone: Vec<(PackName, u64)> = {
            let mut index = self.index();
            plan.dead
                .iter()
                .chain(&rewritten)
                .filter_map(|id| index.packs.remove(id))
                .map(|info| (info.name, info.size))
                .collect()
        };
        if !gone.is_empty() {
            self.mark_dirty();
        }
        self.commit()?;
        let mut freed = 0;
        for (token, entry) in doomed {
            if entry.place == Place::Loose {
                for form in [StoredForm::Gzip, StoredForm::Plain, StoredForm::Sealed] {
                    self.store.delete(&content_name(&token, form))?;
                }
                freed += entry.stored_size;
            }
            report.items += 1;
            report.content_bytes += entry.size;
            report.stored_bytes += entry.stored_size;
        }
        for (name, size) in gone {
            self.store.delete(&name.object_name())?;
            freed += size;
        }
        report.packs_removed = plan.dead.len() as u64;
        report.packs_rewritten = rewritten.len() as u64;
        report.bytes_freed = freed.saturating_sub(written);
        Ok(report)
    }

    /// Zero-count items no snapshot uses and old enough to go; zero counts
    /// that snapshots do use are raised.
    fn doomed_items(
        &self,
        rules: &PruneRules,
        report: &mut PruneReport,
    ) -> Vec<(ContentToken, IndexEntry)> {
        let now = SystemTime::now();
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
                self.mark_dirty();
                report.kept_referenced += 1;
                continue;
            }
            let released_secs = now_secs.saturating_sub(entry.zero_since);
            let young = rules.min_age > Duration::ZERO
                && (released_secs < rules.min_age.as_secs()
                    || self.touched_within(&token, &entry, now, rules.min_age));
            if young {
                report.kept_young += 1;
                continue;
            }
            doomed.push((token, entry));
        }
        doomed
    }

    /// Sorts the packs the index lists into dead ones and mostly dead
    /// ones, by the entries still pointing into them. A pack touched
    /// within `min_age` (a backup elsewhere revived an item in it) is not
    /// rewritten.
    fn plan_packs(&self, min_age: Duration) -> PackPlan {
        let index = self.index();
        let mut live: BTreeMap<PackId, u64> = index.packs.keys().map(|p| (*p, 0)).collect();
        for e in index.entries.values() {
            if let Some(pack) = e.place.pack() {
                *live.entry(pack).or_default() += e.stored_size + ENTRY_OVERHEAD;
            }
        }
        let mut plan = PackPlan {
            dead: Vec::new(),
            rewrite: Vec::new(),
        };
        let now = SystemTime::now();
        for (id, live_bytes) in live {
            let Some(info) = index.packs.get(&id) else {
                continue;
            };
            if live_bytes == 0 {
                plan.dead.push(id);
            } else if (live_bytes as f64) < info.size as f64 * REPACK_BELOW
                && !(min_age > Duration::ZERO
                    && self.object_touched_within(&info.name.object_name(), now, min_age))
            {
                plan.rewrite.push(id);
            }
        }
        plan
    }

    /// Copies the live items of each pack in `packs` into new packs (each
    /// checked against its token on the way). Returns the packs whose items
    /// all moved; a pack with a damaged or unreadable item stays as it is.
    fn rewrite_packs(
        &self,
        packs: &[PackId],
        packer: &Packer,
        report: &mut PruneReport,
    ) -> Result<Vec<PackId>> {
        let mut done = Vec::new();
        for &pack in packs {
            let Some(name) = self.pack_name(pack) else {
                continue;
            };
            let items: Vec<(ContentToken, IndexEntry)> = self
                .index()
                .entries
                .iter()
                .filter(|(_, e)| e.place.pack() == Some(pack))
                .map(|(t, e)| (*t, *e))
                .collect();
            let bytes = match self.store.read(&name.object_name()) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let copies: Option<Vec<(ContentToken, EncodedItem)>> = items
                .iter()
                .map(|(token, e)| packed_copy(&bytes, token, e, self.tokens, self.key.as_deref()))
                .collect();
            let Some(copies) = copies else {
                report
                    .packs_damaged
                    .push(self.store.place(&name.object_name()));
                continue;
            };
            for (token, item) in copies {
                packer.append(&token, &item, |entry, place| {
                    if let Some(e) = entry {
                        e.place = place;
                    }
                    None
                })?;
            }
            done.push(pack);
        }
        Ok(done)
    }

    /// Sizes of packs now in the index.
    fn pack_sizes(&self, names: &[PackName]) -> u64 {
        let wanted: HashSet<&PackName> = names.iter().collect();
        self.index()
            .packs
            .values()
            .filter(|p| wanted.contains(&p.name))
            .map(|p| p.size)
            .sum()
    }

    /// True when the object holding `token` was modified within `age` of
    /// `now` (a backup elsewhere revived it).
    fn touched_within(
        &self,
        token: &ContentToken,
        entry: &IndexEntry,
        now: SystemTime,
        age: Duration,
    ) -> bool {
        match entry.place {
            Place::Loose => [StoredForm::Gzip, StoredForm::Plain, StoredForm::Sealed]
                .iter()
                .any(|f| self.object_touched_within(&content_name(token, *f), now, age)),
            Place::Packed { pack, .. } => self
                .pack_name(pack)
                .is_some_and(|n| self.object_touched_within(&n.object_name(), now, age)),
        }
    }

    fn object_touched_within(&self, name: &str, now: SystemTime, age: Duration) -> bool {
        self.store
            .stat(name)
            .ok()
            .flatten()
            .and_then(|m| now.duration_since(m.modified).ok())
            .is_some_and(|d| d < age)
    }
}

/// An item's stored bytes cut from a pack held in memory, checked against
/// its token; None when they are damaged.
fn packed_copy(
    pack: &[u8],
    token: &ContentToken,
    entry: &IndexEntry,
    tokens: crate::content::TokenHasher,
    key: Option<&crate::crypt::RepoKey>,
) -> Option<(ContentToken, EncodedItem)> {
    let Place::Packed { offset, .. } = entry.place else {
        return None;
    };
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(entry.stored_size).ok()?)?;
    let stored = pack.get(start..end)?;
    let data = super::pack::decode_item(stored, entry.form, entry.size, key).ok()?;
    if tokens.of(&data) != *token {
        return None;
    }
    // A sealed item moves as it is: the same age file, the zip's CRC over it.
    let crc = match entry.form {
        StoredForm::Sealed => libdeflater::crc32(stored),
        _ => libdeflater::crc32(&data),
    };
    Some((
        *token,
        EncodedItem {
            form: entry.form,
            bytes: stored.to_vec(),
            crc,
            size: entry.size,
        },
    ))
}
