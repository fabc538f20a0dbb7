//! Names of the repository's objects and its `format` file: the on-disk
//! layout in one place (docs/format.md describes it for people).

use std::collections::HashMap;

use super::{ContentError, ContentToken, Result, StoredForm};
use crate::store::Store;

/// The repository layout's version, written to `format`.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_FILE: &str = "format";
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

/// Directories a directory store makes up front: the 256 fan-outs and
/// the registry.
pub fn local_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = (0..=255u8)
        .map(|i| format!("{CONTENT_DIR}/{i:02x}"))
        .collect();
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
    let compression = if compressed { "gzip" } else { "none" };
    format!(
        "epygibus repository\nformat = {FORMAT_VERSION}\nhash = blake3\ncompression = {compression}\n"
    )
}

/// Reads `format`; returns the preferred stored form.
pub fn read_format(store: &dyn Store) -> Result<StoredForm> {
    let text = match store.read(FORMAT_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(ContentError::NotARepository(store.location().clone()));
        }
        Err(e) => return Err(e.into()),
    };
    parse_format(&text).map_err(|reason| ContentError::CorruptFormat {
        place: store.place(FORMAT_FILE),
        reason,
    })
}

fn parse_format(text: &[u8]) -> std::result::Result<StoredForm, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not text".to_owned())?;
    let mut lines = text.lines();
    if lines.next() != Some("epygibus repository") {
        return Err("its first line is not `epygibus repository`".into());
    }
    let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(" = ")).collect();
    match fields.get("format").map(|v| v.parse::<u32>()) {
        Some(Ok(FORMAT_VERSION)) => {}
        Some(Ok(v)) => {
            return Err(format!(
                "format {v} is not supported by this epygibus (it reads format {FORMAT_VERSION})"
            ));
        }
        _ => return Err("it has no `format = N` line".into()),
    }
    if fields.get("hash") != Some(&"blake3") {
        return Err("its hash is not `blake3`".into());
    }
    match fields.get("compression") {
        Some(&"gzip") => Ok(StoredForm::Gzip),
        Some(&"none") => Ok(StoredForm::Plain),
        _ => Err("its compression is neither `gzip` nor `none`".into()),
    }
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
