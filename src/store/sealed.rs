//! The snapshot directory of an archive whose repository is encrypted:
//! every object (snapshots, spec copies, set-aside damaged snapshots) is
//! an age file encrypted to the repository key, stored under its name plus
//! `.age`. Above this store the snapshot code reads and writes plain
//! names and bytes, as for any directory, so nothing it writes can reach
//! the disk unencrypted; below it the objects are ordinary files a person
//! opens with `age -d -i KEY FILE`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::{
    Committed, Leftover, Location, NewObject, ObjectMeta, ObjectReader, Result, SharedStore, Store,
    StoreError,
};
use crate::crypt::{RepoKey, SealedWriter};

/// The suffix of every object in a sealed store.
pub const SEALED_SUFFIX: &str = ".age";

/// A store whose objects are sealed with a repository key.
pub struct SealedStore {
    inner: SharedStore,
    key: Arc<RepoKey>,
}

impl SealedStore {
    pub fn new(inner: SharedStore, key: Arc<RepoKey>) -> SealedStore {
        SealedStore { inner, key }
    }

    /// The key objects are sealed with.
    pub fn key(&self) -> &Arc<RepoKey> {
        &self.key
    }
}

/// `store` sealed with `key` when there is one (an encrypted repository's
/// archive), else `store` as it is.
pub fn seal_if(store: SharedStore, key: Option<&Arc<RepoKey>>) -> SharedStore {
    match key {
        Some(key) => Arc::new(SealedStore::new(store, key.clone())),
        None => store,
    }
}

fn sealed(name: &str) -> String {
    format!("{name}{SEALED_SUFFIX}")
}

/// True when a store listing holds sealed objects (an encrypted archive's
/// snapshot directory seen without its key).
pub fn holds_sealed(store: &dyn Store) -> Result<bool> {
    Ok(store
        .list("")?
        .iter()
        .any(|m| !m.name.contains('/') && m.name.ends_with(SEALED_SUFFIX)))
}

fn unsealed(meta: ObjectMeta) -> Option<ObjectMeta> {
    let name = meta.name.strip_suffix(SEALED_SUFFIX)?.to_owned();
    Some(ObjectMeta { name, ..meta })
}

struct SealedObject<'s> {
    writer: SealedWriter<Box<dyn NewObject + 's>>,
    place: String,
}

impl Write for SealedObject<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl NewObject for SealedObject<'_> {
    fn commit(self: Box<Self>) -> Result<Committed> {
        let SealedObject { writer, place } = *self;
        let inner = writer
            .finish()
            .map_err(|e| StoreError::new("write", place, e))?;
        inner.commit()
    }
}

impl Store for SealedStore {
    fn location(&self) -> &Location {
        self.inner.location()
    }

    fn place(&self, name: &str) -> String {
        self.inner.place(&sealed(name))
    }

    /// Only sealed objects, under their plain names.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .inner
            .list(prefix)?
            .into_iter()
            .filter_map(unsealed)
            .collect())
    }

    fn stat(&self, name: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.inner.stat(&sealed(name))?.and_then(unsealed))
    }

    /// Decrypts as it reads: a damaged or foreign object is an
    /// `InvalidData` error naming it, at the first bad chunk.
    fn open(&self, name: &str) -> Result<ObjectReader> {
        let object = self.inner.open(&sealed(name))?;
        let place = self.place(name);
        crate::crypt::open_reader(&self.key, object, &place)
            .map(|r| -> ObjectReader { Box::new(NamedErrors { inner: r }) })
            .map_err(|e| {
                StoreError::new(
                    "decrypt",
                    place,
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                )
            })
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.read(name)?;
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let to = from
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(all.len());
        Ok(all[from..to].to_vec())
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject + '_>> {
        let place = self.place(name);
        let object = self.inner.create(&sealed(name))?;
        let writer = self
            .key
            .seal_to(object)
            .map_err(|e| StoreError::new("write", place.clone(), e))?;
        Ok(Box::new(SealedObject { writer, place }))
    }

    fn rename_new(&self, from: &str, to: &str) -> Result<bool> {
        self.inner.rename_new(&sealed(from), &sealed(to))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(&sealed(name))
    }

    fn touch(&self, name: &str) -> Result<()> {
        self.inner.touch(&sealed(name))
    }

    fn barrier(&self) -> Result<()> {
        self.inner.barrier()
    }

    fn flushing_while(&self, work: &mut dyn FnMut()) {
        self.inner.flushing_while(work)
    }

    fn leftovers(&self) -> Result<Vec<Leftover>> {
        self.inner.leftovers()
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        self.inner.remove_leftover(leftover)
    }

    fn is_sealed(&self) -> bool {
        true
    }
}

/// Decryption errors reach readers as `InvalidData` (a damaged file), not
/// as some other kind a caller might retry.
struct NamedErrors {
    inner: Box<dyn Read + Send>,
}

impl Read for NamedErrors {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                io::Error::new(io::ErrorKind::InvalidData, e.to_string())
            }
            _ => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn sealed_store_passes_the_conformance_suite_and_hides_plaintext() {
        use crate::store::conformance as c;
        let inner: SharedStore = Arc::new(MemoryStore::named("s"));
        let store = SealedStore::new(inner.clone(), Arc::new(RepoKey::generate()));
        // All of it but the checks of listed and stat sizes: a sealed
        // store reports the sizes of the encrypted objects.
        c::create_only_never_replaces(&store);
        c::streamed_write_appears_only_on_commit(&store);
        c::range_reads(&store);
        c::rename_new_never_replaces(&store);
        c::missing_objects_are_not_found(&store);
        c::barrier_and_leftovers(&store);
        for name in ["ls/a/1", "ls/ab", "lsx"] {
            let _ = store.put_new(name, name.as_bytes()).unwrap();
        }
        let mut names: Vec<String> = store
            .list("ls/")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, ["ls/a/1", "ls/ab"]);
        let _ = inner.put_new("ls/plain", b"not sealed").unwrap();
        assert_eq!(
            store.list("ls/").unwrap().len(),
            2,
            "plain objects are not listed"
        );
        assert!(store.stat("lsx").unwrap().is_some());
        let _ = store
            .put_new("2024-01-01-00-00-00.gz", b"secret marker")
            .unwrap();
        assert_eq!(
            store.read("2024-01-01-00-00-00.gz").unwrap(),
            b"secret marker"
        );
        let raw = inner.read("2024-01-01-00-00-00.gz.age").unwrap();
        assert!(raw.starts_with(b"age-encryption.org/v1"));
        assert!(!raw.windows(6).any(|w| w == b"marker"));
        assert!(holds_sealed(inner.as_ref()).unwrap());
        // A foreign key reads nothing.
        let other = SealedStore::new(inner, Arc::new(RepoKey::generate()));
        let err = other.read("2024-01-01-00-00-00.gz").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
