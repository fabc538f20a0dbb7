//! The S3 rig of the shared directory (`rigs/s3.sh`): a real S3 server
//! (moto_server, or s3s-fs with `RIG_S3_SERVER=s3s-fs`) on loopback with a
//! bucket `epygibus`, started for one test and stopped when it ends. The
//! rig installs moto in a Python venv the first time; where it cannot, the
//! test prints `SKIP: …` and passes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::rigs::{RIG_TIMEOUT, rigs_dir};
use super::run::run_timeout;

/// A running S3 server; stopped on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub bucket: String,
    /// The variables a client needs (`AWS_ENDPOINT_URL`, keys, region).
    pub vars: HashMap<String, String>,
    /// The rig's state key (a directory path, not created).
    key: PathBuf,
    script: PathBuf,
}

impl S3Server {
    /// Starts a server keyed by `key` (unique per test: a path in the
    /// test's temp dir). None after `SKIP: …` when it cannot run here.
    pub fn up(test: &str, key: &Path) -> Option<S3Server> {
        let script = rigs_dir(test)?.join("s3.sh");
        let mut server = S3Server {
            endpoint: String::new(),
            bucket: String::new(),
            vars: HashMap::new(),
            key: key.to_owned(),
            script,
        };
        let out = run_timeout(
            Command::new(&server.script).arg("up").arg(key),
            RIG_TIMEOUT,
            "s3.sh up",
        );
        match out.code {
            Some(0) => {}
            Some(77) => {
                eprintln!("SKIP: {test}: {}", out.stderr.trim().replace('\n', "; "));
                return None;
            }
            _ => panic!("the S3 rig could not start:\n{}", out.describe()),
        }
        for line in out.stdout.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "S3_ENDPOINT" => server.endpoint = v.to_owned(),
                "S3_BUCKET" => server.bucket = v.to_owned(),
                _ => {
                    server.vars.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        assert!(!server.endpoint.is_empty(), "{}", out.describe());
        server
            .vars
            .insert("AWS_ENDPOINT_URL".into(), server.endpoint.clone());
        // Quick retries: a test of a dead server should not wait long.
        server
            .vars
            .insert("EPYGIBUS_S3_BACKOFF_MS".into(), "50".into());
        Some(server)
    }

    /// `s3://BUCKET/sub`.
    pub fn url(&self, sub: &str) -> String {
        format!("s3://{}/{sub}", self.bucket)
    }

    /// The variables with the endpoint replaced (a proxy in front).
    pub fn vars_via(&self, endpoint: &str) -> HashMap<String, String> {
        let mut v = self.vars.clone();
        v.insert("AWS_ENDPOINT_URL".into(), endpoint.to_owned());
        v
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("endpoint has a port")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let out = run_timeout(
            Command::new(&self.script).arg("down").arg(&self.key),
            RIG_TIMEOUT,
            "s3.sh down",
        );
        if out.code != Some(0) {
            eprintln!(
                "warning: the S3 rig did not stop cleanly:\n{}",
                out.describe()
            );
        }
    }
}

/// What the fault proxy does to request number `n` (counting from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and its answer.
    Pass,
    /// Answer 500 InternalError without forwarding it.
    Error500,
    /// Forward it, then close the connection without the answer (the
    /// write happened; the client cannot know).
    LoseAnswer,
    /// Close the connection without forwarding (a dead server).
    Refuse,
}

type Plan = dyn Fn(u64) -> Fault + Send + Sync;

/// A tiny HTTP proxy on loopback in front of the S3 server, one request
/// per connection, that fails, loses or delays requests as its plan says.
pub struct FaultProxy {
    pub endpoint: String,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    upstream: u16,
    plan: std::sync::RwLock<Box<Plan>>,
    delay: std::sync::Mutex<std::time::Duration>,
    requests: std::sync::atomic::AtomicU64,
    faults: std::sync::atomic::AtomicU64,
    stop: std::sync::atomic::AtomicBool,
    /// Drop `If-None-Match` headers: a server that ignores conditional
    /// writes (only where the server does not check signatures: moto).
    strip_conditionals: std::sync::atomic::AtomicBool,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> FaultProxy {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState {
            upstream,
            plan: std::sync::RwLock::new(Box::new(|_| Fault::Pass)),
            delay: std::sync::Mutex::new(std::time::Duration::ZERO),
            requests: Default::default(),
            faults: Default::default(),
            stop: Default::default(),
            strip_conditionals: Default::default(),
        });
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(&s, conn);
                });
            }
        });
        FaultProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// From now on, request `n` (counted since the proxy started) gets
    /// `plan(n)`.
    pub fn plan(&self, plan: impl Fn(u64) -> Fault + Send + Sync + 'static) {
        *self.state.plan.write().unwrap() = Box::new(plan);
    }

    /// Every answer waits this long first (a slow server).
    pub fn delay(&self, d: std::time::Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    /// Makes the server behind look like one that ignores
    /// `If-None-Match: *`.
    pub fn strip_conditionals(&self, on: bool) {
        self.state
            .strip_conditionals
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests failed, lost or refused so far.
    pub fn faults(&self) -> u64 {
        self.state.faults.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = std::net::TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Reads one request (head and body by Content-Length) from `conn`.
fn read_request(conn: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// One connection: one request, then the connection is closed (the
/// request's `Connection` header is made `close` upstream too).
fn serve(s: &ProxyState, mut conn: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let request = read_request(&mut conn)?;
    let n = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = (s.plan.read().unwrap())(n);
    let delay = *s.delay.lock().unwrap();
    std::thread::sleep(delay);
    if fault != Fault::Pass {
        s.faults.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Fault::Refuse => return Ok(()),
        Fault::Error500 => {
            let body = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
            write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        Fault::Pass | Fault::LoseAnswer => {}
    }
    let text = String::from_utf8_lossy(&request);
    let head_end = text.find("\r\n\r\n").map_or(request.len(), |i| i + 4);
    let mut head: Vec<String> = String::from_utf8_lossy(&request[..head_end - 4])
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .filter(|l| {
            !(s.strip_conditionals.load(Ordering::SeqCst)
                && l.to_ascii_lowercase().starts_with("if-none-match:"))
        })
        .map(str::to_owned)
        .collect();
    head.push("Connection: close".into());
    let mut upstream = std::net::TcpStream::connect(("127.0.0.1", s.upstream))?;
    upstream.write_all(head.join("\r\n").as_bytes())?;
    upstream.write_all(b"\r\n\r\n")?;
    upstream.write_all(&request[head_end..])?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer)?;
    if fault == Fault::LoseAnswer {
        return Ok(());
    }
    conn.write_all(&answer)?;
    Ok(())
}
