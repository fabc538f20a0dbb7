//! Runs at the same time on one repository: they succeed or wait for the
//! lock (saying who holds it), and reference counts stay exact.

use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::world::{World, settle, text};

/// A tree large enough that a backup of it takes a noticeable time.
fn tree(env: &World, name: &str, files: usize, seed: u64) -> std::path::PathBuf {
    let root = env.src().join(name);
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 20));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("f{i}")),
            text(2000 + i % 900, seed + i as u64),
        )
        .unwrap();
    }
    root
}

fn spawn(env: &World, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, label: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{label}: {stderr}");
    for line in stderr.lines() {
        assert!(
            line.contains("waiting for the repository lock"),
            "{label}: {stderr}"
        );
    }
    stderr
}

#[test]
fn prune_while_backups_run_deletes_nothing_referenced() {
    let env = World::new();
    env.new_repo("r");
    let a = tree(&env, "a", 600, 1);
    let b = tree(&env, "b", 600, 50_000);
    env.new_archive("a", "r", &[&a], &[]);
    env.new_archive("b", "r", &[&b], &[]);
    env.ok(&["bu", "-A", "a"]);
    // Unreferenced content for prune to find: a snapshot of b, deleted.
    env.ok(&["bu", "-A", "b"]);
    env.ok(&["del", "-A", "b", "--remove_last_ok"]);
    settle();
    for i in 0..60 {
        fs::write(a.join(format!("d{}/f{i}", i % 20)), format!("changed {i}")).unwrap();
    }
    let runs = vec![
        ("bu a", spawn(&env, &["bu", "-A", "a"])),
        ("prune", spawn(&env, &["prune", "-R", "r"])),
        ("bu b", spawn(&env, &["bu", "-A", "b"])),
        ("prune again", spawn(&env, &["prune", "-R", "r"])),
    ];
    for (label, child) in runs {
        finish(child, label);
    }
    env.assert_ref_counts("r", &["a", "b"], &[], "after prune during backups");
    let out = env.run(&["check", "-R", "r", "--read-data"]).code(0).stdout;
    assert!(out.contains("0 problem(s)"), "{out}");
    // Every snapshot still restores.
    for archive in ["a", "b"] {
        for back in 0..env.snapshot_names(archive).len() {
            let into = env.root().join(format!("out-{archive}-{back}"));
            fs::create_dir(&into).unwrap();
            let dir = env.src().join(archive);
            env.ok(&[
                "extract",
                "-A",
                archive,
                "--back",
                &back.to_string(),
                "--dir",
                dir.to_str().unwrap(),
                "--into_dir",
                into.to_str().unwrap(),
            ]);
        }
    }
}

#[test]
fn del_while_restore_runs_waits_and_restore_is_whole() {
    let env = World::new();
    env.new_repo("r");
    let a = tree(&env, "a", 1500, 7);
    env.new_archive("a", "r", &[&a], &[]);
    env.ok(&["bu", "-A", "a"]);
    let out = env.root().join("out");
    fs::create_dir(&out).unwrap();
    let restore = spawn(
        &env,
        &[
            "extract",
            "-A",
            "a",
            "--dir",
            a.to_str().unwrap(),
            "--into_dir",
            out.to_str().unwrap(),
        ],
    );
    let del = spawn(&env, &["del", "-A", "a", "--remove_last_ok"]);
    finish(restore, "extract");
    finish(del, "del");
    let prune = spawn(&env, &["prune", "-R", "r"]);
    finish(prune, "prune");
    // The extract, which started first or waited, has every file exactly.
    for i in 0..1500 {
        let rel = format!("d{}/f{i}", i % 20);
        assert_eq!(
            fs::read(out.join("a").join(&rel)).unwrap(),
            fs::read(a.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(env.snapshot_names("a").is_empty());
}

#[test]
fn a_waiting_run_says_who_holds_the_lock() {
    let env = World::new();
    let repo = env.new_repo("r");
    // A lock held by a live process on this host: ourselves.
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock = format!(
        "host = {}\npid = {}\nstarted = {}\ncommand = epygibus bu -A elsewhere\n",
        host.trim(),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    );
    fs::write(repo.join("lock"), lock).unwrap();
    let started = Instant::now();
    let waiting = spawn(&env, &["prune", "-R", "r", "--lock-wait", "30"]);
    std::thread::sleep(Duration::from_secs(5));
    fs::remove_file(repo.join("lock")).unwrap();
    let stderr = finish(waiting, "prune");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(stderr.contains("epygibus bu -A elsewhere"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
}
