//! Getting files back: restore, extract, cat, ls; and finding a snapshot
//! either through an archive's spec (-A) or, when the configuration is lost,
//! from a snapshot directory alone (-E).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use clap::{ArgGroup, Args};

use super::archive::archive_spec;
use super::output::size;
use super::{Context, EXIT_OK, EXIT_SKIPPED};
use crate::clock::{Civil, human_duration, now_secs};
use crate::content::{Access, LockError, Repository};
use crate::snapshot::format::{self, Snapshot, SnapshotName};
use crate::snapshot::model::Node;
use crate::snapshot::restore::{RestoreOptions, RestoreReport};
use crate::snapshot::retrieve::{self, Want};
use crate::snapshot::{self as snap};

/// Where the snapshots are: a configured archive, or a bare snapshot
/// directory when the configuration is lost.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["archive", "exigency"])))]
pub struct SourceArgs {
    /// Archive to take the snapshot from.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    pub archive: Option<String>,
    /// Rescue: a snapshot directory to use without any configuration
    /// (its snapshots say where their repository is).
    #[arg(short = 'E', long = "exigency", value_name = "SNAPSHOT_DIR")]
    pub exigency: Option<PathBuf>,
}

/// Which snapshot of the archive.
#[derive(Args, Debug, Clone)]
pub struct BackArg {
    /// N back from the newest (default 0, the newest), or with a negative
    /// N from the oldest (-1 = oldest).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub back: i64,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["file", "dir", "all"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    back: BackArg,
    /// Restore this file (or symlink) to its original path.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Restore this directory and everything in it to its original path.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Restore everything the snapshot holds.
    #[arg(long)]
    all: bool,
    /// Replace differing files instead of moving them aside.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    out: ReportArgs,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["file", "dir"])))]
pub struct ExtractArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    back: BackArg,
    /// Extract this file (or symlink).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Extract this directory and everything in it.
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Put the copy in DIR (default: the current directory).
    #[arg(long = "into-dir", alias = "into_dir", value_name = "DIR")]
    into_dir: Option<PathBuf>,
    /// Give the copy this name instead of its own.
    #[arg(long = "with-name", alias = "with_name", value_name = "NAME")]
    with_name: Option<OsString>,
    /// Write over an existing file or into an existing directory.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    out: ReportArgs,
}

/// How `restore` and `extract` report what they did.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Print counts, bytes and time.
    #[arg(long)]
    stats: bool,
    /// With --stats: print one JSON document instead (docs/json.md).
    #[arg(long, requires = "stats")]
    json: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    back: BackArg,
    /// File whose content to print.
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    back: BackArg,
    /// Directory to list (default: /).
    #[arg(value_name = "PATH", default_value = "/")]
    path: PathBuf,
}

/// A snapshot directory and the repository its snapshots use.
pub struct Source {
    pub snapshot_dir: PathBuf,
    /// None when the configuration names a repository that is missing; the
    /// error is reported when content is needed.
    repo_dir: anyhow::Result<PathBuf>,
}

impl Source {
    pub fn resolve(ctx: &Context, args: &SourceArgs) -> anyhow::Result<Source> {
        if let Some(archive) = &args.archive {
            let spec = archive_spec(&ctx.config, archive)?;
            let repo_dir = ctx
                .config
                .repo(&spec.repo)
                .map(|r| r.path)
                .map_err(Into::into);
            return Ok(Source {
                snapshot_dir: spec.snapshot_dir,
                repo_dir,
            });
        }
        let dir = args.exigency.clone().expect("clap requires -A or -E");
        if !dir.is_dir() {
            bail!("snapshot directory {} does not exist", dir.display());
        }
        let names = format::list_snapshots(&dir)?;
        let newest = names
            .last()
            .ok_or_else(|| anyhow!("{} holds no snapshots", dir.display()))?;
        let header = format::read_header(&dir, newest)?;
        let repo_dir = find_repo(&dir, &header.repo);
        Ok(Source {
            snapshot_dir: dir,
            repo_dir,
        })
    }

    pub fn snapshots(&self) -> anyhow::Result<Vec<SnapshotName>> {
        Ok(format::list_snapshots(&self.snapshot_dir)?)
    }

    pub fn pick(&self, back: i64) -> anyhow::Result<(SnapshotName, Snapshot)> {
        let names = self.snapshots()?;
        let name = snap::select(&names, back, &self.snapshot_dir)?;
        Ok((name, format::read_snapshot(&self.snapshot_dir, &name)?))
    }

    /// Opens the repository for statistics only.
    pub fn open_repo_read_only(&self) -> anyhow::Result<Repository> {
        let dir = self.repo_dir.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        Ok(Repository::open(dir, Access::ReadOnly)?)
    }

    /// Opens the repository, holding its lock so no delete or prune removes
    /// content while it is read; read-only media are used without the lock.
    pub fn open_repo(&self, ctx: &Context, command: &str) -> anyhow::Result<Repository> {
        let dir = self.repo_dir.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let locked = Repository::open(
            dir,
            Access::Locked {
                command,
                wait: ctx.lock_wait(),
            },
        );
        match locked {
            Err(crate::content::ContentError::Lock(LockError::Io { err, .. }))
                if matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)) =>
            {
                Ok(Repository::open(dir, Access::ReadOnly)?)
            }
            other => Ok(other?),
        }
    }
}

/// The repository a snapshot names: first relative to the snapshot
/// directory (the disk may be mounted elsewhere now), then its old path.
fn find_repo(snapshot_dir: &Path, repo: &format::RepoRef) -> anyhow::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let relative = snapshot_dir.join(std::ffi::OsStr::from_bytes(&repo.relative));
    let absolute = PathBuf::from(std::ffi::OsStr::from_bytes(&repo.path));
    for candidate in [relative, absolute.clone()] {
        if candidate.join("format").is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the repository of these snapshots (`{}`, last at {}) cannot be found; mount it there or next to the snapshot directory",
        repo.name,
        absolute.display()
    )
}

fn restore_options(overwrite: bool) -> RestoreOptions {
    RestoreOptions {
        overwrite,
        set_owner: rustix::process::geteuid().is_root(),
        aside_stamp: Civil::from_unix(now_secs()).dashed(),
    }
}

pub fn restore(ctx: &Context, args: RestoreArgs, command: &str) -> anyhow::Result<u8> {
    let started = Instant::now();
    let source = Source::resolve(ctx, &args.source)?;
    let (name, snapshot) = source.pick(args.back.back)?;
    let opts = restore_options(args.overwrite);
    let stamp = name.stamp();
    // Find the path before taking the lock: a typo should not wait.
    let wanted = match (&args.file, &args.dir) {
        (Some(p), _) => Some((retrieve::absolute(p), Want::File)),
        (None, Some(p)) => Some((retrieve::absolute(p), Want::Dir)),
        (None, None) => None,
    };
    let found = match &wanted {
        Some((path, want)) => Some((path, retrieve::lookup(&snapshot, &stamp, path, *want)?)),
        None => None,
    };
    let repo = source.open_repo(ctx, command)?;
    let bar = super::progress::Bar::new(args.out.quiet);
    let report = match found {
        Some((path, node)) => retrieve::restore_path(&repo, &snapshot, node, path, &opts, &bar)?,
        None => retrieve::restore_all(&repo, &snapshot, &opts, &bar)?,
    };
    Ok(finish(&report, &args.out, started, "Restored"))
}

pub fn extract(ctx: &Context, args: ExtractArgs, command: &str) -> anyhow::Result<u8> {
    let started = Instant::now();
    let source = Source::resolve(ctx, &args.source)?;
    let (name, snapshot) = source.pick(args.back.back)?;
    let (path, want) = match (&args.file, &args.dir) {
        (Some(p), _) => (retrieve::absolute(p), Want::File),
        (_, Some(p)) => (retrieve::absolute(p), Want::Dir),
        (None, None) => unreachable!("clap requires --file or --dir"),
    };
    let node = retrieve::lookup(&snapshot, &name.stamp(), &path, want)?;
    let into = match &args.into_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot find the current directory")?,
    };
    let opts = restore_options(args.overwrite);
    let repo = source.open_repo(ctx, command)?;
    let bar = super::progress::Bar::new(args.out.quiet);
    let report = retrieve::extract(
        &repo,
        node,
        &path,
        &into,
        args.with_name.as_deref(),
        &opts,
        &bar,
    )?;
    Ok(finish(&report, &args.out, started, "Extracted"))
}

/// Reports problems and moved-aside files; returns the exit status.
fn finish(report: &RestoreReport, out: &ReportArgs, started: Instant, verb: &str) -> u8 {
    for (from, to) in &report.moved_aside {
        eprintln!(
            "epygibus: moved {} aside to {}",
            from.display(),
            to.display()
        );
    }
    for p in &report.problems {
        eprintln!("epygibus: {p}");
    }
    if out.json {
        let moved: Vec<_> = report
            .moved_aside
            .iter()
            .map(|(from, to)| {
                serde_json::json!({"from": from.display().to_string(), "to": to.display().to_string()})
            })
            .collect();
        super::output::print_json(&serde_json::json!({
            "files": report.files,
            "bytes": report.bytes,
            "dirs": report.dirs,
            "links": report.links,
            "hard_links": report.hard_links,
            "unchanged": report.unchanged,
            "moved_aside": moved,
            "problems": report.problems,
            "seconds": started.elapsed().as_secs_f64(),
        }));
    } else if out.stats {
        outln!(
            "{verb} {} files ({}), {} directories, {} symlinks, {} hard links; {} files already up to date; {} problems; time {}",
            report.files,
            size(report.bytes),
            report.dirs,
            report.links,
            report.hard_links,
            report.unchanged,
            report.problems.len(),
            human_duration(started.elapsed().as_secs_f64())
        );
    }
    if report.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_SKIPPED
    }
}

pub fn cat(ctx: &Context, args: CatArgs, command: &str) -> anyhow::Result<u8> {
    let source = Source::resolve(ctx, &args.source)?;
    let (name, snapshot) = source.pick(args.back.back)?;
    let path = retrieve::absolute(&args.path);
    let token = match retrieve::lookup(&snapshot, &name.stamp(), &path, Want::File)? {
        Node::File(f) => f.token,
        Node::Link(l) => bail!(
            "{} is a symlink to {} in snapshot {}",
            path.display(),
            String::from_utf8_lossy(&l.target),
            name.stamp()
        ),
        Node::Dir(_) => unreachable!("lookup checked the kind"),
    };
    let repo = source.open_repo(ctx, command)?;
    let mut reader = repo.open_contents_read_only(&token)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match io::copy(&mut reader, &mut out).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(anyhow!("could not print {}: {e}", path.display())),
        Ok(()) => Ok(EXIT_OK),
    }
}

pub fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<u8> {
    let source = Source::resolve(ctx, &args.source)?;
    let (name, snapshot) = source.pick(args.back.back)?;
    let path = retrieve::absolute(&args.path);
    let dir = match retrieve::find(&snapshot.root, &path) {
        Some(retrieve::NodeRef::Root(d)) | Some(retrieve::NodeRef::Node(Node::Dir(d))) => d,
        Some(_) => bail!(
            "{} is not a directory in snapshot {}",
            path.display(),
            name.stamp()
        ),
        None => bail!("{} is not in snapshot {}", path.display(), name.stamp()),
    };
    for entry in &dir.entries {
        match &entry.node {
            Node::Dir(_) => outln!("{}/", entry.name),
            Node::File(_) => outln!("{}", entry.name),
            Node::Link(l) => outln!("{} -> {}", entry.name, String::from_utf8_lossy(&l.target)),
        }
    }
    Ok(EXIT_OK)
}
