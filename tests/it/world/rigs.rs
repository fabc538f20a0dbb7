//! The hostile-file-system rigs of the shared directory (`../shared/rigs`
//! beside the project, or `$EPYGIBUS_SHARED/rigs`): bringing one up and
//! (always) down again. A rig that cannot run here, or rigs that cannot be
//! found, make the test print `SKIP: …` and pass.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::run::{Run, label_of, run_timeout};

/// A rig's `up` may install Debian packages the first time.
pub const RIG_TIMEOUT: Duration = Duration::from_secs(600);

/// The rig tests mount file systems, start servers on fixed ports and time
/// things: they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the shared directory is looked for: `$EPYGIBUS_SHARED`, else
/// `../shared` beside the project.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("EPYGIBUS_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// The rigs directory, canonical; None (after printing `SKIP: test: …`)
/// when it cannot be found.
pub fn rigs_dir(test: &str) -> Option<PathBuf> {
    let dir = shared_dir().join("rigs");
    match fs::canonicalize(&dir) {
        Ok(d) if d.is_dir() => Some(d),
        _ => {
            eprintln!(
                "SKIP: {test}: rigs not found at {} (set EPYGIBUS_SHARED)",
                dir.display()
            );
            None
        }
    }
}

/// A rig that is (being) brought up at `dir`; dropping it runs
/// `X.sh down DIR`, which also removes a peer mount.
pub struct Rig {
    pub name: String,
    pub dir: PathBuf,
    script: PathBuf,
}

impl Rig {
    /// `X.sh up DIR extra…` for `test`. Returns None after printing
    /// `SKIP: …` when the rigs are not found or the rig exits 77 (cannot
    /// run here); any other failure panics.
    pub fn up(test: &str, name: &str, dir: &Path, extra: &[&str]) -> Option<Rig> {
        let script = rigs_dir(test)?.join(format!("{name}.sh"));
        assert!(script.is_file(), "no rig script {}", script.display());
        // Constructed first, so a panic below still runs `down`.
        let rig = Rig {
            name: name.to_owned(),
            dir: dir.to_owned(),
            script,
        };
        let out = rig.script_run("up", &[dir.as_os_str()], extra);
        match out.code {
            Some(0) => {}
            Some(77) => {
                let reason = out
                    .stderr
                    .lines()
                    .rev()
                    .find_map(|l| l.split_once("SKIP: ").map(|(_, r)| r.trim().to_owned()))
                    .unwrap_or_else(|| out.stderr.trim().replace('\n', "; "));
                eprintln!("SKIP: {name}: {reason}");
                return None;
            }
            _ => panic!("rig {name} could not start:\n{}", out.describe()),
        }
        assert!(
            is_mount_point(dir),
            "rig {name} reported success but {} is not a mount point:\n{}",
            dir.display(),
            out.describe()
        );
        eprintln!("rig {name} up at {}", dir.display());
        Some(rig)
    }

    /// `smb.sh peer DIR PEERDIR`: a second, independent client mount.
    pub fn peer(&self, peer_dir: &Path) {
        let out = self.script_run("peer", &[self.dir.as_os_str(), peer_dir.as_os_str()], &[]);
        assert_eq!(
            out.code,
            Some(0),
            "rig {} peer failed:\n{}",
            self.name,
            out.describe()
        );
        assert!(is_mount_point(peer_dir), "{}", out.describe());
    }

    fn script_run(&self, verb: &str, dirs: &[&OsStr], extra: &[&str]) -> Run {
        let mut args: Vec<OsString> = vec![verb.into()];
        args.extend(dirs.iter().map(|d| d.to_os_string()));
        args.extend(extra.iter().map(OsString::from));
        let label = format!("{} {}", self.script.display(), label_of(&args));
        let mut cmd = Command::new(&self.script);
        cmd.args(&args).current_dir("/");
        run_timeout(&mut cmd, RIG_TIMEOUT, &label)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let out = self.script_run("down", &[self.dir.as_os_str()], &[]);
        if out.code != Some(0) {
            eprintln!(
                "warning: rig {} did not come down cleanly:\n{}",
                self.name,
                out.describe()
            );
        }
    }
}

pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(m), Some(parent)) = (fs::metadata(dir), dir.parent()) else {
        return false;
    };
    let Ok(p) = fs::metadata(parent) else {
        return false;
    };
    m.dev() != p.dev() || m.ino() == p.ino()
}
