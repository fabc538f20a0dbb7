//! What a dashboard shows at a glance, decided once: every archive with
//! its newest snapshot and schedule, every repository with its statistics
//! and lock, and the warnings worth a person's attention (a lock held, a
//! damaged snapshot, a backup older than its schedule promises).
//! Only reads: no lock is taken, nothing is written.

use super::schedule::ScheduleInfo;
use super::source::archive;
use super::{Context, store_at};
use crate::clock::now_secs;
use crate::config::Attachment;
use crate::content::{Access, LockHolder, RepoLock, RepoStats, Repository};
use crate::snapshot::format::{self, Header, SnapshotName};

/// One archive on the dashboard.
pub struct ArchiveSummary {
    pub name: String,
    pub repo: String,
    pub snapshot_dir: String,
    pub read_only: bool,
    pub snapshots: usize,
    /// The newest snapshot and its header (Err: why it cannot be read).
    pub last: Option<(SnapshotName, Result<Header, String>)>,
    /// Schedules that back this archive up.
    pub schedules: Vec<ScheduleInfo>,
    /// Things to look at, one sentence each.
    pub warnings: Vec<String>,
    /// Why the archive could not be read at all.
    pub error: Option<String>,
}

/// One repository on the dashboard.
pub struct RepoSummary {
    pub name: String,
    pub location: String,
    pub stats: Result<RepoStats, String>,
    /// Who holds its lock now, if anyone.
    pub lock: Option<LockHolder>,
}

/// How long after its last backup an archive on a schedule is overdue:
/// the interval plus slack for a machine that was asleep at the time.
pub fn overdue_after(when: &str) -> Option<i64> {
    match when {
        "hourly" => Some(2 * 3600),
        "daily" => Some(26 * 3600),
        "weekly" => Some(8 * 86400),
        _ => None,
    }
}

/// Every configured archive, in name order.
pub fn archives(ctx: &Context) -> Vec<ArchiveSummary> {
    let schedules = super::schedule::list().unwrap_or_default();
    let names = ctx.config.archive_names().unwrap_or_default();
    let mut locks = std::collections::HashMap::new();
    names
        .iter()
        .map(|n| {
            let mut s = summarize(ctx, n.as_str(), &schedules);
            let held = locks
                .entry(s.repo.clone())
                .or_insert_with(|| lock_of(ctx, &s.repo));
            if let Some(h) = held {
                s.warnings.insert(
                    0,
                    format!(
                        "repository `{}` is locked by {}: backups wait until it is free (`epygibus unlock -R {}` if that run is gone)",
                        s.repo,
                        h.describe(),
                        s.repo
                    ),
                );
            }
            s
        })
        .collect()
}

/// Who holds repository `name`'s lock now, if it can be read.
fn lock_of(ctx: &Context, name: &str) -> Option<LockHolder> {
    let spec = ctx.config.repo(&name.parse().ok()?).ok()?;
    RepoLock::holder(store_at(&spec.location).as_ref(), crate::content::LOCK_FILE)
}

fn summarize(ctx: &Context, name: &str, schedules: &[ScheduleInfo]) -> ArchiveSummary {
    let mut s = ArchiveSummary {
        name: name.to_owned(),
        repo: String::new(),
        snapshot_dir: String::new(),
        read_only: false,
        snapshots: 0,
        last: None,
        schedules: schedules
            .iter()
            .filter(|i| i.archives.iter().any(|a| a == name))
            .cloned()
            .collect(),
        warnings: Vec::new(),
        error: None,
    };
    let a = match archive(ctx, name) {
        Ok(a) => a,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    s.repo = a.spec.repo.to_string();
    s.snapshot_dir = a.spec.snapshot_dir.to_string();
    s.read_only = matches!(a.attachment, Attachment::ReadOnly { .. });
    let names = match a.list() {
        Ok(n) => n,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    s.snapshots = names.len();
    let store = a.snapshots.as_ref();
    if let Ok(aside) = crate::snapshot::damaged::list_set_aside(store)
        && !aside.is_empty()
    {
        s.warnings.push(format!(
            "{} damaged snapshot(s) set aside: {}",
            aside.len(),
            aside.join(", ")
        ));
    }
    if let Some(last) = names.last() {
        let header = format::read_header(store, last).map_err(|e| e.to_string());
        if let Err(e) = &header {
            s.warnings
                .push(format!("the newest snapshot cannot be read: {e}"));
        }
        s.last = Some((*last, header));
    } else {
        s.warnings.push("no snapshot yet".into());
    }
    let age = s.last.as_ref().map(|(n, _)| now_secs() - n.secs);
    for sch in &s.schedules {
        if let (Some(limit), Some(age)) = (overdue_after(&sch.when), age)
            && age > limit
        {
            s.warnings.push(format!(
                "the last backup is {} hours old, but schedule `{}` runs {}",
                age / 3600,
                sch.name,
                sch.when
            ));
        }
    }
    s
}

/// Every configured repository, in name order.
pub fn repos(ctx: &Context) -> Vec<RepoSummary> {
    let names = ctx.config.repo_names().unwrap_or_default();
    names
        .iter()
        .map(|name| {
            let spec = ctx.config.repo(name);
            let location = spec
                .as_ref()
                .map(|s| s.location.to_string())
                .unwrap_or_default();
            let (stats, lock) = match spec {
                Ok(spec) => {
                    let store = store_at(&spec.location);
                    let lock = lock_of(ctx, name.as_str());
                    let stats = Repository::open_with(store, Access::ReadOnly, &ctx.keys)
                        .map(|r| r.stats())
                        .map_err(|e| e.to_string());
                    (stats, lock)
                }
                Err(e) => (Err(e.to_string()), None),
            };
            RepoSummary {
                name: name.to_string(),
                location,
                stats,
                lock,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_slack() {
        assert_eq!(overdue_after("daily"), Some(26 * 3600));
        assert_eq!(overdue_after("hourly"), Some(7200));
        assert_eq!(overdue_after("Mon..Fri 22:00"), None);
    }
}
