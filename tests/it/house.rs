//! The house issue's behaviour: a backup interrupted with Ctrl-C gives its
//! references back and writes no snapshot; a corrupt index is set aside and
//! rebuilt by `check --repair`, as its error message says.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::world::{World, lib_api, noise, settle};

/// Many files of some size, so a backup of them takes a while.
fn big_tree(env: &World, files: usize) -> std::path::PathBuf {
    let root = env.src().join("big");
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 30));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("f{i}")),
            noise(20_000 + i % 5000, i as u64),
        )
        .unwrap();
    }
    root
}

/// Finished packs (a backup's content goes into packs of 32 MiB).
fn finished_packs(repo: &std::path::Path) -> usize {
    crate::world::packs::packs(repo).len()
}

#[test]
fn interrupted_backup_writes_no_snapshot_and_gives_references_back() {
    let env = World::new();
    let repo = env.new_repo("r");
    // ~130 MB that does not compress: four packs' worth.
    let tree = big_tree(&env, 6000);
    let snaps = env.new_archive("a", "r", &[&tree], &[]);
    let mut child = env
        .cmd()
        .args(["bu", "-A", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once content is being stored: a first pack is finished,
    // the next one is being filled.
    let began = Instant::now();
    while finished_packs(&repo) < 1 {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "bu stored nothing"
        );
        if child.try_wait().unwrap().is_some() {
            panic!("bu finished before it could be interrupted; make the tree bigger");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(
        lib_api::list_snapshots(&snaps).is_empty(),
        "a snapshot was written"
    );
    let counts = lib_api::ref_counts(&repo);
    assert!(
        !counts.is_empty(),
        "content was stored before the interrupt"
    );
    // The pack being filled was abandoned: no entry points into it, and
    // only finished packs (listed in the index) are left.
    env.ok(&["check", "-R", "r", "--read-data"]);
    assert!(
        counts.values().all(|&c| c == 0),
        "every reference was given back"
    );
    assert!(!repo.join("lock").exists(), "the lock was released");
    // The next backup works and prune reclaims nothing it needs.
    settle();
    env.ok(&["bu", "-A", "a"]);
    env.ok(&["prune", "-R", "r"]);
    env.assert_ref_counts("r", &["a"], &[], "after the next backup");
    env.ok(&["check", "-R", "r", "--read-data"]);
}

#[test]
fn corrupt_index_is_set_aside_and_rebuilt_by_check_repair() {
    let env = World::new();
    let repo = env.new_repo("r");
    let tree = env.src().join("t");
    fs::create_dir(&tree).unwrap();
    for i in 0..20 {
        fs::write(tree.join(format!("f{i}")), noise(3000, i)).unwrap();
    }
    fs::write(tree.join("same-1"), b"twice").unwrap();
    fs::write(tree.join("same-2"), b"twice").unwrap();
    env.new_archive("a", "r", &[&tree], &[]);
    env.ok(&["bu", "-A", "a"]);
    let before = lib_api::ref_counts(&repo);
    let index = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("index.")
        })
        .unwrap();
    fs::write(&index, b"garbage, not an index").unwrap();

    let err = env.fail(&["repo_stats", "-R", "r"]);
    assert!(err.contains("is corrupt"), "{err}");
    assert!(
        err.contains("check --repair"),
        "the error names the way out: {err}"
    );

    let out = env.run(&["check", "-R", "r", "--repair"]);
    assert!(
        out.stdout.contains("set the damaged index aside"),
        "{}",
        out.stdout
    );
    let aside: Vec<_> = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("broken-index."))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged index is kept, renamed");
    assert_eq!(
        fs::read(repo.join(&aside[0])).unwrap(),
        b"garbage, not an index"
    );
    assert_eq!(lib_api::ref_counts(&repo), before, "counts rebuilt exactly");
    env.ok(&["check", "-R", "r", "--read-data"]);
    settle();
    env.ok(&["bu", "-A", "a"]);
    env.assert_ref_counts("r", &["a"], &[], "after the next backup");
}
