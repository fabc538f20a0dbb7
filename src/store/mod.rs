//! The storage interface: the one seam between epygibus and where its
//! bytes live (a directory on a local disk, an SMB share or an exFAT USB
//! drive; memory in tests; later an object store).
//!
//! Objects are named relative to the store's root (`content/ab/ab12….gz`,
//! `index.000000000007`), never by paths, and every operation is one that
//! both a directory on a hostile file system and an S3 bucket can honour.
//! Above this interface the repository and snapshot code keep the safety
//! rules (docs/design.md); below it, "never replace an existing object" is
//! true by construction: there is no way to ask for it.

pub mod local;
pub mod memory;
pub mod s3;
pub mod sealed;

#[doc(hidden)]
pub mod conformance;

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use local::LocalStore;
pub use memory::{Fault, MemoryStore};
pub use s3::{S3Location, S3Store};
pub use sealed::SealedStore;

/// Where a store keeps its objects, for messages and for finding things
/// relative to each other (a snapshot directory's repository).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A directory of a mounted file system.
    Dir(PathBuf),
    /// An in-memory store (tests), named for messages.
    Memory(String),
    /// A key prefix in an S3 bucket, `s3://BUCKET/PREFIX`.
    S3(S3Location),
}

impl Location {
    /// The directory, for stores that are one.
    pub fn as_dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(p) => Some(p),
            Location::Memory(_) | Location::S3(_) => None,
        }
    }

    /// A location as a user types it (`--location`) or a spec file holds
    /// it: `s3://BUCKET/PREFIX`, else a directory.
    pub fn parse(text: &std::ffi::OsStr) -> std::result::Result<Location, String> {
        match text.to_str() {
            Some(t) if t.starts_with("s3://") => S3Location::parse(t).map(Location::S3),
            _ => Ok(Location::Dir(PathBuf::from(text))),
        }
    }

    /// The location of `rel` (`/`-separated, may hold `..`) below this one.
    pub fn join(&self, rel: &str) -> Location {
        match self {
            Location::Dir(p) => Location::Dir(p.join(rel)),
            Location::Memory(name) => Location::Memory(format!("{name}/{rel}")),
            Location::S3(s) => Location::S3(s.join(rel)),
        }
    }

    /// The last component of the location (a directory's name).
    pub fn file_name(&self) -> Option<String> {
        match self {
            Location::Dir(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Memory(name) => name.rsplit('/').next().map(str::to_owned),
            Location::S3(s) => s
                .prefix
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        }
    }

    /// As recorded in snapshot headers and spec copies: a directory's path
    /// bytes (which need not be UTF-8), else the URL.
    pub fn to_bytes(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Location::Dir(p) => p.as_os_str().as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        }
    }

    /// Back from [`Location::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Location, String> {
        use std::os::unix::ffi::OsStrExt;
        Location::parse(std::ffi::OsStr::from_bytes(bytes))
    }

    /// `to` relative to `from` (`../../repos/u/r`), when both are in one
    /// place: the same file system tree or the same bucket.
    pub fn relative(from: &Location, to: &Location) -> Option<PathBuf> {
        match (from, to) {
            (Location::Dir(a), Location::Dir(b)) => Some(crate::fsio::relative_path(a, b)),
            (Location::S3(a), Location::S3(b)) if a.bucket == b.bucket => {
                let root = Path::new("/");
                Some(crate::fsio::relative_path(
                    &root.join(&a.prefix),
                    &root.join(&b.prefix),
                ))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(p) => write!(f, "{}", p.display()),
            Location::Memory(name) => write!(f, "memory:{name}"),
            Location::S3(s) => write!(f, "{s}"),
        }
    }
}

/// One object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Name relative to the store's root, `/`-separated.
    pub name: String,
    pub size: u64,
    /// Last modified or touched.
    pub modified: SystemTime,
}

/// What committing a create-only write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Committed {
    /// The object now exists with the bytes written.
    Created,
    /// An object of that name existed already; it was left as it was and
    /// the bytes written were dropped.
    Existed,
}

/// A failed store operation: what was being done to which object, and
/// the underlying error (its kind tells NotFound, no space, and so on).
#[derive(Debug, thiserror::Error)]
#[error("could not {action} {place}: {source}")]
pub struct StoreError {
    pub action: &'static str,
    /// The object's full location (a path for directory stores).
    pub place: String,
    #[source]
    pub source: io::Error,
}

impl StoreError {
    pub fn new(action: &'static str, place: impl Into<String>, source: io::Error) -> StoreError {
        StoreError {
            action,
            place: place.into(),
            source,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == io::ErrorKind::NotFound
    }

    /// The disk or quota is full: nothing more can be written.
    pub fn is_no_space(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        ) || self.kind() == io::ErrorKind::StorageFull
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Something an interrupted run left behind: a temp file of a directory
/// store, an unfinished upload of an object store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub name: String,
    pub modified: SystemTime,
    /// Made by a process of this host that is no longer running: it can
    /// only be a leftover, whatever its age.
    pub owner_dead: bool,
}

/// An object being written. Nothing is visible under its name until
/// [`NewObject::commit`]; dropped without commit, it leaves nothing.
pub trait NewObject: Write + Send {
    /// Makes the object visible under its name, complete, unless one of
    /// that name exists already (then nothing is replaced).
    fn commit(self: Box<Self>) -> Result<Committed>;
}

/// A reader of one object.
pub type ObjectReader = Box<dyn Read + Send>;

/// Where epygibus keeps objects. Every method is safe to call from many
/// threads at once.
pub trait Store: Send + Sync {
    fn location(&self) -> &Location;

    /// The full location of one object, for messages (a path for
    /// directory stores).
    fn place(&self, name: &str) -> String;

    /// Objects whose names start with `prefix` (`""`: all), in no
    /// particular order; leftovers are not listed.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// The object's size and time, or None when it does not exist.
    fn stat(&self, name: &str) -> Result<Option<ObjectMeta>>;

    /// A reader of the whole object (NotFound when absent).
    fn open(&self, name: &str) -> Result<ObjectReader>;

    /// `len` bytes from `offset` (fewer only at the end of the object).
    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;

    /// The whole object.
    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(name)?
            .read_to_end(&mut out)
            .map_err(|e| StoreError::new("read", self.place(name), e))?;
        Ok(out)
    }

    /// Starts a create-only write of `name` (its directories, for stores
    /// that have them, are made as needed). The object is durable after
    /// the next barrier.
    fn create(&self, name: &str) -> Result<Box<dyn NewObject + '_>>;

    /// Writes a whole small object create-only, durable when this returns
    /// (objects other runs read at once: index generations, snapshots,
    /// specs, locks).
    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<Committed> {
        let mut object = self.create(name)?;
        object
            .write_all(bytes)
            .map_err(|e| StoreError::new("write", self.place(name), e))?;
        object.commit()
    }

    /// Gives an object a new name that must not exist yet; returns false
    /// (and changes nothing) when it does. Used to set things aside, never
    /// to replace.
    fn rename_new(&self, from: &str, to: &str) -> Result<bool>;

    /// Removes an object; one that is already gone is not an error. The
    /// removal is durable after the next barrier.
    fn delete(&self, name: &str) -> Result<()>;

    /// Marks an object as just used (its modified time becomes now).
    fn touch(&self, name: &str) -> Result<()>;

    /// Returns once everything committed before is durable.
    fn barrier(&self) -> Result<()>;

    /// Runs `work` (which writes many objects), letting the store flush in
    /// the background meanwhile so the next barrier finds little to do.
    fn flushing_while(&self, work: &mut dyn FnMut()) {
        work()
    }

    /// Temp files or unfinished uploads interrupted runs left.
    fn leftovers(&self) -> Result<Vec<Leftover>>;

    /// Removes one leftover.
    fn remove_leftover(&self, leftover: &Leftover) -> Result<()>;

    /// True when every object is encrypted on its way down
    /// ([`SealedStore`]): an encrypted archive's snapshot directory.
    fn is_sealed(&self) -> bool {
        false
    }
}

/// Shared handle to a store.
pub type SharedStore = Arc<dyn Store>;

/// The store for a location.
pub fn open(location: &Location) -> SharedStore {
    match location {
        Location::Dir(p) => Arc::new(LocalStore::new(p)),
        Location::Memory(name) => Arc::new(MemoryStore::named(name)),
        Location::S3(at) => Arc::new(S3Store::new(at)),
    }
}

/// Checks an object name: relative, `/`-separated, no empty, `.` or `..`
/// component, no NUL. Names come from our own code, so a bad one is a bug.
pub fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a valid object name"),
        ));
    }
    Ok(())
}
