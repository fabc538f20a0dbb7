//! Running a child process with a timeout and keeping what it did: exit
//! status, output and timing. The whole process group is killed on
//! timeout, so a hung command fails its test instead of blocking the suite.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What one child process did.
pub struct Run {
    pub label: String,
    /// None when it was killed (timeout) or died of a signal.
    pub code: Option<i32>,
    /// stdout, lossily decoded.
    pub stdout: String,
    /// stdout exactly as written (`cat`).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    /// Both stdout and stderr were valid UTF-8.
    utf8: bool,
    /// Wall-clock seconds from spawn to exit.
    pub secs: f64,
    pub started: Instant,
    pub ended: Instant,
    pub timed_out: bool,
}

impl Run {
    pub fn describe(&self) -> String {
        let out: String = self.stdout.chars().take(6000).collect();
        let err: String = self.stderr.chars().take(6000).collect();
        format!(
            "{}: exit {:?}{} after {:.2} s\n--- stdout\n{}\n--- stderr\n{}",
            self.label,
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.secs,
            out,
            err
        )
    }

    /// Asserts the exit status.
    pub fn code(self, want: i32) -> Run {
        assert_eq!(self.code, Some(want), "{}", self.describe());
        self
    }

    /// Asserts nothing was written to stderr.
    pub fn quiet(self) -> Run {
        assert!(self.stderr.is_empty(), "{}", self.describe());
        self
    }

    /// Asserts stdout and stderr were valid UTF-8.
    pub fn utf8(self) -> Run {
        assert!(self.utf8, "output is not UTF-8: {}", self.describe());
        self
    }

    /// Asserts a failure (status 1) that printed nothing on stdout and an
    /// `epygibus: error:` on stderr.
    pub fn failed(self) -> Run {
        let run = self.code(1);
        assert!(
            run.stdout_bytes.is_empty(),
            "printed on failure: {}",
            run.describe()
        );
        assert!(
            run.stderr.contains("epygibus: error: "),
            "no error message: {}",
            run.describe()
        );
        run
    }

    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}: {}",
            self.describe()
        );
        self
    }

    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Runs `cmd` (stdin closed, output captured) in its own process group;
/// after `timeout` the whole group is killed and `code` is None.
pub fn run_timeout(cmd: &mut Command, timeout: Duration, label: &str) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ro = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(Instant::now());
        status
    });
    let (ended, timed_out) = match rx.recv_timeout(timeout) {
        Ok(t) => (t, false),
        Err(_) => {
            // SAFETY: kill(2) with a negative pid signals the child's own
            // process group (process_group(0) above); it is not reaped yet.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            (Instant::now(), true)
        }
    };
    let status = waiter.join().unwrap().expect("wait for child");
    let stdout_bytes = ro.join().unwrap();
    let stderr_bytes = re.join().unwrap();
    let utf8 =
        std::str::from_utf8(&stdout_bytes).is_ok() && std::str::from_utf8(&stderr_bytes).is_ok();
    Run {
        label: label.to_owned(),
        code: if timed_out { None } else { status.code() },
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
        utf8,
        secs: (ended - started).as_secs_f64(),
        started,
        ended,
        timed_out,
    }
}

/// Fails the test if the run hung, died of a signal or panicked.
pub fn check_sane(run: &Run) {
    assert!(!run.timed_out, "timed out: {}", run.describe());
    assert!(run.code.is_some(), "killed by a signal: {}", run.describe());
    assert!(!run.stderr.contains("panicked"), "{}", run.describe());
    assert_ne!(run.code, Some(101), "{}", run.describe());
}

/// The arguments as one line, for messages.
pub fn label_of<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
