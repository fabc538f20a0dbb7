//! Copying a snapshot into another archive on another repository without
//! reading the backed-up files again: the tree is taken as it is, and
//! each content the target repository lacks is read from the source
//! repository (through the repository interface only) and stored there.
//! Counts before snapshots, as for a backup: the content and its counts
//! are durable in the target before the snapshot file is written there.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use super::format::{self, SnapshotName};
use super::{ArchiveError, repo_ref};
use crate::config::ArchiveSpec;
use std::io::Read;

use crate::content::{
    ContentError, ContentReader, ContentToken, Repository, SessionCounters, TokenHasher,
};
use crate::progress::Progress;
use crate::store::Store;

/// What copying one snapshot did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedSnapshot {
    pub name: SnapshotName,
    /// File entries of the snapshot (references counted in the target).
    pub references: u64,
    /// Content the target lacked and now holds.
    pub new_items: u64,
    pub new_content_bytes: u64,
    pub new_stored_bytes: u64,
}

/// Where a copy goes.
pub struct CopyTarget<'a> {
    pub archive: &'a ArchiveSpec,
    pub snapshots: &'a dyn Store,
    pub repo: &'a Repository,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stores content read from a repository that makes tokens differently,
/// checked against its source token as it is read; counts `uses`
/// references to it and returns its token in the target.
fn translate(
    session: &crate::content::BackupSession<'_>,
    token: &ContentToken,
    uses: u64,
    from_tokens: TokenHasher,
    open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>, ContentError>,
) -> Result<ContentToken, ContentError> {
    let what = std::path::PathBuf::from(format!("content {token} of the source repository"));
    let mut reopen = || -> std::io::Result<Box<dyn Read + Send>> {
        let inner = open().map_err(std::io::Error::other)?;
        Ok(Box::new(Verified {
            inner,
            hasher: from_tokens.hasher(),
            expected: *token,
        }))
    };
    let target = session.store_reader(&what, &mut reopen)?;
    for _ in 1..uses {
        session.reference_contents(&target)?;
    }
    Ok(target)
}

/// Fails at the end of a stream whose token differs from the expected one.
struct Verified {
    inner: Box<dyn Read + Send>,
    hasher: blake3::Hasher,
    expected: ContentToken,
}

impl Read for Verified {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() && ContentToken::from_hasher(&self.hasher) != self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "content {} is damaged in the source repository",
                    self.expected
                ),
            ));
        }
        Ok(n)
    }
}

/// Copies snapshot `name` of `from` (whose content is in `from_repo`) to
/// the target under the same name, its header naming the target's archive
/// and repository. Returns None, changing nothing, when the target has a
/// snapshot of that second already.
pub fn copy_snapshot(
    from: &dyn Store,
    from_repo: &Repository,
    name: &SnapshotName,
    to: &CopyTarget<'_>,
    progress: &dyn Progress,
) -> Result<Option<CopiedSnapshot>, ArchiveError> {
    let mut snapshot = format::read_snapshot(from, name)?;
    let tokens = snapshot.root.tokens();
    let mut uses: HashMap<ContentToken, u64> = HashMap::new();
    for t in &tokens {
        *uses.entry(*t).or_default() += 1;
    }
    let session = to.repo.begin_backup();
    let failed: Mutex<Option<ContentError>> = Mutex::new(None);
    let uses: Vec<(ContentToken, u64)> = uses.into_iter().collect();
    // Repositories that make tokens differently (one encrypted, keyed by
    // its own key): each content is read, re-hashed and stored under the
    // target's token, and the tree's tokens are translated.
    let (from_tokens, to_tokens) = (from_repo.token_hasher(), to.repo.token_hasher());
    let translated: Mutex<HashMap<ContentToken, ContentToken>> = Mutex::new(HashMap::new());
    progress.phase("copying", uses.len() as u64, 0);
    crate::pool::io_pool().install(|| {
        use rayon::prelude::*;
        uses.par_iter().for_each(|(token, n)| {
            if progress.cancelled() || failed.lock().is_ok_and(|f| f.is_some()) {
                return;
            }
            let mut open = || -> Result<Box<dyn std::io::Read + Send>, ContentError> {
                let reader: ContentReader = from_repo.open_contents_read_only(token)?;
                Ok(Box::new(reader))
            };
            // The first reference stores the content if need be; the
            // others only count.
            let counted = if from_tokens == to_tokens {
                (0..*n).try_for_each(|_| session.store_copied(token, &mut open))
            } else {
                translate(&session, token, *n, from_tokens, &mut open).map(|target| {
                    lock(&translated).insert(*token, target);
                })
            };
            match counted {
                Ok(()) => progress.file_done(0),
                Err(e) => {
                    let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                    f.get_or_insert(e);
                }
            }
        });
    });
    progress.finish();
    // Dropping the session on any error gives its references back.
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.into());
    }
    if progress.cancelled() {
        return Err(ContentError::Cancelled.into());
    }
    let counted = session.commit_counts()?;
    let c = counted.counters();
    let report = CopiedSnapshot {
        name: *name,
        references: tokens.len() as u64,
        new_items: SessionCounters::get(&c.new_items),
        new_content_bytes: c.new_content_bytes.load(Ordering::Relaxed),
        new_stored_bytes: c.new_stored_bytes.load(Ordering::Relaxed),
    };
    if from_tokens != to_tokens {
        let map = translated.into_inner().unwrap_or_else(|p| p.into_inner());
        snapshot
            .root
            .map_tokens(&|t| *map.get(t).expect("every token was translated"));
    }
    snapshot.header.archive = to.archive.name.to_string();
    snapshot.header.repo = repo_ref(to.archive, to.snapshots.location(), to.repo);
    let name = &format::name_in(to.snapshots, name);
    match format::write_snapshot_as(to.snapshots, &snapshot, name) {
        Ok(true) => {
            counted.snapshot_written()?;
            Ok(Some(report))
        }
        // Taken meanwhile: the references are given back on drop.
        Ok(false) => Ok(None),
        Err(e) => {
            // It may be there although the write reported an error: then
            // the references must stay (too high is safe, too low is not).
            let there = to
                .snapshots
                .stat(&name.file_name())
                .map_or(true, |m| m.is_some());
            if there {
                let _ = counted.snapshot_written();
            }
            Err(e.into())
        }
    }
}
