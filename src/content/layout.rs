//! Names of the repository's objects and its `format` file: the on-disk
//! layout in one place (docs/format.md describes it for people).

use std::collections::HashMap;

use super::{ContentError, ContentToken, Result, StoredForm};
use crate::store::Store;

/// The repository layout's version, written to `format`: 2 since content
/// may be packed. A repository of version 1 (loose content only) is read
/// as it is and upgraded when its first pack is saved, so an older
/// epygibus refuses it clearly instead of missing its packed content.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this epygibus reads.
const OLDEST_FORMAT: u32 = 1;
pub const FORMAT_FILE: &str = "format";
/// Where an upgrade sets the old `format` aside until the new one is there.
const FORMAT_ASIDE: &str = "format.1";
pub const LOCK_FILE: &str = "lock";
pub const CONTENT_DIR: &str = "content";
/// Where archives register the snapshot directories using this
/// repository, so prune and check can see every snapshot (docs/design.md,
/// "no lock is trusted across machines").
pub const REGISTRY_DIR: &str = "archives";
/// File-name prefix of index generations.
pub const INDEX_PREFIX: &str = "index.";

/// `content/<xx>/<token>[.gz]`.
pub fn content_name(token: &ContentToken, form: StoredForm) -> String {
    format!(
        "{CONTENT_DIR}/{}/{}{}",
        token.fan_out(),
        token.to_hex(),
        form.suffix()
    )
}

/// The token and form a content object's name stands for.
pub fn parse_content_name(name: &str) -> Option<(ContentToken, StoredForm)> {
    let leaf = name.strip_prefix(CONTENT_DIR)?.strip_prefix('/')?;
    let (_, file) = leaf.split_once('/')?;
    let (stem, form) = match file.strip_suffix(".gz") {
        Some(s) => (s, StoredForm::Gzip),
        None => (file, StoredForm::Plain),
    };
    Some((stem.parse().ok()?, form))
}

/// Directories a directory store makes up front: the 256 fan-outs, the
/// packs and the registry.
pub fn local_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = (0..=255u8)
        .map(|i| format!("{CONTENT_DIR}/{i:02x}"))
        .collect();
    dirs.push(super::pack::PACK_DIR.to_owned());
    dirs.push(REGISTRY_DIR.to_owned());
    dirs
}

/// Name of index generation `n`.
pub fn generation_name(n: u64) -> String {
    format!("{INDEX_PREFIX}{n:012}")
}

/// The generation number of an index object name, if it is one.
pub fn parse_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(INDEX_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub fn format_text(compressed: bool) -> String {
    format_text_of(FORMAT_VERSION, compressed)
}

fn format_text_of(version: u32, compressed: bool) -> String {
    let compression = if compressed { "gzip" } else { "none" };
    format!("epygibus repository\nformat = {version}\nhash = blake3\ncompression = {compression}\n")
}

/// What the `format` file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepoFormat {
    pub version: u32,
    /// The form new content takes.
    pub prefer: StoredForm,
}

/// Reads `format` (or, after an upgrade that was interrupted between
/// setting the old file aside and writing the new one, the old one).
pub fn read_format(store: &dyn Store) -> Result<RepoFormat> {
    let mut place = FORMAT_FILE;
    let text = match store.read(FORMAT_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => match store.read(FORMAT_ASIDE) {
            Ok(bytes) => {
                place = FORMAT_ASIDE;
                bytes
            }
            Err(_) => return Err(ContentError::NotARepository(store.location().clone())),
        },
        Err(e) => return Err(e.into()),
    };
    parse_format(&text).map_err(|reason| ContentError::CorruptFormat {
        place: store.place(place),
        reason,
    })
}

/// Makes a version-1 repository a version-2 one, before its first pack is
/// recorded in an index. The one exception to "nothing is replaced"
/// (docs/design.md, rule 1) on the backup disk: the old `format` is set
/// aside, the new one written create-only, then the old one removed; a
/// crash in between leaves the old one readable as `format.1`.
pub fn upgrade_format(store: &dyn Store, prefer: StoredForm) -> Result<()> {
    if store.stat(FORMAT_FILE)?.is_some() {
        if let Ok(current) = read_format(store)
            && current.version >= FORMAT_VERSION
        {
            return Ok(());
        }
        if !store.rename_new(FORMAT_FILE, FORMAT_ASIDE)? {
            // A stale copy from an interrupted upgrade: `format` is the
            // same old text.
            store.delete(FORMAT_ASIDE)?;
            store.rename_new(FORMAT_FILE, FORMAT_ASIDE)?;
        }
    }
    let text = format_text_of(FORMAT_VERSION, prefer == StoredForm::Gzip);
    // Existed: another run upgraded it at the same time.
    let _ = store.put_new(FORMAT_FILE, text.as_bytes())?;
    store.delete(FORMAT_ASIDE)?;
    Ok(())
}

fn parse_format(text: &[u8]) -> std::result::Result<RepoFormat, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not text".to_owned())?;
    let mut lines = text.lines();
    if lines.next() != Some("epygibus repository") {
        return Err("its first line is not `epygibus repository`".into());
    }
    let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(" = ")).collect();
    let version = match fields.get("format").map(|v| v.parse::<u32>()) {
        Some(Ok(v)) if (OLDEST_FORMAT..=FORMAT_VERSION).contains(&v) => v,
        Some(Ok(v)) => {
            return Err(format!(
                "format {v} is not supported by this epygibus (it reads formats {OLDEST_FORMAT} to {FORMAT_VERSION}); a newer epygibus made it"
            ));
        }
        _ => return Err("it has no `format = N` line".into()),
    };
    if fields.get("hash") != Some(&"blake3") {
        return Err("its hash is not `blake3`".into());
    }
    let prefer = match fields.get("compression") {
        Some(&"gzip") => StoredForm::Gzip,
        Some(&"none") => StoredForm::Plain,
        _ => return Err("its compression is neither `gzip` nor `none`".into()),
    };
    Ok(RepoFormat { version, prefer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t = ContentToken::of(b"x");
        for form in [StoredForm::Gzip, StoredForm::Plain] {
            let name = content_name(&t, form);
            assert!(name.starts_with(&format!("content/{}/", t.fan_out())));
            assert_eq!(parse_content_name(&name), Some((t, form)));
        }
        assert_eq!(parse_content_name("content/ab/tmp.x.1.2"), None);
        assert_eq!(generation_name(42), "index.000000000042");
        assert_eq!(parse_generation("index.000000000042"), Some(42));
        assert_eq!(parse_generation("index."), None);
        assert_eq!(parse_generation("index.12a"), None);
        assert_eq!(parse_generation("tmp.1.2"), None);
    }

    #[test]
    fn version_1_is_read_and_upgraded_without_losing_its_settings() {
        let store = crate::store::MemoryStore::named("f");
        let v1 = format_text_of(1, false);
        let _ = store.put_new(FORMAT_FILE, v1.as_bytes()).unwrap();
        let f = read_format(&store).unwrap();
        assert_eq!((f.version, f.prefer), (1, StoredForm::Plain));
        // An upgrade interrupted after setting the old file aside.
        assert!(store.rename_new(FORMAT_FILE, FORMAT_ASIDE).unwrap());
        assert_eq!(read_format(&store).unwrap().version, 1);
        upgrade_format(&store, f.prefer).unwrap();
        let f = read_format(&store).unwrap();
        assert_eq!((f.version, f.prefer), (2, StoredForm::Plain));
        assert!(store.stat(FORMAT_ASIDE).unwrap().is_none());
        upgrade_format(&store, f.prefer).unwrap();
        let err = parse_format(format_text_of(3, true).as_bytes()).unwrap_err();
        assert!(err.contains("newer epygibus"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn format_file_reader_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let store = crate::store::MemoryStore::named("f");
            let _ = store.put_new(FORMAT_FILE, &bytes).unwrap();
            if let Err(e) = read_format(&store) {
                proptest::prop_assert!(e.to_string().contains(FORMAT_FILE));
            }
        }
    }
}
