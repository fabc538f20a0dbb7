//! Retention policies: which snapshots of an archive `forget` keeps.
//!
//! The rules are restic's `forget --keep-*` rules, because those are the
//! ones people already know and script, and the choice is checked against
//! the real restic in a test. It is a pure function over snapshot times,
//! with no I/O, so that every face (CLI, GUI, scheduled runs) decides the
//! same way and a table test can pin it down:
//!
//! - Snapshots are taken newest first (ties keep the caller's order).
//! - `--keep-last N` keeps the N newest snapshots.
//! - `--keep-{hourly,daily,weekly,monthly,yearly} N` keeps the newest
//!   snapshot of each of the N most recent hours, days, ISO 8601 weeks
//!   (Monday to Sunday, numbered so that 30 December 2024 is in week 1 of
//!   2025), months or years that hold a snapshot; empty buckets do not
//!   count. `unlimited` keeps one per bucket with no limit.
//! - A counted rule that still has count left when it reaches the oldest
//!   snapshot keeps that one too, even when its bucket already has a kept
//!   snapshot (restic since 0.16): a young archive keeps its full history
//!   rather than losing its first snapshot to a rule meant to reach further
//!   back. Such reasons read "oldest daily snapshot".
//! - `--keep-within D` keeps every snapshot strictly newer than the newest
//!   snapshot minus D (calendar arithmetic: see [`zone`]);
//!   `--keep-within-<unit> D` keeps the newest snapshot of each bucket among
//!   those, again with the oldest snapshot (if within D) kept too.
//! - "The newest snapshot" for `--keep-within*` is the newest one taken
//!   before `now`: a snapshot dated in the future (a wrong clock) must not
//!   push every real snapshot out of the window. If all lie in the future,
//!   everything is within.
//! - The rules are OR'ed: a snapshot is kept if any rule keeps it, and every
//!   rule that keeps it is given as a reason.
//!
//! Buckets are read in local time from each snapshot's recorded UTC offset
//! (see [`zone`]), or in UTC with [`Zone::Utc`].

pub mod duration;
pub mod stored;
pub mod zone;

#[cfg(test)]
mod restic_tests;
#[cfg(test)]
mod table_tests;

use std::fmt;

pub use duration::{Count, Duration, ParseCountError, ParseDurationError};
pub use stored::StoredPolicyError;
pub use zone::{BackupTime, ParseTimeError, Zone, local_offset, parse_backup_time};

/// A calendar unit of the bucketed rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Hour,
    Day,
    /// An ISO 8601 week: Monday to Sunday, belonging to the year that holds
    /// its Thursday.
    Week,
    Month,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    /// `hourly`, `daily`, …: the word in option names and reasons.
    pub fn adjective(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }
}

/// Which snapshots to keep; every other snapshot is removed. A field left
/// `None` (or given as 0, or a zero duration) is a rule that keeps nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    pub within: Option<Duration>,
    pub within_hourly: Option<Duration>,
    pub within_daily: Option<Duration>,
    pub within_weekly: Option<Duration>,
    pub within_monthly: Option<Duration>,
    pub within_yearly: Option<Duration>,
}

impl Policy {
    /// The counted rule of `unit`.
    pub fn count(&self, unit: Unit) -> Option<Count> {
        match unit {
            Unit::Hour => self.hourly,
            Unit::Day => self.daily,
            Unit::Week => self.weekly,
            Unit::Month => self.monthly,
            Unit::Year => self.yearly,
        }
    }

    /// The `--keep-within-<unit>` rule of `unit`.
    pub fn within_unit(&self, unit: Unit) -> Option<Duration> {
        match unit {
            Unit::Hour => self.within_hourly,
            Unit::Day => self.within_daily,
            Unit::Week => self.within_weekly,
            Unit::Month => self.within_monthly,
            Unit::Year => self.within_yearly,
        }
    }

    /// True when no rule can keep anything, so that applying the policy
    /// would remove every snapshot. Such a policy is refused (restic
    /// refuses it too): it is far more likely a forgotten option than a
    /// wish to delete everything.
    pub fn is_empty(&self) -> bool {
        let counts = [self.last]
            .into_iter()
            .chain(Unit::ALL.map(|u| self.count(u)));
        let durations = [self.within]
            .into_iter()
            .chain(Unit::ALL.map(|u| self.within_unit(u)));
        !counts.flatten().any(Count::is_active) && durations.flatten().all(|d| d.is_zero())
    }
}

impl fmt::Display for Policy {
    /// The policy as the `forget` options that give it, e.g.
    /// `--keep-daily 7 --keep-within 1y`; empty for an empty policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut count = |name: &str, c: Option<Count>| {
            if let Some(c) = c.filter(|c| c.is_active()) {
                parts.push(format!("--keep-{name} {c}"));
            }
        };
        count("last", self.last);
        for u in Unit::ALL {
            count(u.adjective(), self.count(u));
        }
        let mut within = |name: String, d: Option<Duration>| {
            if let Some(d) = d.filter(|d| !d.is_zero()) {
                parts.push(format!("--keep-{name} {d}"));
            }
        };
        within("within".to_owned(), self.within);
        for u in Unit::ALL {
            within(format!("within-{}", u.adjective()), self.within_unit(u));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One snapshot as retention sees it: an identifier of the caller's choice
/// (a name, an index), its time, and the UTC offset in force when it was
/// taken (for snapshots that recorded none, [`Zone::offset_at`] of the
/// current zone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTime<T> {
    pub id: T,
    /// Seconds since the Unix epoch (UTC).
    pub unix: i64,
    /// Seconds east of UTC.
    pub offset: i32,
}

/// Why a snapshot is kept. `Display` gives restic's wording (e.g. "daily
/// snapshot", "oldest monthly snapshot", "within 7d", "daily within 1mo"),
/// with durations in this crate's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeepReason {
    /// One of the `--keep-last` newest.
    Last,
    /// The newest of its bucket for `--keep-<unit>`; `oldest` when kept only
    /// as the oldest snapshot while the rule had count left.
    Bucket { unit: Unit, oldest: bool },
    /// Newer than the newest snapshot minus the `--keep-within` duration.
    Within(Duration),
    /// The newest of its bucket among the snapshots within
    /// `--keep-within-<unit>`; `oldest` as for `Bucket`.
    WithinBucket {
        unit: Unit,
        within: Duration,
        oldest: bool,
    },
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let oldest = |o: bool| if o { "oldest " } else { "" };
        match self {
            KeepReason::Last => f.write_str("last snapshot"),
            KeepReason::Bucket { unit, oldest: o } => {
                write!(f, "{}{} snapshot", oldest(*o), unit.adjective())
            }
            KeepReason::Within(d) => write!(f, "within {d}"),
            KeepReason::WithinBucket {
                unit,
                within,
                oldest: o,
            } => write!(f, "{}{} within {within}", oldest(*o), unit.adjective()),
        }
    }
}

/// The verdict on one snapshot: kept when it has at least one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a, T> {
    pub snapshot: &'a SnapshotTime<T>,
    /// Every rule that keeps the snapshot, in restic's order: `within`,
    /// then last, hourly … yearly, then within-hourly … within-yearly.
    pub reasons: Vec<KeepReason>,
}

impl<T> Decision<'_, T> {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Why a policy cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "the retention policy is empty: give at least one --keep-* rule with a count or duration above zero"
    )]
    Empty,
    #[error(
        "snapshot time {unix} (UTC offset {offset} s) is outside the range retention can compute with"
    )]
    BadTime { unix: i64, offset: i32 },
    #[error(
        "refusing to remove all {count} snapshot(s): the policy keeps none of them; keep at least one, e.g. with --keep-last 1"
    )]
    RemovesAll { count: usize },
}

/// Applies `policy` to `snapshots` and returns one decision per snapshot,
/// newest first. `now` (Unix seconds) only decides which snapshots lie in
/// the future, which `--keep-within*` does not measure from. An empty
/// policy is refused with [`PolicyError::Empty`]; check the result with
/// [`ensure_keeps_some`] before removing anything.
pub fn apply<'a, T>(
    snapshots: &'a [SnapshotTime<T>],
    policy: &Policy,
    zone: &Zone,
    now: i64,
) -> Result<Vec<Decision<'a, T>>, PolicyError> {
    if policy.is_empty() {
        return Err(PolicyError::Empty);
    }
    let offset = |s: &SnapshotTime<T>| match zone {
        Zone::Utc => 0,
        Zone::Local(_) => s.offset,
    };
    let mut sorted: Vec<(&SnapshotTime<T>, Keys)> = Vec::with_capacity(snapshots.len());
    for s in snapshots {
        let keys = zone::civil(s.unix, offset(s))
            .map(Keys::of)
            .ok_or(PolicyError::BadTime {
                unix: s.unix,
                offset: s.offset,
            })?;
        sorted.push((s, keys));
    }
    // Stable: snapshots of the same second keep the caller's order.
    sorted.sort_by_key(|(s, _)| std::cmp::Reverse(s.unix));

    let newest = sorted.iter().map(|(s, _)| *s).find(|s| s.unix < now);
    let cutoff = |d: &Duration| match newest {
        Some(s) => zone::cutoff(s.unix, offset(s), d, zone),
        None => i64::MIN,
    };
    let within = policy
        .within
        .filter(|d| !d.is_zero())
        .map(|d| (d, cutoff(&d)));

    struct Counted {
        unit: Option<Unit>, // None: --keep-last
        left: Option<u32>,  // None: unlimited
        last_key: Option<i64>,
    }
    let mut counted: Vec<Counted> = [(None, policy.last)]
        .into_iter()
        .chain(Unit::ALL.map(|u| (Some(u), policy.count(u))))
        .filter_map(|(unit, c)| {
            let left = match c? {
                Count::N(0) => return None,
                Count::N(n) => Some(n),
                Count::Unlimited => None,
            };
            Some(Counted {
                unit,
                left,
                last_key: None,
            })
        })
        .collect();

    struct Windowed {
        unit: Unit,
        within: Duration,
        cutoff: i64,
        last_key: Option<i64>,
    }
    let mut windowed: Vec<Windowed> = Unit::ALL
        .into_iter()
        .filter_map(|unit| {
            let d = policy.within_unit(unit).filter(|d| !d.is_zero())?;
            Some(Windowed {
                unit,
                within: d,
                cutoff: cutoff(&d),
                last_key: None,
            })
        })
        .collect();

    let count = sorted.len();
    let mut decisions = Vec::with_capacity(count);
    for (nr, (s, keys)) in sorted.into_iter().enumerate() {
        let is_oldest = nr + 1 == count;
        let mut reasons = Vec::new();
        if let Some((d, cut)) = within
            && s.unix > cut
        {
            reasons.push(KeepReason::Within(d));
        }
        for rule in &mut counted {
            if rule.left == Some(0) {
                continue;
            }
            // --keep-last: every snapshot is a bucket of its own.
            let key = rule.unit.map_or(nr as i64, |u| keys.get(u));
            let same = rule.last_key == Some(key);
            if !same || is_oldest {
                reasons.push(match rule.unit {
                    None => KeepReason::Last,
                    Some(unit) => KeepReason::Bucket { unit, oldest: same },
                });
                rule.last_key = Some(key);
                if let Some(left) = &mut rule.left {
                    *left -= 1;
                }
            }
        }
        for rule in &mut windowed {
            if s.unix <= rule.cutoff {
                continue;
            }
            let key = keys.get(rule.unit);
            let same = rule.last_key == Some(key);
            if !same || is_oldest {
                reasons.push(KeepReason::WithinBucket {
                    unit: rule.unit,
                    within: rule.within,
                    oldest: same,
                });
                rule.last_key = Some(key);
            }
        }
        decisions.push(Decision {
            snapshot: s,
            reasons,
        });
    }
    Ok(decisions)
}

/// True when `decisions` remove every one of at least one snapshot.
pub fn removes_all<T>(decisions: &[Decision<'_, T>]) -> bool {
    !decisions.is_empty() && !decisions.iter().any(Decision::keep)
}

/// Refuses ([`PolicyError::RemovesAll`]) decisions that would remove every
/// snapshot of an archive: an archive with no snapshot left is no backup.
/// restic applies the same guard per snapshot group.
pub fn ensure_keeps_some<T>(decisions: &[Decision<'_, T>]) -> Result<(), PolicyError> {
    if removes_all(decisions) {
        return Err(PolicyError::RemovesAll {
            count: decisions.len(),
        });
    }
    Ok(())
}

/// The bucket keys of one snapshot, each an integer that differs between
/// buckets (as restic's `YYYYMMDDHH`-style keys).
struct Keys {
    hour: i64,
    day: i64,
    week: i64,
    month: i64,
    year: i64,
}

impl Keys {
    fn of(c: jiff::civil::DateTime) -> Keys {
        let month = i64::from(c.year()) * 100 + i64::from(c.month());
        let day = month * 100 + i64::from(c.day());
        let iso = c.date().iso_week_date();
        Keys {
            hour: day * 100 + i64::from(c.hour()),
            day,
            week: i64::from(iso.year()) * 100 + i64::from(iso.week()),
            month,
            year: i64::from(c.year()),
        }
    }

    fn get(&self, unit: Unit) -> i64 {
        match unit {
            Unit::Hour => self.hour,
            Unit::Day => self.day,
            Unit::Week => self.week,
            Unit::Month => self.month,
            Unit::Year => self.year,
        }
    }
}
