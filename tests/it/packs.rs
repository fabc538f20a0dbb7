//! Packs through the commands: every backed-up file comes back by hand
//! with the system's own tools (the README's recovery), a repository made
//! before packs keeps working and is packed on request, and what a pack
//! costs on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::world::packs::{packs, unzip_entry, zip_entries};
use crate::world::snapshot::{dir_at, flatten};
use crate::world::tree::assert_same_tree;
use crate::world::{World, lib_api, noise, settle, text};
use epygibus::content::{ContentToken, IndexEntry, Place, RefIndex, StoredForm, gzip_member};
use epygibus::snapshot::model::Node;

/// A tree of small text and noise files and two large files.
fn mixed_tree(env: &World) -> PathBuf {
    let tree = env.src().join("tree");
    for d in 0..4 {
        fs::create_dir_all(tree.join(format!("d{d}"))).unwrap();
        for f in 0..25u64 {
            let seed = d * 100 + f;
            let data = if f % 5 == 0 {
                noise(3000 + 50 * f as usize, seed)
            } else {
                text(500 + 700 * f as usize, seed)
            };
            fs::write(tree.join(format!("d{d}/f{f}")), data).unwrap();
        }
    }
    fs::write(tree.join("empty"), b"").unwrap();
    fs::write(tree.join("big.txt"), text(900_000, 7)).unwrap();
    fs::write(tree.join("big.bin"), noise(1_300_000, 8)).unwrap();
    tree
}

/// Every regular file of the newest snapshot below `tree`, with its token.
fn snapshot_files(snapshots: &Path, tree: &Path) -> Vec<(PathBuf, ContentToken)> {
    let names = lib_api::list_snapshots(snapshots);
    let snap = lib_api::read_snapshot(snapshots, names.last().unwrap());
    flatten(dir_at(&snap.root, tree))
        .into_iter()
        .filter_map(|(rel, node)| match node {
            Node::File(f) => Some((rel, f.token)),
            _ => None,
        })
        .collect()
}

/// Gets one content back as a person without epygibus would: look for the
/// token in the packs' listings (`unzip -l`), extract it with `unzip -p`;
/// else `zcat` or copy the loose file.
fn by_hand(repo: &Path, token: &ContentToken) -> Vec<u8> {
    let hex = token.to_hex();
    for pack in packs(repo) {
        let listing = Command::new("unzip").arg("-l").arg(&pack).output().unwrap();
        assert!(listing.status.success(), "unzip -l {}", pack.display());
        if String::from_utf8_lossy(&listing.stdout).contains(&hex) {
            return unzip_entry(&pack, &hex);
        }
    }
    let loose = repo.join("content").join(&hex[..2]).join(&hex);
    let gz = loose.with_extension("gz");
    if gz.exists() {
        let out = Command::new("zcat").arg(&gz).output().unwrap();
        assert!(out.status.success());
        return out.stdout;
    }
    fs::read(&loose).unwrap_or_else(|_| panic!("{hex} is nowhere in {}", repo.display()))
}

#[test]
fn every_file_comes_back_by_hand_with_stock_tools() {
    let env = World::new();
    let repo = env.new_repo("r");
    let tree = mixed_tree(&env);
    let snapshots = env.new_archive("a", "r", &[&tree], &[]);
    env.ok(&["bu", "-A", "a"]);
    let files = snapshot_files(&snapshots, &tree);
    assert_eq!(files.len(), 103);
    let bsdtar = Command::new("bsdtar").arg("--version").output().is_ok();
    for (rel, token) in &files {
        let want = fs::read(tree.join(rel)).unwrap();
        assert_eq!(by_hand(&repo, token), want, "{}", rel.display());
        if let Some(pack) = lib_api::pack_of(&repo, token)
            && bsdtar
        {
            let out = Command::new("bsdtar")
                .arg("-xOf")
                .arg(&pack)
                .arg(token.to_hex())
                .output()
                .unwrap();
            assert!(out.status.success(), "bsdtar -xOf {}", pack.display());
            assert_eq!(out.stdout, want, "bsdtar: {}", rel.display());
        }
    }
    // Small files are packed (one pack here), the two large ones loose.
    let pack = packs(&repo);
    assert_eq!(pack.len(), 1);
    let entries = zip_entries(&pack[0]);
    assert_eq!(entries.len(), 101);
    assert!(
        entries.iter().any(|e| e.method == "stored"),
        "noise is stored"
    );
    assert!(entries.iter().any(|e| e.method == "deflated"));
    let loose: usize = fs::read_dir(repo.join("content"))
        .unwrap()
        .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(loose, 2);
    // What a pack costs besides its items' data: the entries' headers and
    // the table of contents, 220 bytes per entry plus 22.
    let data: u64 = entries.iter().map(|e| e.compressed).sum();
    let size = fs::metadata(&pack[0]).unwrap().len();
    assert_eq!(size - data, 220 * entries.len() as u64 + 22);
}

/// Writes a repository as the epygibus before packs did: format 1, an index
/// of loose entries (version 2) and a gzip file per content; the items have
/// no references yet.
fn old_repository(repo: &Path, files: &[Vec<u8>]) {
    fs::write(
        repo.join("format"),
        "epygibus repository\nformat = 1\nhash = blake3\ncompression = gzip\n",
    )
    .unwrap();
    let mut index = RefIndex {
        generation: 2,
        ..RefIndex::default()
    };
    for data in files {
        let token = ContentToken::of(data);
        let gz = gzip_member(data);
        let hex = token.to_hex();
        fs::write(
            repo.join("content")
                .join(&hex[..2])
                .join(format!("{hex}.gz")),
            &gz,
        )
        .unwrap();
        index.entries.insert(
            token,
            IndexEntry {
                refs: 0,
                size: data.len() as u64,
                stored_size: gz.len() as u64,
                form: StoredForm::Gzip,
                zero_since: 0,
                place: Place::Loose,
            },
        );
    }
    fs::remove_file(repo.join("index.000000000001")).unwrap();
    fs::write(repo.join("index.000000000002"), index.encode()).unwrap();
}

#[test]
fn a_repository_from_before_packs_keeps_working_and_is_packed_on_request() {
    let env = World::new();
    let repo = env.new_repo("r");
    let tree = env.src().join("tree");
    fs::create_dir(&tree).unwrap();
    let old: Vec<Vec<u8>> = (0..30).map(|i| text(2000 + 100 * i, i as u64)).collect();
    for (i, data) in old.iter().enumerate() {
        fs::write(tree.join(format!("old{i}")), data).unwrap();
    }
    old_repository(&repo, &old);
    let index_before = fs::read(repo.join("index.000000000002")).unwrap();
    assert!(index_before.starts_with(b"epygibus-index 2\n"));
    env.new_archive("a", "r", &[&tree], &[]);

    // A backup of only what the old repository holds writes no pack: the
    // repository stays as an older epygibus reads it.
    env.ok(&["bu", "-A", "a"]);
    assert!(packs(&repo).is_empty());
    let format = fs::read_to_string(repo.join("format")).unwrap();
    assert!(format.contains("format = 1\n"), "{format}");
    env.ok(&["check", "-R", "r", "--read-data"]);

    // New small content goes into a pack, and the format says so.
    settle();
    fs::write(tree.join("new"), text(5000, 99)).unwrap();
    env.ok(&["bu", "-A", "a"]);
    assert_eq!(packs(&repo).len(), 1);
    let format = fs::read_to_string(repo.join("format")).unwrap();
    assert!(format.contains("format = 2\n"), "{format}");
    assert!(!repo.join("format.1").exists());
    let loose_left = |repo: &Path| -> usize {
        fs::read_dir(repo.join("content"))
            .unwrap()
            .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum()
    };
    assert_eq!(loose_left(&repo), 30);

    // compress --pack moves the old loose files into packs.
    let out = env.ok(&["compress", "--pack", "-R", "r"]);
    assert!(out.starts_with("Moved 30 content items ("), "{out}");
    assert!(out.ends_with(" into 1 packs.\n"), "{out}");
    assert_eq!(loose_left(&repo), 0);
    assert_eq!(packs(&repo).len(), 2);
    for data in &old {
        let token = ContentToken::of(data);
        let pack = lib_api::pack_of(&repo, &token).unwrap();
        assert_eq!(&unzip_entry(&pack, &token.to_hex()), data);
    }
    assert_eq!(
        env.ok(&["compress", "--pack", "-R", "r"]),
        "Nothing to do: no small loose content files.\n"
    );
    env.ok(&["check", "-R", "r", "--read-data"]);
    let out = env.out();
    fs::create_dir(&out).unwrap();
    env.ok(&[
        "extract",
        "-A",
        "a",
        "--dir",
        tree.to_str().unwrap(),
        "--into_dir",
        out.to_str().unwrap(),
    ]);
    assert_same_tree(&tree, &out.join("tree"), false, "after compress --pack");
}
