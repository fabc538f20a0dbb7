//! Finding the version you lost: diff, find and history. Parsing and
//! printing only; [`crate::ops::diff`] and [`crate::ops::find`] decide.

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use super::output::{print_json, rfc3339_ns, size};
use super::restore::SourceArgs;
use super::{Context, EXIT_OK, EXIT_SKIPPED};
use crate::clock::Civil;
use crate::ops::diff::{DiffOutcome, DiffRequest, diff_snapshots};
use crate::ops::find::{ArchiveHits, FindRequest, HistoryOutcome, find_entries, history};
use crate::ops::source::SourceSpec;
use crate::snapshot::diff::{Counts, DiffSummary};
use crate::snapshot::find::{Match, TimeRange};
use crate::snapshot::format::SnapshotName;
use crate::snapshot::lookup::Kind;

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Which snapshots: none compares the newest with the one before; one
    /// (I) compares snapshot I with the newest (or with --live with the
    /// files on disk); two (--back I --back J) compare I with J. N back
    /// from the newest (0 = newest), negative from the oldest (-1).
    #[arg(long, value_name = "N", allow_negative_numbers = true, num_args = 1)]
    back: Vec<i64>,
    /// Compare with the files on disk now: what the next backup would
    /// record. Only files whose size or times changed are read; nothing is
    /// stored.
    #[arg(long)]
    live: bool,
    /// Also show entries whose mode, owner or mtime alone changed (`U`).
    #[arg(long)]
    metadata: bool,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
    /// No progress display (--live).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Only this file or directory and what is below it.
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["archives", "all"])))]
pub struct FindArgs {
    /// Archive(s) to search.
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archives: Vec<String>,
    /// Search every configured archive.
    #[arg(long)]
    all: bool,
    /// Only entries modified at or before TIME (local time: 2026-11-27,
    /// "2026-11-27 08:42[:00]", or RFC 3339 with a zone; a date alone
    /// means the end of that day).
    #[arg(long, value_name = "TIME", value_parser = parse_newest)]
    newest: Option<i64>,
    /// Only entries modified at or after TIME (forms as for --newest; a
    /// date alone means its start).
    #[arg(long, value_name = "TIME", value_parser = parse_oldest)]
    oldest: Option<i64>,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
    /// Globs, as in excludes: without `/` a name at any depth (`*.odt`),
    /// with `/` the whole absolute path (`/home/*/notes/**`).
    #[arg(value_name = "PATTERN", required = true)]
    patterns: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
    /// The file (or directory, or symlink) whose versions to list.
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Archive(s) to show (default: every configured archive).
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archives: Vec<String>,
    /// List an archive's snapshots again at most every SECONDS, so new
    /// backups appear without remounting.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    refresh: u64,
    /// Where to mount: an existing, empty directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Writes bytes to stdout as they are (paths need not be UTF-8).
fn out_bytes(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

fn stamp_json(name: &SnapshotName) -> Value {
    json!({"snapshot": name.stamp(), "time": Civil::from_unix(name.secs).rfc3339()})
}

fn lossy(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    String::from_utf8_lossy(path.as_os_str().as_bytes()).into_owned()
}

pub fn diff(ctx: &Context, args: DiffArgs) -> anyhow::Result<u8> {
    let (old, new) = match DiffRequest::sides(&args.back, args.live) {
        Ok(sides) => sides,
        // A bad combination of options is a command-line error (status 2).
        Err(e) => {
            clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("{e}\n")).exit()
        }
    };
    let req = DiffRequest {
        source: args.source.spec(),
        old,
        new,
        path: args.path.clone(),
        metadata: args.metadata,
    };
    let bar = super::progress::Bar::new(args.quiet || !args.live);
    let outcome = diff_snapshots(ctx, &req, &bar)?;
    for p in &outcome.problems {
        eprintln!("epygibus: {}", p.message);
    }
    if args.json {
        print_json(&diff_json(&outcome));
    } else {
        print_diff(&outcome);
    }
    Ok(EXIT_OK)
}

fn print_diff(o: &DiffOutcome) {
    let new = match &o.new {
        Some((n, _)) => format!("snapshot {}", n.stamp()),
        None => "the files on disk".to_owned(),
    };
    outln!("comparing snapshot {} with {new}:", o.old.0.stamp());
    outln!();
    for c in &o.report.changes {
        out!("{:<5}", c.marker.as_str());
        let mut line = c.display_path();
        line.push(b'\n');
        out_bytes(&line);
    }
    if !o.report.changes.is_empty() {
        outln!();
    }
    let s = &o.report.summary;
    let row = |what: &str, kind: fn(&Counts) -> u64| {
        outln!(
            "{what:<9} {:>6} new, {:>6} removed, {:>6} changed",
            kind(&s.added),
            kind(&s.removed),
            kind(&s.changed)
        );
    };
    row("Files:", |c| c.files);
    row("Dirs:", |c| c.dirs);
    row("Symlinks:", |c| c.links);
    outln!("Added:    {}", size(s.bytes_added));
    outln!("Removed:  {}", size(s.bytes_removed));
    if o.new.is_none() {
        outln!(
            "Read:     {} files (the others are unchanged by size and times)",
            o.files_read
        );
    }
}

fn summary_json(s: &DiffSummary) -> Value {
    serde_json::to_value(s).expect("a summary serializes")
}

fn diff_json(o: &DiffOutcome) -> Value {
    let changes: Vec<Value> = o
        .report
        .changes
        .iter()
        .map(|c| {
            json!({
                "modifier": c.marker,
                "path": lossy(&c.path),
                "old": c.old,
                "new": c.new,
            })
        })
        .collect();
    let mut old = stamp_json(&o.old.0);
    old["back"] = json!(o.old.1);
    let new = match &o.new {
        Some((n, back)) => {
            let mut v = stamp_json(n);
            v["back"] = json!(back);
            v
        }
        None => json!({"live": true, "files_read": o.files_read}),
    };
    let problems: Vec<Value> = o
        .problems
        .iter()
        .map(|p| json!({"path": lossy(&p.path), "message": p.message}))
        .collect();
    json!({
        "old": old,
        "new": new,
        "path": lossy(&o.path),
        "changes": changes,
        "summary": summary_json(&o.report.summary),
        "problems": problems,
    })
}

pub fn find(ctx: &Context, args: FindArgs) -> anyhow::Result<u8> {
    check_range(&args)?;
    let req = FindRequest {
        archives: args.archives.clone(),
        all: args.all,
        patterns: args.patterns.clone(),
        mtime: TimeRange {
            oldest_ns: args.oldest,
            newest_ns: args.newest,
        },
    };
    let found = find_entries(ctx, &req)?;
    let mut damaged = 0;
    for a in &found {
        for (snap, why) in a.damaged() {
            damaged += 1;
            eprintln!(
                "epygibus: archive `{}`, snapshot {} was not searched: {why}",
                a.archive,
                snap.stamp()
            );
        }
    }
    if args.json {
        print_json(&find_json(&found));
    } else {
        print_find(&found);
    }
    Ok(if damaged > 0 { EXIT_SKIPPED } else { EXIT_OK })
}

fn print_find(found: &[ArchiveHits]) {
    let many = found.len() > 1;
    for a in found {
        for s in &a.snapshots {
            let Ok(matches) = &s.result else { continue };
            if matches.is_empty() {
                continue;
            }
            if many {
                outln!("Archive {}, snapshot {}:", a.archive, s.snapshot.stamp());
            } else {
                outln!("Snapshot {}:", s.snapshot.stamp());
            }
            for m in matches {
                print_match(m);
            }
            outln!();
        }
    }
}

fn print_match(m: &Match) {
    use std::os::unix::ffi::OsStrExt;
    out!(
        "{} {:>5} {:>5} {:>12} {}  ",
        mode_string(m.kind, m.attrs.mode),
        m.attrs.uid,
        m.attrs.gid,
        m.size,
        rfc3339_ns(m.mtime_ns)
    );
    let mut line = m.path.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    out_bytes(&line);
}

/// `drwxr-xr-x`, as `ls -l` shows modes.
pub fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        Kind::Dir => 'd',
        Kind::File => '-',
        Kind::Link => 'l',
    });
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let set = mode & bit != 0;
        let special = match i {
            2 => mode & 0o4000 != 0,
            5 => mode & 0o2000 != 0,
            8 => mode & 0o1000 != 0,
            _ => false,
        };
        s.push(match (set, special, i) {
            (true, true, 8) => 't',
            (false, true, 8) => 'T',
            (true, true, _) => 's',
            (false, true, _) => 'S',
            (true, false, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

fn match_json(m: &Match) -> Value {
    json!({
        "path": lossy(&m.path),
        "type": m.kind,
        "size": m.size,
        "mode": m.attrs.mode,
        "permissions": mode_string(m.kind, m.attrs.mode),
        "uid": m.attrs.uid,
        "gid": m.attrs.gid,
        "mtime": rfc3339_ns(m.mtime_ns),
        "mtime_ns": m.mtime_ns,
        "token": m.token.map(|t| t.to_hex()),
    })
}

fn find_json(found: &[ArchiveHits]) -> Value {
    let archives: Vec<Value> = found
        .iter()
        .map(|a| {
            let snapshots: Vec<Value> = a
                .snapshots
                .iter()
                .filter(|s| s.result.as_ref().map_or(true, |m| !m.is_empty()))
                .map(|s| {
                    let mut v = stamp_json(&s.snapshot);
                    match &s.result {
                        Ok(m) => {
                            v["hits"] = json!(m.len());
                            v["matches"] = Value::Array(m.iter().map(match_json).collect());
                        }
                        Err(e) => v["error"] = json!(e),
                    }
                    v
                })
                .collect();
            json!({"archive": a.archive, "searched": a.snapshots.len(), "snapshots": snapshots})
        })
        .collect();
    json!({ "archives": archives })
}

pub fn history_cmd(ctx: &Context, args: HistoryArgs) -> anyhow::Result<u8> {
    let spec = args.source.spec();
    let h = history(ctx, &spec, &args.path)?;
    for (snap, why) in &h.damaged {
        eprintln!(
            "epygibus: snapshot {} was not read (a version may continue past it): {why}",
            snap.stamp()
        );
    }
    if args.json {
        print_json(&history_json(&h, &spec));
    } else {
        print_history(&h, &spec);
    }
    Ok(if h.damaged.is_empty() {
        EXIT_OK
    } else {
        EXIT_SKIPPED
    })
}

/// The command that extracts version `v` into the current directory.
fn extract_command(
    spec: &SourceSpec,
    h: &HistoryOutcome,
    v: &crate::snapshot::history::Version<crate::ops::find::SnapshotRef>,
) -> String {
    let source = match spec {
        SourceSpec::Archive(a) => format!("-A {}", shell_quote(a)),
        SourceSpec::SnapshotDir(d) => format!("-E {}", shell_quote(&d.to_string())),
    };
    let what = if v.kind == Kind::Dir {
        "--dir"
    } else {
        "--file"
    };
    format!(
        "epygibus extract {source} --back {} {what} {}",
        v.last.back,
        shell_quote(&lossy(&h.path))
    )
}

/// Quotes for a POSIX shell when needed.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-+:=@,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_history(h: &HistoryOutcome, spec: &SourceSpec) {
    outln!(
        "{} versions of {} in {} snapshots:",
        h.versions.len(),
        lossy(&h.path),
        h.snapshots
    );
    let mut t = super::output::Table::new(&[
        "#",
        "first",
        "last",
        "snapshots",
        "kind",
        "size",
        "modified",
        "content",
    ]);
    for (i, v) in h.versions.iter().enumerate() {
        let content = match (&v.token, &v.target, v.same_as) {
            (_, _, Some(j)) => format!("same as #{}", j + 1),
            (Some(t), _, _) => t.to_hex()[..16].to_owned(),
            (_, Some(target), _) => format!("-> {}", String::from_utf8_lossy(target)),
            _ => String::new(),
        };
        t.row(vec![
            (i + 1).to_string(),
            v.first.name.stamp(),
            v.last.name.stamp(),
            v.snapshots.to_string(),
            v.kind.to_string(),
            size(v.size),
            rfc3339_ns(v.mtime_ns),
            content,
        ]);
    }
    out!("{}", t.render());
    outln!();
    outln!("To get a version back (into the current directory):");
    for (i, v) in h.versions.iter().enumerate() {
        outln!("  #{}: {}", i + 1, extract_command(spec, h, v));
    }
}

fn history_json(h: &HistoryOutcome, spec: &SourceSpec) -> Value {
    let at = |r: &crate::ops::find::SnapshotRef| {
        let mut v = stamp_json(&r.name);
        v["back"] = json!(r.back);
        v
    };
    let versions: Vec<Value> = h
        .versions
        .iter()
        .map(|v| {
            json!({
                "first": at(&v.first),
                "last": at(&v.last),
                "snapshots": v.snapshots,
                "type": v.kind,
                "size": v.size,
                "mtime": rfc3339_ns(v.mtime_ns),
                "mtime_ns": v.mtime_ns,
                "token": v.token.map(|t| t.to_hex()),
                "target": v.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
                "same_as": v.same_as,
                "extract": extract_command(spec, h, v),
            })
        })
        .collect();
    let damaged: Vec<Value> = h
        .damaged
        .iter()
        .map(|(n, e)| {
            let mut v = stamp_json(n);
            v["error"] = json!(e);
            v
        })
        .collect();
    json!({
        "path": lossy(&h.path),
        "snapshots": h.snapshots,
        "versions": versions,
        "damaged": damaged,
    })
}

/// A point in time given on the command line, in ns since the epoch.
fn parse_time(text: &str, end_of_day: bool) -> Result<i64, String> {
    use jiff::civil::{Date, DateTime};
    use jiff::tz::TimeZone;
    let bad = || {
        format!(
            "`{text}` is not a time: use 2026-11-27, \"2026-11-27 08:42\", \"2026-11-27 08:42:00\" (local time) or RFC 3339 such as 2026-11-27T08:42:00Z"
        )
    };
    let ns = |ts: jiff::Timestamp| ts.as_nanosecond() as i64;
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ns(ts));
    }
    let tz = TimeZone::system();
    let local = |dt: DateTime| tz.to_timestamp(dt).map(ns);
    if let Some(c) = Civil::parse_dashed(text) {
        return Ok(c.to_unix() * 1_000_000_000);
    }
    // A date alone (jiff would read it as midnight).
    if text.len() == 10
        && let Ok(d) = text.parse::<Date>()
    {
        let start = local(d.to_datetime(jiff::civil::Time::midnight())).map_err(|_| bad())?;
        if !end_of_day {
            return Ok(start);
        }
        let next = d.tomorrow().map_err(|_| bad())?;
        return local(next.to_datetime(jiff::civil::Time::midnight()))
            .map(|t| t - 1)
            .map_err(|_| bad());
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return local(dt).map_err(|_| bad());
    }
    Err(bad())
}

fn parse_newest(text: &str) -> Result<i64, String> {
    parse_time(text, true)
}

fn parse_oldest(text: &str) -> Result<i64, String> {
    parse_time(text, false)
}

/// An error when `--newest` is older than `--oldest`.
fn check_range(args: &FindArgs) -> anyhow::Result<()> {
    if let (Some(o), Some(n)) = (args.oldest, args.newest)
        && o > n
    {
        return Err(anyhow!(
            "--oldest is later than --newest, so nothing can match; swap them"
        ));
    }
    Ok(())
}

pub fn mount(ctx: &Context, args: MountArgs) -> anyhow::Result<u8> {
    use crate::mount::Ended;
    use crate::ops::mount::{Catalog, MountRequest, check_mount_point};
    let dir = crate::snapshot::retrieve::absolute(&args.dir);
    check_mount_point(&dir)?;
    crate::mount::check_fuse()?;
    let req = MountRequest {
        archives: args.archives.clone(),
        refresh: std::time::Duration::from_secs(args.refresh),
    };
    let catalog = Catalog::open(ctx, &req)?;
    let shown = catalog.archive_names().join(", ");
    let ended = crate::mount::serve(catalog, &dir, || {
        eprintln!(
            "epygibus: {shown} mounted read-only on {d}; Ctrl-C or `fusermount3 -u {d}` unmounts",
            d = dir.display()
        );
    })?;
    match ended {
        Ended::Detached => eprintln!(
            "epygibus: {} was still in use, so it was detached: it is gone from the directory tree, and released when the last program using it lets go",
            dir.display()
        ),
        Ended::Signal | Ended::Unmounted => eprintln!("epygibus: unmounted {}", dir.display()),
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_ls_shows_them() {
        assert_eq!(mode_string(Kind::File, 0o100644), "-rw-r--r--");
        assert_eq!(mode_string(Kind::Dir, 0o41777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::File, 0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o102644), "-rw-r-Sr--");
        assert_eq!(mode_string(Kind::Link, 0o120777), "lrwxrwxrwx");
    }

    #[test]
    fn times_parse() {
        let z = parse_time("2026-11-27T08:42:00Z", false).unwrap();
        assert_eq!(
            z,
            Civil::parse_dashed("2026-11-27-08-42-00")
                .unwrap()
                .to_unix()
                * 1_000_000_000
        );
        assert_eq!(parse_time("2026-11-27-08-42-00", true).unwrap(), z);
        let start = parse_time("2026-11-27", false).unwrap();
        let end = parse_time("2026-11-27", true).unwrap();
        assert!(
            end - start >= 23 * 3600 * 1_000_000_000 - 1,
            "{start} {end}"
        );
        assert!(parse_time("2026-11-27 08:42", false).is_ok());
        assert!(parse_time("2026-11-27 08:42:05", false).is_ok());
        for bad in ["yesterday", "2026-13-01", "", "27/11/2026"] {
            assert!(parse_time(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/home/u/a.txt"), "/home/u/a.txt");
        assert_eq!(shell_quote("/home/u/my file"), "'/home/u/my file'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
