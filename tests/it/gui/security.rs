//! The GUI's security rules, each over raw HTTP: loopback by default and a
//! password beyond it, the launch token exchanged for a strict cookie,
//! the Host header, CSRF token and Origin on changes, the CSP and
//! downloads that never run, paths only through the snapshot tree, and
//! restore targets checked and canonicalized.

use std::net::TcpStream;

use super::{Gui, at, docs_world, q};
use crate::world::files::write_file;
use crate::world::tree::assert_same_tree;

#[test]
fn gui_refuses_without_the_token_and_exchanges_it_for_a_strict_cookie() {
    let (w, _t, _) = docs_world();
    let g = Gui::start(&w, &[]);
    assert!(
        g.addr.starts_with("127.0.0.1:"),
        "listens on loopback by default: {}",
        g.url
    );
    for path in [
        "/",
        "/api/overview",
        "/browse",
        "/api/jobs",
        "/assets/app.js",
    ] {
        let r = g.get(path, &[]);
        assert_eq!(r.status, 401, "{path} without a cookie: {r:?}");
    }
    let r = g.get("/?token=0123456789abcdef0123456789abcdef", &[]);
    assert_eq!(r.status, 401, "a wrong token: {r:?}");
    let r = g.get("/api/overview", &[("Cookie", "epygibus_session=guess")]);
    assert_eq!(r.status, 401);
    let r = g.get(&format!("/?token={}", g.token), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/"),
        "the token leaves the address"
    );
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(&g.token), "the cookie is not the URL's token");
    let cookie = g.cookie();
    let r = g.get("/api/overview", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["archives"][0]["name"], "docs");
    // Not reachable over IPv6 loopback or any other address.
    let port = g.addr.rsplit(':').next().unwrap();
    assert!(TcpStream::connect(format!("[::1]:{port}")).is_err());
}

#[test]
fn gui_answers_only_under_its_own_host_name() {
    let (w, _t, _) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let port = g.addr.rsplit(':').next().unwrap().to_owned();
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_owned(),
        format!("127.0.0.1:{}", port.parse::<u32>().unwrap() + 1),
        String::new(),
    ] {
        let r = g.get("/api/overview", &[("Host", &host), ("Cookie", &cookie)]);
        assert_eq!(r.status, 421, "Host {host:?}: {r:?}");
    }
    let r = g.get(
        "/api/overview",
        &[("Host", &format!("localhost:{port}")), ("Cookie", &cookie)],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn gui_changes_need_the_csrf_token_and_its_own_origin() {
    let (w, _t, _) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let csrf = g.csrf(&cookie);
    let origin = format!("http://{}", g.addr);
    let body = br#"{"archive":"docs"}"#;
    let ct = ("Content-Type", "application/json");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "no CSRF token",
            vec![("Cookie", &cookie), ("Origin", &origin), ct],
        ),
        (
            "a wrong CSRF token",
            vec![
                ("Cookie", &cookie),
                ("Origin", &origin),
                ("X-CSRF-Token", "00"),
                ct,
            ],
        ),
        (
            "no Origin",
            vec![("Cookie", &cookie), ("X-CSRF-Token", &csrf), ct],
        ),
        (
            "another Origin",
            vec![
                ("Cookie", &cookie),
                ("X-CSRF-Token", &csrf),
                ("Origin", "http://evil.example"),
                ct,
            ],
        ),
    ];
    for (what, headers) in cases {
        let r = g.request("POST", "/api/backup", &headers, body);
        assert_eq!(r.status, 403, "{what}: {r:?}");
    }
    assert_eq!(w.snapshot_names("docs").len(), 1, "no backup ran");
    let r = g.post(
        &cookie,
        &csrf,
        "/api/backup",
        &serde_json::json!({"archive": "docs"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let j = g.wait_job(&cookie, r.json()["job"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(w.snapshot_names("docs").len(), 2);
}

#[test]
fn gui_pages_have_a_strict_csp_and_downloads_never_run() {
    let (w, t, snap) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let c = [("Cookie", cookie.as_str())];
    let page = g.get("/", &c);
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.header("x-frame-options").is_some());
    for file in ["evil.html", "evil.svg"] {
        let r = g.get(
            &format!(
                "/api/download?src=A:docs&snap={snap}&path={}",
                q(&at(&t, file))
            ),
            &c,
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(
            r.header("content-disposition")
                .unwrap()
                .starts_with("attachment;")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.body, std::fs::read(t.join(file)).unwrap());
        // No inline image of it, whatever its name says.
        let r = g.get(
            &format!(
                "/api/image?src=A:docs&snap={snap}&path={}",
                q(&at(&t, file))
            ),
            &c,
        );
        assert_eq!(r.status, 415, "{file} served inline: {r:?}");
        // Its preview is a JSON string the page shows as text.
        let r = g.get(
            &format!(
                "/api/preview?src=A:docs&snap={snap}&path={}",
                q(&at(&t, file))
            ),
            &c,
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["kind"], "text");
    }
    // A real image is shown inline, typed by its bytes and sandboxed.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    write_file(&t.join("pic.html"), &png, 0o644);
    w.ok(&["bu", "-A", "docs"]);
    let snap2 = w.snapshot_names("docs")[1].stamp();
    let r = g.get(
        &format!(
            "/api/image?src=A:docs&snap={snap2}&path={}",
            q(&at(&t, "pic.html"))
        ),
        &c,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
}

#[test]
fn gui_resolves_paths_only_through_the_snapshot_tree() {
    let (w, t, snap) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let c = [("Cookie", cookie.as_str())];
    let tricks = [
        format!("{}/../../../etc/passwd", at(&t, "tree")),
        format!("{}/./a.bin", at(&t, "tree")),
        "etc/passwd".to_owned(),
        format!("{}%00x", at(&t, "notes.txt")),
        "/etc/passwd".to_owned(),
    ];
    for path in &tricks {
        for api in ["download", "list", "stat", "preview"] {
            let p = if path.contains("%00") {
                path.clone()
            } else {
                q(path)
            };
            let r = g.get(&format!("/api/{api}?src=A:docs&snap={snap}&path={p}"), &c);
            assert!(
                r.status == 400 || r.status == 404 || r.status == 422,
                "{api} {path}: {r:?}"
            );
            assert!(!r.text().contains("root:"), "{api} {path} read /etc/passwd");
        }
    }
    // The tree's own files are there.
    let r = g.get(
        &format!(
            "/api/stat?src=A:docs&snap={snap}&path={}",
            q(&at(&t, "tree/a.bin"))
        ),
        &c,
    );
    assert_eq!(r.json()["size"], 300_000);
    // Sources: a relative rescue directory, an archive name with `..`.
    for src in ["E:relative/dir", "A:..%2Fx", "X:docs"] {
        let r = g.get(&format!("/api/snapshots?src={src}"), &c);
        assert_eq!(r.status, 400, "{src}: {r:?}");
    }
}

#[test]
fn gui_restore_targets_are_checked_and_canonical() {
    let (w, t, snap) = docs_world();
    let g = Gui::start(&w, &[]);
    let cookie = g.cookie();
    let csrf = g.csrf(&cookie);
    std::fs::create_dir(w.out()).unwrap();
    let out = w.out().display().to_string();
    let restore = |paths: Vec<String>, into: &str, name: Option<&str>| {
        g.post(
            &cookie,
            &csrf,
            "/api/restore",
            &serde_json::json!({"src": "A:docs", "snap": snap, "paths": paths,
                "mode": "into", "into_dir": into, "with_name": name}),
        )
    };
    let item = vec![at(&t, "notes.txt")];
    for bad in [
        format!("{out}/../out"),
        "relative/out".to_owned(),
        format!("{out}\0x"),
        format!("{out}/missing"),
        at(&t, "notes.txt"),
    ] {
        let r = restore(item.clone(), &bad, None);
        assert!(r.status == 400 || r.status == 422, "{bad:?}: {r:?}");
    }
    for name in ["../escape", "a/b", "..", ""] {
        let r = restore(item.clone(), &out, Some(name));
        let j = if r.status == 200 {
            g.wait_job(&cookie, r.json()["job"].as_u64().unwrap())
        } else {
            r.json()
        };
        if name.is_empty() {
            assert_eq!(j["state"], "done", "an empty name keeps the name: {j}");
        } else {
            assert!(
                j["state"] == "failed" || j["error"].is_string(),
                "{name}: {j}"
            );
        }
    }
    assert!(!w.root().join("escape").exists());
    assert!(w.out().join("notes.txt").is_file());
    // A symlink to the target is followed once, when checked: the files
    // land in the canonical directory.
    let link = w.root().join("out-link");
    std::os::unix::fs::symlink(w.out(), &link).unwrap();
    let r = restore(
        vec![at(&t, "tree")],
        &link.display().to_string(),
        Some("copy"),
    );
    let j = g.wait_job(&cookie, r.json()["job"].as_u64().unwrap());
    assert_eq!(j["state"], "done", "{j}");
    assert_same_tree(
        &t.join("tree"),
        &w.out().join("copy"),
        false,
        "extract via a link",
    );
    // Paths of the snapshot with tricks are refused before a job starts.
    let r = restore(vec![format!("{}/..", at(&t, "tree"))], &out, None);
    assert_eq!(r.status, 422, "{r:?}");
}

#[test]
fn gui_beyond_loopback_needs_a_password_and_signs_in_with_it() {
    let (w, _t, _) = docs_world();
    // --listen without --password-file is a command-line error.
    let r = w.run(&["gui", "--no-browser", "--listen", "0.0.0.0"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    let pw = w.root().join("pw");
    std::fs::write(&pw, "short\n").unwrap();
    let r = w.run(&[
        "gui",
        "--no-browser",
        "--listen",
        "127.0.0.1",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("shorter than 8"), "{}", r.stderr);
    std::fs::write(&pw, "correct horse battery\n").unwrap();
    let g = Gui::start(
        &w,
        &[
            "--listen",
            "127.0.0.1",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    let page = g.get("/", &[]);
    assert_eq!(page.status, 401);
    assert!(page.text().contains("type=\"password\""), "a sign-in form");
    let origin = format!("http://{}", g.addr);
    let form = [
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = g.request("POST", "/login", &form, b"password=wrong+horse");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = g.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"password=correct+horse+battery",
    );
    assert_eq!(
        r.status, 403,
        "a sign-in from another page (no Origin): {r:?}"
    );
    let r = g.request("POST", "/login", &form, b"password=correct+horse+battery");
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(g.get("/api/overview", &[("Cookie", &cookie)]).status, 200);
}
