//! Finding snapshots and their repository: through an archive's spec, or
//! from a snapshot directory alone when the configuration is lost (the
//! rescue): its snapshots say where their repository was, absolutely and
//! relative to the snapshot directory.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Context, OpError, Result, store_at};
use crate::config::{ArchiveSpec, Attachment, Name};
use crate::content::{Access, ContentError, LockError, Repository};
use crate::snapshot::format::{self, RepoRef, Snapshot, SnapshotName};
use crate::snapshot::select;
use crate::snapshot::spec;
use crate::store::{Location, SharedStore};

/// Which snapshots a command works on.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// A configured archive.
    Archive(String),
    /// A snapshot directory (or `s3://` location), without configuration.
    SnapshotDir(Location),
}

impl SourceSpec {
    /// The snapshot directory when it holds the original epygibus's
    /// snapshots (read by [`super::original`], not by [`Source`]).
    pub fn original_dir(&self) -> Option<&Path> {
        match self {
            SourceSpec::SnapshotDir(Location::Dir(dir)) if crate::legacy::is_original_dir(dir) => {
                Some(dir)
            }
            _ => None,
        }
    }
}

/// A configured archive with its snapshot store.
pub struct Archive {
    pub spec: ArchiveSpec,
    pub snapshots: SharedStore,
    /// Whether this machine made it, reads it only, or adopted it.
    pub attachment: Attachment,
}

/// Reads an archive's spec by name and opens its snapshot directory.
pub fn archive(ctx: &Context, name: &str) -> Result<Archive> {
    let name: Name = name.parse()?;
    let spec = ctx.config.archive(&name)?;
    let attachment = ctx.config.archive_attachment(&name)?;
    let snapshots = store_at(&spec.snapshot_dir);
    Ok(Archive {
        spec,
        snapshots,
        attachment,
    })
}

/// The backup location holding a snapshot directory
/// (`<location>/epygibus.d/snapshots/<host>/<user>/<archive>`), for
/// messages that suggest a command; the directory itself if it is not
/// laid out so.
pub fn location_of(snapshot_dir: &Location) -> String {
    let Location::Dir(snapshot_dir) = snapshot_dir else {
        let up = snapshot_dir.join("../../../../..");
        let laid_out = snapshot_dir.to_string().contains("/epygibus.d/snapshots/");
        return if laid_out { up } else { snapshot_dir.clone() }.to_string();
    };
    let up = |n: usize| snapshot_dir.ancestors().nth(n);
    let named = |n: usize, name: &str| up(n).and_then(Path::file_name) == Some(OsStr::new(name));
    match up(5) {
        Some(location) if named(3, "snapshots") && named(4, "epygibus.d") => {
            location.display().to_string()
        }
        _ => snapshot_dir.display().to_string(),
    }
}

impl Archive {
    /// The snapshots, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotName>> {
        Ok(format::list_snapshots(self.snapshots.as_ref())?)
    }

    /// Opens the archive's repository holding its lock for `command`, to
    /// change this archive (back up, delete or convert snapshots): refused
    /// for an archive attached read-only.
    pub fn lock_repo(&self, ctx: &Context, command: &str) -> Result<Repository> {
        self.check_writable()?;
        let repo = ctx.config.repo(&self.spec.repo)?;
        ctx.lock_at(&repo.location, command)
    }

    /// Err when this machine may only read the archive: another host's,
    /// attached without `--adopt`, or one whose spec copy beside the
    /// snapshots says another host backs up into it now (it adopted the
    /// archive; one series has one writer). A copy that cannot be read
    /// decides nothing here.
    pub fn check_writable(&self) -> Result<()> {
        let location = || location_of(&self.spec.snapshot_dir);
        if let Attachment::ReadOnly { made_by } = &self.attachment {
            return Err(OpError::ReadOnlyArchive {
                name: self.spec.name.clone(),
                made_by: made_by.clone(),
                location: location(),
            });
        }
        let store = self.snapshots.as_ref();
        if let Ok(found) = spec::read(store)
            && let Some((generation, copy)) = &found.newest
            && copy.host != crate::fsio::host_name()
        {
            return Err(OpError::OwnedElsewhere {
                name: self.spec.name.clone(),
                owner: format!("{}@{}", copy.user, copy.host),
                place: store.place(&spec::generation_name(*generation)),
                location: location(),
            });
        }
        Ok(())
    }

    /// Picks a snapshot by `--back` (see [`select`]).
    pub fn select(&self, back: i64) -> Result<SnapshotName> {
        Ok(select(&self.list()?, back, self.snapshots.location())?)
    }
}

/// A snapshot directory and the repository its snapshots use.
pub struct Source {
    pub snapshots: SharedStore,
    /// Err when the repository cannot be found; reported only when
    /// content is needed (listings work without it).
    repo_dir: std::result::Result<Location, String>,
}

impl Source {
    pub fn resolve(ctx: &Context, spec: &SourceSpec) -> Result<Source> {
        match spec {
            SourceSpec::Archive(name) => {
                let a = archive(ctx, name)?;
                let repo_dir = ctx
                    .config
                    .repo(&a.spec.repo)
                    .map(|r| r.location)
                    .map_err(|e| e.to_string());
                Ok(Source {
                    snapshots: a.snapshots,
                    repo_dir,
                })
            }
            SourceSpec::SnapshotDir(dir) => {
                if let Location::Dir(d) = dir
                    && !d.is_dir()
                {
                    return Err(OpError::NoSnapshotDir(d.clone()));
                }
                let snapshots = store_at(dir);
                let names = format::list_snapshots(snapshots.as_ref())?;
                if names.is_empty() {
                    return Err(OpError::EmptySnapshotDir(snapshots.location().clone()));
                }
                // The newest header that reads: a damaged newest snapshot
                // must not hide where the repository is.
                let mut headers = names
                    .iter()
                    .rev()
                    .map(|n| format::read_header(snapshots.as_ref(), n));
                let first = headers.next().expect("not empty");
                let header = match first {
                    Ok(h) => h,
                    Err(e) => headers.find_map(|h| h.ok()).ok_or(e)?,
                };
                let repo_dir = find_repo(dir, &header.repo).map_err(|e| e.to_string());
                Ok(Source {
                    snapshots,
                    repo_dir,
                })
            }
        }
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotName>> {
        Ok(format::list_snapshots(self.snapshots.as_ref())?)
    }

    /// The snapshot `back` selects, decoded.
    pub fn pick(&self, back: i64) -> Result<(SnapshotName, Snapshot)> {
        let names = self.snapshots()?;
        let name = select(&names, back, self.snapshots.location())?;
        Ok((name, format::read_snapshot(self.snapshots.as_ref(), &name)?))
    }

    fn repo_dir(&self) -> Result<&Location> {
        self.repo_dir
            .as_ref()
            .map_err(|e| OpError::Invalid(e.clone()))
    }

    /// Opens the repository for statistics only.
    pub fn open_repo_read_only(&self) -> Result<Repository> {
        Ok(Repository::open(
            store_at(self.repo_dir()?),
            Access::ReadOnly,
        )?)
    }

    /// Opens the repository holding its lock, so no delete or prune
    /// removes content while it is read; read-only media are used without
    /// the lock.
    pub fn open_repo(&self, ctx: &Context, command: &str) -> Result<Repository> {
        let dir = self.repo_dir()?;
        match ctx.lock_at(dir, command) {
            Err(OpError::Content(ContentError::Lock(LockError::Io(e))))
                if matches!(
                    e.source.raw_os_error(),
                    Some(libc::EROFS) | Some(libc::EACCES)
                ) =>
            {
                Ok(Repository::open(store_at(dir), Access::ReadOnly)?)
            }
            other => other,
        }
    }
}

/// The repository a snapshot names: first relative to the snapshot
/// directory (the disk may be mounted elsewhere now, the prefix copied to
/// another bucket), then where it was.
pub fn find_repo(snapshot_dir: &Location, repo: &RepoRef) -> Result<Location> {
    let absolute = Location::from_bytes(&repo.path);
    let mut candidates = Vec::new();
    if !repo.relative.is_empty() {
        match snapshot_dir {
            Location::Dir(d) => candidates.push(Location::Dir(crate::fsio::clean_path(
                &d.join(OsStr::from_bytes(&repo.relative)),
            ))),
            other => candidates.push(other.join(&String::from_utf8_lossy(&repo.relative))),
        }
    }
    candidates.extend(absolute.clone());
    for candidate in candidates {
        let holds_repo = match &candidate {
            Location::Dir(d) => d.join("format").is_file(),
            other => store_at(other).stat("format").is_ok_and(|m| m.is_some()),
        };
        if holds_repo {
            return Ok(candidate);
        }
    }
    Err(OpError::RepositoryNotFound {
        name: repo.name.clone(),
        last_at: String::from_utf8_lossy(&repo.path).into_owned(),
    })
}
