//! `epygibus gui` through the real binary: every security rule over raw
//! HTTP (Host, token and cookie, CSRF and Origin, CSP, downloads as
//! attachments, paths only through the snapshot tree, restore targets),
//! and the pages in Debian's chromium driven by playwright-core
//! (`tests/gui/drive.mjs`): the dashboard, downloading a file, restoring
//! a directory (identical tree), "Back up now" with progress, a
//! 10,000-entry directory, check, search, the rescue, a phone-sized
//! screen. Screenshots go to `target/gui-screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::world::files::write_file;
use crate::world::tree::assert_same_tree;
use crate::world::{World, noise, text};

/// A running `epygibus gui --no-browser`, stopped (SIGTERM) when dropped.
struct Gui {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The printed URL with its token.
    url: String,
    token: String,
}

impl Gui {
    fn start(w: &World, extra: &[&str]) -> Gui {
        let mut cmd = w.cmd();
        cmd.args(["gui", "--no-browser", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start epygibus gui");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_owned();
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let rest = url.strip_prefix("http://").unwrap();
        let (addr, query) = rest.split_once("/?token=").unwrap();
        Gui {
            child,
            addr: addr.to_owned(),
            token: query.to_owned(),
            url,
        }
    }

    /// Signs in with the token; returns the cookie header value.
    fn cookie(&self) -> String {
        let r = self.get(&format!("/?token={}", self.token), &[]);
        assert_eq!(r.status, 303, "{r:?}");
        let set = r.header("set-cookie").expect("a cookie");
        set.split(';').next().unwrap().to_owned()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, b"")
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        Reply::parse(&raw)
    }

    /// A POST as the GUI's own pages send it.
    fn post(&self, cookie: &str, csrf: &str, path: &str, json: &Value) -> Reply {
        let origin = format!("http://{}", self.addr);
        self.request(
            "POST",
            path,
            &[
                ("Cookie", cookie),
                ("X-CSRF-Token", csrf),
                ("Origin", &origin),
                ("Content-Type", "application/json"),
            ],
            json.to_string().as_bytes(),
        )
    }

    fn csrf(&self, cookie: &str) -> String {
        let r = self.get("/api/session", &[("Cookie", cookie)]);
        r.json()["csrf"].as_str().unwrap().to_owned()
    }

    /// Waits for a job to end; returns its final state.
    fn wait_job(&self, cookie: &str, id: u64) -> Value {
        for _ in 0..1200 {
            let j = self
                .get(&format!("/api/jobs/{id}"), &[("Cookie", cookie)])
                .json();
            if j["state"] != "running" {
                return j;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("job {id} did not end");
    }
}

impl Drop for Gui {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a full header");
        let head = String::from_utf8_lossy(&raw[..end]);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        b = &b[nl + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn q(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// A world with archive `docs` over `src/docs` (text, a hostile HTML
/// file, an SVG with a script, a subtree with modes and times) and one
/// snapshot. Returns the world, the tree and the snapshot's name.
fn docs_world() -> (World, PathBuf, String) {
    let w = World::new();
    let t = w.src().join("docs");
    write_file(&t.join("notes.txt"), &text(5000, 1), 0o644);
    write_file(
        &t.join("evil.html"),
        b"<html><script>document.title='pwned'</script></html>",
        0o644,
    );
    write_file(
        &t.join("evil.svg"),
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
        0o644,
    );
    write_file(&t.join("tree/a.bin"), &noise(300_000, 2), 0o600);
    write_file(&t.join("tree/deep/b.txt"), &text(777, 3), 0o640);
    write_file(&t.join("tree/deep/exec.sh"), b"#!/bin/sh\n", 0o755);
    // Names that would be markup if a page put them in as HTML.
    write_file(&t.join("tree/deep/<b>bold<b>.txt"), b"hostile name", 0o644);
    write_file(
        &t.join("tree/deep/<img src=x onerror=alert(1)>"),
        b"x",
        0o644,
    );
    std::os::unix::fs::symlink("a.bin", t.join("tree/link")).unwrap();
    crate::world::set_times(
        &t.join("tree/a.bin"),
        1_600_000_000_123_456_789,
        1_600_000_000_000_000_000,
    );
    crate::world::set_times(
        &t.join("tree/deep"),
        1_500_000_000_000_000_000,
        1_500_000_000_000_000_000,
    );
    w.new_repo("home");
    w.new_archive("docs", "home", &[&t], &[]);
    w.ok(&["bu", "-A", "docs"]);
    let snap = w.snapshot_names("docs")[0].stamp();
    (w, t, snap)
}

fn at(t: &Path, rel: &str) -> String {
    t.join(rel).display().to_string()
}

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
