//! The tree the next backup would record, without recording anything: the
//! backup's own walk ([`super::generate`]) with a content sink that only
//! hashes. A file that the backup's change predicate ([`super::change`])
//! calls unchanged keeps the snapshot's token and is never opened; the
//! others are read and hashed, so a `touch` without a change in content
//! is told apart from an edit. Nothing is stored and no reference is
//! counted: the repository is not even opened (an encrypted one's token
//! key comes with the key that opened the snapshot).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::generate::{self, BackupPlan, Built, ContentSink};
use super::model::DirNode;
use crate::content::{ContentError, ContentToken, TokenHasher, hash_reader};
use crate::progress::Progress;

/// Hashes files instead of storing them, as the repository makes tokens.
pub struct HashOnly(pub TokenHasher);

impl ContentSink for HashOnly {
    /// The previous snapshot's token is right for a file the predicate
    /// trusts: that is exactly what the next backup would record.
    fn reuse(&self, _token: &ContentToken, _path: &Path) -> Result<bool, ContentError> {
        Ok(true)
    }

    fn store(&self, path: &Path) -> Result<ContentToken, ContentError> {
        let source = |err| ContentError::Source {
            path: path.to_owned(),
            err,
        };
        // As the backup opens sources: never through a symlink, never
        // blocking on a FIFO that replaced the file since it was listed.
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(source)?;
        let meta = file.metadata().map_err(source)?;
        if !meta.is_file() {
            return Err(ContentError::NotRegularFile(path.to_owned()));
        }
        let mut counted = Counted {
            inner: &mut file,
            n: 0,
        };
        let token = hash_reader(&mut counted, self.0).map_err(source)?;
        if counted.n != meta.len() {
            return Err(ContentError::ChangedWhileReading(path.to_owned()));
        }
        Ok(token)
    }

    fn again(&self, _token: &ContentToken) -> Result<(), ContentError> {
        Ok(())
    }
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Walks the plan's includes as a backup after `previous` (a snapshot's
/// root and walk start) would, hashing only the files it would read.
pub fn live_tree(
    plan: &BackupPlan,
    previous: (&DirNode, i64),
    tokens: TokenHasher,
    progress: &dyn Progress,
) -> Result<Built, ContentError> {
    generate::build_tree(&HashOnly(tokens), plan, Some(previous), progress)
}
