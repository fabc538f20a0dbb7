//! `forget`: remove the snapshots an archive's retention policy does not
//! keep (restic's `--keep-*` rules, decided by
//! [`crate::snapshot::forget::apply`]), and `policy`: the rules stored in
//! an archive's spec, which `forget` without rules and scheduled runs
//! apply.
//!
//! Snapshots are judged by their names (UTC seconds) and the UTC offset
//! their headers recorded; a snapshot whose header cannot be read is left
//! alone and reported, never counted as kept (it would stand in for a good
//! one) nor removed (its references are unknown). Removal is `del`'s,
//! files first and counts after a barrier, with one index save per archive.

use std::collections::BTreeMap;

use super::archive::refresh_spec_copy;
use super::housekeeping::{self, PruneOptions, PruneOutcome};
use super::source::{Archive, archive};
use super::{Context, OpError, Result};
use crate::config::{ConfigError, Name};
use crate::snapshot::forget::stored::is_policy_key;
use crate::snapshot::forget::{
    self, KeepReason, Policy, PolicyError, SnapshotTime, StoredPolicyError, Zone,
};
use crate::snapshot::format::{self, SnapshotName};
use crate::snapshot::{self, DeleteReport};

/// How `forget` runs.
#[derive(Clone, Debug, Default)]
pub struct ForgetOptions {
    /// The rules; `None`: the archive's stored policy.
    pub policy: Option<Policy>,
    /// Bucket in UTC instead of each snapshot's recorded local time.
    pub utc: bool,
    /// Decide and report, remove nothing (no lock is taken).
    pub dry_run: bool,
    /// Without rules: pass over an archive that stores no policy (a
    /// scheduled run over several archives) instead of failing.
    pub skip_without_policy: bool,
}

/// The verdict on one snapshot.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub name: SnapshotName,
    /// Seconds east of UTC the snapshot is bucketed by.
    pub offset: i32,
    /// The offset came from the snapshot's header (else: the current
    /// zone's, for snapshots of older versions).
    pub offset_recorded: bool,
    /// Why it is kept; empty: it goes.
    pub reasons: Vec<KeepReason>,
    /// It was removed now (never in a dry run).
    pub removed: bool,
}

impl Verdict {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// What `forget` decided (and did) for one archive.
pub struct ForgetReport {
    pub archive: Name,
    pub repo: Name,
    pub policy: Policy,
    /// The policy is the one stored in the archive's spec.
    pub stored: bool,
    pub utc: bool,
    pub dry_run: bool,
    /// Every readable snapshot, newest first.
    pub verdicts: Vec<Verdict>,
    /// Snapshots whose header cannot be read: not judged, left in place.
    pub unreadable: Vec<(SnapshotName, String)>,
    /// Snapshots to remove whose tree could not be read when they were to
    /// go: left in place (`check --repair` sets such a snapshot aside).
    pub not_removed: Vec<(SnapshotName, String)>,
    pub released: usize,
}

impl ForgetReport {
    pub fn removed(&self) -> usize {
        self.verdicts.iter().filter(|v| v.removed).count()
    }

    pub fn to_remove(&self) -> usize {
        self.verdicts.iter().filter(|v| !v.keep()).count()
    }
}

/// The retention policy stored in archive `name`'s spec, if any.
pub fn stored_policy(ctx: &Context, name: &Name) -> Result<Option<Policy>> {
    let fields = ctx.config.archive_fields(name)?;
    Policy::from_fields(&fields).map_err(|e| stored_error(ctx, name, e))
}

fn stored_error(ctx: &Context, name: &Name, e: StoredPolicyError) -> OpError {
    OpError::Config(ConfigError::Corrupt {
        path: ctx.config.archive_spec_path(name),
        reason: e.to_string(),
    })
}

/// Applies a retention policy to one archive. `Ok(None)`: no rules were
/// given, the archive stores none, and `skip_without_policy` was set.
/// Refuses an empty policy and one that would remove every snapshot;
/// `each` is called as each snapshot is removed.
pub fn forget(
    ctx: &Context,
    archive_name: &str,
    opts: &ForgetOptions,
    command: &str,
    each: &mut dyn FnMut(&DeleteReport),
) -> Result<Option<ForgetReport>> {
    let a = archive(ctx, archive_name)?;
    let (policy, stored) = match &opts.policy {
        Some(p) => (p.clone(), false),
        None => match stored_policy(ctx, &a.spec.name)? {
            Some(p) => (p, true),
            None if opts.skip_without_policy => return Ok(None),
            None => return Err(OpError::NoPolicy(a.spec.name.clone())),
        },
    };
    if policy.is_empty() {
        return Err(PolicyError::Empty.into());
    }
    // Locked before listing, so what is decided on is what is removed.
    let repo = match opts.dry_run {
        true => None,
        false => Some(a.lock_repo(ctx, command)?),
    };
    let zone = if opts.utc { Zone::Utc } else { Zone::system() };
    let (times, unreadable) = snapshot_times(&a, &zone)?;
    let decisions = forget::apply(&times, &policy, &zone, crate::clock::now_secs())?;
    forget::ensure_keeps_some(&decisions)?;
    let mut verdicts: Vec<Verdict> = decisions
        .iter()
        .map(|d| Verdict {
            name: d.snapshot.id.0,
            offset: d.snapshot.offset,
            offset_recorded: d.snapshot.id.1,
            reasons: d.reasons.clone(),
            removed: false,
        })
        .collect();
    let mut report = ForgetReport {
        archive: a.spec.name.clone(),
        repo: a.spec.repo.clone(),
        policy,
        stored,
        utc: opts.utc,
        dry_run: opts.dry_run,
        verdicts: Vec::new(),
        unreadable,
        not_removed: Vec::new(),
        released: 0,
    };
    if let Some(repo) = repo {
        // Oldest first, as `del` goes.
        let doomed: Vec<SnapshotName> = verdicts
            .iter()
            .rev()
            .filter(|v| !v.keep())
            .map(|v| v.name)
            .collect();
        let done = snapshot::delete_many(a.snapshots.as_ref(), &repo, &doomed, each)?;
        for d in &done.deleted {
            report.released += d.released;
            if let Some(v) = verdicts.iter_mut().find(|v| v.name == d.name) {
                v.removed = true;
            }
        }
        report.not_removed = done
            .unreadable
            .into_iter()
            .map(|(n, e)| (n, e.to_string()))
            .collect();
    }
    report.verdicts = verdicts;
    Ok(Some(report))
}

/// The archive's snapshots as retention sees them (id: name and whether
/// the offset was recorded), and those whose header cannot be read.
#[allow(clippy::type_complexity)]
fn snapshot_times(
    a: &Archive,
    zone: &Zone,
) -> Result<(
    Vec<SnapshotTime<(SnapshotName, bool)>>,
    Vec<(SnapshotName, String)>,
)> {
    let store = a.snapshots.as_ref();
    let mut times = Vec::new();
    let mut unreadable = Vec::new();
    for name in a.list()? {
        match format::read_header(store, &name) {
            Ok(h) => times.push(SnapshotTime {
                id: (name, h.utc_offset.is_some()),
                unix: name.secs,
                offset: h.utc_offset.unwrap_or_else(|| zone.offset_at(name.secs)),
            }),
            Err(e) => unreadable.push((name, e.to_string())),
        }
    }
    Ok((times, unreadable))
}

/// What `forget` over several archives did.
pub struct ForgetRun {
    /// Per archive, in the order given: its report (`None`: passed over,
    /// it stores no policy) or why it failed.
    pub archives: Vec<(String, Result<Option<ForgetReport>>)>,
    /// With `prune`: each repository of an archive forgotten without
    /// error, pruned once, in order.
    pub prunes: Vec<(Name, Result<PruneOutcome>)>,
}

/// Runs [`forget`] on each archive in turn, then with `prune` (and not a
/// dry run) prunes each repository an archive was forgotten in, as
/// `prune -R` does, once. `each` is told of each snapshot removed.
pub fn forget_archives(
    ctx: &Context,
    archives: &[String],
    opts: &ForgetOptions,
    prune: bool,
    command: &str,
    each: &mut dyn FnMut(&str, &DeleteReport),
) -> ForgetRun {
    let mut run = ForgetRun {
        archives: Vec::new(),
        prunes: Vec::new(),
    };
    let mut repos: Vec<Name> = Vec::new();
    for name in archives {
        let result = forget(ctx, name, opts, command, &mut |d| each(name, d));
        if let Ok(Some(r)) = &result
            && !repos.contains(&r.repo)
        {
            repos.push(r.repo.clone());
        }
        run.archives.push((name.clone(), result));
    }
    if prune && !opts.dry_run {
        for repo in repos {
            let outcome = housekeeping::prune(ctx, repo.as_str(), PruneOptions::default(), command);
            run.prunes.push((repo, outcome));
        }
    }
    run
}

/// What `policy` did to one archive.
pub struct PolicyChange {
    /// The policy before.
    pub before: Option<Policy>,
    /// The spec changed (false: the same rules were stored already).
    pub changed: bool,
    /// Why the spec copy beside the snapshots could not be brought up to
    /// date (the next `bu` tries again).
    pub copy_error: Option<String>,
}

/// Stores `policy` in archive `name`'s spec, replacing its rules (`None`
/// removes them), and brings the spec copy beside the snapshots up to
/// date. Refused for an archive this machine only reads, and for a policy
/// that keeps nothing.
pub fn set_policy(ctx: &Context, name: &str, policy: Option<&Policy>) -> Result<PolicyChange> {
    let a = archive(ctx, name)?;
    a.check_writable()?;
    if policy.is_some_and(Policy::is_empty) {
        return Err(PolicyError::Empty.into());
    }
    let name = &a.spec.name;
    let fields = ctx.config.archive_fields(name)?;
    // An unreadable stored policy is being replaced: no reason to refuse.
    let before = Policy::from_fields(&fields).ok().flatten();
    let mut new: BTreeMap<String, String> = fields
        .iter()
        .filter(|(k, _)| !is_policy_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    new.extend(policy.map(Policy::to_fields).unwrap_or_default());
    if new == fields {
        return Ok(PolicyChange {
            before,
            changed: false,
            copy_error: None,
        });
    }
    ctx.config
        .replace_archive_fields(name, &new, &format!("epygibus archive `{name}`"))?;
    let copy_error = refresh_spec_copy(ctx, &a).err().map(|e| e.to_string());
    Ok(PolicyChange {
        before,
        changed: true,
        copy_error,
    })
}
