//! `attach`: register what a backup disk holds in this configuration.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::output::{Table, print_json};
use super::{Context, EXIT_OK};
use crate::ops::attach::{self, AttachOptions, Outcome, SpecOrigin};

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Directory holding `epygibus.d` (the NAS mount or USB drive that was
    /// given to `new_repo` and `new` as --location).
    #[arg(long, short = 'L', value_name = "DIR")]
    location: PathBuf,
    /// Attach this repository (NAME or USER/NAME; repeatable). Without -R
    /// and -A, everything found is attached.
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repos: Vec<String>,
    /// Attach this archive and its repository (NAME or HOST/USER/NAME;
    /// repeatable).
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archives: Vec<String>,
    /// Register the one repository or archive given under this name
    /// instead (when its own is taken here).
    #[arg(long = "as", value_name = "NAME")]
    rename: Option<String>,
    /// Continue the archives given with -A from this machine although
    /// another host made them: a reinstalled machine with a new
    /// host name. Their snapshot directories stay where they are.
    #[arg(long)]
    adopt: bool,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

fn status(o: &Outcome) -> &'static str {
    match o {
        Outcome::Attached(_) => "attached",
        Outcome::Already(_) => "already",
        Outcome::Adopted(_) => "adopted",
        Outcome::NotSelected => "not_selected",
    }
}

pub fn attach(ctx: &Context, args: AttachArgs) -> anyhow::Result<u8> {
    let opts = AttachOptions {
        location: args.location.clone(),
        repos: args.repos,
        archives: args.archives,
        rename: args.rename,
        adopt: args.adopt,
    };
    let report = attach::attach(ctx, &opts)?;
    let typed = args.location.display().to_string();
    if args.json {
        let repos: Vec<_> = report
            .repos
            .iter()
            .map(|r| {
                json!({
                    "on_disk": r.found.id(),
                    "path": r.found.dir.display().to_string(),
                    "elsewhere": r.found.elsewhere,
                    "status": status(&r.outcome),
                    "name": r.outcome.name().map(|n| n.as_str()),
                    "problem": r.found.problem,
                })
            })
            .collect();
        let archives: Vec<_> = report
            .archives
            .iter()
            .map(|a| {
                let f = &a.found;
                json!({
                    "on_disk": f.id(),
                    "path": f.dir.display().to_string(),
                    "owner": f.owner(),
                    "snapshots": f.snapshots.len(),
                    "newest": f.snapshots.last().map(|s| s.stamp()),
                    "status": status(&a.outcome),
                    "name": a.outcome.name().map(|n| n.as_str()),
                    "repository": a.repository.as_ref().map(|n| n.as_str()),
                    "read_only": a.read_only,
                    "adopted": a.adopted,
                    "spec_from": match &f.spec {
                        Ok((_, SpecOrigin::Copy(_))) => Some("copy"),
                        Ok((_, SpecOrigin::Header(_))) => Some("snapshot"),
                        Err(_) => None,
                    },
                    "registered_now": a.registered_now,
                    "notes": f.notes,
                })
            })
            .collect();
        print_json(&json!({
            "location": report.root.display().to_string(),
            "repositories": repos,
            "archives": archives,
        }));
        return Ok(EXIT_OK);
    }
    outln!("Found in {}:", report.root.display());
    let mut t = Table::new(&["WHAT", "ON DISK", "SNAPSHOTS", "NEWEST", "HERE"]);
    let here = |o: &Outcome, read_only: bool| match o {
        Outcome::Attached(n) if read_only => format!("{n} (attached now, read-only)"),
        Outcome::Attached(n) => format!("{n} (attached now)"),
        Outcome::Already(n) if read_only => format!("{n} (already attached, read-only)"),
        Outcome::Already(n) => format!("{n} (already attached)"),
        Outcome::Adopted(n) => format!("{n} (adopted now)"),
        Outcome::NotSelected => "- (not asked for)".into(),
    };
    for r in &report.repos {
        let on_disk = if r.found.elsewhere {
            r.found.dir.display().to_string()
        } else {
            r.found.id()
        };
        t.row(vec![
            "repository".into(),
            on_disk,
            "-".into(),
            "-".into(),
            here(&r.outcome, false),
        ]);
    }
    for a in &report.archives {
        let f = &a.found;
        t.row(vec![
            "archive".into(),
            f.id(),
            f.snapshots.len().to_string(),
            f.snapshots.last().map_or_else(|| "-".into(), |s| s.stamp()),
            here(&a.outcome, a.read_only),
        ]);
    }
    out!("{}", t.render());
    let mut attached = (0, 0);
    for r in &report.repos {
        if matches!(r.outcome, Outcome::Attached(_)) {
            attached.0 += 1;
        }
    }
    for a in &report.archives {
        let Some(name) = a.outcome.name() else {
            continue;
        };
        if !matches!(a.outcome, Outcome::Already(_)) {
            attached.1 += 1;
        }
        for note in &a.found.notes {
            outln!("note: archive `{name}`: {note}");
        }
        if a.read_only && matches!(a.outcome, Outcome::Attached(_)) {
            outln!(
                "note: archive `{name}` is read-only here: it was made by {}. `epygibus attach --location={typed} -A {} --adopt` continues it from this machine.",
                a.found.owner(),
                a.found.id()
            );
        }
        if a.adopted {
            outln!(
                "note: archive `{name}` (made by {}) is backed up from this machine now, into {}; back it up from here only.",
                a.found.owner(),
                a.found.dir.display()
            );
        }
        if a.registered_now {
            outln!(
                "note: archive `{name}` was missing from its repository's registry and is registered now, so prune keeps its content."
            );
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if attached == (0, 0) {
        outln!("Nothing new to attach: everything asked for is configured already.");
    } else {
        outln!(
            "Attached {} and {}.",
            plural(attached.0, "repository", "repositories"),
            plural(attached.1, "archive", "archives")
        );
    }
    Ok(EXIT_OK)
}
