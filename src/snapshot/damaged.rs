//! A snapshot that cannot be read is never a dead end (docs/design.md,
//! rule 4: damaged files are named, never overwritten or deleted).
//!
//! Setting aside renames the file to `<file>.damaged` (`.damaged.1`, … when
//! taken), a name no listing takes for a snapshot, so prune, check and
//! forget no longer stop at it; the bytes stay as they were for whoever
//! wants to look. Its references are not released (which ones it holds
//! cannot be known), so its content keeps counts that may be too high,
//! never too low, until `check --repair --lower-counts` recounts from the
//! readable snapshots.
//!
//! Salvage: where the header and the start of the tree still decode (a
//! truncated file, the usual damage), every entry before the damage is
//! kept as a new snapshot at the damaged one's time, marked in its header
//! as salvaged (`salvaged_from`). Only files whose content the repository
//! holds with a count above zero are kept (the damaged snapshot's own
//! references keep that content alive; a token mangled by the damage is
//! not there). Such a snapshot is restored from like any other, but no
//! backup trusts it for change detection, since it may lack entries.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use super::format::{self, BuildStats, Header, MAGIC, Snapshot, SnapshotError, SnapshotName};
use super::model::{Attrs, DirNode, Entry, FileName, FileNode, LinkNode, Node};
use crate::content::Repository;
use crate::store::Store;

/// What follows a snapshot file's name when it is set aside.
pub const SET_ASIDE_SUFFIX: &str = ".damaged";

/// Deeper directories than this are not salvaged (a crafted file must not
/// exhaust the stack; real trees are far shallower).
const MAX_DEPTH: usize = 1000;

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Renames snapshot `name` (both forms, should a crash have left two) to
/// names with [`SET_ASIDE_SUFFIX`] that are free, durably. Returns the new
/// names; empty when the file is gone already.
pub fn set_aside(dir: &dyn Store, name: &SnapshotName) -> Result<Vec<String>> {
    let mut aside = Vec::new();
    let other = SnapshotName {
        compressed: !name.compressed,
        ..*name
    };
    for n in [*name, other] {
        let file = n.file_name();
        if dir.stat(&file)?.is_none() {
            continue;
        }
        for k in 0.. {
            let target = match k {
                0 => format!("{file}{SET_ASIDE_SUFFIX}"),
                k => format!("{file}{SET_ASIDE_SUFFIX}.{k}"),
            };
            if dir.rename_new(&file, &target)? {
                aside.push(target);
                break;
            }
        }
    }
    dir.barrier()?;
    Ok(aside)
}

/// The files of `dir` that were set aside, sorted.
pub fn list_set_aside(dir: &dyn Store) -> Result<Vec<String>> {
    let mut names: Vec<String> = dir
        .list("")?
        .into_iter()
        .map(|m| m.name)
        .filter(|n| is_set_aside(n))
        .collect();
    names.sort();
    Ok(names)
}

/// True for a name [`set_aside`] gives.
pub fn is_set_aside(name: &str) -> bool {
    let Some((stem, tail)) = name.split_once(SET_ASIDE_SUFFIX) else {
        return false;
    };
    let numbered = tail.is_empty()
        || tail
            .strip_prefix('.')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    numbered && !name.contains('/') && SnapshotName::parse(stem.as_bytes()).is_some()
}

/// What a salvage recovered.
#[derive(Debug)]
pub struct Salvaged {
    /// The new snapshot holding what was recovered.
    pub name: SnapshotName,
    /// Files, symlinks and directories in it.
    pub entries: u64,
    /// Files left out because their content is not in the repository.
    pub dropped_files: u64,
}

/// Salvages what can be decoded of the damaged snapshot `name`, already
/// set aside as `aside` (one of the names [`set_aside`] returned), into a
/// new snapshot at its time, in the same form (see the module notes). Counts are raised for every file kept before the snapshot is
/// written (counts before snapshots). `Ok(None)`: nothing could be
/// recovered (no header, or no entry).
pub fn salvage(
    dir: &dyn Store,
    repo: &Repository,
    name: &SnapshotName,
    aside: &str,
) -> Result<Option<Salvaged>, super::ArchiveError> {
    let compressed = aside.contains(&format!(".gz{SET_ASIDE_SUFFIX}"));
    let Some(bytes) = lenient_plain_bytes(dir, aside, compressed)? else {
        return Ok(None);
    };
    let Some((header, mut root)) = decode_start(&bytes) else {
        return Ok(None);
    };
    let dropped_files = keep_present(&mut root, repo);
    let counts = root.counts();
    let entries = counts.files + counts.links + counts.dirs;
    if entries == 0 {
        return Ok(None);
    }
    let snapshot = Snapshot {
        header: Header {
            stats: BuildStats {
                counts,
                ..BuildStats::default()
            },
            time_ns: Some(name.secs.saturating_mul(1_000_000_000)),
            salvaged_from: Some(aside.to_owned()),
            ..header
        },
        root,
    };
    let session = repo.begin_backup();
    for token in snapshot.root.tokens() {
        session.reference_contents(&token)?;
    }
    let counted = session.commit_counts()?;
    let written = format::write_snapshot(dir, &snapshot, compressed);
    // Whether or not the write reported an error, the file may be there:
    // the references stay (too high is safe, too low is not).
    counted.snapshot_written()?;
    Ok(Some(Salvaged {
        name: written?,
        entries,
        dropped_files,
    }))
}

/// The bytes of a damaged snapshot file, gunzipped as far as the stream
/// goes; `None` when it cannot be read at all.
fn lenient_plain_bytes(dir: &dyn Store, file: &str, compressed: bool) -> Result<Option<Vec<u8>>> {
    let raw = if dir.is_sealed() {
        // Decrypted chunk by chunk: every chunk before the damage is
        // authentic and kept.
        let mut raw = Vec::new();
        let _ = dir.open(file)?.read_to_end(&mut raw);
        raw
    } else {
        dir.read(file)?
    };
    if !compressed {
        return Ok(Some(raw));
    }
    let mut plain = Vec::with_capacity(raw.len() * 4);
    // An error ends the stream; what came before it is kept.
    let _ = MultiGzDecoder::new(&raw[..]).read_to_end(&mut plain);
    Ok((!plain.is_empty()).then_some(plain))
}

/// The header and the decodable start of the tree of an uncompressed
/// snapshot file's bytes, however they end.
pub fn decode_start(bytes: &[u8]) -> Option<(Header, DirNode)> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let header: Header = rmp_serde::from_read(&mut rest).ok()?;
    let len = rmp::decode::read_bin_len(&mut rest).ok()? as usize;
    let mut tree = &rest[..len.min(rest.len())];
    let (root, _) = salvage_dir(&mut tree, 0);
    Some((header, root))
}

/// Decodes a directory node as far as it goes; the flag says whether it
/// decoded to its end.
fn salvage_dir(rd: &mut &[u8], depth: usize) -> (DirNode, bool) {
    let mut dir = DirNode::default();
    if depth > MAX_DEPTH {
        return (dir, false);
    }
    let Ok(fields) = rmp::decode::read_map_len(rd) else {
        return (dir, false);
    };
    for _ in 0..fields {
        match read_key(rd).as_deref() {
            Some("a") => match rmp_serde::from_read::<_, Attrs>(&mut *rd) {
                Ok(a) => dir.attrs = a,
                Err(_) => return (dir, false),
            },
            Some("e") => {
                let Ok(n) = rmp::decode::read_array_len(rd) else {
                    return (dir, false);
                };
                for _ in 0..n {
                    let Some((entry, whole)) = salvage_entry(rd, depth) else {
                        return (dir, false);
                    };
                    // Names must stay sorted and unique: damage may have
                    // changed one.
                    if dir.entries.last().is_some_and(|e| e.name >= entry.name) {
                        return (dir, false);
                    }
                    dir.entries.push(entry);
                    if !whole {
                        return (dir, false);
                    }
                }
            }
            _ => return (dir, false),
        }
    }
    (dir, true)
}

/// One entry (`{n: name, k: {d|f|l: node}}`); a directory may come back
/// partial (flag false). `None`: nothing of it could be decoded.
fn salvage_entry(rd: &mut &[u8], depth: usize) -> Option<(Entry, bool)> {
    if rmp::decode::read_map_len(rd).ok()? != 2 || read_key(rd)? != "n" {
        return None;
    }
    let len = rmp::decode::read_bin_len(rd).ok()? as usize;
    if rd.len() < len {
        return None;
    }
    let (bytes, tail) = rd.split_at(len);
    *rd = tail;
    let name = FileName::new(bytes.to_vec()).ok()?;
    if read_key(rd)? != "k" || rmp::decode::read_map_len(rd).ok()? != 1 {
        return None;
    }
    let (node, whole) = match read_key(rd)?.as_str() {
        "d" => {
            let (d, whole) = salvage_dir(rd, depth + 1);
            (Node::Dir(d), whole)
        }
        "f" => (
            Node::File(rmp_serde::from_read::<_, FileNode>(&mut *rd).ok()?),
            true,
        ),
        "l" => (
            Node::Link(rmp_serde::from_read::<_, LinkNode>(&mut *rd).ok()?),
            true,
        ),
        _ => return None,
    };
    Some((Entry { name, node }, whole))
}

fn read_key(rd: &mut &[u8]) -> Option<String> {
    let len = rmp::decode::read_str_len(rd).ok()? as usize;
    if rd.len() < len {
        return None;
    }
    let (bytes, tail) = rd.split_at(len);
    *rd = tail;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Drops files whose content the repository does not hold with a count
/// above zero; returns how many.
fn keep_present(dir: &mut DirNode, repo: &Repository) -> u64 {
    let mut dropped = 0;
    dir.entries.retain_mut(|e| match &mut e.node {
        Node::Dir(d) => {
            dropped += keep_present(d, repo);
            true
        }
        Node::File(f) => {
            let held = repo
                .content_storage_stats(&f.token)
                .is_some_and(|(_, refs)| refs > 0);
            dropped += u64::from(!held);
            held
        }
        Node::Link(_) => true,
    });
    dropped
}

#[cfg(test)]
mod tests {
    use super::super::format::{encode, gzip};
    use super::*;
    use crate::content::ContentToken;
    use crate::store::MemoryStore;

    fn file(n: u8) -> Node {
        Node::File(FileNode {
            attrs: Attrs {
                mode: 0o100644,
                mtime_ns: 1_700_000_000_000_000_000 + i64::from(n),
                ..Attrs::default()
            },
            size: u64::from(n),
            token: ContentToken::of(&[n]),
        })
    }

    /// `/a/0..20`, `/b -> x`, `/c/d/0..20`.
    fn sample() -> Snapshot {
        let mut root = DirNode::default();
        let mut a = DirNode::default();
        for i in 0..20u8 {
            a.insert(
                FileName::new(format!("f{i:02}").into_bytes()).unwrap(),
                file(i),
            );
        }
        root.insert(FileName::new(b"a".to_vec()).unwrap(), Node::Dir(a));
        root.insert(
            FileName::new(b"b".to_vec()).unwrap(),
            Node::Link(LinkNode {
                attrs: Attrs::default(),
                target: b"x".to_vec(),
            }),
        );
        let mut d = DirNode::default();
        for i in 20..40u8 {
            d.insert(
                FileName::new(format!("g{i}").into_bytes()).unwrap(),
                file(i),
            );
        }
        let mut c = DirNode::default();
        c.insert(FileName::new(b"d".to_vec()).unwrap(), Node::Dir(d));
        root.insert(FileName::new(b"c".to_vec()).unwrap(), Node::Dir(c));
        Snapshot {
            header: Header {
                archive: "x".into(),
                started_ns: 1_700_000_000_000_000_000,
                ..Header::default()
            },
            root,
        }
    }

    fn entries(d: &DirNode) -> u64 {
        let c = d.counts();
        c.files + c.links + c.dirs
    }

    #[test]
    fn whole_tree_salvages_whole() {
        let s = sample();
        let (h, root) = decode_start(&encode(&s)).unwrap();
        assert_eq!(h, s.header);
        assert_eq!(root, s.root);
    }

    #[test]
    fn every_cut_salvages_a_prefix_that_only_grows() {
        let s = sample();
        let bytes = encode(&s);
        let total = entries(&s.root);
        let mut last = 0;
        let mut seen_partial = false;
        for cut in 0..=bytes.len() {
            let Some((_, root)) = decode_start(&bytes[..cut]) else {
                assert_eq!(last, 0, "the header decoded before cut {cut}");
                continue;
            };
            root.check_order().unwrap();
            let n = entries(&root);
            assert!(n >= last, "cut {cut}: {n} entries after {last}");
            assert!(n <= total);
            seen_partial |= n > 0 && n < total;
            // What was salvaged is exactly what the snapshot has there.
            root.walk(&mut |path, node| {
                if !matches!(node, Node::Dir(_)) {
                    let found = s.root.lookup(path.iter().map(|n| n.as_bytes()));
                    assert_eq!(found, Some(node), "cut {cut}: {path:?}");
                }
            });
            last = n;
        }
        assert!(seen_partial);
        assert_eq!(last, total);
    }

    #[test]
    fn truncated_gzip_snapshot_is_salvaged_and_set_aside() {
        let dir = MemoryStore::named("s");
        let s = sample();
        let name = format::write_snapshot(&dir, &s, true).unwrap();
        let gz = gzip(&encode(&s));
        assert_eq!(dir.read(&name.file_name()).unwrap(), gz);
        let cut = gz.len() * 2 / 3;
        dir.corrupt(&name.file_name(), &gz[..cut]);
        assert!(format::read_snapshot(&dir, &name).is_err());
        let aside = set_aside(&dir, &name).unwrap();
        assert_eq!(aside, vec![format!("{}.damaged", name.file_name())]);
        assert!(format::list_snapshots(&dir).unwrap().is_empty());
        assert_eq!(list_set_aside(&dir).unwrap(), aside);
        let bytes = lenient_plain_bytes(&dir, &aside[0], true).unwrap().unwrap();
        let (_, root) = decode_start(&bytes).unwrap();
        assert!(entries(&root) > 0 && entries(&root) < entries(&s.root));
        // A second set-aside of the same name gets a numbered one.
        format::write_snapshot(&dir, &s, true).unwrap();
        assert_eq!(
            set_aside(&dir, &name).unwrap(),
            vec![format!("{}.damaged.1", name.file_name())]
        );
    }

    #[test]
    fn set_aside_names() {
        for yes in [
            "2024-01-01-00-00-00.damaged",
            "2024-01-01-00-00-00.gz.damaged",
            "2024-01-01-00-00-00.gz.damaged.12",
        ] {
            assert!(is_set_aside(yes), "{yes}");
        }
        for no in [
            "2024-01-01-00-00-00",
            "2024-01-01-00-00-00.gz",
            "x.damaged",
            "2024-01-01-00-00-00.damaged.",
            "2024-01-01-00-00-00.damaged.x",
            "spec.000000000001",
        ] {
            assert!(!is_set_aside(no), "{no}");
        }
    }

    proptest::proptest! {
        /// Any bytes after a valid header: a sorted, valid tree or nothing,
        /// never a panic.
        #[test]
        fn salvage_never_panics(tree in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&rmp_serde::to_vec_named(&sample().header).unwrap());
            rmp::encode::write_bin(&mut bytes, &tree).unwrap();
            if let Some((_, root)) = decode_start(&bytes) {
                proptest::prop_assert!(root.check_order().is_ok());
            }
            let _ = decode_start(&tree);
        }
    }
}
