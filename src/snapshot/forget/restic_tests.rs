//! The engine against the real restic (Debian package `restic`), on the
//! snapshot sets of the table test: restic is the reference that users
//! know, so "what restic would keep" is checked, not assumed.
//!
//! The test makes a temporary restic repository with one snapshot of a
//! tiny directory per snapshot time (`restic backup --time`, host `utc` for
//! set A taken with TZ=UTC, host `berlin` for set B taken with
//! TZ=Europe/Berlin), checks that restic recorded each time and offset as
//! we model them, then runs `restic forget --dry-run --json` for each policy
//! of [`POLICIES`] and compares restic's keep set and reasons with
//! [`apply`] for both hosts. Restic reads its time zone from TZ for the
//! `--keep-within*` arithmetic, so the policies run with TZ=Europe/Berlin
//! (engine zone: Berlin), and [`UTC_POLICIES`] also with TZ=UTC (engine
//! zone: `Zone::Local(UTC)`, where Berlin's offsets are fixed).
//!
//! restic versions differ, and the comparison follows the one installed:
//! before 0.16 restic had no `unlimited` (a huge count stands in) and did
//! not keep the oldest snapshot for a rule with count left (those reasons
//! are left out of the expectation); from 0.16 it does, and from 0.18 it
//! words such a reason "oldest …". restic spells months `m` and has no
//! weeks, so durations are translated.
//!
//! Each restic command spends about half a second deriving its key, so the
//! commands run on a few threads; the whole test takes some 20 seconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::tz::TimeZone;

use super::table_tests::{set_a, set_b};
use super::*;

/// The policies compared, each on set A and set B, with TZ=Europe/Berlin:
/// every rule alone (counts, `unlimited`, 0, durations of every unit),
/// counts that run out exactly at or just before the oldest snapshot, and
/// combinations.
const POLICIES: &[&str] = &[
    "--keep-last 3",
    "--keep-last unlimited",
    "--keep-hourly 5", // set B: the repeated 02:00 hour is one bucket
    "--keep-daily 4",
    "--keep-daily 17", // set A: count spent exactly before the oldest
    "--keep-daily 18", // set A: one left, the oldest is kept too
    "--keep-daily unlimited",
    "--keep-weekly 6", // set A: ISO weeks across New Year
    "--keep-weekly unlimited",
    "--keep-monthly 5",
    "--keep-yearly 6",
    "--keep-within 2d12h", // set A: one snapshot exactly on the cutoff
    "--keep-within 1mo",   // set B: across DST, and "31 September"
    "--keep-within 7mo3d",
    "--keep-within 1y2mo3w4d5h",
    "--keep-within-hourly 5d",
    "--keep-within-daily 2d12h",
    "--keep-within-weekly 1mo",
    "--keep-within-monthly 1y",
    "--keep-within-yearly 10y", // set A: the oldest, within, kept too
    "--keep-last 2 --keep-daily 3 --keep-weekly 3 --keep-monthly 3 --keep-yearly 3",
    "--keep-hourly 2 --keep-within 1w --keep-within-monthly 2mo",
    "--keep-monthly 0 --keep-yearly 2",
    "--keep-daily 7 --keep-weekly 4 --keep-monthly unlimited --keep-within-daily 1mo",
];

/// The policies also compared with TZ=UTC, where restic reads Berlin's
/// offsets as fixed ones: those whose cutoff crosses a DST change.
const UTC_POLICIES: &[&str] = &[
    "--keep-within 1mo",
    "--keep-within 7mo3d",
    "--keep-within-hourly 5d",
    "--keep-hourly 2 --keep-within 1w --keep-within-monthly 2mo",
];

/// Wall-clock times that Berlin skips or repeats, given to `backup --time`
/// to check that [`parse_backup_time`] picks the instant restic picks.
const PROBES: &[&str] = &["2024-03-31 02:30:00", "2024-10-27 02:30:00"];

/// `(major, minor)` of the installed restic, or `None` when there is none.
fn restic_version() -> Option<(u32, u32)> {
    let out = Command::new("restic").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1)?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

fn restic(repo: &Path, tz: &str, args: &[String]) -> Command {
    let mut cmd = Command::new("restic");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RESTIC_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RESTIC_PASSWORD", "epygibus-test")
        .env("RESTIC_REPOSITORY", repo)
        .env("TZ", tz)
        .arg("--no-cache")
        .args(args);
    cmd
}

fn check(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "restic {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs the commands on a few threads; outputs in the order given.
fn run_all(jobs: Vec<(String, Command)>) -> Vec<Vec<u8>> {
    let next = AtomicUsize::new(0);
    let jobs: Vec<Mutex<Option<(String, Command)>>> =
        jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
    let results: Vec<Mutex<Vec<u8>>> = jobs.iter().map(|_| Mutex::new(Vec::new())).collect();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let (what, mut cmd) = job.lock().unwrap().take().unwrap();
                    let out = cmd.output().expect("run restic");
                    *results[i].lock().unwrap() = check(out, &what);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().unwrap())
        .collect()
}

fn civil_text(unix: i64, offset: i32) -> String {
    zone::civil(unix, offset)
        .unwrap()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A restic (Go) JSON time, `2024-03-31T03:30:00+02:00` or `…Z`, as
/// Unix seconds and offset.
fn parse_restic_time(text: &str) -> (i64, i32) {
    let ts: jiff::Timestamp = text.parse().unwrap();
    let offset = match text.strip_suffix('Z') {
        Some(_) => 0,
        None => {
            let tail = &text[text.len() - 6..];
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            sign * (tail[1..3].parse::<i32>().unwrap() * 3600
                + tail[4..6].parse::<i32>().unwrap() * 60)
        }
    };
    (ts.as_second(), offset)
}

/// A duration in restic's spelling: `m` for months, weeks as days.
fn restic_duration(d: &Duration) -> String {
    let mut s = String::new();
    for (n, unit) in [
        (i64::from(d.years), "y"),
        (i64::from(d.months), "m"),
        (d.total_days(), "d"),
        (i64::from(d.hours), "h"),
    ] {
        if n != 0 {
            s += &format!("{n}{unit}");
        }
    }
    s
}

/// The restic options for a policy written as our options.
fn restic_args(text: &str, version: (u32, u32)) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut args = Vec::new();
    for pair in words.chunks(2) {
        args.push(pair[0].to_owned());
        args.push(if pair[0].contains("within") {
            restic_duration(&pair[1].parse().unwrap())
        } else if pair[1] == "unlimited" && version < (0, 16) {
            "1000000".to_owned()
        } else {
            pair[1].to_owned()
        });
    }
    args
}

/// Our reasons as the installed restic words them, `None` for a reason
/// that restic before 0.16 does not have.
fn restic_reason(r: &KeepReason, version: (u32, u32)) -> Option<String> {
    let (unit, oldest, within) = match r {
        KeepReason::Last => return Some("last snapshot".to_owned()),
        KeepReason::Within(d) => return Some(format!("within {}", restic_duration(d))),
        KeepReason::Bucket { unit, oldest } => (unit, *oldest, None),
        KeepReason::WithinBucket {
            unit,
            within,
            oldest,
        } => (unit, *oldest, Some(within)),
    };
    if oldest && version < (0, 16) {
        return None;
    }
    let prefix = if oldest && version >= (0, 18) {
        "oldest "
    } else {
        ""
    };
    Some(match within {
        None => format!("{prefix}{} snapshot", unit.adjective()),
        Some(d) => format!("{prefix}{} within {}", unit.adjective(), restic_duration(d)),
    })
}

fn tags(v: &serde_json::Value) -> String {
    v["tags"][0].as_str().unwrap().to_owned()
}

#[test]
fn forget_matches_restic() {
    let Some(version) = restic_version() else {
        println!("SKIP: restic not installed");
        return;
    };
    let Ok(berlin) = TimeZone::get("Europe/Berlin") else {
        println!("SKIP: no tz database entry for Europe/Berlin (install tzdata)");
        return;
    };
    let berlin = Zone::Local(berlin);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("file"), "tiny").unwrap();
    check(
        restic(&repo, "UTC", &["init".into()]).output().unwrap(),
        "init",
    );

    // Snapshots: tag = set letter and index. A wall-clock time that Berlin
    // repeats can only be taken the first time with a fixed-offset zone.
    let (a, b) = (set_a(), set_b());
    let mut expected_times = BTreeMap::new();
    let mut jobs = Vec::new();
    let mut backup = |host: &str, tag: String, tz: String, time: String| {
        let args = [
            "backup", "--quiet", "--host", host, "--tag", &tag, "--time", &time,
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(data.display().to_string());
        jobs.push((format!("backup {tag}"), restic(&repo, &tz, &args)));
    };
    for s in &a {
        expected_times.insert(format!("a{}", s.id), (s.unix, 0));
        backup(
            "utc",
            format!("a{}", s.id),
            "UTC".into(),
            civil_text(s.unix, 0),
        );
    }
    for s in &b {
        let text = civil_text(s.unix, s.offset);
        let as_berlin = parse_backup_time(&text, &berlin).unwrap();
        let tz = if (as_berlin.unix, as_berlin.offset) == (s.unix, s.offset) {
            "Europe/Berlin".to_owned()
        } else {
            format!("Etc/GMT-{}", s.offset / 3600)
        };
        expected_times.insert(format!("b{}", s.id), (s.unix, s.offset));
        backup("berlin", format!("b{}", s.id), tz, text);
    }
    for (i, text) in PROBES.iter().enumerate() {
        let t = parse_backup_time(text, &berlin).unwrap();
        expected_times.insert(format!("p{i}"), (t.unix, t.offset));
        backup(
            "probe",
            format!("p{i}"),
            "Europe/Berlin".into(),
            text.to_string(),
        );
    }
    run_all(jobs);

    // restic recorded every time as we model it.
    let args = ["snapshots", "--no-lock", "--json"].map(String::from);
    let listing = check(restic(&repo, "UTC", &args).output().unwrap(), "snapshots");
    let listing: Vec<serde_json::Value> = serde_json::from_slice(&listing).unwrap();
    let recorded: BTreeMap<String, (i64, i32)> = listing
        .iter()
        .map(|s| (tags(s), parse_restic_time(s["time"].as_str().unwrap())))
        .collect();
    assert_eq!(recorded, expected_times, "times as restic recorded them");

    // One forget per policy and zone.
    let mut runs = Vec::new();
    for text in POLICIES {
        runs.push((*text, "Europe/Berlin", berlin.clone()));
        if UTC_POLICIES.contains(text) {
            runs.push((*text, "UTC", Zone::Local(TimeZone::UTC)));
        }
    }
    let jobs = runs
        .iter()
        .map(|(text, tz, _)| {
            let mut args: Vec<String> = ["forget", "--no-lock", "--dry-run", "--json"]
                .iter()
                .chain(&["--host", "utc", "--host", "berlin"])
                .map(|s| s.to_string())
                .collect();
            args.extend(restic_args(text, version));
            (format!("forget {text} (TZ={tz})"), restic(&repo, tz, &args))
        })
        .collect();
    let outputs = run_all(jobs);

    let now = crate::clock::now_secs();
    let mut failures = Vec::new();
    for ((text, tz, zone), out) in runs.iter().zip(outputs) {
        let groups: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(groups.len(), 2, "{text}: one group per host");
        for group in &groups {
            let (prefix, snaps) = match group["host"].as_str().unwrap() {
                "utc" => ("a", &a),
                _ => ("b", &b),
            };
            // restic: tag -> reasons of each kept snapshot.
            let theirs: BTreeMap<String, Vec<String>> = group["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let matches = r["matches"].as_array().unwrap();
                    let matches = matches.iter().map(|m| m.as_str().unwrap().to_owned());
                    (tags(&r["snapshot"]), matches.collect())
                })
                .collect();
            let kept = group["keep"].as_array().into_iter().flatten().map(tags);
            assert_eq!(kept.collect::<Vec<_>>().len(), theirs.len());
            let ours: BTreeMap<String, Vec<String>> =
                apply(snaps, &super::table_tests::policy(text), zone, now)
                    .unwrap()
                    .iter()
                    .map(|d| {
                        let reasons = d.reasons.iter().filter_map(|r| restic_reason(r, version));
                        (
                            format!("{prefix}{}", d.snapshot.id),
                            reasons.collect::<Vec<_>>(),
                        )
                    })
                    .filter(|(_, reasons)| !reasons.is_empty())
                    .collect();
            if ours != theirs {
                failures.push(format!(
                    "{text} (TZ={tz}, set {prefix}):\n  ours   {ours:?}\n  restic {theirs:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "differs from restic {version:?}:\n{}",
        failures.join("\n")
    );
    println!(
        "forget matches restic {}.{} on {} policy runs over {} snapshots",
        version.0,
        version.1,
        runs.len(),
        a.len() + b.len()
    );
}
