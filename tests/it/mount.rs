//! `mount` in real FUSE: snapshots shown exactly (bytes, modes, owners,
//! nanosecond times, symlinks, hard links, names that are not UTF-8),
//! `diff -r` against the source finding nothing, reads at any offset of
//! large content in both stored forms, EROFS for every write, new
//! snapshots appearing without remounting, clean ends by SIGINT, SIGTERM
//! and `fusermount3 -u`, and bad input. Tests say SKIP only where the
//! machine has no /dev/fuse (or, for a regular user, no fusermount3).

use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::files::{is_root, write_file};
use crate::world::tree::{assert_same_listing, listing};
use crate::world::{Machine, World, noise, ns, set_times, text};

fn fusermount3() -> bool {
    Command::new("fusermount3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether FUSE can be used here; prints SKIP when not.
fn can_mount(test: &str) -> bool {
    let ok = Path::new("/dev/fuse").exists() && (is_root() || fusermount3());
    if !ok {
        eprintln!("SKIP: {test}: no /dev/fuse here, or no fusermount3 (Debian package fuse3)");
    }
    ok
}

/// Whether something is mounted on `dir`, from the kernel's table (a
/// regular user's FUSE mount cannot even be stat()ed by root).
fn is_mount_point(dir: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let want = dir.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(want))
}

/// A running `epygibus mount`.
struct Mounted {
    child: Child,
    dir: PathBuf,
    stderr: PathBuf,
}

impl Mounted {
    /// Starts `mount args… dir` on `machine` and waits until `dir` shows
    /// something.
    fn start(machine: &Machine, dir: &Path, args: &[&str]) -> Mounted {
        let stderr = dir.with_extension("stderr");
        let mut cmd = machine.cmd();
        cmd.arg("mount")
            .args(args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        let mut child = cmd.spawn().unwrap();
        let started = Instant::now();
        while !is_mount_point(dir) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "mount ended ({status}): {}",
                    fs::read_to_string(&stderr).unwrap()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mount did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted {
            child,
            dir: dir.to_owned(),
            stderr,
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to end; returns its status and stderr.
    fn wait(&mut self) -> (Option<i32>, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), fs::read_to_string(&self.stderr).unwrap());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "mount did not end"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for unmount in [&["fusermount3", "-u", "-z"][..], &["umount", "-l"]] {
            if is_mount_point(&self.dir) {
                let _ = Command::new(unmount[0])
                    .args(&unmount[1..])
                    .arg(&self.dir)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tree with every kind of entry and large content in both forms.
fn rich_tree(t: &Path) {
    write_file(&t.join("plain.txt"), b"hello\n", 0o644);
    write_file(&t.join("empty"), b"", 0o600);
    write_file(&t.join("exec.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write_file(
        &t.join("sub/deeper/text.log"),
        &text(3 * (1 << 20) + 4321, 1),
        0o640,
    );
    write_file(
        &t.join("sub/noise.bin"),
        &noise(2 * (1 << 20) + 17, 2),
        0o444,
    );
    write_file(&t.join("sub/sticky/x"), b"x", 0o644);
    crate::world::chmod(&t.join("sub/sticky"), 0o1777);
    fs::write(t.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin-1 name").unwrap();
    fs::hard_link(t.join("exec.sh"), t.join("sub/exec-again.sh")).unwrap();
    symlink("plain.txt", t.join("link")).unwrap();
    symlink("../nowhere", t.join("sub/dangling")).unwrap();
    set_times(
        &t.join("plain.txt"),
        ns(1_600_000_000, 123_456_789),
        ns(1_600_000_001, 5),
    );
    set_times(
        &t.join("link"),
        ns(1_500_000_000, 42),
        ns(1_500_000_000, 42),
    );
    if is_root() {
        std::os::unix::fs::lchown(t.join("sub/noise.bin"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(t.join("link"), Some(99), Some(98)).unwrap();
    }
    set_times(&t.join("sub"), ns(1_400_000_000, 7), ns(1_400_000_000, 7));
}

/// The snapshot's copy of `path` under a mount of archive `archive`.
fn in_snapshot(mnt: &Path, archive: &str, snapshot: &str, path: &Path) -> PathBuf {
    mnt.join(archive)
        .join(snapshot)
        .join(path.strip_prefix("/").unwrap())
}

#[test]
fn mount_shows_each_snapshot_exactly() {
    if !can_mount("mount_shows_each_snapshot_exactly") {
        return;
    }
    let env = World::new();
    let t = env.src().join("t");
    rich_tree(&t);
    env.new_repo("r");
    env.new_archive("a", "r", &[&t], &["--keep-broken-soft-links"]);
    env.ok(&["bu", "-A", "a"]);
    let first = env.snapshot_names("a")[0].stamp();
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = Mounted::start(&env, &mnt, &[]);

    let shown = in_snapshot(&mnt, "a", &first, &t);
    assert_same_listing(
        &listing(&t),
        &listing(&shown),
        "the snapshot through the mount",
    );
    let latest = mnt.join("a/latest");
    assert_eq!(fs::read_link(&latest).unwrap(), Path::new(&first));
    let names: Vec<String> = fs::read_dir(mnt.join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // The system's diff finds no difference either.
    let d = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&t)
        .arg(&shown)
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "diff -r: {}{}",
        String::from_utf8_lossy(&d.stdout),
        String::from_utf8_lossy(&d.stderr)
    );
    // Hard links share an inode, as on disk.
    use std::os::unix::fs::MetadataExt;
    let a = fs::metadata(shown.join("exec.sh")).unwrap();
    let b = fs::metadata(shown.join("sub/exec-again.sh")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));

    // Reads at any offset, backwards too, in both stored forms.
    for (rel, seed) in [("sub/deeper/text.log", 1u64), ("sub/noise.bin", 2)] {
        let want = fs::read(t.join(rel)).unwrap();
        let mut f = fs::File::open(shown.join(rel)).unwrap();
        let mut buf = vec![0u8; 10_000];
        for off in [
            want.len() as u64 - 5000,
            5,
            (1 << 20) + 3,
            2 * (1 << 20) - 1,
            0,
        ] {
            f.seek(SeekFrom::Start(off)).unwrap();
            let n = f.read(&mut buf).unwrap();
            let end = (off as usize + buf.len()).min(want.len());
            assert_eq!(
                &buf[..n],
                &want[off as usize..end],
                "{rel} at {off} (seed {seed})"
            );
        }
    }
    drop(m);
}

#[test]
fn mount_refuses_writes_and_shows_new_snapshots_and_ends_cleanly() {
    if !can_mount("mount_refuses_writes_and_shows_new_snapshots_and_ends_cleanly") {
        return;
    }
    let env = World::new();
    let t = env.src().join("t");
    write_file(&t.join("f.txt"), b"one", 0o644);
    env.new_repo("r");
    env.new_archive("a", "r", &[&t], &[]);
    env.new_archive("b", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "a", "-A", "b"]);
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let mut m = Mounted::start(&env, &mnt, &["-A", "a", "--refresh", "1"]);
    let names: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a"], "only the archive asked for");
    let file = mnt
        .join("a/latest")
        .join(t.strip_prefix("/").unwrap())
        .join("f.txt");
    assert_eq!(fs::read(&file).unwrap(), b"one");
    let erofs = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs(
        fs::OpenOptions::new().write(true).open(&file).map(|_| ()),
        "open for writing",
    );
    erofs(fs::write(file.with_file_name("new"), b"x"), "create");
    erofs(fs::create_dir(mnt.join("a/dir")), "mkdir");
    erofs(fs::remove_file(&file), "unlink");
    erofs(fs::rename(&file, file.with_file_name("g")), "rename");
    erofs(
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)),
        "chmod",
    );
    erofs(symlink("x", mnt.join("a/l")), "symlink");
    assert_eq!(fs::read(&file).unwrap(), b"one");

    // A new backup shows up without remounting.
    write_file(&t.join("f.txt"), b"two", 0o644);
    env.ok(&["bu", "-A", "a"]);
    let newest = env.snapshot_names("a")[1].stamp();
    let started = Instant::now();
    while fs::read_link(mnt.join("a/latest")).unwrap() != Path::new(&newest) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "new snapshot did not appear"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        fs::read(
            mnt.join("a")
                .join(&newest)
                .join(t.strip_prefix("/").unwrap())
                .join("f.txt")
        )
        .unwrap(),
        b"two"
    );

    // SIGTERM unmounts and ends with status 0.
    m.signal(libc::SIGTERM);
    let (code, err) = m.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("unmounted"), "{err}");
    assert!(!is_mount_point(&mnt));
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0);
    // Ctrl-C too, and `fusermount3 -u` from outside.
    let mut m = Mounted::start(&env, &mnt, &[]);
    m.signal(libc::SIGINT);
    assert_eq!(m.wait().0, Some(0));
    assert!(!is_mount_point(&mnt));
    let mut m = Mounted::start(&env, &mnt, &[]);
    let u = Command::new("fusermount3")
        .arg("-u")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(u.success());
    assert_eq!(m.wait().0, Some(0));
    assert!(!is_mount_point(&mnt));
}

#[test]
fn mount_bad_input_is_one_clear_error() {
    let env = World::new();
    env.write_src("f", b"x");
    env.new_repo("r");
    env.new_archive("a", "r", &[&env.src()], &[]);
    env.ok(&["bu", "-A", "a"]);
    let full = env.path("full");
    write_file(&full.join("x"), b"x", 0o644);
    let e = env.fail(&["mount", full.to_str().unwrap()]);
    assert!(e.contains("is not empty"), "{e}");
    let e = env.fail(&["mount", full.join("x").to_str().unwrap()]);
    assert!(e.contains("not a directory"), "{e}");
    let e = env.fail(&["mount", env.path("missing").to_str().unwrap()]);
    assert!(e.contains("cannot be used"), "{e}");
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    let e = env.fail(&["mount", "-A", "nope", mnt.to_str().unwrap()]);
    assert!(e.contains("nope"), "{e}");
    assert!(!is_mount_point(&mnt));
    if !can_mount("mount_bad_input_is_one_clear_error (busy)") {
        return;
    }
    let m = Mounted::start(&env, &mnt, &[]);
    let e = env.fail(&["mount", mnt.to_str().unwrap()]);
    assert!(e.contains("is busy"), "{e}");
    drop(m);
    // Without /dev/fuse (a private mount namespace whose /dev is empty):
    // the error names the package.
    if is_root() {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /dev && exec \"$0\" \"$@\"",
        ])
        .arg(env.bin())
        .arg("mount")
        .arg(&mnt);
        env.isolate(&mut c);
        let r = env.exec(&mut c, "mount without /dev/fuse");
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(
            r.stderr.contains("/dev/fuse is missing") && r.stderr.contains("fuse3"),
            "{r:?}"
        );
    } else {
        eprintln!("SKIP: mount without /dev/fuse: needs root for a mount namespace");
    }
}

#[test]
fn mount_as_a_regular_user_through_fusermount3() {
    if !is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("SKIP: mount as a regular user: needs root to set the user up, and /dev/fuse");
        return;
    }
    // nobody: fusermount3 needs a user name for the uid.
    let env = World::new_as(65534);
    let t = env.src().join("t");
    fs::create_dir(&t).unwrap();
    std::os::unix::fs::chown(&t, Some(65534), Some(65534)).unwrap();
    let f = t.join("mine.txt");
    fs::File::create(&f)
        .unwrap()
        .write_all(b"user data")
        .unwrap();
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
    env.new_repo("r");
    env.new_archive("a", "r", &[&t], &[]);
    env.ok(&["bu", "-A", "a"]);
    let mnt = env.path("mnt");
    fs::create_dir(&mnt).unwrap();
    std::os::unix::fs::chown(&mnt, Some(65534), Some(65534)).unwrap();
    // Without fusermount3 on PATH: the error names the package.
    let mut c = env.cmd();
    c.env("PATH", "/nonexistent").arg("mount").arg(&mnt);
    let r = env.exec(&mut c, "mount without fusermount3");
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("fusermount3") && r.stderr.contains("fuse3"),
        "{r:?}"
    );
    if !fusermount3() {
        eprintln!("SKIP: mount as a regular user: fusermount3 (Debian fuse3) not installed");
        return;
    }
    let user_may_open = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            "exec 3<>/dev/fuse",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !user_may_open {
        // /dev/fuse is root's only here (a container): the error says so.
        let e = env.fail(&["mount", mnt.to_str().unwrap()]);
        assert!(e.contains("/dev/fuse cannot be opened by this user"), "{e}");
        eprintln!(
            "SKIP: mount as a regular user: /dev/fuse is not open to regular users on this machine"
        );
        return;
    }
    let mut m = Mounted::start(&env, &mnt, &[]);
    let shown = mnt
        .join("a/latest")
        .join(t.strip_prefix("/").unwrap())
        .join("mine.txt");
    // Read as that user (root is not let in without allow_other).
    let cat = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&shown)
        .output()
        .unwrap();
    assert_eq!(
        cat.stdout,
        b"user data",
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    let e = fs::metadata(&shown).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::PermissionDenied,
        "others (root too) stay out"
    );
    m.signal(libc::SIGINT);
    let (code, err) = m.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(!is_mount_point(&mnt));
}
