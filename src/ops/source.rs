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
use crate::crypt::RepoKey;
use crate::snapshot::format::{self, RepoRef, Snapshot, SnapshotName};
use crate::snapshot::select;
use crate::snapshot::spec;
use crate::store::sealed::seal_if;
use crate::store::{Location, SharedStore};
use std::sync::Arc;

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

/// A configured archive with its snapshot store (sealed when its
/// repository is encrypted).
pub struct Archive {
    pub spec: ArchiveSpec,
    pub snapshots: SharedStore,
    /// The repository key its snapshots are sealed with.
    pub key: Option<Arc<RepoKey>>,
    /// Whether this machine made it, reads it only, or adopted it.
    pub attachment: Attachment,
}

/// Reads an archive's spec by name and opens its snapshot directory.
pub fn archive(ctx: &Context, name: &str) -> Result<Archive> {
    let name: Name = name.parse()?;
    let spec = ctx.config.archive(&name)?;
    let attachment = ctx.config.archive_attachment(&name)?;
    let snapshots = store_at(&spec.snapshot_dir);
    let key = sealing_key(ctx, &spec, &snapshots)?;
    Ok(Archive {
        spec,
        snapshots: seal_if(snapshots, key.as_ref()),
        key,
        attachment,
    })
}

/// The key an archive's snapshots are sealed with: its repository's, when
/// that is encrypted. A repository that cannot be reached decides nothing
/// (listings work without it), unless the snapshots are sealed: then
/// nothing may be read or written without the key.
fn sealing_key(
    ctx: &Context,
    spec: &ArchiveSpec,
    snapshots: &SharedStore,
) -> Result<Option<Arc<RepoKey>>> {
    if let Ok(repo) = ctx.config.repo(&spec.repo) {
        match crate::content::repository_key(&store_at(&repo.location), &ctx.keys) {
            Ok(key) => return Ok(key),
            Err(ContentError::Crypt(e)) => return Err(ContentError::Crypt(e).into()),
            Err(_) => {}
        }
    }
    if crate::store::sealed::holds_sealed(snapshots.as_ref()).unwrap_or(false) {
        return Err(OpError::Invalid(format!(
            "the snapshots of archive `{}` are encrypted, and the key of its repository `{}` cannot be read; make the repository reachable (is its disk mounted?) and run the command again",
            spec.name, spec.repo
        )));
    }
    Ok(None)
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
    /// The key the snapshots are sealed with (an encrypted repository's).
    pub key: Option<Arc<RepoKey>>,
    /// Err when the repository cannot be found; reported only when
    /// content is needed (listings work without it).
    repo_dir: std::result::Result<Location, String>,
}

impl Source {
    pub fn resolve(ctx: &Context, spec: &SourceSpec) -> Result<Source> {
        match spec {
            SourceSpec::Archive(name) => {
                let a = archive(ctx, name)?;
                let key = a.key.clone();
                let repo_dir = ctx
                    .config
                    .repo(&a.spec.repo)
                    .map(|r| r.location)
                    .map_err(|e| e.to_string());
                Ok(Source {
                    snapshots: a.snapshots,
                    repo_dir,
                    key,
                })
            }
            SourceSpec::SnapshotDir(dir) => {
                if let Location::Dir(d) = dir
                    && !d.is_dir()
                {
                    return Err(OpError::NoSnapshotDir(d.clone()));
                }
                let raw = store_at(dir);
                let key = match crate::store::sealed::holds_sealed(raw.as_ref())? {
                    true => Some(sealed_repository_key(ctx, dir, &raw)?),
                    false => None,
                };
                let snapshots = seal_if(raw, key.as_ref());
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
                    key,
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
    pub fn open_repo_read_only(&self, ctx: &Context) -> Result<Repository> {
        Ok(Repository::open_with(
            store_at(self.repo_dir()?),
            Access::ReadOnly,
            &ctx.keys,
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
                Ok(Repository::open_with(
                    store_at(dir),
                    Access::ReadOnly,
                    &ctx.keys,
                )?)
            }
            other => other,
        }
    }
}

/// The key of a sealed snapshot directory found without configuration:
/// its snapshots name their repository only inside the encryption, so the
/// encrypted repositories of the same backup location
/// (`epygibus.d/repos/<user>/<name>` beside `epygibus.d/snapshots/…`)
/// are tried, each with the keys this run has, until one's key opens the
/// newest snapshot.
fn sealed_repository_key(ctx: &Context, dir: &Location, raw: &SharedStore) -> Result<Arc<RepoKey>> {
    let newest = raw
        .list("")?
        .into_iter()
        .filter_map(|m| {
            m.name
                .strip_suffix(crate::store::sealed::SEALED_SUFFIX)
                .map(str::to_owned)
        })
        .filter_map(|n| SnapshotName::parse(n.as_bytes()))
        .max_by_key(|n| n.secs);
    let repos = dir.join("../../../../repos");
    let mut last_error = None;
    for candidate in repository_dirs(&repos) {
        match crate::content::repository_key(&store_at(&candidate), &ctx.keys) {
            Ok(Some(key)) => {
                let sealed = seal_if(raw.clone(), Some(&key));
                let opens = newest.is_none_or(|n| format::read_header(sealed.as_ref(), &n).is_ok());
                if opens {
                    return Ok(key);
                }
            }
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => e.into(),
        None => OpError::Invalid(format!(
            "the snapshots in {dir} are encrypted, and no repository beside them (in {repos}) whose key this run has opens them; give the identity with --identity FILE"
        )),
    })
}

/// The repository directories under `repos` (`<user>/<name>` holding a
/// `format`).
fn repository_dirs(repos: &Location) -> Vec<Location> {
    match repos {
        Location::Dir(d) => {
            let d = crate::fsio::clean_path(d);
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|user| {
                    std::fs::read_dir(user.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                })
                .map(|repo| repo.path())
                .filter(|p| p.join("format").is_file())
                .map(Location::Dir)
                .collect()
        }
        other => {
            let store = store_at(other);
            let mut found: Vec<Location> = store
                .list("")
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| {
                    let parent = m.name.strip_suffix("/format")?;
                    (parent.matches('/').count() == 1).then(|| other.join(parent))
                })
                .collect();
            found.dedup();
            found
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
