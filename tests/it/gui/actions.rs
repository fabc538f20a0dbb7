//! What the GUI changes and warns of, over its API: Cancel stops a
//! backup cleanly, the retention preview changes nothing and applying it
//! removes, restoring to the original place moves changed files aside or
//! overwrites them, and the dashboard warns of a held lock and a damaged
//! snapshot.

use super::{Gui, at, docs_world};
use crate::world::files::write_file;
use crate::world::noise;

#[test]
fn gui_cancel_stops_a_backup_which_writes_nothing() {
    let (w, t, _) = docs_world();
    for i in 0..300 {
        write_file(
            &t.join(format!("bulk/{i:03}.bin")),
            &noise(100_000, 500 + i),
            0o644,
        );
    }
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let csrf = g.csrf(&cookie);
    let r = g.post(
        &cookie,
        &csrf,
        "/api/backup",
        &serde_json::json!({"archive": "docs"}),
    );
    let id = r.json()["job"].as_u64().unwrap();
    let c = g.post(
        &cookie,
        &csrf,
        &format!("/api/jobs/{id}/cancel"),
        &serde_json::json!({}),
    );
    assert_eq!(c.status, 200, "{c:?}");
    assert_eq!(c.json()["cancel_requested"], true);
    let j = g.wait_job(&cookie, id);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["files"].as_u64().unwrap() < 300, "stopped early: {j}");
    assert_eq!(w.snapshot_names("docs").len(), 1, "no snapshot written");
    // The references it took were given back: check finds no count too low
    // and the lock is free for the next backup.
    w.ok(&["check", "-R", "home"]);
    w.ok(&["bu", "-A", "docs"]);
}

#[test]
fn gui_previews_then_applies_the_retention_policy() {
    let (w, _t, _) = docs_world();
    w.ok(&["bu", "-A", "docs"]);
    w.ok(&["policy", "-A", "docs", "--keep-last", "1"]);
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let csrf = g.csrf(&cookie);
    let p = g.get("/api/forget-preview?archive=docs", &[("Cookie", &cookie)]);
    assert_eq!(p.status, 200, "{p:?}");
    assert_eq!(p.json()["to_remove"], 1);
    assert_eq!(
        w.snapshot_names("docs").len(),
        2,
        "a preview removes nothing"
    );
    let r = g.post(
        &cookie,
        &csrf,
        "/api/forget",
        &serde_json::json!({"archive": "docs"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["removed"], 1);
    assert_eq!(w.snapshot_names("docs").len(), 1);
}

#[test]
fn gui_restores_to_the_original_place_moving_changed_files_aside() {
    let (w, t, snap) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let csrf = g.csrf(&cookie);
    let original = std::fs::read(t.join("notes.txt")).unwrap();
    std::fs::write(t.join("notes.txt"), b"changed since").unwrap();
    std::fs::remove_file(t.join("tree/deep/b.txt")).unwrap();
    let r = g.post(
        &cookie,
        &csrf,
        "/api/restore",
        &serde_json::json!({"src": "A:docs", "snap": snap, "mode": "original",
            "paths": [at(&t, "notes.txt"), at(&t, "tree")]}),
    );
    let j = g.wait_job(&cookie, r.json()["job"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(std::fs::read(t.join("notes.txt")).unwrap(), original);
    assert!(t.join("tree/deep/b.txt").is_file());
    let aside = j["result"]["moved_aside"].as_array().unwrap();
    assert_eq!(aside.len(), 1, "{j}");
    let kept = aside[0]["to"].as_str().unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), b"changed since");
    // With overwrite, the changed file is replaced, nothing moved aside.
    std::fs::write(t.join("notes.txt"), b"changed again").unwrap();
    let r = g.post(
        &cookie,
        &csrf,
        "/api/restore",
        &serde_json::json!({"src": "A:docs", "snap": snap, "mode": "original",
            "paths": [at(&t, "notes.txt")], "overwrite": true}),
    );
    let j = g.wait_job(&cookie, r.json()["job"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(
        j["result"]["moved_aside"].as_array().unwrap().len(),
        0,
        "{j}"
    );
    assert_eq!(std::fs::read(t.join("notes.txt")).unwrap(), original);
}

#[test]
fn gui_dashboard_warns_of_a_held_lock_and_a_damaged_snapshot() {
    let (w, _t, _) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let overview = || g.get("/api/overview", &[("Cookie", &cookie)]).json();
    assert_eq!(overview()["archives"][0]["warnings"], serde_json::json!([]));
    // Another machine's run holds the lock; a newer snapshot is garbage.
    std::fs::write(
        w.repo_dir("home").join("lock"),
        "host = otherbox\npid = 4242\nstarted = 1700000000\ncommand = epygibus bu -A docs\n",
    )
    .unwrap();
    std::fs::write(
        w.snapshot_dir("docs").join("2099-01-01-00-00-00"),
        b"not a snapshot",
    )
    .unwrap();
    let o = overview();
    let warnings = o["archives"][0]["warnings"].to_string();
    assert!(
        warnings.contains("locked by `epygibus bu -A docs`"),
        "{warnings}"
    );
    assert!(
        warnings.contains("newest snapshot cannot be read"),
        "{warnings}"
    );
    assert!(
        o["repositories"][0]["lock"]
            .as_str()
            .unwrap()
            .contains("otherbox"),
        "{o}"
    );
}
