//! The reference-count index: for every content file, how many snapshot
//! entries use it, its size and its stored size, so statistics never stat
//! content files (a round trip each on a NAS).
//!
//! Persisted as numbered generations `index.<n>`; each generation is a new
//! file (docs/design.md) and the newest one is the truth. A generation
//! that fails its checksum is reported, never replaced or skipped: falling
//! back to an older one could make counts too low (counts are never too low).

use std::collections::HashMap;

use super::ContentToken;

/// How a content file is stored on disk; decides its file-name suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredForm {
    /// The bytes as they are, no suffix.
    Plain,
    /// A gzip file (one or more members), suffix `.gz`.
    Gzip,
}

impl StoredForm {
    pub fn suffix(self) -> &'static str {
        match self {
            StoredForm::Plain => "",
            StoredForm::Gzip => ".gz",
        }
    }

    fn code(self) -> u8 {
        match self {
            StoredForm::Plain => 0,
            StoredForm::Gzip => 1,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(StoredForm::Plain),
            1 => Some(StoredForm::Gzip),
            _ => None,
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
    /// Size of the content file on disk.
    pub stored_size: u64,
    pub form: StoredForm,
    /// Unix seconds at which `refs` last dropped to zero (0 while referenced),
    /// so prune can leave recently released content for a grace period.
    pub zero_since: u64,
}

/// A decoded index generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefIndex {
    pub generation: u64,
    pub entries: HashMap<ContentToken, IndexEntry>,
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
}

const MAGIC: &[u8] = b"epygibus-index 2\n";
/// Bytes of a token plus the form byte; the numbers that follow are
/// LEB128 varints (1 to 10 bytes each).
const ENTRY_MIN_LEN: usize = 32 + 1 + 4;
const CHECKSUM_LEN: usize = 32;

impl RefIndex {
    /// Encodes as: magic, generation (u64 LE), entry count (u64 LE), then
    /// per entry, sorted by token: the token (32 bytes), the form (1 byte),
    /// and references, size, stored size and zero-since as LEB128 varints
    /// (an entry is ~40 bytes, not 65: the index is rewritten by every
    /// backup, so its size is bytes sent to the NAS each time); then the
    /// BLAKE3 of all that.
    pub fn encode(&self) -> Vec<u8> {
        let mut tokens: Vec<&ContentToken> = self.entries.keys().collect();
        tokens.sort_unstable();
        let mut out = Vec::with_capacity(MAGIC.len() + 16 + tokens.len() * 44 + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
        for token in tokens {
            let e = &self.entries[token];
            out.extend_from_slice(token.as_bytes());
            out.push(e.form.code());
            for n in [e.refs, e.size, e.stored_size, e.zero_since] {
                put_varint(&mut out, n);
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<RefIndex, IndexDecodeError> {
        let body = check_frame(bytes)?;
        let mut r = Reader(body);
        let generation = r.u64()?;
        let count = r.u64()?;
        if (r.0.len() as u64) < count.saturating_mul(ENTRY_MIN_LEN as u64) {
            return Err(IndexDecodeError::Truncated);
        }
        let mut entries = HashMap::with_capacity(count as usize);
        for i in 0..count {
            let token = ContentToken::from_slice(r.take(32)?).ok_or(IndexDecodeError::Truncated)?;
            let form = StoredForm::from_code(r.take(1)?[0]).ok_or(IndexDecodeError::BadForm(i))?;
            let entry = IndexEntry {
                refs: r.varint()?,
                size: r.varint()?,
                stored_size: r.varint()?,
                form,
                zero_since: r.varint()?,
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
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Checks magic and checksum; returns the bytes between them.
fn check_frame(bytes: &[u8]) -> Result<&[u8], IndexDecodeError> {
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            IndexDecodeError::Truncated
        } else {
            IndexDecodeError::BadMagic
        });
    }
    if !bytes.starts_with(MAGIC) {
        return Err(IndexDecodeError::BadMagic);
    }
    if bytes.len() < MAGIC.len() + 16 + CHECKSUM_LEN {
        return Err(IndexDecodeError::Truncated);
    }
    let (framed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(framed).as_bytes() != sum {
        return Err(IndexDecodeError::BadChecksum);
    }
    Ok(&framed[MAGIC.len()..])
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

    fn sample() -> RefIndex {
        let mut idx = RefIndex {
            generation: 7,
            ..RefIndex::default()
        };
        for i in 0..50u64 {
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
                },
            );
        }
        idx
    }

    #[test]
    fn index_round_trip() {
        let idx = sample();
        assert_eq!(RefIndex::decode(&idx.encode()).unwrap(), idx);
        let empty = RefIndex::default();
        assert_eq!(RefIndex::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn corrupt_index_rejected() {
        let bytes = sample().encode();
        let mut flipped = bytes.clone();
        flipped[MAGIC.len() + 40] ^= 1;
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
        let mut body = MAGIC.to_vec();
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
                },
            );
        }
        assert_eq!(RefIndex::decode(&idx.encode()).unwrap(), idx);
        // An eleventh continuation byte is refused.
        let mut r = Reader(&[0xff; 11]);
        assert_eq!(r.varint(), Err(IndexDecodeError::BadNumber));
    }

    /// An index file around `body` with a valid frame and checksum.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
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
        ) {
            let full = sample().encode();
            let mut body = full[MAGIC.len()..full.len() - CHECKSUM_LEN].to_vec();
            for (at, byte) in flips {
                let i = at % body.len();
                body[i] = byte;
            }
            body.truncate(cut % (body.len() + 1));
            let _ = RefIndex::decode(&framed(&body));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = RefIndex::decode(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            let _ = RefIndex::decode(&framed);
        }
    }
}
