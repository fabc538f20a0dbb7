//! Library operations: one function per command, each taking an options
//! struct, so every face (the CLI, a web GUI, a mount) runs the same code.
//! The decisions live here once: which snapshot `--back` means, when prune
//! may remove anything, in which order check works, where a rescued
//! snapshot directory's repository is. Faces parse, resolve names and
//! present; they never print from here.

pub mod archive;
pub mod attach;
pub mod backup;
pub mod browse;
pub mod check;
pub mod copy;
pub mod diff;
pub mod find;
pub mod forget;
pub mod housekeeping;
pub mod import;
pub mod mount;
pub mod original;
pub mod overview;
pub mod restore;
pub mod schedule;
pub mod source;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Name};
use crate::content::{Access, ContentError, LockHolder, LockWait, Repository};
use crate::setup::SetupError;
use crate::snapshot::ArchiveError;
use crate::snapshot::forget::PolicyError;
use crate::snapshot::format::SnapshotError;
use crate::snapshot::retrieve::RetrieveError;
use crate::snapshot::spec::SpecError;
use crate::store::{Location, SharedStore, StoreError};

pub use source::Source;

/// Errors of library operations, for faces to show (one sentence each)
/// or branch on.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "archive `{0}` stores no retention policy and no --keep-* rule was given: give rules (e.g. --keep-daily 7 --keep-weekly 4), or store them with `epygibus policy -A {0} --keep-daily 7 --keep-weekly 4`"
    )]
    NoPolicy(Name),
    #[error(
        "archive `{name}` is attached read-only: it was made by {made_by}. To continue its series from this machine, run `epygibus attach --location={location} -A {name} --adopt`; to back this machine up separately, create an archive of its own with `epygibus new`"
    )]
    ReadOnlyArchive {
        name: Name,
        made_by: String,
        location: String,
    },
    #[error(
        "archive `{name}` is backed up from {owner} now (its spec copy {place} says so), so this machine no longer writes to it; to continue it from this machine instead, run `epygibus attach --location={location} -A {name} --adopt`"
    )]
    OwnedElsewhere {
        name: Name,
        owner: String,
        place: String,
        location: String,
    },
    #[error(
        "{0} holds no `epygibus.d` directory, so it is not an epygibus backup location (is the disk mounted?); nothing was changed"
    )]
    NotABackupLocation(PathBuf),
    #[error("{}; nothing was changed", .0.join("; "))]
    AttachRefused(Vec<String>),
    #[error(
        "nothing was pruned, because not every snapshot using the repository could be read: {}{hint}",
        .why.join("; ")
    )]
    PruneIncomplete {
        why: Vec<String>,
        /// The way out, from `; ` on (empty when there is none to name).
        hint: String,
    },
    #[error(
        "{reason}; to set it aside (renamed to <name>.damaged and kept) run `epygibus del -A {archive} --snapshot {stamp} --force`, or `epygibus check -A {archive} --repair`, which also salvages what can still be read"
    )]
    DamagedSnapshot {
        archive: Name,
        stamp: String,
        reason: String,
    },
    #[error("archive `{archive}` has no snapshot {stamp} (see `epygibus lss -A {archive}`)")]
    NoSuchSnapshot { archive: Name, stamp: String },
    #[error(
        "refusing to lower counts: some registered snapshot directories or snapshots could not be read (listed below with a plain check)"
    )]
    LowerCountsIncomplete,
    #[error(
        "the repository of these snapshots (`{name}`, last at {last_at}) cannot be found; mount it there or next to the snapshot directory"
    )]
    RepositoryNotFound { name: String, last_at: String },
    #[error("snapshot directory {0} does not exist")]
    NoSnapshotDir(PathBuf),
    #[error("{0} holds no snapshots")]
    EmptySnapshotDir(Location),
    #[error("{path} is a symlink to {target} in snapshot {snapshot}")]
    IsSymlink {
        path: PathBuf,
        target: String,
        snapshot: String,
    },
    #[error("{path} is not a directory in snapshot {snapshot}")]
    NotADirectory { path: PathBuf, snapshot: String },
    #[error("{path} is not in snapshot {snapshot}")]
    NotInSnapshot { path: PathBuf, snapshot: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = OpError> = std::result::Result<T, E>;

/// Told once that a run waits for another's lock.
pub type OnLockWait = std::sync::Arc<dyn Fn(&LockHolder) + Send + Sync>;

/// How long to wait for a locked repository, and whom to tell.
#[derive(Clone)]
pub struct LockSettings {
    pub timeout: Duration,
    /// Called once when the wait has lasted a few seconds.
    pub on_wait: Option<OnLockWait>,
}

/// What every operation needs: the configuration, the lock policy and
/// where keys of encrypted repositories come from.
#[derive(Clone)]
pub struct Context {
    pub config: crate::config::Config,
    pub lock: LockSettings,
    pub keys: crate::crypt::Keyring,
}

impl Context {
    fn lock_wait(&self) -> LockWait<'_> {
        LockWait {
            timeout: self.lock.timeout,
            on_wait: self
                .lock
                .on_wait
                .as_deref()
                .map(|f| f as &dyn Fn(&LockHolder)),
            notice_after: Duration::from_secs(3),
        }
    }

    /// Opens repository `name` for reading (no lock).
    pub fn open_repo_read_only(&self, name: &str) -> Result<(Name, Repository)> {
        let name: Name = name.parse()?;
        let spec = self.config.repo(&name)?;
        Ok((
            name,
            Repository::open_with(store_at(&spec.location), Access::ReadOnly, &self.keys)?,
        ))
    }

    /// Opens repository `name` holding its lock for `command`.
    pub fn open_repo_locked(&self, name: &str, command: &str) -> Result<(Name, Repository)> {
        let name: Name = name.parse()?;
        let spec = self.config.repo(&name)?;
        let repo = self.lock_at(&spec.location, command)?;
        Ok((name, repo))
    }

    fn lock_at(&self, location: &Location, command: &str) -> Result<Repository> {
        Ok(Repository::open_with(
            store_at(location),
            Access::Locked {
                command,
                wait: self.lock_wait(),
            },
            &self.keys,
        )?)
    }
}

/// The store of a directory location.
pub fn dir_store(dir: &std::path::Path) -> SharedStore {
    crate::store::open(&Location::Dir(dir.to_owned()))
}

/// The store of a location (a directory or an S3 bucket).
pub fn store_at(location: &Location) -> SharedStore {
    crate::store::open(location)
}
