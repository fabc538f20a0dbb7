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
