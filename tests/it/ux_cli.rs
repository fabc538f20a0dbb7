//! The command line as people use it: JSON output of every listing,
//! completions, the man page, help, and the progress display (present on a
//! terminal, absent in a pipe and with --quiet).

use std::fs;
use std::path::Path;
use std::process::Command as StdCommand;

use crate::world::{World, settle, text};
use serde_json::Value;

/// An environment with repository `r`, archive `a` over a small tree and
/// two snapshots.
fn world() -> World {
    let env = World::new();
    let src = env.src().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha alpha alpha alpha").unwrap();
    fs::write(src.join("sub/b.txt"), b"beta").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    env.new_repo("r");
    env.new_archive("a", "r", &[&src], &[]);
    env.ok(&["bu", "-A", "a"]);
    settle();
    fs::write(src.join("sub/c.txt"), b"gamma").unwrap();
    env.ok(&["bu", "-A", "a"]);
    env
}

fn json(env: &World, args: &[&str]) -> Value {
    let out = env.ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

fn is_rfc3339_utc(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

#[test]
fn lr_and_la_json() {
    let env = world();
    let lr = json(&env, &["lr", "--json"]);
    let repos = lr["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["name"], "r");
    assert!(repos[0]["path"].as_str().unwrap().ends_with("/r"));
    let la = json(&env, &["la", "--json"]);
    let archives = la["archives"].as_array().unwrap();
    assert_eq!(archives[0]["name"], "a");
    assert_eq!(archives[0]["repository"], "r");
    assert_eq!(archives[0]["snapshots"], 2);
}

#[test]
fn repo_stats_and_items_json() {
    let env = world();
    let stats = json(&env, &["repo_stats", "-R", "r", "--json"]);
    // a.txt, b.txt, c.txt: three items; five file references over two snapshots.
    assert_eq!(stats["referenced"]["items"], 3);
    assert_eq!(stats["referenced"]["references"], 5);
    assert_eq!(stats["unreferenced"]["items"], 0);
    assert!(stats["referenced"]["content_bytes"].as_u64().unwrap() >= 23 + 4 + 5);
    let items = json(&env, &["list_content_items", "-R", "r", "--json"]);
    let items = items["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for item in items {
        assert_eq!(item["token"].as_str().unwrap().len(), 64);
        assert!(["gzip", "plain"].contains(&item["form"].as_str().unwrap()));
        assert!(item["references"].as_u64().unwrap() >= 1);
        assert!(item["stored_size"].is_u64() && item["size"].is_u64());
    }
}

#[test]
fn lss_json_in_all_three_forms() {
    let env = world();
    let plain = json(&env, &["lss", "-A", "a", "--json"]);
    let snaps = plain["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps[0]["name"].as_str().unwrap() < snaps[1]["name"].as_str().unwrap());
    assert!(is_rfc3339_utc(&snaps[0]["time"]));
    assert_eq!(snaps[0]["compressed"], true);
    assert!(snaps[0].get("build_stats").is_none());

    let build = json(&env, &["lss", "-A", "a", "--build_stats", "--json"]);
    let b = &build["snapshots"][1]["build_stats"];
    assert_eq!(b["files"], 3);
    assert_eq!(b["links"], 1);
    assert!(is_rfc3339_utc(&b["started"]));
    assert!(b["seconds"]["total"].is_f64());

    let storage = json(
        &env,
        &[
            "lss",
            "-A",
            "a",
            "--storage_stats",
            "--json",
            "--newest_first",
        ],
    );
    let s = &storage["snapshots"][0]["storage_stats"];
    assert_eq!(s["files"], 3);
    assert_eq!(s["content_items"], 3);
    assert!(s["occupies"].as_u64().unwrap() > 0);
    assert!(s["share_bytes"].is_u64());
}

#[test]
fn show_json_has_spec_and_snapshots() {
    let env = world();
    let show = json(&env, &["show", "-A", "a", "--json"]);
    assert_eq!(show["archive"], "a");
    assert_eq!(show["repository"], "r");
    assert_eq!(show["compress"], true);
    assert!(show["includes"][0].as_str().unwrap().ends_with("/tree"));
    assert_eq!(show["snapshots"].as_array().unwrap().len(), 2);
    assert_eq!(show["snapshots"][0]["build_stats"]["files"], 2);
}

#[test]
fn bu_stats_json() {
    let env = world();
    fs::write(env.src().join("tree/new.txt"), b"new content").unwrap();
    let out = json(&env, &["bu", "--stats", "--json", "-A", "a"]);
    let b = &out["backups"][0];
    assert_eq!(b["archive"], "a");
    assert_eq!(b["files"], 4);
    assert!(b["new_items"].as_u64().unwrap() >= 1);
    assert!(b["size_on_disk"].as_u64().unwrap() > 0);
    assert_eq!(b["problems"].as_array().unwrap().len(), 0);
    assert_eq!(b["snapshot"].as_str().unwrap().len(), 19);
}

#[test]
fn restore_and_extract_stats_json() {
    let env = world();
    let into = env.root().join("out");
    fs::create_dir(&into).unwrap();
    let tree = env.src().join("tree");
    let tree_arg = tree.to_str().unwrap();
    let ex = json(
        &env,
        &[
            "extract",
            "-A",
            "a",
            "--dir",
            tree_arg,
            "--into_dir",
            into.to_str().unwrap(),
            "--stats",
            "--json",
        ],
    );
    assert_eq!(ex["files"], 3);
    assert_eq!(ex["links"], 1);
    assert!(ex["seconds"].is_f64());
    fs::write(tree.join("a.txt"), b"changed locally").unwrap();
    // Moving aside is reported on stderr too, so this is not `json()`.
    let run = env
        .run(&["restore", "-A", "a", "--all", "--stats", "--json", "-q"])
        .code(0);
    assert!(run.stderr.contains("moved"), "{}", run.stderr);
    let rs: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rs["moved_aside"].as_array().unwrap().len(), 1);
    assert!(
        rs["moved_aside"][0]["to"]
            .as_str()
            .unwrap()
            .contains(".~epygibus-")
    );
    assert_eq!(rs["unchanged"], 2);
}

#[test]
fn completions_for_three_shells() {
    let env = World::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef epygibus"),
        ("fish", "complete -c epygibus"),
    ] {
        let out = env.ok(&["completions", shell]);
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(
            out.contains("restore") && out.contains("new_repo"),
            "{shell}"
        );
    }
}

#[test]
fn man_page_is_roff_with_commands() {
    let env = World::new();
    let man = env.ok(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH epygibus"),
        "{man}"
    );
    assert!(man.contains(".TH epygibus 1"));
    assert!(man.contains("new_repo") && man.contains("restore"));
}

#[test]
fn help_is_grouped_and_every_command_has_an_example() {
    let env = World::new();
    let top = env.ok(&["--help"]);
    for group in [
        "Setting up:",
        "Backing up:",
        "Getting files back:",
        "Housekeeping:",
    ] {
        assert!(top.contains(group), "{group} missing: {top}");
    }
    assert!(top.find("Setting up:") < top.find("Backing up:"));
    let commands = [
        "new_repo",
        "lr",
        "repo_stats",
        "list_content_items",
        "prune",
        "compress",
        "unlock",
        "new",
        "edit",
        "la",
        "show",
        "bu",
        "lss",
        "del",
        "restore",
        "extract",
        "cat",
        "ls",
        "check",
        "completions",
        "man",
    ];
    for c in commands {
        let help = env.ok(&[c, "--help"]);
        assert!(
            help.contains("Example"),
            "{c} --help has no example: {help}"
        );
        assert!(help.contains("Usage: epygibus"), "{c}");
    }
    let version = env.ok(&["--version"]);
    assert!(version.starts_with("epygibus "), "{version}");
}

/// Runs `cmd` under a pseudo-terminal with `script`, returning everything
/// written to the terminal; None when `script` is missing.
fn under_pty(env: &World, args: &str) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let mut c = StdCommand::new(script);
    env.isolate(&mut c);
    let line = format!("{} {args}", env.bin().display());
    let out = c
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A tree big enough that storing it takes several progress refreshes.
fn big_world() -> World {
    let env = World::new();
    let src = env.src().join("big");
    for d in 0..20 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            let body = text(3000 + f * 7, (d * 1000 + f) as u64);
            fs::write(src.join(format!("d{d}/f{f}")), body).unwrap();
        }
    }
    env.new_repo("r");
    env.new_archive("big", "r", &[&src], &[]);
    env
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let env = big_world();
    // In a pipe (the test captures stderr): no progress at all.
    let run = env.run(&["bu", "-A", "big"]).code(0);
    assert!(
        run.stderr.is_empty(),
        "progress in a pipe: {:?}",
        run.stderr
    );
    let tree = env.src().join("big");
    // On a terminal: the bar, with files and bytes, then cleared.
    for d in 0..20 {
        fs::write(tree.join(format!("d{d}/f0")), format!("changed {d}")).unwrap();
    }
    let Some(tty) = under_pty(&env, "bu --force-read -A big") else {
        eprintln!("SKIP: progress_shows_on_a_terminal_only: `script` is not installed");
        return;
    };
    // The walk is always drawn; the storing phase when it lasts longer than
    // one refresh (a tenth of a second).
    assert!(
        tty.contains("scanning: "),
        "no progress on a terminal: {tty:?}"
    );
    assert!(tty.contains(" entries"), "{tty:?}");
    // --quiet silences it even on a terminal.
    let quiet = under_pty(&env, "bu --force-read --quiet -A big").unwrap();
    assert!(
        !quiet.contains("files"),
        "progress despite --quiet: {quiet:?}"
    );
}

#[test]
fn closed_stdout_and_no_color_are_fine() {
    let env = world();
    let mut c = env.cmd();
    c.env("NO_COLOR", "1").args(["lss", "-A", "a"]);
    let out = c.output().unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('\u{1b}'),
        "escape codes with NO_COLOR"
    );
}
