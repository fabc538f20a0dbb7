//! Creating repositories and archives: directories on the backup disk plus
//! specs in the configuration, all or nothing. A failure leaves neither a
//! spec nor a half-made directory.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::config::{ArchiveSpec, Config, ConfigError, Name, RepoSpec};
use crate::content::{Access, ContentError, Repository};
use crate::fsio;
use crate::snapshot::exclude::{BadGlob, Excludes};
use crate::snapshot::forget::{Policy, PolicyError};
use crate::snapshot::spec::{self, DiskSpec, SpecError};
use crate::store::{LocalStore, Store};

/// Name of the repository `new` uses when none is given.
pub const DEFAULT_REPO: &str = "default";

/// Why a repository or archive could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Glob(#[from] BadGlob),
    #[error("location {path} cannot be used: {err}")]
    BadLocation { path: PathBuf, err: io::Error },
    #[error("location {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{what} `{value}` cannot be used as a directory name; {hint}")]
    BadIdentity {
        what: &'static str,
        value: String,
        hint: &'static str,
    },
    #[error("include {path} cannot be backed up: {reason}")]
    BadInclude { path: PathBuf, reason: String },
    #[error(
        "repository directory {dir} already exists; to use that repository from this machine, run `epygibus attach --location={location} -R {name}`"
    )]
    RepoDirTaken {
        dir: PathBuf,
        location: String,
        name: Name,
    },
    #[error(
        "snapshot directory {dir} already exists: an archive is there already (names are compared without case on SMB and exFAT); to continue it from this machine, run `epygibus attach --location={location} -A {name}`, or choose another name"
    )]
    SnapshotDirTaken {
        dir: PathBuf,
        location: String,
        name: Name,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "no repository named `{name}` is configured here, but {dir} holds one; to use it from this machine, run `epygibus attach --location={location} -R {name}` first"
    )]
    RepoNotAttached {
        name: Name,
        dir: PathBuf,
        location: String,
    },
    #[error("could not create {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

type Result<T, E = SetupError> = std::result::Result<T, E>;

/// `<location>/epygibus.d`, after checking the location is a directory.
fn data_root(location: &Path) -> Result<PathBuf> {
    let bad = |err| SetupError::BadLocation {
        path: location.to_owned(),
        err,
    };
    let meta = fs::metadata(location).map_err(bad)?;
    if !meta.is_dir() {
        return Err(SetupError::NotADirectory(location.to_owned()));
    }
    Ok(fs::canonicalize(location).map_err(bad)?.join("epygibus.d"))
}

fn portable(what: &'static str, value: String) -> Result<Name> {
    value.parse().map_err(|_| SetupError::BadIdentity {
        what,
        value,
        hint: "names on the backup disk use letters, digits, `.`, `_` and `-` only",
    })
}

pub fn user() -> Result<Name> {
    portable("your user name", fsio::user_name())
}

pub fn host() -> Result<Name> {
    portable("this host's name", fsio::host_name())
}

/// Creates repository `name` in `<location>/epygibus.d/repos/<user>/` and
/// records its spec.
pub fn create_repository(
    config: &Config,
    name: &Name,
    location: &Path,
    compressed: bool,
) -> Result<RepoSpec> {
    if config.repo(name).is_ok() || config.repo_spec_path(name).exists() {
        return Err(ConfigError::Taken {
            kind: "repository",
            name: name.to_string(),
            path: config.repo_spec_path(name),
        }
        .into());
    }
    let parent = data_root(location)?.join("repos").join(user()?.as_str());
    let created = fsio::create_dir_chain(&parent).map_err(|err| SetupError::Io {
        path: parent.clone(),
        err,
    })?;
    let dir = parent.join(name.as_str());
    let spec = RepoSpec {
        name: name.clone(),
        path: dir.clone(),
    };
    let result = Repository::create_dir(&dir, compressed)
        .map_err(|e| match e {
            ContentError::AlreadyExists(dir) => SetupError::RepoDirTaken {
                dir,
                location: location.display().to_string(),
                name: name.clone(),
            },
            other => other.into(),
        })
        .and_then(|()| {
            config.add_repo(&spec).map_err(|e| {
                let _ = fs::remove_dir_all(&dir);
                SetupError::from(e)
            })
        });
    if let Err(e) = result {
        fsio::remove_dir_chain(&created);
        return Err(e);
    }
    Ok(spec)
}

/// The configured repository `name` for `new`; when it is not configured
/// but `location` holds a repository of that name (the configuration was
/// lost, or it is another machine's), the error says how to attach it.
pub fn repo_for_new(config: &Config, name: &Name, location: Option<&Path>) -> Result<RepoSpec> {
    match config.repo(name) {
        Err(ConfigError::Unknown { .. }) if location.is_some() => {
            let location = location.expect("checked");
            let repos = location.join("epygibus.d").join("repos");
            let on_disk = fs::read_dir(&repos)
                .into_iter()
                .flatten()
                .flatten()
                .map(|user| user.path().join(name.as_str()))
                .find(|dir| dir.join("format").is_file());
            match on_disk {
                Some(dir) => Err(SetupError::RepoNotAttached {
                    name: name.clone(),
                    dir,
                    location: location.display().to_string(),
                }),
                None => Ok(config.repo(name)?),
            }
        }
        other => Ok(other?),
    }
}

/// The repository `new` uses when none is named: `default`, created at
/// the default data location on first use. Returns it and whether it was
/// created now.
pub fn default_repository(config: &Config) -> Result<(RepoSpec, bool)> {
    let name: Name = DEFAULT_REPO.parse().expect("a valid name");
    if let Ok(spec) = config.repo(&name) {
        return Ok((spec, false));
    }
    let location = default_location()?;
    Ok((create_repository(config, &name, &location, true)?, true))
}

/// Where repositories and archives go when no location is given: the
/// data directory (see [`Config::default_data_dir`]), created if missing.
pub fn default_location() -> Result<PathBuf> {
    let location = Config::default_data_dir()?;
    fs::create_dir_all(&location).map_err(|err| SetupError::Io {
        path: location.clone(),
        err,
    })?;
    Ok(location)
}

/// What `new` needs to create an archive.
pub struct NewArchive {
    pub name: Name,
    pub repo: RepoSpec,
    pub location: PathBuf,
    pub includes: Vec<PathBuf>,
    pub excluded_dirs: Vec<String>,
    pub excluded_files: Vec<String>,
    pub compress: bool,
    pub keep_broken_soft_links: bool,
    pub compare_inodes: bool,
    /// Retention rules to store in the spec.
    pub policy: Option<Policy>,
}

/// Creates the archive's snapshot directory, records its spec and registers
/// the directory in the repository.
pub fn create_archive(config: &Config, new: NewArchive) -> Result<ArchiveSpec> {
    let includes = new
        .includes
        .iter()
        .map(|p| checked_include(p))
        .collect::<Result<Vec<_>>>()?;
    create(config, new, includes)
}

/// Creates an archive for snapshots imported from the original epygibus:
/// as [`create_archive`], but its includes need not exist on this machine
/// (the backups may come from another one); they are only made absolute.
pub fn create_imported_archive(config: &Config, new: NewArchive) -> Result<ArchiveSpec> {
    let includes = new.includes.iter().map(|p| clean_path(p)).collect();
    create(config, new, includes)
}

fn create(config: &Config, new: NewArchive, includes: Vec<PathBuf>) -> Result<ArchiveSpec> {
    if config.archive_dir(&new.name).exists() {
        return Err(ConfigError::Taken {
            kind: "archive",
            name: new.name.to_string(),
            path: config.archive_dir(&new.name),
        }
        .into());
    }
    Excludes::new(&new.excluded_dirs, &new.excluded_files)?;
    let policy_fields = match &new.policy {
        Some(p) if p.is_empty() => return Err(PolicyError::Empty.into()),
        Some(p) => p.to_fields(),
        None => Default::default(),
    };
    let repo = Repository::open_dir(&new.repo.path, Access::ReadOnly)?;
    let (host, user) = (host()?, user()?);
    let parent = data_root(&new.location)?
        .join("snapshots")
        .join(host.as_str())
        .join(user.as_str());
    let created = fsio::create_dir_chain(&parent).map_err(|err| SetupError::Io {
        path: parent.clone(),
        err,
    })?;
    let snapshot_dir = parent.join(new.name.as_str());
    if let Err(err) = fs::create_dir(&snapshot_dir) {
        fsio::remove_dir_chain(&created);
        return Err(if err.kind() == io::ErrorKind::AlreadyExists {
            SetupError::SnapshotDirTaken {
                dir: snapshot_dir,
                location: new.location.display().to_string(),
                name: new.name,
            }
        } else {
            SetupError::Io {
                path: snapshot_dir,
                err,
            }
        });
    }
    let spec = ArchiveSpec {
        name: new.name,
        repo: new.repo.name,
        snapshot_dir: snapshot_dir.clone(),
        includes,
        excluded_dirs: new.excluded_dirs,
        excluded_files: new.excluded_files,
        compress: new.compress,
        keep_broken_soft_links: new.keep_broken_soft_links,
        compare_inodes: new.compare_inodes,
    };
    let id = format!("{host}--{user}--{}", spec.name);
    let snapshots = LocalStore::new(&snapshot_dir);
    let undo_config = |e: SetupError| {
        let _ = config.remove_archive(&spec.name);
        e
    };
    let result = config
        .add_archive_with(&spec, &policy_fields)
        .map_err(SetupError::from)
        .and_then(|()| {
            // The spec beside the snapshots, so the disk alone can set the
            // archive up again (`epygibus attach`).
            let copy = DiskSpec::from_config(config, &spec.name, &snapshot_dir, &new.repo.path)
                .map_err(SetupError::from)
                .and_then(|copy| Ok(spec::write_if_changed(&snapshots, &copy)?));
            copy.map(|_| ()).map_err(undo_config)
        })
        .and_then(|()| {
            let relative = fsio::relative_path(&new.repo.path, &snapshot_dir);
            let relative = relative.to_str();
            let absolute = snapshot_dir.display().to_string();
            repo.register_user(&id, &absolute, relative)
                .map_err(|e| undo_config(e.into()))
        });
    if let Err(e) = result {
        let _ = spec::remove_all(&snapshots);
        let _ = snapshots.barrier();
        let _ = fs::remove_dir(&snapshot_dir);
        fsio::remove_dir_chain(&created);
        return Err(e);
    }
    Ok(spec)
}

/// An include as stored: absolute, without `.` or `..`, and existing.
pub fn checked_include(path: &Path) -> Result<PathBuf> {
    let bad = |reason: String| SetupError::BadInclude {
        path: path.to_owned(),
        reason,
    };
    let clean = std::path::absolute(path)
        .map(|a| clean_path(&a))
        .map_err(|e| bad(e.to_string()))?;
    fs::symlink_metadata(&clean).map_err(|e| bad(format!("it does not exist ({e})")))?;
    Ok(clean)
}

/// `path` made absolute (against the current directory) without `.` and
/// `..` components.
fn clean_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| Path::new("/").join(path));
    let mut clean = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    clean
}
