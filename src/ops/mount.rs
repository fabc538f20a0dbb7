//! What a read-only mount shows, decided once for any face: which
//! archives, their snapshots (listed again at most once per refresh
//! interval, so a NAS is not asked on every `ls`), snapshot trees (a few
//! decoded ones kept), content opened for reads at any offset, and the
//! rule that a mount point is an empty directory nothing is mounted on.
//! The repository is opened without its lock: a mount may stay for days
//! and must not stop backups; content a snapshot uses cannot be pruned
//! while the snapshot exists.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::source::archive;
use super::{Context, OpError, Result};
use crate::content::{Access, ContentToken, RangedContent, Repository};
use crate::snapshot::format::{self, Snapshot, SnapshotName};
use crate::store::SharedStore;

/// How often an archive's snapshots are listed again, at most.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Decoded trees kept: a 60k-entry tree is about 10 MB in memory, and a
/// walk through one snapshot (`diff -r`, `find`) needs only one.
const TREES_KEPT: usize = 4;

/// What to mount.
#[derive(Clone, Debug)]
pub struct MountRequest {
    /// Archive names; empty for every configured archive.
    pub archives: Vec<String>,
    /// Snapshots are listed again at most this often.
    pub refresh: Duration,
}

/// One mounted archive.
struct Shown {
    name: String,
    snapshots: SharedStore,
    repo_dir: std::result::Result<crate::store::Location, String>,
    repo: OnceLock<std::result::Result<Arc<Repository>, String>>,
    listing: Mutex<(Vec<SnapshotName>, Instant)>,
}

/// A decoded tree kept, by (archive, snapshot time).
type KeptTree = ((usize, i64), Arc<Snapshot>);

/// The archives a mount shows.
pub struct Catalog {
    archives: Vec<Shown>,
    /// Where keys of encrypted repositories come from.
    keys: crate::crypt::Keyring,
    refresh: Duration,
    /// Recently used trees, most recent last.
    trees: Mutex<Vec<KeptTree>>,
}

/// Checks the mount point: an existing, empty directory that nothing is
/// mounted on yet.
pub fn check_mount_point(dir: &Path) -> Result<()> {
    let bad = |why: String| Err(OpError::Invalid(why));
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return bad(format!(
                "{} is a mount point whose file system has gone (a mount that was killed); run `fusermount3 -u {}` first",
                dir.display(),
                dir.display()
            ));
        }
        Err(e) => return bad(format!("mount point {} cannot be used: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return bad(format!(
            "mount point {} is not a directory; give an empty directory",
            dir.display()
        ));
    }
    let parent = dir.join("..");
    let busy =
        std::fs::metadata(&parent).is_ok_and(|p| p.dev() != meta.dev() || p.ino() == meta.ino());
    if busy {
        return bad(format!(
            "{} is busy: something is mounted on it already; unmount it (`fusermount3 -u {}` or `umount`) or choose another directory",
            dir.display(),
            dir.display()
        ));
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| OpError::Invalid(format!("cannot list mount point {}: {e}", dir.display())))?;
    if entries.next().is_some() {
        return bad(format!(
            "mount point {} is not empty; mount on an empty directory so nothing is hidden",
            dir.display()
        ));
    }
    Ok(())
}

impl Catalog {
    /// Resolves the archives (all configured ones when none are named) and
    /// lists their snapshots.
    pub fn open(ctx: &Context, req: &MountRequest) -> Result<Catalog> {
        let names: Vec<String> = if req.archives.is_empty() {
            ctx.config
                .archive_names()?
                .into_iter()
                .map(|n| n.to_string())
                .collect()
        } else {
            req.archives.clone()
        };
        if names.is_empty() {
            return Err(OpError::Invalid(
                "no archives to mount: none is configured (see `epygibus new` and `epygibus attach`)".into(),
            ));
        }
        let mut archives = Vec::new();
        for name in names {
            let a = archive(ctx, &name)?;
            let listed = a.list()?;
            let repo_dir = ctx
                .config
                .repo(&a.spec.repo)
                .map(|r| r.location)
                .map_err(|e| e.to_string());
            archives.push(Shown {
                name,
                snapshots: a.snapshots,
                repo_dir,
                repo: OnceLock::new(),
                listing: Mutex::new((listed, Instant::now())),
            });
        }
        Ok(Catalog {
            archives,
            keys: ctx.keys.clone(),
            refresh: req.refresh,
            trees: Mutex::new(Vec::new()),
        })
    }

    /// The archives' names, in the order given (indexes for the rest).
    pub fn archive_names(&self) -> Vec<&str> {
        self.archives.iter().map(|a| a.name.as_str()).collect()
    }

    /// The archive's snapshots, oldest first; listed again when the last
    /// listing is older than the refresh interval. A listing that fails
    /// keeps the previous one.
    pub fn snapshots(&self, archive: usize) -> Vec<SnapshotName> {
        let a = &self.archives[archive];
        let mut listing = a.listing.lock().unwrap_or_else(|p| p.into_inner());
        if listing.1.elapsed() >= self.refresh {
            if let Ok(names) = format::list_snapshots(a.snapshots.as_ref()) {
                listing.0 = names;
            }
            listing.1 = Instant::now();
        }
        listing.0.clone()
    }

    /// The tree of the archive's snapshot taken at `secs` (its name's
    /// time), decoded or kept from before; Err when the snapshot is gone
    /// (deleted since it was listed) or cannot be read.
    pub fn tree(&self, archive: usize, secs: i64) -> Result<Arc<Snapshot>> {
        let key = (archive, secs);
        {
            let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = trees.iter().position(|(k, _)| *k == key) {
                let hit = trees.remove(i);
                let tree = hit.1.clone();
                trees.push(hit);
                return Ok(tree);
            }
        }
        let a = &self.archives[archive];
        // The file's name (compressed or not) as listed now: `compress`
        // may have converted it since.
        let name = format::list_snapshots(a.snapshots.as_ref())?
            .into_iter()
            .find(|n| n.secs == secs)
            .ok_or_else(|| {
                OpError::Invalid(format!(
                    "snapshot {} of archive `{}` is gone",
                    SnapshotName {
                        secs,
                        compressed: false
                    }
                    .stamp(),
                    a.name
                ))
            })?;
        let tree = Arc::new(format::read_snapshot(a.snapshots.as_ref(), &name)?);
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        if trees.len() >= TREES_KEPT {
            trees.remove(0);
        }
        trees.push((key, tree.clone()));
        Ok(tree)
    }

    /// A file's content, for reads at any offset.
    pub fn open_content(&self, archive: usize, token: &ContentToken) -> Result<RangedContent> {
        let a = &self.archives[archive];
        let repo = a.repo.get_or_init(|| {
            let dir = a.repo_dir.as_ref().map_err(String::clone)?;
            Repository::open_with(super::store_at(dir), Access::ReadOnly, &self.keys)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        let repo = repo.as_ref().map_err(|e| OpError::Invalid(e.clone()))?;
        Ok(repo.open_contents_ranged(token)?)
    }
}

/// Trees by key, for tests of the cache.
#[cfg(test)]
fn cached(c: &Catalog) -> std::collections::HashMap<(usize, i64), usize> {
    c.trees
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (*k, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_rules() {
        let t = tempfile::tempdir().unwrap();
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(check_mount_point(&empty).is_ok());
        let full = t.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("x"), b"x").unwrap();
        let e = check_mount_point(&full).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let file = t.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = check_mount_point(&file).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        let e = check_mount_point(&t.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used"), "{e}");
        // `/` is its own parent: a mount point of sorts, refused.
        let e = check_mount_point(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("busy"), "{e}");
    }

    #[test]
    fn listing_waits_for_the_refresh_interval() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::named("s"));
        let c = Catalog {
            archives: vec![Shown {
                name: "a".into(),
                snapshots: store.clone(),
                repo_dir: Err("none".into()),
                repo: OnceLock::new(),
                listing: Mutex::new((Vec::new(), Instant::now())),
            }],
            keys: crate::crypt::Keyring::none(),
            refresh: Duration::from_millis(200),
            trees: Mutex::new(Vec::new()),
        };
        let _ = store.put_new("2026-01-01-00-00-00", b"x").unwrap();
        assert!(c.snapshots(0).is_empty(), "listed again too early");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.snapshots(0).len(), 1);
        let _ = store.put_new("2026-01-02-00-00-00", b"x").unwrap();
        assert_eq!(c.snapshots(0).len(), 1, "at most once per interval");
        assert!(cached(&c).is_empty());
        // A snapshot that does not decode is an error, not a panic.
        assert!(c.tree(0, c.snapshots(0)[0].secs).is_err());
        assert!(c.tree(0, 12345).is_err(), "a snapshot that is not there");
    }
}
