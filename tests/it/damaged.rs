//! A damaged snapshot is never a dead end: a truncated or corrupted
//! snapshot file stops prune, del and forget with a message naming the way
//! out; `check --repair` sets it aside (renamed, bytes untouched) and
//! salvages its readable start into a snapshot marked as salvaged; `del
//! --force` sets one named snapshot aside; after that the repository is
//! pruned again, no count is ever too low, and `check --repair
//! --lower-counts` makes the counts exact.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::world::tree::{Kind, Listing, listing};
use crate::world::{World, lib_api, settle, text};
use epygibus::content::ContentToken;

/// A tree of 300 files in 10 directories under `src/tree`.
fn tree(w: &World) -> PathBuf {
    let src = w.src().join("tree");
    for i in 0..300u64 {
        let dir = src.join(format!("d{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("file-{i:03}.txt")),
            text(200 + i as usize, i),
        )
        .unwrap();
    }
    src
}

/// Writes a few files (new ones and changed ones), so each snapshot has
/// content of its own.
fn change(src: &Path, round: u64) {
    for i in 0..5u64 {
        let path = src.join(format!("d{i}/file-{:03}.txt", i * 10 + round));
        fs::write(path, text(300, 1000 * round + i)).unwrap();
    }
}

/// Three snapshots of the tree; returns the tree and its listing at each.
fn three_snapshots(w: &World, extra: &[&str]) -> (PathBuf, Vec<Listing>) {
    let src = tree(w);
    w.new_repo("r");
    w.new_archive("a", "r", &[&src], extra);
    let mut states = Vec::new();
    for round in 0..3 {
        if round > 0 {
            change(&src, round);
            settle();
        }
        w.ok(&["bu", "-A", "a"]);
        states.push(listing(&src));
    }
    (src, states)
}

/// Each token's count is at least the number of entries of readable
/// snapshots that use it (never too low).
fn assert_no_count_too_low(w: &World, when: &str) {
    let mut used: HashMap<ContentToken, u64> = HashMap::new();
    let dir = w.snapshot_dir("a");
    for name in lib_api::list_snapshots(&dir) {
        let Ok(snap) = lib_api::try_read_snapshot(&dir, &name) else {
            continue;
        };
        for t in snap.root.tokens() {
            *used.entry(t).or_default() += 1;
        }
    }
    let counts = lib_api::ref_counts(&w.repo_dir("r"));
    for (t, n) in used {
        let c = counts.get(&t).copied().unwrap_or(0);
        assert!(c >= n, "{when}: {} counted {c}, used {n} times", t.to_hex());
    }
}

/// Extracts snapshot `back` of the tree into a fresh directory; returns
/// the extracted tree's listing.
fn extract(w: &World, src: &Path, back: i64) -> Listing {
    let out = w.path(&format!("out{back}"));
    let _ = fs::remove_dir_all(&out);
    fs::create_dir(&out).unwrap();
    let back = format!("--back={back}");
    w.ok(&[
        "extract",
        "-A",
        "a",
        &back,
        "--dir",
        src.to_str().unwrap(),
        "--into_dir",
        out.to_str().unwrap(),
    ]);
    listing(&out.join("tree"))
}

/// Files and symlinks of `got` are exactly as in `want` (content, mode,
/// mtime); with `whole`, both hold the same files.
fn assert_files_as(want: &Listing, got: &Listing, whole: bool, what: &str) {
    let files = |l: &Listing| {
        l.iter()
            .filter(|(_, i)| !matches!(i.kind, Kind::Dir))
            .map(|(p, i)| (p.clone(), (i.kind.clone(), i.mode, i.mtime_ns)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (want, got) = (files(want), files(got));
    for (path, item) in &got {
        assert_eq!(want.get(path), Some(item), "{what}: {}", path.display());
    }
    if whole {
        assert_eq!(want.len(), got.len(), "{what}: files missing");
    }
}

#[test]
fn damaged_snapshot_is_set_aside_salvaged_and_the_repository_pruned_again() {
    let w = World::new();
    let (src, states) = three_snapshots(&w, &[]);
    let dir = w.snapshot_dir("a");
    let names = w.snapshot_names("a");
    let newest = names[2];
    let file = dir.join(newest.file_name());
    let whole = fs::read(&file).unwrap();
    // A disk hiccup: the newest snapshot file lost its last 40 %.
    let damaged = whole[..whole.len() * 3 / 5].to_vec();
    fs::write(&file, &damaged).unwrap();

    let lss = w.lss("a", &[]);
    assert!(lss[2].starts_with(&newest.stamp()), "{lss:?}");
    assert!(lss[2].contains("(unreadable: "), "{lss:?}");
    let err = w.fail(&["prune", "-R", "r"]);
    assert!(err.contains("nothing was pruned"), "{err}");
    assert!(err.contains("`epygibus check -R r --repair`"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(!err.contains("/../"), "paths are clean: {err}");
    let err = w.fail(&["del", "-A", "a", "--back", "0"]);
    assert!(
        err.contains(&format!(
            "epygibus del -A a --snapshot {} --force",
            newest.stamp()
        )),
        "{err}"
    );
    let run = w.run(&["check", "-R", "r"]).code(4);
    assert!(
        run.stdout
            .contains("--repair` sets the damaged snapshots aside"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("/../"), "{run:?}");

    let run = w.run(&["check", "-R", "r", "--repair"]).code(4);
    let aside = dir.join(format!("{}.damaged", newest.file_name()));
    let repaired = run
        .stdout
        .lines()
        .find(|l| l.starts_with("repaired: set the damaged snapshot"))
        .unwrap_or_else(|| panic!("{run:?}"))
        .to_owned();
    assert!(
        repaired.contains(&aside.display().to_string()),
        "{repaired}"
    );
    assert_eq!(fs::read(&aside).unwrap(), damaged, "set aside untouched");
    let salvaged: u64 = repaired
        .split("salvaged ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{repaired}"));

    // The salvaged snapshot takes the damaged one's name; lss marks it.
    let lss = w.lss("a", &[]);
    assert_eq!(lss.len(), 3, "{lss:?}");
    assert!(lss[2].starts_with(&newest.stamp()), "{lss:?}");
    assert!(lss[2].contains("(salvaged from the damaged"), "{lss:?}");
    let snap = w.newest("a");
    let counts = snap.root.counts();
    assert_eq!(counts.files + counts.links + counts.dirs, salvaged);
    assert!(counts.files > 0 && counts.files < 300, "{counts:?}");
    assert_eq!(
        snap.header.salvaged_from.as_deref(),
        Some(aside.file_name().unwrap().to_str().unwrap())
    );
    assert_no_count_too_low(&w, "after repair");

    // Prune works again; every snapshot restores what it holds.
    w.ok(&["prune", "-R", "r"]);
    assert_files_as(&states[0], &extract(&w, &src, -1), true, "oldest");
    assert_files_as(&states[1], &extract(&w, &src, -2), true, "middle");
    assert_files_as(&states[2], &extract(&w, &src, -3), false, "salvaged");

    // The salvaged snapshot is not trusted for change detection.
    let run = w.run(&["bu", "-A", "a", "--stats", "--json"]).code(0);
    assert!(
        run.stderr.contains("was salvaged from a damaged one"),
        "{run:?}"
    );
    let files = states[2]
        .values()
        .filter(|i| matches!(i.kind, Kind::File(..)))
        .count();
    assert_eq!(run.json()["backups"][0]["files_read"], files);

    // Counts become exact, and stay never too low, with --lower-counts.
    w.run(&["check", "-R", "r", "--repair", "--lower-counts"]);
    w.assert_ref_counts("r", &["a"], &[], "after --lower-counts");
    w.ok(&["prune", "-R", "r"]);
    w.run(&["check", "-R", "r"]).code(0);
    assert!(aside.exists(), "never deleted");
}

#[test]
fn del_force_sets_one_named_damaged_snapshot_aside() {
    let w = World::new();
    // Uncompressed snapshots: a flipped byte breaks only the checksum.
    let (src, states) = three_snapshots(&w, &["-U"]);
    let dir = w.snapshot_dir("a");
    let names = w.snapshot_names("a");
    let middle = names[1];
    let file = dir.join(middle.file_name());
    let mut bytes = fs::read(&file).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x5a;
    fs::write(&file, &bytes).unwrap();
    let counts_before = lib_api::ref_counts(&w.repo_dir("r"));

    let err = w.fail(&["del", "-A", "a", "--snapshot", &middle.stamp()]);
    assert!(err.contains("--force"), "{err}");
    let out = w.ok(&["del", "-A", "a", "--snapshot", &middle.stamp(), "--force"]);
    let aside = dir.join(format!("{}.damaged", middle.file_name()));
    assert!(out.contains(&aside.display().to_string()), "{out}");
    assert!(out.contains("check -R r --repair --lower-counts"), "{out}");
    assert_eq!(fs::read(&aside).unwrap(), bytes);
    assert_eq!(w.snapshot_names("a"), vec![names[0], names[2]]);
    // Its references were not released: counts stay as they were.
    assert_eq!(lib_api::ref_counts(&w.repo_dir("r")), counts_before);
    let json = w.run(&["lss", "-A", "a", "--json"]).code(0).json();
    assert_eq!(
        json["set_aside"][0],
        aside.file_name().unwrap().to_str().unwrap()
    );
    w.ok(&["prune", "-R", "r"]);
    w.run(&["check", "-R", "r", "--repair", "--lower-counts"]);
    w.assert_ref_counts("r", &["a"], &[], "after --lower-counts");
    assert_files_as(&states[0], &extract(&w, &src, -1), true, "oldest");
    assert_files_as(&states[2], &extract(&w, &src, 0), true, "newest");
    // --force on a readable snapshot deletes it as usual.
    let out = w.ok(&["del", "-A", "a", "--snapshot", &names[0].stamp(), "--force"]);
    assert!(
        out.starts_with(&format!("Deleted snapshot {}", names[0].stamp())),
        "{out}"
    );
    w.assert_ref_counts("r", &["a"], &[], "after del --force of a readable one");
}

#[test]
fn forget_leaves_an_unreadable_snapshot_alone_and_says_so() {
    let w = World::new();
    let (_, _) = three_snapshots(&w, &[]);
    let dir = w.snapshot_dir("a");
    let names = w.snapshot_names("a");
    // The oldest: its header is gone.
    fs::write(dir.join(names[0].file_name()), b"garbage").unwrap();
    let run = w.run(&["forget", "-A", "a", "--keep-last", "1"]).code(3);
    assert!(run.stderr.contains("its header cannot be read"), "{run:?}");
    assert!(run.stderr.contains("check -A a --repair"), "{run:?}");
    assert_eq!(w.snapshot_names("a"), vec![names[0], names[2]]);
    assert_no_count_too_low(&w, "after forget");
}
