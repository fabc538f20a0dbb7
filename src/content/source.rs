//! Opening the user's files to store them. These are paths on the
//! machine being backed up, not in the repository, so plain `std::fs`.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::fsio;

/// Opens a file for reading without following a symlink and without
/// blocking on a FIFO that replaced a regular file since it was listed.
pub fn open_source(path: &Path) -> io::Result<File> {
    fsio::retry_busy(|| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
    })
}

/// Creates (or truncates) a file outside the repository to copy content into.
pub fn create_target(path: &Path) -> io::Result<File> {
    File::create(path)
}
