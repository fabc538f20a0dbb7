//! Trouble on the source side during `bu`: each bad entry is reported and
//! skipped, the rest is backed up, and the exit status says so.

use std::fs;
use std::os::unix::fs::FileTypeExt;

use crate::world::World;
use crate::world::snapshot::flatten;

#[test]
fn device_files_and_files_that_change_while_read_are_skipped() {
    let env = World::new();
    env.new_repo("r");
    let src = env.src().join("t");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok.txt"), b"kept").unwrap();
    // A character device (we run as root in CI; skip that part otherwise).
    let dev = src.join("null-device");
    let made = std::process::Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        assert!(
            fs::symlink_metadata(&dev)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    } else {
        eprintln!("SKIP part: mknod is not permitted here");
    }
    // /proc files say size 0 but read as text: the size read differs from
    // the size listed, exactly like a file written during the backup.
    let proc_file = std::path::Path::new("/proc/version");
    env.new_archive("a", "r", &[&src, proc_file], &[]);
    let run = env.run(&["bu", "-A", "a"]).code(3);
    assert!(
        run.stderr
            .contains("/proc/version changed while it was being read"),
        "{}",
        run.stderr
    );
    if made {
        assert!(
            run.stderr
                .contains("null-device is a socket, FIFO or device"),
            "{}",
            run.stderr
        );
    }
    let snapshot = env.newest("a");
    let names = flatten(&snapshot.root);
    assert!(names.keys().any(|p| p.ends_with("t/ok.txt")), "{names:?}");
    assert!(!names.keys().any(|p| p.ends_with("null-device")));
    assert!(!names.keys().any(|p| p.ends_with("proc/version")));
    assert_eq!(snapshot.header.stats.skipped, if made { 2 } else { 1 });
}

#[test]
fn a_file_that_vanishes_is_reported_not_fatal() {
    let env = World::new();
    env.new_repo("r");
    let src = env.src().join("t");
    fs::create_dir_all(&src).unwrap();
    for i in 0..3000 {
        fs::write(src.join(format!("f{i:04}")), format!("file {i}")).unwrap();
    }
    env.new_archive("a", "r", &[&src], &[]);
    // Delete files while the backup walks and stores; whichever it meets
    // gone is reported, never fatal.
    let child = env
        .cmd()
        .args(["bu", "-A", "a"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for i in (0..3000).rev().step_by(3) {
        let _ = fs::remove_file(src.join(format!("f{i:04}")));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(code == Some(0) || code == Some(3), "{code:?}: {stderr}");
    for line in stderr.lines() {
        assert!(
            line.contains("vanished") || line.contains("No such file"),
            "unexpected: {line}"
        );
    }
    assert_eq!(code == Some(3), !stderr.is_empty());
    // The snapshot holds every file that was still there, each exactly.
    let snapshot = env.newest("a");
    for (path, node) in flatten(&snapshot.root) {
        if let epygibus::snapshot::model::Node::File(f) = node {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let i: usize = name[1..].parse().unwrap();
            assert_eq!(f.size, format!("file {i}").len() as u64, "{name}");
        }
    }
}
