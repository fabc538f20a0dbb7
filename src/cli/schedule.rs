//! `schedule`: backups that run by themselves (systemd user timers, or a
//! crontab line).

use clap::{ArgGroup, Args};
use serde_json::json;

use super::output::{Table, print_json};
use super::{Context, EXIT_OK};
use crate::ops::schedule::{self, ScheduleRequest, Scheduled, Scheduler, When};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("when").args(["daily", "hourly", "at"])))]
pub struct ScheduleArgs {
    /// Archive(s) to back up, in the order given.
    #[arg(
        short = 'A',
        long = "archive",
        value_name = "NAME",
        required_unless_present_any = ["list", "remove"],
        requires = "when"
    )]
    archives: Vec<String>,
    /// Every day at midnight.
    #[arg(long)]
    daily: bool,
    /// At the start of every hour.
    #[arg(long)]
    hourly: bool,
    /// When to run: a systemd calendar expression ("Mon..Fri 22:00",
    /// "*-*-* 03:30"; see `man systemd.time`), or for cron five crontab
    /// fields or HH:MM.
    #[arg(long, value_name = "CALENDAR")]
    at: Option<String>,
    /// Name of the schedule (default: the first archive's); units are
    /// epygibus-NAME.timer and .service.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Also prune each repository after the forget (reclaims the space of
    /// forgotten snapshots; reads every snapshot using the repository).
    #[arg(long)]
    prune: bool,
    /// Write systemd user units even where systemd does not seem to run.
    #[arg(long, conflicts_with = "cron")]
    systemd: bool,
    /// Print a crontab line instead of writing systemd units.
    #[arg(long)]
    cron: bool,
    /// List the schedules among the user's systemd units.
    #[arg(long, conflicts_with_all = ["archives", "remove", "daily", "hourly", "at", "name", "prune", "cron", "systemd"])]
    list: bool,
    /// Remove the units of these schedules.
    #[arg(long, value_name = "SCHEDULE", num_args = 1.., conflicts_with_all = ["archives", "daily", "hourly", "at", "name", "prune", "cron", "systemd"])]
    remove: Vec<String>,
    /// With --list: print one JSON document (schema: docs/json.md).
    #[arg(long, requires = "list")]
    json: bool,
}

pub fn schedule(ctx: &Context, args: ScheduleArgs) -> anyhow::Result<u8> {
    if args.list {
        return list(args.json);
    }
    if !args.remove.is_empty() {
        for name in &args.remove {
            let removed = schedule::remove(name)?;
            for p in &removed {
                outln!("Removed {}.", p.display());
            }
            outln!(
                "Run `systemctl --user daemon-reload` (and `systemctl --user stop epygibus-{name}.timer` if it is running)."
            );
        }
        return Ok(EXIT_OK);
    }
    let when = match (&args.at, args.hourly) {
        (Some(at), _) => When::At(at.clone()),
        (None, true) => When::Hourly,
        (None, false) => When::Daily,
    };
    let req = ScheduleRequest {
        archives: args.archives,
        when,
        name: args.name,
        prune: args.prune,
        scheduler: match (args.systemd, args.cron) {
            (true, _) => Some(Scheduler::Systemd),
            (_, true) => Some(Scheduler::Cron),
            _ => None,
        },
    };
    let without = match schedule::schedule(ctx, &req)? {
        Scheduled::Units {
            name,
            service,
            timer,
            replaced,
            enable,
            without_policy,
        } => {
            outln!(
                "{} {} and {}.",
                if replaced { "Replaced" } else { "Wrote" },
                service.display(),
                timer.display()
            );
            outln!(
                "Schedule `{name}` runs `bu`, then `forget` by the stored policies; a run missed while the machine is off happens when it is next up."
            );
            outln!("Start it with: {enable}");
            outln!("To have it run while you are not logged in: loginctl enable-linger \"$USER\"");
            without_policy
        }
        Scheduled::Cron {
            line,
            without_policy,
        } => {
            eprintln!(
                "epygibus: systemd does not run here (or --cron was given); add this line with `crontab -e`:"
            );
            outln!("{line}");
            without_policy
        }
    };
    for a in without {
        eprintln!(
            "epygibus: note: `{a}` stores no retention policy, so its snapshots are kept until deleted; set one with `epygibus policy -A {a} --keep-daily 7 --keep-weekly 4 --keep-monthly 12`"
        );
    }
    Ok(EXIT_OK)
}

fn list(json: bool) -> anyhow::Result<u8> {
    let found = schedule::list()?;
    if json {
        let rows: Vec<_> = found
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "archives": s.archives,
                    "when": s.when,
                    "service": s.service.display().to_string(),
                    "timer": s.timer.display().to_string(),
                    "enabled": s.enabled,
                })
            })
            .collect();
        print_json(&json!({
            "unit_dir": schedule::unit_dir()?.display().to_string(),
            "schedules": rows,
        }));
        return Ok(EXIT_OK);
    }
    if found.is_empty() {
        outln!(
            "No schedules in {} (crontab lines are not listed).",
            schedule::unit_dir()?.display()
        );
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(&["SCHEDULE", "WHEN", "ENABLED", "ARCHIVES", "TIMER"]);
    for s in &found {
        t.row(vec![
            s.name.clone(),
            s.when.clone(),
            if s.enabled { "yes" } else { "no" }.to_owned(),
            s.archives.join(" "),
            s.timer.display().to_string(),
        ]);
    }
    out!("{}", t.render());
    Ok(EXIT_OK)
}
