//! Packs seen from outside, with the system's own zip tools only: what the
//! README's hand recovery promises (`unzip -p PACK TOKEN > file`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pack files of a repository directory.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo.join("packs"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "zip"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// `unzip -p PACK NAME`: the entry's content as unzip gives it (it checks
/// the entry's CRC and fails on a mismatch).
pub fn unzip_entry(pack: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("unzip")
        .arg("-p")
        .arg(pack)
        .arg(name)
        .output()
        .expect("unzip (Debian package unzip) runs");
    assert!(
        out.status.success(),
        "unzip -p {} {name}: {}",
        pack.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One entry as Python's zipfile module reads the pack's table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    pub name: String,
    /// `stored` or `deflated`.
    pub method: String,
    pub compressed: u64,
    pub size: u64,
    /// Where the entry's data start in the pack (after its local header).
    pub data_offset: u64,
}

/// The table of contents by `python3 -m zipfile`'s library, after its own
/// integrity test of every entry (`testzip`).
pub fn zip_entries(pack: &Path) -> Vec<ZipEntry> {
    let script = r#"
import struct, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[1], "rb") as f:
    bad = z.testzip()
    if bad is not None:
        sys.exit("damaged entry " + bad)
    for i in z.infolist():
        m = {0: "stored", 8: "deflated"}.get(i.compress_type, str(i.compress_type))
        f.seek(i.header_offset + 26)
        n, e = struct.unpack("<HH", f.read(4))
        print(i.filename, m, i.compress_size, i.file_size, i.header_offset + 30 + n + e)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(pack)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 zipfile on {}: {}",
        pack.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            ZipEntry {
                name: f[0].to_owned(),
                method: f[1].to_owned(),
                compressed: f[2].parse().unwrap(),
                size: f[3].parse().unwrap(),
                data_offset: f[4].parse().unwrap(),
            }
        })
        .collect()
}
