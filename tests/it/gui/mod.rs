//! `epygibus gui` through the real binary: every security rule over raw
//! HTTP (`security`), the jobs and changes (`actions`), and the pages in
//! Debian's chromium driven by playwright-core (`browser`). This module
//! holds what they share: the running server, a raw HTTP client (so
//! every header, Host included, is the test's own) and the test world.

mod actions;
mod browser;
mod security;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::world::files::write_file;
use crate::world::{World, noise, text};

/// A running `epygibus gui --no-browser`, stopped (SIGTERM) when dropped.
pub struct Gui {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The printed URL with its token.
    pub url: String,
    pub token: String,
}

impl Gui {
    pub fn start(w: &World, extra: &[&str]) -> Gui {
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
    pub fn cookie(&self) -> String {
        let r = self.get(&format!("/?token={}", self.token), &[]);
        assert_eq!(r.status, 303, "{r:?}");
        let set = r.header("set-cookie").expect("a cookie");
        set.split(';').next().unwrap().to_owned()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, b"")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
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
    pub fn post(&self, cookie: &str, csrf: &str, path: &str, json: &Value) -> Reply {
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

    pub fn csrf(&self, cookie: &str) -> String {
        let r = self.get("/api/session", &[("Cookie", cookie)]);
        r.json()["csrf"].as_str().unwrap().to_owned()
    }

    /// Waits for a job to end; returns its final state.
    pub fn wait_job(&self, cookie: &str, id: u64) -> Value {
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
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
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

pub fn q(s: &str) -> String {
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
pub fn docs_world() -> (World, PathBuf, String) {
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

pub fn at(t: &Path, rel: &str) -> String {
    t.join(rel).display().to_string()
}
