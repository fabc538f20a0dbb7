//! Snapshot commands: bu, lss, del, and compress of one snapshot.

use clap::{ArgGroup, Args};

use super::archive::{build_stats_json, build_stats_table, snapshot_json};
use super::output::print_json;
use super::output::{Table, size};
use super::restore::SourceArgs;
use super::{Context, EXIT_ERROR, EXIT_OK, EXIT_SKIPPED};
use crate::clock::human_duration;
use crate::ops::backup::{self, BackupOptions};
use crate::ops::housekeeping::{self, DeleteOptions, Doomed, SnapshotCompress};
use crate::ops::source::Source;
use crate::snapshot::forget::{BackupTime, ParseTimeError, Zone, parse_backup_time};
use crate::snapshot::format::{self, SnapshotName};
use crate::snapshot::generate::ProblemKind;
use crate::snapshot::{self, BackupReport, damaged};
use serde_json::{Value, json};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("compression").args(["uncompressed", "compressed"])))]
pub struct BuArgs {
    /// Archive(s) to back up, in the order given.
    #[arg(short = 'A', long = "archive", value_name = "NAME", required = true)]
    archives: Vec<String>,
    /// Print statistics of each snapshot.
    #[arg(long)]
    stats: bool,
    /// Do not report skipped broken symlinks.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Write this snapshot uncompressed.
    #[arg(short = 'U', long = "uncompressed")]
    uncompressed: bool,
    /// Write this snapshot compressed.
    #[arg(short = 'C', long = "compressed")]
    compressed: bool,
    /// Read every file again instead of trusting unchanged size and times.
    #[arg(long = "force-read", alias = "force_read")]
    force_read: bool,
    /// With --stats: print one JSON document instead (docs/json.md).
    #[arg(long, requires = "stats")]
    json: bool,
    /// Record the snapshot as taken at this local time, "YYYY-MM-DD
    /// HH:MM:SS" (for imports, or to try retention rules); which files
    /// changed is still judged by the real clock.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    time: Option<BackupTime>,
}

/// `--time` in the system's zone (TZ, else /etc/localtime).
fn parse_time(text: &str) -> Result<BackupTime, ParseTimeError> {
    parse_backup_time(text, &Zone::system())
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("stats_kind").args(["build_stats", "storage_stats"])))]
pub struct LssArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// List the newest snapshot first.
    #[arg(long = "newest-first", alias = "newest_first")]
    newest_first: bool,
    /// Show how each snapshot was built (from its header only).
    #[arg(long = "build-stats", alias = "build_stats")]
    build_stats: bool,
    /// Show the storage each snapshot uses.
    #[arg(long = "storage-stats", alias = "storage_stats")]
    storage_stats: bool,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").args(["back", "all_but_newest", "snapshot"])))]
pub struct DelArgs {
    /// Archive to delete from.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: String,
    /// Which snapshot: N back from the newest (0 = newest), or with a
    /// negative N from the oldest (-1 = oldest, the default).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    back: Option<i64>,
    /// Delete all snapshots but the newest N.
    #[arg(long = "all-but-newest", alias = "all_but_newest", value_name = "N")]
    all_but_newest: Option<usize>,
    /// The snapshot to delete, by name (YYYY-MM-DD-HH-MM-SS, as `lss` lists it).
    #[arg(long, value_name = "NAME", value_parser = parse_stamp)]
    snapshot: Option<SnapshotName>,
    /// Allow deleting the archive's last snapshot.
    #[arg(long = "remove-last-ok", alias = "remove_last_ok")]
    remove_last_ok: bool,
    /// If the snapshot cannot be read, set it aside (renamed to
    /// <name>.damaged, kept) instead of refusing; its content keeps its
    /// counts until `check -R REPO --repair --lower-counts`.
    #[arg(long, conflicts_with = "all_but_newest")]
    force: bool,
}

fn parse_stamp(text: &str) -> Result<SnapshotName, String> {
    SnapshotName::parse(text.trim().as_bytes()).ok_or_else(|| {
        format!("`{text}` is not a snapshot name: write YYYY-MM-DD-HH-MM-SS, as `lss` lists it")
    })
}

pub fn bu(ctx: &Context, args: BuArgs, command: &str) -> anyhow::Result<u8> {
    let mut status = EXIT_OK;
    let mut reports = Vec::new();
    for archive in &args.archives {
        match bu_one(ctx, &args, archive, command) {
            Ok((code, report)) => {
                // An error outranks skipped files, whatever the order.
                if status != EXIT_ERROR {
                    status = status.max(code);
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("epygibus: error: archive `{archive}`: {e:#}");
                reports.push(json!({"archive": archive, "error": format!("{e:#}")}));
                status = EXIT_ERROR;
            }
        }
    }
    if args.json {
        print_json(&json!({ "backups": reports }));
    }
    Ok(status)
}

fn bu_one(
    ctx: &Context,
    args: &BuArgs,
    archive: &str,
    command: &str,
) -> anyhow::Result<(u8, Value)> {
    let options = BackupOptions {
        compress: if args.uncompressed {
            Some(false)
        } else if args.compressed {
            Some(true)
        } else {
            None
        },
        force_read: args.force_read,
        time: args.time,
    };
    let bar = super::progress::Bar::new(args.quiet);
    let report = backup::backup(ctx, archive, options, command, &bar)?;
    for w in &report.warnings {
        eprintln!("epygibus: warning: {w}");
    }
    if let Some(why) = &report.previous_unusable {
        eprintln!(
            "epygibus: warning: the previous snapshot could not be used, so every file was read: {why}"
        );
    }
    let mut skipped = false;
    for p in &report.problems {
        match p.kind {
            ProblemKind::BrokenLink if args.quiet => {}
            ProblemKind::BrokenLink => eprintln!("epygibus: {}", p.message),
            _ => {
                skipped = true;
                eprintln!("epygibus: {}", p.message);
            }
        }
    }
    if args.stats && !args.json {
        print_bu_stats(archive, &report);
    }
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| {
            json!({
                "path": p.path.display().to_string(),
                "kind": match p.kind {
                    ProblemKind::BrokenLink => "broken_link",
                    ProblemKind::MissingInclude => "missing_include",
                    ProblemKind::Skipped => "skipped",
                },
                "message": p.message,
            })
        })
        .collect();
    let mut value = build_stats_json(&report.header);
    value["archive"] = json!(archive);
    value["snapshot"] = json!(report.name.stamp());
    value["compressed"] = json!(report.name.compressed);
    value["size_on_disk"] = json!(report.size_on_disk);
    value["problems"] = json!(problems);
    Ok((if skipped { EXIT_SKIPPED } else { EXIT_OK }, value))
}

fn print_bu_stats(archive: &str, r: &BackupReport) {
    let s = &r.header.stats;
    outln!(
        "{}: snapshot {} ({} on disk)",
        archive,
        r.name.stamp(),
        size(r.size_on_disk)
    );
    outln!(
        "  files {}, links {}, directories {}, content {}",
        s.counts.files,
        s.counts.links,
        s.counts.dirs,
        size(s.counts.content_bytes)
    );
    outln!(
        "  files read {}, new content items {} ({} of content, {} stored), skipped {}",
        s.files_read,
        s.new_items,
        size(s.new_content_bytes),
        size(s.new_stored_bytes),
        s.skipped
    );
    outln!(
        "  time {} (walk {}, read+hash+compress+store {}, index+snapshot {})",
        human_duration(s.elapsed_secs),
        human_duration(s.walk_secs),
        human_duration(s.store_secs),
        human_duration(s.write_secs)
    );
}

pub fn lss(ctx: &Context, args: LssArgs) -> anyhow::Result<u8> {
    if let Some(dir) = args.source.spec().original_dir() {
        let (build, storage) = (args.build_stats, args.storage_stats);
        return super::import::lss_original(dir, args.newest_first, build, storage, args.json);
    }
    let source = Source::resolve(ctx, &args.source.spec())?;
    let dir = source.snapshots.as_ref();
    let mut names = source.snapshots()?;
    if args.newest_first {
        names.reverse();
    }
    let repo = if args.storage_stats {
        Some(source.open_repo_read_only(ctx)?)
    } else {
        None
    };
    if args.json {
        let rows: Vec<Value> = names
            .iter()
            .map(|name| {
                let mut v = snapshot_json(dir, name, args.build_stats);
                match format::verify(dir, name) {
                    Ok(h) => {
                        v["readable"] = json!(true);
                        v["salvaged_from"] = json!(h.salvaged_from);
                    }
                    Err(e) => {
                        v["readable"] = json!(false);
                        v["error"] = json!(e.to_string());
                    }
                }
                if let Some(repo) = &repo {
                    v["storage_stats"] = match snapshot::storage_stats(dir, name, repo) {
                        Ok(s) => json!({
                            "occupies": s.occupies,
                            "files": s.files,
                            "links": s.links,
                            "holds": s.holds,
                            "content_items": s.content_items,
                            "stored_bytes": s.stored_bytes,
                            "share_bytes": s.share.round() as u64,
                        }),
                        Err(e) => json!({ "error": e.to_string() }),
                    };
                }
                v
            })
            .collect();
        let set_aside = damaged::list_set_aside(dir).unwrap_or_default();
        print_json(&json!({
            "snapshot_dir": dir.location().to_string(),
            "snapshots": rows,
            "set_aside": set_aside,
        }));
    } else if args.build_stats {
        out!("{}", build_stats_table(dir, &names).render());
    } else if let Some(repo) = &repo {
        let mut t = Table::new(&[
            "SNAPSHOT", "OCCUPIES", "FILES", "LINKS", "HOLDS", "ITEMS", "STORED", "SHARE",
        ]);
        for name in &names {
            match snapshot::storage_stats(dir, name, repo) {
                Ok(s) => t.row(vec![
                    name.stamp(),
                    size(s.occupies),
                    s.files.to_string(),
                    s.links.to_string(),
                    size(s.holds),
                    s.content_items.to_string(),
                    size(s.stored_bytes),
                    size(s.share.round() as u64),
                ]),
                Err(e) => t.row(vec![name.stamp(), format!("(unreadable: {e})")]),
            }
        }
        out!("{}", t.render());
    } else {
        for name in &names {
            let mark = if name.compressed { "**" } else { "" };
            match format::verify(dir, name) {
                Ok(h) => match h.salvaged_from {
                    Some(from) => outln!(
                        "{}{mark}  (salvaged from the damaged {from}: may lack entries)",
                        name.stamp()
                    ),
                    None => outln!("{}{mark}", name.stamp()),
                },
                Err(e) => outln!("{}{mark}  (unreadable: {e})", name.stamp()),
            }
        }
    }
    Ok(EXIT_OK)
}

pub fn del(ctx: &Context, args: DelArgs, command: &str) -> anyhow::Result<u8> {
    let opts = DeleteOptions {
        which: match (args.all_but_newest, args.snapshot) {
            (Some(keep), _) => Doomed::AllButNewest(keep),
            (None, Some(name)) => Doomed::Named(name),
            (None, None) => Doomed::Back(args.back.unwrap_or(-1)),
        },
        remove_last_ok: args.remove_last_ok,
        force: args.force,
    };
    let archive = &args.archive;
    let outcome = housekeeping::delete(ctx, archive, opts, command, &mut |report| {
        outln!(
            "Deleted snapshot {} of `{archive}` ({} content references released).",
            report.name.stamp(),
            report.released
        );
    })?;
    if let Some(s) = &outcome.set_aside {
        outln!(
            "Set snapshot {} of `{archive}` aside as {}: it cannot be read ({}). The content it used keeps its counts until `epygibus check -R {} --repair --lower-counts`.",
            s.name.stamp(),
            s.places.join(", "),
            s.reason,
            s.repo
        );
    } else if outcome.deleted.is_empty() {
        outln!("Nothing to do.");
    }
    Ok(EXIT_OK)
}

/// `compress -A NAME [--back N] [-U]`: one snapshot file.
pub fn compress_snapshot(
    ctx: &Context,
    archive: &str,
    back: i64,
    uncompress: bool,
    command: &str,
) -> anyhow::Result<u8> {
    match housekeeping::compress_snapshot(ctx, archive, back, uncompress, command)? {
        SnapshotCompress::NothingToDo => outln!("Nothing to do."),
        SnapshotCompress::Converted {
            name,
            before,
            after,
        } => {
            let verb = if uncompress {
                "Uncompressed"
            } else {
                "Compressed"
            };
            outln!(
                "{verb} snapshot {}: {} -> {}.",
                name.stamp(),
                size(before),
                size(after)
            );
        }
    }
    Ok(EXIT_OK)
}
