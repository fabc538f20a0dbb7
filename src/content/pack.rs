//! Packs: many small content items in one zip file, as git packs loose
//! objects. On a NAS every file costs several round trips (open, write,
//! fsync, close, rename: ~2 ms each on the SMB rig); a pack costs them
//! once for thousands of items, and restoring reads it sequentially.
//!
//! A pack is an ordinary zip archive (`unzip`, `bsdtar`, `python3 -m
//! zipfile` and Windows Explorer open it): one entry per item, named by its
//! token, deflate-compressed by itself or stored when it does not shrink.
//! The index records where each entry's data starts, so reading one item
//! is one range read; the zip's own central directory lets `check
//! --repair` find items the index lost. Packs are written once under a
//! name no other writer can choose and never changed; prune rewrites the
//! live part of a mostly dead pack into a new one.

use std::io::{self, BufWriter, Write};
use std::str::FromStr;

use rawzip::{CompressionMethod, DataDescriptorOutput, ZipArchive, ZipArchiveWriter};

use super::codec::Counting;
use super::codec::SMALL_FILE;
use super::{ContentToken, StoredForm, TokenHasher};
use crate::crypt::RepoKey;
use crate::store::{Committed, NewObject, Store, StoreError};

/// The directory of the packs, beside `content/`.
pub const PACK_DIR: &str = "packs";
const PACK_SUFFIX: &str = ".zip";

/// Items up to this size go into packs; larger ones stay loose. The same
/// limit up to which a file is read into memory once (its measured cost is
/// memory: see [`SMALL_FILE`]). Raising it to 1 MiB would pack 8 more of
/// the small benchmark corpus's 7,375 files and 89 more of the full one's
/// 52,616: a few dozen round trips, against larger buffers per thread.
pub const MAX_PACKED: u64 = SMALL_FILE as u64;

/// A pack is finished once its data reach this size. Each pack costs a
/// handful of round trips, and a prune rewrites a pack whole, so packs
/// are neither tiny nor huge: git and restic use similar sizes.
pub const PACK_TARGET: u64 = 32 << 20;

/// At most this many entries per pack: below zip's 65,535, so no reader
/// needs zip64 extensions.
pub const MAX_ENTRIES: u32 = 60_000;

/// Bytes a pack spends per entry besides the item's data: local header
/// (30 + 64 name bytes), data descriptor (16), central directory record
/// (46 + 64).
pub const ENTRY_OVERHEAD: u64 = 30 + 64 + 16 + 46 + 64;

/// The name of a pack: `<host tag>.<pid>.<16 random hex digits>`, unique
/// per writer and never reused; its object is `packs/<name>.zip`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackName(String);

/// Text that is not a pack name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a pack name")]
pub struct BadPackName(pub String);

impl PackName {
    /// A name no other run (here or on another machine) will choose.
    pub fn new_unique() -> PackName {
        let mut random = [0u8; 8];
        if rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).is_err() {
            // Without the kernel's generator: time and a counter still
            // make the name unique for this process (host and pid do the
            // rest).
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            random = (nanos ^ n.rotate_left(48)).to_le_bytes();
        }
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        PackName(format!("{}.{hex}", crate::fsio::owner_tag()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pack's object name in the repository.
    pub fn object_name(&self) -> String {
        format!("{PACK_DIR}/{}{PACK_SUFFIX}", self.0)
    }

    /// The pack an object name stands for, if it is one.
    pub fn from_object_name(name: &str) -> Option<PackName> {
        name.strip_prefix(PACK_DIR)?
            .strip_prefix('/')?
            .strip_suffix(PACK_SUFFIX)?
            .parse()
            .ok()
    }

    /// Written by a process of this host that is no longer running.
    pub fn owner_is_dead(&self) -> bool {
        crate::fsio::owner_is_dead(self.0.as_bytes())
    }
}

impl FromStr for PackName {
    type Err = BadPackName;

    /// Portable names only (`[0-9a-z.-]`, at least host, pid and random
    /// parts), never a temp file's.
    fn from_str(s: &str) -> Result<PackName, BadPackName> {
        let ok = (5..=120).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'.' || b == b'-')
            && s.split('.').count() >= 3
            && s.split('.').all(|part| !part.is_empty())
            && !crate::fsio::is_temp_name(s.as_bytes());
        if ok {
            Ok(PackName(s.to_owned()))
        } else {
            Err(BadPackName(s.to_owned()))
        }
    }
}

impl std::fmt::Display for PackName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An item ready to be appended: its bytes as stored in the pack.
pub struct EncodedItem {
    pub form: StoredForm,
    pub bytes: Vec<u8>,
    /// CRC-32 of the content (zip readers check it).
    pub crc: u32,
    /// Size of the content.
    pub size: u64,
}

impl EncodedItem {
    /// Deflates `data` when that saves enough (see
    /// [`super::codec::worth_compressing`]) and `prefer` asks for it;
    /// stores it as it is otherwise. In an encrypted repository (`key`)
    /// the entry holds the sealed item, stored.
    pub fn encode(data: &[u8], prefer: StoredForm, key: Option<&RepoKey>) -> EncodedItem {
        if let (StoredForm::Sealed, Some(key)) = (prefer, key) {
            let bytes = super::codec::seal_small(data, key);
            return EncodedItem {
                form: StoredForm::Sealed,
                crc: libdeflater::crc32(&bytes),
                bytes,
                size: data.len() as u64,
            };
        }
        let (form, bytes) = super::codec::encode_raw(data, prefer);
        EncodedItem {
            form,
            bytes,
            crc: libdeflater::crc32(data),
            size: data.len() as u64,
        }
    }

    /// The entry's uncompressed size as the zip records it: the content's,
    /// or for a sealed item (stored) the age file's.
    fn zip_size(&self) -> u64 {
        match self.form {
            StoredForm::Sealed => self.bytes.len() as u64,
            _ => self.size,
        }
    }
}

/// A pack being written. Nothing is visible under its name before
/// [`PackWriter::finish`]; dropped unfinished, it leaves nothing.
pub struct PackWriter<'s> {
    name: PackName,
    zip: ZipArchiveWriter<Counting<BufWriter<Box<dyn NewObject + 's>>>>,
    entries: u32,
    place: String,
}

/// Writes reach the store in pieces this large: a pack's many small
/// entries cost few round trips on a share.
const WRITE_BUFFER: usize = 1 << 20;

impl<'s> PackWriter<'s> {
    pub fn create(store: &'s dyn Store, name: PackName) -> Result<PackWriter<'s>, StoreError> {
        let object_name = name.object_name();
        let object = store.create(&object_name)?;
        Ok(PackWriter {
            name,
            zip: ZipArchiveWriter::new(Counting {
                inner: BufWriter::with_capacity(WRITE_BUFFER, object),
                count: 0,
            }),
            entries: 0,
            place: store.place(&object_name),
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.zip.stream_offset()
    }

    /// Holds enough to be finished.
    pub fn is_full(&self) -> bool {
        self.len() >= PACK_TARGET || self.entries >= MAX_ENTRIES
    }

    /// Appends one item; returns where its data starts.
    pub fn append(&mut self, token: &ContentToken, item: &EncodedItem) -> Result<u64, StoreError> {
        let method = match item.form {
            StoredForm::Gzip => CompressionMethod::DEFLATE,
            StoredForm::Plain | StoredForm::Sealed => CompressionMethod::STORE,
        };
        // A sealed entry is named as a loose file would be, so the name
        // says what `unzip -p` gives: an age file of a gzip stream.
        let hex = format!(
            "{}{}",
            token.to_hex(),
            match item.form {
                StoredForm::Sealed => StoredForm::Sealed.suffix(),
                _ => "",
            }
        );
        let place = &self.place;
        let (mut entry, _) = self
            .zip
            .new_file(hex.as_str())
            .compression_method(method)
            .start()
            .map_err(|e| write_err(place, e))?;
        let offset = entry.stream_offset();
        entry
            .write_all(&item.bytes)
            .map_err(|e| StoreError::new("write", place.clone(), e))?;
        entry
            .finish(DataDescriptorOutput::new(item.crc, item.zip_size()))
            .map_err(|e| write_err(place, e))?;
        self.entries += 1;
        Ok(offset)
    }

    /// Writes the table of contents and makes the pack visible under its
    /// name (durable after the store's next barrier). Returns its name and
    /// size.
    pub fn finish(self) -> Result<(PackName, u64), StoreError> {
        let PackWriter {
            name, zip, place, ..
        } = self;
        let counted = zip.finish().map_err(|e| write_err(&place, e))?;
        let size = counted.count;
        let object = counted
            .inner
            .into_inner()
            .map_err(|e| StoreError::new("write", place.clone(), e.into_error()))?;
        match object.commit()? {
            Committed::Created => Ok((name, size)),
            Committed::Existed => Err(StoreError::new(
                "create",
                place,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a pack of that name exists already; nothing was replaced",
                ),
            )),
        }
    }
}

fn write_err(place: &str, e: rawzip::Error) -> StoreError {
    let io = match e.into_kind() {
        rawzip::ErrorKind::IO(io) => io,
        other => io::Error::other(format!("{other:?}")),
    };
    StoreError::new("write", place.to_owned(), io)
}

/// One entry of a pack's table of contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TocEntry {
    pub token: ContentToken,
    pub form: StoredForm,
    /// Where the entry's data starts in the pack.
    pub offset: u64,
    pub stored_size: u64,
    pub size: u64,
    pub crc: u32,
}

/// The entries of a whole pack held in memory, read from its central
/// directory (what `unzip -l` shows). An entry that is not an item of
/// ours (a name that is no token, a method other than deflate or stored)
/// makes the table unusable: the pack was not written by epygibus.
pub fn table_of_contents(pack: &[u8]) -> Result<Vec<TocEntry>, String> {
    let archive = ZipArchive::from_slice(pack).map_err(|e| describe(&e))?;
    let mut entries = archive.entries();
    let mut toc = Vec::new();
    while let Some(record) = entries.next_entry().map_err(|e| describe(&e))? {
        let raw_name = record.file_path();
        let name = String::from_utf8_lossy(raw_name.as_ref());
        let (token, form) = entry_kind(&name, record.compression_method())?;
        let local = archive
            .get_entry(record.wayfinder())
            .map_err(|e| format!("entry {name}: {}", describe(&e)))?;
        let (start, end) = local.compressed_data_range();
        toc.push(TocEntry {
            token,
            form,
            offset: start,
            stored_size: end - start,
            size: content_size_hint(form, record.uncompressed_size_hint()),
            crc: record.crc32(),
        });
    }
    Ok(toc)
}

/// The token and form of an entry from its name and method: `<token>`
/// deflated or stored, or `<token>.gz.age` stored (sealed).
fn entry_kind(name: &str, method: CompressionMethod) -> Result<(ContentToken, StoredForm), String> {
    let (token, named) = super::layout::parse_item_name(name)
        .filter(|(_, f)| *f != StoredForm::Gzip)
        .ok_or_else(|| format!("its entry `{name}` is not named by a content token"))?;
    match (named, method) {
        (StoredForm::Sealed, CompressionMethod::STORE) => Ok((token, StoredForm::Sealed)),
        (StoredForm::Plain, CompressionMethod::DEFLATE) => Ok((token, StoredForm::Gzip)),
        (StoredForm::Plain, CompressionMethod::STORE) => Ok((token, StoredForm::Plain)),
        (_, other) => Err(format!("entry {name} uses compression method {other:?}")),
    }
}

/// The content size a table of contents tells: the zip's uncompressed size,
/// except for a sealed entry, whose content size is known only once it is
/// decrypted ([`UNKNOWN_SIZE`]).
fn content_size_hint(form: StoredForm, zip_size: u64) -> u64 {
    match form {
        StoredForm::Sealed => UNKNOWN_SIZE,
        _ => zip_size,
    }
}

/// A content size not known yet (a sealed entry found through a table of
/// contents): [`decode_item`] then learns it from the content.
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// An entry found through a pack's table of contents read from the
/// store's copy (only the table, not the data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    pub token: ContentToken,
    pub form: StoredForm,
    /// Where the entry's local header starts.
    pub header_offset: u64,
    pub stored_size: u64,
    pub size: u64,
}

/// Reads a pack's table of contents from the end of its object, in a few
/// range reads (not the whole pack): for finding an item the index lost.
pub fn remote_table(
    store: &dyn Store,
    name: &PackName,
    size: u64,
) -> Result<Vec<RemoteEntry>, String> {
    let reader = StoreReaderAt {
        store,
        name: name.object_name(),
    };
    let mut buffer = vec![0u8; rawzip::RECOMMENDED_BUFFER_SIZE];
    let archive = rawzip::ZipLocator::new()
        .locate_in_reader(reader, &mut buffer, size)
        .map_err(|(_, e)| describe(&e))?;
    let mut entries = archive.entries(&mut buffer);
    let mut out = Vec::new();
    while let Some(record) = entries.next_entry().map_err(|e| describe(&e))? {
        let name = String::from_utf8_lossy(record.file_path().as_ref()).into_owned();
        let Ok((token, form)) = entry_kind(&name, record.compression_method()) else {
            continue;
        };
        out.push(RemoteEntry {
            token,
            form,
            header_offset: record.local_header_offset(),
            stored_size: record.compressed_size_hint(),
            size: content_size_hint(form, record.uncompressed_size_hint()),
        });
    }
    Ok(out)
}

/// Where the data of an entry starts, from its local header (signature,
/// then name and extra-field lengths at bytes 26 to 29).
pub fn data_offset(store: &dyn Store, name: &PackName, entry: &RemoteEntry) -> Result<u64, String> {
    let header = store
        .read_range(&name.object_name(), entry.header_offset, 30)
        .map_err(|e| e.to_string())?;
    if header.len() < 30 || header[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err(format!(
            "no local header at offset {} for {}",
            entry.header_offset, entry.token
        ));
    }
    let name_len = u64::from(u16::from_le_bytes([header[26], header[27]]));
    let extra_len = u64::from(u16::from_le_bytes([header[28], header[29]]));
    Ok(entry.header_offset + 30 + name_len + extra_len)
}

/// Positioned reads of a store object, for the zip reader.
struct StoreReaderAt<'a> {
    store: &'a dyn Store,
    name: String,
}

impl rawzip::ReaderAt for StoreReaderAt<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self
            .store
            .read_range(&self.name, offset, buf.len() as u64)
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

fn describe(e: &rawzip::Error) -> String {
    match e.kind() {
        rawzip::ErrorKind::MissingEndOfCentralDirectory | rawzip::ErrorKind::Eof => {
            "it has no zip table of contents at its end (truncated?)".to_owned()
        }
        other => format!("its zip structure is damaged ({other:?})"),
    }
}

/// The content of an item from its bytes in a pack; `size` is the
/// content's size as the index or table of contents records it
/// ([`UNKNOWN_SIZE`] for a sealed entry found through a table), `key` the
/// repository key when the item is sealed.
pub fn decode_item(
    stored: &[u8],
    form: StoredForm,
    size: u64,
    key: Option<&RepoKey>,
) -> io::Result<Vec<u8>> {
    let damaged = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    match form {
        StoredForm::Sealed => {
            let key = key.ok_or_else(|| damaged("it is encrypted and no key was given"))?;
            let gz = key
                .open(stored, "the entry")
                .map_err(|e| damaged(&e.to_string()))?;
            // One gzip member (packed items are small), decoded by
            // libdeflate, which checks its CRC: the size is the index's,
            // or the member's own trailer when the index has none.
            let len = match size {
                UNKNOWN_SIZE => gz
                    .len()
                    .checked_sub(4)
                    .map(|at| u32::from_le_bytes(gz[at..].try_into().expect("4 bytes")) as u64)
                    .ok_or_else(|| damaged("its gzip data are truncated"))?,
                known => known,
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&n| n as u64 <= MAX_PACKED && n / 1032 <= gz.len())
                .ok_or_else(|| damaged("its recorded size is impossible"))?;
            let mut out = vec![0u8; len];
            let n = DECOMPRESSOR
                .with(|d| d.borrow_mut().gzip_decompress(&gz, &mut out))
                .map_err(|e| damaged(&format!("its gzip data do not decode ({e:?})")))?;
            if n != len {
                return Err(damaged("its length differs from the index"));
            }
            Ok(out)
        }
        StoredForm::Plain if stored.len() as u64 == size => Ok(stored.to_vec()),
        StoredForm::Plain => Err(damaged("its length differs from the index")),
        StoredForm::Gzip => {
            // Deflate cannot shrink data more than 1032-fold: a larger
            // recorded size is damage, not something to allocate.
            let len = usize::try_from(size)
                .ok()
                .filter(|&n| n / 1032 <= stored.len())
                .ok_or_else(|| damaged("its recorded size is impossible"))?;
            let mut out = vec![0u8; len];
            let n = DECOMPRESSOR
                .with(|d| d.borrow_mut().deflate_decompress(stored, &mut out))
                .map_err(|e| damaged(&format!("its deflate data do not decode ({e:?})")))?;
            if n != len {
                return Err(damaged("it decodes to fewer bytes than recorded"));
            }
            Ok(out)
        }
    }
}

/// Checks one item of a pack held in memory against its token, as the
/// index places it.
pub fn check_item(
    pack: &[u8],
    token: &ContentToken,
    entry: &super::IndexEntry,
    tokens: TokenHasher,
    key: Option<&RepoKey>,
) -> Result<(), String> {
    let super::Place::Packed { offset, .. } = entry.place else {
        return Err("it is not packed".to_owned());
    };
    let stored = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(entry.stored_size).ok())
        .and_then(|(start, len)| pack.get(start..start.checked_add(len)?))
        .ok_or_else(|| "it lies beyond the end of the pack (truncated?)".to_owned())?;
    let data = decode_item(stored, entry.form, entry.size, key).map_err(|e| e.to_string())?;
    if tokens.of(&data) != *token {
        return Err("its bytes do not match its token".to_owned());
    }
    Ok(())
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn items() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..40u32)
            .map(|i| format!("item {i} ").repeat(i as usize + 1).into_bytes())
            .collect();
        v.push(Vec::new());
        let mut x = 7u32;
        v.push(
            (0..5000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
        v
    }

    #[test]
    fn pack_round_trip_through_offsets_and_table() {
        let store = MemoryStore::named("p");
        let name = PackName::new_unique();
        let mut w = PackWriter::create(&store, name.clone()).unwrap();
        let mut placed = Vec::new();
        for data in items() {
            let token = ContentToken::of(&data);
            let item = EncodedItem::encode(&data, StoredForm::Gzip, None);
            let offset = w.append(&token, &item).unwrap();
            placed.push((token, data, item.form, offset, item.bytes.len() as u64));
        }
        assert!(
            store.stat(&name.object_name()).unwrap().is_none(),
            "not visible yet"
        );
        let (finished, size) = w.finish().unwrap();
        assert_eq!(finished, name);
        let bytes = store.read(&name.object_name()).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert!(
            placed.iter().any(|p| p.2 == StoredForm::Plain),
            "noise is stored"
        );
        assert!(placed.iter().any(|p| p.2 == StoredForm::Gzip));
        for (token, data, form, offset, len) in &placed {
            let stored = store
                .read_range(&name.object_name(), *offset, *len)
                .unwrap();
            let back = decode_item(&stored, *form, data.len() as u64, None).unwrap();
            assert_eq!(ContentToken::of(&back), *token);
        }
        let toc = table_of_contents(&bytes).unwrap();
        assert_eq!(toc.len(), placed.len());
        for (entry, (token, data, form, offset, len)) in toc.iter().zip(&placed) {
            assert_eq!(
                (
                    entry.token,
                    entry.form,
                    entry.offset,
                    entry.stored_size,
                    entry.size
                ),
                (*token, *form, *offset, *len, data.len() as u64)
            );
            assert_eq!(entry.crc, libdeflater::crc32(data));
        }
    }

    #[test]
    fn sealed_entries_are_stored_age_files_named_as_such() {
        let store = MemoryStore::named("p");
        let key = RepoKey::generate();
        let tokens = TokenHasher::Keyed(key.token_key());
        let name = PackName::new_unique();
        let mut w = PackWriter::create(&store, name.clone()).unwrap();
        let mut placed = Vec::new();
        for data in items() {
            let token = tokens.of(&data);
            let item = EncodedItem::encode(&data, StoredForm::Sealed, Some(&key));
            assert_eq!(item.form, StoredForm::Sealed);
            assert!(item.bytes.starts_with(b"age-encryption.org/v1"));
            let offset = w.append(&token, &item).unwrap();
            placed.push((token, data, offset, item.bytes.len() as u64));
        }
        let (_, size) = w.finish().unwrap();
        let bytes = store.read(&name.object_name()).unwrap();
        let toc = table_of_contents(&bytes).unwrap();
        let remote = remote_table(&store, &name, size).unwrap();
        for ((entry, far), (token, data, offset, len)) in toc.iter().zip(&remote).zip(&placed) {
            assert_eq!(
                (entry.token, entry.form, entry.offset, entry.stored_size),
                (*token, StoredForm::Sealed, *offset, *len)
            );
            assert_eq!(
                (far.token, far.form, far.size),
                (*token, StoredForm::Sealed, UNKNOWN_SIZE)
            );
            let stored = &bytes[*offset as usize..(*offset + *len) as usize];
            for size in [data.len() as u64, UNKNOWN_SIZE] {
                assert_eq!(
                    &decode_item(stored, StoredForm::Sealed, size, Some(&key)).unwrap(),
                    data
                );
            }
            assert!(
                decode_item(
                    stored,
                    StoredForm::Sealed,
                    data.len() as u64 + 1,
                    Some(&key)
                )
                .is_err()
            );
            assert!(
                decode_item(
                    stored,
                    StoredForm::Sealed,
                    UNKNOWN_SIZE,
                    Some(&RepoKey::generate())
                )
                .is_err()
            );
            assert!(decode_item(stored, StoredForm::Sealed, UNKNOWN_SIZE, None).is_err());
        }
    }

    #[test]
    fn remote_table_finds_entries_without_reading_the_data() {
        let store = MemoryStore::named("p");
        let name = PackName::new_unique();
        let mut w = PackWriter::create(&store, name.clone()).unwrap();
        let mut offsets = Vec::new();
        for data in items() {
            let token = ContentToken::of(&data);
            offsets.push((
                token,
                w.append(&token, &EncodedItem::encode(&data, StoredForm::Gzip, None))
                    .unwrap(),
            ));
        }
        let (_, size) = w.finish().unwrap();
        let remote = remote_table(&store, &name, size).unwrap();
        assert_eq!(remote.len(), offsets.len());
        for (entry, (token, offset)) in remote.iter().zip(&offsets) {
            assert_eq!(entry.token, *token);
            assert_eq!(data_offset(&store, &name, entry).unwrap(), *offset);
        }
    }

    #[test]
    fn damaged_packs_and_items_are_refused() {
        let store = MemoryStore::named("p");
        let name = PackName::new_unique();
        let mut w = PackWriter::create(&store, name.clone()).unwrap();
        let data = b"some text some text some text some text".repeat(10);
        let item = EncodedItem::encode(&data, StoredForm::Gzip, None);
        let offset = w.append(&ContentToken::of(&data), &item).unwrap();
        w.finish().unwrap();
        let bytes = store.read(&name.object_name()).unwrap();
        let err = table_of_contents(&bytes[..bytes.len() - 10]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let mut stored = item.bytes.clone();
        stored[2] ^= 0x55;
        stored.truncate(stored.len() - 3);
        assert!(decode_item(&stored, StoredForm::Gzip, data.len() as u64, None).is_err());
        assert!(decode_item(&item.bytes, StoredForm::Gzip, data.len() as u64 + 1, None).is_err());
        assert!(decode_item(b"abc", StoredForm::Plain, 4, None).is_err());
        let _ = offset;
    }

    #[test]
    fn a_pack_name_taken_already_is_an_error_naming_it_and_nothing_is_replaced() {
        let store = MemoryStore::named("p");
        let name = PackName::new_unique();
        let _ = store
            .put_new(&name.object_name(), b"someone else's")
            .unwrap();
        let mut w = PackWriter::create(&store, name.clone()).unwrap();
        let data = b"an item".repeat(20);
        w.append(
            &ContentToken::of(&data),
            &EncodedItem::encode(&data, StoredForm::Gzip, None),
        )
        .unwrap();
        let err = w.finish().unwrap_err();
        assert!(err.to_string().contains(&name.object_name()), "{err}");
        assert!(err.to_string().contains("exists already"), "{err}");
        assert_eq!(store.read(&name.object_name()).unwrap(), b"someone else's");
    }

    #[test]
    fn pack_names_are_unique_portable_and_parsed_back() {
        let a = PackName::new_unique();
        let b = PackName::new_unique();
        assert_ne!(a, b);
        assert_eq!(
            PackName::from_object_name(&a.object_name()),
            Some(a.clone())
        );
        assert!(!a.owner_is_dead(), "we are alive");
        for bad in [
            "",
            "a.b",
            "tmp.x.1.2",
            "A.1.ff",
            "a..b.c",
            "a/b.c.d",
            "a.b.c d",
        ] {
            assert!(bad.parse::<PackName>().is_err(), "{bad}");
        }
        assert_eq!(PackName::from_object_name("packs/tmp.h.1.2"), None);
        assert_eq!(PackName::from_object_name("content/ab/x.zip"), None);
    }

    proptest::proptest! {
        #[test]
        fn table_reader_never_panics(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let store = MemoryStore::named("p");
            let name = PackName::new_unique();
            let mut w = PackWriter::create(&store, name.clone()).unwrap();
            for data in items().iter().take(5) {
                w.append(&ContentToken::of(data), &EncodedItem::encode(data, StoredForm::Gzip, None)).unwrap();
            }
            w.finish().unwrap();
            let mut bytes = store.read(&name.object_name()).unwrap();
            for (at, byte) in flips {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(cut % (bytes.len() + 1));
            if let Ok(toc) = table_of_contents(&bytes) {
                for e in toc {
                    let end = e.offset.saturating_add(e.stored_size).min(bytes.len() as u64);
                    let start = e.offset.min(end);
                    let _ = decode_item(&bytes[start as usize..end as usize], e.form, e.size.min(1 << 20), None);
                }
            }
        }
    }
}
