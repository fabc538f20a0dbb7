//! Backups in the original epygibus's format written by the test itself
//! (pickles as Python 3 writes them, gzip content named by SHA-1), of a
//! tree inside the test's temp dir: so `restore -E` can put files back at
//! their original paths, and content larger than one read (the two-pass
//! store) is imported.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::world::{World, chmod, noise, set_times, text, tree};

/// A protocol 2 pickle, written opcode by opcode.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn str(&mut self, s: &[u8]) {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s);
    }
    fn int(&mut self, n: i64) {
        self.0.push(0x8a);
        self.0.push(8);
        self.0.extend(n.to_le_bytes());
    }
    fn attrs(&mut self, m: &fs::Metadata) {
        self.0.push(b'(');
        for n in [
            i64::from(m.mode()),
            m.ino() as i64,
            m.dev() as i64,
            m.nlink() as i64,
            i64::from(m.uid()),
            i64::from(m.gid()),
            m.size() as i64,
            m.atime(),
            m.mtime(),
            m.ctime(),
        ] {
            self.int(n);
        }
        self.0.push(b't');
    }
    /// `cls()` by NEWOBJ; the caller then pushes a state dict and `b`.
    fn object(&mut self, class: &str) {
        self.0
            .extend(format!("cepygibus_pkg.snapshot\n{class}\n").as_bytes());
        self.0.extend([b')', 0x81]);
    }
}

/// Writes the `Snapshot` of directory `dir` (whose path components from
/// `/` are `path`), with everything below `root`; content goes to `repo`.
fn snapshot_of(p: &mut Pickle, dir: &Path, below: &[&std::ffi::OsStr], repo: &Path) {
    p.object("Snapshot");
    p.0.extend(b"}(");
    p.str(b"parent");
    p.0.push(b'N');
    p.str(b"attributes");
    p.attrs(&fs::symlink_metadata(dir).unwrap());
    let (mut subdirs, mut files, mut links) = (Vec::new(), Vec::new(), Vec::new());
    match below.split_first() {
        Some((next, rest)) => subdirs.push((next.to_os_string(), rest.to_vec())),
        None => {
            let mut names: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                let m = fs::symlink_metadata(dir.join(&n)).unwrap();
                if m.file_type().is_symlink() {
                    links.push(n);
                } else if m.is_dir() {
                    subdirs.push((n, Vec::new()));
                } else {
                    files.push(n);
                }
            }
        }
    }
    p.str(b"subdirs");
    p.0.extend(b"}(");
    for (name, rest) in subdirs {
        p.str(name.as_bytes());
        snapshot_of(p, &dir.join(&name), &rest, repo);
    }
    p.0.push(b'u');
    p.str(b"files");
    p.0.extend(b"}(");
    for name in files {
        let path = dir.join(&name);
        let data = fs::read(&path).unwrap();
        let sha1 = epygibus::legacy::sha1::Sha1Hex::of(&data).to_hex();
        let file = repo
            .join(&sha1[..1])
            .join(&sha1[1..3])
            .join(format!("{}.gz", &sha1[3..]));
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        fs::write(&file, gz.finish().unwrap()).unwrap();
        p.str(name.as_bytes());
        p.0.push(b'(');
        p.attrs(&fs::symlink_metadata(&path).unwrap());
        p.str(sha1.as_bytes());
        p.0.push(b't');
    }
    p.0.push(b'u');
    p.str(b"file_links");
    p.0.extend(b"}(");
    for name in links {
        let path = dir.join(&name);
        p.str(name.as_bytes());
        p.0.push(b'(');
        p.attrs(&fs::symlink_metadata(&path).unwrap());
        p.str(fs::read_link(&path).unwrap().as_os_str().as_bytes());
        p.0.push(b't');
    }
    p.0.push(b'u');
    p.str(b"subdir_links");
    p.0.extend(b"}u");
    p.0.push(b'b');
}

/// An original backup of `data` on the disk `disk`: returns the snapshot
/// directory.
fn original_backup(data: &Path, disk: &Path, stamp: &str) -> PathBuf {
    let base = disk.join("epygibus.d");
    let repo = base.join("repos/u/r");
    let snaps = base.join("snapshots/h/u/arch");
    fs::create_dir_all(&repo).unwrap();
    fs::create_dir_all(&snaps).unwrap();
    fs::write(repo.join("ref_counter"), b"\x80\x02}.").unwrap();
    let mut p = Pickle::new();
    p.object("SnapshotPlus");
    p.0.extend(b"}(");
    p.str(b"snapshot");
    let comps: Vec<_> = data.components().skip(1).map(|c| c.as_os_str()).collect();
    snapshot_of(&mut p, Path::new("/"), &comps, &repo);
    p.str(b"_statistics");
    p.0.push(b'(');
    for n in [3, 1, 0, 3, 0] {
        p.int(n);
    }
    p.0.push(b't');
    p.str(b"_repo_mgmt_key");
    p.0.push(b'(');
    // Recorded where the disk was: somewhere else now.
    p.str(b"/gone/epygibus.d/repos/u/r");
    p.str(b"/gone/epygibus.d/repos/u/r/ref_counter");
    p.str(b"/gone/epygibus.d/repos/u/r/lock");
    p.0.push(0x88);
    p.0.extend(b"tub.");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&p.0).unwrap();
    fs::write(snaps.join(format!("{stamp}.pkl.gz")), gz.finish().unwrap()).unwrap();
    snaps
}

/// A tree with whole-second times (all the original kept): a large file
/// (two reads when stored), a small one, an empty one, a 0600 file, a
/// symlink and a hard link.
fn make_tree(data: &Path) {
    let write = |rel: &str, bytes: &[u8], mode: u32, mtime: i64| {
        crate::world::files::write_file(&data.join(rel), bytes, mode);
        set_times(
            &data.join(rel),
            mtime * 1_000_000_000,
            mtime * 1_000_000_000,
        );
    };
    write("big.bin", &noise(1_500_000, 7), 0o644, 1_500_000_000);
    write("notes.txt", &text(5_000, 3)[..], 0o600, 1_400_000_000);
    write("sub/empty", b"", 0o644, 1_300_000_000);
    fs::hard_link(data.join("notes.txt"), data.join("sub/notes-again.txt")).unwrap();
    symlink("../notes.txt", data.join("sub/link")).unwrap();
    set_times(&data.join("sub/link"), 1_100_000_000_000_000_000, 0);
    chmod(&data.join("sub"), 0o750);
    for d in [data.join("sub"), data.to_owned()] {
        set_times(&d, 1_200_000_000_000_000_000, 1_200_000_000_000_000_000);
    }
}

#[test]
fn restore_from_an_original_snapshot_puts_the_tree_back() {
    let w = World::new();
    let data = w.src().join("data");
    make_tree(&data);
    let want = tree::listing(&data);
    let snaps = original_backup(&data, &w.path("disk"), "2020-01-02-03-04-05");
    fs::remove_dir_all(&data).unwrap();
    w.ok(&args!["restore", "-E", &snaps, "--all"]);
    tree::assert_same_listing(&want, &tree::listing(&data), "restore -E --all");
    // One file, after it was changed: moved aside, then put back.
    fs::write(data.join("notes.txt"), b"changed").unwrap();
    let run = w.run(&args![
        "restore",
        "-E",
        &snaps,
        "--file",
        data.join("sub/notes-again.txt")
    ]);
    run.code(0).stderr_has("moved");
    assert_eq!(
        fs::read(data.join("sub/notes-again.txt")).unwrap(),
        &text(5_000, 3)[..]
    );
}

#[test]
fn import_of_large_content_reads_it_checked_and_restores_it() {
    let w = World::new();
    let data = w.src().join("data");
    make_tree(&data);
    let want = tree::listing(&data);
    let snaps = original_backup(&data, &w.path("disk"), "2020-01-02-03-04-05");
    w.new_repo("home");
    w.ok(&args![
        "import", "-E", &snaps, "-A", "arch", "-R", "home", "--tz", "UTC"
    ]);
    assert_eq!(w.snapshot_names("arch")[0].stamp(), "2020-01-02-03-04-05");
    fs::remove_dir_all(&data).unwrap();
    w.ok(&["restore", "-A", "arch", "--all"]);
    tree::assert_same_listing(&want, &tree::listing(&data), "restore of the import");
    w.assert_ref_counts("home", &["arch"], &[], "after the import");

    // The large content damaged: refused, on both of its reads.
    let w2 = World::new();
    let data2 = w2.src().join("data");
    make_tree(&data2);
    let snaps2 = original_backup(&data2, &w2.path("disk"), "2020-01-02-03-04-05");
    let big =
        epygibus::legacy::sha1::Sha1Hex::of(&fs::read(data2.join("big.bin")).unwrap()).to_hex();
    let file = w2
        .path("disk/epygibus.d/repos/u/r")
        .join(&big[..1])
        .join(&big[1..3])
        .join(format!("{}.gz", &big[3..]));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&noise(1_500_000, 8)).unwrap();
    fs::write(&file, gz.finish().unwrap()).unwrap();
    w2.new_repo("home");
    let run = w2.run(&args![
        "import", "-E", &snaps2, "-A", "arch", "-R", "home", "--tz", "UTC"
    ]);
    let run = run.code(3).stderr_has("does not match its SHA-1");
    assert!(run.stderr.contains("big.bin"), "{run:?}");
    assert!(w2.snapshot_names("arch").is_empty());
    w2.assert_ref_counts("home", &["arch"], &[], "nothing counted");
}
