//! One suite every store runs: a new store is correct when it passes the
//! same checks as the others. Each check panics with what went wrong.
//! Public (but hidden from docs) so integration tests can run it against
//! stores that need a server.

use std::io::{Read, Write};
use std::time::Duration;

use super::{Committed, Store};

/// Runs every check on an empty store.
pub fn run_all(store: &dyn Store) {
    create_only_never_replaces(store);
    streamed_write_appears_only_on_commit(store);
    range_reads(store);
    listing_by_prefix(store);
    stat_delete_touch(store);
    rename_new_never_replaces(store);
    missing_objects_are_not_found(store);
    barrier_and_leftovers(store);
}

pub fn create_only_never_replaces(store: &dyn Store) {
    assert_eq!(
        store.put_new("cf/one", b"first").unwrap(),
        Committed::Created
    );
    assert_eq!(
        store.put_new("cf/one", b"second").unwrap(),
        Committed::Existed
    );
    assert_eq!(store.read("cf/one").unwrap(), b"first");
    let mut o = store.create("cf/one").unwrap();
    o.write_all(b"third").unwrap();
    assert_eq!(o.commit().unwrap(), Committed::Existed);
    assert_eq!(store.read("cf/one").unwrap(), b"first");
}

pub fn streamed_write_appears_only_on_commit(store: &dyn Store) {
    let mut o = store.create("cf/deep/er/streamed").unwrap();
    for i in 0..100u32 {
        o.write_all(&i.to_le_bytes().repeat(1000)).unwrap();
    }
    assert!(
        store.stat("cf/deep/er/streamed").unwrap().is_none(),
        "visible before commit"
    );
    assert_eq!(o.commit().unwrap(), Committed::Created);
    let mut back = Vec::new();
    store
        .open("cf/deep/er/streamed")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back.len(), 400_000);
    assert_eq!(&back[4000..4004], &1u32.to_le_bytes());

    let mut dropped = store.create("cf/dropped").unwrap();
    dropped.write_all(b"never committed").unwrap();
    drop(dropped);
    assert!(store.stat("cf/dropped").unwrap().is_none());
    assert!(
        store.list("cf/dropped").unwrap().is_empty(),
        "an uncommitted write is listed"
    );
}

pub fn range_reads(store: &dyn Store) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    assert_eq!(store.put_new("rr/obj", &bytes).unwrap(), Committed::Created);
    assert_eq!(store.read_range("rr/obj", 0, 10).unwrap(), &bytes[..10]);
    assert_eq!(
        store.read_range("rr/obj", 5000, 300).unwrap(),
        &bytes[5000..5300]
    );
    assert_eq!(
        store.read_range("rr/obj", 9990, 100).unwrap(),
        &bytes[9990..],
        "a range past the end is cut at the end"
    );
    assert!(store.read_range("rr/obj", 20_000, 5).unwrap().is_empty());
}

pub fn listing_by_prefix(store: &dyn Store) {
    for name in ["ls/a/1", "ls/a/2", "ls/ab", "ls/b/x/y", "lsx"] {
        assert_eq!(
            store.put_new(name, name.as_bytes()).unwrap(),
            Committed::Created
        );
    }
    let names = |prefix: &str| {
        let mut n: Vec<String> = store
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("ls/a/"), ["ls/a/1", "ls/a/2"]);
    assert_eq!(names("ls/a"), ["ls/a/1", "ls/a/2", "ls/ab"]);
    assert_eq!(names("ls/"), ["ls/a/1", "ls/a/2", "ls/ab", "ls/b/x/y"]);
    assert!(names("").contains(&"lsx".to_owned()));
    assert!(names("nothing/").is_empty());
    let meta = store
        .list("ls/ab")
        .unwrap()
        .into_iter()
        .next()
        .expect("listed");
    assert_eq!(meta.size, 5);
}

pub fn stat_delete_touch(store: &dyn Store) {
    assert_eq!(store.put_new("sd/x", b"12345").unwrap(), Committed::Created);
    let before = store.stat("sd/x").unwrap().expect("exists");
    assert_eq!(before.size, 5);
    std::thread::sleep(Duration::from_millis(1100));
    store.touch("sd/x").unwrap();
    let after = store.stat("sd/x").unwrap().expect("exists");
    assert!(after.modified > before.modified, "touch moves the time");
    store.delete("sd/x").unwrap();
    assert!(store.stat("sd/x").unwrap().is_none());
    store.delete("sd/x").unwrap();
    assert_eq!(
        store.put_new("sd/x", b"again").unwrap(),
        Committed::Created,
        "a deleted name can be created again"
    );
}

pub fn rename_new_never_replaces(store: &dyn Store) {
    assert_eq!(store.put_new("rn/a", b"a").unwrap(), Committed::Created);
    assert_eq!(store.put_new("rn/b", b"b").unwrap(), Committed::Created);
    assert!(!store.rename_new("rn/a", "rn/b").unwrap());
    assert_eq!(store.read("rn/b").unwrap(), b"b");
    assert!(store.rename_new("rn/a", "rn/c").unwrap());
    assert!(store.stat("rn/a").unwrap().is_none());
    assert_eq!(store.read("rn/c").unwrap(), b"a");
}

pub fn missing_objects_are_not_found(store: &dyn Store) {
    assert!(store.read("no/such").unwrap_err().is_not_found());
    assert!(store.open("no/such").err().unwrap().is_not_found());
    assert!(store.stat("no/such").unwrap().is_none());
    assert!(
        store
            .read_range("no/such", 0, 1)
            .unwrap_err()
            .is_not_found()
    );
}

pub fn barrier_and_leftovers(store: &dyn Store) {
    let mut o = store.create("bl/obj").unwrap();
    o.write_all(b"durable").unwrap();
    assert_eq!(o.commit().unwrap(), Committed::Created);
    store.barrier().unwrap();
    assert!(
        store.leftovers().unwrap().is_empty(),
        "clean operations leave no leftovers"
    );
}
