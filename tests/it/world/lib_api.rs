//! Every use the integration tests make of the epygibus library's storage
//! functions, as path-based helpers over the storage interface: reading
//! snapshot directories and repositories, and storing content (which has
//! no command). Only this file knows how the library reaches its bytes.
//!
//! The data types (`Snapshot`, `SnapshotName`, `DirNode`, `Node`,
//! `ContentToken`…) and their own methods are used directly elsewhere;
//! nothing outside this file calls `format::…` or `Repository`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use epygibus::content::{Access, ContentToken, LockWait, Repository};
use epygibus::snapshot::format::{self, Snapshot, SnapshotName};
use epygibus::store::LocalStore;

/// The snapshots in a snapshot directory, oldest first.
pub fn list_snapshots(dir: &Path) -> Vec<SnapshotName> {
    format::list_snapshots(&LocalStore::new(dir))
        .unwrap_or_else(|e| panic!("cannot list the snapshots in {}: {e}", dir.display()))
}

/// A snapshot, decoded; fails the test if it does not decode.
pub fn read_snapshot(dir: &Path, name: &SnapshotName) -> Snapshot {
    try_read_snapshot(dir, name)
        .unwrap_or_else(|e| panic!("snapshot {} does not decode: {e}", name.stamp()))
}

/// A snapshot, decoded, or why it cannot be.
pub fn try_read_snapshot(dir: &Path, name: &SnapshotName) -> Result<Snapshot, String> {
    format::read_snapshot(&LocalStore::new(dir), name).map_err(|e| e.to_string())
}

/// The file a snapshot is stored in.
pub fn snapshot_path(dir: &Path, name: &SnapshotName) -> PathBuf {
    dir.join(name.file_name())
}

/// Decodes the bytes of a snapshot file that would be at `path`.
pub fn decode_snapshot(bytes: &[u8], path: &Path) -> Snapshot {
    format::decode(bytes, &path.display().to_string())
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
}

fn open_read_only(repo: &Path) -> Repository {
    Repository::open_dir(repo, Access::ReadOnly)
        .unwrap_or_else(|e| panic!("cannot open repository {}: {e}", repo.display()))
}

fn open_locked(repo: &Path) -> Repository {
    Repository::open_dir(
        repo,
        Access::Locked {
            command: "test",
            wait: LockWait::no_wait(),
        },
    )
    .unwrap_or_else(|e| panic!("cannot lock repository {}: {e}", repo.display()))
}

/// The repository's reference counts, read without a lock.
pub fn ref_counts(repo: &Path) -> HashMap<ContentToken, u64> {
    open_read_only(repo).ref_counts()
}

/// A content item's bytes, read without a lock.
pub fn read_content(repo: &Path, token: &ContentToken) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    open_read_only(repo)
        .open_contents_read_only(token)
        .map_err(|e| e.to_string())?
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    Ok(data)
}

/// How many bytes the content item takes on disk.
pub fn stored_size(repo: &Path, token: &ContentToken) -> u64 {
    open_read_only(repo)
        .content_storage_stats(token)
        .unwrap_or_else(|| panic!("{} is not in {}", token.to_hex(), repo.display()))
        .0
}

/// Stores the files (one reference each) under the repository's lock and
/// commits; the lock is released on return.
pub fn store(repo: &Path, files: &[&Path]) -> Vec<ContentToken> {
    let r = open_locked(repo);
    let session = r.begin_backup();
    let tokens = files
        .iter()
        .map(|f| {
            session
                .store_contents(f)
                .unwrap_or_else(|e| panic!("cannot store {}: {e}", f.display()))
        })
        .collect();
    session.commit_counts().unwrap().snapshot_written().unwrap();
    tokens
}

/// Releases one reference of each token and commits; returns how many
/// tokens had no reference left to release.
pub fn release(repo: &Path, tokens: &[ContentToken]) -> u64 {
    let r = open_locked(repo);
    let n = r.release_contents(tokens);
    r.commit().unwrap();
    n
}

/// The pack file holding the item, or None when it is a loose file.
pub fn pack_of(repo: &Path, token: &ContentToken) -> Option<PathBuf> {
    let r = open_read_only(repo);
    let entry = r
        .items()
        .into_iter()
        .find(|(t, _)| t == token)
        .unwrap_or_else(|| panic!("{} is not in {}", token.to_hex(), repo.display()))
        .1;
    r.pack_of(&entry).map(|p| {
        repo.join(epygibus::content::PACK_DIR)
            .join(format!("{p}.zip"))
    })
}

/// The store at `location` (a directory or `s3://…`), an S3 one reaching
/// its server with `vars` in place of the environment.
pub fn store_at(location: &str, vars: &HashMap<String, String>) -> epygibus::store::SharedStore {
    match epygibus::store::Location::parse(std::ffi::OsStr::new(location)) {
        Ok(epygibus::store::Location::S3(at)) => {
            std::sync::Arc::new(epygibus::store::S3Store::with_vars(&at, vars))
        }
        Ok(other) => epygibus::store::open(&other),
        Err(e) => panic!("bad location {location}: {e}"),
    }
}

/// Runs the storage interface's conformance suite on the (empty) store at
/// `location`.
pub fn run_conformance(location: &str, vars: &HashMap<String, String>) {
    epygibus::store::conformance::run_all(store_at(location, vars).as_ref());
}

/// Where things are, for the helpers below: a directory or `s3://…`
/// location and the variables an S3 store reaches its server with.
pub struct At<'a> {
    pub location: &'a str,
    pub vars: &'a HashMap<String, String>,
}

impl At<'_> {
    fn store(&self) -> epygibus::store::SharedStore {
        store_at(self.location, self.vars)
    }

    fn repo(&self) -> Repository {
        Repository::open(self.store(), Access::ReadOnly)
            .unwrap_or_else(|e| panic!("cannot open repository {}: {e}", self.location))
    }

    /// A repository's reference counts, read without a lock.
    pub fn ref_counts(&self) -> HashMap<ContentToken, u64> {
        self.repo().ref_counts()
    }

    /// A content item's bytes, read without a lock.
    pub fn read_content(&self, token: &ContentToken) -> Result<Vec<u8>, String> {
        let mut data = Vec::new();
        self.repo()
            .open_contents_read_only(token)
            .map_err(|e| e.to_string())?
            .read_to_end(&mut data)
            .map_err(|e| e.to_string())?;
        Ok(data)
    }

    /// Every snapshot of a snapshot directory, decoded, oldest first.
    pub fn snapshots(&self) -> Vec<(SnapshotName, Snapshot)> {
        let store = self.store();
        format::list_snapshots(store.as_ref())
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", self.location))
            .into_iter()
            .map(|n| {
                let s = format::read_snapshot(store.as_ref(), &n)
                    .unwrap_or_else(|e| panic!("snapshot {} does not decode: {e}", n.stamp()));
                (n, s)
            })
            .collect()
    }

    /// Names of the objects below the location (leftovers not included).
    pub fn objects(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .store()
            .list(prefix)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", self.location))
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        names
    }

    /// An object's bytes, as any S3 client would fetch them.
    pub fn object(&self, name: &str) -> Vec<u8> {
        self.store()
            .read(name)
            .unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
    }

    /// Leftovers (unfinished uploads, temp objects, stray markers).
    pub fn leftovers(&self) -> Vec<String> {
        self.store()
            .leftovers()
            .unwrap_or_else(|e| panic!("cannot list leftovers of {}: {e}", self.location))
            .into_iter()
            .map(|l| l.name)
            .collect()
    }
}
