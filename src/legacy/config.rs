//! The original's configuration directory (`~/.config/epygibus.d`):
//! `repos/<name>` holds the repository directory and `True`/`False`
//! (compressed); `archives/<name>/config` the repository name, the
//! snapshot directory, `True`/`False` (skip broken symlinks) and
//! `True`/`False` (compress snapshots), beside `includes`, `exclude_dirs`
//! and `exclude_files`, one entry a line. The original `eval()`ed the
//! flags; they are only compared with `True` and `False` here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::{LegacyError, Result};

/// One archive of the original's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrigArchive {
    pub name: String,
    pub repo_name: String,
    /// The snapshot directory as recorded (it may have moved since).
    pub snapshot_dir: PathBuf,
    pub includes: Vec<PathBuf>,
    pub exclude_dirs: Vec<String>,
    pub exclude_files: Vec<String>,
    pub skip_broken_links: bool,
    pub compress: bool,
}

fn lines(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|err| LegacyError::Io {
        path: path.to_owned(),
        err,
    })?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect())
}

fn flag(path: &Path, value: &[u8]) -> Result<bool> {
    match value.trim_ascii() {
        b"True" => Ok(true),
        b"False" => Ok(false),
        other => Err(LegacyError::Config {
            path: path.to_owned(),
            reason: format!(
                "`{}` is neither True nor False",
                String::from_utf8_lossy(other)
            ),
        }),
    }
}

fn text(line: Vec<u8>) -> String {
    String::from_utf8_lossy(line.trim_ascii_end()).into_owned()
}

/// Reads every archive of the configuration directory `dir`, by name.
pub fn read_archives(dir: &Path) -> Result<Vec<OrigArchive>> {
    let archives = dir.join("archives");
    let mut names: Vec<String> = std::fs::read_dir(&archives)
        .map_err(|err| LegacyError::Io {
            path: archives.clone(),
            err,
        })?
        .flatten()
        .filter(|e| e.path().join("config").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.iter().map(|n| read_archive(dir, n)).collect()
}

/// The repositories of the configuration directory `dir`: name to
/// directory (the first line of `repos/<name>`).
pub fn read_repos(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let repos = dir.join("repos");
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(&repos) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let path = e.path();
        if let Some(first) = lines(&path)?.into_iter().next() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.insert(
                name,
                PathBuf::from(OsStr::from_bytes(first.trim_ascii_end())),
            );
        }
    }
    Ok(out)
}

/// Reads archive `name` of the configuration directory `dir`.
pub fn read_archive(dir: &Path, name: &str) -> Result<OrigArchive> {
    let base = dir.join("archives").join(name);
    let config = base.join("config");
    let fields = lines(&config)?;
    let [repo, snapshots, skip, compress] = fields.as_slice() else {
        return Err(LegacyError::Config {
            path: config,
            reason: "it does not have four lines (repository, snapshot directory, skip broken links, compress)".into(),
        });
    };
    let optional = |file: &str| -> Result<Vec<Vec<u8>>> {
        let p = base.join(file);
        if p.exists() {
            lines(&p)
        } else {
            Ok(Vec::new())
        }
    };
    Ok(OrigArchive {
        name: name.to_owned(),
        repo_name: text(repo.clone()),
        snapshot_dir: PathBuf::from(OsStr::from_bytes(snapshots.trim_ascii_end())),
        includes: optional("includes")?
            .into_iter()
            .map(|l| PathBuf::from(OsStr::from_bytes(l.trim_ascii_end())))
            .collect(),
        exclude_dirs: optional("exclude_dirs")?.into_iter().map(text).collect(),
        exclude_files: optional("exclude_files")?.into_iter().map(text).collect(),
        skip_broken_links: flag(&config, skip)?,
        compress: flag(&config, compress)?,
    })
}

/// Where a recorded snapshot directory is now: as recorded when it holds
/// the original's snapshots, else (when the disk is mounted elsewhere)
/// the same path below `mounted_at`'s `epygibus.d`.
pub fn locate(recorded: &Path, mounted_at: Option<&Path>) -> Option<PathBuf> {
    if super::is_original_dir(recorded) {
        return Some(recorded.to_owned());
    }
    let comps: Vec<Component> = recorded.components().collect();
    let at = comps
        .iter()
        .rposition(|c| c.as_os_str() == OsStr::new("epygibus.d"))?;
    let moved: PathBuf = comps[at..].iter().collect();
    let candidate = mounted_at?.join(moved);
    super::is_original_dir(&candidate).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_config_reads_without_eval() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("archives/docs");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(
            a.join("config"),
            "main\n/mnt/nas/epygibus.d/snapshots/h/u/docs\nFalse\nTrue\n",
        )
        .unwrap();
        std::fs::write(a.join("includes"), "/home/u/docs\n").unwrap();
        std::fs::write(a.join("exclude_dirs"), "").unwrap();
        let got = read_archives(tmp.path()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].repo_name, "main");
        assert!(!got[0].skip_broken_links && got[0].compress);
        assert_eq!(got[0].includes, [PathBuf::from("/home/u/docs")]);
        std::fs::write(a.join("config"), "main\n/x\n__import__('os')\nTrue\n").unwrap();
        let err = read_archive(tmp.path(), "docs").unwrap_err();
        assert!(err.to_string().contains("neither True nor False"), "{err}");
    }
}
