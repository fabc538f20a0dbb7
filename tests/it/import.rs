//! `import`: the original Python epygibus's backups (the fixtures in
//! `../shared/fixtures/original-epygibus`, or `$EPYGIBUS_SHARED`, written
//! by the original program) brought into an archive here, compared with
//! the source tree they were taken of; and every kind of bad input.
//!
//! What the original recorded, and so what is compared: file bytes (by
//! SHA-1 content files), mode, owner, size, inode, device and link count,
//! and atime, mtime and ctime in whole seconds (`os.lstat()[:10]`), for
//! files, directories below `/` and symlinks (and the symlink target). It
//! recorded no attributes for `/`, no sub-second times, no extended
//! attributes or ACLs, and skipped broken symlinks unless the archive kept
//! them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::world::{World, rigs, tree};

const DOCS: &str = "mnt/nas/epygibus.d/snapshots/oldbox/alice/docs";
const MAIN: &str = "mnt/nas/epygibus.d/repos/alice/main";
const CONFIG: &str = "home/alice/.config/epygibus.d";
const FIRST: &str = "2026-12-02-05-06-53";
const SECOND: &str = "2026-12-02-05-06-54";

/// The fixture directory, or None after printing `SKIP: test: …`.
pub fn fixtures(test: &str) -> Option<PathBuf> {
    let dir = rigs::shared_dir().join("fixtures/original-epygibus");
    if dir.join("store-and-config.tar.gz").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: {test}: fixtures of the original epygibus not found at {} (set EPYGIBUS_SHARED)",
            dir.display()
        );
        None
    }
}

fn untar(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar runs");
    assert!(st.success(), "tar xzf {}", archive.display());
}

/// Unpacks the fixtures into the world: `orig` (the original's disk and
/// configuration) and `source` (the tree at the second backup).
pub fn unpack(w: &World, test: &str) -> Option<(PathBuf, PathBuf)> {
    let fx = fixtures(test)?;
    let (orig, source) = (w.path("orig"), w.path("source"));
    untar(&fx.join("store-and-config.tar.gz"), &orig);
    untar(&fx.join("source-tree-at-second-backup.tar.gz"), &source);
    Some((orig, source))
}

fn stamps(w: &World, archive: &str) -> Vec<String> {
    w.snapshot_names(archive)
        .iter()
        .map(|n| n.stamp())
        .collect()
}

fn archive_count(w: &World) -> usize {
    let la = w.run(&["la", "--json"]).code(0).json();
    la["archives"].as_array().map_or(0, Vec::len)
}

fn make_writable(path: &Path) {
    crate::world::chmod(path, 0o644);
}

#[test]
fn import_gives_the_source_tree_back_and_changes_nothing_of_the_original() {
    let w = World::new();
    let Some((orig, source)) = unpack(&w, "import_gives_the_source_tree_back") else {
        return;
    };
    let before = tree::listing(&orig);
    w.new_repo("home");
    let docs = orig.join(DOCS);
    let out = w.ok(&args![
        "import", "-E", &docs, "-A", "docs", "-R", "home", "--tz", "UTC"
    ]);
    assert!(out.contains("2 snapshot(s) imported"), "{out}");
    // Same times: the names read in UTC, the zone of the machine that made them.
    assert_eq!(stamps(&w, "docs"), [FIRST, SECOND]);
    fs::create_dir(w.out()).unwrap();
    w.ok(&args![
        "extract",
        "-A",
        "docs",
        "--dir",
        "/home/alice/docs",
        "--into-dir",
        w.out()
    ]);
    tree::assert_same_tree(
        &source.join("docs"),
        &w.out().join("docs"),
        false,
        "the newest imported snapshot against the source tree",
    );
    // The first snapshot still has random.bin, with the SHA-1 the README gives.
    let random = w.run(&args![
        "cat",
        "-A",
        "docs",
        "--back",
        "1",
        "/home/alice/docs/random.bin"
    ]);
    let random = random.code(0).stdout_bytes;
    assert_eq!(random.len(), 200_000);
    assert_eq!(
        epygibus::legacy::sha1::Sha1Hex::of(&random).to_hex(),
        "1eb2bb9856b1a1d9c85984ae64b514cd18e0d50f"
    );
    // Attributes as the original recorded them, in nanoseconds.
    let snap = w.newest("docs");
    let docs_dir = crate::world::snapshot::dir_at(&snap.root, Path::new("/home/alice/docs"));
    let (
        Some(epygibus::snapshot::model::Node::File(hello)),
        Some(epygibus::snapshot::model::Node::Dir(sub)),
    ) = (docs_dir.get(b"hello.txt"), docs_dir.get(b"sub"))
    else {
        panic!("hello.txt or sub missing");
    };
    assert_eq!(hello.attrs.mtime_ns, 1_433_160_000_000_000_000);
    assert_eq!(hello.attrs.nlink, 2);
    let Some(epygibus::snapshot::model::Node::File(hard)) = sub.get(b"hard-hello") else {
        panic!("sub/hard-hello missing");
    };
    assert_eq!(
        (hard.attrs.ino, hard.attrs.dev),
        (hello.attrs.ino, hello.attrs.dev)
    );
    assert!(
        sub.get(b"broken-link").is_some(),
        "docs kept its broken symlink"
    );
    w.assert_ref_counts("home", &["docs"], &[], "after the import");
    tree::assert_same_listing(&before, &tree::listing(&orig), "the original's files");

    // Running it again imports nothing and writes nothing.
    let repo = w.repo_dir("home");
    let (snaps_before, repo_before) = (
        tree::fs_state(&w.snapshot_dir("docs")),
        tree::fs_state(&repo),
    );
    let again = w.ok(&args!["import", "-E", &docs, "-A", "docs", "--tz", "UTC"]);
    assert!(
        again.contains("0 snapshot(s) imported, 2 imported before"),
        "{again}"
    );
    tree::assert_same_state(
        &snaps_before,
        &tree::fs_state(&w.snapshot_dir("docs")),
        "snapshots",
    );
    tree::assert_same_state(&repo_before, &tree::fs_state(&repo), "repository");
}

#[test]
fn import_names_snapshots_by_the_zone_given() {
    if !Path::new("/usr/share/zoneinfo/Australia/Sydney").is_file() {
        eprintln!("SKIP: import_names_snapshots_by_the_zone_given: no time zone data here");
        return;
    }
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "import_names_snapshots_by_the_zone_given") else {
        return;
    };
    w.new_repo("home");
    let docs = orig.join(DOCS);
    let tz = ["--tz", "Australia/Sydney"];
    w.ok(&args![
        "import", "-E", &docs, "-A", "syd", "-R", "home", tz[0], tz[1]
    ]);
    // 05:06 in Sydney (UTC+11 in December) is 18:06 UTC the day before.
    assert_eq!(
        stamps(&w, "syd"),
        ["2026-12-01-18-06-53", "2026-12-01-18-06-54"]
    );
    let bad = w.fail(&args![
        "import",
        "-E",
        &docs,
        "-A",
        "x",
        "--tz",
        "Mars/Olympus"
    ]);
    assert!(bad.contains("Mars/Olympus"), "{bad}");
}

#[test]
fn import_of_the_configuration_brings_every_archive() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "import_of_the_configuration_brings_every_archive") else {
        return;
    };
    w.new_repo("home");
    let config = orig.join(CONFIG);
    // Where the configuration says the disk is, nothing is: reported.
    let run = w.run(&args![
        "import",
        "--original-config",
        &config,
        "-R",
        "home",
        "--tz",
        "UTC"
    ]);
    let run = run
        .code(3)
        .stderr_has("/mnt/nas/epygibus.d/snapshots/oldbox/alice/docs");
    assert!(run.stderr.contains("--mounted-at"), "{run:?}");
    assert_eq!(archive_count(&w), 0, "nothing created");
    let disk = orig.join("mnt/nas");
    let out = w.ok(&args![
        "import",
        "--original-config",
        &config,
        "--mounted-at",
        &disk,
        "-R",
        "home",
        "--tz",
        "UTC"
    ]);
    assert!(
        out.contains("`docs`") && out.contains("`subplain`"),
        "{out}"
    );
    assert_eq!(stamps(&w, "subplain"), [FIRST, "2026-12-02-05-06-55"]);
    let show = w.ok(&["show", "-A", "subplain"]);
    assert!(show.contains("/home/alice/docs/sub"), "{show}");
    // subplain was made without --keep_broken_soft_links: the original
    // left the broken symlink out.
    let listed = w.ok(&["ls", "-A", "subplain", "/home/alice/docs/sub"]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["deeper/", "hard-hello", "numbers.txt"]
    );
    w.assert_ref_counts("home", &["docs", "subplain"], &[], "after importing both");
}

/// Imports the (changed) fixture docs archive; returns the run.
fn import_docs(w: &World, orig: &Path) -> crate::world::Run {
    w.new_repo("home");
    w.run(&args![
        "import",
        "-E",
        orig.join(DOCS),
        "-A",
        "docs",
        "-R",
        "home",
        "--tz",
        "UTC"
    ])
}

#[test]
fn a_truncated_snapshot_is_skipped_and_named() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "a_truncated_snapshot_is_skipped_and_named") else {
        return;
    };
    let newest = orig.join(DOCS).join(format!("{SECOND}.pkl.gz"));
    make_writable(&newest);
    let bytes = fs::read(&newest).unwrap();
    fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let run = import_docs(&w, &orig).code(3);
    run.stderr_has(&newest.display().to_string());
    assert_eq!(stamps(&w, "docs"), [FIRST]);
    w.assert_ref_counts("home", &["docs"], &[], "after a skipped snapshot");
}

#[test]
fn a_pickle_naming_other_classes_is_refused_and_never_run() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "a_pickle_naming_other_classes") else {
        return;
    };
    let marker = w.path("PWNED");
    let cmd = format!("touch {}", marker.display());
    // pickle.dumps of os.system(cmd) by reduce, protocol 2.
    let mut evil = b"\x80\x02cposix\nsystem\nX".to_vec();
    evil.extend((cmd.len() as u32).to_le_bytes());
    evil.extend(cmd.as_bytes());
    evil.extend(b"\x85R.");
    let file = orig.join(DOCS).join("2026-12-02-05-07-00.pkl");
    fs::write(&file, &evil).unwrap();
    let run = import_docs(&w, &orig).code(3);
    let run = run.stderr_has(&file.display().to_string());
    assert!(run.stderr.contains("posix.system"), "{run:?}");
    assert!(!marker.exists(), "the pickle's code ran");
    assert_eq!(stamps(&w, "docs"), [FIRST, SECOND]);
    // Reading it directly refuses it the same way.
    let run = w.run(&args!["ls", "-E", orig.join(DOCS), "/"]).code(1);
    assert!(run.stderr.contains("posix.system"), "{run:?}");
    assert!(!marker.exists(), "the pickle's code ran");
}

#[test]
fn missing_content_skips_the_snapshots_that_need_it() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "missing_content_skips") else {
        return;
    };
    // random.bin is only in the first snapshot.
    let gone = orig
        .join(MAIN)
        .join("1/eb/2bb9856b1a1d9c85984ae64b514cd18e0d50f.gz");
    fs::remove_file(&gone).unwrap();
    let run = import_docs(&w, &orig).code(3);
    let run = run.stderr_has(&format!("{FIRST}.pkl.gz was not imported"));
    assert!(
        run.stderr
            .contains("1/eb/2bb9856b1a1d9c85984ae64b514cd18e0d50f"),
        "{run:?}"
    );
    assert!(run.stderr.contains("random.bin"), "{run:?}");
    assert_eq!(stamps(&w, "docs"), [SECOND]);
    w.assert_ref_counts("home", &["docs"], &[], "after a skipped snapshot");
}

#[test]
fn content_not_matching_its_sha1_is_refused() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "content_not_matching_its_sha1") else {
        return;
    };
    // run.sh's content, in both snapshots, replaced by other gzip data.
    let damaged = orig
        .join(MAIN)
        .join("b/2b/62c101a156f5f12dd7197cf7ae9424164b115.gz");
    make_writable(&damaged);
    let other = fs::read(
        orig.join(MAIN)
            .join("d/2f/52bc4406898fc722c0b4e314f9b46fc85cde4.gz"),
    )
    .unwrap();
    fs::write(&damaged, other).unwrap();
    let run = import_docs(&w, &orig).code(3);
    let run = run.stderr_has(&damaged.display().to_string());
    assert!(run.stderr.contains("does not match its SHA-1"), "{run:?}");
    assert_eq!(stamps(&w, "docs"), Vec::<String>::new());
    w.assert_ref_counts("home", &["docs"], &[], "nothing counted");
    // Read directly, the damaged file is left out and named.
    fs::create_dir(w.out()).unwrap();
    let run = w.run(&args![
        "extract",
        "-E",
        orig.join(DOCS),
        "--dir",
        "/home/alice/docs",
        "--into-dir",
        w.out()
    ]);
    run.code(3).stderr_has("run.sh");
    assert!(w.out().join("docs/hello.txt").is_file());
    assert!(!w.out().join("docs/run.sh").exists());
    let cat = w.run(&args![
        "cat",
        "-E",
        orig.join(DOCS),
        "/home/alice/docs/run.sh"
    ]);
    cat.code(1).stderr_has("does not match its SHA-1");
}

#[test]
fn a_directory_that_is_not_the_originals_is_refused() {
    let w = World::new();
    w.new_repo("home");
    for dir in [w.src(), w.path("nonexistent")] {
        let err = w.fail(&args!["import", "-E", &dir, "-A", "docs", "-R", "home"]);
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }
    // This epygibus's own snapshot directory is not the original's either.
    w.write_src("a", b"a");
    let ours = w.new_archive("mine", "home", &[&w.src()], &[]);
    w.ok(&["bu", "-A", "mine"]);
    let err = w.fail(&args!["import", "-E", &ours, "-A", "docs", "-R", "home"]);
    assert!(err.contains("holds no snapshots of the original"), "{err}");
    assert_eq!(archive_count(&w), 1, "no archive created");
}

#[test]
fn a_repository_nowhere_to_be_found_is_named() {
    let w = World::new();
    let Some((orig, _)) = unpack(&w, "a_repository_nowhere_to_be_found") else {
        return;
    };
    fs::rename(orig.join(MAIN), w.path("elsewhere")).unwrap();
    let run = import_docs(&w, &orig).code(3);
    run.stderr_has("/mnt/nas/epygibus.d/repos/alice/main");
    assert_eq!(stamps(&w, "docs"), Vec::<String>::new());
}

#[test]
fn original_snapshots_read_directly() {
    let w = World::new();
    let Some((orig, source)) = unpack(&w, "original_snapshots_read_directly") else {
        return;
    };
    let docs = orig.join(DOCS);
    assert_eq!(
        w.ok(&args!["lss", "-E", &docs]).lines().collect::<Vec<_>>(),
        [format!("{FIRST}**"), format!("{SECOND}**")]
    );
    let stats = w.ok(&args!["lss", "-E", &docs, "--build_stats"]);
    assert!(
        stats.contains("301.7 KiB") && stats.contains("106.4 KiB"),
        "{stats}"
    );
    let storage = w
        .run(&args!["lss", "-E", &docs, "--storage-stats", "--json"])
        .code(0)
        .json();
    assert_eq!(storage["snapshots"][0]["storage_stats"]["content_items"], 5);
    let ls = w.ok(&args!["ls", "-E", &docs, "--back", "1", "/home/alice/docs"]);
    assert!(
        ls.contains("random.bin") && ls.contains("link-to-hello -> hello.txt"),
        "{ls}"
    );
    let cat = w
        .run(&args![
            "cat",
            "-E",
            &docs,
            "/home/alice/docs/sub/numbers.txt"
        ])
        .code(0);
    assert_eq!(
        cat.stdout_bytes,
        fs::read(source.join("docs/sub/numbers.txt")).unwrap()
    );
    fs::create_dir(w.out()).unwrap();
    w.ok(&args![
        "extract",
        "-E",
        &docs,
        "--dir",
        "/home/alice/docs",
        "--into-dir",
        w.out()
    ]);
    tree::assert_same_tree(
        &source.join("docs"),
        &w.out().join("docs"),
        false,
        "extract -E",
    );
    assert_eq!(archive_count(&w), 0, "reading created nothing");
}
