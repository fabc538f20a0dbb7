//! `import`, and `lss -E` on a snapshot directory of the original
//! epygibus: bringing its backups along, or looking at them in place.

use std::path::PathBuf;

use clap::{ArgGroup, Args};
use serde_json::json;

use super::output::{Table, print_json, size};
use super::{Context, EXIT_OK, EXIT_SKIPPED};
use crate::clock::human_duration;
use crate::ops::import::{self, ImportFrom, ImportOptions, ImportReport};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("from").required(true).args(["exigency", "original_config"])))]
pub struct ImportArgs {
    /// A snapshot directory of the original epygibus
    /// (…/epygibus.d/snapshots/<host>/<user>/<archive>); needs -A.
    #[arg(
        short = 'E',
        long = "exigency",
        value_name = "ORIGINAL_SNAPSHOT_DIR",
        requires = "archive"
    )]
    exigency: Option<PathBuf>,
    /// The archive to import into: created when it does not exist yet.
    #[arg(short = 'A', long = "archive", value_name = "NEW_ARCHIVE")]
    archive: Option<String>,
    /// The original's configuration directory (usually
    /// ~/.config/epygibus.d): imports every archive it names, each into an
    /// archive of the same name.
    #[arg(
        long = "original-config",
        alias = "original_config",
        value_name = "DIR",
        conflicts_with = "archive"
    )]
    original_config: Option<PathBuf>,
    /// With --original-config: where the backup disk is mounted now, when
    /// not where that configuration says (the directory holding
    /// `epygibus.d`).
    #[arg(
        long = "mounted-at",
        alias = "mounted_at",
        value_name = "DIR",
        requires = "original_config"
    )]
    mounted_at: Option<PathBuf>,
    /// Repository for the content of a new archive (default: as `new`).
    #[arg(short = 'R', long = "repo", value_name = "REPO")]
    repo: Option<String>,
    /// Where a new archive's snapshots go (default: the location of its
    /// repository).
    #[arg(long, value_name = "DIR")]
    location: Option<PathBuf>,
    /// The time zone of the machine that made the backups: the original
    /// named snapshots by its local time (default: this machine's zone;
    /// e.g. UTC, Europe/Berlin).
    #[arg(long = "tz", value_name = "ZONE")]
    tz: Option<String>,
    /// Print one JSON document (docs/json.md).
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn import(ctx: &Context, args: ImportArgs, command: &str) -> anyhow::Result<u8> {
    let from = match (args.exigency, args.original_config) {
        (Some(dir), _) => ImportFrom::SnapshotDir {
            dir,
            archive: args.archive.expect("clap requires -A with -E"),
        },
        (None, Some(dir)) => ImportFrom::Config {
            dir,
            mounted_at: args.mounted_at,
        },
        (None, None) => unreachable!("clap requires -E or --original-config"),
    };
    let opts = ImportOptions {
        from,
        repo: args.repo,
        location: args.location,
        zone: args.tz,
    };
    let bar = super::progress::Bar::new(args.quiet);
    let report = import::import(ctx, &opts, command, &bar)?;
    for a in &report.archives {
        for s in &a.skipped {
            eprintln!("epygibus: skipped: {s}");
        }
    }
    if args.json {
        print_json(&report_json(&report));
    } else {
        print_report(&report);
    }
    Ok(if report.skipped() > 0 {
        EXIT_SKIPPED
    } else {
        EXIT_OK
    })
}

fn print_report(report: &ImportReport) {
    for a in &report.archives {
        if a.imported.is_empty() && a.already == 0 && !a.skipped.is_empty() {
            outln!("Nothing imported from {}.", a.from.display());
            continue;
        }
        outln!(
            "{} `{}` from {}: {} snapshot(s) imported, {} imported before, {} skipped.",
            if a.created {
                "Created archive"
            } else {
                "Archive"
            },
            a.archive,
            a.from.display(),
            a.imported.len(),
            a.already,
            a.skipped.len()
        );
        for i in &a.imported {
            outln!(
                "  {} <- {}: {} files, {} new items ({})",
                i.name.stamp(),
                i.original.file_name().unwrap_or_default().to_string_lossy(),
                i.files,
                i.new_items,
                size(i.new_content_bytes)
            );
        }
    }
}

fn report_json(report: &ImportReport) -> serde_json::Value {
    let archives: Vec<_> = report
        .archives
        .iter()
        .map(|a| {
            let imported: Vec<_> = a
                .imported
                .iter()
                .map(|i| {
                    json!({
                        "original": i.original.display().to_string(),
                        "name": i.name.stamp(),
                        "files": i.files,
                        "new_items": i.new_items,
                        "new_content_bytes": i.new_content_bytes,
                    })
                })
                .collect();
            json!({
                "archive": a.archive,
                "from": a.from.display().to_string(),
                "created": a.created,
                "imported": imported,
                "already_imported": a.already,
                "skipped": a.skipped,
            })
        })
        .collect();
    json!({ "archives": archives })
}

/// `lss -E` on a snapshot directory of the original: its own names (the
/// local time of the machine that made them), `**` for compressed ones.
pub fn lss_original(
    dir: &std::path::Path,
    newest_first: bool,
    build: bool,
    storage: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let mut rows = crate::ops::original::list(dir, storage)?;
    if newest_first {
        rows.reverse();
    }
    if json {
        let list: Vec<_> = rows.iter().map(|r| row_json(r, build)).collect();
        print_json(&json!({
            "snapshot_dir": dir.display().to_string(),
            "original": true,
            "snapshots": list,
        }));
        return Ok(EXIT_OK);
    }
    if build {
        let mut t = Table::new(&["SNAPSHOT", "FILES", "LINKS", "CONTENT", "NEW ITEMS", "TIME"]);
        for r in &rows {
            match &r.stats {
                Ok(Some(s)) => t.row(vec![
                    r.name.stamp.dashed(),
                    s.files.to_string(),
                    s.links.to_string(),
                    size(s.content_bytes),
                    s.new_items.to_string(),
                    human_duration(s.real_secs),
                ]),
                Ok(None) => t.row(vec![r.name.stamp.dashed(), "(not recorded)".into()]),
                Err(e) => t.row(vec![r.name.stamp.dashed(), format!("(unreadable: {e})")]),
            }
        }
        out!("{}", t.render());
    } else if storage {
        let mut t = Table::new(&[
            "SNAPSHOT", "OCCUPIES", "FILES", "LINKS", "HOLDS", "ITEMS", "STORED", "SHARE",
        ]);
        for r in &rows {
            match &r.storage {
                Some(Ok(s)) => t.row(vec![
                    r.name.stamp.dashed(),
                    size(s.occupies),
                    s.files.to_string(),
                    s.links.to_string(),
                    size(s.holds),
                    s.content_items.to_string(),
                    size(s.stored_bytes),
                    size(s.share.round() as u64),
                ]),
                Some(Err(e)) => t.row(vec![r.name.stamp.dashed(), format!("(unreadable: {e})")]),
                None => {}
            }
        }
        out!("{}", t.render());
    } else {
        for r in &rows {
            let mark = if r.name.compressed { "**" } else { "" };
            outln!("{}{mark}", r.name.stamp.dashed());
        }
    }
    Ok(EXIT_OK)
}

fn row_json(r: &crate::ops::original::OrigListing, build: bool) -> serde_json::Value {
    let mut v = json!({
        "name": r.name.stamp.dashed(),
        "file": r.name.file_name(),
        "compressed": r.name.compressed,
        "file_size": r.file_size,
    });
    if build {
        v["build_stats"] = match &r.stats {
            Ok(Some(s)) => json!({
                "files": s.files,
                "links": s.links,
                "content_bytes": s.content_bytes,
                "new_items": s.new_items,
                "seconds": { "total": s.real_secs },
            }),
            Ok(None) => serde_json::Value::Null,
            Err(e) => json!({ "error": e }),
        };
    }
    if let Some(storage) = &r.storage {
        v["storage_stats"] = match storage {
            Ok(s) => json!({
                "occupies": s.occupies,
                "files": s.files,
                "links": s.links,
                "holds": s.holds,
                "content_items": s.content_items,
                "stored_bytes": s.stored_bytes,
                "share_bytes": s.share.round() as u64,
            }),
            Err(e) => json!({ "error": e }),
        };
    }
    v
}
