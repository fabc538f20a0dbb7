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
    /// Record the snapshot as taken at this time (`bu --time`): its name
    /// and header say so; change detection keeps the real clock.
    pub time: Option<crate::snapshot::forget::BackupTime>,
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
    // The spec beside the snapshots follows the configuration (edited by
    // hand, or written by an older epygibus that kept none).
    let copy_warning = match super::archive::refresh_spec_copy(ctx, &a) {
        Ok(_) => None,
        Err(e @ super::OpError::OwnedElsewhere { .. }) => return Err(e),
        Err(e) => Some(format!(
            "the archive's spec copy beside its snapshots could not be written: {e}"
        )),
    };
    let options = snapshot::BackupOptions {
        compress: options.compress.unwrap_or(a.spec.compress),
        force_read: options.force_read,
        time: options.time,
    };
    let mut report = snapshot::backup(&a.spec, a.snapshots.as_ref(), &repo, options, progress)?;
    report.warnings.extend(copy_warning);
    Ok(report)
}
