//! The reference-count index: for every content file, how many snapshot
//! entries use it, its size and its stored size, so statistics never stat
//! content files (a round trip each on a NAS).
//!
//! Persisted as numbered generations `index.<n>`; each generation is a new
//! file (docs/design.md) and the newest one is the truth. A generation
//! that fails its checksum is reported, never replaced or skipped: falling
//! back to an older one could make counts too low (counts are never too low).
//!
//! The index also says where each item's bytes are (a loose content file,
//! or a range of a pack) and lists the packs with their sizes, so reading
//! one item is one range read and no run needs a listing of the share.

use std::collections::{BTreeMap, HashMap};

use super::ContentToken;
use super::pack::PackName;

/// How a content file is stored on disk; decides its file-name suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredForm {
    /// The bytes as they are, no suffix.
    Plain,
    /// A gzip file (one or more members), suffix `.gz`.
    Gzip,
    /// In an encrypted repository: an age file (encrypted to the
    /// repository's key) of a gzip stream, suffix `.gz.age`; in a pack, a
    /// stored entry named `<token>.gz.age`.
    Sealed,
}

impl StoredForm {
    pub fn suffix(self) -> &'static str {
        match self {
            StoredForm::Plain => "",
            StoredForm::Gzip => ".gz",
            StoredForm::Sealed => ".gz.age",
        }
    }

    fn code(self) -> u8 {
        match self {
            StoredForm::Plain => 0,
            StoredForm::Gzip => 1,
            StoredForm::Sealed => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(StoredForm::Plain),
            1 => Some(StoredForm::Gzip),
            4 => Some(StoredForm::Sealed),
            _ => None,
        }
    }
}

/// A pack as the index knows it: a number that entries refer to (stable
/// only within one loaded index), its name and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub u32);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackInfo {
    pub name: PackName,
    /// Size of the whole pack file.
    pub size: u64,
}

/// Where an item's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Its own content file, `content/<xx>/<token>[.gz]`.
    Loose,
    /// An entry of a pack whose data starts at `offset` and is
    /// `stored_size` bytes long: deflate for [`StoredForm::Gzip`], the
    /// bytes as they are for [`StoredForm::Plain`].
    Packed { pack: PackId, offset: u64 },
}

impl Place {
    pub fn pack(self) -> Option<PackId> {
        match self {
            Place::Loose => None,
            Place::Packed { pack, .. } => Some(pack),
        }
    }
}

/// What the index knows of one content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Snapshot entries using this content (never too low; may be too high
    /// after a crash until `check --repair`).
    pub refs: u64,
    /// Size of the content itself.
    pub size: u64,
    /// Size of the content file on disk, or of the pack entry's data.
    pub stored_size: u64,
    pub form: StoredForm,
    /// Unix seconds at which `refs` last dropped to zero (0 while referenced),
    /// so prune can leave recently released content for a grace period.
    pub zero_since: u64,
    pub place: Place,
}

/// A decoded index generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefIndex {
    pub generation: u64,
    pub entries: HashMap<ContentToken, IndexEntry>,
    /// Every pack that entries point into (and no other).
    pub packs: BTreeMap<PackId, PackInfo>,
}

/// Why an index file could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexDecodeError {
    #[error("it does not start with the index header")]
    BadMagic,
    #[error("it is truncated")]
    Truncated,
    #[error("its checksum does not match its contents")]
    BadChecksum,
    #[error("entry {0} has an unknown storage form")]
    BadForm(u64),
    #[error("token {0} appears twice")]
    Duplicate(ContentToken),
    #[error("its generation number {0} differs from its file name")]
    WrongGeneration(u64),
    #[error("it holds a number that does not fit in 64 bits")]
    BadNumber,
    #[error("it has bytes after its last entry")]
    TrailingBytes,
    #[error("pack {0} is not a valid pack name")]
    BadPackName(String),
    #[error("pack {0} appears twice")]
    DuplicatePack(String),
    #[error("entry {0} points outside the packs it lists")]
    BadPlace(u64),
}

/// Index files without packs (every item loose), as written before packs
/// existed and still written while a repository has none, so an older
/// epygibus keeps reading such a repository.
const MAGIC_LOOSE: &[u8] = b"epygibus-index 2\n";
/// Index files with a pack table and packed entries.
const MAGIC_PACKS: &[u8] = b"epygibus-index 3\n";
const MAGIC_LEN: usize = MAGIC_LOOSE.len();
/// Bytes of a token plus the kind byte; the numbers that follow are
/// LEB128 varints (1 to 10 bytes each).
const ENTRY_MIN_LEN: usize = 32 + 1 + 4;
const CHECKSUM_LEN: usize = 32;

/// The kind byte of an entry: where it is and in which form.
fn kind_code(form: StoredForm, place: Place) -> u8 {
    let packed = matches!(place, Place::Packed { .. });
    form.code() | if packed { 2 } else { 0 }
}

impl RefIndex {
    /// Encodes as: magic, generation (u64 LE); with packs, the pack count
    /// and each pack's name (length byte, bytes) and size (varint); the
    /// entry count (u64 LE), then per entry, sorted by token: the token (32
    /// bytes), the kind (1 byte: bit 0 gzip/deflate, bit 1 packed, bit 2
    /// sealed: age of gzip, never with bit 0), and
    /// references, size, stored size and zero-since as LEB128 varints, and
    /// for a packed entry the pack's position in the table and the data's
    /// offset (an entry is ~40 bytes, not 65: the index is rewritten by
    /// every backup, so its size is bytes sent to the NAS each time); then
    /// the BLAKE3 of all that.
    pub fn encode(&self) -> Vec<u8> {
        let mut tokens: Vec<&ContentToken> = self.entries.keys().collect();
        tokens.sort_unstable();
        let mut out = Vec::with_capacity(MAGIC_LEN + 16 + tokens.len() * 48 + CHECKSUM_LEN);
        let with_packs = !self.packs.is_empty();
        out.extend_from_slice(if with_packs { MAGIC_PACKS } else { MAGIC_LOOSE });
        out.extend_from_slice(&self.generation.to_le_bytes());
        let mut ordinal = HashMap::with_capacity(self.packs.len());
        if with_packs {
            put_varint(&mut out, self.packs.len() as u64);
            for (i, (id, info)) in self.packs.iter().enumerate() {
                ordinal.insert(*id, i as u64);
                let name = info.name.as_str().as_bytes();
                out.push(name.len() as u8);
                out.extend_from_slice(name);
                put_varint(&mut out, info.size);
            }
        }
        out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
        for token in tokens {
            let e = &self.entries[token];
            out.extend_from_slice(token.as_bytes());
            out.push(kind_code(e.form, e.place));
            for n in [e.refs, e.size, e.stored_size, e.zero_since] {
                put_varint(&mut out, n);
            }
            if let Place::Packed { pack, offset } = e.place {
                // Repository::commit never saves an entry whose pack is
                // not in the table (see `unlisted_pack`).
                put_varint(&mut out, ordinal.get(&pack).copied().unwrap_or(u64::MAX));
                put_varint(&mut out, offset);
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// An entry pointing into a pack the table does not list (a pack that
    /// was never finished): such an index must not be saved.
    pub fn unlisted_pack(&self) -> Option<ContentToken> {
        self.entries
            .iter()
            .find(|(_, e)| e.place.pack().is_some_and(|p| !self.packs.contains_key(&p)))
            .map(|(t, _)| *t)
    }

    /// A number for a new pack, above every one in use.
    pub fn next_pack_id(&self) -> PackId {
        PackId(self.packs.keys().next_back().map_or(0, |p| p.0 + 1))
    }

    pub fn decode(bytes: &[u8]) -> Result<RefIndex, IndexDecodeError> {
        let (with_packs, body) = check_frame(bytes)?;
        let mut r = Reader(body);
        let generation = r.u64()?;
        let packs = if with_packs {
            decode_packs(&mut r)?
        } else {
            BTreeMap::new()
        };
        let count = r.u64()?;
        if (r.0.len() as u64) < count.saturating_mul(ENTRY_MIN_LEN as u64) {
            return Err(IndexDecodeError::Truncated);
        }
        let mut entries = HashMap::with_capacity(count as usize);
        for i in 0..count {
            let token = ContentToken::from_slice(r.take(32)?).ok_or(IndexDecodeError::Truncated)?;
            let kind = r.take(1)?[0];
            let packed = kind & 2 != 0;
            if kind & !7 != 0 || (packed && !with_packs) {
                return Err(IndexDecodeError::BadForm(i));
            }
            let form = StoredForm::from_code(kind & 5).ok_or(IndexDecodeError::BadForm(i))?;
            let (refs, size, stored_size, zero_since) =
                (r.varint()?, r.varint()?, r.varint()?, r.varint()?);
            let place = if packed {
                let (ordinal, offset) = (r.varint()?, r.varint()?);
                let pack = u32::try_from(ordinal)
                    .ok()
                    .map(PackId)
                    .filter(|p| {
                        packs
                            .get(p)
                            .is_some_and(|info| fits(info.size, offset, stored_size))
                    })
                    .ok_or(IndexDecodeError::BadPlace(i))?;
                Place::Packed { pack, offset }
            } else {
                Place::Loose
            };
            let entry = IndexEntry {
                refs,
                size,
                stored_size,
                form,
                zero_since,
                place,
            };
            if entries.insert(token, entry).is_some() {
                return Err(IndexDecodeError::Duplicate(token));
            }
        }
        if !r.0.is_empty() {
            return Err(IndexDecodeError::TrailingBytes);
        }
        Ok(RefIndex {
            generation,
            entries,
            packs,
        })
    }
}

/// True when `len` bytes from `offset` lie within a pack of `size` bytes.
fn fits(size: u64, offset: u64, len: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= size)
}

fn decode_packs(r: &mut Reader) -> Result<BTreeMap<PackId, PackInfo>, IndexDecodeError> {
    let count = r.varint()?;
    if count > u64::from(u32::MAX) || (r.0.len() as u64) < count.saturating_mul(2) {
        return Err(IndexDecodeError::Truncated);
    }
    let mut packs = BTreeMap::new();
    let mut names = std::collections::HashSet::new();
    for i in 0..count {
        let len = usize::from(r.take(1)?[0]);
        let raw = r.take(len)?;
        let text = String::from_utf8_lossy(raw).into_owned();
        let name: PackName = text
            .parse()
            .map_err(|_| IndexDecodeError::BadPackName(text.clone()))?;
        if !names.insert(text.clone()) {
            return Err(IndexDecodeError::DuplicatePack(text));
        }
        let size = r.varint()?;
        packs.insert(PackId(i as u32), PackInfo { name, size });
    }
    Ok(packs)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Checks magic and checksum; returns whether the index has a pack table,
/// and the bytes between magic and checksum.
fn check_frame(bytes: &[u8]) -> Result<(bool, &[u8]), IndexDecodeError> {
    if bytes.len() < MAGIC_LEN {
        let prefix = |m: &[u8]| m.starts_with(bytes);
        return Err(if prefix(MAGIC_LOOSE) || prefix(MAGIC_PACKS) {
            IndexDecodeError::Truncated
        } else {
            IndexDecodeError::BadMagic
        });
    }
    let with_packs = match &bytes[..MAGIC_LEN] {
        m if m == MAGIC_LOOSE => false,
        m if m == MAGIC_PACKS => true,
        _ => return Err(IndexDecodeError::BadMagic),
    };
    if bytes.len() < MAGIC_LEN + 16 + CHECKSUM_LEN {
        return Err(IndexDecodeError::Truncated);
    }
    let (framed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(framed).as_bytes() != sum {
        return Err(IndexDecodeError::BadChecksum);
    }
    Ok((with_packs, &framed[MAGIC_LEN..]))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IndexDecodeError> {
        if self.0.len() < n {
            return Err(IndexDecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, IndexDecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("took 8 bytes")))
    }

    /// An LEB128 varint of at most 10 bytes that fits in a u64.
    fn varint(&mut self) -> Result<u64, IndexDecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(IndexDecodeError::BadNumber);
            }
            n |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(IndexDecodeError::BadNumber)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_name(n: u64) -> PackName {
        format!("host.{n}.00000000000000{n:02x}").parse().unwrap()
    }

    /// Loose entries only (`packed` false) or every third one in one of
    /// two packs.
    fn sample_with(packed: bool) -> RefIndex {
        let mut idx = RefIndex {
            generation: 7,
            ..RefIndex::default()
        };
        if packed {
            for p in 0..2u32 {
                let info = PackInfo {
                    name: pack_name(u64::from(p)),
                    size: 1 << 20,
                };
                idx.packs.insert(PackId(p * 5), info);
            }
        }
        for i in 0..50u64 {
            let place = if packed && i % 3 == 0 {
                Place::Packed {
                    pack: PackId((i % 2) as u32 * 5),
                    offset: i * 1000,
                }
            } else {
                Place::Loose
            };
            idx.entries.insert(
                ContentToken::of(&i.to_le_bytes()),
                IndexEntry {
                    refs: i,
                    size: i * 100,
                    stored_size: i * 40,
                    form: if i % 2 == 0 {
                        StoredForm::Gzip
                    } else {
                        StoredForm::Plain
                    },
                    zero_since: if i == 0 { 1_700_000_000 } else { 0 },
                    place,
                },
            );
        }
        idx
    }

    fn sample() -> RefIndex {
        sample_with(true)
    }

    /// Pack numbers are renumbered in table order when saved.
    fn renumbered(mut idx: RefIndex) -> RefIndex {
        let map: HashMap<PackId, PackId> = idx
            .packs
            .keys()
            .enumerate()
            .map(|(i, p)| (*p, PackId(i as u32)))
            .collect();
        idx.packs = std::mem::take(&mut idx.packs)
            .into_iter()
            .map(|(p, info)| (map[&p], info))
            .collect();
        for e in idx.entries.values_mut() {
            if let Place::Packed { pack, .. } = &mut e.place {
                *pack = map[pack];
            }
        }
        idx
    }

    #[test]
    fn index_round_trip() {
        let idx = sample();
        assert!(idx.encode().starts_with(MAGIC_PACKS));
        assert_eq!(RefIndex::decode(&idx.encode()).unwrap(), renumbered(idx));
        let loose = sample_with(false);
        assert!(
            loose.encode().starts_with(MAGIC_LOOSE),
            "readable by older epygibus"
        );
        assert_eq!(RefIndex::decode(&loose.encode()).unwrap(), loose);
        let empty = RefIndex::default();
        assert_eq!(RefIndex::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn packed_entries_must_lie_inside_listed_packs() {
        let mut idx = sample();
        let (token, e) = idx
            .entries
            .iter_mut()
            .find(|(_, e)| e.place.pack().is_some())
            .unwrap();
        let token = *token;
        e.place = Place::Packed {
            pack: PackId(0),
            offset: (1 << 20) - 1,
        };
        e.stored_size = 2;
        assert!(matches!(
            RefIndex::decode(&idx.encode()),
            Err(IndexDecodeError::BadPlace(_))
        ));
        idx.entries.get_mut(&token).unwrap().place = Place::Packed {
            pack: PackId(99),
            offset: 0,
        };
        assert_eq!(idx.unlisted_pack(), Some(token));
        assert!(matches!(
            RefIndex::decode(&idx.encode()),
            Err(IndexDecodeError::BadPlace(_))
        ));
    }

    #[test]
    fn new_pack_ids_are_above_those_in_use() {
        let idx = sample();
        assert_eq!(idx.next_pack_id(), PackId(6));
        assert_eq!(RefIndex::default().next_pack_id(), PackId(0));
    }

    #[test]
    fn corrupt_index_rejected() {
        let bytes = sample().encode();
        let mut flipped = bytes.clone();
        flipped[MAGIC_LEN + 40] ^= 1;
        assert_eq!(
            RefIndex::decode(&flipped),
            Err(IndexDecodeError::BadChecksum)
        );
        assert_eq!(
            RefIndex::decode(&bytes[..bytes.len() - 1]),
            Err(IndexDecodeError::BadChecksum)
        );
        assert_eq!(
            RefIndex::decode(&bytes[..10]),
            Err(IndexDecodeError::Truncated)
        );
        assert_eq!(
            RefIndex::decode(b"not an index at all, clearly"),
            Err(IndexDecodeError::BadMagic)
        );
    }

    #[test]
    fn entry_count_must_match_length() {
        // A well-checksummed file whose count lies is still rejected.
        let mut body = MAGIC_LOOSE.to_vec();
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&5u64.to_le_bytes());
        let sum = blake3::hash(&body);
        body.extend_from_slice(sum.as_bytes());
        assert_eq!(RefIndex::decode(&body), Err(IndexDecodeError::Truncated));
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        let mut idx = RefIndex::default();
        for (i, n) in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX]
            .into_iter()
            .enumerate()
        {
            idx.entries.insert(
                ContentToken::of(&[i as u8]),
                IndexEntry {
                    refs: n,
                    size: n,
                    stored_size: n,
                    form: StoredForm::Plain,
                    zero_since: n,
                    place: Place::Loose,
                },
            );
        }
        assert_eq!(RefIndex::decode(&idx.encode()).unwrap(), idx);
        // An eleventh continuation byte is refused.
        let mut r = Reader(&[0xff; 11]);
        assert_eq!(r.varint(), Err(IndexDecodeError::BadNumber));
    }

    /// An index file around `body` with a valid frame and checksum.
    fn framed(magic: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = magic.to_vec();
        out.extend_from_slice(body);
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    proptest::proptest! {
        /// Mutated bodies with valid checksums reach the entry decoder.
        #[test]
        fn mutated_index_never_panics(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
            cut in proptest::prelude::any::<usize>(),
            packed in proptest::prelude::any::<bool>(),
        ) {
            let full = sample_with(packed).encode();
            let magic = &full[..MAGIC_LEN];
            let mut body = full[MAGIC_LEN..full.len() - CHECKSUM_LEN].to_vec();
            for (at, byte) in flips {
                let i = at % body.len();
                body[i] = byte;
            }
            body.truncate(cut % (body.len() + 1));
            let _ = RefIndex::decode(&framed(magic, &body));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = RefIndex::decode(&bytes);
            for magic in [MAGIC_LOOSE, MAGIC_PACKS] {
                let mut framed = magic.to_vec();
                framed.extend_from_slice(&bytes);
                let _ = RefIndex::decode(&framed);
            }
        }
    }
}
