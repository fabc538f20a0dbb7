//! What the GUI changes, over its API: Cancel stops a backup cleanly, the
//! retention preview changes nothing and applying it removes, restoring
//! to the original place moves changed files aside or overwrites them.

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
