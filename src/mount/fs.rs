//! The FUSE requests, answered from the catalog: directories, attributes
//! and symlinks from snapshot trees, file content from the repository.
//! The file system is mounted read-only, so the kernel answers writes
//! with EROFS before they reach us; the few that would are refused here
//! too.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, Request,
};

use super::inodes::{Inodes, Place, ROOT};
use crate::content::RangedContent;
use crate::ops::mount::Catalog;
use crate::snapshot::format::{Snapshot, SnapshotName};
use crate::snapshot::model::{Attrs, DirNode, Node};

/// How long the kernel may keep names and attributes of the mount point,
/// archives and `latest` (they change when snapshots come and go).
const TTL_LISTING: Duration = Duration::from_secs(1);
/// … and of what is inside a snapshot, which never changes.
const TTL_SNAPSHOT: Duration = Duration::from_secs(3600);
/// Reported as the preferred I/O size: `cat` and `cp` read this much at a
/// time, so fewer requests cross into the mount.
const BLKSIZE: u32 = 1 << 20;

pub struct SnapshotFs {
    catalog: Catalog,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Arc<Mutex<RangedContent>>>>,
    next_handle: AtomicU64,
    /// Owner and time of the directories the mount makes up.
    uid: u32,
    gid: u32,
    started: SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// What a place is, resolved against its snapshot.
enum Found<'t> {
    /// A directory the mount makes up (root, archive).
    Made {
        children: u32,
    },
    Latest(String),
    Dir(&'t DirNode),
    Node(&'t Node),
}

impl SnapshotFs {
    pub fn new(catalog: Catalog) -> SnapshotFs {
        SnapshotFs {
            catalog,
            inodes: Mutex::new(Inodes::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            started: SystemTime::now(),
        }
    }

    fn place(&self, ino: INodeNo) -> Result<Place, Errno> {
        lock(&self.inodes).place(ino.0).ok_or(Errno::ENOENT)
    }

    fn tree(&self, archive: usize, secs: i64) -> Result<Arc<Snapshot>, Errno> {
        self.catalog.tree(archive, secs).map_err(|_| Errno::ENOENT)
    }

    /// The newest snapshot's name, if any.
    fn latest(&self, archive: usize) -> Option<SnapshotName> {
        self.catalog.snapshots(archive).last().copied()
    }

    /// Resolves `place` inside `tree` (which must be its snapshot's) and
    /// calls `f` with what it is.
    fn with_found<R>(
        &self,
        place: &Place,
        f: impl FnOnce(Found) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        match place {
            Place::Root => f(Found::Made {
                children: self.catalog.archive_names().len() as u32,
            }),
            Place::Archive(a) => f(Found::Made {
                children: self.catalog.snapshots(*a).len() as u32,
            }),
            Place::Latest(a) => {
                let newest = self.latest(*a).ok_or(Errno::ENOENT)?;
                f(Found::Latest(newest.stamp()))
            }
            Place::Snapshot(a, secs) => {
                let t = self.tree(*a, *secs)?;
                f(Found::Dir(&t.root))
            }
            Place::Entry(a, secs, path) => {
                let t = self.tree(*a, *secs)?;
                let node = node_at(&t.root, path).ok_or(Errno::ENOENT)?;
                f(Found::Node(node))
            }
        }
    }

    fn made_attr(
        &self,
        ino: u64,
        kind: FileType,
        size: u64,
        nlink: u32,
        time: SystemTime,
    ) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind,
            perm: if kind == FileType::Symlink {
                0o777
            } else {
                0o555
            },
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn attr(&self, ino: u64, place: &Place) -> Result<(FileAttr, Duration), Errno> {
        let archive_time = |a: usize| {
            self.latest(a).map_or(self.started, |n| {
                time_of(n.secs.saturating_mul(1_000_000_000))
            })
        };
        let ttl = match place {
            Place::Root | Place::Archive(_) | Place::Latest(_) => TTL_LISTING,
            _ => TTL_SNAPSHOT,
        };
        let attr = self.with_found(place, |found| {
            Ok(match found {
                Found::Made { children } => {
                    let time = match place {
                        Place::Archive(a) => archive_time(*a),
                        _ => self.started,
                    };
                    self.made_attr(ino, FileType::Directory, 0, 2 + children, time)
                }
                Found::Latest(target) => {
                    let Place::Latest(a) = place else {
                        unreachable!()
                    };
                    self.made_attr(
                        ino,
                        FileType::Symlink,
                        target.len() as u64,
                        1,
                        archive_time(*a),
                    )
                }
                Found::Dir(d) => recorded(ino, FileType::Directory, &d.attrs, 0),
                Found::Node(Node::Dir(d)) => recorded(ino, FileType::Directory, &d.attrs, 0),
                Found::Node(Node::File(f)) => {
                    recorded(ino, FileType::RegularFile, &f.attrs, f.size)
                }
                Found::Node(Node::Link(l)) => {
                    recorded(ino, FileType::Symlink, &l.attrs, l.target.len() as u64)
                }
            })
        })?;
        Ok((attr, ttl))
    }

    /// The entries of a directory place: name, place, hard-link identity
    /// and type.
    fn children(&self, place: &Place) -> Result<Vec<Child>, Errno> {
        match place {
            Place::Root => Ok(self
                .catalog
                .archive_names()
                .iter()
                .enumerate()
                .map(|(i, n)| Child::made(n.as_bytes(), Place::Archive(i), FileType::Directory))
                .collect()),
            Place::Archive(a) => {
                let names = self.catalog.snapshots(*a);
                let mut out: Vec<Child> = names
                    .iter()
                    .map(|n| {
                        Child::made(
                            n.stamp().as_bytes(),
                            Place::Snapshot(*a, n.secs),
                            FileType::Directory,
                        )
                    })
                    .collect();
                if !names.is_empty() {
                    out.push(Child::made(b"latest", Place::Latest(*a), FileType::Symlink));
                }
                Ok(out)
            }
            Place::Snapshot(a, secs) | Place::Entry(a, secs, _) => {
                let t = self.tree(*a, *secs)?;
                let (dir, base) = match place {
                    Place::Entry(_, _, path) => match node_at(&t.root, path) {
                        Some(Node::Dir(d)) => (d, path.clone()),
                        Some(_) => return Err(Errno::ENOTDIR),
                        None => return Err(Errno::ENOENT),
                    },
                    _ => (&t.root, Vec::new()),
                };
                Ok(dir
                    .entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mut path = base.clone();
                        path.push(i as u32);
                        Child {
                            name: e.name.as_bytes().to_vec(),
                            place: Place::Entry(*a, *secs, path),
                            hard_link: hard_link(&e.node),
                            kind: kind_of(&e.node),
                        }
                    })
                    .collect())
            }
            Place::Latest(_) => Err(Errno::ENOTDIR),
        }
    }

    /// One entry of a directory place, by name.
    fn child(&self, parent: &Place, name: &[u8]) -> Result<Child, Errno> {
        if let Place::Snapshot(a, secs) | Place::Entry(a, secs, _) = parent {
            // Entries are sorted by name: a binary search, not a listing.
            let t = self.tree(*a, *secs)?;
            let (dir, mut path) = match parent {
                Place::Entry(_, _, path) => match node_at(&t.root, path) {
                    Some(Node::Dir(d)) => (d, path.clone()),
                    Some(_) => return Err(Errno::ENOTDIR),
                    None => return Err(Errno::ENOENT),
                },
                _ => (&t.root, Vec::new()),
            };
            let i = dir
                .entries
                .binary_search_by(|e| e.name.as_bytes().cmp(name))
                .map_err(|_| Errno::ENOENT)?;
            let node = &dir.entries[i].node;
            path.push(i as u32);
            return Ok(Child {
                name: name.to_vec(),
                place: Place::Entry(*a, *secs, path),
                hard_link: hard_link(node),
                kind: kind_of(node),
            });
        }
        self.children(parent)?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or(Errno::ENOENT)
    }
}

struct Child {
    name: Vec<u8>,
    place: Place,
    hard_link: Option<(u64, u64)>,
    kind: FileType,
}

impl Child {
    fn made(name: &[u8], place: Place, kind: FileType) -> Child {
        Child {
            name: name.to_vec(),
            place,
            hard_link: None,
            kind,
        }
    }
}

fn kind_of(node: &Node) -> FileType {
    match node {
        Node::Dir(_) => FileType::Directory,
        Node::File(_) => FileType::RegularFile,
        Node::Link(_) => FileType::Symlink,
    }
}

/// The on-disk identity of a file with more than one name.
fn hard_link(node: &Node) -> Option<(u64, u64)> {
    match node {
        Node::File(f) if f.attrs.nlink > 1 => Some((f.attrs.dev, f.attrs.ino)),
        _ => None,
    }
}

fn node_at<'t>(root: &'t DirNode, path: &[u32]) -> Option<&'t Node> {
    let (last, parents) = path.split_last()?;
    let mut dir = root;
    for &i in parents {
        match &dir.entries.get(i as usize)?.node {
            Node::Dir(d) => dir = d,
            _ => return None,
        }
    }
    dir.entries.get(*last as usize).map(|e| &e.node)
}

/// Attributes as the snapshot recorded them.
fn recorded(ino: u64, kind: FileType, a: &Attrs, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time_of(a.atime_ns),
        mtime: time_of(a.mtime_ns),
        ctime: time_of(a.ctime_ns),
        crtime: time_of(a.mtime_ns),
        kind,
        perm: a.permissions() as u16,
        nlink: a.nlink.clamp(1, u64::from(u32::MAX)) as u32,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

impl Filesystem for SnapshotFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let the kernel read ahead as far as it will: content is streamed.
        let _ = config
            .set_max_readahead(u32::MAX)
            .or_else(|max| config.set_max_readahead(max));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let answer = (|| {
            let parent = self.place(parent)?;
            let child = self.child(&parent, name.as_bytes())?;
            let ino = lock(&self.inodes).number(child.place.clone(), child.hard_link);
            let (attr, ttl) = self.attr(ino, &child.place)?;
            lock(&self.inodes).looked_up(ino);
            Ok::<_, Errno>((attr, ttl))
        })();
        match answer {
            Ok((attr, ttl)) => reply.entry(&ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.inodes).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.place(ino).and_then(|p| self.attr(ino.0, &p)) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let target = self.place(ino).and_then(|p| {
            self.with_found(&p, |found| match found {
                Found::Latest(t) => Ok(t.into_bytes()),
                Found::Node(Node::Link(l)) => Ok(l.target.clone()),
                _ => Err(Errno::EINVAL),
            })
        });
        match target {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let opened = self.place(ino).and_then(|p| {
            let Place::Entry(a, _, _) = p else {
                return Err(Errno::EISDIR);
            };
            let token = self.with_found(&p, |found| match found {
                Found::Node(Node::File(f)) => Ok(f.token),
                Found::Node(Node::Dir(_)) => Err(Errno::EISDIR),
                _ => Err(Errno::EINVAL),
            })?;
            self.catalog.open_content(a, &token).map_err(|_| Errno::EIO)
        });
        match opened {
            Ok(content) => {
                let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
                lock(&self.handles).insert(fh, Arc::new(Mutex::new(content)));
                // Content never changes: what the kernel cached stays good.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(content) = lock(&self.handles).get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0; size as usize];
        match lock(&content).read_at(offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(_) => reply.error(Errno::EIO),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.handles).remove(&fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.place(ino).and_then(|p| {
            let children = self.children(&p)?;
            Ok((p, children))
        });
        let (place, children) = match listed {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let parent = match &place {
            Place::Root => ROOT,
            Place::Archive(_) | Place::Latest(_) => ROOT,
            Place::Snapshot(a, _) => lock(&self.inodes).number(Place::Archive(*a), None),
            Place::Entry(a, secs, path) => {
                let up = if path.len() == 1 {
                    Place::Snapshot(*a, *secs)
                } else {
                    Place::Entry(*a, *secs, path[..path.len() - 1].to_vec())
                };
                lock(&self.inodes).number(up, None)
            }
        };
        let dots = [
            (ino.0, FileType::Directory, &b"."[..]),
            (parent, FileType::Directory, b".."),
        ];
        let mut i = offset as usize;
        while i < dots.len() + children.len() {
            let full = if i < dots.len() {
                let (n, kind, name) = dots[i];
                reply.add(INodeNo(n), i as u64 + 1, kind, OsStr::from_bytes(name))
            } else {
                let c = &children[i - dots.len()];
                let n = lock(&self.inodes).number(c.place.clone(), c.hard_link);
                reply.add(INodeNo(n), i as u64 + 1, c.kind, OsStr::from_bytes(&c.name))
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }
}
