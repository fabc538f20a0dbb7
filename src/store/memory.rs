//! A store in memory, for fast tests, with fault injection: fail the Nth
//! write, tear a write, fail a commit after its data was stored, and lose
//! everything after the last barrier (a crash).

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{
    Committed, Leftover, Location, NewObject, ObjectMeta, ObjectReader, Result, Store, StoreError,
    check_name,
};

/// A fault to inject into the Nth create-only write (counting from 1,
/// over `create` and `put_new` together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The write fails before anything is stored (e.g. no space).
    FailWrite(u64),
    /// Only the first half of the bytes is stored under the name, and the
    /// commit fails: what a crash in the middle of a non-atomic write
    /// leaves.
    TearWrite(u64),
    /// The object is stored whole, but the commit reports an error (a
    /// timeout after an upload succeeded).
    FailCommitAfterData(u64),
}

#[derive(Clone, Debug)]
struct Object {
    bytes: Vec<u8>,
    modified: SystemTime,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    /// What survives a crash: the objects as of the last barrier.
    durable: BTreeMap<String, Object>,
    writes: u64,
    faults: Vec<Fault>,
}

/// Objects in a map; cheap to make, one per test.
pub struct MemoryStore {
    location: Location,
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn named(name: &str) -> MemoryStore {
        MemoryStore {
            location: Location::Memory(name.to_owned()),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a fault.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Create-only writes so far.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// Forgets everything written after the last barrier, as a power cut
    /// would.
    pub fn crash(&self) {
        let mut s = self.state();
        s.objects = s.durable.clone();
    }

    /// Replaces an object's bytes behind the tool's back (damage a test
    /// wants to see detected).
    pub fn corrupt(&self, name: &str, bytes: &[u8]) {
        if let Some(o) = self.state().objects.get_mut(name) {
            o.bytes = bytes.to_vec();
        }
    }

    fn not_found(&self, action: &'static str, name: &str) -> StoreError {
        StoreError::new(action, self.place(name), io::ErrorKind::NotFound.into())
    }

    /// Stores `bytes` create-only, applying the fault armed for this write.
    fn store(&self, name: &str, bytes: Vec<u8>) -> Result<Committed> {
        let mut s = self.state();
        s.writes += 1;
        let n = s.writes;
        let fault = s.faults.iter().copied().find(|f| match f {
            Fault::FailWrite(k) | Fault::TearWrite(k) | Fault::FailCommitAfterData(k) => *k == n,
        });
        let injected = |what: &str| {
            StoreError::new(
                "write",
                self.place(name),
                io::Error::other(format!("injected fault: {what}")),
            )
        };
        if matches!(fault, Some(Fault::FailWrite(_))) {
            return Err(injected("write failed"));
        }
        if s.objects.contains_key(name) {
            return Ok(Committed::Existed);
        }
        let keep = match fault {
            Some(Fault::TearWrite(_)) => bytes.len() / 2,
            _ => bytes.len(),
        };
        let object = Object {
            bytes: bytes[..keep].to_vec(),
            modified: SystemTime::now(),
        };
        s.objects.insert(name.to_owned(), object);
        match fault {
            Some(Fault::TearWrite(_)) => Err(injected("torn write")),
            Some(Fault::FailCommitAfterData(_)) => {
                Err(injected("commit failed after the data was stored"))
            }
            _ => Ok(Committed::Created),
        }
    }
}

impl Store for MemoryStore {
    fn location(&self) -> &Location {
        &self.location
    }

    fn place(&self, name: &str) -> String {
        format!("{}/{name}", self.location)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .state()
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| ObjectMeta {
                name: k.clone(),
                size: o.bytes.len() as u64,
                modified: o.modified,
            })
            .collect())
    }

    fn stat(&self, name: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.state().objects.get(name).map(|o| ObjectMeta {
            name: name.to_owned(),
            size: o.bytes.len() as u64,
            modified: o.modified,
        }))
    }

    fn open(&self, name: &str) -> Result<ObjectReader> {
        let bytes = self.read(name)?;
        Ok(Box::new(Cursor::new(bytes)))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        match self.state().objects.get(name) {
            Some(o) => Ok(o.bytes.clone()),
            None => Err(self.not_found("read", name)),
        }
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let s = self.state();
        let o = s
            .objects
            .get(name)
            .ok_or_else(|| self.not_found("read", name))?;
        let start = (offset as usize).min(o.bytes.len());
        let end = start.saturating_add(len as usize).min(o.bytes.len());
        Ok(o.bytes[start..end].to_vec())
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject + '_>> {
        check_name(name).map_err(|e| StoreError::new("use", name, e))?;
        Ok(Box::new(MemoryObject {
            store: self,
            name: name.to_owned(),
            bytes: Vec::new(),
        }))
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<Committed> {
        check_name(name).map_err(|e| StoreError::new("use", name, e))?;
        self.store(name, bytes.to_vec())
    }

    fn rename_new(&self, from: &str, to: &str) -> Result<bool> {
        check_name(to).map_err(|e| StoreError::new("use", to, e))?;
        let mut s = self.state();
        if s.objects.contains_key(to) {
            return Ok(false);
        }
        let object = s
            .objects
            .remove(from)
            .ok_or_else(|| self.not_found("rename", from))?;
        s.objects.insert(to.to_owned(), object);
        Ok(true)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.state().objects.remove(name);
        Ok(())
    }

    fn touch(&self, name: &str) -> Result<()> {
        match self.state().objects.get_mut(name) {
            Some(o) => {
                o.modified = SystemTime::now();
                Ok(())
            }
            None => Err(self.not_found("touch", name)),
        }
    }

    fn barrier(&self) -> Result<()> {
        let mut s = self.state();
        s.durable = s.objects.clone();
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Leftover>> {
        Ok(Vec::new())
    }

    fn remove_leftover(&self, _: &Leftover) -> Result<()> {
        Ok(())
    }
}

struct MemoryObject<'s> {
    store: &'s MemoryStore,
    name: String,
    bytes: Vec<u8>,
}

impl Write for MemoryObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for MemoryObject<'_> {
    fn commit(self: Box<Self>) -> Result<Committed> {
        let this = *self;
        this.store.store(&this.name, this.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        super::super::conformance::run_all(&MemoryStore::named("t"));
    }

    #[test]
    fn faults_fire_on_the_nth_write_only() {
        let s = MemoryStore::named("t");
        s.inject(Fault::FailWrite(2));
        s.inject(Fault::TearWrite(3));
        s.inject(Fault::FailCommitAfterData(4));
        assert_eq!(s.put_new("a", b"1111").unwrap(), Committed::Created);
        assert!(s.put_new("b", b"2222").is_err());
        assert!(
            s.stat("b").unwrap().is_none(),
            "a failed write stores nothing"
        );
        assert!(s.put_new("c", b"3333").is_err());
        assert_eq!(s.read("c").unwrap(), b"33", "a torn write leaves half");
        let mut o = s.create("d").unwrap();
        o.write_all(b"4444").unwrap();
        assert!(o.commit().is_err());
        assert_eq!(
            s.read("d").unwrap(),
            b"4444",
            "stored although reported failed"
        );
        assert_eq!(s.put_new("e", b"5").unwrap(), Committed::Created);
    }

    #[test]
    fn crash_loses_what_came_after_the_barrier() {
        let s = MemoryStore::named("t");
        let _ = s.put_new("kept", b"x").unwrap();
        s.barrier().unwrap();
        let _ = s.put_new("lost", b"y").unwrap();
        s.crash();
        assert!(s.stat("kept").unwrap().is_some());
        assert!(s.stat("lost").unwrap().is_none());
    }
}
