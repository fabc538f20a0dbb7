//! Getting files back: restore, extract, cat, ls; and finding a snapshot
//! either through an archive's spec (-A) or, when the configuration is lost,
//! from a snapshot directory alone (-E).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use clap::{ArgGroup, Args};

use super::output::size;
use super::{Context, EXIT_OK, EXIT_SKIPPED};
use crate::clock::human_duration;
use crate::ops::restore::{self as ops, ExtractTarget, Listed, RestoreRequest, Selection};
use crate::ops::source::SourceSpec;
use crate::snapshot::restore::RestoreReport;

/// Where the snapshots are: a configured archive, or a bare snapshot
/// directory when the configuration is lost.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("source").required(true).args(["archive", "exigency"])))]
pub struct SourceArgs {
    /// Archive to take the snapshot from.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    pub archive: Option<String>,
    /// Rescue: a snapshot directory (or its s3:// location) to use
    /// without any configuration (its snapshots say where their
    /// repository is); also a snapshot directory of the original Python
    /// epygibus.
    #[arg(short = 'E', long = "exigency", value_name = "SNAPSHOT_DIR", value_parser = super::parse_location)]
    pub exigency: Option<crate::store::Location>,
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

impl SourceArgs {
    /// The library's description of the source.
    pub fn spec(&self) -> SourceSpec {
        match (&self.archive, &self.exigency) {
            (Some(a), _) => SourceSpec::Archive(a.clone()),
            (None, Some(d)) => SourceSpec::SnapshotDir(d.clone()),
            (None, None) => unreachable!("clap requires -A or -E"),
        }
    }
}

fn selection(file: &Option<PathBuf>, dir: &Option<PathBuf>) -> Selection {
    match (file, dir) {
        (Some(p), _) => Selection::File(p.clone()),
        (None, Some(p)) => Selection::Dir(p.clone()),
        (None, None) => Selection::All,
    }
}

pub fn restore(ctx: &Context, args: RestoreArgs, command: &str) -> anyhow::Result<u8> {
    let started = Instant::now();
    let req = RestoreRequest {
        source: args.source.spec(),
        back: args.back.back,
        selection: selection(&args.file, &args.dir),
        overwrite: args.overwrite,
    };
    let bar = super::progress::Bar::new(args.out.quiet);
    let report = ops::restore(ctx, &req, command, &bar)?;
    Ok(finish(&report, &args.out, started, "Restored"))
}

pub fn extract(ctx: &Context, args: ExtractArgs, command: &str) -> anyhow::Result<u8> {
    let started = Instant::now();
    let req = RestoreRequest {
        source: args.source.spec(),
        back: args.back.back,
        selection: selection(&args.file, &args.dir),
        overwrite: args.overwrite,
    };
    let target = ExtractTarget {
        into_dir: match &args.into_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().context("cannot find the current directory")?,
        },
        with_name: args.with_name.clone(),
    };
    let bar = super::progress::Bar::new(args.out.quiet);
    let report = ops::extract(ctx, &req, &target, command, &bar)?;
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
    let mut reader = ops::cat(
        ctx,
        &args.source.spec(),
        args.back.back,
        &args.path,
        command,
    )?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match io::copy(&mut reader, &mut out).and_then(|_| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(anyhow!("could not print {}: {e}", args.path.display())),
        Ok(()) => Ok(EXIT_OK),
    }
}

pub fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<u8> {
    for entry in ops::ls(ctx, &args.source.spec(), args.back.back, &args.path)? {
        match entry {
            Listed::Dir(name) => outln!("{name}/"),
            Listed::File(name) => outln!("{name}"),
            Listed::Link(name, target) => {
                outln!("{name} -> {}", String::from_utf8_lossy(&target))
            }
        }
    }
    Ok(EXIT_OK)
}
