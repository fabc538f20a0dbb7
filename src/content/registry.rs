//! The archive registry: which snapshot directories use this repository.
//! Prune and check read every snapshot they name, from every host, before
//! trusting a count of zero (no lock holds across machines).

use super::layout::REGISTRY_DIR;
use super::{Repository, Result};

/// One archive's registration, as written by `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// `<host>--<user>--<archive>`.
    pub id: String,
    /// The snapshot directory's location when it was registered.
    pub snapshot_dir: String,
    /// The snapshot directory relative to the repository directory (found
    /// again after the disk is mounted elsewhere), when both are on one
    /// disk.
    pub relative: Option<String>,
}

impl Registration {
    /// True when the archive belongs to another host than `host`.
    pub fn is_other_host(&self, host: &str) -> bool {
        !self.id.starts_with(&format!("{host}--"))
    }
}

impl Repository {
    /// Records that snapshots in `snapshot_dir` use this repository.
    /// `relative` is the directory relative to the repository's, when
    /// both are directories.
    pub fn register_user(
        &self,
        id: &str,
        snapshot_dir: &str,
        relative: Option<&str>,
    ) -> Result<()> {
        let mut text = format!("snapshot_dir = {snapshot_dir}\n");
        if let Some(r) = relative {
            text.push_str(&format!("relative = {r}\n"));
        }
        let _ = self
            .store
            .put_new(&format!("{REGISTRY_DIR}/{id}"), text.as_bytes())?;
        Ok(())
    }

    /// Every registration, sorted by id; an unreadable one is an `Err`
    /// naming it, so a caller's scan knows it is incomplete (prune must
    /// then not remove anything).
    pub fn registrations(&self) -> Result<Vec<std::result::Result<Registration, String>>> {
        registrations_in(self.store.as_ref())
    }
}

/// The registrations of the repository in `store`, without opening it
/// (see [`Repository::registrations`]).
pub fn registrations_in(
    store: &dyn crate::store::Store,
) -> Result<Vec<std::result::Result<Registration, String>>> {
    let mut found = Vec::new();
    for meta in store.list(&format!("{REGISTRY_DIR}/"))? {
        let id = meta.name[REGISTRY_DIR.len() + 1..].to_owned();
        if id.contains('/') {
            continue;
        }
        let bytes = match store.read(&meta.name) {
            Ok(b) => b,
            Err(e) => {
                found.push(Err(format!("archive registration {e}")));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
                .map(str::to_owned)
        };
        let Some(snapshot_dir) = field("snapshot_dir").or_else(|| field("relative")) else {
            found.push(Err(format!(
                "archive registration {} names no snapshot directory",
                store.place(&meta.name)
            )));
            continue;
        };
        found.push(Ok(Registration {
            id,
            snapshot_dir,
            relative: field("relative"),
        }));
    }
    found.sort_by(|a, b| match (a, b) {
        (Ok(a), Ok(b)) => a.id.cmp(&b.id),
        (a, b) => a.is_ok().cmp(&b.is_ok()),
    });
    Ok(found)
}
