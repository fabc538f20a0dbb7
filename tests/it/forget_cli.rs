//! `forget`, `policy` and `bu --time` through the real binary: the choice
//! compared with the real restic's `forget --dry-run --json` on the same
//! snapshot times (made with `bu --time` and `restic backup --time`),
//! removal that keeps counts exact and the kept snapshots whole, `--prune`,
//! policies stored in the spec (and its copy beside the snapshots), several
//! archives at once, and bad input that changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::world::tree::{assert_same_state, fs_state};
use crate::world::{Machine, Run, World, lib_api, text};

/// A small tree in `src/tree`, repository `r` and archive `a` over it
/// (`extra`: further `new` options). Returns the tree.
fn setup(w: &World, extra: &[&str]) -> std::path::PathBuf {
    let src = w.src().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), text(3000, 1)).unwrap();
    fs::write(src.join("sub/b.txt"), text(500, 2)).unwrap();
    w.new_repo("r");
    w.new_archive("a", "r", &[&src], extra);
    src
}

fn with_tz(m: &Machine, tz: &str, args: &[&str]) -> Run {
    let mut cmd = m.cmd();
    cmd.env("TZ", tz).args(args);
    m.exec(&mut cmd, &format!("TZ={tz} epygibus {}", args.join(" ")))
}

/// `bu --time TIME` (local time in `tz`), which must succeed quietly.
fn bu_at(m: &Machine, archive: &str, tz: &str, time: &str) {
    with_tz(m, tz, &["bu", "-A", archive, "--time", time])
        .code(0)
        .quiet();
}

fn json_of(run: Run) -> Value {
    run.code(0).json()
}

/// (name, keep, reasons) of each snapshot in a `forget --json` archive entry.
fn verdicts(archive: &Value) -> Vec<(String, bool, Vec<String>)> {
    archive["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let reasons = s["reasons"].as_array().unwrap();
            (
                s["name"].as_str().unwrap().to_owned(),
                s["keep"].as_bool().unwrap(),
                reasons
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Against restic
// ---------------------------------------------------------------------------

/// Snapshot times, local time in Europe/Berlin: a year boundary (in local
/// time and not in UTC), both DST changes (a repeated hour, a skipped one),
/// ISO weeks across New Year, month ends.
const TIMES: &[&str] = &[
    "2023-12-30 10:00:00",
    "2023-12-31 23:30:00", // 22:30 UTC
    "2024-01-01 00:30:00", // 23:30 UTC on 31 December
    "2024-01-01 18:00:00",
    "2024-03-02 09:00:00",
    "2024-03-30 23:30:00",
    "2024-03-31 01:30:00", // the last CET half hour
    "2024-03-31 03:30:00", // the first CEST hour
    "2024-06-15 12:00:00",
    "2024-09-30 12:00:00",
    "2024-10-01 10:30:00",
    "2024-10-26 23:30:00",
    "2024-10-27 02:15:00", // a repeated hour: both tools take the later one
    "2024-10-27 03:10:00",
    "2024-10-28 00:30:00", // Monday of a new ISO week
    "2024-10-31 10:00:00",
    "2024-11-01 08:00:00",
    "2024-11-01 08:40:00",
];

/// The policies compared (our spelling; durations translated for restic).
const POLICIES: &[&str] = &[
    "--keep-last 3",
    "--keep-hourly 4",
    "--keep-daily 5",
    "--keep-daily 15",
    "--keep-daily unlimited",
    "--keep-weekly 3",
    "--keep-monthly 4",
    "--keep-yearly 2",
    "--keep-within 1mo",
    "--keep-within 2d12h",
    "--keep-within 1w",
    "--keep-within-daily 1mo",
    "--keep-within-weekly 2mo",
    "--keep-last 2 --keep-daily 3 --keep-weekly 2 --keep-monthly 3 --keep-yearly 2",
    "--keep-hourly 2 --keep-within 1w --keep-within-monthly 6mo",
];

fn restic_version() -> Option<(u32, u32)> {
    let out = Command::new("restic").arg("version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().nth(1)?.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn restic(repo: &Path, args: &[String]) -> Value {
    let mut cmd = Command::new("restic");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RESTIC_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .env("RESTIC_PASSWORD", "epygibus-test")
        .env("RESTIC_REPOSITORY", repo)
        .env("TZ", "Europe/Berlin")
        .arg("--no-cache")
        .args(args)
        .output()
        .expect("restic runs");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A duration in restic's spelling: months `m`, weeks as days.
fn restic_duration(ours: &str) -> String {
    let (mut y, mut mo, mut d, mut h) = (0u64, 0u64, 0u64, 0u64);
    let mut rest = ours;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().unwrap();
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        match &rest[..unit_len] {
            "y" => y = n,
            "mo" => mo = n,
            "w" => d += 7 * n,
            "d" => d += n,
            "h" => h = n,
            other => panic!("unit {other} in {ours}"),
        }
        rest = &rest[unit_len..];
    }
    [(y, "y"), (mo, "m"), (d, "d"), (h, "h")]
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect()
}

fn restic_policy(policy: &str, version: (u32, u32)) -> Vec<String> {
    let words: Vec<&str> = policy.split_whitespace().collect();
    let mut args = Vec::new();
    for pair in words.chunks(2) {
        args.push(pair[0].to_owned());
        args.push(if pair[0].contains("within") {
            restic_duration(pair[1])
        } else if pair[1] == "unlimited" && version < (0, 16) {
            "1000000".to_owned()
        } else {
            pair[1].to_owned()
        });
    }
    args
}

/// One of our reasons as the installed restic words it; `None` for a
/// reason restic before 0.16 does not have (the oldest snapshot kept by a
/// rule with count left).
fn as_restic(reason: &str, version: (u32, u32)) -> Option<String> {
    let (oldest, rest) = match reason.strip_prefix("oldest ") {
        Some(r) => (true, r),
        None => (false, reason),
    };
    if oldest && version < (0, 16) {
        return None;
    }
    let prefix = if oldest && version >= (0, 18) {
        "oldest "
    } else {
        ""
    };
    let rest = match rest.rsplit_once("within ") {
        Some((head, d)) => format!("{head}within {}", restic_duration(d)),
        None => rest.to_owned(),
    };
    Some(format!("{prefix}{rest}"))
}

/// RFC 3339 time (any offset) as Unix seconds.
fn unix(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .as_second()
}

#[test]
fn forget_matches_restic_through_the_cli() {
    let Some(version) = restic_version() else {
        println!("SKIP: restic is not installed (Debian package `restic`; .ci/run installs it)");
        return;
    };
    if !Path::new("/usr/share/zoneinfo/Europe/Berlin").is_file() {
        println!("SKIP: no tz database entry for Europe/Berlin (Debian package `tzdata`)");
        return;
    }
    let w = World::new();
    let src = setup(&w, &[]);
    for t in TIMES {
        bu_at(&w, "a", "Europe/Berlin", t);
    }
    let repo = w.path("restic");
    restic(&repo, &["init".into()]);
    for t in TIMES {
        let args = ["backup", "--quiet", "--host", "h", "--time", t];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(src.display().to_string());
        restic(&repo, &args);
    }
    let listed = restic(&repo, &["snapshots".into(), "--json".into()]);
    let theirs_times: BTreeSet<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| unix(s["time"].as_str().unwrap()))
        .collect();
    let ours = json_of(with_tz(&w, "Europe/Berlin", &["lss", "-A", "a", "--json"]));
    let ours_times: BTreeSet<i64> = ours["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| unix(s["time"].as_str().unwrap()))
        .collect();
    assert_eq!(ours_times.len(), TIMES.len());
    assert_eq!(ours_times, theirs_times, "both read the local times alike");

    let mut failures = Vec::new();
    for policy in POLICIES {
        let mut args = vec!["forget", "-A", "a", "--dry-run", "--json"];
        args.extend(policy.split_whitespace());
        let doc = json_of(with_tz(&w, "Europe/Berlin", &args));
        let archive = &doc["archives"][0];
        assert_eq!(archive["removed"], 0, "a dry run removes nothing");
        let mut ours: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (name, keep, reasons) in verdicts(archive) {
            assert_eq!(keep, !reasons.is_empty(), "{policy}: {name}");
            let time = archive["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name.as_str())
                .unwrap()["time"]
                .as_str()
                .unwrap()
                .to_owned();
            let reasons: Vec<String> = reasons
                .iter()
                .filter_map(|r| as_restic(r, version))
                .collect();
            if !reasons.is_empty() {
                ours.insert(unix(&time), reasons);
            }
        }
        let mut rargs: Vec<String> = ["forget", "--no-lock", "--dry-run", "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        rargs.extend(restic_policy(policy, version));
        let groups = restic(&repo, &rargs);
        let group = &groups.as_array().unwrap()[0];
        let theirs: BTreeMap<i64, Vec<String>> = group["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let matches = r["matches"].as_array().unwrap();
                (
                    unix(r["snapshot"]["time"].as_str().unwrap()),
                    matches
                        .iter()
                        .map(|m| m.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect();
        let kept: BTreeSet<i64> = group["keep"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| unix(s["time"].as_str().unwrap()))
            .collect();
        assert_eq!(kept, theirs.keys().copied().collect(), "{policy}");
        if ours != theirs {
            failures.push(format!("{policy}:\n  ours   {ours:?}\n  restic {theirs:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "forget differs from restic {version:?}:\n{}",
        failures.join("\n")
    );
    println!(
        "forget --dry-run --json matches restic {}.{} on {} policies over {} snapshots",
        version.0,
        version.1,
        POLICIES.len(),
        TIMES.len()
    );
}

// ---------------------------------------------------------------------------
// Removing
// ---------------------------------------------------------------------------

#[test]
fn forget_removes_what_the_policy_does_not_keep_counts_follow_and_prune_reclaims() {
    let w = World::new();
    let src = setup(&w, &[]);
    // Each day a new file, so each snapshot holds content of its own.
    let days = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"];
    for (i, day) in days.iter().enumerate() {
        if i > 0 {
            fs::remove_file(src.join(format!("day{}.txt", i - 1))).unwrap();
        }
        fs::write(src.join(format!("day{i}.txt")), text(2000, 10 + i as u64)).unwrap();
        bu_at(&w, "a", "UTC", &format!("{day} 10:00:00"));
        bu_at(&w, "a", "UTC", &format!("{day} 20:00:00"));
    }
    let before = w.snapshot_names("a");
    assert_eq!(before.len(), 8);
    // The newest of each of the two newest days, and the newest snapshot.
    let out = with_tz(&w, "UTC", &["forget", "-A", "a", "--keep-daily", "2"])
        .code(0)
        .quiet()
        .stdout;
    assert_eq!(out.matches("Removed snapshot ").count(), 6, "{out}");
    assert!(out.contains("kept 2, removed 6 of 8 snapshots"), "{out}");
    let stamps: Vec<String> = w.snapshot_names("a").iter().map(|n| n.stamp()).collect();
    assert_eq!(stamps, ["2024-05-03-20-00-00", "2024-05-04-20-00-00"]);
    w.assert_ref_counts("r", &["a"], &[], "after forget");
    // The kept snapshots are whole: they restore what the tree held.
    for (_, snap) in w.snapshots("a") {
        w.assert_content_intact("r", snap.root.tokens());
    }
    // day0 and day1 are unreferenced now; --prune reclaims them, and
    // day2 of the snapshot removed with it.
    let stats = |w: &World| json_of(w.run(&["repo_stats", "-R", "r", "--json"]));
    assert_eq!(stats(&w)["unreferenced"]["items"], 2);
    let doc = json_of(w.run(&["forget", "-A", "a", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(doc["archives"][0]["removed"], 1);
    assert_eq!(doc["prune"][0]["repository"], "r");
    assert_eq!(doc["prune"][0]["items"], 3);
    assert_eq!(stats(&w)["unreferenced"]["items"], 0);
    w.assert_ref_counts("r", &["a"], &[], "after forget --prune");
    // Nothing is left to go: a second run removes nothing.
    let again = w.ok(&["forget", "-A", "a", "--keep-last", "1"]);
    assert!(again.contains("removed 0 of 1"), "{again}");
}

#[test]
fn dry_run_changes_nothing_and_says_why_each_stays() {
    let w = World::new();
    setup(&w, &[]);
    for t in [
        "2024-01-01 10:00:00",
        "2024-01-01 12:00:00",
        "2024-01-02 09:00:00",
    ] {
        bu_at(&w, "a", "UTC", t);
    }
    let state = fs_state(&w.location());
    let out = with_tz(&w, "UTC", &["forget", "-A", "a", "--keep-daily", "2", "-n"])
        .code(0)
        .quiet()
        .stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("--keep-daily 2"), "{out}");
    let row = |stamp: &str| *lines.iter().find(|l| l.contains(stamp)).unwrap();
    // Two days, two counts: the newest of each day; the rule has no count
    // left for the oldest snapshot, which shares its day.
    assert!(row("2024-01-01-10-00-00").starts_with("remove"), "{out}");
    assert!(row("2024-01-01-12-00-00").starts_with("keep"), "{out}");
    assert!(
        row("2024-01-01-12-00-00").contains("daily snapshot"),
        "{out}"
    );
    assert!(
        row("2024-01-02-09-00-00").contains("daily snapshot"),
        "{out}"
    );
    assert!(out.contains("Would remove 1 of 3 snapshots"), "{out}");
    assert_same_state(&state, &fs_state(&w.location()), "a dry run");
}

#[test]
fn buckets_follow_the_recorded_offset_unless_utc() {
    let w = World::new();
    setup(&w, &[]);
    // 23:30 and 00:30 in Berlin in winter: two local days, one UTC day.
    bu_at(&w, "a", "Europe/Berlin", "2024-01-15 23:30:00");
    bu_at(&w, "a", "Europe/Berlin", "2024-01-16 00:30:00");
    let kept = |args: &[&str], tz: &str| {
        let mut all = vec!["forget", "-A", "a", "--keep-daily", "2", "-n", "--json"];
        all.extend_from_slice(args);
        let doc = json_of(with_tz(&w, tz, &all));
        verdicts(&doc["archives"][0])
            .into_iter()
            .filter(|v| v.1)
            .count()
    };
    assert_eq!(kept(&[], "Europe/Berlin"), 2);
    // Buckets are those of the offset recorded at backup time, whatever
    // zone forget runs in.
    assert_eq!(kept(&[], "America/New_York"), 2);
    // In UTC both are on 15 January: one day, one count.
    let doc = json_of(with_tz(
        &w,
        "Europe/Berlin",
        &[
            "forget",
            "-A",
            "a",
            "--keep-daily",
            "1",
            "-n",
            "--json",
            "--utc",
        ],
    ));
    let v = verdicts(&doc["archives"][0]);
    assert_eq!(doc["archives"][0]["zone"], "utc");
    assert_eq!(v.iter().filter(|v| v.1).count(), 1, "{v:?}");
    let snaps = doc["archives"][0]["snapshots"].as_array().unwrap();
    assert_eq!(snaps[0]["utc_offset"], 3600);
    assert_eq!(snaps[0]["utc_offset_recorded"], true);
}

#[test]
fn bu_time_names_the_snapshot_and_keeps_the_real_clock_for_change_detection() {
    let w = World::new();
    setup(&w, &[]);
    let before = epygibus_now();
    with_tz(
        &w,
        "Europe/Berlin",
        &[
            "bu",
            "-A",
            "a",
            "--time",
            "2030-06-01 12:00:00",
            "--stats",
            "--json",
        ],
    )
    .code(0);
    let after = epygibus_now();
    let names = w.snapshot_names("a");
    assert_eq!(names[0].stamp(), "2030-06-01-10-00-00", "12:00 CEST");
    let snap = w.newest("a");
    assert_eq!(snap.header.utc_offset, Some(7200));
    assert_eq!(snap.header.time_ns, Some(names[0].secs * 1_000_000_000));
    // The walk's real start, which the next backup's change detection
    // trusts, not the time given.
    let started = snap.header.started_ns / 1_000_000_000;
    assert!((before..=after).contains(&started), "{started}");
    // An earlier time than the newest snapshot is named as asked too.
    bu_at(&w, "a", "UTC", "2020-02-29 23:59:59");
    let stamps: Vec<String> = w.snapshot_names("a").iter().map(|n| n.stamp()).collect();
    assert_eq!(stamps, ["2020-02-29-23-59-59", "2030-06-01-10-00-00"]);
    // A plain bu records the zone's offset at its time.
    with_tz(&w, "Asia/Kolkata", &["bu", "-A", "a"]).code(0);
    let newest = w
        .snapshots("a")
        .into_iter()
        .max_by_key(|(_, s)| s.header.started_ns)
        .unwrap();
    assert_eq!(newest.1.header.utc_offset, Some(19800));
    assert_eq!(newest.1.header.time_ns, None);
}

fn epygibus_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// Stored policies
// ---------------------------------------------------------------------------

#[test]
fn stored_policy_from_new_and_policy_is_applied_shown_and_copied_to_the_disk() {
    let w = World::new();
    setup(&w, &["--keep-last", "2", "--keep-monthly", "unlimited"]);
    let dir = w.snapshot_dir("a");
    let shown = w.ok(&["show", "-A", "a"]);
    assert!(
        shown.contains("Retention:          --keep-last 2 --keep-monthly unlimited"),
        "{shown}"
    );
    let j = json_of(w.run(&["show", "-A", "a", "--json"]));
    assert_eq!(j["retention"]["keep_last"], 2);
    assert_eq!(j["retention"]["keep_monthly"], "unlimited");
    let copy = newest_spec_copy(&dir);
    assert!(copy.contains("\nkeep_last = 2\n"), "{copy}");
    for t in [
        "2024-01-10 10:00:00",
        "2024-02-10 10:00:00",
        "2024-02-11 10:00:00",
        "2024-02-12 10:00:00",
    ] {
        bu_at(&w, "a", "UTC", t);
    }
    // No rule given: the stored policy applies.
    let out = with_tz(&w, "UTC", &["forget", "-A", "a"])
        .code(0)
        .quiet()
        .stdout;
    assert!(out.contains("stored in the archive's spec"), "{out}");
    let stamps: Vec<String> = w.snapshot_names("a").iter().map(|n| n.stamp()).collect();
    assert_eq!(
        stamps,
        [
            "2024-01-10-10-00-00",
            "2024-02-11-10-00-00",
            "2024-02-12-10-00-00"
        ]
    );
    // Changed later: the configuration and the copy beside the snapshots.
    let out = w.ok(&["policy", "-A", "a", "--keep-within", "1y6mo"]);
    assert!(out.contains("set to --keep-within 1y6mo"), "{out}");
    assert_eq!(
        w.ok(&["policy", "-A", "a"]).trim(),
        "`a`: --keep-within 1y6mo"
    );
    let copy = newest_spec_copy(&dir);
    assert!(copy.contains("\nkeep_within = 1y6mo\n"), "{copy}");
    assert!(!copy.contains("keep_last"), "{copy}");
    assert!(copy.contains("keep_broken_soft_links = false"), "{copy}");
    assert!(
        w.ok(&["policy", "-A", "a", "--keep-within", "1y6mo"])
            .contains("no change")
    );
    // Cleared: forget without rules refuses and names the way.
    w.ok(&["policy", "-A", "a", "--clear"]);
    assert!(!newest_spec_copy(&dir).contains("keep_within"));
    let err = w.run(&["forget", "-A", "a"]).code(1).stderr;
    assert!(err.contains("stores no retention policy"), "{err}");
    assert!(err.contains("epygibus policy -A a --keep-daily"), "{err}");
    let skipped = w.ok(&["forget", "-A", "a", "--skip-without-policy"]);
    assert!(skipped.contains("passed over"), "{skipped}");
    assert_eq!(w.snapshot_names("a").len(), 3);
}

fn newest_spec_copy(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spec."))
        .collect();
    names.sort();
    fs::read_to_string(dir.join(names.last().expect("a spec copy"))).unwrap()
}

#[test]
fn several_archives_at_once_one_failing_does_not_stop_the_others() {
    let w = World::new();
    let src = setup(&w, &["--keep-last", "1"]);
    w.new_archive("b", "r", &[&src], &["--keep-last", "2"]);
    for t in [
        "2024-01-01 10:00:00",
        "2024-01-02 10:00:00",
        "2024-01-03 10:00:00",
    ] {
        bu_at(&w, "a", "UTC", t);
        bu_at(&w, "b", "UTC", t);
    }
    let run = w
        .run(&["forget", "-A", "a", "-A", "nope", "-A", "b", "--json"])
        .code(1);
    assert!(run.stderr.contains("archive `nope`"), "{run:?}");
    let doc = run.json();
    let archives = doc["archives"].as_array().unwrap();
    assert_eq!(archives[0]["removed"], 2);
    assert!(archives[1]["error"].as_str().unwrap().contains("nope"));
    assert_eq!(archives[2]["removed"], 1);
    assert_eq!(w.snapshot_names("a").len(), 1);
    assert_eq!(w.snapshot_names("b").len(), 2);
    w.assert_ref_counts("r", &["a", "b"], &[], "after forgetting two archives");
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let w = World::new();
    setup(&w, &[]);
    bu_at(&w, "a", "UTC", "2024-01-01 10:00:00");
    bu_at(&w, "a", "UTC", "2024-01-02 10:00:00");
    let before = (fs_state(&w.location()), fs_state(&w.config));
    let usage = |args: &[&str], needle: &str| {
        let run = w.run(args).code(2);
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(run.stderr.contains(needle), "{needle}: {run:?}");
    };
    usage(&["forget", "-A", "a", "--keep-daily", "-1"], "is negative");
    usage(
        &["forget", "-A", "a", "--keep-daily", "seven"],
        "is not a count",
    );
    usage(
        &["forget", "-A", "a", "--keep-daily", "3.5"],
        "is not a count",
    );
    usage(
        &["forget", "-A", "a", "--keep-within", "3m"],
        "write 3mo for months",
    );
    usage(
        &["forget", "-A", "a", "--keep-within", "1y2"],
        "without a unit",
    );
    usage(
        &["forget", "-A", "a", "--keep-within", "-7d"],
        "cannot be negative",
    );
    usage(
        &["forget", "-A", "a", "--keep-within", "7x"],
        "unknown unit",
    );
    usage(&["policy", "-A", "a", "--keep-hourly", "-2"], "is negative");
    usage(
        &["new", "-A", "n", "-I", "/tmp", "--keep-weekly", "lots"],
        "is not a count",
    );
    usage(
        &["bu", "-A", "a", "--time", "yesterday"],
        "is not of the form",
    );
    usage(
        &["bu", "-A", "a", "--time", "2024-02-30 10:00:00"],
        "is not a date and time that exists",
    );
    usage(
        &["bu", "-A", "a", "--time", "1969-12-31 23:59:59"],
        "before 1970",
    );
    usage(
        &[
            "forget",
            "-A",
            "a",
            "--keep-last",
            "1",
            "--dry-run",
            "--prune",
        ],
        "cannot be used with",
    );
    usage(
        &["del", "-A", "a", "--snapshot", "2024-01-01"],
        "is not a snapshot name",
    );
    let err = w.fail(&["forget", "-A", "nope", "--keep-last", "1"]);
    assert!(err.contains("no archive named `nope`"), "{err}");
    let err = w.fail(&[
        "forget",
        "-A",
        "a",
        "--keep-daily",
        "0",
        "--keep-within",
        "0h",
    ]);
    assert!(err.contains("the retention policy is empty"), "{err}");
    let err = w.fail(&["forget", "-A", "a"]);
    assert!(err.contains("stores no retention policy"), "{err}");
    let err = w.fail(&["policy", "-A", "a", "--keep-last", "0"]);
    assert!(err.contains("the retention policy is empty"), "{err}");
    let loc = w.loc_arg();
    let err = w.fail(&[
        "new",
        "-A",
        "n",
        "-I",
        "/tmp",
        "-R",
        "r",
        &loc,
        "--keep-last",
        "0",
    ]);
    assert!(err.contains("the retention policy is empty"), "{err}");
    let err = w.fail(&["del", "-A", "a", "--snapshot", "2020-01-01-00-00-00"]);
    assert!(err.contains("has no snapshot 2020-01-01-00-00-00"), "{err}");
    let after = (fs_state(&w.location()), fs_state(&w.config));
    assert_same_state(&before.0, &after.0, "the backup location");
    assert_same_state(&before.1, &after.1, "the configuration");
    assert_eq!(lib_api::list_snapshots(&w.snapshot_dir("a")).len(), 2);
    // A stored policy a newer epygibus wrote is not half applied.
    let spec = w.config.join("archives/a/spec");
    let mut text = fs::read_to_string(&spec).unwrap();
    text.push_str("keep_tagged = 3\n");
    fs::write(&spec, text).unwrap();
    let err = w.fail(&["forget", "-A", "a"]);
    assert!(
        err.contains("`keep_tagged` is not one this epygibus knows"),
        "{err}"
    );
    assert!(err.contains(&spec.display().to_string()), "{err}");
    assert_eq!(lib_api::list_snapshots(&w.snapshot_dir("a")).len(), 2);
}

#[test]
fn forget_and_policy_help_have_examples() {
    let w = World::new();
    for cmd in ["forget", "policy", "schedule"] {
        let out = w.ok(&[cmd, "--help"]);
        assert!(out.contains("Example"), "{cmd}: {out}");
    }
    let out = w.ok(&["forget", "--help"]);
    for opt in [
        "--keep-last",
        "--keep-hourly",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
        "--keep-yearly",
        "--keep-within",
        "--keep-within-hourly",
        "--keep-within-daily",
        "--keep-within-weekly",
        "--keep-within-monthly",
        "--keep-within-yearly",
        "--utc",
        "--dry-run",
        "--prune",
        "--json",
    ] {
        assert!(out.contains(opt), "{opt} missing: {out}");
    }
}
