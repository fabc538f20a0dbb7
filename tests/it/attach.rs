//! `attach` and the spec kept beside the snapshots (issue 18): after a
//! reinstall the backup disk alone sets the configuration up again and
//! `bu` continues the series reading no unchanged file; another host's
//! archive is read-only until adopted; a second machine shares a
//! repository; bad input changes nothing. The SMB two-client case is in
//! `rigs.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::world::files::write_file;
use crate::world::tree::{assert_same_listing, assert_same_state, fs_state, listing};
use crate::world::{Machine, World, chmod, settle, text};

/// A tree with an excluded directory and excluded files.
fn docs_tree(env: &World) -> PathBuf {
    let t = env.src().join("docs");
    write_file(&t.join("a.txt"), &text(3000, 1), 0o644);
    write_file(&t.join("sub/b.txt"), &text(5000, 2), 0o600);
    write_file(&t.join("sub/c.odt"), &text(7000, 3), 0o644);
    write_file(&t.join("cache/junk"), b"left out\n", 0o644);
    write_file(&t.join("sub/x.o"), b"left out too\n", 0o644);
    t
}

fn loc(dir: &Path) -> String {
    format!("--location={}", dir.display())
}

/// The one backup of `bu --stats --json -A archive`.
fn bu_json(m: &Machine, archive: &str) -> serde_json::Value {
    let out = m.ok(&["bu", "--stats", "--json", "-A", archive]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["backups"][0].clone()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

/// The spec generation files of a snapshot directory, sorted.
fn spec_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("spec."))
        .collect();
    v.sort();
    v
}

fn newest_spec_text(dir: &Path) -> String {
    let name = spec_files(dir).pop().expect("a spec copy");
    String::from_utf8_lossy(&fs::read(dir.join(name)).unwrap()).into_owned()
}

/// Empties a machine's configuration (a reinstall).
fn lose_config(m: &Machine) {
    fs::remove_dir_all(&m.config).unwrap();
    fs::create_dir(&m.config).unwrap();
}

/// `show --json` without the snapshots (which grow).
fn shown(m: &Machine, archive: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(&m.ok(&["show", "--json", "-A", archive])).unwrap();
    v.as_object_mut().unwrap().remove("snapshots");
    v
}

/// Extracts snapshot `back` of `dir` (an include) into a fresh directory
/// and returns the extracted tree's listing.
fn extracted(
    m: &Machine,
    world: &World,
    archive: &str,
    back: i64,
    dir: &Path,
) -> crate::world::tree::Listing {
    let into = tempfile::Builder::new()
        .prefix("x.")
        .tempdir_in(world.root())
        .unwrap();
    m.ok(&[
        "extract".to_owned(),
        "-A".into(),
        archive.into(),
        format!("--back={back}"),
        "--dir".into(),
        dir.display().to_string(),
        "--into-dir".into(),
        into.path().display().to_string(),
    ]);
    listing(&into.path().join(dir.file_name().unwrap()))
}

/// The source as a snapshot of it holds it (the excluded entries gone).
fn without_excluded(src: &Path) -> crate::world::tree::Listing {
    let mut want = listing(src);
    want.retain(|p, _| !(p.starts_with("cache") || p.extension().is_some_and(|e| e == "o")));
    want
}

#[test]
fn reinstall_attach_then_bu_continues_the_series() {
    let env = World::new();
    env.new_repo("home");
    let t = docs_tree(&env);
    let snapdir = env.new_archive(
        "docs",
        "home",
        &[&t],
        &["-Xd", "cache", "-Xf", "*.o", "--keep-broken-soft-links"],
    );
    // `new` keeps the spec beside the snapshots, generation 1.
    assert_eq!(spec_files(&snapdir), ["spec.000000000001"]);
    let copy = newest_spec_text(&snapdir);
    for want in [
        "archive = docs\n",
        "repo = home\n",
        "keep_broken_soft_links = true\n",
        "[excluded_dirs]\ncache\n",
        "[excluded_files]\n*.o\n",
        &format!("[includes]\n{}\n", t.display()),
    ] {
        assert!(copy.contains(want), "no {want:?} in\n{copy}");
    }
    // A key this epygibus does not know (a retention rule, say) is
    // copied as it is: the next bu writes generation 2 with it.
    let spec = env.config.join("archives/docs/spec");
    let mut text_now = fs::read_to_string(&spec).unwrap();
    text_now.push_str("keep_daily = 7\n");
    fs::write(&spec, text_now).unwrap();
    settle();
    let first = bu_json(&env, "docs");
    assert_eq!(num(&first, "files_read"), 3);
    assert_eq!(spec_files(&snapdir), ["spec.000000000002"]);
    assert!(newest_spec_text(&snapdir).contains("\nkeep_daily = 7\n"));
    let before = shown(&env, "docs");

    // The machine is reinstalled: the configuration is gone.
    lose_config(&env);
    let err = env.fail(&["bu", "-A", "docs"]);
    assert!(err.contains("no archive named `docs`"), "{err}");
    let err = env.fail(&["new_repo", &env.loc_arg(), "home"]);
    assert!(err.contains("already exists"), "{err}");
    assert!(
        err.contains(&format!("epygibus attach {} -R home", env.loc_arg())),
        "{err}"
    );
    let t_arg = t.display().to_string();
    let err = env.fail(&[
        "new",
        "-A",
        "docs",
        "-I",
        &t_arg,
        "-R",
        "home",
        &env.loc_arg(),
    ]);
    assert!(
        err.contains(&format!("epygibus attach {} -R home", env.loc_arg())),
        "{err}"
    );

    // The repository first: the archive is listed, not attached.
    let out = env.ok(&["attach", &env.loc_arg(), "-R", "home"]);
    assert!(out.contains("home (attached now)"), "{out}");
    assert!(out.contains("- (not asked for)"), "{out}");
    assert!(
        out.contains("Attached 1 repository and 0 archives."),
        "{out}"
    );
    let err = env.fail(&[
        "new",
        "-A",
        "docs",
        "-I",
        &t_arg,
        "-R",
        "home",
        &env.loc_arg(),
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert!(
        err.contains(&format!("epygibus attach {} -A docs", env.loc_arg())),
        "{err}"
    );

    // Then everything: the archive comes back as it was configured.
    let out = env.ok(&["attach", &env.loc_arg()]);
    assert!(out.contains("home (already attached)"), "{out}");
    assert!(out.contains("docs (attached now)"), "{out}");
    assert!(!out.contains("read-only"), "{out}");
    assert_eq!(shown(&env, "docs"), before);
    let config_text = fs::read_to_string(&spec).unwrap();
    assert!(config_text.contains("\nkeep_daily = 7\n"), "{config_text}");

    // bu continues the series from the newest snapshot: nothing is read.
    let second = bu_json(&env, "docs");
    assert_eq!(num(&second, "files_read"), 0, "{second}");
    assert_eq!(num(&second, "new_items"), 0, "{second}");
    assert_eq!(
        spec_files(&snapdir),
        ["spec.000000000002"],
        "nothing changed"
    );
    let lss = env.lss("docs", &[]);
    assert_eq!(lss.len(), 2, "{lss:?}");
    let want = without_excluded(&t);
    for back in [0, 1] {
        assert_same_listing(
            &want,
            &extracted(&env, &env, "docs", back, &t),
            &format!("snapshot --back={back}"),
        );
    }
    // restore puts a lost file back exactly.
    let lost = t.join("sub/b.txt");
    let lost_before = listing(&t).remove(Path::new("sub/b.txt")).unwrap();
    fs::remove_file(&lost).unwrap();
    env.ok(&["restore", "-A", "docs", "--file", lost.to_str().unwrap()]);
    let restored = listing(&t).remove(Path::new("sub/b.txt")).unwrap();
    assert_eq!(
        (&restored.kind, restored.mode, restored.mtime_ns),
        (&lost_before.kind, lost_before.mode, lost_before.mtime_ns),
        "restored exactly"
    );

    // A second attach finds everything configured and changes nothing.
    let state = fs_state(env.root());
    let out = env.ok(&["attach", &env.loc_arg()]);
    assert!(out.contains("Nothing new to attach"), "{out}");
    assert_same_state(&state, &fs_state(env.root()), "a second attach");

    // Housekeeping works on the attached archive and repository.
    env.ok(&["del", "-A", "docs", "--back=-1"]);
    env.ok(&["prune", "-R", "home"]);
    env.ok(&["check", "-A", "docs"]);
    env.ok(&["check", "-R", "home"]);
    env.assert_ref_counts("home", &["docs"], &[], "after del and prune");
}

#[test]
fn edit_writes_a_new_spec_generation_and_a_damaged_one_is_skipped() {
    let env = World::new();
    env.new_repo("home");
    let t = docs_tree(&env);
    let snapdir = env.new_archive("docs", "home", &[&t], &["-Xd", "cache"]);
    let editor = env.root().join("add-glob.sh");
    fs::write(&editor, "#!/bin/sh\nprintf '%s\\n' '*.o' >> \"$1\"\n").unwrap();
    chmod(&editor, 0o755);
    let run = env.exec(
        env.cmd()
            .env("EDITOR", &editor)
            .args(["edit", "--excluded-files", "-A", "docs"]),
        "edit",
    );
    run.code(0).quiet();
    assert_eq!(spec_files(&snapdir), ["spec.000000000002"]);
    assert!(newest_spec_text(&snapdir).contains("[excluded_files]\n*.o\n"));

    // A torn newer generation (a crash mid-write on a disk that does not
    // keep the rename order) is skipped by readers and left alone.
    let torn = snapdir.join("spec.000000000003");
    let whole = fs::read(snapdir.join("spec.000000000002")).unwrap();
    fs::write(&torn, &whole[..whole.len() / 2]).unwrap();
    lose_config(&env);
    let out = env.ok(&["attach", &env.loc_arg()]);
    assert!(out.contains("docs (attached now)"), "{out}");
    assert!(
        out.contains("spec.000000000003") && out.contains("incomplete"),
        "{out}"
    );
    let excluded = fs::read_to_string(env.config.join("archives/docs/excluded_files")).unwrap();
    assert!(excluded.lines().any(|l| l == "*.o"), "{excluded}");
    settle();
    let b = bu_json(&env, "docs");
    assert_eq!(num(&b, "files_read"), 3);
    assert!(torn.exists(), "the damaged generation is never removed");
}

#[test]
fn archive_without_a_spec_copy_is_attached_read_only_from_its_snapshots() {
    let env = World::new();
    env.new_repo("home");
    let t = docs_tree(&env);
    let snapdir = env.new_archive("docs", "home", &[&t], &["-Xd", "cache", "-Xf", "*.o"]);
    settle();
    env.ok(&["bu", "-A", "docs"]);
    // As an archive made before epygibus kept spec copies.
    for f in spec_files(&snapdir) {
        fs::remove_file(snapdir.join(f)).unwrap();
    }
    lose_config(&env);
    let out = env.ok(&["attach", &env.loc_arg()]);
    assert!(out.contains("docs (attached now, read-only)"), "{out}");
    assert!(out.contains("no complete spec copy"), "{out}");
    let state = fs_state(env.root());
    let err = env.fail(&["bu", "-A", "docs"]);
    assert!(
        err.contains("read-only") && err.contains("--adopt"),
        "{err}"
    );
    assert_same_state(&state, &fs_state(env.root()), "a refused bu");
    // Reading works.
    assert_eq!(env.lss("docs", &[]).len(), 1);
    assert_same_listing(
        &without_excluded(&t),
        &extracted(&env, &env, "docs", 0, &t),
        "read-only extract",
    );
    // Adopting takes responsibility: its includes are the snapshot's, and
    // bu writes the spec copy again.
    let out = env.ok(&["attach", &env.loc_arg(), "-A", "docs", "--adopt"]);
    assert!(out.contains("docs (adopted now)"), "{out}");
    // Its exclude globs were not known: what they left out is read now.
    let b = bu_json(&env, "docs");
    assert_eq!(num(&b, "files_read"), 2, "{b}");
    assert_eq!(spec_files(&snapdir), ["spec.000000000001"]);
}

#[test]
fn another_hosts_archive_is_read_only_until_adopted() {
    if !Machine::can_rename_host() {
        eprintln!(
            "SKIP: another_hosts_archive_is_read_only_until_adopted: needs root (unshare --uts)"
        );
        return;
    }
    let world = World::new();
    let old = world.machine("old").with_host("epy-old");
    let new = world.machine("new").with_host("epy-new");
    let t = docs_tree(&world);
    let l = loc(&world.location());
    old.ok(&["new_repo", &l, "home"]);
    old.ok(&[
        "new",
        "-A",
        "docs",
        "-I",
        t.to_str().unwrap(),
        "-Xd",
        "cache",
        "-Xf",
        "*.o",
        "-R",
        "home",
        &l,
    ]);
    settle();
    old.ok(&["bu", "-A", "docs"]);
    let snapdir = old.snapshot_dir("docs");
    assert!(
        snapdir.to_string_lossy().contains("/snapshots/epy-old/"),
        "{}",
        snapdir.display()
    );

    // The reinstalled machine has a new host name.
    let out = new.ok(&["attach", &l]);
    assert!(out.contains("docs (attached now, read-only)"), "{out}");
    assert!(out.contains("made by") && out.contains("@epy-old"), "{out}");
    assert!(new.ok(&["la"]).contains("docs (read-only)"));
    assert_eq!(new.lss("docs", &[]).len(), 1);
    assert_same_listing(
        &without_excluded(&t),
        &extracted(&new, &world, "docs", 0, &t),
        "read-only extract",
    );
    let state = fs_state(world.root());
    for args in [
        &["bu", "-A", "docs"][..],
        &["del", "-A", "docs", "--remove-last-ok"],
        &["compress", "-U", "-A", "docs"],
        &["edit", "--includes", "-A", "docs"],
    ] {
        let err = new.fail(args);
        assert!(
            err.contains("read-only")
                && err.contains("@epy-old")
                && err.contains("-A docs --adopt"),
            "{args:?}: {err}"
        );
    }
    assert_same_state(&state, &fs_state(world.root()), "refused changes");

    // --adopt continues the series from this machine, in the old
    // directory (nothing on the disk is moved or renamed).
    let out = new.ok(&["attach", &l, "-A", "docs", "--adopt"]);
    assert!(out.contains("docs (adopted now)"), "{out}");
    let spec = fs::read_to_string(new.config.join("archives/docs/spec")).unwrap();
    assert!(
        spec.contains("adopted_from = ") && spec.contains("@epy-old"),
        "{spec}"
    );
    assert!(
        spec.contains(&format!("snapshot_dir = {}", snapdir.display())),
        "{spec}"
    );
    assert!(!spec.contains("read_only"), "{spec}");
    let b = bu_json(&new, "docs");
    assert_eq!(num(&b, "files_read"), 0, "{b}");
    assert_eq!(new.snapshot_names("docs").len(), 2);
    assert!(
        !world
            .location()
            .join("epygibus.d/snapshots/epy-new")
            .exists()
    );
    assert!(newest_spec_text(&snapdir).contains("\nhost = epy-new\n"));
    assert!(new.newest("docs").header.host == "epy-new");

    // The old machine (its configuration intact) no longer writes to it.
    let state = fs_state(world.root());
    for args in [
        &["bu", "-A", "docs"][..],
        &["del", "-A", "docs", "--remove-last-ok"],
        &["compress", "-U", "-A", "docs"],
        &["edit", "--includes", "-A", "docs"],
    ] {
        let err = old.fail(args);
        assert!(
            err.contains("@epy-new now") && err.contains("--adopt"),
            "{args:?}: {err}"
        );
    }
    assert_same_state(&state, &fs_state(world.root()), "refused on the old host");

    // The next reinstall on the new host attaches it as its own.
    let again = world.machine("again").with_host("epy-new");
    let out = again.ok(&["attach", &l]);
    assert!(
        out.contains("docs (attached now)") && !out.contains("read-only"),
        "{out}"
    );
    again.ok(&["bu", "-A", "docs"]);
    // ...and from the old host it is another machine's now.
    let back = world.machine("back").with_host("epy-old");
    let out = back.ok(&["attach", &l]);
    assert!(out.contains("docs (attached now, read-only)"), "{out}");
    // The old machine takes it back the same way.
    let out = old.ok(&["attach", &l, "-A", "docs", "--adopt"]);
    assert!(out.contains("docs (adopted now)"), "{out}");
    old.ok(&["bu", "-A", "docs"]);
    let err = again.fail(&["bu", "-A", "docs"]);
    assert!(err.contains("@epy-old now"), "{err}");
}

#[test]
fn a_second_machine_shares_the_repository() {
    if !Machine::can_rename_host() {
        eprintln!("SKIP: a_second_machine_shares_the_repository: needs root (unshare --uts)");
        return;
    }
    let world = World::new();
    let one = world.machine("one").with_host("epy-one");
    let two = world.machine("two").with_host("epy-two");
    let l = loc(&world.location());
    let src1 = world.src().join("one");
    let src2 = world.src().join("two");
    for i in 0..12u64 {
        let data = text(2000 + i as usize * 100, 100 + i);
        write_file(&src1.join(format!("shared/f{i:02}")), &data, 0o644);
        write_file(&src2.join(format!("shared/f{i:02}")), &data, 0o640);
    }
    write_file(&src1.join("own/mine.txt"), &text(4000, 1), 0o644);
    write_file(&src2.join("own/mine.txt"), &text(4000, 2), 0o644);
    one.ok(&["new_repo", &l, "home"]);
    one.ok(&[
        "new",
        "-A",
        "one",
        "-I",
        src1.to_str().unwrap(),
        "-R",
        "home",
        &l,
    ]);
    settle();
    assert_eq!(num(&bu_json(&one, "one"), "new_items"), 13);

    // The second machine attaches the repository only and makes its own
    // archive in it.
    let out = two.ok(&["attach", &l, "-R", "home"]);
    assert!(
        out.contains("home (attached now)") && out.contains("epy-one/root/one"),
        "{out}"
    );
    two.ok(&[
        "new",
        "-A",
        "two",
        "-I",
        src2.to_str().unwrap(),
        "-R",
        "home",
        &l,
    ]);
    let first_two = bu_json(&two, "two");
    assert_eq!(num(&first_two, "files_read"), 13);
    assert_eq!(
        num(&first_two, "new_items"),
        1,
        "shared content is stored once: {first_two}"
    );

    // Content the first machine gives up is kept while the repository is
    // shared (min age), and never content the other machine uses.
    write_file(&src1.join("own/mine.txt"), &text(4100, 3), 0o644);
    settle();
    bu_json(&one, "one");
    one.ok(&["del", "-A", "one", "--back=-1"]);
    let out = two.ok(&["prune", "-R", "home"]);
    assert!(out.contains("Kept 1 unreferenced items"), "{out}");
    let out = two.ok(&["prune", "-R", "home", "--min-age", "0"]);
    assert!(
        out.starts_with("Removed 1 unreferenced content items"),
        "{out}"
    );
    // The second machine stops using a shared file; the first keeps it.
    fs::remove_file(src2.join("shared/f00")).unwrap();
    settle();
    bu_json(&two, "two");
    two.ok(&["del", "-A", "two", "--back=-1"]);
    let out = one.ok(&["prune", "-R", "home", "--min-age", "0"]);
    assert_eq!(out, "Nothing to do.\n");
    for (m, archive, src) in [(&one, "one", &src1), (&two, "two", &src2)] {
        let n = m.snapshot_names(archive).len() as i64;
        for back in 0..n {
            assert_same_listing(
                &listing(src),
                &extracted(m, &world, archive, back, src),
                &format!("{archive} --back={back}"),
            );
        }
        m.ok(&["check", "-R", "home"]);
    }
}

#[test]
fn bad_input_is_refused_naming_the_path_and_changes_nothing() {
    let env = World::new();
    env.new_repo("home");
    let t = docs_tree(&env);
    let snapdir = env.new_archive("docs", "home", &[&t], &[]);
    settle();
    env.ok(&["bu", "-A", "docs"]);
    let other = env.machine("other");
    let refuse = |m: &Machine, args: &[&str], wants: &[&str]| {
        let state = fs_state(env.root());
        let err = m.fail(args);
        for w in wants {
            assert!(err.contains(w), "{args:?}: no {w:?} in {err}");
        }
        assert!(
            err.contains("nothing was changed") || err.contains("cannot be used"),
            "{err}"
        );
        assert_same_state(&state, &fs_state(env.root()), &format!("{args:?}"));
    };

    // Not a backup location, or none at all.
    let plain = env.path("plain");
    fs::create_dir(&plain).unwrap();
    let plain_s = plain.display().to_string();
    refuse(&other, &["attach", &loc(&plain)], &[&plain_s, "epygibus.d"]);
    let missing = env.path("missing").display().to_string();
    refuse(
        &other,
        &["attach", &format!("--location={missing}")],
        &[&missing],
    );

    // Names that are not there, and options that do not fit.
    refuse(
        &other,
        &["attach", &env.loc_arg(), "-A", "nope"],
        &["no archive `nope`", "found: "],
    );
    refuse(&other, &["attach", &env.loc_arg(), "--as", "x"], &["--as"]);
    refuse(&other, &["attach", &env.loc_arg(), "--adopt"], &["-A NAME"]);

    // Names taken here already: --as gives another.
    let elsewhere = env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    other.ok(&["new_repo", &loc(&elsewhere), "home"]);
    let repo = env.repo_dir("home").display().to_string();
    refuse(
        &other,
        &["attach", &env.loc_arg(), "-R", "home"],
        &["`home` is configured already", &repo, "--as"],
    );
    let out = other.ok(&["attach", &env.loc_arg(), "-R", "home", "--as", "nas-home"]);
    assert!(out.contains("nas-home (attached now)"), "{out}");
    let docs2 = env.src().join("other-docs");
    write_file(&docs2.join("z"), b"z\n", 0o644);
    other.ok(&[
        "new",
        "-A",
        "docs",
        "-I",
        docs2.to_str().unwrap(),
        "-R",
        "home",
        &loc(&elsewhere),
    ]);
    let snap = snapdir.display().to_string();
    refuse(
        &other,
        &["attach", &env.loc_arg(), "-A", "docs"],
        &["`docs` is configured already", &snap, "--as"],
    );
    let copy_before = newest_spec_text(&snapdir);
    let out = other.ok(&["attach", &env.loc_arg(), "-A", "docs", "--as", "nas-docs"]);
    assert!(out.contains("nas-docs (attached now)"), "{out}");
    assert!(out.contains("nas-home (already attached)"), "{out}");
    assert_eq!(other.lss("nas-docs", &[]).len(), 1);
    other.ok(&["bu", "-A", "nas-docs"]);
    assert_eq!(
        newest_spec_text(&snapdir),
        copy_before,
        "names given here stay here: the copy keeps the names on the disk"
    );

    // A repository whose format this epygibus does not know.
    let format = env.repo_dir("home").join("format");
    let original = fs::read(&format).unwrap();
    fs::write(
        &format,
        "epygibus repository\nformat = 3\nhash = blake3\ncompression = gzip\n",
    )
    .unwrap();
    let third = env.machine("third");
    let format_s = format.display().to_string();
    refuse(
        &third,
        &["attach", &env.loc_arg()],
        &[&format_s, "format 3"],
    );
    refuse(
        &third,
        &["attach", &env.loc_arg(), "-A", "docs"],
        &[&format_s],
    );
    fs::write(&format, &original).unwrap();

    // An archive whose repository cannot be found.
    let repo_dir = env.repo_dir("home");
    let moved = env.path("moved-away");
    fs::rename(&repo_dir, &moved).unwrap();
    refuse(
        &third,
        &["attach", &env.loc_arg(), "-A", "docs"],
        &[&snap, "repository `home` cannot be found", &repo],
    );
    fs::rename(&moved, &repo_dir).unwrap();
    let out = third.ok(&["attach", &env.loc_arg()]);
    assert!(
        out.contains("Attached 1 repository and 1 archive."),
        "{out}"
    );
}

#[test]
fn attach_help_has_examples_and_changes_nothing() {
    let env = World::new();
    let out = env.ok(&["attach", "--help"]);
    for want in [
        "Usage: epygibus attach",
        "--location",
        "--adopt",
        "--as",
        "epygibus attach --location=/mnt/nas -A docs --adopt",
    ] {
        assert!(out.contains(want), "no {want:?} in {out}");
    }
    assert!(env.ok(&["--help"]).contains("attach"));
    assert!(fs::read_dir(env.config_dir()).unwrap().next().is_none());
}
