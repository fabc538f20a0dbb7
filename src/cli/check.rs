//! `check`: is every snapshot's content present, and no count too low?

use clap::{ArgGroup, Args};

use super::{Context, EXIT_OK, EXIT_PROBLEMS};
use crate::content::Finding;
use crate::ops::check::{self, CheckRequest, CheckTarget};

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
    /// orphan content files, and set damaged snapshots aside (renamed to
    /// <name>.damaged, kept), salvaging what can still be read of each.
    #[arg(long)]
    repair: bool,
    /// With --repair -R: also lower counts that are too high. Only when
    /// every snapshot directory using the repository is registered and
    /// reachable from here (other machines' too).
    #[arg(long = "lower-counts", alias = "lower_counts", requires = "repair")]
    lower_counts: bool,
}

pub fn check(ctx: &Context, args: CheckArgs, command: &str) -> anyhow::Result<u8> {
    let target = match (&args.repo, &args.archive) {
        (Some(r), _) => CheckTarget::Repo(r.clone()),
        (None, Some(a)) => CheckTarget::Archive(a.clone()),
        (None, None) => unreachable!("clap requires -R or -A"),
    };
    let req = CheckRequest {
        read_data: args.read_data,
        repair: args.repair,
        lower_counts: args.lower_counts,
    };
    let outcome = check::check(ctx, &target, req, command)?;
    let code = print_report(&outcome, args.repair);
    if !outcome.scan.damaged.is_empty() && !args.repair {
        let which = match (&args.repo, &args.archive) {
            (Some(r), _) => format!("-R {r}"),
            (None, a) => format!("-A {}", a.as_deref().unwrap_or_default()),
        };
        outln!(
            "note: `epygibus check {which} --repair` sets the damaged snapshots aside (renamed to <name>.damaged and kept), salvaging what can still be read; prune works again after that"
        );
    }
    Ok(code)
}

fn print_report(outcome: &check::CheckOutcome, repair: bool) -> u8 {
    let (scan, dirs, report) = (&outcome.scan, &outcome.dirs, &outcome.report);
    let mut problems = 0;
    for why in &scan.unreachable {
        problems += 1;
        outln!("problem: {why}");
    }
    for e in scan.unreadable.iter().chain(&outcome.set_aside) {
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
    f.to_string()
}
