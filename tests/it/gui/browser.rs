//! The pages in Debian's chromium, driven by playwright-core
//! (`tests/gui/drive.mjs`): the dashboard, downloading a file, restoring a
//! directory (identical tree), "Back up now" with progress, a
//! 10,000-entry directory, check, search, the rescue, a phone-sized
//! screen. Screenshots go to `target/gui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{Gui, docs_world};
use crate::world::files::write_file;
use crate::world::noise;
use crate::world::tree::assert_same_tree;

/// node and Debian's chromium with playwright-core installed in
/// tests/gui (by `npm ci`, as .ci/run does); None (SKIP) where missing.
fn browser_kit() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gui");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = [
        (!node_ok).then_some("node"),
        (!chromium.exists()).then_some("chromium (apt-get install chromium)"),
        (!dir.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/gui)"),
    ];
    let missing: Vec<_> = missing.into_iter().flatten().collect();
    if !missing.is_empty() {
        eprintln!("SKIP gui browser test: missing {}", missing.join(", "));
        return None;
    }
    Some((dir, chromium))
}

#[test]
fn gui_in_a_real_browser() {
    let Some((dir, chromium)) = browser_kit() else {
        return;
    };
    let (w, t, _) = docs_world();
    // Enough to back up that progress is seen, and a 10,000-entry
    // directory.
    for i in 0..40 {
        write_file(
            &t.join(format!("bulk/{i:03}.bin")),
            &noise(400_000, 100 + i),
            0o644,
        );
    }
    let big = w.src().join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..10_000 {
        std::fs::write(big.join(format!("f{i:05}")), [b'x'; 3]).unwrap();
    }
    w.new_archive("big", "home", &[&big], &[]);
    w.ok(&["policy", "-A", "docs", "--keep-last", "1"]);
    w.ok(&["bu", "-A", "big"]);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/gui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let downloads = w.root().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    std::fs::create_dir(w.out()).unwrap();
    let g = Gui::start(&w, &[]);
    let run = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .current_dir(&dir)
        .env("GUI_URL", &g.url)
        .env("ARCHIVE", "docs")
        .env("FILE", t.join("tree/deep/b.txt"))
        .env("RESTORE_DIR", t.join("tree"))
        .env("OUT_DIR", w.out())
        .env("BIG_ARCHIVE", "big")
        .env("BIG_DIR", &big)
        .env("DOWNLOADS", &downloads)
        .env("SHOTS", &shots)
        .env("SNAPSHOT_DIR", w.snapshot_dir("docs"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "drive.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("gui browser report: {report}");
    assert_eq!(report["dashboard_archives"], 2, "{report}");
    assert_eq!(
        std::fs::read(report["downloaded"].as_str().unwrap()).unwrap(),
        std::fs::read(t.join("tree/deep/b.txt")).unwrap(),
        "the downloaded file is the source's bytes"
    );
    assert_same_tree(
        &t.join("tree"),
        &w.out().join("tree"),
        false,
        "restored in the browser",
    );
    let seen = report["progress_seen"].as_array().unwrap();
    assert!(
        seen.iter().any(|s| s.as_str().unwrap().contains("files")),
        "progress was shown: {seen:?}"
    );
    assert_eq!(
        report["snapshots_after"],
        report["snapshots_before"].as_u64().unwrap() + 1
    );
    assert_eq!(report["hostile_elements"], 0);
    assert!(
        report["diff"].as_str().unwrap().starts_with("41 change(s)"),
        "{report}"
    );
    assert_eq!(
        report["forget_button"], "Remove 1 snapshot(s) now",
        "{report}"
    );
    assert!(
        report["first_tab"].as_str().unwrap().contains("Skip"),
        "{report}"
    );
    assert!(
        report["page_errors"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert!(
        report["first_load_bytes"].as_u64().unwrap() <= 150 * 1024,
        "{report}"
    );
    for (screen, width) in report["phone_widths"].as_object().unwrap() {
        assert!(
            width.as_u64().unwrap() <= 390,
            "{screen} is {width} px wide on a phone"
        );
    }
    assert!(report["check"].as_str().unwrap().contains("No problems"));
    for r in report["big_api"].as_array().unwrap() {
        assert_eq!(r["total"], 10_000);
        assert!(
            r["server_ms"].as_f64().unwrap() <= 200.0,
            "a 10,000-entry listing: {r}"
        );
    }
    assert!(
        report["rescue_url"].as_str().unwrap().contains("src=E%3A"),
        "{report}"
    );
}
