//! Checking a repository against the references its snapshots make, and
//! repairing what can be repaired without risk: counts that are too low are
//! raised; counts that are too high are lowered only when the caller knows
//! it has seen every snapshot; stale temp files and old orphans are removed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::codec::ContentReader;
use super::layout::{CONTENT_DIR, content_name, parse_content_name};
use super::refcount::StoredForm;
use super::{ContentToken, Repository};
use crate::store::{ObjectMeta, Store};

/// Temp files and orphan content younger than this may belong to a run on
/// another machine and are left alone.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// One thing wrong, with the path it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Referenced by snapshots but absent (no index entry or no file).
    MissingContent { token: ContentToken, place: String },
    /// The file does not decompress to its token's content.
    DamagedContent { token: ContentToken, place: String },
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

    /// Every referenced token must have a file (and, with read_data, the
    /// right bytes); files the index lacks are orphans.
    fn check_files(
        &self,
        refs: &HashMap<ContentToken, u64>,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) {
        // Token → indexed form; a token missing here is not indexed.
        let known: HashMap<ContentToken, StoredForm> = self
            .index()
            .entries
            .iter()
            .map(|(t, e)| (*t, e.form))
            .collect();
        let on_disk = self.content_objects();
        for token in refs.keys() {
            let form = known.get(token).copied().unwrap_or(self.prefer);
            let place = self.store.place(&content_name(token, form));
            if !on_disk.contains_key(token) {
                report.findings.push(Finding::MissingContent {
                    token: *token,
                    place,
                });
                continue;
            }
            report.items_checked += 1;
            let damaged = (opts.read_data || !known.contains_key(token))
                && !self.content_matches(token, form);
            if damaged {
                report.findings.push(Finding::DamagedContent {
                    token: *token,
                    place,
                });
            } else if !known.contains_key(token) && opts.repair {
                // Referenced, present, intact, but not indexed (an index
                // update lost between machines): index it again.
                if let Some(msg) = self.reindex(token, refs[token]) {
                    report.repaired.push(msg);
                }
            }
        }
        let now = SystemTime::now();
        for (token, objects) in &on_disk {
            if known.contains_key(token) || refs.contains_key(token) {
                continue;
            }
            for meta in objects {
                let place = self.store.place(&meta.name);
                report.findings.push(Finding::Orphan {
                    place: place.clone(),
                });
                // Only when every snapshot was read: an orphan may be the
                // content of a snapshot we could not see.
                let stale =
                    opts.repair && opts.complete && older_than(meta.modified, now, STALE_AFTER);
                if stale && self.store.delete(&meta.name).is_ok() {
                    report.repaired.push(format!("removed orphan {place}"));
                }
            }
        }
    }

    /// Adds an index entry for a present content object; returns what was
    /// done.
    fn reindex(&self, token: &ContentToken, refs: u64) -> Option<String> {
        let form = self.find_content(token, self.prefer)?;
        let name = content_name(token, form);
        let stored_size = self.store.stat(&name).ok()??.size;
        let mut reader = ContentReader::new(self.store.open(&name).ok()?, form);
        let size = std::io::copy(&mut reader, &mut std::io::sink()).ok()?;
        self.index().entries.insert(
            *token,
            super::IndexEntry {
                refs,
                size,
                stored_size,
                form,
                zero_since: 0,
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
        Repository::create_dir(&dir, true).unwrap();
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

    #[test]
    fn lost_index_entry_is_readable_reported_and_reindexed() {
        let (_tmp, r, t) = repo_with(&b"lost entry ".repeat(40));
        // Another machine's index generation replaced ours.
        r.index().entries.clear();
        assert!(r.open_contents_read_only(&t).is_ok(), "found by its name");
        let refs = HashMap::from([(t, 2)]);
        let opts = CheckOptions {
            repair: true,
            complete: true,
            ..CheckOptions::default()
        };
        let report = r.check(&refs, opts);
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
        assert!(r.open_contents_read_only(&t).is_ok(), "never removed");
    }

    #[test]
    fn damaged_and_missing_content_are_found() {
        let (tmp, r, t) = repo_with(&b"damage me ".repeat(40));
        let refs = HashMap::from([(t, 1)]);
        let path = tmp
            .path()
            .join("r")
            .join(content_name(&t, StoredForm::Gzip));
        std::fs::write(&path, b"not gzip").unwrap();
        let opts = CheckOptions {
            read_data: true,
            ..CheckOptions::default()
        };
        assert!(
            r.check(&refs, opts)
                .findings
                .contains(&Finding::DamagedContent {
                    token: t,
                    place: path.display().to_string()
                })
        );
        std::fs::remove_file(&path).unwrap();
        assert!(
            r.check(&refs, opts)
                .findings
                .iter()
                .any(|f| matches!(f, Finding::MissingContent { .. }))
        );
    }
}
