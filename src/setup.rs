//! Creating repositories and archives: directories on the backup disk plus
//! specs in the configuration, all or nothing. A failure leaves neither a
//! spec nor a half-made directory.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::config::{ArchiveSpec, Config, ConfigError, Name, RepoSpec};
use crate::content::{Access, ContentError, NewRepository, Repository};
use crate::crypt::{CryptError, KeyProtection, Keyring, RepoKey};
use crate::fsio;
use crate::snapshot::exclude::{BadGlob, Excludes};
use crate::snapshot::forget::{Policy, PolicyError};
use crate::snapshot::spec::{self, DiskSpec, SpecError};
use crate::store::{Location, S3Location, S3Store, Store};

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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
        dir: String,
        location: String,
        name: Name,
    },
    #[error(
        "snapshot directory {dir} already exists: an archive is there already (names are compared without case on SMB and exFAT); to continue it from this machine, run `epygibus attach --location={location} -A {name}`, or choose another name"
    )]
    SnapshotDirTaken {
        dir: String,
        location: String,
        name: Name,
    },
    #[error(
        "{location} already holds objects under {what} `{name}`; choose another name (or another prefix)"
    )]
    PrefixTaken {
        location: String,
        what: &'static str,
        name: Name,
    },
    #[error(
        "the S3 server of {location} does not honour conditional writes (a create-only PUT with `If-None-Match: *` replaced an existing object), so two machines could both take the repository lock and overwrite each other's index; nothing was created. Use a server that supports them (AWS S3, MinIO, Ceph), or accept a weaker lock with --accept-weak-lock if only one machine ever writes to this repository"
    )]
    NoConditionalWrites { location: String },
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
    #[error(transparent)]
    Crypt(#[from] CryptError),
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

/// How `new_repo` creates a repository.
#[derive(Default)]
pub struct RepoOptions {
    /// Encrypt everything, the repository key protected so.
    pub encrypt: Option<KeyProtection>,
    /// Store new content gzip-compressed.
    pub compressed: bool,
    /// Create a repository in a bucket whose server ignores
    /// `If-None-Match: *` (the lock then keeps apart only runs that do
    /// not start at the same moment).
    pub accept_weak_lock: bool,
}

/// A repository `new_repo` made.
pub struct NewRepo {
    pub spec: RepoSpec,
    /// The server does not honour conditional writes (accepted).
    pub weak_lock: bool,
    /// An encrypted repository: its public key, where its key is in the
    /// repository and where this machine keeps a copy.
    pub encrypted: Option<NewKey>,
}

/// Where the key of a new encrypted repository is.
pub struct NewKey {
    pub recipient: String,
    pub in_repository: String,
    pub on_this_machine: PathBuf,
}

/// Creates repository `name` in `<location>/epygibus.d/repos/<user>/`
/// (a directory, or a prefix of an S3 bucket) and records its spec.
pub fn create_repository(
    config: &Config,
    keys: &Keyring,
    name: &Name,
    location: &Location,
    opts: RepoOptions,
) -> Result<NewRepo> {
    if config.repo(name).is_ok() || config.repo_spec_path(name).exists() {
        return Err(ConfigError::Taken {
            kind: "repository",
            name: name.to_string(),
            path: config.repo_spec_path(name),
        }
        .into());
    }
    let key = opts.encrypt.as_ref().map(|_| RepoKey::generate());
    let settings = NewRepository {
        compressed: opts.compressed || key.is_some(),
        sealed: match (&key, &opts.encrypt) {
            (Some(k), Some(protection)) => {
                Some((k, crate::crypt::wrap_key(k, name.as_str(), protection)?))
            }
            _ => None,
        },
    };
    let mut made = match location {
        Location::Dir(dir) => NewRepo {
            spec: create_repository_dir(config, name, dir, &settings)?,
            weak_lock: false,
            encrypted: None,
        },
        Location::S3(at) => {
            create_repository_s3(config, name, at, &settings, opts.accept_weak_lock)?
        }
        Location::Memory(_) => {
            return Err(SetupError::NotADirectory(PathBuf::from(
                location.to_string(),
            )));
        }
    };
    if let Some(key) = key {
        // Unattended backups on this machine need the key (see
        // `crypt/keyring.rs`); the user is told where it is.
        let on_this_machine = keys.save_local(name.as_str(), &key)?;
        made.encrypted = Some(NewKey {
            recipient: key.recipient(),
            in_repository: crate::store::open(&made.spec.location).place(crate::content::KEY_FILE),
            on_this_machine,
        });
        keys.remember(std::sync::Arc::new(key));
    }
    Ok(made)
}

/// A repository in a bucket: the server must refuse to overwrite (probed
/// here), and the prefix must hold nothing yet. The `format` object is
/// written last, so a failure leaves no repository, only objects that are
/// removed again.
fn create_repository_s3(
    config: &Config,
    name: &Name,
    at: &S3Location,
    settings: &NewRepository,
    accept_weak_lock: bool,
) -> Result<NewRepo> {
    let root = at.join(&format!("epygibus.d/repos/{}/{name}", user()?));
    let store = S3Store::new(&root);
    if !store.list("")?.is_empty() {
        return Err(SetupError::PrefixTaken {
            location: root.to_string(),
            what: "repository",
            name: name.clone(),
        });
    }
    let honoured = store.conditional_writes_honoured()?;
    if !honoured && !accept_weak_lock {
        return Err(SetupError::NoConditionalWrites {
            location: at.to_string(),
        });
    }
    let spec = RepoSpec {
        name: name.clone(),
        location: Location::S3(root),
    };
    let made = Repository::create(&store, settings)
        .map_err(SetupError::from)
        .and_then(|()| Ok(config.add_repo(&spec)?));
    if let Err(e) = made {
        for meta in store.list("").unwrap_or_default() {
            let _ = store.delete(&meta.name);
        }
        return Err(e);
    }
    Ok(NewRepo {
        spec,
        weak_lock: !honoured,
        encrypted: None,
    })
}

fn create_repository_dir(
    config: &Config,
    name: &Name,
    location: &Path,
    settings: &NewRepository,
) -> Result<RepoSpec> {
    let parent = data_root(location)?.join("repos").join(user()?.as_str());
    let created = fsio::create_dir_chain(&parent).map_err(|err| SetupError::Io {
        path: parent.clone(),
        err,
    })?;
    let dir = parent.join(name.as_str());
    let spec = RepoSpec {
        name: name.clone(),
        location: Location::Dir(dir.clone()),
    };
    let result = Repository::create_dir(&dir, settings)
        .map_err(|e| match e {
            ContentError::AlreadyExists(dir) => SetupError::RepoDirTaken {
                dir: dir.display().to_string(),
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
pub fn repo_for_new(config: &Config, name: &Name, location: Option<&Location>) -> Result<RepoSpec> {
    match config.repo(name) {
        Err(ConfigError::Unknown { .. }) if location.and_then(Location::as_dir).is_some() => {
            let location = location.and_then(Location::as_dir).expect("checked");
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
    let location = Location::Dir(default_location()?);
    let opts = RepoOptions {
        compressed: true,
        ..RepoOptions::default()
    };
    Ok((
        create_repository(config, &Keyring::none(), &name, &location, opts)?.spec,
        true,
    ))
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
    /// A directory, or an S3 location.
    pub location: Location,
    pub includes: Vec<PathBuf>,
    pub excluded_dirs: Vec<String>,
    pub excluded_files: Vec<String>,
    pub compress: bool,
    pub keep_broken_soft_links: bool,
    pub compare_inodes: bool,
    /// Retention rules to store in the spec.
    pub policy: Option<Policy>,
    /// Where the key of an encrypted repository comes from.
    pub keys: Keyring,
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
    let repo = Repository::open_with(
        crate::store::open(&new.repo.location),
        Access::ReadOnly,
        &new.keys,
    )?;
    let (host, user) = (host()?, user()?);
    let (snapshot_dir, created) = new_snapshot_dir(&new.location, &host, &user, &new.name)?;
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
    let snapshots = crate::store::sealed::seal_if(crate::store::open(&snapshot_dir), repo.key());
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
            let copy = DiskSpec::from_config(config, &spec.name, &snapshot_dir, &new.repo.location)
                .map_err(SetupError::from)
                .and_then(|copy| Ok(spec::write_if_changed(snapshots.as_ref(), &copy)?));
            copy.map(|_| ()).map_err(undo_config)
        })
        .and_then(|()| {
            let relative = Location::relative(&new.repo.location, &snapshot_dir);
            let relative = relative.as_deref().and_then(Path::to_str);
            let absolute = snapshot_dir.to_string();
            repo.register_user(&id, &absolute, relative)
                .map_err(|e| undo_config(e.into()))
        });
    if let Err(e) = result {
        let _ = spec::remove_all(snapshots.as_ref());
        let _ = snapshots.barrier();
        if let Location::Dir(dir) = &snapshot_dir {
            let _ = fs::remove_dir(dir);
        }
        fsio::remove_dir_chain(&created);
        return Err(e);
    }
    Ok(spec)
}

/// Makes archive `name`'s snapshot directory
/// `<location>/epygibus.d/snapshots/<host>/<user>/<name>`, which must not
/// exist; returns it and the parent directories made for it. In a bucket
/// there is nothing to make, but the prefix must hold nothing yet.
fn new_snapshot_dir(
    location: &Location,
    host: &Name,
    user: &Name,
    name: &Name,
) -> Result<(Location, Vec<PathBuf>)> {
    let location_dir = match location {
        Location::Dir(d) => d,
        Location::S3(at) => {
            let dir = at.join(&format!("epygibus.d/snapshots/{host}/{user}/{name}"));
            if !S3Store::new(&dir).list("")?.is_empty() {
                return Err(SetupError::PrefixTaken {
                    location: dir.to_string(),
                    what: "archive",
                    name: name.clone(),
                });
            }
            return Ok((Location::S3(dir), Vec::new()));
        }
        Location::Memory(_) => {
            return Err(SetupError::NotADirectory(PathBuf::from(
                location.to_string(),
            )));
        }
    };
    let parent = data_root(location_dir)?
        .join("snapshots")
        .join(host.as_str())
        .join(user.as_str());
    let created = fsio::create_dir_chain(&parent).map_err(|err| SetupError::Io {
        path: parent.clone(),
        err,
    })?;
    let snapshot_dir = parent.join(name.as_str());
    if let Err(err) = fs::create_dir(&snapshot_dir) {
        fsio::remove_dir_chain(&created);
        return Err(if err.kind() == io::ErrorKind::AlreadyExists {
            SetupError::SnapshotDirTaken {
                dir: snapshot_dir.display().to_string(),
                location: location_dir.display().to_string(),
                name: name.clone(),
            }
        } else {
            SetupError::Io {
                path: snapshot_dir,
                err,
            }
        });
    }
    Ok((Location::Dir(snapshot_dir), created))
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
