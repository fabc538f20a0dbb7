//! diff, find and history through the real binary: the markers and
//! summary, `--live` reading only what a backup would read, searches over
//! several archives with a damaged snapshot among them, every version of
//! a file once with the command that gets it back, bad input, and
//! agreement with restic on a tree changed by the benchmark's
//! mutate-corpus.sh.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::world::files::write_file;
use crate::world::rigs::shared_dir;
use crate::world::tree::fs_state;
use crate::world::{World, chmod, settle, text};

/// Archive `a` over `src/t`: a first snapshot, then changes of every
/// kind, then a second. Returns the world and the tree.
fn two_snapshots() -> (World, PathBuf) {
    let env = World::new();
    let t = env.src().join("t");
    write_file(&t.join("keep.txt"), b"keep", 0o644);
    write_file(&t.join("edit.txt"), b"before", 0o644);
    write_file(&t.join("gone.txt"), b"gone!", 0o644);
    write_file(&t.join("chmod.txt"), b"mode", 0o644);
    write_file(&t.join("d2f/inner"), b"inner", 0o644);
    write_file(&t.join("old/a"), b"a", 0o644);
    symlink("keep.txt", t.join("link")).unwrap();
    env.new_repo("r");
    env.new_archive("a", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "a"]);
    write_file(&t.join("edit.txt"), b"after, longer", 0o644);
    fs::remove_file(t.join("gone.txt")).unwrap();
    chmod(&t.join("chmod.txt"), 0o600);
    fs::remove_dir_all(t.join("d2f")).unwrap();
    write_file(&t.join("d2f"), b"now a file", 0o644);
    fs::remove_dir_all(t.join("old")).unwrap();
    write_file(&t.join("new/b.txt"), b"bee", 0o644);
    fs::remove_file(t.join("link")).unwrap();
    symlink("edit.txt", t.join("link")).unwrap();
    env.ok(&["bu", "-A", "a"]);
    (env, t)
}

fn change_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.len() > 5 && ["+", "-", "M", "T", "U"].contains(&l[..1].trim()))
        .filter(|l| l.as_bytes()[1] == b' ')
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn diff_shows_every_kind_of_change_with_restics_markers() {
    let (env, t) = two_snapshots();
    let p = |rel: &str| format!("{}/{rel}", t.display());
    let out = env.ok(&["diff", "-A", "a"]);
    let want: Vec<String> = [
        ("T", p("d2f")),
        ("M", p("edit.txt")),
        ("-", p("gone.txt")),
        ("M", p("link")),
        ("+", p("new/")),
        ("+", p("new/b.txt")),
        ("-", p("old/")),
        ("-", p("old/a")),
    ]
    .iter()
    .map(|(m, p)| format!("{m} {p}"))
    .collect();
    assert_eq!(change_lines(&out), want, "{out}");
    assert!(out.starts_with("comparing snapshot "), "{out}");
    let words: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "Files: 1 new, 2 removed, 2 changed",
        "Dirs: 1 new, 1 removed, 0 changed",
        "Symlinks: 0 new, 0 removed, 1 changed",
        "Added: 26 B",
        "Removed: 17 B",
    ] {
        assert!(words.iter().any(|w| w == line), "{line} in {out}");
    }
    // The same as naming both snapshots.
    assert_eq!(
        env.ok(&["diff", "-A", "a", "--back", "1", "--back", "0"]),
        out
    );
    // --metadata adds the chmod; a path limits the diff.
    let meta = env.ok(&["diff", "-A", "a", "--metadata"]);
    assert!(
        change_lines(&meta).contains(&format!("U {}", p("chmod.txt"))),
        "{meta}"
    );
    let under = env.ok(&["diff", "-A", "a", &p("new")]);
    assert_eq!(
        change_lines(&under),
        [format!("+ {}", p("new/")), format!("+ {}", p("new/b.txt"))]
    );
    // Reversed: what was added is removed.
    let back = env.ok(&["diff", "-A", "a", "--back", "0", "--back", "1"]);
    assert!(
        change_lines(&back).contains(&format!("- {}", p("new/b.txt"))),
        "{back}"
    );

    let json = env
        .run(&["diff", "-A", "a", "--json"])
        .code(0)
        .quiet()
        .json();
    let changes = json["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 8);
    let d2f = changes.iter().find(|c| c["path"] == p("d2f")).unwrap();
    assert_eq!(
        (&d2f["modifier"], &d2f["old"], &d2f["new"]),
        (&Value::from("T"), &Value::from("dir"), &Value::from("file"))
    );
    assert_eq!(json["summary"]["added"]["files"], 1);
    assert_eq!(json["summary"]["removed"]["dirs"], 1);
    assert_eq!(json["summary"]["bytes_added"], 13 + 3 + 10);
    assert_eq!(json["old"]["back"], 1);
    assert_eq!(json["new"]["back"], 0);
    assert_eq!(json["path"], "/");
}

#[test]
fn diff_bad_input_changes_nothing() {
    let (env, t) = two_snapshots();
    let before = fs_state(&env.location());
    let e = env.fail(&["diff", "-A", "a", "/no/such/path"]);
    assert!(e.contains("/no/such/path is not in snapshot"), "{e}");
    let e = env.fail(&["diff", "-A", "a", "--back", "5"]);
    assert!(e.contains("--back 5 is out of range"), "{e}");
    let e = env.fail(&["diff", "-A", "nope"]);
    assert!(e.contains("nope"), "{e}");
    // Three --back values, or two with --live: a bad command line.
    let r = env.run(&[
        "diff", "-A", "a", "--back", "1", "--back", "0", "--back", "2",
    ]);
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = env.run(&["diff", "-A", "a", "--live", "--back", "1", "--back", "0"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    // One snapshot: nothing to compare with, and the way on.
    let solo = World::new();
    solo.write_src("f", b"x");
    solo.new_repo("r");
    solo.new_archive("s", "r", &[&solo.src()], &[]);
    solo.ok(&["bu", "-A", "s"]);
    let e = solo.fail(&["diff", "-A", "s"]);
    assert!(e.contains("only 1 snapshot") && e.contains("--live"), "{e}");
    assert_eq!(fs_state(&env.location()), before);
    drop(t);
}

/// Decodes a path printed by `strace -xx`.
fn strace_paths(log: &str, under: &Path) -> BTreeSet<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = BTreeSet::new();
    for line in log.lines().filter(|l| l.contains("open")) {
        let Some(start) = line.find('"') else {
            continue;
        };
        let Some(len) = line[start + 1..].find('"') else {
            continue;
        };
        let quoted = &line[start + 1..start + 1 + len];
        let bytes: Option<Vec<u8>> = quoted
            .split("\\x")
            .skip(1)
            .map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        let Some(bytes) = bytes else { continue };
        let path = PathBuf::from(OsStr::from_bytes(&bytes));
        if path.starts_with(under) && !line[start + 1 + len..].contains("O_DIRECTORY") {
            out.insert(path);
        }
    }
    out
}

#[test]
fn diff_live_reads_only_files_a_backup_would_read_and_stores_nothing() {
    let env = World::new();
    let t = env.src().join("t");
    for i in 0..20 {
        write_file(&t.join(format!("f{i:02}")), &text(3000, i), 0o644);
    }
    env.new_repo("r");
    env.new_archive("a", "r", &[&t], &["-Xf", "*.tmp"]);
    settle();
    env.ok(&["bu", "-A", "a"]);
    write_file(&t.join("f03"), &text(3001, 99), 0o644);
    // Touched without a change in content: read, and shown only as U.
    let f07 = t.join("f07");
    crate::world::set_times(
        &f07,
        crate::world::ns(1_500_000_000, 0),
        crate::world::ns(1_500_000_000, 0),
    );
    write_file(&t.join("new.txt"), b"new", 0o644);
    write_file(&t.join("junk.tmp"), b"excluded", 0o644);
    fs::remove_file(t.join("f11")).unwrap();
    let before = fs_state(&env.location());
    let p = |rel: &str| format!("{}/{rel}", t.display());

    let out = env.ok(&["diff", "-A", "a", "--live"]);
    assert_eq!(
        change_lines(&out),
        [
            format!("M {}", p("f03")),
            format!("- {}", p("f11")),
            format!("+ {}", p("new.txt"))
        ],
        "{out}"
    );
    assert!(out.contains("Read:     3 files"), "{out}");
    let meta = env.ok(&["diff", "-A", "a", "--live", "--metadata", "--json"]);
    let json: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(json["new"]["live"], true);
    assert_eq!(json["new"]["files_read"], 3);
    let paths: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&p("f07").as_str()), "{meta}");
    assert_eq!(
        fs_state(&env.location()),
        before,
        "diff --live wrote to the backup location"
    );

    let has_strace = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_strace {
        eprintln!("SKIP: diff --live under strace: strace not installed");
        return;
    }
    let log = env.root().join("strace.log");
    let mut wrapper = vec![OsStr::new("strace")];
    wrapper.extend(
        [
            "-f",
            "-qq",
            "-xx",
            "-s",
            "65536",
            "-e",
            "trace=open,openat,openat2,creat",
            "-o",
        ]
        .map(OsStr::new),
    );
    wrapper.push(log.as_os_str());
    let run = env.exec(
        env.wrapped(&wrapper).args(["diff", "-A", "a", "--live"]),
        "strace diff --live",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let opened = strace_paths(&fs::read_to_string(&log).unwrap(), &t);
    let want: BTreeSet<PathBuf> = [t.join("f03"), f07, t.join("new.txt")].into();
    assert_eq!(opened, want, "only changed and new files are opened");
}

/// Replaces a snapshot file's bytes by garbage (as a disk error would).
fn damage(snapshot_dir: &Path, index: usize) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(snapshot_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("20"))
        .collect();
    files.sort();
    let f = files[index].clone();
    let mut bytes = fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..] {
        *b ^= 0x5a;
    }
    chmod(&f, 0o644);
    fs::write(&f, bytes).unwrap();
    f
}

#[test]
fn find_searches_every_snapshot_and_reports_a_damaged_one() {
    let env = World::new();
    let (x, y) = (env.src().join("x"), env.src().join("y"));
    write_file(&x.join("docs/report.odt"), b"v1", 0o644);
    write_file(&x.join("docs/notes.txt"), b"n", 0o644);
    write_file(&y.join("report.odt"), b"other", 0o600);
    env.new_repo("r");
    let xdir = env.new_archive("x", "r", &[&x], &[]);
    env.new_archive("y", "r", &[&y], &[]);
    env.ok(&["bu", "-A", "x", "-A", "y"]);
    write_file(&x.join("docs/report.odt"), b"version 2", 0o644);
    write_file(&x.join("old/report.odt"), b"v0", 0o644);
    crate::world::set_times(
        &x.join("old/report.odt"),
        crate::world::ns(1_000_000_000, 0),
        crate::world::ns(1_000_000_000, 0),
    );
    env.ok(&["bu", "-A", "x"]);
    env.ok(&["bu", "-A", "x"]);

    let out = env.ok(&["find", "-A", "x", "report.odt"]);
    let hits = out.lines().filter(|l| l.ends_with("report.odt")).count();
    assert_eq!(hits, 1 + 2 + 2, "{out}");
    assert_eq!(out.matches("Snapshot ").count(), 3, "{out}");
    // Globs with `/`: the absolute path; several patterns.
    let out = env.ok(&[
        "find",
        "-A",
        "x",
        &format!("{}/*/*.txt", x.display()),
        "nothing",
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("notes.txt")).count(),
        3,
        "{out}"
    );
    // --all and two archives agree; JSON says which archive.
    let all = env
        .run(&["find", "--all", "report.odt", "--json"])
        .code(0)
        .json();
    let two = env
        .run(&["find", "-A", "x", "-A", "y", "report.odt", "--json"])
        .code(0)
        .json();
    assert_eq!(all, two);
    let archives = all["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 2);
    let y_hit = &archives[1]["snapshots"][0]["matches"][0];
    assert_eq!(y_hit["type"], "file");
    assert_eq!(y_hit["size"], 5);
    assert_eq!(y_hit["permissions"], "-rw-------");
    assert_eq!(archives[0]["searched"], 3);
    // Times: the old file only with --newest before 2002, only the others after.
    let old = env
        .run(&[
            "find",
            "-A",
            "x",
            "report.odt",
            "--newest",
            "2002-01-01",
            "--json",
        ])
        .code(0)
        .json();
    let n: usize = old["archives"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hits"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(n, 2);
    let newer = env.ok(&[
        "find",
        "-A",
        "x",
        "report.odt",
        "--oldest",
        "2002-01-01T00:00:00Z",
    ]);
    assert_eq!(
        newer.lines().filter(|l| l.ends_with("report.odt")).count(),
        3,
        "{newer}"
    );

    // Bad input: nothing searched, one clear sentence.
    let e = env.fail(&["find", "-A", "x", "rep[ort"]);
    assert!(e.contains("`rep[ort` is not a valid glob"), "{e}");
    let e = env.fail(&["find", "-A", "x", "-A", "nope", "x"]);
    assert!(e.contains("nope"), "{e}");
    let r = env.run(&["find", "-A", "x", "x", "--newest", "someday"]);
    assert_eq!(r.code, Some(2), "{r:?}");

    // A damaged snapshot is reported and the others searched (status 3).
    let bad = damage(&xdir, 1);
    let r = env.run(&["find", "-A", "x", "report.odt"]).code(3);
    assert!(r.stderr.contains(&bad.display().to_string()), "{r:?}");
    assert_eq!(
        r.stdout
            .lines()
            .filter(|l| l.ends_with("report.odt"))
            .count(),
        1 + 2,
        "{r:?}"
    );
    let j = env
        .run(&["find", "-A", "x", "report.odt", "--json"])
        .code(3)
        .json();
    let errors: Vec<&Value> = j["archives"][0]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 1);
}

#[test]
fn history_lists_each_version_once_and_how_to_get_it_back() {
    let env = World::new();
    let t = env.src().join("t");
    let f = t.join("notes.txt");
    env.new_repo("r");
    write_file(&f, b"version A", 0o644);
    let dir = env.new_archive("a", "r", &[&t], &[]);
    for content in [
        &b"version A"[..],
        b"version A",
        b"version B!",
        b"version A",
        b"version A",
    ] {
        if fs::read(&f).unwrap() != content {
            write_file(&f, content, 0o644);
        }
        env.ok(&["bu", "-A", "a"]);
    }
    let out = env.ok(&["history", "-A", "a", f.to_str().unwrap()]);
    assert!(
        out.starts_with(&format!("3 versions of {} in 5 snapshots:", f.display())),
        "{out}"
    );
    assert!(out.contains("same as #1"), "{out}");
    let j = env
        .run(&["history", "-A", "a", f.to_str().unwrap(), "--json"])
        .code(0)
        .json();
    let v = j["versions"].as_array().unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(
        (
            v[0]["snapshots"].as_u64(),
            v[1]["snapshots"].as_u64(),
            v[2]["snapshots"].as_u64()
        ),
        (Some(2), Some(1), Some(2))
    );
    assert_eq!(
        (
            &v[0]["last"]["back"],
            &v[1]["last"]["back"],
            &v[2]["last"]["back"]
        ),
        (&Value::from(3), &Value::from(2), &Value::from(0))
    );
    assert_eq!(v[2]["same_as"], 0);
    assert_eq!(v[1]["size"], 10);
    // The printed command gets version 2 back.
    let cmd = v[1]["extract"].as_str().unwrap();
    assert_eq!(
        cmd,
        format!("epygibus extract -A a --back 2 --file {}", f.display())
    );
    let out_dir = env.out();
    fs::create_dir(&out_dir).unwrap();
    let mut args: Vec<&str> = cmd.split(' ').skip(1).collect();
    let into = format!("--into-dir={}", out_dir.display());
    args.push(&into);
    env.ok(&args);
    assert_eq!(fs::read(out_dir.join("notes.txt")).unwrap(), b"version B!");

    // Bad input and a damaged snapshot.
    let e = env.fail(&["history", "-A", "a", "/no/such/file"]);
    assert!(e.contains("is in none of the 5 snapshot(s)"), "{e}");
    let bad = damage(&dir, 2);
    let r = env
        .run(&["history", "-A", "a", f.to_str().unwrap(), "--json"])
        .code(3);
    assert!(r.stderr.contains(&bad.display().to_string()), "{r:?}");
    let j = r.json();
    assert_eq!(j["damaged"].as_array().unwrap().len(), 1);
    // The damaged snapshot held B: what remains is A twice, then A again.
    assert_eq!(j["versions"].as_array().unwrap().len(), 2);
}

/// restic's changes as (marker, path) and its find hits as paths.
fn restic(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("restic")
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", "test")
        .output()
        .expect("restic runs");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn diff_and_find_agree_with_restic_on_a_mutated_corpus() {
    let have = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mutate = shared_dir().join("bench/mutate-corpus.sh");
    if !have || !mutate.is_file() {
        eprintln!(
            "SKIP: restic comparison: restic or {} missing",
            mutate.display()
        );
        return;
    }
    let env = World::new();
    let t = env.src().join("corpus");
    let mut rng = crate::world::Rng::new(7);
    for d in 0..8 {
        for f in 0..40 {
            let len = rng.below(6000) as usize + 1;
            write_file(
                &t.join(format!("d{d}/sub{}/f{f:03}.txt", f % 3)),
                &text(len, d * 100 + f),
                0o644,
            );
        }
    }
    symlink("d0/sub0/f000.txt", t.join("link")).unwrap();
    let repo = env.root().join("restic");
    restic(&repo, &["init", "--quiet"]);
    env.new_repo("r");
    env.new_archive("c", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "c"]);
    restic(&repo, &["backup", "--quiet", t.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let m = Command::new(&mutate).arg(&t).arg("3").output().unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    env.ok(&["bu", "-A", "c"]);
    restic(&repo, &["backup", "--quiet", t.to_str().unwrap()]);

    let snaps: Value = serde_json::from_str(&restic(&repo, &["snapshots", "--json"])).unwrap();
    let ids: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    let theirs: BTreeSet<(String, String)> = restic(&repo, &["diff", "--json", ids[0], ids[1]])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message_type"] == "change")
        .map(|v| {
            (
                v["modifier"].as_str().unwrap().to_owned(),
                v["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let ours: BTreeSet<(String, String)> =
        env.run(&["diff", "-A", "c", "--json"]).code(0).json()["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let mut p = c["path"].as_str().unwrap().to_owned();
                if c["new"] == "dir" || (c["new"].is_null() && c["old"] == "dir") {
                    p.push('/');
                }
                (c["modifier"].as_str().unwrap().to_owned(), p)
            })
            .collect();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "epygibus diff and restic diff differ");
    let added = ours.iter().filter(|(m, _)| m == "+").count();
    assert!(
        added > 0 && ours.iter().any(|(m, _)| m == "M") && ours.iter().any(|(m, _)| m == "-"),
        "{ours:?}"
    );

    // find: the same files in both snapshots.
    for pattern in ["f01*.txt", "*.dat"] {
        let r: Value = serde_json::from_str(&restic(&repo, &["find", "--json", pattern])).unwrap();
        let theirs: BTreeSet<String> = r
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["matches"].as_array().unwrap().iter())
            .map(|m| format!("{} {}", m["path"].as_str().unwrap(), m["size"]))
            .collect();
        let o = env
            .run(&["find", "-A", "c", pattern, "--json"])
            .code(0)
            .json();
        let ours: BTreeSet<String> = o["archives"][0]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["matches"].as_array().unwrap().iter())
            .map(|m| format!("{} {}", m["path"].as_str().unwrap(), m["size"]))
            .collect();
        assert!(!ours.is_empty(), "{pattern}");
        assert_eq!(ours, theirs, "find {pattern}");
    }
}
