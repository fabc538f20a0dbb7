//! Checking a repository against the references its snapshots make, and
//! repairing what can be repaired without risk: counts that are too low are
//! raised; counts that are too high are lowered only when the caller knows
//! it has seen every snapshot; stale temp files and old orphans are removed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use super::layout::{CONTENT_DIR, content_name, parse_content_name};
use super::pack::{PACK_DIR, PackName};
use super::read::FoundInPack;
use super::refcount::StoredForm;
use super::{ContentToken, IndexEntry, PackId, PackInfo, Place, Repository};
use crate::store::{ObjectMeta, Store};

/// Temp files and orphan content younger than this may belong to a run on
/// another machine and are left alone.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// A pack no index lists, written by a process that may still run (here or
/// elsewhere), is left alone this long: a backup lists its packs in the
/// index only when it ends, and a large first backup takes hours.
pub const ORPHAN_PACK_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One thing wrong, with the path it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Referenced by snapshots but absent (no index entry or no file).
    MissingContent { token: ContentToken, place: String },
    /// The file does not decompress to its token's content.
    DamagedContent { token: ContentToken, place: String },
    /// A pack entry that does not decode to its token's content.
    DamagedPackEntry {
        token: ContentToken,
        place: String,
        reason: String,
    },
    /// A pack that cannot be read or whose table of contents is damaged.
    DamagedPack { place: String, reason: String },
    /// Referenced content found in a pack other than where the index
    /// places it (repair points the index there).
    Misplaced { token: ContentToken, place: String },
    /// Fewer references counted than snapshots make: content could be
    /// pruned while still in use.
    CountTooLow {
        token: ContentToken,
        counted: u64,
        found: u64,
    },
    /// More counted than found: space that prune cannot reclaim.
    CountTooHigh {
        token: ContentToken,
        counted: u64,
        found: u64,
    },
    /// A temp file left by an interrupted run.
    TempFile { place: String },
    /// A content file the index does not know (a run died before saving
    /// the index).
    Orphan { place: String },
    /// A pack the index does not list (a run died after finishing it and
    /// before saving the index, or one is still running elsewhere).
    OrphanPack { place: String },
    /// Content no snapshot references (prune removes it).
    Unreferenced { token: ContentToken },
}

impl Finding {
    /// Findings that are not damage: space to reclaim, not data at risk.
    pub fn is_harmless(&self) -> bool {
        matches!(
            self,
            Finding::CountTooHigh { .. } | Finding::Unreferenced { .. }
        )
    }
}

/// What `check` found and, with repair, what it fixed.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    pub items_checked: u64,
    pub repaired: Vec<String>,
}

/// One line per finding, as `check` prints it (and the GUI shows it).
impl std::fmt::Display for Finding {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let f = self;
        let line = {
            match f {
                Finding::MissingContent { token, place } => {
                    format!("content {token} is referenced but missing ({place})")
                }
                Finding::DamagedContent { token, place } => {
                    format!("content file {place} does not match {token}")
                }
                Finding::DamagedPackEntry {
                    token,
                    place,
                    reason,
                } => format!("pack {place}: entry {token} is damaged ({reason})"),
                Finding::DamagedPack { place, reason } => {
                    format!("pack {place} is damaged: {reason}")
                }
                Finding::Misplaced { token, place } => {
                    format!("content {token} is in pack {place}, which the index does not say")
                }
                Finding::CountTooLow {
                    token,
                    counted,
                    found,
                } => format!("count of {token} is {counted} but {found} snapshot entries use it"),
                Finding::CountTooHigh {
                    token,
                    counted,
                    found,
                } => format!(
                    "count of {token} is {counted} but {found} snapshot entries use it (space not reclaimed)"
                ),
                Finding::TempFile { place } => format!("temp file left over: {place}"),
                Finding::Orphan { place } => format!("content file not in the index: {place}"),
                Finding::OrphanPack { place } => format!("pack not in the index: {place}"),
                Finding::Unreferenced { token } => {
                    format!("content {token} is unreferenced (prune removes it)")
                }
            }
        };
        out.write_str(&line)
    }
}

/// How thorough a check is and what it may change.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// Decompress every referenced content file and compare with its token.
    pub read_data: bool,
    /// Raise low counts, remove stale temp files and old orphans.
    pub repair: bool,
    /// The references given are all there are (every snapshot directory
    /// using the repository was read): counts that are too high and
    /// unreferenced content are reported, old orphans may be removed.
    pub complete: bool,
    /// With `repair` and `complete`: lower counts that are too high.
    pub lower_counts: bool,
}

impl Repository {
    /// Compares the index with `refs` (token → number of snapshot entries
    /// using it) and the files on disk.
    pub fn check(&self, refs: &HashMap<ContentToken, u64>, opts: CheckOptions) -> CheckReport {
        let mut report = CheckReport::default();
        self.check_counts(refs, opts, &mut report);
        self.check_files(refs, opts, &mut report);
        self.check_temp_files(opts, &mut report);
        report
    }

    fn check_counts(
        &self,
        refs: &HashMap<ContentToken, u64>,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) {
        let mut index = self.index();
        for (token, &found) in refs {
            let counted = index.entries.get(token).map_or(0, |e| e.refs);
            if counted < found {
                report.findings.push(Finding::CountTooLow {
                    token: *token,
                    counted,
                    found,
                });
                if opts.repair
                    && let Some(e) = index.entries.get_mut(token)
                {
                    e.refs = found;
                    e.zero_since = 0;
                    self.mark_dirty();
                    report.repaired.push(format!(
                        "raised the count of {token} from {counted} to {found}"
                    ));
                }
            }
        }
        if !opts.complete {
            return;
        }
        let now = crate::clock::now_secs().max(1) as u64;
        for (token, e) in index.entries.iter_mut() {
            let found = refs.get(token).copied().unwrap_or(0);
            if e.refs > found {
                report.findings.push(Finding::CountTooHigh {
                    token: *token,
                    counted: e.refs,
                    found,
                });
                if opts.repair && opts.lower_counts {
                    report.repaired.push(format!(
                        "lowered the count of {token} from {} to {found}",
                        e.refs
                    ));
                    e.refs = found;
                    if found == 0 {
                        e.zero_since = now;
                    }
                    self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            if found == 0 {
                report
                    .findings
                    .push(Finding::Unreferenced { token: *token });
            }
        }
    }

    /// Every referenced token must have its bytes where the index says
    /// (and, with read_data, the right bytes); loose files and packs the
    /// index does not know are orphans.
    fn check_files(
        &self,
        refs: &HashMap<ContentToken, u64>,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) {
        let known: HashMap<ContentToken, IndexEntry> = self.index().entries.clone();
        let on_disk = self.content_objects();
        let packs_on_disk = self.pack_objects();
        let mut elsewhere = None;
        for token in refs.keys() {
            let entry = known.get(token);
            let present = match entry.map(|e| e.place) {
                Some(Place::Packed { pack, .. }) => self
                    .pack_name(pack)
                    .is_some_and(|n| packs_on_disk.contains_key(&n)),
                _ => on_disk.contains_key(token),
            };
            if !present {
                self.check_missing(token, refs[token], entry, opts, &mut elsewhere, report);
                continue;
            }
            report.items_checked += 1;
            let Some(entry) = entry else {
                self.check_unindexed_loose(token, refs[token], opts, report);
                continue;
            };
            if opts.read_data
                && entry.place == Place::Loose
                && !self.content_matches(token, entry.form)
            {
                report.findings.push(Finding::DamagedContent {
                    token: *token,
                    place: self.store.place(&content_name(token, entry.form)),
                });
            }
        }
        if opts.read_data {
            self.check_pack_data(refs, report);
        }
        self.check_orphans(&known, refs, &on_disk, &packs_on_disk, opts, report);
    }

    /// A referenced item that is not where the index says: found in a pack
    /// after all (the index is behind another machine's repacking, or lost
    /// an update), its entry is pointed there on repair; else it is missing.
    fn check_missing(
        &self,
        token: &ContentToken,
        refs: u64,
        entry: Option<&IndexEntry>,
        opts: CheckOptions,
        elsewhere: &mut Option<HashMap<ContentToken, FoundInPack>>,
        report: &mut CheckReport,
    ) {
        let found = elsewhere
            .get_or_insert_with(|| self.pack_directory().unwrap_or_default())
            .get(token)
            .cloned();
        let Some(found) = found else {
            let place = match entry.map(|e| e.place) {
                Some(Place::Packed { pack, .. }) => self.pack_name(pack).map_or_else(
                    || "an unlisted pack".to_owned(),
                    |n| self.store.place(&n.object_name()),
                ),
                _ => self
                    .store
                    .place(&content_name(token, entry.map_or(self.prefer, |e| e.form))),
            };
            report.findings.push(Finding::MissingContent {
                token: *token,
                place,
            });
            return;
        };
        report.items_checked += 1;
        report.findings.push(Finding::Misplaced {
            token: *token,
            place: self.store.place(&found.pack.object_name()),
        });
        if opts.repair {
            let mut found = found;
            if found.size == super::pack::UNKNOWN_SIZE {
                // A sealed entry tells its size only once decrypted.
                match self.read_found(token, &found) {
                    Ok(Some(data)) => found.size = data.len() as u64,
                    _ => return,
                }
            }
            let pack = self.adopt_pack(&found.pack, found.pack_size);
            let mut index = self.index();
            let e = index.entries.entry(*token).or_insert(IndexEntry {
                refs,
                size: found.size,
                stored_size: found.stored_size,
                form: found.form,
                zero_since: 0,
                place: Place::Loose,
            });
            e.place = Place::Packed {
                pack,
                offset: found.offset,
            };
            e.form = found.form;
            e.stored_size = found.stored_size;
            e.size = found.size;
            drop(index);
            self.mark_dirty();
            report.repaired.push(format!(
                "indexed {token} again in pack {}",
                self.store.place(&found.pack.object_name())
            ));
        }
    }

    /// The index's number for a pack, listing it when it is not listed yet.
    fn adopt_pack(&self, name: &PackName, size: u64) -> PackId {
        if let Some((id, _)) = self.index().packs.iter().find(|(_, p)| p.name == *name) {
            return *id;
        }
        let id = self.allocate_pack_id();
        self.index().packs.insert(
            id,
            PackInfo {
                name: name.clone(),
                size,
            },
        );
        self.mark_dirty();
        id
    }

    /// A referenced loose file the index lacks (an index update lost
    /// between machines): checked, and indexed again on repair.
    fn check_unindexed_loose(
        &self,
        token: &ContentToken,
        refs: u64,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) {
        if !self.content_matches(token, self.prefer) {
            report.findings.push(Finding::DamagedContent {
                token: *token,
                place: self.store.place(&content_name(token, self.prefer)),
            });
        } else if opts.repair
            && let Some(msg) = self.reindex(token, refs)
        {
            report.repaired.push(msg);
        }
    }

    /// Reads every pack holding a referenced item once, front to back, and
    /// checks each referenced item in it against its token.
    fn check_pack_data(&self, refs: &HashMap<ContentToken, u64>, report: &mut CheckReport) {
        let mut by_pack: BTreeMap<PackId, Vec<(ContentToken, IndexEntry)>> = BTreeMap::new();
        for (token, e) in self.index().entries.iter() {
            if let Some(pack) = e.place.pack()
                && refs.contains_key(token)
            {
                by_pack.entry(pack).or_default().push((*token, *e));
            }
        }
        for (pack, items) in by_pack {
            let Some(name) = self.pack_name(pack) else {
                continue;
            };
            let place = self.store.place(&name.object_name());
            let bytes = match self.store.read(&name.object_name()) {
                Ok(b) => b,
                Err(e) => {
                    report.findings.push(Finding::DamagedPack {
                        place,
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if let Err(reason) = super::pack::table_of_contents(&bytes) {
                report.findings.push(Finding::DamagedPack {
                    place: place.clone(),
                    reason,
                });
            }
            for (token, entry) in items {
                if let Err(reason) = super::pack::check_item(
                    &bytes,
                    &token,
                    &entry,
                    self.tokens,
                    self.key.as_deref(),
                ) {
                    report.findings.push(Finding::DamagedPackEntry {
                        token,
                        place: place.clone(),
                        reason,
                    });
                }
            }
        }
    }

    /// Loose files and packs the index does not know. Removed on repair
    /// only when every snapshot was read, and only when they can belong to
    /// no run still going: written by a dead process of this host, or old
    /// (a backup elsewhere saves its index only at its end).
    fn check_orphans(
        &self,
        known: &HashMap<ContentToken, IndexEntry>,
        refs: &HashMap<ContentToken, u64>,
        on_disk: &HashMap<ContentToken, Vec<ObjectMeta>>,
        packs_on_disk: &HashMap<PackName, ObjectMeta>,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) {
        let now = SystemTime::now();
        // (object, minimum age before removal, is a pack)
        let mut orphans: Vec<(&ObjectMeta, Duration, bool)> = Vec::new();
        for (token, objects) in on_disk {
            let loose_known = known.get(token).is_some_and(|e| e.place == Place::Loose);
            if loose_known || (!known.contains_key(token) && refs.contains_key(token)) {
                continue;
            }
            // A loose copy of an item the index places in a pack is left
            // over from a packing run: as removable as an orphan.
            orphans.extend(objects.iter().map(|m| (m, STALE_AFTER, false)));
        }
        let listed: HashSet<PackName> = self
            .index()
            .packs
            .values()
            .map(|p| p.name.clone())
            .collect();
        for (name, meta) in packs_on_disk {
            if listed.contains(name) {
                continue;
            }
            let age = if name.owner_is_dead() {
                Duration::ZERO
            } else {
                ORPHAN_PACK_AFTER
            };
            orphans.push((meta, age, true));
        }
        for (meta, age, pack) in orphans {
            let place = self.store.place(&meta.name);
            report.findings.push(if pack {
                Finding::OrphanPack {
                    place: place.clone(),
                }
            } else {
                Finding::Orphan {
                    place: place.clone(),
                }
            });
            // Only when every snapshot was read: an orphan may be the
            // content of a snapshot we could not see.
            let stale = opts.repair && opts.complete && older_than(meta.modified, now, age);
            if stale && self.store.delete(&meta.name).is_ok() {
                report.repaired.push(format!("removed orphan {place}"));
            }
        }
    }

    /// Packs in the store, by name.
    fn pack_objects(&self) -> HashMap<PackName, ObjectMeta> {
        self.store
            .list(&format!("{PACK_DIR}/"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| PackName::from_object_name(&m.name).map(|n| (n, m)))
            .collect()
    }

    /// Adds an index entry for a present content object; returns what was
    /// done.
    fn reindex(&self, token: &ContentToken, refs: u64) -> Option<String> {
        let form = self.find_content(token, self.prefer)?;
        let name = content_name(token, form);
        let stored_size = self.store.stat(&name).ok()??.size;
        let mut reader = self
            .reader(self.store.open(&name).ok()?, form, &name)
            .ok()?;
        let size = std::io::copy(&mut reader, &mut std::io::sink()).ok()?;
        self.index().entries.insert(
            *token,
            IndexEntry {
                refs,
                size,
                stored_size,
                form,
                zero_since: 0,
                place: Place::Loose,
            },
        );
        self.mark_dirty();
        Some(format!("indexed {token} again with count {refs}"))
    }

    fn content_matches(&self, token: &ContentToken, form: StoredForm) -> bool {
        match self.find_content(token, form) {
            Some(f) => self.object_holds(&content_name(token, f), f, token),
            None => false,
        }
    }

    /// Content objects in the store, by token (a token may have both forms).
    fn content_objects(&self) -> HashMap<ContentToken, Vec<ObjectMeta>> {
        let mut objects: HashMap<ContentToken, Vec<ObjectMeta>> = HashMap::new();
        for meta in self
            .store
            .list(&format!("{CONTENT_DIR}/"))
            .unwrap_or_default()
        {
            if let Some((token, _)) = parse_content_name(&meta.name) {
                objects.entry(token).or_default().push(meta);
            }
        }
        objects
    }

    /// Leftovers of interrupted runs in the repository.
    fn check_temp_files(&self, opts: CheckOptions, report: &mut CheckReport) {
        report_leftovers(self.store.as_ref(), opts.repair, report);
    }
}

/// Reports (and with `repair` removes, when stale) what interrupted runs
/// left in `store`: ours from dead processes on this host at once, others
/// after [`STALE_AFTER`] (they may belong to a run on another machine).
pub fn report_leftovers(store: &dyn Store, repair: bool, report: &mut CheckReport) {
    let Ok(leftovers) = store.leftovers() else {
        return;
    };
    let now = SystemTime::now();
    for leftover in leftovers {
        let place = store.place(&leftover.name);
        report.findings.push(Finding::TempFile {
            place: place.clone(),
        });
        let stale = leftover.owner_dead || older_than(leftover.modified, now, STALE_AFTER);
        if repair && stale && store.remove_leftover(&leftover).is_ok() {
            report.repaired.push(format!("removed temp file {place}"));
        }
    }
}

fn older_than(modified: SystemTime, now: SystemTime, age: Duration) -> bool {
    now.duration_since(modified).is_ok_and(|d| d >= age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Access, LockWait};

    fn repo_with(content: &[u8]) -> (tempfile::TempDir, Repository, ContentToken) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        Repository::create_dir(&dir, &crate::content::NewRepository::plain(true)).unwrap();
        let r = Repository::open_dir(
            &dir,
            Access::Locked {
                command: "test",
                wait: LockWait::no_wait(),
            },
        )
        .unwrap();
        let src = tmp.path().join("src");
        std::fs::write(&src, content).unwrap();
        let t = {
            let session = r.begin_backup();
            let t = session.store_contents(&src).unwrap();
            session.commit_counts().unwrap().snapshot_written().unwrap();
            t
        };
        (tmp, r, t)
    }

    /// Packed, then loose.
    fn both_sizes(unit: &[u8]) -> [Vec<u8>; 2] {
        let big = (crate::content::MAX_PACKED as usize) / unit.len() + 2;
        [unit.repeat(40), unit.repeat(big)]
    }

    fn holder(r: &Repository, t: &ContentToken) -> std::path::PathBuf {
        let e = r.index().entries[t];
        let dir = r.location().as_dir().unwrap().to_owned();
        match e.place {
            Place::Loose => dir.join(content_name(t, e.form)),
            Place::Packed { pack, .. } => dir.join(r.pack_name(pack).unwrap().object_name()),
        }
    }

    fn repair_all() -> CheckOptions {
        CheckOptions {
            repair: true,
            complete: true,
            ..CheckOptions::default()
        }
    }

    #[test]
    fn lost_index_entry_is_readable_reported_and_reindexed() {
        for data in both_sizes(b"lost entry ") {
            let (_tmp, r, t) = repo_with(&data);
            // Another machine's index generation replaced ours.
            r.index().entries.clear();
            r.index().packs.clear();
            assert!(
                r.open_contents_read_only(&t).is_ok(),
                "found by its name or pack"
            );
            let refs = HashMap::from([(t, 2)]);
            let report = r.check(&refs, repair_all());
            assert!(report.findings.contains(&Finding::CountTooLow {
                token: t,
                counted: 0,
                found: 2
            }));
            assert!(
                !report
                    .findings
                    .iter()
                    .any(|f| matches!(f, Finding::Orphan { .. } | Finding::MissingContent { .. })),
                "{:?}",
                report.findings
            );
            assert_eq!(r.content_storage_stats(&t).unwrap().1, 2);
            r.commit().unwrap();
            let again = Repository::open(r.store().clone(), Access::ReadOnly).unwrap();
            assert!(again.open_contents_read_only(&t).is_ok(), "never removed");
            assert_eq!(again.content_storage_stats(&t).unwrap().1, 2);
        }
    }

    #[test]
    fn damaged_and_missing_content_are_found() {
        for data in both_sizes(b"damage me ") {
            let (_tmp, r, t) = repo_with(&data);
            let refs = HashMap::from([(t, 1)]);
            let path = holder(&r, &t);
            let mut bytes = std::fs::read(&path).unwrap();
            let e = r.index().entries[&t];
            let at = match e.place {
                Place::Packed { offset, .. } => offset as usize + 3,
                Place::Loose => 20,
            };
            bytes[at] ^= 0xff;
            std::fs::write(&path, &bytes).unwrap();
            let opts = CheckOptions {
                read_data: true,
                ..CheckOptions::default()
            };
            let findings = r.check(&refs, opts).findings;
            let place = path.display().to_string();
            assert!(
                findings.iter().any(|f| matches!(f,
                    Finding::DamagedContent { token, place: p } | Finding::DamagedPackEntry { token, place: p, .. }
                        if *token == t && *p == place)),
                "{findings:?}"
            );
            std::fs::remove_file(&path).unwrap();
            assert!(
                r.check(&refs, opts)
                    .findings
                    .iter()
                    .any(|f| matches!(f, Finding::MissingContent { place: p, .. } if *p == place))
            );
        }
    }

    #[test]
    fn orphan_pack_of_a_dead_process_is_removed_at_once_others_wait() {
        let (tmp, r, t) = repo_with(&b"kept ".repeat(30));
        let dir = tmp.path().join("r");
        let packs = dir.join(PACK_DIR);
        let live = std::fs::read_dir(&packs)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let bytes = std::fs::read(&live).unwrap();
        let dead_name: PackName = format!(
            "{}.{}.00000000000000aa",
            crate::fsio::owner_tag().split('.').next().unwrap(),
            u32::MAX - 1
        )
        .parse()
        .unwrap();
        let other: PackName = "elsewhere.77.00000000000000bb".parse().unwrap();
        for name in [&dead_name, &other] {
            std::fs::write(dir.join(name.object_name()), &bytes).unwrap();
        }
        let refs = HashMap::from([(t, 1)]);
        let report = r.check(&refs, repair_all());
        let orphans = report
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::OrphanPack { .. }))
            .count();
        assert_eq!(orphans, 2, "{:?}", report.findings);
        assert!(
            !dir.join(dead_name.object_name()).exists(),
            "a crashed local run's pack goes"
        );
        assert!(
            dir.join(other.object_name()).exists(),
            "another host's may still be indexed"
        );
        assert!(live.exists());
    }
}
