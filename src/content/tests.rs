use super::layout::{CONTENT_DIR, content_name, parse_generation};
use super::*;
use std::collections::HashMap;
use std::fs;
use std::time::Duration;

fn repo(compressed: bool) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    Repository::create_dir(&dir, &NewRepository::plain(compressed)).unwrap();
    (tmp, dir)
}

/// Stores files in one session whose snapshot counts as written.
fn store_all(r: &Repository, paths: &[&Path]) -> Vec<ContentToken> {
    let session = r.begin_backup();
    let tokens = paths
        .iter()
        .map(|p| session.store_contents(p).unwrap())
        .collect();
    session.commit_counts().unwrap().snapshot_written().unwrap();
    tokens
}

fn content_path(dir: &Path, t: &ContentToken, form: StoredForm) -> PathBuf {
    dir.join(content_name(t, form))
}

/// A file small enough to be packed and one too large (stays loose), each
/// made of `unit` repeated.
fn both_sizes(unit: &[u8]) -> [Vec<u8>; 2] {
    let big = (MAX_PACKED as usize) / unit.len() + 2;
    [unit.repeat(4), unit.repeat(big)]
}

/// The file holding an item: its loose file or its pack.
fn holder(dir: &Path, r: &Repository, t: &ContentToken) -> PathBuf {
    let e = r.index().entries[t];
    match e.place {
        Place::Loose => content_path(dir, t, e.form),
        Place::Packed { pack, .. } => dir.join(r.pack_name(pack).unwrap().object_name()),
    }
}

fn read_back(r: &Repository, t: &ContentToken) -> Vec<u8> {
    let mut back = Vec::new();
    r.open_contents_read_only(t)
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    back
}

fn locked(dir: &Path) -> Repository {
    Repository::open_dir(
        dir,
        Access::Locked {
            command: "test",
            wait: LockWait::no_wait(),
        },
    )
    .unwrap()
}

#[test]
fn same_content_stored_once_with_count_two() {
    for data in both_sizes(b"same bytes, same bytes, ") {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        fs::write(&a, &data).unwrap();
        fs::write(&b, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&a, &b]);
        let (ta, tb) = (t[0], t[1]);
        assert_eq!(ta, tb);
        assert_eq!(r.content_storage_stats(&ta).unwrap().1, 2);
        let loose: Vec<_> = fs::read_dir(dir.join(CONTENT_DIR).join(ta.fan_out()))
            .unwrap()
            .collect();
        let packs: Vec<_> = fs::read_dir(dir.join(PACK_DIR)).unwrap().collect();
        let packed = data.len() as u64 <= MAX_PACKED;
        assert_eq!(
            (loose.len(), packs.len()),
            if packed { (0, 1) } else { (1, 0) }
        );
        drop(r);
        let again = Repository::open_dir(&dir, Access::ReadOnly).unwrap();
        assert_eq!(again.content_storage_stats(&ta).unwrap().1, 2);
        assert_eq!(read_back(&again, &ta), data);
    }
}

#[test]
fn large_file_round_trip_both_forms() {
    for compressed in [true, false] {
        let (tmp, dir) = repo(compressed);
        let src = tmp.path().join("big");
        let data: Vec<u8> = (0..(codec::CHUNK * 2 + 5)).map(|i| (i / 7) as u8).collect();
        fs::write(&src, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&src])[0];
        let mut back = Vec::new();
        r.open_contents_read_only(&t)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let out = tmp.path().join("out");
        assert_eq!(r.copy_contents_to(&t, &out).unwrap(), data.len() as u64);
        assert_eq!(fs::read(&out).unwrap(), data);
        let gz = content_path(&dir, &t, StoredForm::Gzip).exists();
        assert_eq!(gz, compressed);
    }
}

#[test]
fn release_then_prune_removes_file() {
    for data in both_sizes(b"x") {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&a])[0];
        let file = holder(&dir, &r, &t);
        assert!(file.exists());
        assert_eq!(r.release_contents([&t]), 0);
        r.commit().unwrap();
        let nothing = HashMap::new();
        let now = PruneRules {
            referenced: &nothing,
            min_age: Duration::ZERO,
        };
        let report = r.prune(&now).unwrap();
        assert_eq!(report.items, 1);
        assert_eq!(report.content_bytes, data.len() as u64);
        assert!(!file.exists(), "{}", file.display());
        assert_eq!(r.prune(&now).unwrap(), PruneReport::default());
    }
}

#[test]
fn prune_respects_snapshots_and_min_age() {
    let (tmp, dir) = repo(true);
    let a = tmp.path().join("a");
    fs::write(&a, b"y".repeat(500)).unwrap();
    let r = locked(&dir);
    let t = store_all(&r, &[&a])[0];
    r.release_contents([&t]);
    r.commit().unwrap();
    // A snapshot still uses it (a count lost elsewhere): kept, raised.
    let used = HashMap::from([(t, 1)]);
    let rep = r
        .prune(&PruneRules {
            referenced: &used,
            min_age: Duration::ZERO,
        })
        .unwrap();
    assert_eq!((rep.items, rep.kept_referenced), (0, 1));
    assert_eq!(r.content_storage_stats(&t).unwrap().1, 1);
    // Released just now on a shared repository: kept for min_age.
    r.release_contents([&t]);
    let nothing = HashMap::new();
    let rep = r
        .prune(&PruneRules {
            referenced: &nothing,
            min_age: Duration::from_secs(3600),
        })
        .unwrap();
    assert_eq!((rep.items, rep.kept_young), (0, 1));
    assert!(r.open_contents_read_only(&t).is_ok());
}

#[test]
fn compress_round_trip_keeps_reads_correct() {
    for data in both_sizes(b"compress me please ") {
        let (tmp, dir) = repo(false);
        let a = tmp.path().join("a");
        fs::write(&a, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&a])[0];
        let before = holder(&dir, &r, &t);
        assert_eq!(r.index().entries[&t].form, StoredForm::Plain);
        let rep = r.compress_all(StoredForm::Gzip).unwrap();
        assert_eq!(rep.converted, 1);
        assert!(rep.stored_after < rep.stored_before);
        assert_eq!(r.index().entries[&t].form, StoredForm::Gzip);
        assert!(!before.exists(), "the old copy is removed");
        assert!(holder(&dir, &r, &t).exists());
        assert_eq!(read_back(&r, &t), data);
        let rep = r.compress_all(StoredForm::Plain).unwrap();
        assert_eq!(rep.converted, 1);
        assert_eq!(read_back(&r, &t), data);
        let rep = r.compress_all(StoredForm::Plain).unwrap();
        assert_eq!(
            (rep.converted, rep.packs_rewritten),
            (0, 0),
            "nothing left to do"
        );
    }
}

#[test]
fn index_generations_replace_each_other() {
    let (tmp, dir) = repo(true);
    let a = tmp.path().join("a");
    fs::write(&a, b"abc").unwrap();
    let r = locked(&dir);
    for _ in 0..3 {
        store_all(&r, &[&a]);
    }
    let gens: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| parse_generation(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    assert_eq!(gens, vec![4]);
}

#[test]
fn corrupt_index_is_reported_and_left() {
    let (_tmp, dir) = repo(true);
    let path = dir.join(super::layout::generation_name(1));
    fs::write(&path, b"garbage").unwrap();
    let err = Repository::open_dir(&dir, Access::ReadOnly).err().unwrap();
    assert!(err.to_string().contains("index.000000000001"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), b"garbage");
}

#[test]
fn revived_content_pruned_meanwhile_is_written_again() {
    for data in both_sizes(b"revive me ") {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&a])[0];
        r.release_contents([&t]);
        r.commit().unwrap();
        // Revived: the file exists, so the count goes up without a write.
        let session = r.begin_backup();
        assert_eq!(session.store_contents(&a).unwrap(), t);
        let counted = session.commit_counts().unwrap();
        // Another machine's prune removes the file before our snapshot.
        fs::remove_file(holder(&dir, &r, &t)).unwrap();
        assert_eq!(counted.snapshot_written().unwrap(), 1);
        assert_eq!(read_back(&r, &t), data);
        assert_eq!(r.content_storage_stats(&t).unwrap().1, 1);
        drop(r);
        let again = Repository::open_dir(&dir, Access::ReadOnly).unwrap();
        assert_eq!(read_back(&again, &t), data, "the new place is saved");
    }
}

#[test]
fn zero_count_entry_whose_file_vanished_is_rewritten() {
    for data in both_sizes(b"content that another machine pruned") {
        let (tmp, dir) = repo(true);
        let a = tmp.path().join("a");
        fs::write(&a, &data).unwrap();
        let r = locked(&dir);
        let t = store_all(&r, &[&a])[0];
        r.release_contents([&t]);
        fs::remove_file(holder(&dir, &r, &t)).unwrap();
        assert!(r.open_contents_read_only(&t).is_err());
        store_all(&r, &[&a]);
        assert_eq!(read_back(&r, &t), data);
    }
}

#[test]
fn failed_backup_gives_its_references_back() {
    let (tmp, dir) = repo(true);
    let a = tmp.path().join("a");
    fs::write(&a, b"stored by a backup that never finished").unwrap();
    let r = locked(&dir);
    let t = {
        let session = r.begin_backup();
        let t = session.store_contents(&a).unwrap();
        let counted = session.commit_counts().unwrap();
        assert_eq!(r.content_storage_stats(&t).unwrap().1, 1);
        drop(counted); // the snapshot could not be written
        t
    };
    assert_eq!(r.content_storage_stats(&t).unwrap().1, 0);
    let again = Repository::open_dir(&dir, Access::ReadOnly).unwrap();
    assert_eq!(again.content_storage_stats(&t).unwrap().1, 0, "saved");
}

#[test]
fn repository_works_on_a_memory_store_with_faults() {
    for data in both_sizes(b"memory ") {
        let store = std::sync::Arc::new(crate::store::MemoryStore::named("r"));
        Repository::create(store.as_ref(), &NewRepository::plain(true)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        fs::write(&a, &data).unwrap();
        let r = Repository::open(store.clone(), Access::ReadOnly).unwrap();
        store.inject(crate::store::Fault::FailWrite(store.writes() + 1));
        let session = r.begin_backup();
        // A loose file fails as it is stored; a pack when it is finished.
        let failed = session
            .store_contents(&a)
            .and_then(|_| session.packer.finish());
        assert!(failed.is_err(), "the injected fault surfaces");
        assert!(
            !r.index().entries.contains_key(&ContentToken::of(&data)),
            "no entry points into the failed pack"
        );
        let t = session.store_contents(&a).unwrap();
        session.commit_counts().unwrap().snapshot_written().unwrap();
        assert_eq!(read_back(&r, &t), data);
    }
}
