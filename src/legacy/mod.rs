//! Reading the backups of the original Python epygibus, never changing
//! them: its pickle snapshots (`YYYY-MM-DD-HH-MM-SS.pkl[.gz]`, named in
//! the local time of the machine that made them), its repositories
//! (content files `<1 hex>/<2 hex>/<37 hex>[.gz]` named by SHA-1, and a
//! pickled `ref_counter`) and its configuration directory. Only data
//! opcodes of pickles are accepted ([`pickle`]); every file at fault is
//! named in the error. Turning what is read into this epygibus's model
//! is [`convert`]'s job; importing and reading directly are in `ops`.

pub mod config;
pub mod convert;
pub mod pickle;
mod pystr;
pub mod repo;
pub mod sha1;
pub mod snapshot;

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::clock::Civil;
pub use snapshot::{OrigAttrs, OrigDir, OrigNode, OrigSnapshot};

/// Errors reading the original's files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error(
        "{0} holds no snapshots of the original epygibus (files named YYYY-MM-DD-HH-MM-SS.pkl or .pkl.gz)"
    )]
    NotOriginal(PathBuf),
    #[error("original snapshot {path} cannot be read: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("could not read {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "the repository of original snapshot {snapshot} cannot be found: not at {recorded} nor at {beside}; mount the disk, or give its location"
    )]
    RepoNotFound {
        snapshot: PathBuf,
        recorded: String,
        beside: String,
    },
    #[error("original configuration file {path} is not valid: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(
        "`{0}` is not a time zone this machine knows (try UTC, or a name such as Europe/Berlin)"
    )]
    BadZone(String),
}

pub type Result<T, E = LegacyError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LegacyError + '_ {
    move |err| LegacyError::Io {
        path: path.to_owned(),
        err,
    }
}

/// One snapshot file of the original: its name's wall-clock time and form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrigName {
    /// The time in the name, in the zone of the machine that made it.
    pub stamp: Civil,
    pub compressed: bool,
}

impl OrigName {
    pub fn parse(file_name: &[u8]) -> Option<OrigName> {
        let s = std::str::from_utf8(file_name).ok()?;
        let (stem, compressed) = match s.strip_suffix(".pkl.gz") {
            Some(stem) => (stem, true),
            None => (s.strip_suffix(".pkl")?, false),
        };
        Some(OrigName {
            stamp: Civil::parse_dashed(stem)?,
            compressed,
        })
    }

    pub fn file_name(&self) -> String {
        let suffix = if self.compressed { ".pkl.gz" } else { ".pkl" };
        format!("{}{suffix}", self.stamp.dashed())
    }

    /// The instant the name stands for, reading it in `zone` (the zone of
    /// the machine that made it). A wall-clock time that a DST change
    /// repeated is taken at its first occurrence.
    pub fn unix_secs(&self, zone: &TimeZone) -> Option<i64> {
        let c = &self.stamp;
        let dt = DateTime::new(
            i16::try_from(c.year).ok()?,
            i8::try_from(c.month).ok()?,
            i8::try_from(c.day).ok()?,
            i8::try_from(c.hour).ok()?,
            i8::try_from(c.minute).ok()?,
            i8::try_from(c.second).ok()?,
            0,
        )
        .ok()?;
        let ts = zone.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_second())
    }
}

/// The zone named `name` (IANA name, or `UTC`), or the system's.
pub fn zone(name: Option<&str>) -> Result<TimeZone> {
    match name {
        None => Ok(TimeZone::system()),
        Some(n) if n.eq_ignore_ascii_case("utc") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| LegacyError::BadZone(n.to_owned())),
    }
}

/// The original's snapshots in `dir`, oldest first (by name, as it sorted
/// them). A directory without any is not the original's.
pub fn list_snapshots(dir: &Path) -> Result<Vec<OrigName>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(n) = OrigName::parse(entry.file_name().as_bytes()) {
            names.push(n);
        }
    }
    if names.is_empty() {
        return Err(LegacyError::NotOriginal(dir.to_owned()));
    }
    names.sort_by_key(|n| (n.stamp.to_unix(), n.compressed));
    names.dedup_by_key(|n| n.stamp.to_unix());
    Ok(names)
}

/// Whether `dir` holds snapshots of the original (for `-E`, which takes
/// either kind of snapshot directory).
pub fn is_original_dir(dir: &Path) -> bool {
    list_snapshots(dir).is_ok()
}

/// The uncompressed bytes of a snapshot file.
pub fn read_snapshot_bytes(dir: &Path, name: &OrigName) -> Result<Vec<u8>> {
    let path = dir.join(name.file_name());
    let raw = std::fs::read(&path).map_err(io_err(&path))?;
    if !name.compressed {
        return Ok(raw);
    }
    let mut plain = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut plain)
        .map_err(|e| LegacyError::Unreadable {
            path: path.clone(),
            reason: format!("its gzip data is damaged or truncated ({e})"),
        })?;
    Ok(plain)
}

/// Reads and decodes one of the original's snapshots.
pub fn read_snapshot(dir: &Path, name: &OrigName) -> Result<OrigSnapshot> {
    let bytes = read_snapshot_bytes(dir, name)?;
    snapshot::decode(&bytes).map_err(|e| LegacyError::Unreadable {
        path: dir.join(name.file_name()),
        reason: e.to_string(),
    })
}

/// The archive name and the host and user a snapshot directory laid out
/// as `…/epygibus.d/snapshots/<host>/<user>/<archive>` was made by.
pub fn dir_identity(dir: &Path) -> (String, Option<(String, String)>) {
    let part = |n: usize| {
        dir.ancestors()
            .nth(n)
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
    };
    let archive = part(0).unwrap_or_else(|| "archive".into());
    let laid_out =
        part(3).as_deref() == Some("snapshots") && part(4).as_deref() == Some("epygibus.d");
    let who = match (laid_out, part(2), part(1)) {
        (true, Some(host), Some(user)) => Some((host, user)),
        _ => None,
    };
    (archive, who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_read_in_a_zone() {
        let n = OrigName::parse(b"2026-12-02-05-06-53.pkl.gz").unwrap();
        assert!(n.compressed);
        assert_eq!(n.file_name(), "2026-12-02-05-06-53.pkl.gz");
        assert!(OrigName::parse(b"2026-12-02-05-06-53.gz").is_none());
        assert!(OrigName::parse(b"2026-12-02-05-06-53").is_none());
        assert!(OrigName::parse(b"2026-13-02-05-06-53.pkl").is_none());
        let utc = n.unix_secs(&TimeZone::UTC).unwrap();
        assert_eq!(Civil::from_unix(utc).dashed(), "2026-12-02-05-06-53");
        let plus2 = TimeZone::fixed(jiff::tz::Offset::from_hours(2).unwrap());
        assert_eq!(n.unix_secs(&plus2).unwrap(), utc - 7200);
    }

    #[test]
    fn identity_from_the_layout() {
        let (a, who) = dir_identity(Path::new("/mnt/nas/epygibus.d/snapshots/oldbox/alice/docs"));
        assert_eq!(a, "docs");
        assert_eq!(who, Some(("oldbox".into(), "alice".into())));
        assert_eq!(dir_identity(Path::new("/x/docs")).1, None);
    }
}
