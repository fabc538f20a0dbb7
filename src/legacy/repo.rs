//! The original's content repositories, read only: where one is, its
//! content files (`<1 hex>/<2 hex>/<37 hex>`, `.gz` when compressed; it
//! wrote the form its repository was set to, and `compress` converted
//! them in place, so either may be there), and its pickled `ref_counter`
//! (`{dir: {subdir: {rest: [refs, content size, stored size]}}}`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::pickle::{self, Value};
use super::sha1::{Sha1Hex, Verified};
use super::{LegacyError, Result};

const REF_COUNTER: &str = "ref_counter";

/// Whether `dir` looks like one of the original's repositories.
pub fn is_repo(dir: &Path) -> bool {
    dir.join(REF_COUNTER).is_file()
}

/// The repository a snapshot in `snapshot_dir` used: the recorded
/// directory when it is there, else the one with the same user and name
/// beside the snapshots (`epygibus.d/repos/<user>/<name>` next to
/// `epygibus.d/snapshots/<host>/<user>/<archive>`): the disk may be
/// mounted elsewhere now.
pub fn find(snapshot_dir: &Path, recorded: &[u8], snapshot: &Path) -> Result<PathBuf> {
    let recorded = PathBuf::from(OsStr::from_bytes(recorded));
    if is_repo(&recorded) {
        return Ok(recorded);
    }
    let beside = beside(snapshot_dir, &recorded);
    match &beside {
        Some(b) if is_repo(b) => Ok(b.clone()),
        _ => Err(LegacyError::RepoNotFound {
            snapshot: snapshot.to_owned(),
            recorded: recorded.display().to_string(),
            beside: beside.map_or_else(
                || "(the snapshot directory is not inside an epygibus.d)".into(),
                |b| b.display().to_string(),
            ),
        }),
    }
}

/// `<epygibus.d>/repos/<user>/<name>` for the recorded `…/<user>/<name>`.
fn beside(snapshot_dir: &Path, recorded: &Path) -> Option<PathBuf> {
    let root = snapshot_dir.ancestors().nth(4)?;
    if root.file_name() != Some(OsStr::new("epygibus.d")) {
        return None;
    }
    let name = recorded.file_name()?;
    let user = recorded.parent()?.file_name()?;
    Some(root.join("repos").join(user).join(name))
}

/// The two places a content file may be: plain and `.gz`.
pub fn content_paths(repo: &Path, token: &Sha1Hex) -> (PathBuf, PathBuf) {
    let hex = token.to_hex();
    let plain = repo.join(&hex[..1]).join(&hex[1..3]).join(&hex[3..]);
    let mut gz = plain.clone().into_os_string();
    gz.push(".gz");
    (plain, PathBuf::from(gz))
}

/// A reader of the content `token` names, checked against the SHA-1 as it
/// streams (the last read fails if it does not match), and the file it
/// comes from.
pub fn open_content(repo: &Path, token: &Sha1Hex) -> io::Result<(Box<dyn Read + Send>, PathBuf)> {
    let (plain, gz) = content_paths(repo, token);
    let (reader, path): (Box<dyn Read + Send>, PathBuf) = match File::open(&gz) {
        Ok(f) => (
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, f))),
            gz,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match File::open(&plain) {
            Ok(f) => (Box::new(f), plain),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "content file {} (or {}) of the original repository is missing",
                        plain.display(),
                        gz.display()
                    ),
                ));
            }
            Err(e) => return Err(named(&plain, e)),
        },
        Err(e) => return Err(named(&gz, e)),
    };
    let what = format!("content file {}", path.display());
    Ok((Box::new(Verified::new(reader, *token, None, what)), path))
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// One entry of the `ref_counter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefEntry {
    pub refs: u64,
    pub size: u64,
    pub stored: u64,
}

/// Reads the repository's `ref_counter` (for storage statistics).
pub fn read_ref_counter(repo: &Path) -> Result<HashMap<Sha1Hex, RefEntry>> {
    let path = repo.join(REF_COUNTER);
    let bytes = std::fs::read(&path).map_err(|err| LegacyError::Io {
        path: path.clone(),
        err,
    })?;
    decode_ref_counter(&bytes).map_err(|reason| LegacyError::Unreadable { path, reason })
}

/// Decodes a `ref_counter` pickle (it names no classes at all).
pub fn decode_ref_counter(bytes: &[u8]) -> std::result::Result<HashMap<Sha1Hex, RefEntry>, String> {
    let p = pickle::read(bytes, &|_, _| false).map_err(|e| e.to_string())?;
    let dict = |id| match p.get(id) {
        Value::Dict(items) => Ok(items.clone()),
        _ => Err("a dictionary was expected".to_string()),
    };
    let text = |id| match p.get(id) {
        Value::Str(b) | Value::Bytes(b) => Ok(b.clone()),
        _ => Err("a string was expected".to_string()),
    };
    let num = |id| match p.get(id) {
        Value::Int(n) if *n >= 0 => Ok(*n as u64),
        _ => Err("a count or size was expected".to_string()),
    };
    let mut out = HashMap::new();
    // Each entry is its own list in a real file; a crafted one repeating
    // shared dicts could otherwise make this loop run for ages.
    let mut budget = p.values.len();
    for (d, subs) in dict(p.root)? {
        for (s, items) in dict(subs)? {
            for (rest, entry) in dict(items)? {
                budget = budget
                    .checked_sub(1)
                    .ok_or("shared entries (not a real ref_counter)")?;
                let mut hex = text(d)?;
                hex.extend(text(s)?);
                hex.extend(text(rest)?);
                let token = Sha1Hex::parse(&hex).ok_or("a name that is not a SHA-1")?;
                let (Value::List(v) | Value::Tuple(v)) = p.get(entry) else {
                    return Err("an entry that is not [refs, size, stored]".into());
                };
                let [refs, size, stored] = v.as_slice() else {
                    return Err("an entry that is not [refs, size, stored]".into());
                };
                out.insert(
                    token,
                    RefEntry {
                        refs: num(*refs)?,
                        size: num(*size)?,
                        stored: num(*stored)?,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_counter_of_python_decodes() {
        // pickle.dumps({'f': {'57': {'2d396fae9206628714fb2ce00f72e94f2258f': [6, 6, 64]}}}, 5)
        let bytes = b"\x80\x05\x95E\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01f\x94}\x94\x8c\x0257\x94}\x94\x8c%2d396fae9206628714fb2ce00f72e94f2258f\x94]\x94(K\x06K\x06K@esss.";
        let rc = decode_ref_counter(bytes).unwrap();
        let t = Sha1Hex::parse(b"f572d396fae9206628714fb2ce00f72e94f2258f").unwrap();
        assert_eq!(
            rc[&t],
            RefEntry {
                refs: 6,
                size: 6,
                stored: 64
            }
        );
        assert!(decode_ref_counter(&bytes[..20]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn ref_counter_decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode_ref_counter(&bytes);
            let mut framed = b"\x80\x05}\x94(".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode_ref_counter(&framed);
        }
    }

    #[test]
    fn repository_found_beside_the_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("epygibus.d");
        let snaps = d.join("snapshots/h/u/a");
        let repo = d.join("repos/u/main");
        std::fs::create_dir_all(&snaps).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(repo.join(REF_COUNTER), b"").unwrap();
        let found = find(&snaps, b"/gone/epygibus.d/repos/u/main", &snaps).unwrap();
        assert_eq!(found, repo);
        let err = find(&snaps, b"/gone/epygibus.d/repos/u/other", &snaps).unwrap_err();
        assert!(
            err.to_string().contains("/gone/epygibus.d/repos/u/other"),
            "{err}"
        );
    }
}
