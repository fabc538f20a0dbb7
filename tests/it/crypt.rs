//! Encrypted repositories (`new_repo --encrypt`): nothing of the backed-up
//! files, not even a name, is readable on the backup disk; restores are
//! exact; a wrong key is refused before anything changes; Debian's `age`
//! opens every file by hand; `copy` goes between encrypted and plain
//! repositories both ways.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::world::crypt::{finds_in, new_identity, plaintext_finds};
use crate::world::lib_api::At;
use crate::world::s3::S3Server;
use crate::world::tree::listing;
use crate::world::tree::{assert_same_tree, fs_state};
use crate::world::{World, noise, settle, text};

/// Planted in file contents and names: none may be found on the disk.
const CONTENT_MARKER: &[u8] = b"CONTENT-MARKER-q7Zx";
const NAME_MARKER: &str = "NAME-MARKER-k3Wv";

/// A tree with the markers in small (packed) and large (loose) files, in
/// file and directory names and in a symlink's target; also an empty file
/// and a hard link.
fn marked_tree(w: &World) {
    let src = w.src();
    let dir = src.join(format!("dir-{NAME_MARKER}"));
    fs::create_dir_all(&dir).unwrap();
    let mut small = text(3_000, 1);
    small.extend_from_slice(CONTENT_MARKER);
    fs::write(dir.join(format!("{NAME_MARKER}.txt")), &small).unwrap();
    let mut large = text(1_500_000, 2);
    large.splice(700_000..700_000, CONTENT_MARKER.iter().copied());
    fs::write(src.join("large.txt"), &large).unwrap();
    let mut random = noise(700_000, 3);
    random.extend_from_slice(CONTENT_MARKER);
    fs::write(src.join("random.bin"), &random).unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    symlink(
        format!("dir-{NAME_MARKER}/{NAME_MARKER}.txt"),
        src.join("link"),
    )
    .unwrap();
    fs::hard_link(src.join("large.txt"), dir.join("hard")).unwrap();
}

/// An encrypted repository `r` to a new identity, and archive `a` of the
/// source tree; returns the identity file.
fn encrypted_setup(w: &World) -> PathBuf {
    let (id, public) = new_identity(w.root(), "me.txt");
    let out = w.ok(&args![
        "new_repo",
        w.loc_arg(),
        "--encrypt",
        "--recipient",
        public,
        "r"
    ]);
    assert!(out.contains("back up the key"), "{out}");
    w.ok(&args![
        "new",
        "-A",
        "a",
        "-I",
        w.src(),
        "-R",
        "r",
        w.loc_arg()
    ]);
    id
}

/// The (created) directory restores go to.
fn out_dir(w: &World) -> PathBuf {
    fs::create_dir_all(w.out()).unwrap();
    w.out()
}

/// Extracts archive `a`'s newest snapshot of `w`'s source, run by `by` (`w`
/// or `w` with other settings) with the `global` options first, and
/// asserts it is exactly the source.
fn extract_newest_exactly(by: &crate::world::Machine, w: &World, global: Vec<std::ffi::OsString>) {
    let mut list = global;
    list.extend(args![
        "extract",
        "-A",
        "a",
        "--dir",
        w.src(),
        "--into_dir",
        out_dir(w)
    ]);
    by.ok(&list);
    assert_same_tree(&w.src(), &w.out().join("src"), false, "restored");
}

fn local_key_files(w: &World) -> Vec<PathBuf> {
    fs::read_dir(w.config.join("keys"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn nothing_of_the_files_is_readable_on_the_disk_and_restores_are_exact() {
    let w = World::new();
    marked_tree(&w);
    encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    settle();
    let first_mtime = fs::metadata(w.src()).unwrap().modified().unwrap();
    fs::write(
        w.src().join("later.txt"),
        [CONTENT_MARKER, b" again"].concat(),
    )
    .unwrap();
    w.ok(&args!["bu", "-A", "a"]);
    // The format says so; items are age files of gzip, packs hold them
    // stored and named <token>.gz.age.
    let repo = w.repo_dir("r");
    let format = fs::read_to_string(repo.join("format")).unwrap();
    assert!(
        format.contains("format = 3") && format.contains("hash = blake3-keyed"),
        "{format}"
    );
    let items = w
        .run(&args!["list_content_items", "-R", "r", "--json"])
        .code(0)
        .json();
    let forms: Vec<&str> = items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["form"].as_str().unwrap())
        .collect();
    assert!(
        !forms.is_empty() && forms.iter().all(|f| *f == "age"),
        "{forms:?}"
    );
    // Names tell nothing: no plain BLAKE3 of any content appears anywhere.
    let mut needles: Vec<Vec<u8>> = vec![CONTENT_MARKER.to_vec(), NAME_MARKER.as_bytes().to_vec()];
    for f in ["large.txt", "random.bin", "empty"] {
        let bytes = fs::read(w.src().join(f)).unwrap();
        needles.push(blake3::hash(&bytes).to_hex().as_bytes().to_vec());
        needles.push(blake3::hash(&bytes).as_bytes().to_vec());
    }
    let needle_refs: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let (finds, files) = plaintext_finds(&w.location(), &needle_refs);
    assert!(finds.is_empty(), "plaintext on the backup disk: {finds:#?}");
    assert!(files >= 8, "searched only {files} files");
    // The same search finds the markers in a plain repository: the test
    // can fail.
    let plain = World::new();
    marked_tree(&plain);
    plain.ok(&args!["new_repo", plain.loc_arg(), "p"]);
    plain.ok(&args![
        "new",
        "-A",
        "a",
        "-I",
        plain.src(),
        "-R",
        "p",
        plain.loc_arg()
    ]);
    plain.ok(&args!["bu", "-A", "a"]);
    let (finds, _) = plaintext_finds(&plain.location(), &needle_refs);
    for n in [CONTENT_MARKER, NAME_MARKER.as_bytes()] {
        let n = String::from_utf8_lossy(n);
        assert!(
            finds.iter().any(|f| f.starts_with(&*n)),
            "{n} not found in a plain repository: {finds:#?}"
        );
    }
    assert!(
        finds.iter().any(|f| f.contains("(decompressed)")),
        "{finds:#?}"
    );
    // Restores are exact, from the newest and the oldest snapshot.
    extract_newest_exactly(&w, &w, args![]);
    let older = w.path("older");
    fs::create_dir(&older).unwrap();
    w.ok(&args![
        "extract",
        "-A",
        "a",
        "--back",
        "1",
        "--dir",
        w.src(),
        "--into_dir",
        &older
    ]);
    fs::remove_file(w.src().join("later.txt")).unwrap();
    fs::File::open(w.src())
        .unwrap()
        .set_modified(first_mtime)
        .unwrap();
    assert_same_tree(&w.src(), &older.join("src"), false, "older");
    let cat = w
        .run(&args!["cat", "-A", "a", w.src().join("large.txt")])
        .code(0);
    assert_eq!(
        cat.stdout_bytes,
        fs::read(w.src().join("large.txt")).unwrap()
    );
    // Check reads every item with its key.
    w.ok(&args!["check", "-R", "r", "--read-data"]);
}

#[test]
fn a_missing_or_wrong_key_is_one_sentence_and_changes_nothing() {
    let w = World::new();
    marked_tree(&w);
    let mine = encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    // This machine's copy of the repository key makes it unattended;
    // without it, the key must be given.
    let saved = local_key_files(&w);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let key_copy = w.path("repo-key.txt");
    fs::rename(&saved[0], &key_copy).unwrap();
    let before = fs_state(&w.location());
    let err = w.fail(&args!["bu", "-A", "a"]);
    assert!(err.contains("--identity"), "{err}");
    let (stranger, _) = new_identity(w.root(), "stranger.txt");
    let err = w.fail(&args!["--identity", &stranger, "bu", "-A", "a"]);
    assert!(
        err.contains("does not open") && err.contains("nothing was changed"),
        "{err}"
    );
    let err = w.fail(&args![
        "--identity",
        &stranger,
        "restore",
        "-A",
        "a",
        "--all"
    ]);
    assert!(err.contains("does not open"), "{err}");
    let err = w.fail(&args!["--identity", &stranger, "lss", "-A", "a"]);
    assert!(err.contains("does not open"), "{err}");
    assert_eq!(
        fs_state(&w.location()),
        before,
        "a refused command changed the disk"
    );
    // The user's own identity opens key.age; the repository key itself
    // works too, from the environment.
    extract_newest_exactly(&w, &w, args!["--identity", &mine]);
    let by_env = w
        .clone()
        .with_env([("EPYGIBUS_IDENTITY", key_copy.display().to_string())]);
    by_env.ok(&args!["bu", "-A", "a"]);
}

#[test]
fn a_passphrase_repository_asks_for_it_and_refuses_a_wrong_one() {
    let w = World::new();
    marked_tree(&w);
    let right = w
        .clone()
        .with_env([("EPYGIBUS_PASSPHRASE", "correct horse battery")]);
    right.ok(&args![
        "new_repo",
        w.loc_arg(),
        "--encrypt",
        "--passphrase",
        "r"
    ]);
    right.ok(&args![
        "new",
        "-A",
        "a",
        "-I",
        w.src(),
        "-R",
        "r",
        w.loc_arg()
    ]);
    right.ok(&args!["bu", "-A", "a"]);
    for f in local_key_files(&w) {
        fs::remove_file(f).unwrap();
    }
    let before = fs_state(&w.location());
    let err = w.fail(&args!["bu", "-A", "a"]);
    assert!(err.contains("EPYGIBUS_PASSPHRASE"), "{err}");
    let wrong = w.clone().with_env([("EPYGIBUS_PASSPHRASE", "tr0ub4dor")]);
    let err = wrong.fail(&args!["bu", "-A", "a"]);
    assert!(
        err.contains("passphrase does not open") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(fs_state(&w.location()), before);
    extract_newest_exactly(&right, &w, args![]);
    // Refused combinations name the way.
    let err = right.fail(&args![
        "new_repo",
        w.loc_arg(),
        "--encrypt",
        "-U",
        "--passphrase",
        "u"
    ]);
    assert!(err.contains("-U and --encrypt"), "{err}");
    let run = right
        .run(&args!["new_repo", w.loc_arg(), "--encrypt", "v"])
        .code(2);
    assert!(
        run.stderr.contains("--recipient") || run.stderr.contains("<--"),
        "{}",
        run.stderr
    );
    let err = right.fail(&args![
        "new_repo",
        w.loc_arg(),
        "--encrypt",
        "--recipient",
        "ssh-ed25519 AAAA",
        "s"
    ]);
    assert!(err.contains("age1"), "{err}");
}

fn age_cli() -> Option<PathBuf> {
    let found = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("age"))
}

fn sh(script: &str, vars: &[(&str, &Path)]) -> Vec<u8> {
    let mut c = Command::new("bash");
    c.args(["-c", &format!("set -eo pipefail; {script}")]);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn debians_age_opens_every_file_by_hand() {
    if age_cli().is_none() {
        eprintln!("SKIP: Debian's age is not installed (apt-get install age)");
        return;
    }
    let w = World::new();
    marked_tree(&w);
    let mine = encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    let repo = w.repo_dir("r");
    // Step 1: the repository key, with the user's own identity.
    let key = w.path("repo-key.txt");
    sh(
        "age -d -i \"$ID\" \"$REPO/key.age\" > \"$KEY\"",
        &[("ID", &mine), ("REPO", &repo), ("KEY", &key)],
    );
    // A loose item: age -d -i KEY FILE | zcat.
    let large = fs::read(w.src().join("large.txt")).unwrap();
    let random = fs::read(w.src().join("random.bin")).unwrap();
    let mut loose = Vec::new();
    for entry in walk(&repo.join("content")) {
        assert!(
            entry.to_string_lossy().ends_with(".gz.age"),
            "{}",
            entry.display()
        );
        loose.push(sh(
            "age -d -i \"$KEY\" \"$F\" | zcat",
            &[("KEY", &key), ("F", &entry)],
        ));
    }
    assert!(
        loose.contains(&large) && loose.contains(&random),
        "loose items differ"
    );
    // A packed item: unzip -p PACK ENTRY | age -d -i KEY | zcat.
    let small_path = w.src().join(format!("dir-{NAME_MARKER}/{NAME_MARKER}.txt"));
    let small = fs::read(&small_path).unwrap();
    let packs = walk(&repo.join("packs"));
    let mut found = false;
    for pack in &packs {
        let names = sh("unzip -Z1 \"$P\"", &[("P", pack)]);
        for name in String::from_utf8(names).unwrap().lines() {
            assert!(name.ends_with(".gz.age") && name.len() == 64 + 7, "{name}");
            let n = PathBuf::from(name);
            let got = sh(
                "unzip -p \"$P\" \"$N\" | age -d -i \"$KEY\" | zcat",
                &[("P", pack), ("N", &n), ("KEY", &key)],
            );
            found |= got == small;
        }
    }
    assert!(found, "the small file is in no pack entry");
    // A snapshot and the spec copy: the snapshot's MessagePack and the text.
    for f in walk(&w.snapshot_dir("a")) {
        let plain = if f.to_string_lossy().contains(".gz.age") {
            sh(
                "age -d -i \"$KEY\" \"$F\" | zcat",
                &[("KEY", &key), ("F", &f)],
            )
        } else {
            sh("age -d -i \"$KEY\" \"$F\"", &[("KEY", &key), ("F", &f)])
        };
        assert!(
            plain.starts_with(b"epygibus-snapshot 1\n")
                || plain.starts_with(b"epygibus archive spec 1\n"),
            "{}",
            f.display()
        );
    }
    // The local copy of the key is an identity file age takes as it is.
    let local = &local_key_files(&w)[0];
    let entry = walk(&repo.join("content")).remove(0);
    sh(
        "age -d -i \"$KEY\" \"$F\" | zcat > /dev/null",
        &[("KEY", local), ("F", &entry)],
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn copy_goes_between_encrypted_and_plain_repositories_both_ways() {
    let w = World::new();
    marked_tree(&w);
    encrypted_setup(&w);
    w.ok(&args!["new_repo", w.loc_arg(), "p"]);
    w.ok(&args![
        "new",
        "-A",
        "plain",
        "-I",
        w.src(),
        "-R",
        "p",
        w.loc_arg()
    ]);
    w.ok(&args!["bu", "-A", "plain"]);
    // A second later, so the two copies land under two names.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.ok(&args!["bu", "-A", "a"]);
    // Plain to encrypted: the plain snapshot arrives sealed, its tokens
    // keyed; encrypted to plain: back to plain BLAKE3.
    let (_, other) = new_identity(w.root(), "other.txt");
    w.ok(&args![
        "new_repo",
        w.loc_arg(),
        "--encrypt",
        "--recipient",
        other,
        "e2"
    ]);
    w.ok(&args![
        "new",
        "-A",
        "sealed-copy",
        "-I",
        w.src(),
        "-R",
        "e2",
        w.loc_arg()
    ]);
    w.ok(&args!["copy", "-A", "plain", "--to-archive", "sealed-copy"]);
    w.ok(&args!["new_repo", w.loc_arg(), "p2"]);
    w.ok(&args![
        "new",
        "-A",
        "plain-copy",
        "-I",
        w.src(),
        "-R",
        "p2",
        w.loc_arg()
    ]);
    w.ok(&args!["copy", "-A", "a", "--to-archive", "plain-copy"]);
    w.ok(&args!["copy", "-A", "a", "--to-archive", "sealed-copy"]);
    let snap = w.newest("plain-copy");
    let large = fs::read(w.src().join("large.txt")).unwrap();
    assert!(
        snap.root
            .tokens()
            .iter()
            .any(|t| t.as_bytes() == blake3::hash(&large).as_bytes()),
        "the plain copy's tokens are plain BLAKE3"
    );
    let rel = PathBuf::from("src");
    for (archive, back) in [
        ("plain-copy", "0"),
        ("sealed-copy", "0"),
        ("sealed-copy", "1"),
    ] {
        let out = w.path(&format!("out-{archive}-{back}"));
        fs::create_dir(&out).unwrap();
        w.ok(&args![
            "extract",
            "-A",
            archive,
            "--back",
            back,
            "--dir",
            w.src(),
            "--into_dir",
            &out
        ]);
        assert_same_tree(
            &w.src(),
            &out.join(&rel),
            false,
            &format!("{archive} --back {back}"),
        );
    }
    w.ok(&args!["check", "-R", "e2", "--read-data"]);
    w.ok(&args!["check", "-R", "p2", "--read-data"]);
    let (finds, _) = plaintext_finds(&w.repo_dir("e2"), &[CONTENT_MARKER, NAME_MARKER.as_bytes()]);
    assert!(finds.is_empty(), "{finds:#?}");
}

#[test]
fn a_snapshot_directory_alone_restores_with_the_identity() {
    let w = World::new();
    marked_tree(&w);
    let mine = encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    // Another machine: no configuration, no local key.
    let m = w.machine("rescuer");
    let dir = w.snapshot_dir("a");
    let err = m.fail(&args!["lss", "-E", &dir]);
    assert!(err.contains("--identity"), "{err}");
    let lss = m.ok(&args![
        "--identity",
        &mine,
        "lss",
        "-E",
        &dir,
        "--build_stats"
    ]);
    assert!(lss.contains("FILES") && lss.lines().count() == 2, "{lss}");
    m.ok(&args![
        "--identity",
        &mine,
        "extract",
        "-E",
        &dir,
        "--dir",
        w.src(),
        "--into_dir",
        out_dir(&w)
    ]);
    assert_same_tree(&w.src(), &w.out().join("src"), false, "rescued");
}

#[test]
fn the_whole_flow_works_encrypted_in_a_bucket() {
    let w = World::new();
    let Some(s3) = S3Server::up(
        "the_whole_flow_works_encrypted_in_a_bucket",
        &w.path("s3-rig"),
    ) else {
        return;
    };
    let m = crate::s3::s3_machine(&w, &s3.vars);
    let loc = format!("--location={}", s3.url("sealed"));
    let (id, public) = new_identity(w.root(), "me.txt");
    m.ok(&args![
        "new_repo",
        &loc,
        "--encrypt",
        "--recipient",
        public,
        "home"
    ]);
    let src = w.src();
    crate::s3::make_tree(&src, 1);
    marked_tree(&w);
    settle();
    let first = listing(&src);
    m.ok(&args!["new", "-A", "docs", "-I", &src, "-R", "home", &loc]);
    m.ok(&args!["bu", "-A", "docs"]);
    crate::s3::extract_exact(&m, &w, "docs", &src, 0, &first);
    fs::write(
        src.join("docs/a.txt"),
        [CONTENT_MARKER, b" changed"].concat(),
    )
    .unwrap();
    settle();
    let second = listing(&src);
    m.ok(&args!["bu", "-A", "docs"]);
    crate::s3::extract_exact(&m, &w, "docs", &src, 1, &first);
    crate::s3::extract_exact(&m, &w, "docs", &src, 0, &second);
    // Every object of the prefix, as any S3 client fetches it.
    let bucket = At {
        location: &s3.url("sealed"),
        vars: &s3.vars,
    };
    let names = bucket.objects("");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(".gz.age") && n.contains("/snapshots/")),
        "{names:#?}"
    );
    assert!(names.iter().any(|n| n.contains("/packs/")), "{names:#?}");
    let mut finds = Vec::new();
    for name in &names {
        finds.extend(finds_in(
            name,
            &bucket.object(name),
            &[CONTENT_MARKER, NAME_MARKER.as_bytes()],
        ));
    }
    assert!(finds.is_empty(), "plaintext in the bucket: {finds:#?}");
    // del, prune, check with the key; and without this machine's key copy,
    // the user's identity.
    m.ok(&["del", "-A", "docs"]);
    let out = m.ok(&["prune", "-R", "home"]);
    assert!(out.contains("Removed "), "{out}");
    m.run(&["check", "-R", "home", "--read-data"]).code(0);
    for f in local_key_files(&w) {
        fs::remove_file(f).unwrap();
    }
    m.fail(&["lss", "-A", "docs"]);
    m.ok(&args![
        "--identity",
        &id,
        "check",
        "-A",
        "docs",
        "--read-data"
    ]);
    let into = w.path("again");
    fs::create_dir(&into).unwrap();
    m.ok(&args![
        "--identity",
        &id,
        "extract",
        "-A",
        "docs",
        "--dir",
        &src,
        "--into_dir",
        &into
    ]);
    crate::world::tree::assert_same_listing(
        &second,
        &listing(&into.join("src")),
        "extract with the identity",
    );
}

#[test]
fn another_machine_attaches_an_encrypted_location_with_the_identity() {
    let w = World::new();
    marked_tree(&w);
    let mine = encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    let m = w.machine("other");
    m.run(&args!["--identity", &mine, "attach", w.loc_arg()])
        .code(0);
    let lss = m.ok(&args!["--identity", &mine, "lss", "-A", "a"]);
    assert_eq!(lss.lines().count(), 1, "{lss}");
    let into = w.path("other-out");
    fs::create_dir(&into).unwrap();
    m.ok(&args![
        "--identity",
        &mine,
        "extract",
        "-A",
        "a",
        "--dir",
        w.src(),
        "--into_dir",
        &into
    ]);
    assert_same_tree(
        &w.src(),
        &into.join("src"),
        false,
        "extracted on the other machine",
    );
    // Without the identity, that machine reads nothing.
    let err = m.fail(&args!["lss", "-A", "a"]);
    assert!(err.contains("--identity"), "{err}");
}

#[test]
fn a_damaged_encrypted_snapshot_is_set_aside() {
    let w = World::new();
    marked_tree(&w);
    for i in 0..300 {
        fs::write(w.src().join(format!("f{i:03}")), text(100, i)).unwrap();
    }
    encrypted_setup(&w);
    w.ok(&args!["bu", "-A", "a"]);
    let dir = w.snapshot_dir("a");
    let sealed: Vec<PathBuf> = walk(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".gz.age"))
        .collect();
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    let bytes = fs::read(&sealed[0]).unwrap();
    fs::write(&sealed[0], &bytes[..bytes.len() - 40]).unwrap();
    let err = w.fail(&args!["prune", "-R", "r"]);
    assert!(err.contains("--repair") && err.contains(".gz.age"), "{err}");
    let repair = w.run(&args!["check", "-A", "a", "--repair"]);
    assert!(
        matches!(repair.code, Some(0) | Some(4)),
        "{}",
        repair.describe()
    );
    let names: Vec<String> = walk(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".gz.damaged.age")),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.ends_with(".age")), "{names:?}");
    w.ok(&args!["prune", "-R", "r"]);
}
