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
/// The layout of an encrypted repository: every item sealed (age of
/// gzip), tokens keyed BLAKE3, the repository key in [`KEY_FILE`]. An
/// epygibus that knows only formats 1 and 2 refuses it clearly.
pub const ENCRYPTED_FORMAT: u32 = 3;
/// The oldest layout this epygibus reads.
const OLDEST_FORMAT: u32 = 1;
pub const FORMAT_FILE: &str = "format";
/// Where an upgrade sets the old `format` aside until the new one is there.
const FORMAT_ASIDE: &str = "format.1";
pub const LOCK_FILE: &str = "lock";
/// The repository key of an encrypted repository, itself an age file
/// encrypted to the user's recipients or passphrase.
pub const KEY_FILE: &str = "key.age";
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
    parse_item_name(file)
}

/// The token and form of `<token>`, `<token>.gz` or `<token>.gz.age` (a
/// loose file's leaf name, or a pack entry's name).
pub fn parse_item_name(file: &str) -> Option<(ContentToken, StoredForm)> {
    let (stem, form) = if let Some(s) = file.strip_suffix(StoredForm::Sealed.suffix()) {
        (s, StoredForm::Sealed)
    } else if let Some(s) = file.strip_suffix(StoredForm::Gzip.suffix()) {
        (s, StoredForm::Gzip)
    } else {
        (file, StoredForm::Plain)
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

/// The `format` of an encrypted repository whose key's public key is
/// `recipient`.
pub fn encrypted_format_text(recipient: &str) -> String {
    format!(
        "epygibus repository\nformat = {ENCRYPTED_FORMAT}\nhash = blake3-keyed\ncompression = gzip\nencryption = age\nkey = {KEY_FILE}\nrecipient = {recipient}\n"
    )
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

/// What `format` says, with the public key of an encrypted repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatFile {
    pub format: RepoFormat,
    pub recipient: Option<String>,
}

/// Reads `format` (or, after an upgrade that was interrupted between
/// setting the old file aside and writing the new one, the old one).
pub fn read_format(store: &dyn Store) -> Result<RepoFormat> {
    read_format_file(store).map(|f| f.format)
}

/// Reads `format` with everything it says (see [`read_format`]).
pub fn read_format_file(store: &dyn Store) -> Result<FormatFile> {
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

fn parse_format(text: &[u8]) -> std::result::Result<FormatFile, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not text".to_owned())?;
    let mut lines = text.lines();
    if lines.next() != Some("epygibus repository") {
        return Err("its first line is not `epygibus repository`".into());
    }
    let fields: HashMap<&str, &str> = lines.filter_map(|l| l.split_once(" = ")).collect();
    let version = match fields.get("format").map(|v| v.parse::<u32>()) {
        Some(Ok(v)) if (OLDEST_FORMAT..=ENCRYPTED_FORMAT).contains(&v) => v,
        Some(Ok(v)) => {
            return Err(format!(
                "format {v} is not supported by this epygibus (it reads formats {OLDEST_FORMAT} to {ENCRYPTED_FORMAT}); a newer epygibus made it"
            ));
        }
        _ => return Err("it has no `format = N` line".into()),
    };
    if version == ENCRYPTED_FORMAT {
        return parse_encrypted(&fields);
    }
    if fields.get("hash") != Some(&"blake3") {
        return Err("its hash is not `blake3`".into());
    }
    let prefer = match fields.get("compression") {
        Some(&"gzip") => StoredForm::Gzip,
        Some(&"none") => StoredForm::Plain,
        _ => return Err("its compression is neither `gzip` nor `none`".into()),
    };
    Ok(FormatFile {
        format: RepoFormat { version, prefer },
        recipient: None,
    })
}

fn parse_encrypted(fields: &HashMap<&str, &str>) -> std::result::Result<FormatFile, String> {
    let expect = |key: &str, value: &str| {
        if fields.get(key) == Some(&value) {
            Ok(())
        } else {
            Err(format!("format {ENCRYPTED_FORMAT} needs `{key} = {value}`"))
        }
    };
    expect("hash", "blake3-keyed")?;
    expect("encryption", "age")?;
    expect("key", KEY_FILE)?;
    let recipient = fields
        .get("recipient")
        .filter(|r| r.starts_with("age1"))
        .ok_or("it has no `recipient = age1…` line")?;
    Ok(FormatFile {
        format: RepoFormat {
            version: ENCRYPTED_FORMAT,
            prefer: StoredForm::Sealed,
        },
        recipient: Some((*recipient).to_owned()),
    })
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
    fn encrypted_format_names_its_key_and_is_refused_when_incomplete() {
        let text = encrypted_format_text("age1abc");
        let f = parse_format(text.as_bytes()).unwrap();
        assert_eq!(f.format.version, ENCRYPTED_FORMAT);
        assert_eq!(f.format.prefer, StoredForm::Sealed);
        assert_eq!(f.recipient.as_deref(), Some("age1abc"));
        for line in [
            "hash = blake3-keyed",
            "encryption = age",
            "recipient = age1abc",
        ] {
            let cut = text.replace(&format!("{line}\n"), "");
            assert!(parse_format(cut.as_bytes()).is_err(), "{line}");
        }
        let t = ContentToken::of(b"x");
        let name = content_name(&t, StoredForm::Sealed);
        assert!(name.ends_with(".gz.age"));
        assert_eq!(parse_content_name(&name), Some((t, StoredForm::Sealed)));
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
        let err = parse_format(format_text_of(4, true).as_bytes()).unwrap_err();
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
