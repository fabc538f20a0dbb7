//! Micro-benchmarks of the hot paths, so a regression shows before the
//! full comparison with restic and borg (`bench/run.sh`). Plain timing, no
//! framework: `cargo bench --bench micro` prints one line per measurement
//! (best of several rounds).

use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use epygibus::config::ArchiveSpec;
use epygibus::content::{Access, ContentToken, LockWait, NewRepository, Repository, gzip_member};
use epygibus::progress::NoProgress;
use epygibus::snapshot::format::{self, Header, Snapshot};
use epygibus::snapshot::model::{Attrs, DirNode, FileName, FileNode, Node};
use epygibus::snapshot::{self, BackupOptions};

/// Best time of `rounds` runs of `f`.
fn best(rounds: usize, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Text-like data (what most backed-up files are) that compresses ~3x.
fn texty(len: usize) -> Vec<u8> {
    let words = [
        &b"backup "[..],
        b"content ",
        b"snapshot ",
        b"0x3f27 ",
        b"fn main() ",
        b"\n",
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize]);
        if x.is_multiple_of(5) {
            out.extend_from_slice(&x.to_le_bytes()[..3]);
        }
    }
    out.truncate(len);
    out
}

fn bench_hash_and_gzip() {
    let data = texty(64 << 20);
    let d = best(3, || {
        black_box(ContentToken::of(&data));
    });
    println!(
        "hash   BLAKE3, 64 MB:               {:8.0} MB/s",
        mb_per_s(data.len(), d)
    );
    let chunk = &data[..1 << 20];
    let mut out_len = 0;
    let d = best(3, || {
        out_len = 0;
        for _ in 0..32 {
            out_len += black_box(gzip_member(chunk)).len();
        }
    });
    println!(
        "gzip   libdeflate level 6, 32 MiB:   {:8.0} MB/s (one core), ratio {:.2}",
        mb_per_s(32 << 20, d),
        (32u64 << 20) as f64 / out_len as f64
    );
}

/// A tree of `n` files in directories of 100.
fn tree(n: usize) -> DirNode {
    let mut root = DirNode::default();
    for d in 0..n.div_ceil(100) {
        let mut dir = DirNode::default();
        for f in 0..100.min(n - d * 100) {
            let i = (d * 100 + f) as u64;
            dir.entries.push(epygibus::snapshot::model::Entry {
                name: FileName::new(format!("file-{f:04}.txt").into_bytes()).unwrap(),
                node: Node::File(FileNode {
                    attrs: Attrs {
                        mode: 0o100644,
                        uid: 1000,
                        gid: 1000,
                        mtime_ns: 1_700_000_000_000_000_000 + i as i64,
                        atime_ns: 1_700_000_000_000_000_000,
                        ctime_ns: 1_700_000_000_000_000_000 + i as i64,
                        ino: 1_000_000 + i,
                        dev: 2049,
                        nlink: 1,
                    },
                    size: 4096 + i,
                    token: ContentToken::of(&i.to_le_bytes()),
                }),
            });
        }
        root.insert(
            FileName::new(format!("dir-{d:04}").into_bytes()).unwrap(),
            Node::Dir(dir),
        );
    }
    root
}

fn bench_snapshot_codec() {
    let snapshot = Snapshot {
        header: Header::default(),
        root: tree(100_000),
    };
    let mut bytes = Vec::new();
    let d = best(3, || bytes = black_box(format::encode(&snapshot)));
    println!(
        "encode snapshot, 100k entries:      {:8.1} ms ({:.1} MB plain)",
        d.as_secs_f64() * 1e3,
        bytes.len() as f64 / 1e6
    );
    let d = best(3, || {
        black_box(format::decode(&bytes, "bench").unwrap());
    });
    println!(
        "decode snapshot, 100k entries:      {:8.1} ms",
        d.as_secs_f64() * 1e3
    );
    let mut gz = Vec::new();
    let d = best(3, || gz = black_box(format::gzip(&bytes)));
    println!(
        "gzip   snapshot, 100k entries:      {:8.1} ms ({:.1} MB)",
        d.as_secs_f64() * 1e3,
        gz.len() as f64 / 1e6
    );
}

/// A no-change backup of `n` small files: walk, compare with the previous
/// snapshot, write the new one. Reads no content.
fn bench_change_detection(n: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..n {
        let dir = src.join(format!("d{:03}", i / 100));
        if i.is_multiple_of(100) {
            fs::create_dir_all(&dir).unwrap();
        }
        fs::write(dir.join(format!("f{i}")), i.to_string()).unwrap();
    }
    let repo_dir = tmp.path().join("repo");
    Repository::create_dir(&repo_dir, &NewRepository::plain(true)).unwrap();
    let snap_dir = tmp.path().join("snaps");
    fs::create_dir(&snap_dir).unwrap();
    let spec = ArchiveSpec {
        name: "bench".parse().unwrap(),
        repo: "r".parse().unwrap(),
        snapshot_dir: epygibus::store::Location::Dir(snap_dir.clone()),
        includes: vec![src],
        excluded_dirs: vec![],
        excluded_files: vec![],
        compress: true,
        keep_broken_soft_links: false,
        compare_inodes: false,
    };
    let run = |spec: &ArchiveSpec, repo_dir: &PathBuf| {
        let repo = Repository::open_dir(
            repo_dir,
            Access::Locked {
                command: "bench",
                wait: LockWait::no_wait(),
            },
        )
        .unwrap();
        let options = BackupOptions {
            compress: true,
            force_read: false,
            time: None,
        };
        let snapshots = epygibus::store::LocalStore::new(&snap_dir);
        snapshot::backup(spec, &snapshots, &repo, options, &NoProgress).unwrap()
    };
    run(&spec, &repo_dir);
    // Past the racy window, so the next backups trust size and times.
    std::thread::sleep(Duration::from_millis(2100));
    run(&spec, &repo_dir);
    let mut read = 0;
    let d = best(3, || read = run(&spec, &repo_dir).header.stats.files_read);
    println!(
        "no-change backup, {n} files:       {:8.1} ms (files read: {read})",
        d.as_secs_f64() * 1e3
    );
}

/// Gzip backends and levels on real files (`BENCH_CORPUS=DIR`, e.g. the
/// small corpus of ../shared/bench): speed on one core and stored size,
/// each file compressed on its own as the repository does.
fn bench_levels() {
    let Some(dir) = std::env::var_os("BENCH_CORPUS") else {
        println!("levels: set BENCH_CORPUS=DIR to compare gzip levels on real files");
        return;
    };
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && m.len() <= 1 << 20 {
                files.push(fs::read(e.path()).unwrap());
            }
        }
    }
    let total: usize = files.iter().map(Vec::len).sum();
    for level in [1, 3, 4, 5, 6, 9] {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(level).unwrap());
        let mut stored = 0;
        let d = best(2, || {
            stored = 0;
            for f in &files {
                let mut out = vec![0; c.gzip_compress_bound(f.len())];
                let n = c.gzip_compress(f, &mut out).unwrap();
                stored += n.min(f.len());
            }
        });
        println!(
            "levels libdeflate {level}: {:7.0} MB/s, stored {:5.1}% of {:.0} MB",
            mb_per_s(total, d),
            stored as f64 * 100.0 / total as f64,
            total as f64 / 1e6
        );
    }
    let mut stored = 0;
    let d = best(2, || {
        stored = 0;
        for f in &files {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(f).unwrap();
            stored += e.finish().unwrap().len().min(f.len());
        }
    });
    println!(
        "levels flate2/zlib-rs 6: {:7.0} MB/s, stored {:5.1}%",
        mb_per_s(total, d),
        stored as f64 * 100.0 / total as f64
    );
}

/// What sealing one item costs (`RepoKey::seal`: an age file with the
/// X25519 stanza of the repository key and epygibus's own stanza), against
/// the age crate's own encryptor to the same key, for a small item (where
/// the per-file key exchange dominates) and a larger one.
fn bench_seal() {
    use std::io::Write;
    let key = epygibus::crypt::RepoKey::generate();
    let recipient: age::x25519::Recipient = key.recipient().parse().unwrap();
    for len in [2_000, 200_000] {
        let plain = texty(len);
        let n = if len < 10_000 { 2_000 } else { 200 };
        let ours = best(3, || {
            for _ in 0..n {
                black_box(key.seal(&plain));
            }
        });
        let ages = best(3, || {
            for _ in 0..n {
                let mut out = Vec::new();
                let enc =
                    age::Encryptor::with_recipients(std::iter::once(&recipient as _)).unwrap();
                let mut w = enc.wrap_output(&mut out).unwrap();
                w.write_all(&plain).unwrap();
                w.finish().unwrap();
                black_box(out);
            }
        });
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "seal {len:>7} B: epygibus {:6.1} µs/item, age's X25519 recipient {:6.1} µs/item",
            per(ours),
            per(ages)
        );
    }
}

fn main() {
    bench_seal();
    bench_levels();
    bench_hash_and_gzip();
    bench_snapshot_codec();
    bench_change_detection(20_000);
}
