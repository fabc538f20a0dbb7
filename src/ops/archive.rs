//! Archive set-up that is policy rather than parsing: replacing one of an
//! archive's lists after `edit`, checked before it is kept, and keeping
//! the archive's spec copy beside its snapshots up to date.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::source::{Archive, archive, location_of};
use super::{Context, OpError, Result};
use crate::config::{Attachment, ListFile, Name, parse_list};
use crate::snapshot::exclude::Excludes;
use crate::snapshot::spec::{self, DiskSpec};

/// Checks a list's new text: includes must be absolute paths (at least
/// one); globs must parse.
pub fn validate_list(list: ListFile, bytes: &[u8]) -> Result<()> {
    let invalid = |msg: String| Err(OpError::Invalid(format!("{msg}; nothing was changed")));
    let lines = parse_list(bytes);
    match list {
        ListFile::Includes => {
            if lines.is_empty() {
                return invalid("an archive needs at least one include".into());
            }
            for line in lines {
                let path = PathBuf::from(std::ffi::OsString::from_vec(line));
                if !path.is_absolute() {
                    return invalid(format!(
                        "include `{}` is not an absolute path",
                        path.display()
                    ));
                }
            }
        }
        ListFile::ExcludedDirs | ListFile::ExcludedFiles => {
            let Ok(globs) = lines
                .into_iter()
                .map(String::from_utf8)
                .collect::<std::result::Result<Vec<_>, _>>()
            else {
                return invalid("a glob is not UTF-8 text".into());
            };
            if let Err(e) = Excludes::new(&globs, &[]) {
                return invalid(e.to_string());
            }
        }
    }
    Ok(())
}

/// What `edit` did.
pub struct ListEdit {
    /// The list changed (false: the text was the same).
    pub changed: bool,
    /// Why the spec copy beside the snapshots could not be brought up to
    /// date (the next `bu` tries again).
    pub copy_error: Option<String>,
}

/// Replaces one of an archive's lists with `bytes` after checking them,
/// then writes the changed spec beside the snapshots.
pub fn replace_list(
    ctx: &Context,
    archive_name: &Name,
    list: ListFile,
    bytes: &[u8],
) -> Result<ListEdit> {
    let a = archive(ctx, archive_name.as_str())?;
    a.check_writable()?;
    validate_list(list, bytes)?;
    let changed = ctx.config.replace_list(archive_name, list, bytes)?;
    let copy_error = match refresh_spec_copy(ctx, &a) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    Ok(ListEdit {
        changed,
        copy_error,
    })
}

/// Writes the archive's spec as configured here beside its snapshots, as
/// a new generation, unless the copy there says the same already (or the
/// archive is only read here). Returns whether it wrote. Refused
/// ([`OpError::OwnedElsewhere`]) when the copy says another host backs up
/// into the directory now (it adopted the archive): one series has one
/// writer.
pub fn refresh_spec_copy(ctx: &Context, a: &Archive) -> Result<bool> {
    write_spec_copy(ctx, a, false)
}

/// [`refresh_spec_copy`], and with `take_over` whoever the copy names:
/// this machine becomes the archive's owner (`attach --adopt`).
pub fn write_spec_copy(ctx: &Context, a: &Archive, take_over: bool) -> Result<bool> {
    if matches!(a.attachment, Attachment::ReadOnly { .. }) {
        return Ok(false);
    }
    let store = a.snapshots.as_ref();
    let found = spec::read(store)?;
    if let Some((generation, copy)) = &found.newest
        && !take_over
        && copy.host != crate::fsio::host_name()
    {
        return Err(OpError::OwnedElsewhere {
            name: a.spec.name.clone(),
            owner: format!("{}@{}", copy.user, copy.host),
            place: store.place(&spec::generation_name(*generation)),
            location: location_of(&a.spec.snapshot_dir),
        });
    }
    let repo = ctx.config.repo(&a.spec.repo)?;
    let copy = DiskSpec::from_config(
        &ctx.config,
        &a.spec.name,
        &a.spec.snapshot_dir,
        &repo.location,
    )?;
    Ok(spec::write_if_changed_after(store, &found, &copy)?)
}
