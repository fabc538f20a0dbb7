//! The FUSE face: a read-only file system of snapshots,
//! `DIR/<archive>/<snapshot>/<backed-up absolute paths>` and a `latest`
//! symlink per archive. What is shown, how often snapshots are listed and
//! how content is read are decided by [`crate::ops::mount`]; this module
//! only speaks FUSE (with `fuser`, which needs no libfuse: as root it
//! mounts itself, otherwise through the setuid `fusermount3`) and
//! unmounts on Ctrl-C or SIGTERM.

mod fs;
mod inodes;

use std::io;
use std::path::{Path, PathBuf};

use fuser::{Config, MountOption, Session};

use crate::ops::mount::Catalog;

/// Where the kernel's FUSE device is.
const DEV_FUSE: &str = "/dev/fuse";

/// Why a mount could not start or end.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(
        "FUSE is not available on this machine: {0} is missing. Load the kernel module (`modprobe fuse`), or in a container pass the device /dev/fuse; the Debian package fuse3 provides the rest"
    )]
    NoDevice(PathBuf),
    #[error(
        "{0} cannot be opened by this user ({1}); mounting as a regular user needs it readable and writable by everyone (mode 0666, as Debian's fuse3 sets it up), or mount as root"
    )]
    DeviceAccess(PathBuf, io::Error),
    #[error(
        "mounting as a regular user needs `fusermount3`, which is not installed: install Debian's package fuse3 (`apt-get install fuse3`)"
    )]
    NoFusermount,
    #[error("could not mount on {dir}: {err}")]
    Mount { dir: PathBuf, err: io::Error },
    #[error("the mount on {dir} ended with an error: {err}")]
    Serve { dir: PathBuf, err: io::Error },
}

/// How the mount ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Unmounted from outside (`fusermount3 -u`, `umount`).
    Unmounted,
    /// Ctrl-C or SIGTERM unmounted it.
    Signal,
    /// Ctrl-C or SIGTERM while programs still used it: detached (gone
    /// from the directory tree now, released when the last user lets go).
    Detached,
}

/// Checks that FUSE can be used here: the device, and `fusermount3` when
/// not root (root mounts without it).
pub fn check_fuse() -> Result<(), MountError> {
    check_fuse_at(Path::new(DEV_FUSE), rustix::process::geteuid().is_root())
}

fn check_fuse_at(device: &Path, root: bool) -> Result<(), MountError> {
    if !device.exists() {
        return Err(MountError::NoDevice(device.to_owned()));
    }
    if root {
        return Ok(());
    }
    if fusermount().is_none() {
        return Err(MountError::NoFusermount);
    }
    // fuser (as libfuse) opens the device itself and leaves only the
    // mount to fusermount3. Opening it makes an unused connection, which
    // closing drops.
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
    {
        return Err(MountError::DeviceAccess(device.to_owned(), e));
    }
    Ok(())
}

/// `fusermount3` (or `fusermount`, or `$FUSERMOUNT_PATH`) as fuser finds
/// it.
fn fusermount() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FUSERMOUNT_PATH") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("fusermount3"), d.join("fusermount")])
        .find(|p| p.is_file())
}

/// Mounts the catalog on `dir` and serves it until it is unmounted (from
/// outside, or by SIGINT/SIGTERM, which this call takes over). `ready` is
/// called once the mount is in place.
pub fn serve(catalog: Catalog, dir: &Path, ready: impl FnOnce()) -> Result<Ended, MountError> {
    check_fuse()?;
    // Signals are taken by one thread with sigwait; every thread started
    // from here on (fuser's included) inherits the blocked mask.
    let signals = block_signals();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("epygibus".into()),
        MountOption::Subtype("epygibus".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    let mut session = Session::new(fs::SnapshotFs::new(catalog), dir, &config).map_err(|err| {
        MountError::Mount {
            dir: dir.to_owned(),
            err,
        }
    })?;
    let mut unmounter = session.unmount_callable();
    let how = std::sync::Arc::new(std::sync::Mutex::new(Ended::Unmounted));
    let told = how.clone();
    let target = dir.to_owned();
    std::thread::spawn(move || {
        wait_for(&signals);
        let ended = match unmounter.unmount() {
            Ok(()) => Ended::Signal,
            Err(_) => {
                // Busy (a shell's current directory, an open file): take
                // it out of the tree now; the kernel lets go later.
                detach(&target);
                Ended::Detached
            }
        };
        *told.lock().unwrap_or_else(|p| p.into_inner()) = ended;
    });
    ready();
    session.run().map_err(|err| MountError::Serve {
        dir: dir.to_owned(),
        err,
    })?;
    let ended = std::mem::replace(
        &mut *how.lock().unwrap_or_else(|p| p.into_inner()),
        Ended::Unmounted,
    );
    Ok(ended)
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn block_signals() -> libc::sigset_t {
    let set = signal_set();
    // SAFETY: changes only this thread's mask, with a valid set.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

fn wait_for(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: sigwait on a valid set of signals blocked in every thread.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
}

fn detach(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r != 0 {
        // A regular user may only unmount through fusermount3.
        let _ = std::process::Command::new(fusermount().unwrap_or_else(|| "fusermount3".into()))
            .args(["-u", "-z", "--"])
            .arg(dir)
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_names_the_package() {
        let e = check_fuse_at(Path::new("/nonexistent/fuse"), true).unwrap_err();
        assert!(matches!(e, MountError::NoDevice(_)));
        assert!(e.to_string().contains("fuse3"), "{e}");
    }
}
