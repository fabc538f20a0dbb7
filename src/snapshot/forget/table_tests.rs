//! Table test of the retention rules on two hand-made sets of snapshot
//! times. Every expected keep set was worked out by hand from the bucket
//! lists written beside each set; `restic_tests` then checks the engine
//! against the real restic on the same sets and policies.

use jiff::tz::TimeZone;

use super::*;

/// A snapshot given as local wall-clock time at a UTC offset in hours.
fn at(id: usize, local: &str, offset_hours: i32) -> SnapshotTime<usize> {
    let unix = parse_backup_time(local, &Zone::Utc).unwrap().unix - 3600 * i64::from(offset_hours);
    SnapshotTime {
        id,
        unix,
        offset: 3600 * offset_hours,
    }
}

/// Set A, in UTC. Newest of each bucket, scanning newest first:
/// - hour:  22 21 19 17 16 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0 (20)
/// - day:   22 21 19 14 13 12 11 10 9 8 7 6 5 4 3 2 1 (17; 0 shares 1's day)
/// - week:  22 14 12 11 10 8 7 6 5 4 2 1 (12; 9 is in 10's week 2025-W01,
///   3 in 4's 2020-W53, 0 in 1's)
/// - month: 22 12 11 9 7 5 3 2 1 (9)
/// - year:  22 9 7 3 1 (5)
pub(super) fn set_a() -> Vec<SnapshotTime<usize>> {
    [
        "2019-06-15 09:00:00",
        "2019-06-15 10:00:00",
        "2020-02-29 23:30:00", // leap day
        "2020-12-31 12:00:00", // Thu, 2020-W53
        "2021-01-02 09:00:00", // Sat, still 2020-W53
        "2021-01-04 08:00:00", // Mon, 2021-W01
        "2021-03-01 12:00:00",
        "2021-03-31 10:00:00", // newest of the prefix of 8
        "2024-12-29 20:00:00", // Sun, 2024-W52
        "2024-12-30 07:00:00", // Mon, 2025-W01 but year 2024
        "2025-01-01 00:00:00", // Wed, 2025-W01
        "2025-01-31 12:00:00",
        "2025-02-28 12:00:00",
        "2025-03-03 06:00:00", // Mon, W10
        "2025-03-09 23:59:59", // Sun, W10
        "2025-03-10 00:00:00", // Mon, W11
        "2025-03-10 00:59:59", // same hour
        "2025-03-10 01:00:00",
        "2025-03-10 13:15:00",
        "2025-03-10 13:45:00", // same hour
        "2025-03-11 08:00:00",
        "2025-03-11 08:30:00", // same hour
        "2025-03-12 12:00:00", // newest
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| at(i, t, 0))
    .collect()
}

/// Set B, taken in Berlin (CET +1, CEST +2; DST 2024 from 31 March 01:00
/// UTC to 27 October 01:00 UTC). Newest of each bucket, newest first:
/// - local hour: 18 17 16 15 11 10 9 8 7 6 5 4 3 2 1 0 (12-15 share the
///   repeated 02:00 hour); UTC hour: 18 17 16 15 13 11 10 9 … 0
/// - local day: 18 17 16 10 9 8 4 3 1 0; UTC day: 18 17 11 10 9 8 5 3 1
/// - local week: 18 16 10 8 3 1 0; UTC week: 18 17 10 8 3 1
/// - local month: 18 9 8 1 0; UTC month: 18 9 8 1
/// - local year: 18 0; UTC year: 18 1
pub(super) fn set_b() -> Vec<SnapshotTime<usize>> {
    [
        ("2023-12-31 23:30:00", 1), // 22:30Z
        ("2024-01-01 00:30:00", 1), // 23:30Z on 31 Dec: UTC year 2023
        ("2024-03-02 09:00:00", 1),
        ("2024-03-02 11:00:00", 1),
        ("2024-03-30 23:30:00", 1),
        ("2024-03-31 00:30:00", 1), // 30 March in UTC
        ("2024-03-31 01:30:00", 1), // last CET half hour
        ("2024-03-31 03:30:00", 2), // first CEST hour (02:xx does not exist)
        ("2024-03-31 12:00:00", 2),
        ("2024-09-30 12:00:00", 2),
        ("2024-10-01 10:30:00", 2), // 08:30Z
        ("2024-10-27 01:30:00", 2), // 26 October in UTC
        ("2024-10-27 02:15:00", 2), // 02:xx the first time (CEST)
        ("2024-10-27 02:45:00", 2),
        ("2024-10-27 02:15:00", 1), // 02:xx again (CET)
        ("2024-10-27 02:45:00", 1),
        ("2024-10-27 03:10:00", 1),
        ("2024-10-28 00:30:00", 1), // Monday, W44; Sunday 27th in UTC
        ("2024-10-31 10:00:00", 1), // newest, 09:00Z
    ]
    .iter()
    .enumerate()
    .map(|(i, (t, h))| at(i, t, *h))
    .collect()
}

/// Central European rules as a POSIX TZ string, so this test needs no tz
/// database (the EU rules are unchanged since 1996).
pub(super) fn berlin() -> TimeZone {
    TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
}

/// Reads a policy written as `forget` options, e.g.
/// `--keep-daily 7 --keep-within 1y`.
pub(super) fn policy(text: &str) -> Policy {
    let mut p = Policy::default();
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.chunks(2) {
        let [opt, value] = pair else {
            panic!("odd policy {text:?}")
        };
        let count = || Some(value.parse::<Count>().unwrap());
        let dur = || Some(value.parse::<Duration>().unwrap());
        match opt.strip_prefix("--keep-").unwrap() {
            "last" => p.last = count(),
            "hourly" => p.hourly = count(),
            "daily" => p.daily = count(),
            "weekly" => p.weekly = count(),
            "monthly" => p.monthly = count(),
            "yearly" => p.yearly = count(),
            "within" => p.within = dur(),
            "within-hourly" => p.within_hourly = dur(),
            "within-daily" => p.within_daily = dur(),
            "within-weekly" => p.within_weekly = dur(),
            "within-monthly" => p.within_monthly = dur(),
            "within-yearly" => p.within_yearly = dur(),
            other => panic!("unknown rule {other}"),
        }
    }
    p
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Set {
    A,
    /// The first n snapshots of set A (newest: 2021-03-31 10:00).
    APrefix(usize),
    B,
}

/// The zone a case runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Z {
    /// `Zone::Local(Berlin)`: restic run with TZ=Europe/Berlin.
    Berlin,
    /// `Zone::Local(UTC)`: restic run with TZ=UTC, which reads Berlin
    /// offsets as fixed offsets.
    LocalUtc,
    /// `Zone::Utc`: bucket in UTC, ignoring recorded offsets.
    Utc,
}

pub(super) struct Case {
    pub set: Set,
    pub zone: Z,
    pub policy: &'static str,
    pub keep: &'static [usize],
}

const fn case(set: Set, zone: Z, policy: &'static str, keep: &'static [usize]) -> Case {
    Case {
        set,
        zone,
        policy,
        keep,
    }
}

use Set::{A, APrefix, B};
use Z::{Berlin, LocalUtc, Utc};

const A_ALL: &[usize] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
];

#[rustfmt::skip]
pub(super) const CASES: &[Case] = &[
    case(A, Utc, "--keep-last 3", &[20, 21, 22]),
    case(A, Utc, "--keep-last 30", A_ALL),
    case(A, Utc, "--keep-last unlimited", A_ALL),
    case(A, Utc, "--keep-hourly 4", &[17, 19, 21, 22]),
    // Exactly the 20 hour buckets: count runs out on 0, a bucket of its own.
    case(A, Utc, "--keep-hourly 20", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 22]),
    case(A, Utc, "--keep-daily 3", &[19, 21, 22]),
    // 17 day buckets: count is spent before 0, which shares 1's day.
    case(A, Utc, "--keep-daily 17", &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19, 21, 22]),
    // One count left at the oldest: it is kept too.
    case(A, Utc, "--keep-daily 18", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 19, 21, 22]),
    // 30 Dec 2024 is in 2025-W01 with 1 Jan 2025; 29 Dec 2024 is 2024-W52.
    case(A, Utc, "--keep-weekly 6", &[8, 10, 11, 12, 14, 22]),
    case(A, Utc, "--keep-weekly unlimited", &[0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 14, 22]),
    case(A, Utc, "--keep-monthly 4", &[9, 11, 12, 22]),
    case(A, Utc, "--keep-monthly 9", &[1, 2, 3, 5, 7, 9, 11, 12, 22]),
    case(A, Utc, "--keep-monthly unlimited", &[0, 1, 2, 3, 5, 7, 9, 11, 12, 22]),
    case(A, Utc, "--keep-monthly 0 --keep-yearly 2", &[9, 22]),
    case(A, Utc, "--keep-yearly 3", &[7, 9, 22]),
    case(A, Utc, "--keep-yearly 5", &[1, 3, 7, 9, 22]),
    case(A, Utc, "--keep-yearly 6", &[0, 1, 3, 7, 9, 22]),
    case(A, Utc, "--keep-within 1d", &[22]),
    // Cutoff exactly 2025-03-10 00:00:00: 15 is not strictly newer.
    case(A, Utc, "--keep-within 2d12h", &[16, 17, 18, 19, 20, 21, 22]),
    case(A, Utc, "--keep-within 1w", &[14, 15, 16, 17, 18, 19, 20, 21, 22]),
    case(A, Utc, "--keep-within 1mo", &[12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]),
    case(A, Utc, "--keep-within 1y", &[8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]),
    case(A, Utc, "--keep-within-hourly 2d", &[19, 21, 22]),
    case(A, Utc, "--keep-within-daily 2d12h", &[19, 21, 22]),
    case(A, Utc, "--keep-within-weekly 1mo", &[12, 14, 22]),
    case(A, Utc, "--keep-within-monthly 1y", &[9, 11, 12, 22]),
    // Everything within: the oldest is kept although 1 holds its year.
    case(A, Utc, "--keep-within-yearly 10y", &[0, 1, 3, 7, 9, 22]),
    case(A, Utc, "--keep-last 2 --keep-daily 3 --keep-weekly 3 --keep-monthly 3 --keep-yearly 3", &[7, 9, 11, 12, 14, 19, 21, 22]),
    case(A, Utc, "--keep-hourly 2 --keep-within 1w --keep-within-monthly 2mo", &[11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22]),
    case(A, Utc, "--keep-last 1 --keep-within 1d", &[22]),
    // Newest 2021-03-31 10:00: 1mo back is "31 Feb" = 3 March, not 28 Feb.
    case(APrefix(8), Utc, "--keep-within 1mo", &[7]),
    // 1y1mo back is "31 Feb 2020" = 2 March 2020: 29 Feb 23:30 is out.
    case(APrefix(8), Utc, "--keep-within 1y1mo", &[3, 4, 5, 6, 7]),
    case(APrefix(8), Utc, "--keep-daily 10", &[0, 1, 2, 3, 4, 5, 6, 7]),
    // The repeated 02:00 hour of 27 Oct is one local hour bucket.
    case(B, Berlin, "--keep-hourly 5", &[11, 15, 16, 17, 18]),
    case(B, Utc, "--keep-hourly 5", &[13, 15, 16, 17, 18]),
    case(B, Berlin, "--keep-daily 4", &[10, 16, 17, 18]),
    case(B, Utc, "--keep-daily 4", &[10, 11, 17, 18]),
    case(B, Berlin, "--keep-daily unlimited", &[0, 1, 3, 4, 8, 9, 10, 16, 17, 18]),
    case(B, Utc, "--keep-daily unlimited", &[0, 1, 3, 5, 8, 9, 10, 11, 17, 18]),
    case(B, Berlin, "--keep-weekly 3", &[10, 16, 18]),
    case(B, Utc, "--keep-weekly 3", &[10, 17, 18]),
    case(B, Berlin, "--keep-monthly 5", &[0, 1, 8, 9, 18]),
    case(B, Utc, "--keep-monthly 5", &[0, 1, 8, 9, 18]),
    case(B, Berlin, "--keep-yearly 5", &[0, 18]),
    case(B, Utc, "--keep-yearly 5", &[0, 1, 18]),
    // From 10:00 CET on 31 Oct, 1mo back is 1 Oct 10:00 CEST = 08:00Z in
    // Berlin's rules, but 09:00Z at a fixed +01:00 or in UTC.
    case(B, Berlin, "--keep-within 1mo", &[10, 11, 12, 13, 14, 15, 16, 17, 18]),
    case(B, LocalUtc, "--keep-within 1mo", &[11, 12, 13, 14, 15, 16, 17, 18]),
    case(B, Utc, "--keep-within 1mo", &[11, 12, 13, 14, 15, 16, 17, 18]),
    // 31 March 10:00 CEST = 08:00Z: 03:30 CEST (01:30Z) is out.
    case(B, Berlin, "--keep-within 7mo", &[8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]),
    case(B, Berlin, "--keep-within 7mo3d", &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]),
    case(B, Berlin, "--keep-within-hourly 5d", &[11, 15, 16, 17, 18]),
    case(B, Berlin, "--keep-hourly 3 --keep-weekly 2 --keep-monthly 2", &[9, 16, 17, 18]),
];

fn snapshots(set: Set) -> Vec<SnapshotTime<usize>> {
    match set {
        A => set_a(),
        APrefix(n) => set_a().into_iter().take(n).collect(),
        B => set_b(),
    }
}

pub(super) fn zone(z: Z) -> Zone {
    match z {
        Berlin => Zone::Local(berlin()),
        LocalUtc => Zone::Local(TimeZone::UTC),
        Utc => Zone::Utc,
    }
}

const FAR_FUTURE: i64 = 4_000_000_000;

fn kept(snaps: &[SnapshotTime<usize>], policy: &Policy, zone: &Zone, now: i64) -> Vec<usize> {
    let mut ids: Vec<usize> = apply(snaps, policy, zone, now)
        .unwrap()
        .iter()
        .filter(|d| d.keep())
        .map(|d| d.snapshot.id)
        .collect();
    ids.sort();
    ids
}

/// The reasons of snapshot `id`, as restic words them.
fn reasons(set: Set, z: Z, text: &str, id: usize) -> Vec<String> {
    let snaps = snapshots(set);
    let decisions = apply(&snaps, &policy(text), &zone(z), FAR_FUTURE).unwrap();
    let d = decisions.iter().find(|d| d.snapshot.id == id).unwrap();
    d.reasons.iter().map(ToString::to_string).collect()
}

#[test]
fn forget_table() {
    let mut failures = Vec::new();
    for c in CASES {
        let got = kept(
            &snapshots(c.set),
            &policy(c.policy),
            &zone(c.zone),
            FAR_FUTURE,
        );
        if got != c.keep {
            failures.push(format!(
                "{:?} {:?} {}: kept {got:?}, expected {:?}",
                c.set, c.zone, c.policy, c.keep
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn forget_reasons_in_restics_words_and_order() {
    let combo = "--keep-last 2 --keep-daily 3 --keep-weekly 3 --keep-monthly 3 --keep-yearly 3";
    assert_eq!(
        reasons(A, Utc, combo, 22),
        [
            "last snapshot",
            "daily snapshot",
            "weekly snapshot",
            "monthly snapshot",
            "yearly snapshot"
        ]
    );
    assert_eq!(
        reasons(A, Utc, combo, 12),
        ["weekly snapshot", "monthly snapshot"]
    );
    assert!(reasons(A, Utc, combo, 20).is_empty());
    let mixed = "--keep-hourly 2 --keep-within 1w --keep-within-monthly 2mo";
    assert_eq!(
        reasons(A, Utc, mixed, 22),
        ["within 1w", "hourly snapshot", "monthly within 2mo"]
    );
    assert_eq!(
        reasons(A, Utc, "--keep-daily 18", 0),
        ["oldest daily snapshot"]
    );
    assert_eq!(reasons(A, Utc, "--keep-daily 18", 1), ["daily snapshot"]);
    assert_eq!(
        reasons(A, Utc, "--keep-within-yearly 10y", 0),
        ["oldest yearly within 10y"]
    );
    assert_eq!(
        reasons(B, Berlin, "--keep-monthly 5", 0),
        ["monthly snapshot"]
    );
    assert_eq!(
        reasons(B, Utc, "--keep-monthly 5", 0),
        ["oldest monthly snapshot"]
    );
}

#[test]
fn forget_within_measures_from_the_newest_snapshot_before_now() {
    let snaps = set_a();
    let now = snaps[21].unix + 3600; // 22 lies in the future
    let within = policy("--keep-within 1d");
    assert_eq!(kept(&snaps, &within, &Zone::Utc, now), [18, 19, 20, 21, 22]);
    // All in the future: nothing to measure from, everything is within.
    assert_eq!(kept(&snaps, &within, &Zone::Utc, 0), A_ALL);
}

#[test]
fn forget_decisions_come_newest_first_and_ties_keep_input_order() {
    let snaps = vec![
        at(0, "2024-01-01 12:00:00", 0),
        at(1, "2024-01-03 12:00:00", 0),
        at(2, "2024-01-02 12:00:00", 0),
        at(3, "2024-01-03 12:00:00", 0),
    ];
    let d = apply(&snaps, &policy("--keep-last 1"), &Zone::Utc, FAR_FUTURE).unwrap();
    let order: Vec<usize> = d.iter().map(|d| d.snapshot.id).collect();
    assert_eq!(order, [1, 3, 2, 0]);
    assert!(d[0].keep() && !d[1].keep());
    // One snapshot: every rule keeps it, never as "oldest".
    let one = &snaps[..1];
    let d = apply(one, &policy("--keep-daily 3 --keep-last 1"), &Zone::Utc, 0).unwrap();
    assert_eq!(
        d[0].reasons,
        [
            KeepReason::Last,
            KeepReason::Bucket {
                unit: Unit::Day,
                oldest: false
            }
        ]
    );
    assert!(
        apply::<usize>(&[], &policy("--keep-last 1"), &Zone::Utc, 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn forget_refuses_empty_policies_and_removing_everything() {
    let snaps = set_a();
    for empty in [
        "",
        "--keep-daily 0",
        "--keep-within 0d --keep-last 0",
        "--keep-within-daily 0h",
    ] {
        let p = policy(empty);
        assert!(p.is_empty(), "{empty:?}");
        assert_eq!(apply(&snaps, &p, &Zone::Utc, 0), Err(PolicyError::Empty));
    }
    assert!(!policy("--keep-within-yearly 1h").is_empty());
    let d = apply(&snaps, &policy("--keep-last 1"), &Zone::Utc, FAR_FUTURE).unwrap();
    assert!(!removes_all(&d));
    assert_eq!(ensure_keeps_some(&d), Ok(()));
    let none: Vec<Decision<usize>> = snaps
        .iter()
        .map(|s| Decision {
            snapshot: s,
            reasons: vec![],
        })
        .collect();
    assert!(removes_all(&none));
    assert_eq!(
        ensure_keeps_some(&none),
        Err(PolicyError::RemovesAll { count: 23 })
    );
    assert!(!removes_all::<usize>(&[]));
    let msg = PolicyError::Empty.to_string();
    assert!(msg.contains("--keep-"), "{msg}");
}

#[test]
fn forget_rejects_times_it_cannot_compute_with() {
    let bad = [SnapshotTime {
        id: 0,
        unix: 0,
        offset: 100 * 3600,
    }];
    assert_eq!(
        apply(
            &bad,
            &policy("--keep-last 1"),
            &Zone::Local(TimeZone::UTC),
            0
        ),
        Err(PolicyError::BadTime {
            unix: 0,
            offset: 360_000
        })
    );
    let bad = [SnapshotTime {
        id: 0,
        unix: i64::MAX,
        offset: 0,
    }];
    assert!(matches!(
        apply(&bad, &policy("--keep-last 1"), &Zone::Utc, 0),
        Err(PolicyError::BadTime { .. })
    ));
}

#[test]
fn forget_policy_displays_as_options() {
    let text = "--keep-last 2 --keep-daily unlimited --keep-within 1y2mo --keep-within-weekly 3w";
    assert_eq!(policy(text).to_string(), text);
    assert_eq!(
        policy("--keep-monthly 0 --keep-yearly 2").to_string(),
        "--keep-yearly 2"
    );
    assert_eq!(Policy::default().to_string(), "");
}
