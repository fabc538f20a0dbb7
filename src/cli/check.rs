//! `check`: is every snapshot's content present, and no count too low?

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::archive::archive_spec;
use super::{Context, EXIT_OK, EXIT_PROBLEMS};
use crate::config::Name;
use crate::content::{
    Access, CheckOptions, CheckReport, Finding, Repository, report_temp_files_in,
};
use crate::snapshot::scan;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["repo", "archive"])))]
pub struct CheckArgs {
    /// Check a repository against every snapshot directory registered in it.
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: Option<String>,
    /// Check one archive's snapshots against its repository.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: Option<String>,
    /// Also decompress every referenced content file and verify its hash.
    #[arg(long = "read-data", alias = "read_data")]
    read_data: bool,
    /// Raise counts that are too low, remove stale temp files and old
    /// orphan content files.
    #[arg(long)]
    repair: bool,
    /// With --repair -R: also lower counts that are too high. Only when
    /// every snapshot directory using the repository is registered and
    /// reachable from here (other machines' too).
    #[arg(long = "lower-counts", alias = "lower_counts", requires = "repair")]
    lower_counts: bool,
}

pub fn check(ctx: &Context, args: CheckArgs, command: &str) -> anyhow::Result<u8> {
    let (repo_dir, dirs, whole_repo) = match (&args.repo, &args.archive) {
        (Some(r), _) => {
            let name: Name = r.parse()?;
            (ctx.config.repo(&name)?.path, None, true)
        }
        (None, Some(a)) => {
            let spec = archive_spec(&ctx.config, a)?;
            let repo = ctx.config.repo(&spec.repo)?.path;
            (repo, Some(vec![spec.snapshot_dir]), false)
        }
        (None, None) => unreachable!("clap requires -R or -A"),
    };
    let access = if args.repair {
        Access::Locked {
            command,
            wait: ctx.lock_wait(),
        }
    } else {
        Access::ReadOnly
    };
    let repo = Repository::open(&repo_dir, access)?;
    let dirs = dirs.unwrap_or_else(|| {
        repo.registered_snapshot_dirs()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    });
    let scan = scan::scan(&dirs);
    let complete = whole_repo && scan.complete();
    if args.lower_counts && !complete {
        anyhow::bail!(
            "refusing to lower counts: some registered snapshot directories or snapshots could not be read (listed below with a plain check)"
        );
    }
    let opts = CheckOptions {
        read_data: args.read_data,
        repair: args.repair,
        complete,
        lower_counts: args.lower_counts,
    };
    let mut report = repo.check(&scan.refs, opts);
    for dir in &dirs {
        report_temp_files_in(dir, args.repair, &mut report);
    }
    if args.repair {
        repo.commit()?;
    }
    Ok(print_report(&scan, &dirs, &report, args.repair))
}

fn print_report(scan: &scan::Scan, dirs: &[PathBuf], report: &CheckReport, repair: bool) -> u8 {
    let mut problems = 0;
    for dir in &scan.unreachable {
        problems += 1;
        outln!(
            "problem: snapshot directory {} cannot be read",
            dir.display()
        );
    }
    for e in &scan.unreadable {
        problems += 1;
        outln!("problem: {e}");
    }
    for f in &report.findings {
        let line = describe(f);
        if f.is_harmless() {
            outln!("note: {line}");
        } else {
            problems += 1;
            outln!("problem: {line}");
        }
    }
    for r in &report.repaired {
        outln!("repaired: {r}");
    }
    outln!(
        "Checked {} snapshots in {} directories, {} content items referenced; {} problem(s){}.",
        scan.snapshots,
        dirs.len(),
        report.items_checked,
        problems,
        if repair { " before repair" } else { "" }
    );
    if problems == 0 {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    }
}

fn describe(f: &Finding) -> String {
    match f {
        Finding::MissingContent { token, path } => {
            format!(
                "content {token} is referenced but missing ({})",
                path.display()
            )
        }
        Finding::DamagedContent { token, path } => {
            format!("content file {} does not match {token}", path.display())
        }
        Finding::CountTooLow {
            token,
            counted,
            found,
        } => format!("count of {token} is {counted} but {found} snapshot entries use it"),
        Finding::CountTooHigh {
            token,
            counted,
            found,
        } => format!(
            "count of {token} is {counted} but {found} snapshot entries use it (space not reclaimed)"
        ),
        Finding::TempFile { path } => format!("temp file left over: {}", path.display()),
        Finding::Orphan { path } => {
            format!("content file not in the index: {}", path.display())
        }
        Finding::Unreferenced { token } => {
            format!("content {token} is unreferenced (prune removes it)")
        }
    }
}
