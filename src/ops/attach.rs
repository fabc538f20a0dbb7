//! `attach`: the backup disk is the truth. After a reinstall (the
//! configuration is gone, the disk is not) or from a second machine, the
//! repositories and archives under `<location>/epygibus.d/` are found and
//! registered in this machine's configuration, so `bu` continues an
//! archive's series and every other command works as before.
//!
//! [`survey`] only reads: what is on the disk, each archive's spec (from
//! the copy beside its snapshots, else from its newest snapshot's header),
//! its owner and its repository. [`attach`] decides from the survey and
//! the configuration what to register under which name, refuses with
//! every reason at once before changing anything, and then writes the
//! configuration all or nothing.
//!
//! An archive belongs to the host that backs up into it (the spec copy's
//! `host`; its `user` is shown). Another host's is attached read-only (a
//! user name of its own does not matter: one machine, one disk): `bu`, `del`,
//! `compress -A` and `edit` refuse it. `--adopt` makes this machine its
//! owner: the configuration names the other host's snapshot directory as
//! it is (nothing on the disk is moved or renamed) and notes
//! `adopted_from`, and a new spec generation beside the snapshots records
//! this host and user as the owner, so the next attach from here treats
//! the archive as this machine's.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::archive::write_spec_copy;
use super::source::archive;
use super::{Context, OpError, Result, dir_store};
use crate::config::{Attachment, Name, RepoSpec, archive_from_parts};
use crate::content::{Access, Repository, registrations_in};
use crate::fsio;
use crate::setup::SetupError;
use crate::snapshot::exclude::Excludes;
use crate::snapshot::format::{self, SnapshotName};
use crate::snapshot::spec::{self, DiskSpec};
use crate::store::StoreError;

/// What `attach` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct AttachOptions {
    /// The backup location: the directory holding `epygibus.d`.
    pub location: PathBuf,
    /// Repositories to attach, as `NAME` or `USER/NAME`.
    pub repos: Vec<String>,
    /// Archives to attach, as `NAME` or `HOST/USER/NAME`. With neither
    /// list, everything found is attached.
    pub archives: Vec<String>,
    /// The name to register the one repository or archive given under.
    pub rename: Option<String>,
    /// Continue the archives given from this machine.
    pub adopt: bool,
}

/// A repository found on the disk.
#[derive(Clone, Debug)]
pub struct FoundRepo {
    pub user: String,
    pub name: String,
    /// Canonical.
    pub dir: PathBuf,
    /// Outside the location: reached through an archive's spec or
    /// snapshots.
    pub elsewhere: bool,
    /// Why it cannot be used (no `format` file, an unknown or newer
    /// format).
    pub problem: Option<String>,
    /// The snapshot directories its registry names (canonical).
    registered: Vec<PathBuf>,
}

impl FoundRepo {
    /// `USER/NAME`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.user, self.name)
    }
}

/// Where an archive's spec came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecOrigin {
    /// The copy beside the snapshots, this generation.
    Copy(u64),
    /// There is no complete copy (an archive made before epygibus kept
    /// one): includes and repository from this snapshot's header; exclude
    /// globs and options are unknown.
    Header(String),
}

/// An archive found on the disk.
#[derive(Clone, Debug)]
pub struct FoundArchive {
    pub host: String,
    pub user: String,
    pub name: String,
    /// Canonical.
    pub dir: PathBuf,
    pub snapshots: Vec<SnapshotName>,
    /// Its spec, or why none can be had.
    pub spec: std::result::Result<(DiskSpec, SpecOrigin), String>,
    /// Its repository directory (canonical), or why it cannot be found.
    pub repo_dir: std::result::Result<PathBuf, String>,
    /// Things worth telling (damaged spec generations…).
    pub notes: Vec<String>,
}

impl FoundArchive {
    /// `HOST/USER/NAME`, its place under `snapshots/`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.host, self.user, self.name)
    }

    /// `user@host` of whoever backs up into it: the spec copy's, else
    /// the newest snapshot's maker, else its directory's.
    pub fn owner(&self) -> String {
        format!("{}@{}", self.owner_user(), self.owner_host())
    }

    /// The host that backs up into it (see [`FoundArchive::owner`]):
    /// another host's archive is attached read-only.
    pub fn owner_host(&self) -> &str {
        match &self.spec {
            Ok((s, _)) => &s.host,
            Err(_) => &self.host,
        }
    }

    fn owner_user(&self) -> &str {
        match &self.spec {
            Ok((s, _)) => &s.user,
            Err(_) => &self.user,
        }
    }
}

/// Everything found under a location.
#[derive(Clone, Debug)]
pub struct Survey {
    /// `<location>/epygibus.d`, canonical.
    pub root: PathBuf,
    pub repos: Vec<FoundRepo>,
    pub archives: Vec<FoundArchive>,
}

fn canon(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

/// The subdirectories of `dir` with valid names (temp directories of
/// interrupted runs left out), sorted; a missing `dir` has none.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::new("list", dir.display().to_string(), e).into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::new("list", dir.display().to_string(), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.parse::<Name>().is_err() || fsio::is_temp_name(name.as_bytes()) {
            continue;
        }
        if fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads what `<location>/epygibus.d` holds; changes nothing.
pub fn survey(location: &Path, keys: &crate::crypt::Keyring) -> Result<Survey> {
    let bad = |err| SetupError::BadLocation {
        path: location.to_owned(),
        err,
    };
    let meta = fs::metadata(location).map_err(bad)?;
    if !meta.is_dir() {
        return Err(SetupError::NotADirectory(location.to_owned()).into());
    }
    let root = fs::canonicalize(location).map_err(bad)?.join("epygibus.d");
    if !root.is_dir() {
        return Err(OpError::NotABackupLocation(location.to_owned()));
    }
    let mut repos = Vec::new();
    for (user, user_dir) in subdirs(&root.join("repos"))? {
        for (name, dir) in subdirs(&user_dir)? {
            repos.push(found_repo(user.clone(), name, &dir, false));
        }
    }
    let mut archives = Vec::new();
    for (host, host_dir) in subdirs(&root.join("snapshots"))? {
        for (user, user_dir) in subdirs(&host_dir)? {
            for (name, dir) in subdirs(&user_dir)? {
                archives.push(found_archive(
                    &host,
                    &user,
                    &name,
                    &canon(&dir),
                    &repos,
                    keys,
                ));
            }
        }
    }
    Ok(Survey {
        root,
        repos,
        archives,
    })
}

fn found_repo(user: String, name: String, dir: &Path, elsewhere: bool) -> FoundRepo {
    let dir = canon(dir);
    let store = dir_store(&dir);
    let problem = Repository::check_format(store.as_ref())
        .err()
        .map(|e| e.to_string());
    let mut registered = Vec::new();
    if problem.is_none() {
        for reg in registrations_in(store.as_ref()).unwrap_or_default() {
            let Ok(reg) = reg else { continue };
            let relative = reg.relative.as_ref().map(|r| dir.join(r));
            match relative {
                Some(r) if r.is_dir() => registered.push(canon(&r)),
                _ => registered.push(canon(Path::new(&reg.snapshot_dir))),
            }
        }
    }
    FoundRepo {
        user,
        name,
        dir,
        elsewhere,
        problem,
        registered,
    }
}

fn path_of(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

/// The key of a sealed snapshot directory: that of the encrypted
/// repository here whose key (from `keys`) opens its files.
fn sealing_key(
    raw: &crate::store::SharedStore,
    repos: &[FoundRepo],
    keys: &crate::crypt::Keyring,
) -> Option<std::sync::Arc<crate::crypt::RepoKey>> {
    repos.iter().filter(|r| r.problem.is_none()).find_map(|r| {
        let key = crate::content::repository_key(&dir_store(&r.dir), keys).ok()??;
        let sealed = crate::store::sealed::seal_if(raw.clone(), Some(&key));
        let opens = match format::list_snapshots(sealed.as_ref()).ok()?.last() {
            Some(newest) => format::read_header(sealed.as_ref(), newest).is_ok(),
            None => spec::read(sealed.as_ref()).is_ok_and(|f| f.newest.is_some()),
        };
        opens.then_some(key)
    })
}

fn found_archive(
    host: &str,
    user: &str,
    name: &str,
    dir: &Path,
    repos: &[FoundRepo],
    keys: &crate::crypt::Keyring,
) -> FoundArchive {
    let raw = dir_store(dir);
    let mut notes = Vec::new();
    // An encrypted repository's archive: every file sealed with its key.
    let store = match crate::store::sealed::holds_sealed(raw.as_ref()).unwrap_or(false) {
        false => raw,
        true => match sealing_key(&raw, repos, keys) {
            Some(key) => crate::store::sealed::seal_if(raw, Some(&key)),
            None => {
                notes.push(
                    "its files are encrypted, and no key this run has opens an encrypted repository here that they belong to (give --identity FILE)"
                        .to_owned(),
                );
                raw
            }
        },
    };
    let snapshots = match format::list_snapshots(store.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            notes.push(format!("its snapshots cannot be listed: {e}"));
            Vec::new()
        }
    };
    let header = || -> std::result::Result<(SnapshotName, format::Header), String> {
        let newest = snapshots
            .last()
            .ok_or_else(|| "it holds neither a spec copy nor any snapshot".to_owned())?;
        format::read_header(store.as_ref(), newest)
            .map(|h| (*newest, h))
            .map_err(|e| e.to_string())
    };
    let copy = match spec::read(store.as_ref()) {
        Ok(found) => {
            notes.extend(found.damaged);
            found.newest.map(|(g, s)| (s, SpecOrigin::Copy(g)))
        }
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    };
    let spec = match copy {
        Some(c) => Ok(c),
        None => header().map(|(newest, h)| {
            notes.push(format!(
                "it has no complete spec copy beside its snapshots, so its includes and repository come from snapshot {}; its exclude globs and options are not known (check them with `epygibus show` and `epygibus edit`)",
                newest.stamp()
            ));
            let spec = DiskSpec {
                archive: name.to_owned(),
                host: h.host.clone(),
                user: h.user.clone(),
                repo: h.repo.name.clone(),
                repo_path: h.repo.path.clone(),
                repo_relative: h.repo.relative.clone(),
                fields: BTreeMap::new(),
                lists: crate::config::ArchiveLists {
                    includes: h.includes.iter().map(|i| i.to_vec()).collect(),
                    ..Default::default()
                },
            };
            (spec, SpecOrigin::Header(newest.stamp()))
        }),
    };
    let repo_dir = find_repo(dir, &spec, &header, repos);
    FoundArchive {
        host: host.to_owned(),
        user: user.to_owned(),
        name: name.to_owned(),
        dir: dir.to_owned(),
        snapshots,
        spec,
        repo_dir,
        notes,
    }
}

/// An archive's repository: relative to its snapshot directory (the disk
/// may be mounted elsewhere now), then a repository of the location whose
/// registry names the directory, then the absolute path last recorded.
fn find_repo(
    dir: &Path,
    spec: &std::result::Result<(DiskSpec, SpecOrigin), String>,
    header: &dyn Fn() -> std::result::Result<(SnapshotName, format::Header), String>,
    repos: &[FoundRepo],
) -> std::result::Result<PathBuf, String> {
    let mut relative = Vec::new();
    let mut absolute = Vec::new();
    let mut name = String::new();
    if let Ok((s, origin)) = spec {
        relative.push(s.repo_relative.clone());
        absolute.push(s.repo_path.clone());
        name = s.repo.clone();
        if matches!(origin, SpecOrigin::Copy(_))
            && let Ok((_, h)) = header()
        {
            relative.push(h.repo.relative.clone());
            absolute.push(h.repo.path.clone());
        }
    }
    let is_repo = |p: &Path| p.join("format").is_file();
    for r in relative.iter().filter(|r| !r.is_empty()) {
        let candidate = dir.join(path_of(r));
        if is_repo(&candidate) {
            return Ok(canon(&candidate));
        }
    }
    if let Some(r) = repos.iter().find(|r| r.registered.iter().any(|d| d == dir)) {
        return Ok(r.dir.clone());
    }
    for a in absolute.iter().filter(|a| !a.is_empty()) {
        let candidate = path_of(a);
        if is_repo(&candidate) {
            return Ok(canon(&candidate));
        }
    }
    let last = absolute
        .iter()
        .find(|a| !a.is_empty())
        .map(|a| path_of(a).display().to_string())
        .unwrap_or_else(|| "not recorded".into());
    Err(match spec {
        Err(why) => why.clone(),
        Ok(_) => format!(
            "its repository `{name}` cannot be found (last at {last}); mount it there or beside the snapshot directory"
        ),
    })
}

/// What attach did with one thing it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Registered now under this name.
    Attached(Name),
    /// Configured already (for this very directory) under this name.
    Already(Name),
    /// Configured already as read-only, now continued from this machine.
    Adopted(Name),
    /// Not asked for.
    NotSelected,
}

impl Outcome {
    pub fn name(&self) -> Option<&Name> {
        match self {
            Outcome::Attached(n) | Outcome::Already(n) | Outcome::Adopted(n) => Some(n),
            Outcome::NotSelected => None,
        }
    }
}

/// A repository and what attach did with it.
#[derive(Clone, Debug)]
pub struct RepoReport {
    pub found: FoundRepo,
    pub outcome: Outcome,
}

/// An archive and what attach did with it.
#[derive(Clone, Debug)]
pub struct ArchiveReport {
    pub found: FoundArchive,
    pub outcome: Outcome,
    /// The repository's name in this configuration.
    pub repository: Option<Name>,
    /// This machine may only read it.
    pub read_only: bool,
    /// This machine continues another's archive (`--adopt`).
    pub adopted: bool,
    /// Its snapshot directory was missing from its repository's registry
    /// and was registered now (so prune sees its snapshots).
    pub registered_now: bool,
}

/// Everything found and what attach did.
#[derive(Clone, Debug)]
pub struct AttachReport {
    pub root: PathBuf,
    pub repos: Vec<RepoReport>,
    pub archives: Vec<ArchiveReport>,
}

/// Picks one of `ids` (full ids with their short names) by `sel`: a full
/// id, or a short name that only one has.
fn pick(
    sel: &str,
    what: &str,
    form: &str,
    ids: &[(String, String)],
    root: &Path,
) -> std::result::Result<usize, String> {
    if let Some(i) = ids.iter().position(|(id, _)| id == sel) {
        return Ok(i);
    }
    let hits: Vec<usize> = (0..ids.len()).filter(|&i| ids[i].1 == sel).collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => {
            let all: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
            Err(format!(
                "no {what} `{sel}` in {} ({})",
                root.display(),
                if all.is_empty() {
                    format!("it holds no {what}")
                } else {
                    format!("found: {}", all.join(", "))
                }
            ))
        }
        many => Err(format!(
            "`{sel}` names several {what}s in {}: {}; give one as {form}",
            root.display(),
            many.iter()
                .map(|&i| ids[i].0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A configured archive's snapshot directory (canonical) and spec fields.
type Configured = (PathBuf, BTreeMap<String, String>);

/// Per archive, what apply must do.
enum ArchivePlan {
    Skip,
    Already(Name),
    New {
        name: Name,
        fields: BTreeMap<String, String>,
        read_only: bool,
        adopted: bool,
    },
    Upgrade {
        name: Name,
        old: BTreeMap<String, String>,
        new: BTreeMap<String, String>,
    },
}

/// Finds what `opts.location` holds and registers it in the
/// configuration. Every reason to refuse is collected before anything is
/// written; a failure while writing undoes what was written.
pub fn attach(ctx: &Context, opts: &AttachOptions) -> Result<AttachReport> {
    let survey = survey(&opts.location, &ctx.keys)?;
    let config = &ctx.config;
    let typed = opts.location.display().to_string();
    let refuse = |why: String| Err(OpError::AttachRefused(vec![why]));
    let rename: Option<Name> = opts.rename.as_deref().map(str::parse).transpose()?;
    let explicit = opts.repos.len() + opts.archives.len();
    if rename.is_some() && explicit != 1 {
        return refuse(
            "`--as` gives one repository or archive a name of its own: name exactly one with -R or -A"
                .into(),
        );
    }
    if opts.adopt && opts.archives.is_empty() {
        return refuse("`--adopt` continues the archives named with -A: add -A NAME".into());
    }
    if survey.repos.is_empty() && survey.archives.is_empty() {
        return refuse(format!(
            "{} holds no repositories and no archives",
            survey.root.display()
        ));
    }
    let mut refused = Vec::new();

    // What was asked for.
    let mut repos: Vec<(FoundRepo, bool, bool)> = survey
        .repos
        .iter()
        .map(|r| (r.clone(), explicit == 0, false))
        .collect();
    let repo_ids: Vec<(String, String)> = survey
        .repos
        .iter()
        .map(|r| (r.id(), r.name.clone()))
        .collect();
    for sel in &opts.repos {
        match pick(
            sel,
            "repository",
            "USER/NAME",
            &repo_ids,
            &survey.root.join("repos"),
        ) {
            Ok(i) => {
                repos[i].1 = true;
                repos[i].2 = true;
            }
            Err(e) => refused.push(e),
        }
    }
    let mut chosen: Vec<(bool, bool)> = vec![(explicit == 0, false); survey.archives.len()];
    let archive_ids: Vec<(String, String)> = survey
        .archives
        .iter()
        .map(|a| (a.id(), a.name.clone()))
        .collect();
    for sel in &opts.archives {
        match pick(
            sel,
            "archive",
            "HOST/USER/NAME",
            &archive_ids,
            &survey.root.join("snapshots"),
        ) {
            Ok(i) => chosen[i] = (true, true),
            Err(e) => refused.push(e),
        }
    }
    // An archive needs its repository configured too.
    for (a, _) in survey.archives.iter().zip(&chosen).filter(|(_, c)| c.0) {
        let Ok(dir) = &a.repo_dir else { continue };
        match repos.iter_mut().find(|(r, _, _)| &r.dir == dir) {
            Some(r) => r.1 = true,
            None => {
                let user = dir
                    .parent()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                repos.push((found_repo(user, name, dir, true), true, false));
            }
        }
    }

    // The configuration as it is.
    let mut configured_repos: Vec<(Name, Option<PathBuf>)> = Vec::new();
    for n in config.repo_names()? {
        // attach surveys a directory: repositories elsewhere (a bucket)
        // are never the ones it finds.
        let path = config
            .repo(&n)
            .ok()
            .and_then(|s| s.location.as_dir().map(canon));
        configured_repos.push((n, path));
    }
    let mut configured_archives: Vec<(Name, Option<Configured>)> = Vec::new();
    for n in config.archive_names()? {
        let found = config
            .archive_fields(&n)
            .ok()
            .and_then(|f| Some((canon(Path::new(f.get("snapshot_dir")?)), f)));
        configured_archives.push((n, found));
    }

    // Repository names.
    let single_repo = opts.archives.is_empty() && opts.repos.len() == 1;
    let mut repo_outcomes: Vec<Outcome> = Vec::new();
    let mut taken_repo_names: Vec<(Name, PathBuf)> = Vec::new();
    for (r, selected, was_named) in &repos {
        if !selected {
            repo_outcomes.push(Outcome::NotSelected);
            continue;
        }
        if let Some((n, _)) = configured_repos
            .iter()
            .find(|(_, p)| p.as_ref() == Some(&r.dir))
        {
            repo_outcomes.push(Outcome::Already(n.clone()));
            continue;
        }
        repo_outcomes.push(Outcome::NotSelected);
        if let Some(p) = &r.problem {
            refused.push(format!(
                "repository {} cannot be attached: {p}",
                r.dir.display()
            ));
            continue;
        }
        let name = match (&rename, single_repo && *was_named) {
            (Some(n), true) => n.clone(),
            _ => match r.name.parse::<Name>() {
                Ok(n) => n,
                Err(e) => {
                    refused.push(format!("repository {}: {e}", r.dir.display()));
                    continue;
                }
            },
        };
        if let Some((_, p)) = configured_repos.iter().find(|(n, _)| *n == name) {
            refused.push(format!(
                "a repository named `{name}` is configured already ({}); attach the one at {} under another name: `epygibus attach --location={typed} -R {} --as NEW_NAME`",
                p.as_ref().map_or_else(|| "its spec cannot be read".into(), |p| p.display().to_string()),
                r.dir.display(),
                r.id()
            ));
            continue;
        }
        if let Some((_, other)) = taken_repo_names.iter().find(|(n, _)| *n == name) {
            refused.push(format!(
                "two repositories found are both named `{name}` ({} and {}): attach them one at a time with `-R USER/NAME --as NEW_NAME`",
                other.display(),
                r.dir.display()
            ));
            continue;
        }
        taken_repo_names.push((name.clone(), r.dir.clone()));
        *repo_outcomes.last_mut().expect("pushed above") = Outcome::Attached(name);
    }
    let repo_name_of = |dir: &Path| -> Option<Name> {
        repos
            .iter()
            .zip(&repo_outcomes)
            .find(|((r, _, _), _)| r.dir == dir)
            .and_then(|(_, o)| o.name().cloned())
    };

    // Archive names and specs.
    let host = fsio::host_name();
    let single_archive = opts.repos.is_empty() && opts.archives.len() == 1;
    let mut plans: Vec<ArchivePlan> = Vec::new();
    let mut taken_archive_names: Vec<(Name, PathBuf)> = Vec::new();
    for (a, &(selected, was_named)) in survey.archives.iter().zip(&chosen) {
        plans.push(ArchivePlan::Skip);
        if !selected {
            continue;
        }
        let adopt = opts.adopt && was_named;
        if let Some((n, Some((_, fields)))) = configured_archives
            .iter()
            .find(|(_, f)| f.as_ref().is_some_and(|(p, _)| p == &a.dir))
        {
            let read_only = matches!(
                Attachment::of(fields, Path::new("")),
                Ok(Attachment::ReadOnly { .. })
            );
            let elsewhere = a.owner_host() != host;
            *plans.last_mut().expect("pushed above") = if adopt && (read_only || elsewhere) {
                let mut new = fields.clone();
                new.remove("read_only");
                new.remove("made_by");
                if elsewhere {
                    new.insert("adopted_from".into(), a.owner());
                }
                ArchivePlan::Upgrade {
                    name: n.clone(),
                    old: fields.clone(),
                    new,
                }
            } else {
                ArchivePlan::Already(n.clone())
            };
            continue;
        }
        let cannot = |why: &str| format!("archive {} cannot be attached: {why}", a.dir.display());
        let (spec, origin) = match &a.spec {
            Ok(s) => s,
            Err(why) => {
                refused.push(cannot(why));
                continue;
            }
        };
        let repo_dir = match &a.repo_dir {
            Ok(d) => d,
            Err(why) => {
                refused.push(cannot(why));
                continue;
            }
        };
        // Refused above when its repository cannot be attached.
        let Some(repo_name) = repo_name_of(repo_dir) else {
            continue;
        };
        let name = match (&rename, single_archive && was_named) {
            (Some(n), true) => n.clone(),
            _ => match a.name.parse::<Name>() {
                Ok(n) => n,
                Err(e) => {
                    refused.push(cannot(&e.to_string()));
                    continue;
                }
            },
        };
        if let Some((_, f)) = configured_archives.iter().find(|(n, _)| *n == name) {
            let there = f.as_ref().map_or_else(
                || "its spec cannot be read".into(),
                |(p, _)| format!("snapshots in {}", p.display()),
            );
            refused.push(format!(
                "an archive named `{name}` is configured already ({there}); attach the one in {} under another name: `epygibus attach --location={typed} -A {} --as NEW_NAME`",
                a.dir.display(),
                a.id()
            ));
            continue;
        }
        if let Some((_, other)) = taken_archive_names.iter().find(|(n, _)| *n == name) {
            refused.push(format!(
                "two archives found are both named `{name}` ({} and {}): attach them one at a time with `-A HOST/USER/NAME --as NEW_NAME`",
                other.display(),
                a.dir.display()
            ));
            continue;
        }
        let owner = a.owner();
        let from_header = matches!(origin, SpecOrigin::Header(_));
        let elsewhere = a.owner_host() != host;
        let read_only = !adopt && (elsewhere || from_header);
        let adopted = adopt && elsewhere;
        let mut fields = spec.fields.clone();
        fields.insert("repo".into(), repo_name.to_string());
        fields.insert("snapshot_dir".into(), a.dir.display().to_string());
        if read_only {
            fields.insert("read_only".into(), "true".into());
            let why = if from_header {
                format!(
                    "{owner} (it has no spec copy, so its exclude globs and options are not known)"
                )
            } else {
                owner.clone()
            };
            fields.insert("made_by".into(), why);
        }
        if adopted {
            fields.insert("adopted_from".into(), owner.clone());
        }
        let place = match origin {
            SpecOrigin::Copy(g) => a.dir.join(spec::generation_name(*g)),
            SpecOrigin::Header(stamp) => a.dir.join(stamp),
        };
        if let Err(e) = check_spec(&name, &fields, &spec.lists, &place) {
            refused.push(cannot(&e));
            continue;
        }
        taken_archive_names.push((name.clone(), a.dir.clone()));
        *plans.last_mut().expect("pushed above") = ArchivePlan::New {
            name,
            fields,
            read_only,
            adopted,
        };
    }
    if !refused.is_empty() {
        return Err(OpError::AttachRefused(refused));
    }

    // Write, all or nothing.
    let mut undo: Vec<Undo> = Vec::new();
    let mut registered_now = vec![false; survey.archives.len()];
    let applied = apply(
        ctx,
        &survey,
        &repos,
        &repo_outcomes,
        &plans,
        &typed,
        &mut undo,
        &mut registered_now,
    );
    if let Err(e) = applied {
        for u in undo.into_iter().rev() {
            let _ = match u {
                Undo::Repo(n) => config.remove_repo(&n),
                Undo::Archive(n) => config.remove_archive(&n),
                Undo::Fields(n, old) => config.replace_archive_fields(&n, &old, ""),
            };
        }
        return Err(e);
    }

    let repo_reports = repos
        .into_iter()
        .zip(repo_outcomes)
        .map(|((found, _, _), outcome)| RepoReport { found, outcome })
        .collect();
    let archives = survey
        .archives
        .iter()
        .zip(plans)
        .zip(registered_now)
        .map(|((a, plan), registered_now)| {
            let (outcome, read_only, adopted) = match plan {
                ArchivePlan::Skip => (Outcome::NotSelected, a.owner_host() != host, false),
                ArchivePlan::Already(n) => {
                    let read_only = matches!(
                        config.archive_attachment(&n),
                        Ok(Attachment::ReadOnly { .. })
                    );
                    (Outcome::Already(n), read_only, false)
                }
                ArchivePlan::New {
                    name,
                    read_only,
                    adopted,
                    ..
                } => (Outcome::Attached(name), read_only, adopted),
                ArchivePlan::Upgrade { name, .. } => (Outcome::Adopted(name), false, true),
            };
            let repository = a.repo_dir.as_ref().ok().and_then(|d| {
                configured_repos
                    .iter()
                    .find(|(_, p)| p.as_deref() == Some(d.as_path()))
                    .map(|(n, _)| n.clone())
                    .or_else(|| {
                        taken_repo_names
                            .iter()
                            .find(|(_, p)| p == d)
                            .map(|(n, _)| n.clone())
                    })
            });
            ArchiveReport {
                found: a.clone(),
                outcome,
                repository,
                read_only,
                adopted,
                registered_now,
            }
        })
        .collect();
    Ok(AttachReport {
        root: survey.root,
        repos: repo_reports,
        archives,
    })
}

/// The checks `new` and `edit` make, on a spec about to be attached:
/// the fields parse, includes are absolute (at least one), globs parse.
fn check_spec(
    name: &Name,
    fields: &BTreeMap<String, String>,
    lists: &crate::config::ArchiveLists,
    place: &Path,
) -> std::result::Result<(), String> {
    let spec = archive_from_parts(name, fields, lists, place, &|_| place.to_owned())
        .map_err(|e| e.to_string())?;
    if spec.includes.is_empty() {
        return Err(format!("{} names no include", place.display()));
    }
    if let Some(p) = spec.includes.iter().find(|p| !p.is_absolute()) {
        return Err(format!(
            "{} has an include that is not an absolute path: {}",
            place.display(),
            p.display()
        ));
    }
    Excludes::new(&spec.excluded_dirs, &spec.excluded_files)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", place.display()))
}

enum Undo {
    Repo(Name),
    Archive(Name),
    Fields(Name, BTreeMap<String, String>),
}

#[allow(clippy::too_many_arguments)]
fn apply(
    ctx: &Context,
    survey: &Survey,
    repos: &[(FoundRepo, bool, bool)],
    repo_outcomes: &[Outcome],
    plans: &[ArchivePlan],
    typed: &str,
    undo: &mut Vec<Undo>,
    registered_now: &mut [bool],
) -> Result<()> {
    let config = &ctx.config;
    for ((r, _, _), outcome) in repos.iter().zip(repo_outcomes) {
        if let Outcome::Attached(name) = outcome {
            config.add_repo(&RepoSpec {
                name: name.clone(),
                location: crate::store::Location::Dir(r.dir.clone()),
            })?;
            undo.push(Undo::Repo(name.clone()));
        }
    }
    for (a, plan) in survey.archives.iter().zip(plans) {
        match plan {
            ArchivePlan::New {
                name,
                fields,
                read_only,
                ..
            } => {
                let mut comment = format!(
                    "epygibus archive `{name}`, attached by `epygibus attach` from\n{}",
                    a.dir.display()
                );
                if *read_only {
                    comment.push_str(&format!(
                        "\nread-only here; `epygibus attach --location={typed} -A {} --adopt`\ncontinues it from this machine",
                        a.id()
                    ));
                }
                let lists = &a.spec.as_ref().expect("planned with a spec").0.lists;
                config.add_archive_raw(name, fields, lists, &comment)?;
                undo.push(Undo::Archive(name.clone()));
            }
            ArchivePlan::Upgrade { name, old, new } => {
                let comment = format!(
                    "epygibus archive `{name}`, attached by `epygibus attach` from\n{}\nand adopted: backed up from this machine",
                    a.dir.display()
                );
                config.replace_archive_fields(name, new, &comment)?;
                undo.push(Undo::Fields(name.clone(), old.clone()));
            }
            ArchivePlan::Skip | ArchivePlan::Already(_) => {}
        }
    }
    // Prune and check find snapshots through the registry: an archive
    // missing from it would have its content pruned.
    for (i, (a, plan)) in survey.archives.iter().zip(plans).enumerate() {
        if matches!(plan, ArchivePlan::New { .. } | ArchivePlan::Upgrade { .. }) {
            let repo_dir = a.repo_dir.as_ref().expect("planned with a repository");
            registered_now[i] = ensure_registered(ctx, repo_dir, a)?;
        }
    }
    // An adopted archive's owner is this machine from now on; one of this
    // machine's own gets its spec copy brought up to date when it can (a
    // disk mounted read-only to restore from must not stop attach).
    for plan in plans {
        match plan {
            ArchivePlan::New {
                name,
                adopted: true,
                ..
            }
            | ArchivePlan::Upgrade { name, .. } => {
                let a = archive(ctx, name.as_str())?;
                write_spec_copy(ctx, &a, true)?;
            }
            ArchivePlan::New {
                name,
                read_only: false,
                ..
            } => {
                if let Ok(a) = archive(ctx, name.as_str()) {
                    let _ = write_spec_copy(ctx, &a, false);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Registers the archive's snapshot directory in its repository unless
/// some registration names it already; returns whether it wrote one.
fn ensure_registered(ctx: &Context, repo_dir: &Path, a: &FoundArchive) -> Result<bool> {
    let store = dir_store(repo_dir);
    for reg in registrations_in(store.as_ref())?.into_iter().flatten() {
        let relative = reg.relative.as_ref().map(|r| repo_dir.join(r));
        let dir = match relative {
            Some(r) if r.is_dir() => r,
            _ => PathBuf::from(&reg.snapshot_dir),
        };
        if canon(&dir) == a.dir {
            return Ok(false);
        }
    }
    let repo = Repository::open_with(store, Access::ReadOnly, &ctx.keys)?;
    let relative = fsio::relative_path(repo_dir, &a.dir);
    repo.register_user(
        &format!("{}--{}--{}", a.host, a.user, a.name),
        &a.dir.display().to_string(),
        relative.to_str(),
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_full_id_or_unique_short_name() {
        let ids = vec![
            ("h1/u/docs".to_owned(), "docs".to_owned()),
            ("h2/u/docs".to_owned(), "docs".to_owned()),
            ("h1/u/mail".to_owned(), "mail".to_owned()),
        ];
        let root = Path::new("/l/epygibus.d/snapshots");
        assert_eq!(pick("mail", "archive", "H/U/N", &ids, root), Ok(2));
        assert_eq!(pick("h2/u/docs", "archive", "H/U/N", &ids, root), Ok(1));
        let e = pick("docs", "archive", "HOST/USER/NAME", &ids, root).unwrap_err();
        assert!(
            e.contains("h1/u/docs, h2/u/docs") && e.contains("HOST/USER/NAME"),
            "{e}"
        );
        let e = pick("nope", "archive", "H/U/N", &ids, root).unwrap_err();
        assert!(
            e.contains("/l/epygibus.d/snapshots") && e.contains("found: h1/u/docs"),
            "{e}"
        );
    }
}
