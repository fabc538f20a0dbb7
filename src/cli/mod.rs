//! The command line: clap definitions and output only. Commands resolve
//! names to specs here and call the library; no file-system logic lives in
//! this module.

mod output;
mod repo;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::content::{LockHolder, LockWait};

/// Exit status when everything worked.
pub const EXIT_OK: u8 = 0;
/// Exit status for an error: nothing (more) was done.
pub const EXIT_ERROR: u8 = 1;
/// Exit status when the work finished but some files were skipped.
pub const EXIT_SKIPPED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "epygibus",
    version,
    about = "Git-inspired backups for NAS shares and USB drives",
    long_about = "Git-inspired backups for NAS shares and USB drives.\n\n\
        File contents go to a content repository, stored once per distinct \
        content as plain (gzip) files named by their hash; snapshot archives \
        record whole trees and refer to that content.",
    after_help = "Exit status: 0 success, 1 error, 3 finished but some files were skipped."
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
    /// List the configured content repositories.
    ///
    /// Example: epygibus lr
    #[command(name = "lr")]
    ListRepos(repo::ListReposArgs),
    /// Show a repository's items, references, content and stored bytes.
    ///
    /// Example: epygibus repo_stats -R home
    #[command(name = "repo_stats", alias = "repo-stats")]
    RepoStats(repo::RepoArg),
    /// List every content item: token, references, size, stored size.
    ///
    /// Example: epygibus list_content_items -R home
    #[command(name = "list_content_items", alias = "list-content-items")]
    ListContentItems(repo::RepoArg),
    /// Remove content that no snapshot references any more.
    ///
    /// Example: epygibus prune -R home
    Prune(repo::RepoArg),
    /// Compress (or with -U uncompress) every content file of a repository.
    ///
    /// Content that does not shrink stays uncompressed; reads work the same
    /// before, during and after.
    ///
    /// Example: epygibus compress -R home
    Compress(repo::CompressArgs),
    /// Remove a repository lock that a crashed run or another machine left.
    ///
    /// Only do this when no other epygibus run uses the repository.
    ///
    /// Example: epygibus unlock -R home
    Unlock(repo::RepoArg),
}

/// What every command needs: the configuration and how to wait for locks.
pub struct Context {
    pub config: Config,
    pub lock_wait: Duration,
}

impl Context {
    /// Lock waiting that tells the user, after a few seconds, who holds it.
    pub fn lock_wait(&self) -> LockWait<'static> {
        fn tell(holder: &LockHolder) {
            eprintln!(
                "epygibus: waiting for the repository lock held by {}",
                holder.describe()
            );
        }
        LockWait {
            timeout: self.lock_wait,
            on_wait: Some(&tell),
            notice_after: Duration::from_secs(3),
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("epygibus: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Context {
        config: Config::from_env()?,
        lock_wait: Duration::from_secs(cli.lock_wait),
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
    }
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
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
