//! `import`: the original epygibus's snapshots become snapshots of an
//! archive here, each under the time in its name, with the same tree and
//! its content copied into the repository (every content file checked
//! against its SHA-1 on the way). The original's files are only read.
//! Running it again imports only snapshots not imported yet.
//!
//! A snapshot is imported whole or not at all: its references are counted
//! only when every file's content was read and matched, and the snapshot
//! file is written after the counts (docs/design.md, rule 2). A snapshot
//! that cannot be is reported with the file at fault, and the rest go on.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::source::{Archive, archive};
use super::{Context, OpError, Result};
use crate::config::{ConfigError, Name};
use crate::content::{ContentError, ContentToken, Repository, SessionCounters};
use crate::legacy::config::{self as orig_config, OrigArchive};
use crate::legacy::sha1::Sha1Hex;
use crate::legacy::{self, OrigName, OrigSnapshot, convert};
use crate::progress::Progress;
use crate::setup::{self, NewArchive};
use crate::snapshot::format::{self, BuildStats, Header, Snapshot, SnapshotName};
use crate::store::Location;

/// What to import.
#[derive(Clone, Debug)]
pub enum ImportFrom {
    /// One snapshot directory of the original into archive `archive`.
    SnapshotDir { dir: PathBuf, archive: String },
    /// Every archive of the original's configuration directory, each into
    /// an archive of the same name. `mounted_at` is where the backup disk
    /// is now, when not where the configuration says.
    Config {
        dir: PathBuf,
        mounted_at: Option<PathBuf>,
    },
}

/// Options of `import`.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub from: ImportFrom,
    /// Repository of a new archive (default: as `new`).
    pub repo: Option<String>,
    /// Where a new archive's snapshots go (default: beside its repository).
    pub location: Option<PathBuf>,
    /// Zone the original named its snapshots in (default: this machine's).
    pub zone: Option<String>,
}

/// One imported snapshot.
#[derive(Clone, Debug)]
pub struct Imported {
    pub original: PathBuf,
    pub name: SnapshotName,
    pub files: u64,
    pub new_items: u64,
    pub new_content_bytes: u64,
}

/// What happened to one original archive.
#[derive(Clone, Debug, Default)]
pub struct ArchiveImport {
    pub archive: String,
    pub from: PathBuf,
    pub created: bool,
    pub imported: Vec<Imported>,
    /// Snapshots imported by an earlier run.
    pub already: usize,
    /// Snapshots (or whole archives) not imported, with why.
    pub skipped: Vec<String>,
}

/// What `import` did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub archives: Vec<ArchiveImport>,
}

impl ImportReport {
    pub fn skipped(&self) -> usize {
        self.archives.iter().map(|a| a.skipped.len()).sum()
    }
}

/// Imports the original's snapshots.
pub fn import(
    ctx: &Context,
    opts: &ImportOptions,
    command: &str,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let zone = legacy::zone(opts.zone.as_deref()).map_err(|e| OpError::Invalid(e.to_string()))?;
    let mut report = ImportReport::default();
    match &opts.from {
        ImportFrom::SnapshotDir { dir, archive } => {
            // Not the original's: an error before anything is created.
            legacy::list_snapshots(dir).map_err(legacy_err)?;
            let job = Job {
                dir: dir.clone(),
                archive: archive.clone(),
                orig: None,
                repo_dirs: HashMap::new(),
            };
            report
                .archives
                .push(job.run(ctx, opts, &zone, command, progress)?);
        }
        ImportFrom::Config { dir, mounted_at } => {
            let archives = orig_config::read_archives(dir).map_err(legacy_err)?;
            let repo_dirs = orig_config::read_repos(dir).map_err(legacy_err)?;
            for orig in archives {
                let Some(found) = orig_config::locate(&orig.snapshot_dir, mounted_at.as_deref())
                else {
                    report.archives.push(ArchiveImport {
                        archive: orig.name.clone(),
                        from: orig.snapshot_dir.clone(),
                        skipped: vec![format!(
                            "original archive `{}`: its snapshot directory {} holds no snapshots of the original here; if the disk is mounted elsewhere now, give --mounted-at",
                            orig.name,
                            orig.snapshot_dir.display()
                        )],
                        ..ArchiveImport::default()
                    });
                    continue;
                };
                let job = Job {
                    dir: found,
                    archive: orig.name.clone(),
                    orig: Some(orig),
                    repo_dirs: repo_dirs.clone(),
                };
                report
                    .archives
                    .push(job.run(ctx, opts, &zone, command, progress)?);
            }
        }
    }
    Ok(report)
}

fn legacy_err(e: legacy::LegacyError) -> OpError {
    OpError::Invalid(e.to_string())
}

/// One original snapshot directory into one archive.
struct Job {
    dir: PathBuf,
    archive: String,
    orig: Option<OrigArchive>,
    /// The original's repositories by name, from its configuration.
    repo_dirs: HashMap<String, PathBuf>,
}

impl Job {
    fn run(
        self,
        ctx: &Context,
        opts: &ImportOptions,
        zone: &jiff::tz::TimeZone,
        command: &str,
        progress: &dyn Progress,
    ) -> Result<ArchiveImport> {
        let mut out = ArchiveImport {
            archive: self.archive.clone(),
            from: self.dir.clone(),
            ..ArchiveImport::default()
        };
        let names = match legacy::list_snapshots(&self.dir) {
            Ok(n) => n,
            Err(e) => {
                out.skipped.push(e.to_string());
                return Ok(out);
            }
        };
        let (target, created) = match self.target(ctx, opts, &names) {
            Ok(t) => t,
            // From a configuration, one archive that cannot be set up
            // here does not stop the others.
            Err(e) if self.orig.is_some() => {
                out.skipped
                    .push(format!("original archive `{}`: {e}", self.archive));
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        out.created = created;
        let repo = target.lock_repo(ctx, command)?;
        let mut have: HashSet<i64> = target.list()?.iter().map(|n| n.secs).collect();
        let mut newest = have.iter().copied().max();
        let mut known = HashMap::new();
        for name in &names {
            let path = self.dir.join(name.file_name());
            let Some(secs) = name.unix_secs(zone) else {
                out.skipped.push(format!(
                    "{}: its name is not a time that exists in the zone given",
                    path.display()
                ));
                continue;
            };
            if have.contains(&secs) {
                out.already += 1;
                continue;
            }
            if let Some(n) = newest.filter(|&n| n >= secs) {
                out.skipped.push(format!(
                    "{} was not imported: archive `{}` already has a snapshot as new as its time ({}); import into a new archive to keep every snapshot under its own time",
                    path.display(),
                    self.archive,
                    SnapshotName { secs: n, compressed: false }.stamp()
                ));
                continue;
            }
            if progress.cancelled() {
                return Err(ContentError::Cancelled.into());
            }
            match self.one(&target, &repo, name, secs, &mut known, progress)? {
                Ok(done) => {
                    have.insert(done.name.secs);
                    newest = Some(done.name.secs);
                    out.imported.push(done);
                }
                Err(problems) => {
                    // References of a failed snapshot were given back.
                    known.clear();
                    out.skipped.push(format!(
                        "{} was not imported (nothing of it was written): {}",
                        path.display(),
                        problems.join("; ")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The archive to import into: the configured one of that name, or a
    /// new one made from the original's spec (or, without it, from what
    /// the snapshots hold).
    fn target(
        &self,
        ctx: &Context,
        opts: &ImportOptions,
        names: &[OrigName],
    ) -> Result<(Archive, bool)> {
        let name: Name = self.archive.parse()?;
        match ctx.config.archive(&name) {
            Ok(spec) => {
                if let Some(r) = &opts.repo
                    && r != spec.repo.as_str()
                {
                    return Err(OpError::Invalid(format!(
                        "archive `{name}` exists and keeps its content in repository `{}`, not `{r}`; leave -R out to import into it, or name a new archive",
                        spec.repo
                    )));
                }
                let a = archive(ctx, name.as_str())?;
                a.check_writable()?;
                return Ok((a, false));
            }
            Err(ConfigError::Unknown { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let repo = match &opts.repo {
            Some(r) => setup::repo_for_new(
                &ctx.config,
                &r.parse()?,
                opts.location.clone().map(Location::Dir).as_ref(),
            )?,
            None => setup::default_repository(&ctx.config)?.0,
        };
        let location = match &opts.location {
            Some(l) => Location::Dir(l.clone()),
            None => match repo.location.as_dir().and_then(location_of_repo) {
                Some(l) => Location::Dir(l),
                // A repository in a bucket: the archive's snapshots go
                // beside it there.
                None if !matches!(repo.location, Location::Dir(_)) => {
                    return Err(OpError::Invalid(format!(
                        "repository `{}` is in a bucket: give --location for the imported archive's snapshots",
                        repo.name
                    )));
                }
                None => Location::Dir(setup::default_location()?),
            },
        };
        let (includes, exclude_dirs, exclude_files, compress, keep_broken) = match &self.orig {
            Some(o) => (
                o.includes.clone(),
                o.exclude_dirs.clone(),
                o.exclude_files.clone(),
                o.compress,
                !o.skip_broken_links,
            ),
            None => (
                self.derived_includes(names),
                Vec::new(),
                Vec::new(),
                names.last().is_none_or(|n| n.compressed),
                false,
            ),
        };
        let mut new = NewArchive {
            name: name.clone(),
            repo,
            location,
            includes,
            excluded_dirs: exclude_dirs,
            excluded_files: exclude_files,
            compress,
            keep_broken_soft_links: keep_broken,
            compare_inodes: false,
            policy: None,
            keys: ctx.keys.clone(),
        };
        // The original matched its globs with fnmatch; one this epygibus
        // cannot read is left out rather than losing the whole archive.
        if crate::snapshot::exclude::Excludes::new(&new.excluded_dirs, &new.excluded_files).is_err()
        {
            new.excluded_dirs.clear();
            new.excluded_files.clear();
        }
        setup::create_imported_archive(&ctx.config, new)?;
        Ok((archive(ctx, name.as_str())?, true))
    }

    /// Without the original's configuration: what the newest readable
    /// snapshot was taken of.
    fn derived_includes(&self, names: &[OrigName]) -> Vec<PathBuf> {
        for name in names.iter().rev() {
            if let Ok(s) = legacy::read_snapshot(&self.dir, name) {
                return s.root.roots().iter().map(|r| root_path(r)).collect();
            }
        }
        Vec::new()
    }

    /// Where this snapshot's content is: as recorded in it, else as the
    /// original's configuration says, else beside the snapshots.
    fn repo_dir(&self, snap: &OrigSnapshot, path: &Path) -> std::result::Result<PathBuf, String> {
        let from_config = self
            .orig
            .as_ref()
            .and_then(|o| self.repo_dirs.get(&o.repo_name))
            .map(|p| p.as_os_str().as_bytes().to_vec());
        let Some(recorded) = snap.repo_dir.clone().or(from_config) else {
            return Err(format!(
                "{} does not say which repository holds its content (snapshots from before July 2016 do not); import it through the original's configuration directory (--original-config)",
                path.display()
            ));
        };
        legacy::repo::find(&self.dir, &recorded, path).map_err(|e| e.to_string())
    }

    /// Imports one snapshot. The outer error stops the import (the
    /// repository failed); the inner one skips this snapshot.
    fn one(
        &self,
        target: &Archive,
        repo: &Repository,
        name: &OrigName,
        secs: i64,
        known: &mut HashMap<Sha1Hex, (ContentToken, u64)>,
        progress: &dyn Progress,
    ) -> Result<std::result::Result<Imported, Vec<String>>> {
        let path = self.dir.join(name.file_name());
        let snap = match legacy::read_snapshot(&self.dir, name) {
            Ok(s) => s,
            Err(e) => return Ok(Err(vec![e.to_string()])),
        };
        let repo_dir = match self.repo_dir(&snap, &path) {
            Ok(d) => d,
            Err(e) => return Ok(Err(vec![e])),
        };
        let files = snap.root.files();
        progress.phase(
            &format!("importing {}", name.file_name()),
            files.len() as u64,
            files.iter().map(|f| f.1).sum(),
        );
        let session = repo.begin_backup();
        let mut problems = Vec::new();
        let mut fatal: Option<ContentError> = None;
        let mut read = 0u64;
        let tree = convert::tree(&snap.root, &mut |at, sha1, attrs| {
            if fatal.is_some() || progress.cancelled() {
                return None;
            }
            progress.file_done(attrs.size);
            if let Some(&(token, size)) = known.get(sha1) {
                return match session.reference_contents(&token) {
                    Ok(()) => Some((token, size)),
                    Err(e) => {
                        fatal = Some(e);
                        None
                    }
                };
            }
            let (plain, _) = legacy::repo::content_paths(&repo_dir, sha1);
            let counted = Arc::new(AtomicU64::new(0));
            let stored = session.store_reader(&plain, &mut || {
                counted.store(0, Ordering::Relaxed);
                let (reader, _) = legacy::repo::open_content(&repo_dir, sha1)?;
                Ok(Box::new(Counting(reader, counted.clone())) as _)
            });
            let size = counted.load(Ordering::Relaxed);
            match stored {
                Ok(token) => {
                    read += 1;
                    known.insert(*sha1, (token, size));
                    Some((token, size))
                }
                Err(e) if e.is_source_problem() => {
                    problems.push(format!("/{}: {}", convert::shown(at), source_reason(&e)));
                    None
                }
                Err(e) => {
                    fatal = Some(e);
                    None
                }
            }
        });
        progress.finish();
        if let Some(e) = fatal {
            return Err(e.into());
        }
        if progress.cancelled() {
            return Err(ContentError::Cancelled.into());
        }
        let root = match tree {
            Ok(root) if problems.is_empty() => root,
            Ok(_) => return Ok(Err(problems)),
            Err(e) => return Ok(Err(vec![format!("{}: {e}", path.display())])),
        };
        let counted = session.commit_counts()?;
        let c = counted.counters();
        let (new_items, new_content_bytes) = (
            SessionCounters::get(&c.new_items),
            SessionCounters::get(&c.new_content_bytes),
        );
        let snapshot = Snapshot {
            header: self.header(target, repo, &snap, &root, secs, c, read),
            root,
        };
        let store = target.snapshots.as_ref();
        let written = format::write_snapshot(store, &snapshot, name.compressed)?;
        counted.snapshot_written()?;
        Ok(Ok(Imported {
            original: path,
            name: written,
            files: snapshot.header.stats.counts.files,
            new_items,
            new_content_bytes,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &self,
        target: &Archive,
        repo: &Repository,
        snap: &OrigSnapshot,
        root: &crate::snapshot::model::DirNode,
        secs: i64,
        c: &SessionCounters,
        read: u64,
    ) -> Header {
        let (_, who) = legacy::dir_identity(&self.dir);
        let (host, user) =
            who.unwrap_or_else(|| (crate::fsio::host_name(), crate::fsio::user_name()));
        let started_ns = secs.saturating_mul(1_000_000_000);
        let elapsed = snap.stats.as_ref().map_or(0.0, |s| s.real_secs);
        let bytes = |p: &Path| serde_bytes::ByteBuf::from(p.as_os_str().as_bytes().to_vec());
        let mut roots: Vec<_> = target
            .spec
            .includes
            .iter()
            .filter(|p| crate::snapshot::retrieve::find(root, p).is_some())
            .map(|p| bytes(p))
            .collect();
        if roots.is_empty() {
            roots = snap
                .root
                .roots()
                .iter()
                .map(|r| bytes(&root_path(r)))
                .collect();
        }
        Header {
            archive: target.spec.name.to_string(),
            host,
            user,
            started_ns,
            finished_ns: started_ns.saturating_add((elapsed * 1e9) as i64),
            repo: crate::snapshot::repo_ref(&target.spec, target.snapshots.location(), repo),
            includes: target.spec.includes.iter().map(|p| bytes(p)).collect(),
            roots,
            stats: BuildStats {
                counts: root.counts(),
                new_items: SessionCounters::get(&c.new_items),
                new_content_bytes: SessionCounters::get(&c.new_content_bytes),
                new_stored_bytes: SessionCounters::get(&c.new_stored_bytes),
                files_read: read,
                elapsed_secs: elapsed,
                ..BuildStats::default()
            },
            // The original recorded no zone; retention reads its times in
            // the current one.
            utc_offset: None,
            time_ns: None,
            salvaged_from: None,
        }
    }
}

/// The reason of a source error, without repeating the file's path.
fn source_reason(e: &ContentError) -> String {
    match e {
        ContentError::Source { err, .. } => err.to_string(),
        other => other.to_string(),
    }
}

/// `/a/b/c` of path components.
pub(crate) fn root_path(components: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// `<location>` of a repository at `<location>/epygibus.d/repos/<user>/<name>`.
fn location_of_repo(repo: &Path) -> Option<PathBuf> {
    let d = repo.ancestors().nth(3)?;
    (d.file_name() == Some(OsStr::new("epygibus.d"))).then(|| d.parent().map(Path::to_owned))?
}

/// Counts the bytes read through it (the content's true size: the
/// original recorded the size `lstat` gave after storing, which a file
/// changing meanwhile made wrong).
struct Counting<R>(R, Arc<AtomicU64>);

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
