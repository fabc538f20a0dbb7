//! Archive set-up commands: new, edit, la, show.

use std::path::PathBuf;
use std::process::Command as Process;

use anyhow::{Context as _, bail};
use clap::{ArgGroup, Args};

use super::output::{Table, print_json, rfc3339_ns, size};
use super::{Context, EXIT_OK};
use crate::clock::human_duration;
use crate::config::{Attachment, ListFile, Name};
use crate::ops::archive::replace_list;
use crate::ops::source::archive;
use crate::setup::{self, NewArchive};
use crate::snapshot::format;
use crate::store::{Location, Store};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Name of the new archive (letters, digits, `.`, `_`, `-`).
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: String,
    /// File or directory to back up (repeat for more). A symlink is backed
    /// up together with its target.
    #[arg(short = 'I', long = "include", value_name = "PATH", required = true)]
    includes: Vec<PathBuf>,
    /// Repository for the content (default: `default`, created on first use).
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: Option<String>,
    /// Directory (or s3://BUCKET/PREFIX) to hold the snapshots (default:
    /// the data directory, $EPYGIBUS_DATA_DIR or ~/.local/share/epygibus).
    #[arg(long, short = 'L', value_name = "DIR|s3://BUCKET/PREFIX", value_parser = super::parse_location)]
    location: Option<Location>,
    /// Leave out directories matching GLOB (`-Xd GLOB`; repeatable). A glob
    /// without `/` matches names at any depth, one with `/` absolute paths.
    #[arg(
        long = "exclude-dirs-matching",
        alias = "exclude_dirs_matching",
        value_name = "GLOB"
    )]
    exclude_dirs: Vec<String>,
    /// Leave out files and symlinks matching GLOB (`-Xf GLOB`; repeatable).
    #[arg(
        long = "exclude-files-matching",
        alias = "exclude_files_matching",
        value_name = "GLOB"
    )]
    exclude_files: Vec<String>,
    /// Keep broken symlinks in snapshots instead of skipping them.
    #[arg(long = "keep-broken-soft-links", alias = "keep_broken_soft_links")]
    keep_broken: bool,
    /// Write snapshots uncompressed by default.
    #[arg(short = 'U', long = "uncompressed")]
    uncompressed: bool,
    /// Treat a file whose inode number changed as changed (leave off on
    /// NAS mounts whose inode numbers are not stable).
    #[arg(long = "compare-inodes", alias = "compare_inodes")]
    compare_inodes: bool,
    /// Retention rules to store with the archive (`forget -A NAME` applies them).
    #[command(flatten)]
    rules: super::forget::PolicyArgs,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("list").required(true).args(["includes", "excluded_dirs", "excluded_files"])))]
pub struct EditArgs {
    /// Edit the paths to back up.
    #[arg(long)]
    includes: bool,
    /// Edit the globs of directories to leave out.
    #[arg(long = "excluded-dirs", alias = "excluded_dirs")]
    excluded_dirs: bool,
    /// Edit the globs of files to leave out.
    #[arg(long = "excluded-files", alias = "excluded_files")]
    excluded_files: bool,
    /// Archive to edit.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: String,
}

#[derive(Args, Debug)]
pub struct ListArchivesArgs {
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Archive name (see `epygibus la`).
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    pub archive: String,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

pub fn new(ctx: &Context, args: NewArgs) -> anyhow::Result<u8> {
    let name: Name = args.archive.parse()?;
    let repo = match &args.repo {
        Some(r) => setup::repo_for_new(&ctx.config, &r.parse()?, args.location.as_ref())?,
        None => {
            let (spec, created) = setup::default_repository(&ctx.config)?;
            if created {
                outln!(
                    "Created repository `{}` at {} for content.",
                    spec.name,
                    spec.location
                );
            }
            spec
        }
    };
    let location = match args.location {
        Some(l) => l,
        None => Location::Dir(setup::default_location()?),
    };
    let spec = setup::create_archive(
        &ctx.config,
        NewArchive {
            name,
            repo,
            location,
            includes: args.includes,
            excluded_dirs: args.exclude_dirs,
            excluded_files: args.exclude_files,
            compress: !args.uncompressed,
            keep_broken_soft_links: args.keep_broken,
            compare_inodes: args.compare_inodes,
            policy: args.rules.policy(),
            keys: ctx.keys.clone(),
        },
    )?;
    outln!(
        "Created archive `{}`: snapshots in {}, content in repository `{}`.",
        spec.name,
        spec.snapshot_dir,
        spec.repo
    );
    Ok(EXIT_OK)
}

pub fn edit(ctx: &Context, args: EditArgs) -> anyhow::Result<u8> {
    let name: Name = args.archive.parse()?;
    // Refused before the editor opens, not after.
    archive(ctx, name.as_str())?.check_writable()?;
    let list = if args.includes {
        ListFile::Includes
    } else if args.excluded_dirs {
        ListFile::ExcludedDirs
    } else {
        ListFile::ExcludedFiles
    };
    let path = ctx.config.archive_list_path(&name, list);
    // Edit a copy; the spec changes only if the result is valid.
    let original = std::fs::read(&path).unwrap_or_default();
    let draft = path.with_file_name(format!(".{}.edit", list.file_name()));
    std::fs::write(&draft, &original)
        .with_context(|| format!("could not write {}", draft.display()))?;
    let result = run_editor(&draft).and_then(|()| {
        let edited = std::fs::read(&draft)?;
        Ok(replace_list(ctx, &name, list, &edited)?)
    });
    let _ = std::fs::remove_file(&draft);
    let edit = result?;
    if edit.changed {
        outln!("Updated {}.", path.display());
    } else {
        outln!("No change to {}.", path.display());
    }
    if let Some(e) = edit.copy_error {
        eprintln!(
            "epygibus: warning: the spec copy beside the snapshots could not be updated ({e}); the next `bu` writes it"
        );
    }
    Ok(EXIT_OK)
}

fn run_editor(path: &std::path::Path) -> anyhow::Result<()> {
    let editor = std::env::var("VISUAL")
        .ok()
        .or_else(|| std::env::var("EDITOR").ok())
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    // Through the shell, so EDITOR may carry arguments ("code -w").
    let status = Process::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("could not start the editor `{editor}`"))?;
    if !status.success() {
        bail!("the editor `{editor}` failed ({status}); nothing was changed");
    }
    Ok(())
}

pub fn list_archives(ctx: &Context, args: ListArchivesArgs) -> anyhow::Result<u8> {
    let mut t = Table::new(&["NAME", "REPO", "SNAPSHOTS", "SNAPSHOT DIRECTORY"]);
    let mut rows = Vec::new();
    for name in ctx.config.archive_names()? {
        match archive(ctx, name.as_str()) {
            Ok(a) => {
                let count = a.list().ok().map(|s| s.len());
                let spec = a.spec;
                let shown = match &a.attachment {
                    Attachment::ReadOnly { .. } => format!("{name} (read-only)"),
                    _ => name.to_string(),
                };
                t.row(vec![
                    shown,
                    spec.repo.to_string(),
                    count.map_or_else(|| "?".into(), |c| c.to_string()),
                    spec.snapshot_dir.to_string(),
                ]);
                rows.push(json!({
                    "name": name.as_str(),
                    "repository": spec.repo.as_str(),
                    "snapshot_dir": spec.snapshot_dir.to_string(),
                    "snapshots": count,
                    "read_only": matches!(a.attachment, Attachment::ReadOnly { .. }),
                }));
            }
            Err(e) => {
                t.row(vec![name.to_string(), format!("(unreadable spec: {e})")]);
                rows.push(json!({"name": name.as_str(), "error": e.to_string()}));
            }
        }
    }
    if args.json {
        print_json(&json!({ "archives": rows }));
    } else {
        out!("{}", t.render());
    }
    Ok(EXIT_OK)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn show(ctx: &Context, args: ShowArgs) -> anyhow::Result<u8> {
    let a = archive(ctx, &args.archive)?;
    let names = a.list()?;
    let (spec, store) = (a.spec, a.snapshots.as_ref());
    let (read_only, made_by, adopted_from) = match &a.attachment {
        Attachment::Own => (false, None, None),
        Attachment::ReadOnly { made_by } => (true, Some(made_by.as_str()), None),
        Attachment::Adopted { from } => (false, None, Some(from.as_str())),
    };
    let retention = crate::ops::forget::stored_policy(ctx, &spec.name);
    if args.json {
        let path_text = |p: &PathBuf| p.display().to_string();
        print_json(&json!({
            "archive": spec.name.as_str(),
            "repository": spec.repo.as_str(),
            "snapshot_dir": spec.snapshot_dir.to_string(),
            "compress": spec.compress,
            "keep_broken_soft_links": spec.keep_broken_soft_links,
            "compare_inodes": spec.compare_inodes,
            "read_only": read_only,
            "made_by": made_by,
            "adopted_from": adopted_from,
            "includes": spec.includes.iter().map(path_text).collect::<Vec<_>>(),
            "excluded_dirs": spec.excluded_dirs,
            "excluded_files": spec.excluded_files,
            "retention": match &retention {
                Ok(Some(p)) => super::forget::policy_json(p),
                Ok(None) => Value::Null,
                Err(e) => json!({ "error": e.to_string() }),
            },
            "set_aside": crate::snapshot::damaged::list_set_aside(store).unwrap_or_default(),
            "snapshots": names.iter().map(|n| snapshot_json(store, n, true)).collect::<Vec<_>>(),
        }));
        return Ok(EXIT_OK);
    }
    outln!("Archive:            {}", spec.name);
    outln!("Repository:         {}", spec.repo);
    outln!("Snapshot directory: {}", spec.snapshot_dir);
    outln!("Compressed:         {}", yes_no(spec.compress));
    outln!(
        "Broken symlinks:    {}",
        if spec.keep_broken_soft_links {
            "kept"
        } else {
            "skipped"
        }
    );
    outln!("Compare inodes:     {}", yes_no(spec.compare_inodes));
    match &retention {
        Ok(Some(p)) => outln!(
            "Retention:          {p} (`epygibus forget -A {}` applies it)",
            spec.name
        ),
        Ok(None) => outln!("Retention:          none (snapshots are kept until deleted)"),
        Err(e) => outln!("Retention:          (unreadable: {e})"),
    }
    if let Some(m) = made_by {
        outln!("Attached:           read-only (made by {m})");
    }
    if let Some(f) = adopted_from {
        outln!("Attached:           adopted from {f}");
    }
    outln!("Includes:");
    for p in &spec.includes {
        outln!("  {}", p.display());
    }
    for (title, globs) in [
        ("Excluded directories:", &spec.excluded_dirs),
        ("Excluded files:", &spec.excluded_files),
    ] {
        if !globs.is_empty() {
            outln!("{title}");
            for g in globs {
                outln!("  {g}");
            }
        }
    }
    let set_aside = crate::snapshot::damaged::list_set_aside(store).unwrap_or_default();
    if !set_aside.is_empty() {
        outln!("Set aside (damaged, kept as they are):");
        for f in &set_aside {
            outln!("  {f}");
        }
    }
    outln!("Snapshots: {}", names.len());
    if !names.is_empty() {
        out!("{}", build_stats_table(store, &names).render());
    }
    Ok(EXIT_OK)
}

/// A snapshot as JSON: name, time, compression, and (when asked) its
/// build statistics from the header.
pub fn snapshot_json(dir: &dyn Store, name: &format::SnapshotName, build: bool) -> Value {
    let mut v = json!({
        "name": name.stamp(),
        "time": crate::clock::Civil::from_unix(name.secs).rfc3339(),
        "compressed": name.compressed,
    });
    if build {
        v["build_stats"] = match format::read_header(dir, name) {
            Ok(h) => build_stats_json(&h),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    v
}

/// The build statistics of a snapshot header.
pub fn build_stats_json(h: &format::Header) -> Value {
    let s = &h.stats;
    json!({
        "started": rfc3339_ns(h.started_ns),
        "finished": rfc3339_ns(h.finished_ns),
        "files": s.counts.files,
        "links": s.counts.links,
        "dirs": s.counts.dirs,
        "content_bytes": s.counts.content_bytes,
        "files_read": s.files_read,
        "new_items": s.new_items,
        "new_content_bytes": s.new_content_bytes,
        "new_stored_bytes": s.new_stored_bytes,
        "skipped": s.skipped,
        "seconds": {
            "walk": s.walk_secs,
            "store": s.store_secs,
            "write": s.write_secs,
            "total": s.elapsed_secs,
        },
    })
}

/// One row per snapshot with its build statistics (header only).
pub fn build_stats_table(dir: &dyn Store, names: &[format::SnapshotName]) -> Table {
    let mut t = Table::new(&[
        "SNAPSHOT",
        "FILES",
        "LINKS",
        "CONTENT",
        "NEW ITEMS",
        "NEW STORED",
        "SKIPPED",
        "TIME",
    ]);
    for name in names {
        match format::read_header(dir, name) {
            Ok(h) => {
                let s = &h.stats;
                t.row(vec![
                    name.stamp(),
                    s.counts.files.to_string(),
                    s.counts.links.to_string(),
                    size(s.counts.content_bytes),
                    s.new_items.to_string(),
                    size(s.new_stored_bytes),
                    s.skipped.to_string(),
                    human_duration(s.elapsed_secs),
                ]);
            }
            Err(e) => t.row(vec![name.stamp(), format!("(unreadable: {e})")]),
        }
    }
    t
}
