//! On-disk encoding of a snapshot (documented in docs/format.md).
//!
//! A snapshot file, after gunzip when it ends `.gz`, is: the magic line
//! `epygibus-snapshot 1\n`, a MessagePack map (the header, with build
//! statistics, readable without decoding the tree), a MessagePack binary
//! holding the MessagePack-encoded tree, and a MessagePack binary holding the
//! BLAKE3 of that tree encoding. MessagePack maps keep field names, so any
//! MessagePack reader can decode it in ten years' time.

use std::io::{BufReader, Read};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use super::model::{DirNode, TreeCounts};
use crate::clock::Civil;
use crate::store::{Committed, Store, StoreError};

pub(super) const MAGIC: &[u8] = b"epygibus-snapshot 1\n";
const GZ_SUFFIX: &str = ".gz";
/// libdeflate level for snapshot files: snapshots are rewritten on every
/// backup, so speed matters more than the last few percent.
const SNAPSHOT_GZIP_LEVEL: i32 = 6;

/// Errors reading or writing snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("snapshot file {place} is corrupt: {reason}")]
    Corrupt { place: String, reason: String },
    #[error(
        "snapshot {0} stays compressed: the archive's repository is encrypted, and its snapshots are always compressed, then encrypted"
    )]
    SealedStaysCompressed(String),
}

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn corrupt(place: &str, reason: impl std::fmt::Display) -> SnapshotError {
    SnapshotError::Corrupt {
        place: place.to_owned(),
        reason: reason.to_string(),
    }
}

/// Where the content of a snapshot lives, so a snapshot directory alone is
/// enough to restore from when the configuration is lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RepoRef {
    pub name: String,
    /// Absolute path of the repository directory when the snapshot was made.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    /// The repository directory relative to the snapshot directory, when
    /// both are under the same `epygibus.d` (found again after the disk is
    /// mounted elsewhere).
    #[serde(with = "serde_bytes")]
    pub relative: Vec<u8>,
}

/// How a snapshot was built: what `lss --build_stats` and `bu --stats` show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct BuildStats {
    pub counts: TreeCounts,
    /// Content items this backup added to the repository.
    pub new_items: u64,
    pub new_content_bytes: u64,
    pub new_stored_bytes: u64,
    /// Files whose content was read (the rest were unchanged).
    pub files_read: u64,
    /// Entries that could not be backed up (vanished, unreadable, …).
    pub skipped: u64,
    /// Seconds spent walking (stat of every entry).
    pub walk_secs: f64,
    /// Seconds spent reading, hashing, compressing and writing content.
    pub store_secs: f64,
    /// Seconds spent writing the index and the snapshot.
    pub write_secs: f64,
    pub elapsed_secs: f64,
}

/// The header: who, when, where the content is, and build statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Header {
    pub archive: String,
    pub host: String,
    pub user: String,
    /// When the walk started (ns since the epoch); files modified at or
    /// after this instant are re-read by the next backup (racily clean).
    pub started_ns: i64,
    pub finished_ns: i64,
    pub repo: RepoRef,
    pub includes: Vec<serde_bytes::ByteBuf>,
    /// The paths actually walked: includes that existed, and the targets of
    /// symlinked includes. `restore --all` restores these.
    #[serde(default)]
    pub roots: Vec<serde_bytes::ByteBuf>,
    pub stats: BuildStats,
    /// Seconds east of UTC in force where and when the backup ran (at the
    /// snapshot's time), so retention buckets it by that day and hour.
    /// Absent in snapshots of older versions: retention then uses the
    /// current zone's offset at the snapshot's time.
    #[serde(default)]
    pub utc_offset: Option<i32>,
    /// When `bu --time` recorded the snapshot as taken at another time:
    /// that time (ns since the epoch), which names the snapshot. Absent
    /// otherwise (the snapshot's time is `started_ns`). `started_ns` stays
    /// the real clock either way, because change detection trusts it.
    #[serde(default)]
    pub time_ns: Option<i64>,
    /// On a snapshot recovered from the readable start of a damaged one:
    /// the damaged file's name after it was set aside. Such a snapshot
    /// may lack entries, so no backup trusts it for change detection.
    #[serde(default)]
    pub salvaged_from: Option<String>,
}

/// A whole snapshot: header and tree (rooted at `/`).
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub header: Header,
    pub root: DirNode,
}

/// A snapshot's name: its UTC time to the second, and whether its file is
/// gzip-compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotName {
    pub secs: i64,
    pub compressed: bool,
}

impl SnapshotName {
    /// `YYYY-MM-DD-HH-MM-SS`.
    pub fn stamp(&self) -> String {
        Civil::from_unix(self.secs).dashed()
    }

    pub fn file_name(&self) -> String {
        let mut name = self.stamp();
        if self.compressed {
            name.push_str(GZ_SUFFIX);
        }
        name
    }

    pub fn parse(file_name: &[u8]) -> Option<SnapshotName> {
        let s = std::str::from_utf8(file_name).ok()?;
        let (stamp, compressed) = match s.strip_suffix(GZ_SUFFIX) {
            Some(stem) => (stem, true),
            None => (s, false),
        };
        let civil = Civil::parse_dashed(stamp)?;
        Some(SnapshotName {
            secs: civil.to_unix(),
            compressed,
        })
    }

    fn other_form(&self) -> SnapshotName {
        SnapshotName {
            compressed: !self.compressed,
            ..*self
        }
    }
}

/// The snapshots in `dir`, oldest first. A time present in both forms
/// (a crash during `compress`) is listed once.
pub fn list_snapshots(dir: &dyn Store) -> Result<Vec<SnapshotName>> {
    let mut names: Vec<SnapshotName> = dir
        .list("")?
        .iter()
        .filter(|m| !m.name.contains('/'))
        .filter_map(|m| SnapshotName::parse(m.name.as_bytes()))
        .collect();
    names.sort_by_key(|n| (n.secs, !n.compressed));
    names.dedup_by_key(|n| n.secs);
    Ok(names)
}

/// Encodes a snapshot to the bytes of an uncompressed snapshot file.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let tree = rmp_serde::to_vec_named(&snapshot.root).expect("a tree always encodes");
    let header = rmp_serde::to_vec_named(&snapshot.header).expect("a header always encodes");
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + tree.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header);
    rmp::encode::write_bin(&mut out, &tree).expect("writing to a Vec cannot fail");
    rmp::encode::write_bin(&mut out, blake3::hash(&tree).as_bytes())
        .expect("writing to a Vec cannot fail");
    out
}

/// Decodes the bytes of an uncompressed snapshot file; `path` names it in
/// errors.
pub fn decode(bytes: &[u8], path: &str) -> Result<Snapshot> {
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt(path, "it does not start with the snapshot header"))?;
    let header: Header =
        rmp_serde::from_read(&mut rest).map_err(|e| corrupt(path, format!("bad header: {e}")))?;
    let tree = read_bin(&mut rest).map_err(|e| corrupt(path, format!("bad tree: {e}")))?;
    let sum = read_bin(&mut rest).map_err(|e| corrupt(path, format!("bad checksum: {e}")))?;
    if blake3::hash(tree).as_bytes()[..] != sum[..] {
        return Err(corrupt(path, "its checksum does not match its tree"));
    }
    let root: DirNode =
        rmp_serde::from_slice(tree).map_err(|e| corrupt(path, format!("bad tree: {e}")))?;
    root.check_order().map_err(|e| corrupt(path, e))?;
    Ok(Snapshot { header, root })
}

fn read_bin<'a>(rest: &mut &'a [u8]) -> std::result::Result<&'a [u8], String> {
    let len = rmp::decode::read_bin_len(rest).map_err(|e| format!("{e:?}"))? as usize;
    if rest.len() < len {
        return Err("it is truncated".into());
    }
    let (bin, tail) = rest.split_at(len);
    *rest = tail;
    Ok(bin)
}

/// Reads and decodes a whole snapshot file.
pub fn read_snapshot(dir: &dyn Store, name: &SnapshotName) -> Result<Snapshot> {
    let bytes = read_plain_bytes(dir, name)?;
    decode(&bytes, &dir.place(&name.file_name()))
}

/// The uncompressed bytes of a snapshot file.
pub fn read_plain_bytes(dir: &dyn Store, name: &SnapshotName) -> Result<Vec<u8>> {
    let file = name.file_name();
    let raw = match dir.read(&file) {
        Ok(raw) => raw,
        // A sealed file that does not decrypt is damaged (check --repair
        // sets it aside), not a disk that cannot be read.
        Err(e) if dir.is_sealed() && e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(corrupt(&dir.place(&file), e.source));
        }
        Err(e) => return Err(e.into()),
    };
    if !name.compressed {
        return Ok(raw);
    }
    let mut plain = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut plain)
        .map_err(|e| corrupt(&dir.place(&file), format!("bad gzip data: {e}")))?;
    Ok(plain)
}

/// Reads only the header (for `lss --build_stats`): a compressed file is
/// decompressed only as far as the header goes.
pub fn read_header(dir: &dyn Store, name: &SnapshotName) -> Result<Header> {
    let file = name.file_name();
    let place = dir.place(&file);
    let object = dir.open(&file)?;
    let mut reader: Box<dyn Read> = if name.compressed {
        Box::new(BufReader::new(MultiGzDecoder::new(BufReader::new(object))))
    } else {
        Box::new(BufReader::new(object))
    };
    let mut magic = [0u8; MAGIC.len()];
    reader
        .read_exact(&mut magic)
        .map_err(|_| corrupt(&place, "it is too short"))?;
    if magic != MAGIC {
        return Err(corrupt(
            &place,
            "it does not start with the snapshot header",
        ));
    }
    rmp_serde::from_read(reader).map_err(|e| corrupt(&place, format!("bad header: {e}")))
}

/// Encodes `plain` as one gzip member.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(
        libdeflater::CompressionLvl::new(SNAPSHOT_GZIP_LEVEL).expect("valid level"),
    );
    let mut out = vec![0; c.gzip_compress_bound(plain.len())];
    let n = c
        .gzip_compress(plain, &mut out)
        .expect("buffer sized by gzip_compress_bound");
    out.truncate(n);
    out
}

/// Writes a snapshot durably under a name not used yet: its start second
/// or one after the newest snapshot, whichever is later (so names sort in
/// the order backups ran even when the clock went back); for a snapshot
/// given its time (`bu --time`, a salvaged snapshot), that second. A later
/// second is taken while the name (in either form) is taken, so two
/// backups never overwrite each other.
pub fn write_snapshot(
    dir: &dyn Store,
    snapshot: &Snapshot,
    compressed: bool,
) -> Result<SnapshotName> {
    // An encrypted archive's snapshots are compressed before they are
    // encrypted, whatever was asked.
    let compressed = compressed || dir.is_sealed();
    let plain = encode(snapshot);
    let bytes = if compressed { gzip(&plain) } else { plain };
    let secs = match snapshot.header.time_ns {
        Some(ns) => ns.div_euclid(1_000_000_000),
        None => {
            let newest = list_snapshots(dir)?.last().map(|n| n.secs);
            let start = snapshot.header.started_ns.div_euclid(1_000_000_000);
            newest.map_or(start, |n| start.max(n + 1))
        }
    };
    let mut name = SnapshotName { secs, compressed };
    loop {
        if dir.stat(&name.other_form().file_name())?.is_some() {
            name.secs += 1;
            continue;
        }
        if dir.put_new(&name.file_name(), &bytes)? == Committed::Created {
            return Ok(name);
        }
        name.secs += 1;
    }
}

/// The name a snapshot of `name`'s second gets in `dir`: compressed in an
/// encrypted archive's directory.
pub fn name_in(dir: &dyn Store, name: &SnapshotName) -> SnapshotName {
    SnapshotName {
        compressed: name.compressed || dir.is_sealed(),
        ..*name
    }
}

/// Writes a snapshot durably under exactly `name` (a copy keeps its
/// original's name; see [`name_in`]); false, writing nothing, when a
/// snapshot of that second exists in either form.
pub fn write_snapshot_as(
    dir: &dyn Store,
    snapshot: &Snapshot,
    name: &SnapshotName,
) -> Result<bool> {
    let name = &name_in(dir, name);
    if dir.stat(&name.other_form().file_name())?.is_some() {
        return Ok(false);
    }
    let plain = encode(snapshot);
    let bytes = if name.compressed { gzip(&plain) } else { plain };
    Ok(dir.put_new(&name.file_name(), &bytes)? == Committed::Created)
}

/// Rewrites a snapshot file in the other form (gzip or plain). The new file
/// is durable before the old one is removed; readers accept either.
pub fn convert_snapshot(dir: &dyn Store, name: &SnapshotName) -> Result<SnapshotName> {
    if dir.is_sealed() && name.compressed {
        return Err(SnapshotError::SealedStaysCompressed(name.stamp()));
    }
    let plain = read_plain_bytes(dir, name)?;
    decode(&plain, &dir.place(&name.file_name()))?;
    let target = name.other_form();
    let bytes = if target.compressed {
        gzip(&plain)
    } else {
        plain
    };
    // A file already in the target form (a convert interrupted after
    // writing it) holds the same snapshot: kept.
    let _ = dir.put_new(&target.file_name(), &bytes)?;
    dir.delete(&name.file_name())?;
    Ok(target)
}

/// Removes a snapshot file (both forms, should a crash have left two),
/// durably.
pub fn remove_snapshot(dir: &dyn Store, name: &SnapshotName) -> Result<()> {
    remove_snapshot_files(dir, name)?;
    dir.barrier()?;
    Ok(())
}

/// Removes a snapshot file (both forms); durable only after the store's
/// next barrier, which the caller runs before releasing its references.
pub fn remove_snapshot_files(dir: &dyn Store, name: &SnapshotName) -> Result<()> {
    for n in [*name, name.other_form()] {
        dir.delete(&n.file_name())?;
    }
    Ok(())
}

/// Checks that a snapshot file is whole without decoding its tree: the
/// gzip stream (if any) ends properly, the header decodes, and the tree
/// bytes match their checksum. A tree that passes was written by
/// [`encode`], so it decodes (`lss` marks snapshots that fail). Returns
/// the header.
pub fn verify(dir: &dyn Store, name: &SnapshotName) -> Result<Header> {
    let bytes = read_plain_bytes(dir, name)?;
    let place = || dir.place(&name.file_name());
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt(&place(), "it does not start with the snapshot header"))?;
    let header: Header = rmp_serde::from_read(&mut rest)
        .map_err(|e| corrupt(&place(), format!("bad header: {e}")))?;
    let tree = read_bin(&mut rest).map_err(|e| corrupt(&place(), format!("bad tree: {e}")))?;
    let sum = read_bin(&mut rest).map_err(|e| corrupt(&place(), format!("bad checksum: {e}")))?;
    if blake3::hash(tree).as_bytes()[..] != sum[..] {
        return Err(corrupt(&place(), "its checksum does not match its tree"));
    }
    Ok(header)
}

/// Size of a snapshot file.
pub fn file_size(dir: &dyn Store, name: &SnapshotName) -> u64 {
    dir.stat(&name.file_name())
        .ok()
        .flatten()
        .map_or(0, |m| m.size)
}

#[cfg(test)]
mod tests {
    use super::super::model::{Attrs, FileName, FileNode, Node};
    use super::*;
    use crate::content::ContentToken;

    fn sample() -> Snapshot {
        let mut root = DirNode::default();
        root.insert(
            FileName::new(vec![b'a', 0xff]).unwrap(),
            Node::File(FileNode {
                attrs: Attrs {
                    mode: 0o100644,
                    mtime_ns: 1_700_000_000_123_456_789,
                    ..Attrs::default()
                },
                size: 5,
                token: ContentToken::of(b"hello"),
            }),
        );
        Snapshot {
            header: Header {
                archive: "home".into(),
                started_ns: 1_700_000_000_000_000_000,
                ..Header::default()
            },
            root,
        }
    }

    #[test]
    fn snapshot_round_trip() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(decode(&bytes, "x").unwrap(), s);
    }

    #[test]
    fn damaged_snapshot_rejected_with_path() {
        let bytes = encode(&sample());
        for cut in [0, 5, MAGIC.len() + 3, bytes.len() - 1] {
            let err = decode(&bytes[..cut], "/s/2020-01-01-00-00-00").unwrap_err();
            assert!(err.to_string().contains("/s/2020-01-01-00-00-00"), "{err}");
        }
        let mut flipped = bytes.clone();
        let n = flipped.len();
        flipped[n - 40] ^= 0x55;
        assert!(decode(&flipped, "x").is_err());
    }

    #[test]
    fn names_parse_and_sort() {
        let n = SnapshotName::parse(b"2016-06-14-00-57-11.gz").unwrap();
        assert!(n.compressed);
        assert_eq!(n.stamp(), "2016-06-14-00-57-11");
        assert!(SnapshotName::parse(b"2016-06-14-00-57-11.tmp").is_none());
        assert!(SnapshotName::parse(b"tmp.1.2.3").is_none());
    }

    #[test]
    fn same_second_snapshots_get_distinct_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::store::LocalStore::new(tmp.path());
        let s = sample();
        let a = write_snapshot(&dir, &s, true).unwrap();
        let b = write_snapshot(&dir, &s, false).unwrap();
        let c = write_snapshot(&dir, &s, true).unwrap();
        assert!(a.secs < b.secs && b.secs < c.secs);
        assert_eq!(list_snapshots(&dir).unwrap(), vec![a, b, c]);
        assert_eq!(read_snapshot(&dir, &b).unwrap(), s);
        assert_eq!(read_header(&dir, &a).unwrap(), s.header);
    }

    #[test]
    fn convert_round_trip() {
        let dir = crate::store::MemoryStore::named("s");
        let s = sample();
        let a = write_snapshot(&dir, &s, false).unwrap();
        let gz = convert_snapshot(&dir, &a).unwrap();
        assert!(gz.compressed);
        assert!(dir.stat(&a.file_name()).unwrap().is_none());
        assert_eq!(read_snapshot(&dir, &gz).unwrap(), s);
        let plain = convert_snapshot(&dir, &gz).unwrap();
        assert_eq!(read_snapshot(&dir, &plain).unwrap(), s);
    }

    /// A snapshot file around `tree` bytes with a valid header and checksum,
    /// so fuzzing reaches the tree decoder instead of stopping at the sum.
    fn framed_tree(tree: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&rmp_serde::to_vec_named(&sample().header).unwrap());
        rmp::encode::write_bin(&mut out, tree).unwrap();
        rmp::encode::write_bin(&mut out, blake3::hash(tree).as_bytes()).unwrap();
        out
    }

    fn rich_tree() -> Vec<u8> {
        let mut root = sample().root;
        let mut sub = DirNode::default();
        sub.insert(
            FileName::new(b"link".to_vec()).unwrap(),
            Node::Link(super::super::model::LinkNode {
                attrs: Attrs::default(),
                target: b"../x".to_vec(),
            }),
        );
        root.insert(FileName::new(b"d".to_vec()).unwrap(), Node::Dir(sub));
        rmp_serde::to_vec_named(&root).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&bytes, "x");
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed, "x");
            let _ = decode(&framed_tree(&bytes), "x");
        }

        /// Mutations of a valid tree (flipped bytes, cuts) with a valid
        /// checksum: the decoder must return an error or a tree whose names
        /// are all valid, never panic.
        #[test]
        fn mutated_tree_never_panics(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let mut tree = rich_tree();
            for (at, byte) in flips {
                let i = at % tree.len();
                tree[i] = byte;
            }
            tree.truncate(cut % (tree.len() + 1));
            if let Ok(s) = decode(&framed_tree(&tree), "x") {
                proptest::prop_assert!(s.root.check_order().is_ok());
            }
        }
    }
}
