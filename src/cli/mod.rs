//! The command line: clap definitions and output only. Commands parse
//! their arguments into the options of a library operation
//! ([`crate::ops`]), run it, and print what it returns; no policy and no
//! file-system logic lives in this module.

/// Like `print!`, but a closed stdout (`epygibus lss | head -1`) is not
/// an error: the work is done, only the reader left.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like `println!`, ignoring a closed stdout (see [`out!`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod archive;
mod attach;
mod backup;
mod browse;
mod check;
mod copy;
mod forget;
#[cfg(feature = "gui")]
mod gui;
mod import;
mod output;
mod progress;
mod repo;
mod restore;
mod schedule;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::content::LockHolder;

/// Exit status when everything worked.
pub const EXIT_OK: u8 = 0;
/// Exit status for an error: nothing (more) was done.
pub const EXIT_ERROR: u8 = 1;
/// Exit status when the work finished but some files were skipped.
pub const EXIT_SKIPPED: u8 = 3;
/// Exit status of `check` when it found problems.
pub const EXIT_PROBLEMS: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "epygibus",
    version,
    about = "Git-inspired backups for NAS shares and USB drives",
    long_about = "Git-inspired backups for NAS shares and USB drives.\n\n\
        File contents go to a content repository, stored once per distinct \
        content as plain (gzip) files named by their hash; snapshot archives \
        record whole trees and refer to that content.",
    after_help = "Exit status: 0 success, 1 error, 3 finished but some files were skipped, 4 check found problems."
)]
pub struct Cli {
    /// Seconds to wait for a repository locked by another run before giving up.
    #[arg(
        long = "lock-wait",
        alias = "lock_wait",
        global = true,
        value_name = "SECONDS",
        default_value_t = 600
    )]
    lock_wait: u64,

    /// Age identity file opening encrypted repositories: the repository
    /// key itself, or your own identity, to which its `key.age` is
    /// encrypted (default: $EPYGIBUS_IDENTITY, then the copies of
    /// repository keys this machine keeps; a passphrase repository asks for
    /// its passphrase, or takes $EPYGIBUS_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE")]
    identity: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a content repository in DIR/epygibus.d/repos/<user>/NAME.
    ///
    /// Example: epygibus new_repo --location=/mnt/nas home
    #[command(name = "new_repo", alias = "new-repo")]
    NewRepo(repo::NewRepoArgs),
    /// Create a snapshot archive: what to back up and where snapshots go.
    ///
    /// Example: epygibus new -A docs -I ~/Documents -Xd .cache -Xf '*.tmp' -R home --location=/mnt/nas
    New(archive::NewArgs),
    /// Register the repositories and archives on a backup disk here.
    ///
    /// After a reinstall, or from a second machine: finds what
    /// DIR/epygibus.d holds, lists it, and registers it in this machine's
    /// configuration, so `bu` continues an archive's series (reading only
    /// changed files) and lss, restore, del and prune work as before. An
    /// archive another host made is attached read-only unless
    /// --adopt. Without -R and -A everything found is attached; on any
    /// problem nothing is changed.
    ///
    /// Examples: epygibus attach --location=/mnt/nas (after a reinstall);
    /// epygibus attach --location=/mnt/nas -R home, then epygibus new -A laptop -I ~ -R home --location=/mnt/nas (a second machine);
    /// epygibus attach --location=/mnt/nas -A docs --adopt (a new host name)
    Attach(attach::AttachArgs),
    /// Edit an archive's includes or exclude globs in $EDITOR (default vi).
    ///
    /// The result is checked before it replaces the old list.
    ///
    /// Example: epygibus edit --includes -A docs
    Edit(archive::EditArgs),
    /// List the configured archives.
    ///
    /// Example: epygibus la
    #[command(name = "la")]
    ListArchives(archive::ListArchivesArgs),
    /// Show an archive's spec and its snapshots with their statistics.
    ///
    /// Example: epygibus show -A docs
    Show(archive::ShowArgs),
    /// Back up: take a snapshot of each archive given, in order.
    ///
    /// Files whose size and times are unchanged since the previous snapshot
    /// are not read again. Exit status 3 means the snapshot was written but
    /// some files could not be backed up (they are listed on stderr).
    ///
    /// Example: epygibus bu --stats -A docs -A photos
    Bu(backup::BuArgs),
    /// List an archive's snapshots, oldest first (`**`: compressed).
    ///
    /// Example: epygibus lss --build-stats -A docs
    Lss(backup::LssArgs),
    /// Copy snapshots of an archive into an archive on another repository.
    ///
    /// The backed-up files are not read again: the snapshots keep their
    /// names and times, and only content the target repository lacks is
    /// copied (from a NAS to a bucket, or a bucket to a USB disk). Without
    /// --back, every snapshot the target does not have yet.
    ///
    /// Example: epygibus copy -A docs --to-archive docs-offsite
    Copy(copy::CopyArgs),
    /// Delete a snapshot (the oldest by default) and release its content.
    ///
    /// With --force, a snapshot that cannot be read is set aside instead
    /// (renamed to <name>.damaged, never deleted); its content keeps its
    /// counts until `check -R NAME --repair --lower-counts`.
    ///
    /// Examples: epygibus del -A docs --back=-1; epygibus del -A docs --snapshot 2024-05-01-22-00-03 --force
    Del(backup::DelArgs),
    /// Remove the snapshots a retention policy does not keep.
    ///
    /// restic's rules: snapshots newest first; --keep-last N keeps the N
    /// newest; --keep-daily N keeps the newest snapshot of each of the N
    /// most recent days that have one (hourly, weekly, monthly, yearly
    /// alike; a rule with count left keeps the oldest snapshot too);
    /// --keep-within D keeps all newer than the newest minus D. A snapshot
    /// stays if any rule keeps it. Days and hours are those of the local
    /// time each snapshot was taken in (--utc: UTC). Without rules, the
    /// archive's stored policy (see `policy`) applies. A policy that would
    /// remove every snapshot is refused.
    ///
    /// Examples: epygibus forget -A docs --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run;
    /// epygibus forget -A docs -A photos --prune (stored policies)
    Forget(forget::ForgetArgs),
    /// Show, set or clear the retention policy stored in an archive's spec.
    ///
    /// `forget -A NAME` without rules applies it, and scheduled runs
    /// (`schedule`) do after each backup. Setting replaces all rules.
    ///
    /// Examples: epygibus policy -A docs --keep-daily 7 --keep-weekly 4 --keep-monthly unlimited;
    /// epygibus policy -A docs; epygibus policy -A docs --clear
    Policy(forget::PolicyCmdArgs),
    /// Run backups by themselves: a systemd user timer (or a crontab line).
    ///
    /// Writes epygibus-NAME.timer and .service to the user's systemd
    /// directory ($XDG_CONFIG_HOME/systemd/user, else
    /// ~/.config/systemd/user): `bu` for the archives, then `forget` by
    /// their stored policies (see `policy`). Runs missed while the machine
    /// was off happen when it is next up. Nothing is enabled: the command
    /// to start the timer is printed. Where systemd does not run, a
    /// crontab line is printed instead.
    ///
    /// Examples: epygibus schedule -A docs -A photos --daily;
    /// epygibus schedule -A docs --at "Mon..Fri 22:00" --name weeknights --prune;
    /// epygibus schedule --list; epygibus schedule --remove docs
    Schedule(schedule::ScheduleArgs),
    /// Put files back at their original paths from a snapshot.
    ///
    /// A file whose content already matches is left alone; a different one
    /// is moved aside (renamed with a time-stamped suffix) unless
    /// --overwrite. Owners are restored when run as root.
    ///
    /// Example: epygibus restore -A docs --dir ~/Documents/taxes --back 1
    Restore(restore::RestoreArgs),
    /// Copy a file or directory out of a snapshot into a directory.
    ///
    /// Example: epygibus extract -A docs --file ~/Documents/cv.odt --into-dir /tmp --with-name old-cv.odt
    Extract(restore::ExtractArgs),
    /// Print a file's content from a snapshot to stdout.
    ///
    /// Example: epygibus cat -A docs ~/Documents/notes.txt | less
    Cat(restore::CatArgs),
    /// List a directory of a snapshot (`name/` directories, `name -> target` symlinks).
    ///
    /// Example: epygibus ls -A docs ~/Documents
    #[command(alias = "ldc")]
    Ls(restore::LsArgs),
    /// Show what changed between two snapshots, or since a snapshot on disk.
    ///
    /// One line per change with restic's markers: `+` added, `-` removed,
    /// `M` content changed, `T` type changed, `U` mode, owner or mtime only
    /// (with --metadata); directories end in `/`; then a summary. Without
    /// --back the newest snapshot is compared with the one before; --back I
    /// compares snapshot I with the newest, --back I --back J snapshot I
    /// with J. --live compares with the files on disk now, reading only
    /// those whose size or times changed and storing nothing.
    ///
    /// Examples: epygibus diff -A docs; epygibus diff -A docs --back 5 ~/Documents/taxes;
    /// epygibus diff -A docs --live
    Diff(browse::DiffArgs),
    /// Find entries matching globs in every snapshot of archives.
    ///
    /// Globs follow the exclude rules: without `/` they match a name at any
    /// depth (`*.odt`, `notes.txt`), with `/` the whole absolute path
    /// (`/home/*/Documents/**/*.pdf`). A snapshot that cannot be read is
    /// reported and the others searched (exit status 3).
    ///
    /// Examples: epygibus find -A docs 'cv*.odt'; epygibus find --all --newest 2026-06-30 '*.xlsx'
    Find(browse::FindArgs),
    /// List each distinct version of a file across an archive's snapshots.
    ///
    /// Each version appears once, with the first and last snapshot holding
    /// it, its size, mtime and content token, and the `extract` command
    /// that gets it back.
    ///
    /// Example: epygibus history -A docs ~/Documents/notes.txt
    History(browse::HistoryArgs),
    /// Mount snapshots read-only as files (FUSE) until Ctrl-C.
    ///
    /// DIR/<archive>/<snapshot>/ holds each snapshot's backed-up paths with
    /// their sizes, modes, owners, times, symlinks and hard links, and
    /// DIR/<archive>/latest points at the newest. Content is read from the
    /// repository as programs read it. New snapshots appear within
    /// --refresh seconds. Ctrl-C, SIGTERM or `fusermount3 -u DIR`
    /// unmounts. Needs /dev/fuse and, as a regular user, fusermount3
    /// (Debian package fuse3).
    ///
    /// Example: mkdir -p ~/backups && epygibus mount -A docs ~/backups
    Mount(browse::MountArgs),
    /// Bring backups of the original (Python) epygibus along.
    ///
    /// Every snapshot of the original becomes a snapshot of an archive
    /// here under the time in its name (read in --tz), with the same tree;
    /// its content is copied into the repository, each content file checked
    /// against its SHA-1. The original's files are only read. Running it
    /// again imports only what is new. Exit status 3: some snapshots could
    /// not be imported (listed on stderr; nothing of them was written).
    ///
    /// Examples: epygibus import -E /mnt/nas/epygibus.d/snapshots/oldbox/me/docs -A docs -R home --tz Europe/Berlin;
    /// epygibus import --original-config ~/.config/epygibus.d --mounted-at /media/usb -R home
    Import(import::ImportArgs),
    /// List the configured content repositories.
    ///
    /// Example: epygibus lr
    #[command(name = "lr")]
    ListRepos(repo::ListReposArgs),
    /// Show a repository's items, references, content and stored bytes.
    ///
    /// Example: epygibus repo_stats -R home
    #[command(name = "repo_stats", alias = "repo-stats")]
    RepoStats(repo::RepoReportArgs),
    /// List every content item: token, references, size, stored size.
    ///
    /// Example: epygibus list_content_items -R home
    #[command(name = "list_content_items", alias = "list-content-items")]
    ListContentItems(repo::RepoReportArgs),
    /// Remove content that no snapshot references any more.
    ///
    /// Example: epygibus prune -R home
    Prune(repo::PruneArgs),
    /// Compress (or with -U uncompress) a repository's content files or one
    /// snapshot file.
    ///
    /// With -R every content item of the repository is converted, loose
    /// files and packed items alike (content that does not shrink stays
    /// uncompressed); with -A one snapshot file. --pack -R instead moves the
    /// small loose content files of a repository made before packs into
    /// packs. Reads work the same before, during and after.
    ///
    /// Examples: epygibus compress -R home; epygibus compress --pack -R home;
    /// epygibus compress -U -A docs --back 1
    Compress(repo::CompressArgs),
    /// Verify that all snapshot content is present and no count is too low.
    ///
    /// --repair raises counts that are too low, removes leftovers and sets
    /// snapshots that cannot be read aside, so prune works again.
    ///
    /// Exit status 0 when all is well, 4 when problems were found.
    ///
    /// Examples: epygibus check -R home --read-data; epygibus check -A docs
    Check(check::CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: epygibus completions bash > ~/.local/share/bash-completion/completions/epygibus
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these definitions.
    ///
    /// Example: epygibus man > ~/.local/share/man/man1/epygibus.1
    Man,
    /// Serve a web GUI on this machine: browse, restore, back up, keep house.
    ///
    /// Prints the address to open (it holds a one-launch token that signs
    /// the browser in) and opens the browser on it unless --no-browser.
    /// Listens on 127.0.0.1 only, unless --listen names another address,
    /// which needs --password-file. The pages' JSON API is described in
    /// docs/gui-api.md. Ctrl-C stops it.
    ///
    /// Examples: epygibus gui; epygibus gui --port 8642 --no-browser;
    /// epygibus gui --listen 0.0.0.0 --port 8642 --password-file ~/.config/epygibus-gui.pw
    #[cfg(feature = "gui")]
    Gui(gui::GuiArgs),
    /// Remove a repository lock that a crashed run or another machine left.
    ///
    /// Only do this when no other epygibus run uses the repository.
    ///
    /// Example: epygibus unlock -R home
    Unlock(repo::RepoArg),
}

pub use crate::ops::Context;

fn tell_lock_wait(holder: &LockHolder) {
    eprintln!(
        "epygibus: waiting for the repository lock held by {}",
        holder.describe()
    );
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    limit_malloc_arenas();
    let matches =
        grouped_help(Cli::command()).get_matches_from(seed_spellings(std::env::args_os()));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("epygibus: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Asks for a passphrase on the terminal without echoing it; None when
/// there is no terminal to ask on.
fn ask_passphrase(prompt: &str) -> std::io::Result<Option<crate::crypt::Passphrase>> {
    match rpassword::prompt_password(prompt) {
        Ok(p) => Ok(Some(p.into())),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENXIO) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let config = Config::from_env()?;
    let keys = crate::crypt::Keyring::from_env(
        cli.identity.clone(),
        config.root(),
        Some(std::sync::Arc::new(ask_passphrase)),
    );
    let ctx = Context {
        config,
        lock: crate::ops::LockSettings {
            timeout: Duration::from_secs(cli.lock_wait),
            on_wait: Some(std::sync::Arc::new(tell_lock_wait)),
        },
        keys,
    };
    let command_line = command_line();
    match cli.command {
        Command::NewRepo(a) => repo::new_repo(&ctx, a),
        Command::ListRepos(a) => repo::list_repos(&ctx, a),
        Command::RepoStats(a) => repo::repo_stats(&ctx, a),
        Command::ListContentItems(a) => repo::list_content_items(&ctx, a),
        Command::Prune(a) => repo::prune(&ctx, a, &command_line),
        Command::Compress(a) => repo::compress(&ctx, a, &command_line),
        Command::Unlock(a) => repo::unlock(&ctx, a),
        Command::Check(a) => check::check(&ctx, a, &command_line),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "epygibus", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(EXIT_OK)
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(EXIT_OK)
        }
        Command::New(a) => archive::new(&ctx, a),
        Command::Attach(a) => attach::attach(&ctx, a),
        Command::Edit(a) => archive::edit(&ctx, a),
        Command::ListArchives(a) => archive::list_archives(&ctx, a),
        Command::Show(a) => archive::show(&ctx, a),
        Command::Bu(a) => backup::bu(&ctx, a, &command_line),
        Command::Lss(a) => backup::lss(&ctx, a),
        Command::Del(a) => backup::del(&ctx, a, &command_line),
        Command::Forget(a) => forget::forget(&ctx, a, &command_line),
        Command::Policy(a) => forget::policy(&ctx, a),
        Command::Schedule(a) => schedule::schedule(&ctx, a),
        Command::Copy(a) => copy::copy(&ctx, a, &command_line),
        Command::Restore(a) => restore::restore(&ctx, a, &command_line),
        Command::Extract(a) => restore::extract(&ctx, a, &command_line),
        Command::Cat(a) => restore::cat(&ctx, a, &command_line),
        Command::Ls(a) => restore::ls(&ctx, a),
        Command::Diff(a) => browse::diff(&ctx, a),
        Command::Find(a) => browse::find(&ctx, a),
        Command::History(a) => browse::history_cmd(&ctx, a),
        Command::Mount(a) => browse::mount(&ctx, a),
        Command::Import(a) => import::import(&ctx, a, &command_line),
        #[cfg(feature = "gui")]
        Command::Gui(a) => gui::gui(&ctx, a),
    }
}

/// glibc gives each thread its own heap; with a dozen threads freeing and
/// allocating buffers of up to a few MiB, freed memory piles up in them.
/// Two arenas: peak memory of a first backup of the full benchmark corpus
/// went from 86 MB to 59 MB, with the same CPU time.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any
    // thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Command groups for `epygibus --help`, in order.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Setting up",
        &[
            "new_repo", "new", "attach", "import", "edit", "lr", "la", "show",
        ],
    ),
    (
        "Backing up",
        &["bu", "lss", "del", "copy", "forget", "policy", "schedule"],
    ),
    ("Getting files back", &["restore", "extract", "cat", "ls"]),
    (
        "Finding a lost version",
        &["diff", "find", "history", "mount"],
    ),
    (
        "Housekeeping",
        &[
            "repo_stats",
            "list_content_items",
            "prune",
            "compress",
            "check",
            "unlock",
        ],
    ),
    ("Web interface", &["gui"]),
    ("Shell integration", &["completions", "man", "help"]),
];

/// Replaces clap's flat command list with the groups above.
fn grouped_help(cmd: clap::Command) -> clap::Command {
    let width = cmd
        .get_subcommands()
        .map(|c| c.get_name().len())
        .max()
        .unwrap_or(0);
    let mut list = String::new();
    for (title, names) in GROUPS {
        list.push_str(&format!("{title}:\n"));
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_else(|| "Print help for a command".into());
            list.push_str(&format!("  {name:width$}  {about}\n"));
        }
        list.push('\n');
    }
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}Options:\n{{options}}{{after-help}}"
    );
    cmd.help_template(template)
}

/// Accepts the original's two-letter short options `-Xd GLOB` and
/// `-Xf GLOB` (clap short options are one letter) by spelling them long.
fn seed_spellings(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut options_ended = false;
    for arg in args {
        let text = arg.to_str().unwrap_or("");
        let long = match text {
            _ if options_ended => None,
            "--" => {
                options_ended = true;
                None
            }
            t if t.starts_with("-Xd") => Some(("--exclude-dirs-matching", &t[3..])),
            t if t.starts_with("-Xf") => Some(("--exclude-files-matching", &t[3..])),
            _ => None,
        };
        match long {
            Some((name, "")) => out.push(OsString::from(name)),
            Some((name, rest)) => {
                let value = rest.strip_prefix('=').unwrap_or(rest);
                out.push(OsString::from(format!("{name}={value}")));
            }
            None => out.push(arg),
        }
    }
    out
}

/// A `--location` value: a directory, or `s3://BUCKET/PREFIX`.
fn parse_location(text: &str) -> Result<crate::store::Location, String> {
    crate::store::Location::parse(std::ffi::OsStr::new(text))
}

/// The command as typed, for lock files (so others see who holds a lock).
fn command_line() -> String {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("epygibus {}", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_short_excludes_are_accepted() {
        let args = ["epygibus", "new", "-Xd", ".cache", "-Xf=*.o", "--", "-Xd"];
        let out = seed_spellings(args.iter().map(OsString::from));
        let out: Vec<_> = out.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            out,
            [
                "epygibus",
                "new",
                "--exclude-dirs-matching",
                ".cache",
                "--exclude-files-matching=*.o",
                "--",
                "-Xd"
            ]
        );
    }

    #[test]
    fn every_command_is_in_a_help_group() {
        let cmd = Cli::command();
        let grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        for sub in cmd.get_subcommands() {
            assert!(
                grouped.contains(&sub.get_name()),
                "{} is in no help group",
                sub.get_name()
            );
        }
        for name in grouped {
            assert!(
                name == "help"
                    || (name == "gui" && cfg!(not(feature = "gui")))
                    || cmd.find_subcommand(name).is_some(),
                "{name} is grouped but not a command"
            );
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
