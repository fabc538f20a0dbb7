//! Reading the original epygibus's snapshot directories directly (`-E`
//! with `lss`, `ls`, `cat`, `extract` and `restore`), without importing.
//! The part of a tree that is restored is turned into this epygibus's
//! model: each distinct content is read once to check its SHA-1 and learn
//! its BLAKE3 token, then restored through the same code as every restore,
//! reading the original's content files through a [`ContentSource`]. A
//! file whose content is missing or damaged is left out and reported.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::restore::{Listed, RestoreRequest, Selection};
use super::{OpError, Result};
use crate::content::{ContentToken, TokenHasher, hash_reader};
use crate::legacy::repo::{self as orig_repo, RefEntry};
use crate::legacy::sha1::Sha1Hex;
use crate::legacy::{self, OrigDir, OrigName, OrigNode, OrigSnapshot, convert};
use crate::progress::Progress;
use crate::snapshot::format::{Header, Snapshot, SnapshotName};
use crate::snapshot::model::FileName;
use crate::snapshot::restore::{ContentSource, RestoreOptions, RestoreReport};
use crate::snapshot::retrieve::{self, Want};
use crate::snapshot::{StorageStats, select};

fn err(e: legacy::LegacyError) -> OpError {
    OpError::Invalid(e.to_string())
}

/// The original's snapshots in `dir`, oldest first.
pub fn names(dir: &Path) -> Result<Vec<OrigName>> {
    legacy::list_snapshots(dir).map_err(err)
}

/// Picks a snapshot by `--back`, as for this epygibus's snapshots.
pub fn pick(dir: &Path, back: i64) -> Result<(OrigName, OrigSnapshot)> {
    let names = names(dir)?;
    let keys: Vec<SnapshotName> = names
        .iter()
        .map(|n| SnapshotName {
            secs: n.stamp.to_unix(),
            compressed: n.compressed,
        })
        .collect();
    let chosen = select(&keys, back, &crate::store::Location::Dir(dir.to_owned()))?;
    let name = names
        .into_iter()
        .find(|n| n.stamp.to_unix() == chosen.secs)
        .expect("chosen from these names");
    let snap = legacy::read_snapshot(dir, &name).map_err(err)?;
    Ok((name, snap))
}

/// One row of `lss -E` on the original's snapshots.
pub struct OrigListing {
    pub name: OrigName,
    pub file_size: u64,
    /// Build statistics, or why they cannot be read.
    pub stats: std::result::Result<Option<legacy::snapshot::OrigStats>, String>,
    pub storage: Option<std::result::Result<StorageStats, String>>,
}

/// What `lss -E` shows of the original's snapshots; with `storage`, the
/// storage each uses according to the repository's `ref_counter`.
pub fn list(dir: &Path, storage: bool) -> Result<Vec<OrigListing>> {
    let names = names(dir)?;
    let mut counts: Option<std::result::Result<HashMap<Sha1Hex, RefEntry>, String>> = None;
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(name.file_name());
        let file_size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        let snap = legacy::read_snapshot(dir, &name).map_err(|e| e.to_string());
        let stats = snap.as_ref().map(|s| s.stats.clone()).map_err(Clone::clone);
        let storage = storage.then(|| {
            let snap = snap.as_ref().map_err(Clone::clone)?;
            let counts = counts.get_or_insert_with(|| {
                let repo = repo_of(dir, snap, &path)?;
                orig_repo::read_ref_counter(&repo).map_err(|e| e.to_string())
            });
            let counts = counts.as_ref().map_err(Clone::clone)?;
            Ok(storage_stats(&snap.root, counts, file_size))
        });
        out.push(OrigListing {
            name,
            file_size,
            stats,
            storage,
        });
    }
    Ok(out)
}

fn storage_stats(
    root: &OrigDir,
    counts: &HashMap<Sha1Hex, RefEntry>,
    file_size: u64,
) -> StorageStats {
    let mut s = StorageStats {
        occupies: file_size,
        ..StorageStats::default()
    };
    let mut seen = HashSet::new();
    root.walk(&mut |_, node| match node {
        OrigNode::File { attrs, sha1 } => {
            s.files += 1;
            s.holds += attrs.size;
            if let Some(e) = counts.get(sha1) {
                if seen.insert(*sha1) {
                    s.content_items += 1;
                    s.stored_bytes += e.stored;
                }
                s.share += e.stored as f64 / e.refs.max(1) as f64;
            }
        }
        OrigNode::Link { .. } => s.links += 1,
        OrigNode::Dir(_) => {}
    });
    s
}

fn repo_of(dir: &Path, snap: &OrigSnapshot, path: &Path) -> std::result::Result<PathBuf, String> {
    let Some(recorded) = &snap.repo_dir else {
        return Err(format!(
            "{} does not say which repository holds its content (snapshots from before July 2016 do not); import it with `epygibus import --original-config`",
            path.display()
        ));
    };
    orig_repo::find(dir, recorded, path).map_err(|e| e.to_string())
}

fn components(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

fn find<'a>(root: &'a OrigDir, path: &Path) -> Option<Option<&'a OrigNode>> {
    let mut dir = root;
    let mut found: Option<&OrigNode> = None;
    for c in components(path) {
        if let Some(OrigNode::Dir(d)) = found {
            dir = d;
        } else if found.is_some() {
            return None;
        }
        found = Some(dir.entries.get(c)?);
    }
    Some(found)
}

/// `ls -E` on the original's snapshot.
pub fn ls(dir: &Path, back: i64, path: &Path) -> Result<Vec<Listed>> {
    let (name, snap) = pick(dir, back)?;
    let path = retrieve::absolute(path);
    let stamp = name.stamp.dashed();
    let listed = match find(&snap.root, &path) {
        Some(None) => &snap.root,
        Some(Some(OrigNode::Dir(d))) => d,
        Some(Some(_)) => {
            return Err(OpError::NotADirectory {
                path,
                snapshot: stamp,
            });
        }
        None => {
            return Err(OpError::NotInSnapshot {
                path,
                snapshot: stamp,
            });
        }
    };
    let name_of = |n: &[u8]| FileName::new(n.to_vec()).map_err(|e| OpError::Invalid(e.to_string()));
    listed
        .entries
        .iter()
        .map(|(n, node)| {
            Ok(match node {
                OrigNode::Dir(_) => Listed::Dir(name_of(n)?),
                OrigNode::File { .. } => Listed::File(name_of(n)?),
                OrigNode::Link { target, .. } => Listed::Link(name_of(n)?, target.clone()),
            })
        })
        .collect()
}

/// `cat -E`: the content of a file of the original's snapshot, checked
/// against its SHA-1 as it is read (the last read fails on a mismatch).
pub fn cat(dir: &Path, back: i64, path: &Path) -> Result<Box<dyn Read + Send>> {
    let (name, snap) = pick(dir, back)?;
    let path = retrieve::absolute(path);
    let snapshot_path = dir.join(name.file_name());
    match find(&snap.root, &path) {
        Some(Some(OrigNode::File { sha1, .. })) => {
            let repo = repo_of(dir, &snap, &snapshot_path).map_err(OpError::Invalid)?;
            let (reader, _) = orig_repo::open_content(&repo, sha1)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            Ok(reader)
        }
        Some(Some(OrigNode::Link { target, .. })) => Err(OpError::IsSymlink {
            path,
            target: String::from_utf8_lossy(target).into_owned(),
            snapshot: name.stamp.dashed(),
        }),
        _ => Err(OpError::NotInSnapshot {
            path,
            snapshot: name.stamp.dashed(),
        }),
    }
}

/// The original's content files, by the BLAKE3 token of what they hold.
struct OrigContent {
    repo: PathBuf,
    by_token: HashMap<ContentToken, Sha1Hex>,
}

impl ContentSource for OrigContent {
    fn open_content(&self, token: &ContentToken) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let sha1 = self.by_token.get(token).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "content not in this snapshot")
        })?;
        Ok(orig_repo::open_content(&self.repo, sha1)?.0)
    }
}

/// The part of the snapshot at `under` as this epygibus's snapshot, with
/// the content it needs; problems name the files left out.
fn prepare(
    dir: &Path,
    name: &OrigName,
    snap: &OrigSnapshot,
    under: &Path,
) -> Result<(Snapshot, OrigContent, Vec<String>)> {
    let path = dir.join(name.file_name());
    let repo = repo_of(dir, snap, &path).map_err(OpError::Invalid)?;
    let under = components(under);
    let inside = |at: &[&[u8]]| at.len() >= under.len() && at[..under.len()] == under[..];
    let mut wanted: Vec<Sha1Hex> = Vec::new();
    snap.root.walk(&mut |at, node| {
        if let OrigNode::File { sha1, .. } = node
            && inside(at)
        {
            wanted.push(*sha1);
        }
    });
    wanted.sort();
    wanted.dedup();
    // Each distinct content once, on the I/O pool: SHA-1 checked, BLAKE3
    // and true size learnt.
    let hashed: Vec<(Sha1Hex, Hashed)> = crate::pool::io_pool().install(|| {
        wanted
            .par_iter()
            .map(|sha1| (*sha1, hash_original(&repo, sha1)))
            .collect()
    });
    let mut tokens = HashMap::new();
    let mut failed = HashMap::new();
    for (sha1, r) in hashed {
        match r {
            Ok(t) => {
                tokens.insert(sha1, t);
            }
            Err(e) => {
                failed.insert(sha1, e);
            }
        }
    }
    let mut problems = Vec::new();
    let root = convert::tree(&snap.root, &mut |at, sha1, _| {
        if !inside(at) {
            return None;
        }
        match (tokens.get(sha1), failed.get(sha1)) {
            (Some(t), _) => Some(*t),
            (None, Some(e)) => {
                problems.push(format!("could not restore /{}: {e}", convert::shown(at)));
                None
            }
            (None, None) => None,
        }
    })
    .map_err(|e| OpError::Invalid(format!("original snapshot {}: {e}", path.display())))?;
    let roots = snap.root.roots().into_iter().map(|r| {
        let path = super::import::root_path(&r);
        serde_bytes::ByteBuf::from(path.as_os_str().as_bytes().to_vec())
    });
    let header = Header {
        roots: roots.collect(),
        ..Header::default()
    };
    let content = OrigContent {
        repo,
        by_token: tokens.iter().map(|(s, (t, _))| (*t, *s)).collect(),
    };
    Ok((Snapshot { header, root }, content, problems))
}

/// A content's token and true size, or why it could not be read.
type Hashed = std::result::Result<(ContentToken, u64), String>;

fn hash_original(repo: &Path, sha1: &Sha1Hex) -> Hashed {
    let (reader, _) = orig_repo::open_content(repo, sha1).map_err(|e| e.to_string())?;
    let mut counted = CountingReader {
        inner: reader,
        n: 0,
    };
    let token = hash_reader(&mut counted, TokenHasher::Plain).map_err(|e| e.to_string())?;
    Ok((token, counted.n))
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// The entry asked for; when it is missing because its content could not
/// be read, that is the error.
fn lookup<'t>(
    snapshot: &'t Snapshot,
    stamp: &str,
    path: &Path,
    want: Want,
    problems: &[String],
) -> Result<&'t crate::snapshot::model::Node> {
    match retrieve::lookup(snapshot, stamp, path, want) {
        Ok(node) => Ok(node),
        Err(retrieve::RetrieveError::NotInSnapshot { .. }) if !problems.is_empty() => {
            Err(OpError::Invalid(problems.join("; ")))
        }
        Err(e) => Err(e.into()),
    }
}

fn wanted(selection: &Selection) -> Option<(PathBuf, Want)> {
    match selection {
        Selection::File(p) => Some((retrieve::absolute(p), Want::File)),
        Selection::Dir(p) => Some((retrieve::absolute(p), Want::Dir)),
        Selection::All => None,
    }
}

/// `restore -E` on the original's snapshot.
pub fn restore(
    dir: &Path,
    req: &RestoreRequest,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let (name, snap) = pick(dir, req.back)?;
    let stamp = name.stamp.dashed();
    let target = wanted(&req.selection);
    let under = target
        .as_ref()
        .map_or(PathBuf::from("/"), |(p, _)| p.clone());
    let (snapshot, content, problems) = prepare(dir, &name, &snap, &under)?;
    let mut report = match &target {
        Some((path, want)) => {
            let node = lookup(&snapshot, &stamp, path, *want, &problems)?;
            retrieve::restore_path(&content, &snapshot, node, path, opts, progress)?
        }
        None => retrieve::restore_all(&content, &snapshot, opts, progress)?,
    };
    report.problems.extend(problems);
    Ok(report)
}

/// `extract -E` on the original's snapshot.
pub fn extract(
    dir: &Path,
    req: &RestoreRequest,
    target: &super::restore::ExtractTarget,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let (name, snap) = pick(dir, req.back)?;
    let Some((path, want)) = wanted(&req.selection) else {
        return Err(OpError::Invalid(
            "extract needs a file or a directory, not everything".into(),
        ));
    };
    let (snapshot, content, problems) = prepare(dir, &name, &snap, &path)?;
    let node = lookup(&snapshot, &name.stamp.dashed(), &path, want, &problems)?;
    let mut report = retrieve::extract(
        &content,
        node,
        &path,
        &target.into_dir,
        target.with_name.as_deref(),
        opts,
        progress,
    )?;
    report.problems.extend(problems);
    Ok(report)
}
