//! Repository commands: new_repo, lr, repo_stats, list_content_items,
//! prune, compress -R, unlock.

use std::time::Duration;

use clap::Args;

use super::output::{Table, print_json, size};
use super::{Context, EXIT_OK};
use crate::config::Name;
use crate::content::StoredForm;
use crate::crypt::KeyProtection;
use crate::ops::housekeeping::{self, PruneOptions, PruneOutcome};
use crate::setup;
use crate::store::Location;
use serde_json::json;

#[derive(Args, Debug)]
pub struct NewRepoArgs {
    /// Directory (e.g. a NAS mount or USB drive) or S3 bucket and prefix
    /// (s3://BUCKET/PREFIX; server and keys from AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, … as for the aws command) to hold the repository.
    #[arg(long, short = 'L', value_name = "DIR|s3://BUCKET/PREFIX", value_parser = super::parse_location)]
    location: Location,
    /// Store new content uncompressed (default: gzip, readable with zcat).
    #[arg(short = 'U', long = "uncompressed")]
    uncompressed: bool,
    /// Create the repository even if the S3 server does not honour
    /// conditional writes (`If-None-Match: *`): its lock then cannot keep
    /// apart two runs that start at the same moment, so only one machine
    /// should write to it.
    #[arg(long = "accept-weak-lock", alias = "accept_weak_lock")]
    accept_weak_lock: bool,
    /// Encrypt every content item and every snapshot file of its archives
    /// (age format, after gzip), to --recipient, --recipients-file or
    /// --passphrase; file names then reveal nothing about content.
    #[arg(long, requires = "to_whom")]
    encrypt: bool,
    /// An age X25519 public key (age1…) that may open the repository
    /// (repeatable), e.g. the output of `age-keygen -y key.txt`.
    #[arg(
        long,
        value_name = "AGE_PUBLIC_KEY",
        requires = "encrypt",
        group = "to_whom"
    )]
    recipient: Vec<String>,
    /// A file of age X25519 public keys, one per line (`#` comments).
    #[arg(
        long = "recipients-file",
        alias = "recipients_file",
        value_name = "FILE",
        requires = "encrypt",
        group = "to_whom"
    )]
    recipients_file: Option<std::path::PathBuf>,
    /// Protect the repository key with a passphrase (asked twice on the
    /// terminal, or $EPYGIBUS_PASSPHRASE).
    #[arg(long, requires = "encrypt", group = "to_whom", conflicts_with_all = ["recipient", "recipients_file"])]
    passphrase: bool,
    /// Name of the new repository (letters, digits, `.`, `_`, `-`).
    #[arg(value_name = "NAME")]
    name: String,
}

#[derive(Args, Debug)]
pub struct ListReposArgs {
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Repository to prune.
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: String,
    /// Keep unreferenced content released less than SECONDS ago (default:
    /// 0, or 3600 when other machines' archives use the repository).
    #[arg(long = "min-age", alias = "min_age", value_name = "SECONDS")]
    min_age: Option<u64>,
}

/// A listing of one repository.
#[derive(Args, Debug)]
pub struct RepoReportArgs {
    /// Repository name (see `epygibus lr`).
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: String,
    /// Print one JSON document (schema: docs/json.md).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RepoArg {
    /// Repository name (see `epygibus lr`).
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: String,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["repo", "archive"])))]
pub struct CompressArgs {
    /// Repository whose content files to convert, all of them.
    #[arg(short = 'R', long = "repo", value_name = "NAME")]
    repo: Option<String>,
    /// Archive whose snapshot file to convert (see --back).
    #[arg(short = 'A', long = "archive", value_name = "NAME")]
    archive: Option<String>,
    /// With -A: which snapshot, N back from the newest (default 0, the
    /// newest), or negative from the oldest (-1 = oldest).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        requires = "archive"
    )]
    back: Option<i64>,
    /// Uncompress instead of compress.
    #[arg(short = 'U', long = "uncompress")]
    uncompress: bool,
    /// With -R: move the repository's small loose content files (made
    /// before packs existed) into packs, keeping their form.
    #[arg(long, requires = "repo", conflicts_with_all = ["uncompress", "archive"])]
    pack: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// How the key of a new encrypted repository is protected, from the
/// command line.
fn key_protection(ctx: &Context, args: &NewRepoArgs) -> anyhow::Result<Option<KeyProtection>> {
    if !args.encrypt {
        return Ok(None);
    }
    if args.uncompressed {
        anyhow::bail!(
            "-U and --encrypt do not go together: an encrypted repository always compresses content (gzip) before encrypting it, so that `age -d … | zcat` reads every file"
        );
    }
    if args.passphrase {
        let Some(p) = ctx.keys.new_passphrase()? else {
            anyhow::bail!(
                "--passphrase needs a passphrase: run on a terminal to be asked for it, or set EPYGIBUS_PASSPHRASE; nothing was created"
            );
        };
        return Ok(Some(KeyProtection::Passphrase(p)));
    }
    let mut recipients = crate::crypt::parse_recipients(&args.recipient)?;
    if let Some(file) = &args.recipients_file {
        recipients.extend(crate::crypt::read_recipients_file(file)?);
    }
    Ok(Some(KeyProtection::Recipients(recipients)))
}

pub fn new_repo(ctx: &Context, args: NewRepoArgs) -> anyhow::Result<u8> {
    let name: Name = args.name.parse()?;
    let opts = setup::RepoOptions {
        encrypt: key_protection(ctx, &args)?,
        compressed: !args.uncompressed,
        accept_weak_lock: args.accept_weak_lock,
    };
    let made = setup::create_repository(&ctx.config, &ctx.keys, &name, &args.location, opts)?;
    let mode = match (&made.encrypted, args.uncompressed) {
        (Some(_), _) => "encrypted with age, after gzip",
        (None, true) => "uncompressed",
        (None, false) => "gzip-compressed",
    };
    outln!(
        "Created repository `{name}` at {} ({mode}).",
        made.spec.location
    );
    if let Some(key) = &made.encrypted {
        let protected = if args.passphrase {
            "your passphrase".to_owned()
        } else {
            "the identity (secret key) of a recipient you gave".to_owned()
        };
        outln!(
            "\nIMPORTANT: back up the key now. Everything in this repository and in its archives' snapshot\n\
             directories is encrypted to the repository key (public key {}). It is kept:\n\
             \x20 - in the repository, {}, which only {protected} opens;\n\
             \x20 - on this machine, unencrypted, so that backups run unattended: {}\n\
             Without {protected} or that file, nothing here can be read, by epygibus or by hand:\n\
             copy {} somewhere safe other than the backup disk (or print it), and keep {protected} safe.",
            key.recipient,
            key.in_repository,
            key.on_this_machine.display(),
            key.on_this_machine.display(),
        );
    }
    if made.weak_lock {
        eprintln!(
            "epygibus: warning: the S3 server does not honour conditional writes; the repository lock cannot keep apart two runs that start at the same moment, so write to it from one machine only"
        );
    }
    Ok(EXIT_OK)
}

pub fn list_repos(ctx: &Context, args: ListReposArgs) -> anyhow::Result<u8> {
    let mut table = Table::new(&["NAME", "LOCATION"]);
    let mut rows = Vec::new();
    for name in ctx.config.repo_names()? {
        let (location, error) = match ctx.config.repo(&name) {
            Ok(spec) => (Some(spec.location.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let shown = location
            .clone()
            .unwrap_or_else(|| format!("(unreadable spec: {})", error.clone().unwrap_or_default()));
        table.row(vec![name.to_string(), shown]);
        rows.push(json!({"name": name.as_str(), "path": location, "error": error}));
    }
    if args.json {
        print_json(&json!({ "repositories": rows }));
    } else {
        out!("{}", table.render());
    }
    Ok(EXIT_OK)
}

pub fn repo_stats(ctx: &Context, args: RepoReportArgs) -> anyhow::Result<u8> {
    let (name, repo) = ctx.open_repo_read_only(&args.repo)?;
    let s = repo.stats();
    if args.json {
        print_json(&json!({
            "repository": name.as_str(),
            "path": repo.location().to_string(),
            "referenced": {
                "items": s.referenced_items,
                "references": s.references,
                "content_bytes": s.referenced_content_bytes,
                "stored_bytes": s.referenced_stored_bytes,
            },
            "unreferenced": {
                "items": s.unreferenced_items,
                "content_bytes": s.unreferenced_content_bytes,
                "stored_bytes": s.unreferenced_stored_bytes,
            },
            "packs": {
                "packs": s.packs,
                "items": s.packed_items,
                "bytes": s.pack_bytes,
            },
        }));
        return Ok(EXIT_OK);
    }
    outln!("Repository `{name}` at {}", repo.location());
    let mut t = Table::new(&["", "ITEMS", "REFERENCES", "CONTENT", "STORED"]);
    t.row(vec![
        "referenced".into(),
        s.referenced_items.to_string(),
        s.references.to_string(),
        size(s.referenced_content_bytes),
        size(s.referenced_stored_bytes),
    ]);
    t.row(vec![
        "unreferenced".into(),
        s.unreferenced_items.to_string(),
        "0".into(),
        size(s.unreferenced_content_bytes),
        size(s.unreferenced_stored_bytes),
    ]);
    out!("{}", t.render());
    outln!(
        "{} of the items are in {} packs ({}); the others are loose files.",
        s.packed_items,
        s.packs,
        size(s.pack_bytes)
    );
    Ok(EXIT_OK)
}

fn form_name(form: StoredForm) -> &'static str {
    match form {
        StoredForm::Gzip => "gzip",
        StoredForm::Plain => "plain",
        StoredForm::Sealed => "age",
    }
}

pub fn list_content_items(ctx: &Context, args: RepoReportArgs) -> anyhow::Result<u8> {
    let (name, repo) = ctx.open_repo_read_only(&args.repo)?;
    let items = repo.items();
    if args.json {
        let rows: Vec<_> = items
            .iter()
            .map(|(token, e)| {
                json!({
                    "token": token.to_hex(),
                    "references": e.refs,
                    "size": e.size,
                    "stored_size": e.stored_size,
                    "form": form_name(e.form),
                    "pack": repo.pack_of(e).map(|p| p.to_string()),
                })
            })
            .collect();
        print_json(&json!({ "repository": name.as_str(), "items": rows }));
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(&["TOKEN", "REFS", "SIZE", "STORED", "FORM", "PACK"]);
    for (token, e) in items {
        t.row(vec![
            token.to_hex(),
            e.refs.to_string(),
            e.size.to_string(),
            e.stored_size.to_string(),
            form_name(e.form).into(),
            repo.pack_of(&e)
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
        ]);
    }
    out!("{}", t.render());
    Ok(EXIT_OK)
}

pub fn prune(ctx: &Context, args: PruneArgs, command: &str) -> anyhow::Result<u8> {
    let opts = PruneOptions {
        min_age: args.min_age.map(Duration::from_secs),
    };
    let outcome = housekeeping::prune(ctx, &args.repo, opts, command)?;
    print_prune(&outcome, &args.repo);
    Ok(EXIT_OK)
}

/// What prune removed and kept, as `prune` prints it.
pub fn print_prune(outcome: &PruneOutcome, repo: &str) {
    let (report, min_age) = (&outcome.report, outcome.min_age);
    let packs_changed = report.packs_removed + report.packs_rewritten > 0;
    if report.items == 0 && !packs_changed {
        outln!("Nothing to do.");
    } else {
        outln!(
            "Removed {} unreferenced content items: {} of content, {} freed on disk.",
            report.items,
            size(report.content_bytes),
            size(report.bytes_freed)
        );
    }
    if packs_changed {
        outln!(
            "Packs: {} removed, {} rewritten (their live items copied into new packs).",
            report.packs_removed,
            report.packs_rewritten
        );
    }
    for place in &report.packs_damaged {
        eprintln!(
            "epygibus: warning: pack {place} was left as it is: an item in it is damaged (see `epygibus check --read-data -R {repo}`)"
        );
    }
    if report.kept_young > 0 {
        outln!(
            "Kept {} unreferenced items released less than {} ago (the repository is shared with other machines; --min-age 0 removes them now).",
            report.kept_young,
            crate::clock::human_duration(min_age.as_secs_f64())
        );
    }
    if report.kept_referenced > 0 {
        outln!(
            "Kept {} items whose count was zero but which snapshots use; their counts were corrected.",
            report.kept_referenced
        );
    }
}

/// What prune did, as JSON (the `prune` entries of `forget --json`).
pub fn prune_json(outcome: &PruneOutcome) -> serde_json::Value {
    let r = &outcome.report;
    json!({
        "items": r.items,
        "content_bytes": r.content_bytes,
        "stored_bytes": r.stored_bytes,
        "bytes_freed": r.bytes_freed,
        "packs_removed": r.packs_removed,
        "packs_rewritten": r.packs_rewritten,
        "packs_damaged": r.packs_damaged,
        "kept_young": r.kept_young,
        "kept_referenced": r.kept_referenced,
        "min_age_seconds": outcome.min_age.as_secs(),
    })
}

pub fn compress(ctx: &Context, args: CompressArgs, command: &str) -> anyhow::Result<u8> {
    let repo_name = match (&args.repo, &args.archive) {
        (Some(r), _) => r,
        (None, Some(a)) => {
            let back = args.back.unwrap_or(0);
            return super::backup::compress_snapshot(ctx, a, back, args.uncompress, command);
        }
        (None, None) => unreachable!("clap requires -R or -A"),
    };
    if args.pack {
        let bar = super::progress::Bar::new(args.quiet);
        let report = housekeeping::pack_repo(ctx, repo_name, &bar, command)?;
        if report.packed == 0 {
            outln!("Nothing to do: no small loose content files.");
        } else {
            outln!(
                "Moved {} content items ({}) into {} packs.",
                report.packed,
                size(report.bytes),
                report.packs
            );
        }
        return Ok(EXIT_OK);
    }
    let target = if args.uncompress {
        StoredForm::Plain
    } else {
        StoredForm::Gzip
    };
    let report = housekeeping::compress_repo(ctx, repo_name, target, command)?;
    if report.converted == 0 {
        outln!("Nothing to do.");
    } else {
        let verb = if args.uncompress {
            "Uncompressed"
        } else {
            "Compressed"
        };
        let (before, after) = (report.stored_before, report.stored_after);
        let change = if after <= before {
            format!("{} saved", size(before - after))
        } else {
            format!("{} added", size(after - before))
        };
        outln!(
            "{verb} {} content items: {} -> {} on disk ({change}).",
            report.converted,
            size(before),
            size(after)
        );
    }
    if report.kept_plain > 0 {
        outln!(
            "{} items did not shrink and stay uncompressed.",
            report.kept_plain
        );
    }
    if report.packs_rewritten > 0 {
        outln!("Rewrote {} packs.", report.packs_rewritten);
    }
    Ok(EXIT_OK)
}

pub fn unlock(ctx: &Context, args: RepoArg) -> anyhow::Result<u8> {
    let done = housekeeping::unlock(ctx, &args.repo)?;
    match done.holder {
        Some(holder) => outln!("Removed the lock held by {}.", holder.describe()),
        None if done.existed => outln!("Removed an unreadable lock file."),
        None => outln!("Repository `{}` was not locked.", done.name),
    }
    Ok(EXIT_OK)
}
