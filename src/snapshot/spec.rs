//! The archive's spec kept beside its snapshots: `spec.<n>` in the
//! snapshot directory, a copy of what the configuration says about the
//! archive (the `spec` fields, includes and exclude globs) plus who backs
//! up into the directory and where its repository was. With it, the
//! backup disk alone is enough to set the archive up again after a
//! reinstall or on another machine (`ops::attach`).
//!
//! The file changes when the spec does, and the backup disk's files are
//! never replaced: each change is written as generation `n + 1` beside
//! generation `n` (create-only, durable), and the older ones are removed
//! only after that. The last line is a BLAKE3 checksum of everything
//! before it, so a reader can tell a complete generation from a torn or
//! damaged one; readers take the newest complete generation.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

use crate::config::{ArchiveLists, Config, ConfigError, LOCAL_ARCHIVE_KEYS, Name};
use crate::fsio;
use crate::store::{Committed, Location, Store, StoreError};

/// File-name prefix of spec generations in a snapshot directory.
pub const SPEC_PREFIX: &str = "spec.";
/// The version this code writes and reads.
pub const SPEC_VERSION: u32 = 1;
const MAGIC: &str = "epygibus archive spec";
const CHECKSUM_KEY: &str = "blake3 = ";

/// Errors reading or writing a spec copy.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive spec copy {place} is not valid: {reason}")]
    Corrupt { place: String, reason: String },
}

type Result<T, E = SpecError> = std::result::Result<T, E>;

/// An archive's spec as kept beside its snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskSpec {
    /// The archive's name on the disk (its snapshot directory's name; a
    /// machine may know it by another).
    pub archive: String,
    /// Who backs up into this directory: the host and user that wrote the
    /// spec (the archive's maker, or the machine that adopted it).
    pub host: String,
    pub user: String,
    /// The repository's name on the disk (its directory's name).
    pub repo: String,
    /// The repository directory when the spec was written, absolute and
    /// relative to the snapshot directory.
    pub repo_path: Vec<u8>,
    pub repo_relative: Vec<u8>,
    /// The configuration's `spec` fields except the machine's own
    /// ([`LOCAL_ARCHIVE_KEYS`]), copied whatever they are.
    pub fields: BTreeMap<String, String>,
    pub lists: ArchiveLists,
}

/// `spec.<n>`, `n` padded to 12 digits.
pub fn generation_name(n: u64) -> String {
    format!("{SPEC_PREFIX}{n:012}")
}

/// The generation number of a spec object's name, if it is one.
pub fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SPEC_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A list entry as written: one that could be taken for a section, a
/// comment or an escape gets a `\` in front.
fn escape(entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len() + 1);
    if matches!(entry.first(), Some(b'[' | b'#' | b'\\')) {
        out.push(b'\\');
    }
    out.extend_from_slice(entry);
    out
}

const LIST_SECTIONS: [&str; 3] = ["includes", "excluded_dirs", "excluded_files"];

impl DiskSpec {
    /// The file's bytes as generation `generation`.
    pub fn encode(&self, generation: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line = |parts: &[&[u8]]| {
            for p in parts {
                out.extend_from_slice(p);
            }
            out.push(b'\n');
        };
        line(&[format!("{MAGIC} {SPEC_VERSION}").as_bytes()]);
        line(&[b"# This archive's spec, kept beside its snapshots so that `epygibus attach`"]);
        line(&[b"# can set the archive up again on any machine. Written by epygibus when the"]);
        line(&[b"# spec changes; change it with `epygibus edit`, not here."]);
        line(&[b"generation = ", generation.to_string().as_bytes()]);
        line(&[b"archive = ", self.archive.as_bytes()]);
        line(&[b"host = ", self.host.as_bytes()]);
        line(&[b"user = ", self.user.as_bytes()]);
        line(&[b"repo = ", self.repo.as_bytes()]);
        line(&[b"repo_path = ", &self.repo_path]);
        line(&[b"repo_relative = ", &self.repo_relative]);
        line(&[b"[spec]"]);
        for (k, v) in &self.fields {
            line(&[k.as_bytes(), b" = ", v.as_bytes()]);
        }
        for (section, entries) in LIST_SECTIONS.iter().zip(self.lists.all()) {
            line(&[b"[", section.as_bytes(), b"]"]);
            for e in entries {
                line(&[&escape(e)]);
            }
        }
        let sum = blake3::hash(&out).to_hex();
        out.extend_from_slice(format!("{CHECKSUM_KEY}{sum}\n").as_bytes());
        out
    }

    /// Decodes a spec file; `place` names it in errors. Returns the
    /// generation it says it is and the spec.
    pub fn decode(bytes: &[u8], place: &str) -> Result<(u64, DiskSpec)> {
        let corrupt = |reason: String| SpecError::Corrupt {
            place: place.to_owned(),
            reason,
        };
        let body = bytes
            .strip_suffix(b"\n")
            .ok_or_else(|| corrupt("it is incomplete (no final checksum line)".into()))?;
        let (covered, last) = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => (&bytes[..=i], &body[i + 1..]),
            None => (&bytes[..0], body),
        };
        let sum = last
            .strip_prefix(CHECKSUM_KEY.as_bytes())
            .ok_or_else(|| corrupt("it is incomplete (no final checksum line)".into()))?;
        if sum != blake3::hash(covered).to_hex().as_bytes() {
            return Err(corrupt("its checksum does not match: it is damaged".into()));
        }
        let mut lines = covered.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let version = std::str::from_utf8(first)
            .ok()
            .and_then(|l| l.strip_prefix(MAGIC))
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| corrupt(format!("its first line is not `{MAGIC} N`")))?;
        if version != SPEC_VERSION {
            return Err(corrupt(format!(
                "it is spec format {version}, written by a newer epygibus (this one reads format {SPEC_VERSION})"
            )));
        }
        let mut header: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut spec = DiskSpec::default();
        let mut section: Option<String> = None;
        let mut sections = std::collections::BTreeSet::new();
        for (n, line) in lines.enumerate() {
            let n = n + 2;
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix(b"[").and_then(|l| l.strip_suffix(b"]")) {
                let name = String::from_utf8_lossy(name).into_owned();
                if !sections.insert(name.clone()) {
                    return Err(corrupt(format!("section [{name}] is given twice")));
                }
                section = Some(name);
                continue;
            }
            match section.as_deref() {
                None | Some("spec") => {
                    if line.starts_with(b"#") {
                        continue;
                    }
                    let Some(eq) = line.iter().position(|&b| b == b'=') else {
                        return Err(corrupt(format!("line {n} is not `key = value`")));
                    };
                    let key = String::from_utf8_lossy(line[..eq].trim_ascii()).into_owned();
                    let value = line[eq + 1..].trim_ascii().to_vec();
                    let fresh = if section.is_none() {
                        header.insert(key.clone(), value).is_none()
                    } else {
                        let value = String::from_utf8(value)
                            .map_err(|_| corrupt(format!("line {n} is not UTF-8 text")))?;
                        spec.fields.insert(key.clone(), value).is_none()
                    };
                    if !fresh {
                        return Err(corrupt(format!("`{key}` is given twice")));
                    }
                }
                Some(list) => {
                    let entry = line.strip_prefix(b"\\").unwrap_or(line).to_vec();
                    match list {
                        "includes" => spec.lists.includes.push(entry),
                        "excluded_dirs" => spec.lists.excluded_dirs.push(entry),
                        "excluded_files" => spec.lists.excluded_files.push(entry),
                        // A section a newer epygibus added: not ours to judge.
                        _ => {}
                    }
                }
            }
        }
        let text = |key: &str| -> Result<String> {
            match header.get(key) {
                Some(v) if !v.is_empty() => String::from_utf8(v.clone())
                    .map_err(|_| corrupt(format!("`{key}` is not UTF-8 text"))),
                _ => Err(corrupt(format!("it has no `{key} = …` line"))),
            }
        };
        let generation = text("generation")?
            .parse::<u64>()
            .map_err(|_| corrupt("its generation is not a number".into()))?;
        spec.archive = text("archive")?;
        spec.host = text("host")?;
        spec.user = text("user")?;
        spec.repo = text("repo")?;
        spec.repo_path = header.remove("repo_path").unwrap_or_default();
        spec.repo_relative = header.remove("repo_relative").unwrap_or_default();
        Ok((generation, spec))
    }

    /// The spec of configured archive `name` as its owner keeps it beside
    /// the snapshots: written by this host and user, names as on the disk.
    pub fn from_config(
        config: &Config,
        name: &Name,
        snapshot_dir: &Location,
        repo_dir: &Location,
    ) -> std::result::Result<DiskSpec, ConfigError> {
        let mut fields = config.archive_fields(name)?;
        fields.retain(|k, _| !LOCAL_ARCHIVE_KEYS.contains(&k.as_str()));
        let on_disk = |l: &Location, or: &str| l.file_name().unwrap_or_else(|| or.to_owned());
        Ok(DiskSpec {
            archive: on_disk(snapshot_dir, name.as_str()),
            host: fsio::host_name(),
            user: fsio::user_name(),
            repo: on_disk(repo_dir, ""),
            repo_path: repo_dir.to_bytes(),
            repo_relative: Location::relative(snapshot_dir, repo_dir)
                .map(|r| r.as_os_str().as_bytes().to_vec())
                .unwrap_or_default(),
            fields,
            lists: config.archive_lists(name)?,
        })
    }
}

/// The newest complete spec generation of a snapshot directory, and the
/// newer ones that are not (each with why).
#[derive(Debug, Default)]
pub struct Found {
    pub newest: Option<(u64, DiskSpec)>,
    /// Generations newer than `newest` that do not decode (left as they are).
    pub damaged: Vec<String>,
    /// The highest generation number present, complete or not.
    pub highest: u64,
}

/// Reads the spec generations of `dir`, newest first, up to the first
/// complete one.
pub fn read(dir: &dyn Store) -> Result<Found> {
    let mut generations: Vec<u64> = dir
        .list(SPEC_PREFIX)?
        .iter()
        .filter(|m| !m.name.contains('/'))
        .filter_map(|m| parse_generation(&m.name))
        .collect();
    generations.sort_unstable_by(|a, b| b.cmp(a));
    let mut found = Found {
        highest: generations.first().copied().unwrap_or(0),
        ..Found::default()
    };
    for g in generations {
        let name = generation_name(g);
        let bytes = match dir.read(&name) {
            Ok(b) => b,
            // Removed by a writer after we listed it: an older one.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        match DiskSpec::decode(&bytes, &dir.place(&name)) {
            Ok((inner, _)) if inner != g => found.damaged.push(format!(
                "archive spec copy {} says it is generation {inner}",
                dir.place(&name)
            )),
            Ok((_, spec)) => {
                found.newest = Some((g, spec));
                break;
            }
            Err(e) => found.damaged.push(e.to_string()),
        }
    }
    Ok(found)
}

/// Writes `spec` as the next generation of `dir` unless the newest
/// complete one says the same; returns whether it wrote. Older complete
/// generations are removed after the new one is durable; damaged ones are
/// left for a person to look at.
pub fn write_if_changed(dir: &dyn Store, spec: &DiskSpec) -> Result<bool> {
    write_if_changed_after(dir, &read(dir)?, spec)
}

/// [`write_if_changed`] with what [`read`] found already.
pub fn write_if_changed_after(dir: &dyn Store, found: &Found, spec: &DiskSpec) -> Result<bool> {
    if found.newest.as_ref().is_some_and(|(_, s)| s == spec) {
        return Ok(false);
    }
    write_after(dir, spec, found.highest)?;
    Ok(true)
}

/// Writes `spec` as a generation above `highest`, then removes the older
/// complete ones.
fn write_after(dir: &dyn Store, spec: &DiskSpec, highest: u64) -> Result<u64> {
    let mut generation = highest + 1;
    // Another writer may take a number first; the next one is free.
    let written = loop {
        match dir.put_new(&generation_name(generation), &spec.encode(generation))? {
            Committed::Created => break generation,
            Committed::Existed if generation < highest + 8 => generation += 1,
            Committed::Existed => {
                return Err(SpecError::Corrupt {
                    place: dir.place(&generation_name(generation)),
                    reason: "other runs keep writing spec generations at the same time".into(),
                });
            }
        }
    };
    if let Ok(listed) = dir.list(SPEC_PREFIX) {
        for m in listed {
            let Some(g) = parse_generation(&m.name).filter(|g| *g < written) else {
                continue;
            };
            let complete = dir
                .read(&m.name)
                .ok()
                .is_some_and(|b| DiskSpec::decode(&b, &m.name).is_ok_and(|(i, _)| i == g));
            if complete {
                let _ = dir.delete(&m.name);
            }
        }
        let _ = dir.barrier();
    }
    Ok(written)
}

/// Removes every spec generation of `dir` (undoing a failed `new`).
pub fn remove_all(dir: &dyn Store) -> Result<()> {
    for m in dir.list(SPEC_PREFIX)? {
        if parse_generation(&m.name).is_some() {
            dir.delete(&m.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn sample() -> DiskSpec {
        let mut fields = BTreeMap::new();
        fields.insert("compress".into(), "false".into());
        fields.insert("keep_daily".into(), "7".into());
        DiskSpec {
            archive: "docs".into(),
            host: "h".into(),
            user: "u".into(),
            repo: "home".into(),
            repo_path: b"/mnt/nas/epygibus.d/repos/u/home".to_vec(),
            repo_relative: b"../../../../repos/u/home".to_vec(),
            fields,
            lists: ArchiveLists {
                includes: vec![b"/home/u/docs".to_vec(), b"/odd \xff name".to_vec()],
                excluded_dirs: vec![b".cache".to_vec(), b"[abc]*".to_vec()],
                excluded_files: vec![b"*.o".to_vec(), b"\\x".to_vec(), b"#y".to_vec()],
            },
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_odd_entries() {
        let spec = sample();
        let bytes = spec.encode(7);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("epygibus archive spec 1\n"), "{text}");
        assert!(
            text.contains("\n[excluded_dirs]\n.cache\n\\[abc]*\n"),
            "{text}"
        );
        assert!(text.contains("keep_daily = 7\n"), "{text}");
        assert_eq!(DiskSpec::decode(&bytes, "p").unwrap(), (7, spec));
    }

    #[test]
    fn torn_damaged_and_newer_files_are_refused() {
        let bytes = sample().encode(1);
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            let e = DiskSpec::decode(&bytes[..cut], "/x/spec.1").unwrap_err();
            assert!(e.to_string().contains("/x/spec.1"), "{e}");
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(DiskSpec::decode(&flipped, "p").is_err());
        let mut newer = bytes.clone();
        let at = "epygibus archive spec ".len();
        newer[at] = b'2';
        let body = &newer[..newer.len() - (CHECKSUM_KEY.len() + 64 + 1)];
        let mut resealed = body.to_vec();
        resealed.extend_from_slice(
            format!("{CHECKSUM_KEY}{}\n", blake3::hash(body).to_hex()).as_bytes(),
        );
        let e = DiskSpec::decode(&resealed, "p").unwrap_err();
        assert!(e.to_string().contains("newer epygibus"), "{e}");
    }

    #[test]
    fn generations_replace_each_other_without_overwriting() {
        let store = MemoryStore::named("snaps");
        assert!(read(&store).unwrap().newest.is_none());
        let mut spec = sample();
        assert!(write_if_changed(&store, &spec).unwrap());
        assert!(!write_if_changed(&store, &spec).unwrap(), "unchanged");
        spec.lists.excluded_dirs.push(b"target".to_vec());
        assert!(write_if_changed(&store, &spec).unwrap());
        let names: Vec<String> = store
            .list("")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, vec![generation_name(2)]);
        assert_eq!(read(&store).unwrap().newest, Some((2, spec.clone())));

        // A damaged newer generation is skipped by readers and kept; the
        // next write goes above it.
        let _ = store.put_new(&generation_name(3), b"torn").unwrap();
        let found = read(&store).unwrap();
        assert_eq!(found.newest, Some((2, spec.clone())));
        assert_eq!(found.damaged.len(), 1);
        spec.fields.insert("compress".into(), "true".into());
        assert!(write_if_changed(&store, &spec).unwrap());
        let mut names: Vec<String> = store
            .list("")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        assert_eq!(names, vec![generation_name(3), generation_name(4)]);
        assert_eq!(read(&store).unwrap().newest, Some((4, spec)));
    }

    proptest::proptest! {
        #[test]
        fn spec_copy_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Err(e) = DiskSpec::decode(&bytes, "/d/spec.000000000001") {
                proptest::prop_assert!(e.to_string().contains("/d/spec.000000000001"));
            }
        }

        #[test]
        fn mutated_spec_copies_never_panic(at in 0usize..600, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = sample().encode(3);
            let i = at % bytes.len();
            bytes[i] = byte;
            let _ = DiskSpec::decode(&bytes, "p");
        }
    }
}
