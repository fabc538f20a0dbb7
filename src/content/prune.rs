//! Removing content no snapshot references.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::layout::content_name;
use super::{ContentToken, IndexEntry, Repository, Result, StoredForm};
use crate::clock::now_secs;

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

impl Repository {
    /// Removes content that no snapshot references: count zero in the
    /// index, absent from `rules.referenced` (every snapshot the repository
    /// knows of, read just now), and released and untouched for at least
    /// `rules.min_age` (a backup on another machine may be about to use it;
    /// no lock is trusted across machines). Zero counts of content some
    /// snapshot uses are raised instead. The index without the removed items
    /// is saved first, so a crash leaves orphan objects (found by check),
    /// never index entries pointing at nothing.
    pub fn prune(&self, rules: &PruneRules) -> Result<PruneReport> {
        let mut report = PruneReport::default();
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
            self.mark_dirty();
        }
        self.commit()?;
        for (token, entry) in doomed {
            for form in [StoredForm::Gzip, StoredForm::Plain] {
                self.store.delete(&content_name(&token, form))?;
            }
            report.items += 1;
            report.content_bytes += entry.size;
            report.stored_bytes += entry.stored_size;
        }
        Ok(report)
    }

    /// True when an object of `token` was modified within `age` of `now`
    /// (a backup elsewhere revived it).
    fn touched_within(&self, token: &ContentToken, now: SystemTime, age: Duration) -> bool {
        [StoredForm::Gzip, StoredForm::Plain].iter().any(|f| {
            self.store
                .stat(&content_name(token, *f))
                .ok()
                .flatten()
                .and_then(|m| now.duration_since(m.modified).ok())
                .is_some_and(|d| d < age)
        })
    }
}
