//! `bu`: one snapshot of an archive.

use super::source::archive;
use super::{Context, Result};
use crate::progress::Progress;
use crate::snapshot::{self, BackupReport};

/// How one backup runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct BackupOptions {
    /// Compress the snapshot file: None = the archive's default.
    pub compress: Option<bool>,
    /// Read every file, trusting nothing from the previous snapshot.
    pub force_read: bool,
}

/// Takes a snapshot of archive `name`, holding its repository's lock.
pub fn backup(
    ctx: &Context,
    name: &str,
    options: BackupOptions,
    command: &str,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let a = archive(ctx, name)?;
    let repo = a.lock_repo(ctx, command)?;
    let options = snapshot::BackupOptions {
        compress: options.compress.unwrap_or(a.spec.compress),
        force_read: options.force_read,
    };
    Ok(snapshot::backup(
        &a.spec,
        a.snapshots.as_ref(),
        &repo,
        options,
        progress,
    )?)
}
