//! Restore and extract: putting a snapshot's files back on disk exactly.
//!
//! Every file-system call below the target is made relative to an open
//! directory descriptor with one path component and `O_NOFOLLOW`, so neither
//! a crafted snapshot nor a symlink the restore itself created can make it
//! write outside the target (docs/design.md, "restore never writes outside its target"). Files are written to a temp
//! name and renamed, so an interrupted restore leaves no half-written file
//! under a real name. Directory modes and times are applied last, after
//! their contents, so read-only directories still receive their files.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use super::model::{Attrs, DirNode, FileName, FileNode, LinkNode, Node};
use crate::content::{BatchData, ContentError, ContentToken, Repository, TokenHasher};

/// Where a restore reads content: the repository, or a view of another
/// store of the same content (the original epygibus's repository, read
/// directly). The restore checks every byte against the token itself.
pub trait ContentSource: Sync {
    /// A reader of the content `token` names.
    fn open_content(&self, token: &ContentToken) -> io::Result<Box<dyn Read + Send + '_>>;

    /// How the tokens were made, to check what is read against them.
    fn token_hasher(&self) -> TokenHasher {
        TokenHasher::Plain
    }

    /// The tokens (by position) in groups read together, in the order to
    /// read them; by default each alone, in the order given.
    fn read_groups<'a>(&'a self, tokens: &[ContentToken]) -> Vec<Box<dyn ReadGroup + 'a>> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Box::new(Single {
                    source: self,
                    member: [(i, *t)],
                }) as Box<dyn ReadGroup + 'a>
            })
            .collect()
    }
}

/// Contents read together (the neighbouring entries of one pack).
pub trait ReadGroup: Sync + Send {
    /// Positions in the list given to [`ContentSource::read_groups`], with
    /// their tokens.
    fn members(&self) -> &[(usize, ContentToken)];
    /// A reader of one member's content.
    fn open(&self, token: &ContentToken) -> io::Result<Box<dyn Read + Send + '_>>;
}

struct Single<'a, S: ContentSource + ?Sized> {
    source: &'a S,
    member: [(usize, ContentToken); 1],
}

impl<S: ContentSource + ?Sized> ReadGroup for Single<'_, S> {
    fn members(&self) -> &[(usize, ContentToken)] {
        &self.member
    }

    fn open(&self, token: &ContentToken) -> io::Result<Box<dyn Read + Send + '_>> {
        self.source.open_content(token)
    }
}

impl ContentSource for Repository {
    fn token_hasher(&self) -> TokenHasher {
        Repository::token_hasher(self)
    }

    fn open_content(&self, token: &ContentToken) -> io::Result<Box<dyn Read + Send + '_>> {
        match self.open_contents_read_only(token) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// In the order the content lies in the repository: each pack once,
    /// front to back (docs/design.md, speed rules).
    fn read_groups<'a>(&'a self, tokens: &[ContentToken]) -> Vec<Box<dyn ReadGroup + 'a>> {
        self.plan_reads(tokens)
            .into_iter()
            .map(|b| Box::new(self.read_batch(b)) as Box<dyn ReadGroup + 'a>)
            .collect()
    }
}

impl ReadGroup for BatchData<'_> {
    fn members(&self) -> &[(usize, ContentToken)] {
        BatchData::members(self)
    }

    fn open(&self, token: &ContentToken) -> io::Result<Box<dyn Read + Send + '_>> {
        match BatchData::open(self, token) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(io::Error::other(e)),
        }
    }
}
use crate::fsio;
use crate::progress::Progress;

/// Why a restore stopped before it was finished.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{path} already exists; use --overwrite to replace it")]
    TargetExists { path: PathBuf },
    #[error(
        "{path} is not a directory now (the snapshot has one there); nothing is written through it: restore or extract a directory above it instead"
    )]
    NotADirectory { path: PathBuf },
    #[error("could not {action} {path}: {err}")]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(
        "the restore was cancelled; files written so far are complete, the rest were not touched"
    )]
    Cancelled,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RestoreError + 'a {
    move |err| RestoreError::Io {
        action,
        path: path.to_owned(),
        err,
    }
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// How to treat what is already at the target.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Replace differing files instead of moving them aside.
    pub overwrite: bool,
    /// Set owner and group (only root may).
    pub set_owner: bool,
    /// Suffix stamp for moved-aside files, e.g. the current UTC time.
    pub aside_stamp: String,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub links: u64,
    pub hard_links: u64,
    /// Files left alone because their content already matched.
    pub unchanged: u64,
    /// Paths of things moved aside, with their new names.
    pub moved_aside: Vec<(PathBuf, PathBuf)>,
    /// Entries that could not be restored, with why.
    pub problems: Vec<String>,
}

struct DirJob {
    fd: OwnedFd,
    path: PathBuf,
    attrs: Option<Attrs>,
    /// Created empty by this restore: nothing in it needs checking first
    /// (saves a stat per entry when extracting).
    fresh: bool,
}

struct FileJob<'s> {
    dir: usize,
    name: &'s FileName,
    node: &'s FileNode,
    path: PathBuf,
    /// Hard link: the job of the first name of the same inode.
    link_to: Option<usize>,
}

struct Restorer<'s> {
    repo: &'s dyn ContentSource,
    progress: &'s dyn Progress,
    opts: &'s RestoreOptions,
    dirs: Vec<DirJob>,
    files: Vec<FileJob<'s>>,
    inodes: HashMap<(u64, u64), usize>,
    report: RestoreReport,
    /// The target may close files late (not a known local file system):
    /// see [`settle_close`].
    settle_closes: bool,
}

/// The directory a restore writes into.
pub struct Parent {
    fd: OwnedFd,
    path: PathBuf,
    /// Directories created to reach it, with the attributes the snapshot
    /// has for them: applied after the restore, deepest first.
    created: Vec<(OwnedFd, Attrs)>,
}

impl Parent {
    /// A directory the user chose (`extract --into_dir`): symlinks in its
    /// path are followed, as the user expects.
    pub fn chosen(path: &Path) -> Result<Parent, RestoreError> {
        Ok(Parent {
            fd: open_dir_path(path)?,
            path: path.to_owned(),
            created: Vec::new(),
        })
    }

    /// The original parent of a restored entry, reached one component at a
    /// time from `/` without following symlinks: a symlink where the
    /// snapshot has a directory (perhaps restored a moment ago) is refused,
    /// never written through. Missing directories are created and later
    /// given the snapshot's attributes.
    pub fn original(path: &Path, snapshot_root: &DirNode) -> Result<Parent, RestoreError> {
        let mut fd = open_dir_path(Path::new("/"))?;
        let mut walked = PathBuf::from("/");
        let mut node = Some(snapshot_root);
        let mut created = Vec::new();
        for comp in path.components().skip(1) {
            let name = comp.as_os_str().as_bytes();
            walked.push(comp);
            node = match node.and_then(|d| d.get(name)) {
                Some(Node::Dir(d)) => Some(d),
                _ => None,
            };
            let made = match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => false,
                Err(e) => return Err(io_err("create directory", &walked)(errno(e))),
            };
            let next = rustix::fs::openat(
                &fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                    RestoreError::NotADirectory {
                        path: walked.clone(),
                    }
                }
                e => io_err("open directory", &walked)(errno(e)),
            })?;
            if made && let Some(d) = node {
                created.push((
                    next.try_clone()
                        .map_err(io_err("open directory", &walked))?,
                    d.attrs,
                ));
            }
            fd = next;
        }
        Ok(Parent {
            fd,
            path: path.to_owned(),
            created,
        })
    }
}

/// Restores `node` as `name` inside `parent`.
pub fn restore_into(
    repo: &dyn ContentSource,
    parent: Parent,
    name: &FileName,
    node: &Node,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport, RestoreError> {
    raise_fd_limit();
    let settle_closes = !fsio::is_known_local(&parent.path);
    let mut r = Restorer {
        repo,
        progress,
        opts,
        settle_closes,
        dirs: vec![DirJob {
            fd: parent.fd,
            path: parent.path,
            attrs: None,
            fresh: false,
        }],
        files: Vec::new(),
        inodes: HashMap::new(),
        report: RestoreReport::default(),
    };
    r.place(0, name, node)?;
    let (files, bytes) = r
        .files
        .iter()
        .fold((0, 0), |(n, b), f| (n + 1, b + f.node.size));
    progress.phase("restoring", files, bytes);
    let written = r.write_files();
    progress.finish();
    written?;
    r.link_files()?;
    r.finish_dirs();
    for (fd, attrs) in parent.created.iter().rev() {
        apply_attrs(fd, attrs, opts.set_owner);
    }
    Ok(r.report)
}

/// Opens a directory given by a full path (the target the user chose).
fn open_dir_path(path: &Path) -> Result<OwnedFd, RestoreError> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open directory", path)(errno(e)))
}

/// Many directories are held open at once; allow as many as the system does.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

fn timestamps(attrs: &Attrs) -> Timestamps {
    Timestamps {
        last_access: timespec(attrs.atime_ns),
        last_modification: timespec(attrs.mtime_ns),
    }
}

/// Owner first (chown clears setuid bits), then mode, then times.
/// Failures are ignored: file systems without permissions (exFAT, SMB)
/// refuse some of these, and the content is what matters.
fn apply_attrs(fd: &OwnedFd, attrs: &Attrs, set_owner: bool) {
    apply_owner_and_mode(fd, attrs, set_owner);
    let _ = rustix::fs::futimens(fd, &timestamps(attrs));
}

fn apply_owner_and_mode(fd: &OwnedFd, attrs: &Attrs, set_owner: bool) {
    if set_owner {
        let _ = rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(attrs.uid)),
            Some(rustix::fs::Gid::from_raw(attrs.gid)),
        );
    }
    let _ = rustix::fs::fchmod(fd, Mode::from_raw_mode(attrs.permissions()));
}

/// What is at a name in a directory now.
enum Existing {
    Nothing,
    Dir,
    File { size: u64, dev: u64, ino: u64 },
    Link(Vec<u8>),
    Other,
}

fn existing(dir: &OwnedFd, name: &FileName) -> io::Result<Existing> {
    match rustix::fs::statat(dir, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(Existing::Nothing),
        Err(e) => Err(errno(e)),
        Ok(st) => {
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            Ok(match kind {
                rustix::fs::FileType::Directory => Existing::Dir,
                rustix::fs::FileType::RegularFile => Existing::File {
                    size: st.st_size as u64,
                    dev: st.st_dev,
                    ino: st.st_ino,
                },
                rustix::fs::FileType::Symlink => Existing::Link(
                    rustix::fs::readlinkat(dir, name.as_bytes(), Vec::new())
                        .map_err(errno)?
                        .into_bytes(),
                ),
                _ => Existing::Other,
            })
        }
    }
}

impl<'s> Restorer<'s> {
    fn problem(&mut self, message: String) {
        self.report.problems.push(message);
    }

    /// Phase 1, in tree order: directories and symlinks are made now,
    /// regular files are queued.
    fn place(
        &mut self,
        dir: usize,
        name: &'s FileName,
        node: &'s Node,
    ) -> Result<(), RestoreError> {
        let path = self.dirs[dir].path.join(name.as_os_str());
        match node {
            Node::Dir(d) => self.place_dir(dir, name, d, path),
            Node::File(f) => {
                let link_to = if f.attrs.nlink > 1 {
                    match self.inodes.entry((f.attrs.dev, f.attrs.ino)) {
                        MapEntry::Occupied(first) => Some(*first.get()),
                        MapEntry::Vacant(slot) => {
                            slot.insert(self.files.len());
                            None
                        }
                    }
                } else {
                    None
                };
                self.files.push(FileJob {
                    dir,
                    name,
                    node: f,
                    path,
                    link_to,
                });
                Ok(())
            }
            Node::Link(l) => {
                if let Err(e) = self.place_link(dir, name, l) {
                    let message = match e.raw_os_error() {
                        Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EOPNOTSUPP) => format!(
                            "skipped symlink {} -> {}: the file system does not support symlinks",
                            path.display(),
                            String::from_utf8_lossy(&l.target)
                        ),
                        _ => format!("could not restore symlink {}: {e}", path.display()),
                    };
                    self.problem(message);
                }
                Ok(())
            }
        }
    }

    fn place_dir(
        &mut self,
        dir: usize,
        name: &'s FileName,
        node: &'s DirNode,
        path: PathBuf,
    ) -> Result<(), RestoreError> {
        match self
            .existing_in(dir, name)
            .map_err(io_err("inspect", &path))?
        {
            Existing::Dir => {}
            Existing::Nothing => {}
            _ => self.move_aside(dir, name)?,
        }
        let parent = &self.dirs[dir].fd;
        let fresh = match rustix::fs::mkdirat(parent, name.as_bytes(), Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(io_err("create directory", &path)(errno(e))),
        };
        let fd = rustix::fs::openat(
            parent,
            name.as_bytes(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open directory", &path)(errno(e)))?;
        self.report.dirs += 1;
        let index = self.dirs.len();
        self.dirs.push(DirJob {
            fd,
            path,
            attrs: Some(node.attrs),
            fresh,
        });
        for entry in &node.entries {
            self.place(index, &entry.name, &entry.node)?;
        }
        Ok(())
    }

    /// What is at `name` in directory `dir` now; nothing, without asking,
    /// in a directory this restore created.
    fn existing_in(&self, dir: usize, name: &FileName) -> io::Result<Existing> {
        let job = &self.dirs[dir];
        if job.fresh {
            Ok(Existing::Nothing)
        } else {
            existing(&job.fd, name)
        }
    }

    fn place_link(&mut self, dir: usize, name: &FileName, link: &LinkNode) -> io::Result<()> {
        match self.existing_in(dir, name)? {
            Existing::Link(target) if target == link.target => {}
            Existing::Nothing => {
                rustix::fs::symlinkat(&link.target[..], &self.dirs[dir].fd, name.as_bytes())
                    .map_err(errno)?;
            }
            Existing::Link(_) | Existing::File { .. } if self.opts.overwrite => {
                let temp = fsio::temp_name();
                let fd = &self.dirs[dir].fd;
                rustix::fs::symlinkat(&link.target[..], fd, temp.as_str()).map_err(errno)?;
                rustix::fs::renameat(fd, temp.as_str(), fd, name.as_bytes()).map_err(errno)?;
            }
            _ => {
                self.move_aside(dir, name)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                rustix::fs::symlinkat(&link.target[..], &self.dirs[dir].fd, name.as_bytes())
                    .map_err(errno)?;
            }
        }
        let fd = &self.dirs[dir].fd;
        if self.opts.set_owner {
            let _ = rustix::fs::chownat(
                fd,
                name.as_bytes(),
                Some(rustix::fs::Uid::from_raw(link.attrs.uid)),
                Some(rustix::fs::Gid::from_raw(link.attrs.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
        let _ = rustix::fs::utimensat(
            fd,
            name.as_bytes(),
            &timestamps(&link.attrs),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.report.links += 1;
        Ok(())
    }

    /// Renames what is at `name` to `name.~epygibus-<stamp>~` (or with a
    /// counter), never over anything.
    fn move_aside(&mut self, dir: usize, name: &FileName) -> Result<(), RestoreError> {
        let job = &self.dirs[dir];
        let from = job.path.join(name.as_os_str());
        let moved = move_aside_in(&job.fd, name, &self.opts.aside_stamp)
            .map_err(io_err("move aside", &from))?;
        self.report
            .moved_aside
            .push((from, job.path.join(std::ffi::OsStr::from_bytes(&moved))));
        Ok(())
    }

    /// Phase 2: regular files, on all cores.
    fn write_files(&mut self) -> Result<(), RestoreError> {
        let fatal: Mutex<Option<RestoreError>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        let problems = Mutex::new(Vec::new());
        let aside = Mutex::new(Vec::new());
        let (files, bytes, unchanged) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
        let this = &*self;
        let each = |job: &FileJob, data: &dyn ReadGroup| {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if this.progress.cancelled() {
                stop.store(true, Ordering::Relaxed);
                fatal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(RestoreError::Cancelled);
                return;
            }
            let outcome = this.restore_file(job, data);
            this.progress.file_done(job.node.size);
            match outcome {
                Ok(Outcome::Written(moved)) => {
                    files.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(job.node.size, Ordering::Relaxed);
                    if let Some(m) = moved {
                        aside.lock().unwrap_or_else(|p| p.into_inner()).push(m);
                    }
                }
                Ok(Outcome::Unchanged) => {
                    unchanged.fetch_add(1, Ordering::Relaxed);
                }
                Err(FileFailure::Skip(msg)) => {
                    problems.lock().unwrap_or_else(|p| p.into_inner()).push(msg)
                }
                Err(FileFailure::Fatal(e)) => {
                    stop.store(true, Ordering::Relaxed);
                    fatal
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        };
        // Content is read in the order it lies in the repository: each
        // pack once, front to back (docs/design.md, speed rules).
        let jobs: Vec<&FileJob> = this.files.iter().filter(|j| j.link_to.is_none()).collect();
        let tokens: Vec<ContentToken> = jobs.iter().map(|j| j.node.token).collect();
        let groups = this.repo.read_groups(&tokens);
        crate::pool::io_pool().install(|| {
            // By value: a group's bytes go as soon as its files are written.
            groups.into_par_iter().for_each(|group| {
                for (i, _) in group.members() {
                    each(jobs[*i], group.as_ref());
                }
            })
        });
        if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        self.report.files += files.into_inner();
        self.report.bytes += bytes.into_inner();
        self.report.unchanged += unchanged.into_inner();
        self.report
            .problems
            .extend(problems.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.report
            .moved_aside
            .extend(aside.into_inner().unwrap_or_else(|p| p.into_inner()));
        Ok(())
    }

    /// Restores one regular file (phase 2).
    fn restore_file(&self, job: &FileJob, data: &dyn ReadGroup) -> Result<Outcome, FileFailure> {
        let dir = &self.dirs[job.dir];
        let now = self
            .existing_in(job.dir, job.name)
            .map_err(|e| skip_io("inspect", &job.path, e))?;
        let mut moved = None;
        match now {
            Existing::Nothing => {}
            Existing::File { size, .. } if size == job.node.size => {
                if same_content(&dir.fd, job.name, &job.node.token, self.repo.token_hasher()) {
                    return Ok(Outcome::Unchanged);
                }
                if !self.opts.overwrite {
                    moved = Some(self.aside(job)?);
                }
            }
            Existing::File { .. } | Existing::Link(_) if self.opts.overwrite => {}
            _ => moved = Some(self.aside(job)?),
        }
        let open = || data.open(&job.node.token);
        self.write_content(&dir.fd, dir.fresh, job.name, job.node, &job.path, &open)?;
        Ok(Outcome::Written(moved))
    }

    fn aside(&self, job: &FileJob) -> Result<(PathBuf, PathBuf), FileFailure> {
        let dir = &self.dirs[job.dir];
        let moved = move_aside_in(&dir.fd, job.name, &self.opts.aside_stamp)
            .map_err(|e| skip_io("move aside", &job.path, e))?;
        Ok((
            job.path.clone(),
            dir.path.join(std::ffi::OsStr::from_bytes(&moved)),
        ))
    }

    /// Writes content to a temp name, checks it against its token, sets
    /// attributes, then renames it into place. In a directory this restore
    /// created (`fresh`), nothing can be in the way and nobody else looks:
    /// the file is written under its own name (one rename fewer per file;
    /// a damaged one is removed again).
    fn write_content<'o>(
        &self,
        dir: &OwnedFd,
        fresh: bool,
        name: &FileName,
        node: &FileNode,
        path: &Path,
        open: &dyn Fn() -> io::Result<Box<dyn Read + Send + 'o>>,
    ) -> Result<(), FileFailure> {
        let mut reader = match open() {
            Ok(r) => r,
            Err(e) => {
                return Err(FileFailure::Skip(format!(
                    "could not restore {}: {e}",
                    path.display()
                )));
            }
        };
        let temp = fsio::temp_name();
        let first_name = if fresh {
            name.as_bytes()
        } else {
            temp.as_bytes()
        };
        let fd = rustix::fs::openat(
            dir,
            first_name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| classify("create", path, errno(e)))?;
        let tokens = self.repo.token_hasher();
        let written =
            copy_checked(&mut reader, File::from(fd), node, path, tokens).and_then(|file| {
                let fd = OwnedFd::from(file);
                apply_owner_and_mode(&fd, &node.attrs, self.opts.set_owner);
                drop(fd);
                if !fresh {
                    rustix::fs::renameat(dir, temp.as_str(), dir, name.as_bytes())
                        .map_err(|e| classify("rename into place", path, errno(e)))?;
                }
                if self.settle_closes {
                    settle_close(dir, name);
                }
                // Times last, by name: over SMB the rename resets the mtime.
                let _ = rustix::fs::utimensat(
                    dir,
                    name.as_bytes(),
                    &timestamps(&node.attrs),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
                Ok(())
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(dir, first_name, AtFlags::empty());
        }
        written
    }

    /// Phase 2b: the other names of hard-linked files, linked to the first
    /// name where the file system allows it, copied where it does not.
    fn link_files(&mut self) -> Result<(), RestoreError> {
        for i in 0..self.files.len() {
            let Some(first) = self.files[i].link_to else {
                continue;
            };
            match self.link_one(i, first) {
                Ok(true) => self.report.hard_links += 1,
                Ok(false) => {
                    self.report.files += 1;
                    self.report.bytes += self.files[i].node.size;
                }
                Err(FileFailure::Skip(msg)) => self.problem(msg),
                Err(FileFailure::Fatal(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Returns true when linked, false when copied instead.
    fn link_one(&mut self, i: usize, first: usize) -> Result<bool, FileFailure> {
        let (job, primary) = (&self.files[i], &self.files[first]);
        let dir = &self.dirs[job.dir];
        let from = &self.dirs[primary.dir];
        let target =
            existing(&from.fd, primary.name).map_err(|e| skip_io("inspect", &primary.path, e))?;
        let now = existing(&dir.fd, job.name).map_err(|e| skip_io("inspect", &job.path, e))?;
        if same_inode(&target, &now) {
            return Ok(true);
        }
        let moved = match now {
            Existing::Nothing => None,
            Existing::File { .. } | Existing::Link(_) if self.opts.overwrite => None,
            _ => Some(self.aside(job)?),
        };
        let temp = fsio::temp_name();
        let linked = matches!(target, Existing::File { .. })
            && rustix::fs::linkat(
                &from.fd,
                primary.name.as_bytes(),
                &dir.fd,
                temp.as_str(),
                AtFlags::empty(),
            )
            .is_ok();
        let result = if linked {
            rustix::fs::renameat(&dir.fd, temp.as_str(), &dir.fd, job.name.as_bytes())
                .map_err(|e| classify("rename into place", &job.path, errno(e)))
        } else {
            let open = || self.repo.open_content(&job.node.token);
            // Not fresh: the name may hold what was moved aside above.
            self.write_content(&dir.fd, false, job.name, job.node, &job.path, &open)
        };
        if result.is_err() && linked {
            let _ = rustix::fs::unlinkat(&dir.fd, temp.as_str(), AtFlags::empty());
        }
        result?;
        if let Some(m) = moved {
            self.report.moved_aside.push(m);
        }
        Ok(linked)
    }

    /// Phase 3: directory attributes, deepest first, after their contents.
    fn finish_dirs(&mut self) {
        for job in self.dirs.iter().rev() {
            if let Some(attrs) = &job.attrs {
                apply_attrs(&job.fd, attrs, self.opts.set_owner);
            }
        }
    }
}

enum Outcome {
    Written(Option<(PathBuf, PathBuf)>),
    Unchanged,
}

/// A file that could not be restored: skip it, or stop everything (no
/// space left, read-only target: every other file would fail too).
enum FileFailure {
    Skip(String),
    Fatal(RestoreError),
}

fn skip_io(action: &str, path: &Path, e: io::Error) -> FileFailure {
    FileFailure::Skip(format!("could not {action} {}: {e}", path.display()))
}

fn classify(action: &'static str, path: &Path, e: io::Error) -> FileFailure {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EROFS) | Some(libc::EACCES) => {
            FileFailure::Fatal(io_err(action, path)(e))
        }
        _ => FileFailure::Skip(format!("could not {action} {}: {e}", path.display())),
    }
}

/// The largest buffer a restored file's content is copied through.
const COPY_BUFFER: u64 = 256 * 1024;

/// Copies content into `out`, hashing it; a mismatch with the token means
/// the repository's copy is damaged, and the file is not put in place.
fn copy_checked(
    reader: &mut impl Read,
    mut out: File,
    node: &FileNode,
    path: &Path,
    tokens: TokenHasher,
) -> Result<File, FileFailure> {
    let mut hasher = tokens.hasher();
    // Sized to the file: a restore writes tens of thousands of small files,
    // and a full-size buffer each was zeroed and page-faulted in for every
    // one of them (perf of the full corpus's extract: 6% in memset alone).
    // One byte more than the file, so its end is a read of 0 in the same
    // buffer.
    let mut buf = vec![0u8; node.size.saturating_add(1).clamp(4096, COPY_BUFFER) as usize];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FileFailure::Skip(format!(
                    "could not restore {}: reading its content failed: {e}",
                    path.display()
                )));
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| classify("write", path, e))?;
        total += n as u64;
    }
    if ContentToken::from_hasher(&hasher) != node.token || total != node.size {
        return Err(FileFailure::Skip(format!(
            "could not restore {}: the repository's copy of its content is damaged",
            path.display()
        )));
    }
    Ok(out)
}

/// Waits until the file system has finished closing `name`: through FUSE
/// (the SMB and exFAT mounts) a close returns before the file system's own
/// close runs, and Samba sets a written file's mtime to "now" at that close,
/// undoing times set before it (measured on the SMB rig: 9 of 300 files
/// lost their mtime without this, none of 300 with it). Opening the file
/// again waits for that close; on a known local file system it is skipped.
fn settle_close(dir: &OwnedFd, name: &FileName) {
    let _ = rustix::fs::openat(
        dir,
        name.as_bytes(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    );
}

/// True when both are the same regular file (already hard-linked).
fn same_inode(a: &Existing, b: &Existing) -> bool {
    matches!(
        (a, b),
        (Existing::File { dev, ino, .. }, Existing::File { dev: d2, ino: i2, .. })
            if (dev, ino) == (d2, i2)
    )
}

/// True when the file `name` in `dir` has exactly the content of `token`.
fn same_content(dir: &OwnedFd, name: &FileName, token: &ContentToken, tokens: TokenHasher) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        name.as_bytes(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut file = File::from(fd);
    crate::content::hash_reader(&mut file, tokens).is_ok_and(|t| t == *token)
}

/// Renames `name` to `name.~epygibus-<stamp>~` (adding `-N` if taken).
fn move_aside_in(dir: &OwnedFd, name: &FileName, stamp: &str) -> io::Result<Vec<u8>> {
    for n in 0..1000 {
        let mut aside = name.as_bytes().to_vec();
        aside.extend_from_slice(format!(".~epygibus-{stamp}").as_bytes());
        if n > 0 {
            aside.extend_from_slice(format!("-{n}").as_bytes());
        }
        aside.push(b'~');
        match rustix::fs::renameat_with(
            dir,
            name.as_bytes(),
            dir,
            &aside[..],
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => return Ok(aside),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                if rustix::fs::statat(dir, &aside[..], AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                    continue;
                }
                rustix::fs::renameat(dir, name.as_bytes(), dir, &aside[..]).map_err(errno)?;
                return Ok(aside);
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Err(io::Error::other("too many moved-aside copies already"))
}
