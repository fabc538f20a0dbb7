//! Retention commands: `forget` and `policy`, and the `--keep-*` options
//! they share with `new`.

use clap::Args;
use serde_json::{Value, json};

use super::output::{Table, print_json};
use super::repo::{print_prune, prune_json};
use super::{Context, EXIT_ERROR, EXIT_OK, EXIT_SKIPPED};
use crate::clock::Civil;
use crate::config::Name;
use crate::ops::forget::{self, ForgetOptions, ForgetReport, Verdict};
use crate::snapshot::forget::{Count, Duration, Policy};

/// The retention rules, as `forget`, `policy` and `new` take them.
#[derive(Args, Debug, Default, Clone)]
#[command(next_help_heading = "Retention rules (restic's; `unlimited` for no limit)")]
pub struct PolicyArgs {
    /// Keep the N newest snapshots.
    #[arg(long = "keep-last", value_name = "N", allow_negative_numbers = true)]
    keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the N most recent hours that have one.
    #[arg(long = "keep-hourly", value_name = "N", allow_negative_numbers = true)]
    keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the N most recent days that have one.
    #[arg(long = "keep-daily", value_name = "N", allow_negative_numbers = true)]
    keep_daily: Option<Count>,
    /// The same for ISO weeks (Monday to Sunday).
    #[arg(long = "keep-weekly", value_name = "N", allow_negative_numbers = true)]
    keep_weekly: Option<Count>,
    /// The same for months.
    #[arg(long = "keep-monthly", value_name = "N", allow_negative_numbers = true)]
    keep_monthly: Option<Count>,
    /// The same for years.
    #[arg(long = "keep-yearly", value_name = "N", allow_negative_numbers = true)]
    keep_yearly: Option<Count>,
    /// Keep every snapshot newer than the newest one minus DURATION:
    /// numbers with y, mo (months), w, d, h, e.g. 1y6mo or 36h (`m` is
    /// refused: months or minutes?).
    #[arg(
        long = "keep-within",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within: Option<Duration>,
    /// Among the snapshots within DURATION of the newest, keep the newest of each hour.
    #[arg(
        long = "keep-within-hourly",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within_hourly: Option<Duration>,
    /// The same, one per day.
    #[arg(
        long = "keep-within-daily",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within_daily: Option<Duration>,
    /// The same, one per ISO week.
    #[arg(
        long = "keep-within-weekly",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within_weekly: Option<Duration>,
    /// The same, one per month.
    #[arg(
        long = "keep-within-monthly",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within_monthly: Option<Duration>,
    /// The same, one per year.
    #[arg(
        long = "keep-within-yearly",
        value_name = "DURATION",
        allow_hyphen_values = true
    )]
    keep_within_yearly: Option<Duration>,
}

impl PolicyArgs {
    /// The rules given, or `None` when no `--keep-*` option was.
    pub fn policy(&self) -> Option<Policy> {
        let p = Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
        };
        (p != Policy::default()).then_some(p)
    }
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Archive(s) to thin, in the order given.
    #[arg(short = 'A', long = "archive", value_name = "NAME", required = true)]
    archives: Vec<String>,
    #[command(flatten)]
    rules: PolicyArgs,
    /// Count hours, days, weeks, months and years in UTC instead of the
    /// local time each snapshot was taken in.
    #[arg(long)]
    utc: bool,
    /// Show what would be removed and why each kept snapshot stays;
    /// change nothing.
    #[arg(long = "dry-run", short = 'n')]
    dry_run: bool,
    /// Afterwards remove the content no snapshot uses any more, as
    /// `prune -R` does, once per repository.
    #[arg(long, conflicts_with = "dry_run")]
    prune: bool,
    /// Without --keep-* rules: pass over archives that store no policy
    /// instead of failing (for scheduled runs over several archives).
    #[arg(long = "skip-without-policy")]
    skip_without_policy: bool,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct PolicyCmdArgs {
    /// Archive(s) whose policy to show or set.
    #[arg(short = 'A', long = "archive", value_name = "NAME", required = true)]
    archives: Vec<String>,
    #[command(flatten)]
    rules: PolicyArgs,
    /// Remove the stored policy (snapshots are then kept until deleted).
    #[arg(long)]
    clear: bool,
}

pub fn forget(ctx: &Context, args: ForgetArgs, command: &str) -> anyhow::Result<u8> {
    let opts = ForgetOptions {
        policy: args.rules.policy(),
        utc: args.utc,
        dry_run: args.dry_run,
        skip_without_policy: args.skip_without_policy,
    };
    let quiet = args.json;
    let run = forget::forget_archives(
        ctx,
        &args.archives,
        &opts,
        args.prune,
        command,
        &mut |archive, d| {
            if !quiet {
                outln!(
                    "Removed snapshot {} of `{archive}` ({} content references released).",
                    d.name.stamp(),
                    d.released
                );
            }
        },
    );
    let mut status = EXIT_OK;
    let mut archives = Vec::new();
    for (name, result) in &run.archives {
        match result {
            Ok(Some(r)) => {
                if !r.unreadable.is_empty() || !r.not_removed.is_empty() {
                    status = status.max(EXIT_SKIPPED);
                }
                warn_unreadable(r);
                if !args.json {
                    print_report(r);
                }
                archives.push(report_json(r));
            }
            Ok(None) => {
                if !args.json {
                    outln!("`{name}`: no retention policy stored; passed over.");
                }
                archives.push(json!({"archive": name, "skipped": "no stored retention policy"}));
            }
            Err(e) => {
                eprintln!("epygibus: error: archive `{name}`: {e}");
                archives.push(json!({"archive": name, "error": e.to_string()}));
                status = EXIT_ERROR;
            }
        }
    }
    let mut prunes = Vec::new();
    for (repo, result) in &run.prunes {
        match result {
            Ok(outcome) => {
                if !args.json {
                    out!("Pruned repository `{repo}`: ");
                    print_prune(outcome, repo.as_str());
                }
                let mut v = prune_json(outcome);
                v["repository"] = json!(repo.as_str());
                prunes.push(v);
            }
            Err(e) => {
                eprintln!("epygibus: error: pruning repository `{repo}`: {e}");
                prunes.push(json!({"repository": repo.as_str(), "error": e.to_string()}));
                status = EXIT_ERROR;
            }
        }
    }
    if args.json {
        let mut doc = json!({"dry_run": args.dry_run, "archives": archives});
        if args.prune {
            doc["prune"] = json!(prunes);
        }
        print_json(&doc);
    }
    Ok(status)
}

fn warn_unreadable(r: &ForgetReport) {
    for (name, why) in &r.unreadable {
        eprintln!(
            "epygibus: warning: `{}`: snapshot {} was left alone, its header cannot be read ({why}); `epygibus check -A {} --repair` sets it aside",
            r.archive,
            name.stamp(),
            r.archive
        );
    }
    for (name, why) in &r.not_removed {
        eprintln!(
            "epygibus: warning: `{}`: snapshot {} was not removed, it cannot be read ({why}); `epygibus check -A {} --repair` sets it aside",
            r.archive,
            name.stamp(),
            r.archive
        );
    }
}

/// Where the rules came from and which clock buckets use, in words.
fn describe_policy(r: &ForgetReport) -> String {
    format!(
        "{}{}, {}",
        r.policy,
        if r.stored {
            " (stored in the archive's spec)"
        } else {
            ""
        },
        if r.utc {
            "counted in UTC"
        } else {
            "counted in each snapshot's local time"
        }
    )
}

fn print_report(r: &ForgetReport) {
    let total = r.verdicts.len();
    if r.dry_run {
        outln!("`{}`: policy {}", r.archive, describe_policy(r));
        let mut t = Table::new(&["", "SNAPSHOT", "LOCAL TIME", "KEPT AS"]);
        for v in r.verdicts.iter().rev() {
            t.row(vec![
                if v.keep() { "keep" } else { "remove" }.to_owned(),
                v.name.stamp(),
                local_time(v),
                reasons(v).join(", "),
            ]);
        }
        out!("{}", t.render());
        outln!(
            "Would remove {} of {total} snapshots of `{}`; nothing was changed.",
            r.to_remove(),
            r.archive
        );
    } else {
        outln!(
            "`{}`: kept {}, removed {} of {total} snapshots; policy {}.",
            r.archive,
            total - r.removed(),
            r.removed(),
            describe_policy(r)
        );
    }
}

/// The snapshot's wall-clock time where it was taken, with its offset.
fn local_time(v: &Verdict) -> String {
    let civil = Civil::from_unix(v.name.secs + i64::from(v.offset)).dashed();
    let (date, time) = civil.split_at(10);
    let sign = if v.offset < 0 { '-' } else { '+' };
    let abs = v.offset.unsigned_abs();
    format!(
        "{date} {}{}{sign}{:02}:{:02}",
        &time[1..].replace('-', ":"),
        if v.offset_recorded { " " } else { " ~" },
        abs / 3600,
        abs % 3600 / 60
    )
}

fn reasons(v: &Verdict) -> Vec<String> {
    v.reasons.iter().map(ToString::to_string).collect()
}

fn report_json(r: &ForgetReport) -> Value {
    let snapshots: Vec<Value> = r
        .verdicts
        .iter()
        .rev()
        .map(|v| {
            json!({
                "name": v.name.stamp(),
                "time": Civil::from_unix(v.name.secs).rfc3339(),
                "utc_offset": v.offset,
                "utc_offset_recorded": v.offset_recorded,
                "keep": v.keep(),
                "reasons": reasons(v),
                "removed": v.removed,
            })
        })
        .collect();
    let named = |list: &[(crate::snapshot::format::SnapshotName, String)]| {
        list.iter()
            .map(|(n, e)| json!({"name": n.stamp(), "error": e}))
            .collect::<Vec<_>>()
    };
    json!({
        "archive": r.archive.as_str(),
        "repository": r.repo.as_str(),
        "policy": policy_json(&r.policy),
        "policy_from": if r.stored { "spec" } else { "options" },
        "zone": if r.utc { "utc" } else { "local" },
        "snapshots": snapshots,
        "kept": r.verdicts.len() - r.to_remove(),
        "to_remove": r.to_remove(),
        "removed": r.removed(),
        "released_references": r.released,
        "unreadable": named(&r.unreadable),
        "not_removed": named(&r.not_removed),
    })
}

/// A policy as JSON: one key per rule given, as stored in the spec
/// (`keep_daily`, `keep_within`, …); counts are numbers or "unlimited",
/// durations strings.
pub fn policy_json(p: &Policy) -> Value {
    let mut map = serde_json::Map::new();
    for (key, value) in p.to_fields() {
        let v = match value.parse::<u64>() {
            Ok(n) if !key.starts_with("keep_within") => json!(n),
            _ => json!(value),
        };
        map.insert(key, v);
    }
    Value::Object(map)
}

pub fn policy(ctx: &Context, args: PolicyCmdArgs) -> anyhow::Result<u8> {
    let rules = args.rules.policy();
    if args.clear && rules.is_some() {
        anyhow::bail!("give either --keep-* rules or --clear, not both; nothing was changed");
    }
    for archive in &args.archives {
        let name: Name = archive.parse()?;
        if rules.is_none() && !args.clear {
            match forget::stored_policy(ctx, &name)? {
                Some(p) => outln!("`{name}`: {p}"),
                None => outln!("`{name}`: no retention policy (snapshots are kept until deleted)"),
            }
            continue;
        }
        let change = forget::set_policy(ctx, archive, rules.as_ref())?;
        match (&rules, change.changed) {
            (_, false) => outln!("`{name}`: no change."),
            (Some(p), true) => outln!(
                "`{name}`: retention policy set to {p}; `epygibus forget -A {name}` applies it."
            ),
            (None, true) => {
                outln!("`{name}`: retention policy removed (snapshots are kept until deleted).")
            }
        }
        if let Some(e) = change.copy_error {
            eprintln!(
                "epygibus: warning: the spec copy beside the snapshots could not be updated ({e}); the next `bu` writes it"
            );
        }
    }
    Ok(EXIT_OK)
}
