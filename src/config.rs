//! Where the user's repository and archive specs live, and how they read.
//!
//! `$EPYGIBUS_CONFIG_DIR` (else `~/.config/epygibus.d/`) holds
//! `repos/<name>` (one file per repository) and `archives/<name>/` (a
//! `spec` file plus `includes`, `excluded_dirs`, `excluded_files`, one entry
//! per line), all small text files a person can read and edit.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::fsio;
use crate::store::Location;

/// Errors about names and specs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "`{0}` is not a valid name: use 1 to 64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-` (other characters are mangled by SMB and exFAT)"
    )]
    BadName(String),
    #[error("no {kind} named `{name}` is configured (see `epygibus {list}`)")]
    Unknown {
        kind: &'static str,
        name: String,
        list: &'static str,
    },
    #[error("a {kind} named `{name}` already exists ({path})")]
    Taken {
        kind: &'static str,
        name: String,
        path: PathBuf,
    },
    #[error("spec file {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("could not {action} {path}: {err}")]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("cannot find the configuration directory: set EPYGIBUS_CONFIG_DIR or HOME")]
    NoHome,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ConfigError + 'a {
    move |err| ConfigError::Io {
        action,
        path: path.to_owned(),
        err,
    }
}

/// A repository, archive, user or host name that every file system we
/// support stores unchanged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Name> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let valid = (1..=64).contains(&s.len())
            && s.chars().all(ok_char)
            && !s.starts_with('.')
            && !s.starts_with('-');
        if valid {
            Ok(Name(s.to_owned()))
        } else {
            Err(ConfigError::BadName(s.to_owned()))
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configuration directory in use.
#[derive(Clone, Debug)]
pub struct Config {
    root: PathBuf,
}

/// A repository spec: where the repository is (a directory, or
/// `s3://BUCKET/PREFIX`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    pub name: Name,
    pub location: Location,
}

/// A location field of a spec file: a directory, or an `s3://` URL.
fn location_field(value: &str, path: &Path) -> Result<Location> {
    Location::parse(std::ffi::OsStr::new(value)).map_err(|reason| ConfigError::Corrupt {
        path: path.to_owned(),
        reason,
    })
}

impl Config {
    /// `$EPYGIBUS_CONFIG_DIR`, else `~/.config/epygibus.d`.
    pub fn from_env() -> Result<Config> {
        if let Some(dir) = std::env::var_os("EPYGIBUS_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(Config {
                root: PathBuf::from(dir),
            });
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(ConfigError::NoHome)?;
        Ok(Config {
            root: PathBuf::from(home).join(".config").join("epygibus.d"),
        })
    }

    /// Where data goes when no location is given: `$EPYGIBUS_DATA_DIR`,
    /// else `$XDG_DATA_HOME/epygibus`, else `~/.local/share/epygibus`.
    pub fn default_data_dir() -> Result<PathBuf> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(dir) = var("EPYGIBUS_DATA_DIR") {
            return Ok(PathBuf::from(dir));
        }
        if let Some(dir) = var("XDG_DATA_HOME") {
            return Ok(PathBuf::from(dir).join("epygibus"));
        }
        let home = var("HOME").ok_or(ConfigError::NoHome)?;
        Ok(PathBuf::from(home).join(".local/share/epygibus"))
    }

    pub fn at(root: &Path) -> Config {
        Config {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn repos_dir(&self) -> PathBuf {
        self.root.join("repos")
    }

    pub fn repo_spec_path(&self, name: &Name) -> PathBuf {
        self.repos_dir().join(name.as_str())
    }

    /// Reads the spec of repository `name`.
    pub fn repo(&self, name: &Name) -> Result<RepoSpec> {
        let path = self.repo_spec_path(name);
        let fields = read_fields(&path).map_err(|e| match e {
            ConfigError::Io { err, .. } if err.kind() == io::ErrorKind::NotFound => {
                ConfigError::Unknown {
                    kind: "repository",
                    name: name.to_string(),
                    list: "lr",
                }
            }
            other => other,
        })?;
        let repo_path = required(&fields, "path", &path)?;
        Ok(RepoSpec {
            name: name.clone(),
            location: location_field(repo_path, &path)?,
        })
    }

    /// Records a new repository spec; fails if the name is taken.
    pub fn add_repo(&self, spec: &RepoSpec) -> Result<()> {
        let dir = self.repos_dir();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let path = self.repo_spec_path(&spec.name);
        let text = format!(
            "# epygibus repository `{}`\npath = {}\n",
            spec.name, spec.location
        );
        self.create_spec_file(&path, &text, "repository", &spec.name)
    }

    /// Removes a repository spec (used to undo a failed `new_repo`).
    pub fn remove_repo(&self, name: &Name) -> Result<()> {
        let path = self.repo_spec_path(name);
        fsio::remove_file_if_exists(&path).map_err(io_err("remove", &path))
    }

    /// Names of all configured repositories, sorted.
    pub fn repo_names(&self) -> Result<Vec<Name>> {
        list_names(&self.repos_dir())
    }

    /// Writes a new spec file, refusing to replace one.
    pub fn create_spec_file(
        &self,
        path: &Path,
        text: &str,
        kind: &'static str,
        name: &Name,
    ) -> Result<()> {
        if fs::symlink_metadata(path).is_ok() {
            return Err(ConfigError::Taken {
                kind,
                name: name.to_string(),
                path: path.to_owned(),
            });
        }
        match fsio::write_new_file(path, text.as_bytes()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ConfigError::Taken {
                kind,
                name: name.to_string(),
                path: path.to_owned(),
            }),
            Err(e) => Err(io_err("write", path)(e)),
        }
    }
}

/// An archive spec: what to back up, where snapshots go, which repository
/// holds the content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSpec {
    pub name: Name,
    pub repo: Name,
    /// A directory, or an `s3://` URL.
    pub snapshot_dir: Location,
    /// Absolute paths, one per line in `includes`.
    pub includes: Vec<PathBuf>,
    /// Globs, one per line in `excluded_dirs` / `excluded_files`.
    pub excluded_dirs: Vec<String>,
    pub excluded_files: Vec<String>,
    /// New snapshots are gzip-compressed.
    pub compress: bool,
    pub keep_broken_soft_links: bool,
    /// Treat a changed inode number as a changed file (off by default:
    /// inode numbers are unstable on some NAS mounts).
    pub compare_inodes: bool,
}

/// The list files of an archive spec, as named on disk and by `edit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFile {
    Includes,
    ExcludedDirs,
    ExcludedFiles,
}

impl ListFile {
    pub const ALL: [ListFile; 3] = [
        ListFile::Includes,
        ListFile::ExcludedDirs,
        ListFile::ExcludedFiles,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            ListFile::Includes => "includes",
            ListFile::ExcludedDirs => "excluded_dirs",
            ListFile::ExcludedFiles => "excluded_files",
        }
    }
}

const ARCHIVE_SPEC_FILE: &str = "spec";

/// Keys of an archive's `spec` file that describe this machine's use of
/// the archive rather than the archive itself: the name its repository
/// has here, where its snapshot directory is mounted here, and how it was
/// attached. They are not copied beside the snapshots (see
/// `snapshot::spec`, which records the repository by its name and paths
/// on the disk); every other key is, whatever it is.
pub const LOCAL_ARCHIVE_KEYS: &[&str] = &[
    "repo",
    "snapshot_dir",
    "read_only",
    "made_by",
    "adopted_from",
];

/// An archive's three lists as their lines (blank lines and `#` comments
/// dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveLists {
    pub includes: Vec<Vec<u8>>,
    pub excluded_dirs: Vec<Vec<u8>>,
    pub excluded_files: Vec<Vec<u8>>,
}

impl ArchiveLists {
    /// The lists in the order of [`ListFile::ALL`].
    pub fn all(&self) -> [&Vec<Vec<u8>>; 3] {
        [&self.includes, &self.excluded_dirs, &self.excluded_files]
    }

    pub fn get(&self, list: ListFile) -> &Vec<Vec<u8>> {
        match list {
            ListFile::Includes => &self.includes,
            ListFile::ExcludedDirs => &self.excluded_dirs,
            ListFile::ExcludedFiles => &self.excluded_files,
        }
    }

    pub fn get_mut(&mut self, list: ListFile) -> &mut Vec<Vec<u8>> {
        match list {
            ListFile::Includes => &mut self.includes,
            ListFile::ExcludedDirs => &mut self.excluded_dirs,
            ListFile::ExcludedFiles => &mut self.excluded_files,
        }
    }
}

/// How this machine uses an archive, from its spec's local keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Created here with `new`, or attached as this machine's own.
    Own,
    /// Another host's archive, attached for reading:
    /// `made_by` is `user@host`.
    ReadOnly { made_by: String },
    /// Another host's archive that this machine continues (`attach
    /// --adopt`); `from` is `user@host` it was made by.
    Adopted { from: String },
}

impl Attachment {
    /// From an archive's `spec` fields; `path` names the file in errors.
    pub fn of(fields: &BTreeMap<String, String>, path: &Path) -> Result<Attachment> {
        let text = |k: &str| fields.get(k).cloned().unwrap_or_default();
        if flag(fields, "read_only", false, path)? {
            let made_by = Some(text("made_by"))
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "another machine".into());
            return Ok(Attachment::ReadOnly { made_by });
        }
        Ok(match fields.get("adopted_from") {
            Some(from) if !from.is_empty() => Attachment::Adopted { from: from.clone() },
            _ => Attachment::Own,
        })
    }
}

impl Config {
    fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    pub fn archive_dir(&self, name: &Name) -> PathBuf {
        self.archives_dir().join(name.as_str())
    }

    /// Path of an archive's `spec` file.
    pub fn archive_spec_path(&self, name: &Name) -> PathBuf {
        self.archive_dir(name).join(ARCHIVE_SPEC_FILE)
    }

    /// Path of one of an archive's list files.
    pub fn archive_list_path(&self, name: &Name, list: ListFile) -> PathBuf {
        self.archive_dir(name).join(list.file_name())
    }

    /// Names of all configured archives, sorted.
    pub fn archive_names(&self) -> Result<Vec<Name>> {
        list_names(&self.archives_dir())
    }

    /// Reads the spec of archive `name`.
    pub fn archive(&self, name: &Name) -> Result<ArchiveSpec> {
        let fields = self.archive_fields(name)?;
        let lists = self.archive_lists(name)?;
        let spec_path = self.archive_dir(name).join(ARCHIVE_SPEC_FILE);
        archive_from_parts(name, &fields, &lists, &spec_path, &|list| {
            self.archive_list_path(name, list)
        })
    }

    /// The `key = value` fields of archive `name`'s `spec` file, all of
    /// them, known or not.
    pub fn archive_fields(&self, name: &Name) -> Result<BTreeMap<String, String>> {
        let dir = self.archive_dir(name);
        if !dir.is_dir() {
            return Err(ConfigError::Unknown {
                kind: "archive",
                name: name.to_string(),
                list: "la",
            });
        }
        read_fields(&dir.join(ARCHIVE_SPEC_FILE))
    }

    /// How this machine uses archive `name`.
    pub fn archive_attachment(&self, name: &Name) -> Result<Attachment> {
        let fields = self.archive_fields(name)?;
        Attachment::of(&fields, &self.archive_dir(name).join(ARCHIVE_SPEC_FILE))
    }

    /// The lines of archive `name`'s three lists.
    pub fn archive_lists(&self, name: &Name) -> Result<ArchiveLists> {
        Ok(ArchiveLists {
            includes: self.read_list(name, ListFile::Includes)?,
            excluded_dirs: self.read_list(name, ListFile::ExcludedDirs)?,
            excluded_files: self.read_list(name, ListFile::ExcludedFiles)?,
        })
    }

    /// Lines of a list file (blank lines and `#` comments skipped). A
    /// missing file is an empty list.
    pub fn read_list(&self, name: &Name, list: ListFile) -> Result<Vec<Vec<u8>>> {
        let path = self.archive_list_path(name, list);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(parse_list(&bytes))
    }

    /// Records a new archive spec; fails if the name is taken. Built in a
    /// temp directory and renamed, so a failure leaves nothing behind.
    pub fn add_archive(&self, spec: &ArchiveSpec) -> Result<()> {
        self.add_archive_with(spec, &BTreeMap::new())
    }

    /// [`Config::add_archive`] with further `key = value` lines in the
    /// `spec` file (e.g. a retention policy), after the ones `spec` gives.
    pub fn add_archive_with(
        &self,
        spec: &ArchiveSpec,
        extra: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.create_archive_dir(&spec.name, |temp| write_archive_files(temp, spec, extra))
    }

    /// Records archive `name` from spec fields and lists as they are
    /// (keys this code does not know are kept); fails if the name is
    /// taken. `comment` heads the spec file.
    pub fn add_archive_raw(
        &self,
        name: &Name,
        fields: &BTreeMap<String, String>,
        lists: &ArchiveLists,
        comment: &str,
    ) -> Result<()> {
        self.create_archive_dir(name, |temp| {
            let write = |file: &str, bytes: &[u8]| {
                let path = temp.join(file);
                fsio::write_new_file(&path, bytes)
                    .map(|_| ())
                    .map_err(io_err("write", &path))
            };
            write(ARCHIVE_SPEC_FILE, fields_text(fields, comment).as_bytes())?;
            for list in ListFile::ALL {
                write(list.file_name(), &list_text(list, lists.get(list)))?;
            }
            Ok(())
        })
    }

    /// Replaces archive `name`'s `spec` file with `fields` (its lists stay).
    /// The configuration lives on this machine's own disk, where renaming
    /// over a file is atomic.
    pub fn replace_archive_fields(
        &self,
        name: &Name,
        fields: &BTreeMap<String, String>,
        comment: &str,
    ) -> Result<()> {
        let dir = self.archive_dir(name);
        let path = dir.join(ARCHIVE_SPEC_FILE);
        let mut temp = fsio::TempFile::create_in(&dir).map_err(io_err("write into", &dir))?;
        std::io::Write::write_all(&mut temp, fields_text(fields, comment).as_bytes())
            .map_err(io_err("write", &path))?;
        temp.replace(&path).map_err(io_err("replace", &path))
    }

    fn create_archive_dir(
        &self,
        name: &Name,
        populate: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let parent = self.archives_dir();
        fs::create_dir_all(&parent).map_err(io_err("create directory", &parent))?;
        let dir = self.archive_dir(name);
        let taken = || ConfigError::Taken {
            kind: "archive",
            name: name.to_string(),
            path: dir.clone(),
        };
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(taken());
        }
        let temp = parent.join(fsio::temp_name());
        fs::create_dir(&temp).map_err(io_err("create directory", &temp))?;
        let written = populate(&temp);
        let placed = written.and_then(|()| match fsio::rename_no_replace(&temp, &dir) {
            Ok(true) => Ok(()),
            Ok(false) => Err(taken()),
            Err(e) => Err(io_err("create", &dir)(e)),
        });
        if placed.is_err() {
            let _ = fs::remove_dir_all(&temp);
        }
        placed
    }

    /// Replaces one of an archive's lists; returns false when the text is
    /// the same. The configuration lives on this machine's own disk, where
    /// renaming over a file is atomic: readers see the old list or the
    /// new one, never none (the backup disk's files are never replaced
    /// this way).
    pub fn replace_list(&self, name: &Name, list: ListFile, bytes: &[u8]) -> Result<bool> {
        let path = self.archive_list_path(name, list);
        let original = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        if original == bytes {
            return Ok(false);
        }
        let dir = self.archive_dir(name);
        let mut temp = fsio::TempFile::create_in(&dir).map_err(io_err("write into", &dir))?;
        std::io::Write::write_all(&mut temp, bytes).map_err(io_err("write", &path))?;
        temp.replace(&path).map_err(io_err("replace", &path))?;
        Ok(true)
    }

    /// Removes an archive spec (used to undo a failed `new`).
    pub fn remove_archive(&self, name: &Name) -> Result<()> {
        let dir = self.archive_dir(name);
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))
    }
}

fn write_archive_files(
    dir: &Path,
    spec: &ArchiveSpec,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let mut text = format!(
        "# epygibus archive `{}`\n\
         repo = {}\n\
         snapshot_dir = {}\n\
         compress = {}\n\
         keep_broken_soft_links = {}\n\
         compare_inodes = {}\n",
        spec.name,
        spec.repo,
        spec.snapshot_dir,
        spec.compress,
        spec.keep_broken_soft_links,
        spec.compare_inodes
    );
    for (k, v) in extra {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        fsio::write_new_file(&path, bytes)
            .map(|_| ())
            .map_err(io_err("write", &path))
    };
    write(ARCHIVE_SPEC_FILE, text.as_bytes())?;
    let mut includes = b"# one absolute path per line\n".to_vec();
    for p in &spec.includes {
        includes.extend_from_slice(p.as_os_str().as_bytes());
        includes.push(b'\n');
    }
    write(ListFile::Includes.file_name(), &includes)?;
    let globs = |header: &str, list: &[String]| {
        let mut text = format!("# {header}, one glob per line\n");
        for g in list {
            text.push_str(g);
            text.push('\n');
        }
        text
    };
    write(
        ListFile::ExcludedDirs.file_name(),
        globs("directories to leave out", &spec.excluded_dirs).as_bytes(),
    )?;
    write(
        ListFile::ExcludedFiles.file_name(),
        globs("files to leave out", &spec.excluded_files).as_bytes(),
    )?;
    Ok(())
}

/// An archive spec from its parts as read: the `spec` fields and the list
/// lines. `spec_path` and `list_path` name where they came from in errors.
pub fn archive_from_parts(
    name: &Name,
    fields: &BTreeMap<String, String>,
    lists: &ArchiveLists,
    spec_path: &Path,
    list_path: &dyn Fn(ListFile) -> PathBuf,
) -> Result<ArchiveSpec> {
    let repo_name = required(fields, "repo", spec_path)?;
    let repo = repo_name.parse().map_err(|_| ConfigError::Corrupt {
        path: spec_path.to_owned(),
        reason: format!("`{repo_name}` is not a valid repository name"),
    })?;
    let includes = lists
        .includes
        .iter()
        .map(|line| PathBuf::from(std::ffi::OsString::from_vec(line.clone())))
        .collect();
    let text_list = |list: ListFile| -> Result<Vec<String>> {
        lists
            .get(list)
            .iter()
            .map(|line| {
                String::from_utf8(line.clone()).map_err(|_| ConfigError::Corrupt {
                    path: list_path(list),
                    reason: "a glob is not UTF-8 text".into(),
                })
            })
            .collect()
    };
    Ok(ArchiveSpec {
        name: name.clone(),
        repo,
        snapshot_dir: location_field(required(fields, "snapshot_dir", spec_path)?, spec_path)?,
        includes,
        excluded_dirs: text_list(ListFile::ExcludedDirs)?,
        excluded_files: text_list(ListFile::ExcludedFiles)?,
        compress: flag(fields, "compress", true, spec_path)?,
        keep_broken_soft_links: flag(fields, "keep_broken_soft_links", false, spec_path)?,
        compare_inodes: flag(fields, "compare_inodes", false, spec_path)?,
    })
}

/// A `spec` file's text: `comment` (each line made a `#` comment), then
/// `repo` and `snapshot_dir`, then the other fields in name order.
fn fields_text(fields: &BTreeMap<String, String>, comment: &str) -> String {
    let mut text = String::new();
    for line in comment.lines() {
        text.push_str(&format!("# {line}\n"));
    }
    let first = ["repo", "snapshot_dir"];
    for key in first {
        if let Some(v) = fields.get(key) {
            text.push_str(&format!("{key} = {v}\n"));
        }
    }
    for (k, v) in fields.iter().filter(|(k, _)| !first.contains(&k.as_str())) {
        text.push_str(&format!("{k} = {v}\n"));
    }
    text
}

/// A list file's bytes: a header comment, then one entry per line.
fn list_text(list: ListFile, entries: &[Vec<u8>]) -> Vec<u8> {
    let header = match list {
        ListFile::Includes => "# one absolute path per line\n",
        ListFile::ExcludedDirs => "# directories to leave out, one glob per line\n",
        ListFile::ExcludedFiles => "# files to leave out, one glob per line\n",
    };
    let mut out = header.as_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(e);
        out.push(b'\n');
    }
    out
}

/// Lines of a list file, without blank lines, `#` comments and trailing
/// `\r` or spaces.
pub fn parse_list(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .map(|line| {
            let end = line
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                .map_or(0, |i| i + 1);
            &line[..end]
        })
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Names of the entries of `dir` that are valid names (a missing directory
/// has none).
pub fn list_names(dir: &Path) -> Result<Vec<Name>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut names: Vec<Name> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    names.sort();
    Ok(names)
}

/// Parses `key = value` lines; `#` comments and blank lines are ignored.
pub fn parse_fields(text: &str, path: &Path) -> Result<BTreeMap<String, String>> {
    let mut fields = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Corrupt {
                path: path.to_owned(),
                reason: format!("line {} is not `key = value`", n + 1),
            });
        };
        if fields
            .insert(k.trim().to_owned(), v.trim().to_owned())
            .is_some()
        {
            return Err(ConfigError::Corrupt {
                path: path.to_owned(),
                reason: format!("`{}` is given twice", k.trim()),
            });
        }
    }
    Ok(fields)
}

/// Reads a spec file as fields.
pub fn read_fields(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Corrupt {
        path: path.to_owned(),
        reason: "it is not UTF-8 text".into(),
    })?;
    parse_fields(&text, path)
}

/// A field that must be present and non-empty.
pub fn required<'a>(
    fields: &'a BTreeMap<String, String>,
    key: &str,
    path: &Path,
) -> Result<&'a str> {
    match fields.get(key) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::Corrupt {
            path: path.to_owned(),
            reason: format!("it has no `{key} = …` line"),
        }),
    }
}

/// A `true`/`false` field, defaulting when absent.
pub fn flag(
    fields: &BTreeMap<String, String>,
    key: &str,
    default: bool,
    path: &Path,
) -> Result<bool> {
    match fields.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError::Corrupt {
            path: path.to_owned(),
            reason: format!("`{key}` must be true or false, not `{other}`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_portable() {
        for good in ["home", "Home-2", "a.b_c", "x"] {
            assert!(good.parse::<Name>().is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "a:b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(bad.parse::<Name>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_parse_and_reject() {
        let p = Path::new("spec");
        let f = parse_fields("# c\n\na = 1\n b=two words \n", p).unwrap();
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "two words");
        assert!(parse_fields("a = 1\na = 2\n", p).is_err());
        assert!(parse_fields("junk\n", p).is_err());
    }

    #[test]
    fn archive_spec_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Config::at(tmp.path());
        let spec = ArchiveSpec {
            name: "docs".parse().unwrap(),
            repo: "home".parse().unwrap(),
            snapshot_dir: Location::Dir(PathBuf::from("/mnt/nas/epygibus.d/snapshots/h/u/docs")),
            includes: vec![PathBuf::from("/home/u/docs"), PathBuf::from("/etc/a b")],
            excluded_dirs: vec![".cache".into()],
            excluded_files: vec!["*.o".into(), "*~".into()],
            compress: false,
            keep_broken_soft_links: true,
            compare_inodes: false,
        };
        cfg.add_archive(&spec).unwrap();
        assert_eq!(cfg.archive(&spec.name).unwrap(), spec);
        assert!(matches!(
            cfg.add_archive(&spec),
            Err(ConfigError::Taken { .. })
        ));
        assert_eq!(cfg.archive_names().unwrap(), vec![spec.name.clone()]);
        let other: Name = "nope".parse().unwrap();
        assert!(matches!(
            cfg.archive(&other),
            Err(ConfigError::Unknown { .. })
        ));
    }

    proptest::proptest! {
        /// Spec files are text a person edits: any bytes give a value or an
        /// error naming the file, never a panic.
        #[test]
        fn spec_parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_list(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse_fields(&text, Path::new("/cfg/spec")) {
                proptest::prop_assert!(e.to_string().contains("/cfg/spec"));
            }
        }

        #[test]
        fn archive_spec_from_any_files_never_panics(
            spec in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            includes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let cfg = Config::at(tmp.path());
            let name: Name = "a".parse().unwrap();
            let dir = cfg.archive_dir(&name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("spec"), &spec).unwrap();
            fs::write(dir.join("includes"), &includes).unwrap();
            let _ = cfg.archive(&name);
        }
    }

    #[test]
    fn list_files_skip_comments_and_blanks() {
        assert_eq!(
            parse_list(b"# c\n/a\r\n\n  \n/b c \n"),
            vec![b"/a".to_vec(), b"/b c".to_vec()]
        );
    }

    #[test]
    fn repo_spec_round_trip_and_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Config::at(tmp.path());
        let name: Name = "home".parse().unwrap();
        assert!(matches!(cfg.repo(&name), Err(ConfigError::Unknown { .. })));
        let spec = RepoSpec {
            name: name.clone(),
            location: Location::Dir(PathBuf::from("/mnt/nas/epygibus.d/repos/me/home")),
        };
        cfg.add_repo(&spec).unwrap();
        assert_eq!(cfg.repo(&name).unwrap(), spec);
        let in_bucket = RepoSpec {
            name: "cloud".parse().unwrap(),
            location: Location::parse("s3://bkt/p/epygibus.d/repos/me/cloud".as_ref()).unwrap(),
        };
        cfg.add_repo(&in_bucket).unwrap();
        assert_eq!(cfg.repo(&in_bucket.name).unwrap(), in_bucket);
        assert!(matches!(
            cfg.add_repo(&spec),
            Err(ConfigError::Taken { .. })
        ));
        assert_eq!(cfg.repo_names().unwrap(), vec![in_bucket.name, name]);
    }
}
