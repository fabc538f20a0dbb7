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
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::fsio;

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

/// A repository spec: where the repository directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoSpec {
    pub name: Name,
    pub path: PathBuf,
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
            path: PathBuf::from(repo_path),
        })
    }

    /// Records a new repository spec; fails if the name is taken.
    pub fn add_repo(&self, spec: &RepoSpec) -> Result<()> {
        let dir = self.repos_dir();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let path = self.repo_spec_path(&spec.name);
        let text = format!(
            "# epygibus repository `{}`\npath = {}\n",
            spec.name,
            spec.path.display()
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
    fn repo_spec_round_trip_and_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = Config::at(tmp.path());
        let name: Name = "home".parse().unwrap();
        assert!(matches!(cfg.repo(&name), Err(ConfigError::Unknown { .. })));
        let spec = RepoSpec {
            name: name.clone(),
            path: PathBuf::from("/mnt/nas/epygibus.d/repos/me/home"),
        };
        cfg.add_repo(&spec).unwrap();
        assert_eq!(cfg.repo(&name).unwrap(), spec);
        assert!(matches!(
            cfg.add_repo(&spec),
            Err(ConfigError::Taken { .. })
        ));
        assert_eq!(cfg.repo_names().unwrap(), vec![name]);
    }
}
