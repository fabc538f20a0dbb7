//! Archive set-up that is policy rather than parsing: replacing one of an
//! archive's lists after `edit`, checked before it is kept.

use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{Context, OpError, Result};
use crate::config::{ListFile, Name, parse_list};
use crate::snapshot::exclude::Excludes;

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

/// Replaces one of an archive's lists with `bytes` after checking them.
/// Returns false when nothing changed.
pub fn replace_list(ctx: &Context, archive: &Name, list: ListFile, bytes: &[u8]) -> Result<bool> {
    validate_list(list, bytes)?;
    Ok(ctx.config.replace_list(archive, list, bytes)?)
}
