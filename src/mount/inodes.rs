//! Inode numbers for what the mount shows. FUSE names everything by a
//! number the kernel keeps while it holds a lookup; entries get numbers on
//! first sight and lose them when the kernel forgets them, so memory
//! follows what is in use, not everything ever listed. The names of a
//! hard-linked file in one snapshot share one number, as they did on disk,
//! so `tar`, `rsync -H` and `du` see one file.

use std::collections::HashMap;

/// A place in the mounted tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// The mount point.
    Root,
    /// `<archive>/`, by its index in the catalog.
    Archive(usize),
    /// `<archive>/latest`, a symlink to the newest snapshot.
    Latest(usize),
    /// `<archive>/<snapshot>/`, the snapshot's `/`, by its time.
    Snapshot(usize, i64),
    /// An entry of a snapshot: entry indexes from its `/` down.
    Entry(usize, i64, Vec<u32>),
}

/// What makes two places one inode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Place(Place),
    /// A file with more than one name: archive, snapshot, device, inode.
    HardLink(usize, i64, u64, u64),
}

struct Slot {
    key: Key,
    /// Where it was first seen (any name of a hard-linked file will do).
    place: Place,
    lookups: u64,
}

/// The number of the mount point.
pub const ROOT: u64 = 1;

pub struct Inodes {
    by_key: HashMap<Key, u64>,
    slots: HashMap<u64, Slot>,
    next: u64,
}

impl Inodes {
    pub fn new() -> Inodes {
        let mut i = Inodes {
            by_key: HashMap::new(),
            slots: HashMap::new(),
            next: ROOT,
        };
        i.number(Place::Root, None);
        i
    }

    /// The place an inode stands for.
    pub fn place(&self, ino: u64) -> Option<Place> {
        self.slots.get(&ino).map(|s| s.place.clone())
    }

    /// The inode of a place, numbered now if it has none; `hard_link` is
    /// the (device, inode) a file with several names had on disk.
    pub fn number(&mut self, place: Place, hard_link: Option<(u64, u64)>) -> u64 {
        let key = match (&place, hard_link) {
            (Place::Entry(a, s, _), Some((dev, ino))) => Key::HardLink(*a, *s, dev, ino),
            _ => Key::Place(place.clone()),
        };
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_key.insert(key.clone(), ino);
        self.slots.insert(
            ino,
            Slot {
                key,
                place,
                lookups: 0,
            },
        );
        ino
    }

    /// The kernel now holds one more reference (a lookup answered).
    pub fn looked_up(&mut self, ino: u64) {
        if let Some(s) = self.slots.get_mut(&ino) {
            s.lookups += 1;
        }
    }

    /// The kernel dropped `n` references; the number goes with the last.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(s) = self.slots.get_mut(&ino) else {
            return;
        };
        s.lookups = s.lookups.saturating_sub(n);
        if s.lookups == 0 {
            let s = self.slots.remove(&ino).expect("present above");
            self.by_key.remove(&s.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_while_held_and_shared_by_hard_links() {
        let mut i = Inodes::new();
        assert_eq!(i.place(ROOT), Some(Place::Root));
        let a = i.number(Place::Archive(0), None);
        assert_eq!(i.number(Place::Archive(0), None), a);
        let e1 = i.number(Place::Entry(0, 5, vec![1, 2]), Some((9, 77)));
        let e2 = i.number(Place::Entry(0, 5, vec![1, 3]), Some((9, 77)));
        assert_eq!(e1, e2, "two names of one file");
        let other_snapshot = i.number(Place::Entry(0, 6, vec![1, 2]), Some((9, 77)));
        assert_ne!(e1, other_snapshot);
        i.looked_up(e1);
        i.looked_up(e1);
        i.forget(e1, 1);
        assert!(i.place(e1).is_some());
        i.forget(e1, 1);
        assert!(i.place(e1).is_none());
        let again = i.number(Place::Entry(0, 5, vec![1, 2]), Some((9, 77)));
        assert_ne!(again, e1, "a forgotten number is not reused");
        i.forget(ROOT, 10);
        assert_eq!(i.place(ROOT), Some(Place::Root));
    }
}
