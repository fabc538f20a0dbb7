//! `copy`: snapshots of an archive into an archive on another repository.

use clap::Args;
use serde_json::json;

use super::output::{print_json, size};
use super::{Context, EXIT_OK};
use crate::ops::copy::{self, CopyOptions};

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Archive to copy snapshots from.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: String,
    /// Archive to copy them into (on another repository; create it first
    /// with `epygibus new`).
    #[arg(long = "to-archive", alias = "to_archive", value_name = "NAME")]
    to_archive: String,
    /// Copy only this snapshot: N back from the newest (0 = newest), or
    /// negative from the oldest (-1 = oldest). Default: every snapshot the
    /// target does not have yet.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    back: Option<i64>,
    /// Print nothing but errors (no progress).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Print one JSON document (docs/json.md).
    #[arg(long)]
    json: bool,
}

pub fn copy(ctx: &Context, args: CopyArgs, command: &str) -> anyhow::Result<u8> {
    let bar = super::progress::Bar::new(args.quiet || args.json);
    let opts = CopyOptions { back: args.back };
    let (json, quiet) = (args.json, args.quiet);
    let outcome = copy::copy(
        ctx,
        &args.archive,
        &args.to_archive,
        opts,
        command,
        &bar,
        &mut |c| {
            if !json && !quiet {
                outln!(
                    "Copied {}: {} files, {} new items ({} stored).",
                    c.name.stamp(),
                    c.references,
                    c.new_items,
                    size(c.new_stored_bytes)
                );
            }
        },
    )?;
    if json {
        print_json(&json!({
            "copied": outcome.copied.iter().map(|c| json!({
                "snapshot": c.name.stamp(),
                "files": c.references,
                "new_items": c.new_items,
                "new_content_bytes": c.new_content_bytes,
                "new_stored_bytes": c.new_stored_bytes,
            })).collect::<Vec<_>>(),
            "already": outcome.already.iter().map(|n| n.stamp()).collect::<Vec<_>>(),
        }));
    } else if !quiet && outcome.copied.is_empty() {
        outln!(
            "Nothing to copy: archive `{}` has every snapshot selected already.",
            args.to_archive
        );
    }
    Ok(EXIT_OK)
}
