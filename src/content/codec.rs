//! Content encodings: compressing content as it is stored and reading it
//! back, whichever form it has.
//!
//! A content file is either the plain bytes or a gzip file of one or more
//! independent members (1 MiB of input each), so `zcat` reads it, large
//! files compress on all cores and memory stays bounded.

use std::cell::RefCell;
use std::io::{self, BufReader, Read, Write};

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use super::refcount::StoredForm;
use super::{ContentToken, TokenHasher};
use crate::crypt::RepoKey;
use crate::store::{NewObject, ObjectReader};

/// Bytes of input per gzip member and per read.
pub const CHUNK: usize = 1 << 20;
/// Files up to this size are read into memory once (hashed, then
/// compressed only if new); larger ones are hashed in a first pass and
/// streamed in a second. Half a chunk: with many storing threads, their
/// buffers are most of a backup's memory (measured: peak RSS of a first
/// backup of the full benchmark corpus 92 MB at 1 MiB, 72 MB at 512 KiB).
pub const SMALL_FILE: usize = CHUNK / 2;
/// Chunks compressed at once for a large file: enough for two cores, and a
/// bound on memory per storing thread (2 × this × CHUNK).
const CHUNKS_PER_BATCH: usize = 2;
/// libdeflate level. Measured on the benchmark corpus (one core, files
/// compressed one by one): level 4 compresses at 201 MB/s to 35.0%, level 5
/// at 172 MB/s to 34.5%, level 6 at 146 MB/s to 34.4%, level 9 at 62 MB/s
/// to 34.1%. Deflate is 70% of a first backup's CPU; on the full corpus,
/// back to back, level 6 took 10.3 s and level 4 7.8 s, and the repository
/// stays smaller than restic's (529.3 MB against 530.8 MB).
const GZIP_LEVEL: i32 = 4;

thread_local! {
    static COMPRESSOR: RefCell<libdeflater::Compressor> = RefCell::new(
        libdeflater::Compressor::new(
            libdeflater::CompressionLvl::new(GZIP_LEVEL).expect("valid gzip level"),
        ),
    );
}

/// One gzip member holding `data`.
pub fn gzip_member(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| gzip_with(&mut c.borrow_mut(), data))
}

/// One gzip member of `data`, made by `c`.
fn gzip_with(c: &mut libdeflater::Compressor, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .expect("output buffer sized by gzip_compress_bound");
    out.truncate(n);
    out
}

thread_local! {
    /// Level 0: stored blocks only, for sealed content that does not
    /// compress (still gzip, so `age -d … | zcat` reads every item alike).
    static STORER: RefCell<libdeflater::Compressor> = RefCell::new(
        libdeflater::Compressor::new(libdeflater::CompressionLvl::fastest()),
    );
}

/// One gzip member holding `data` in stored (uncompressed) blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    STORER.with(|c| gzip_with(&mut c.borrow_mut(), data))
}

/// The gzip stream sealed for `data`: compressed when that is worth it,
/// else in stored blocks (media and archives cost no compression time).
fn gzip_for_sealing(data: &[u8]) -> Vec<u8> {
    if looks_compressible(data) {
        let gz = gzip_member(data);
        if worth_compressing(data.len(), gz.len()) {
            return gz;
        }
    }
    gzip_stored(data)
}

/// The bytes of a sealed item: an age file, encrypted to the repository's
/// key, of a gzip stream of `data`.
pub fn seal_small(data: &[u8], key: &RepoKey) -> Vec<u8> {
    key.seal(&gzip_for_sealing(data))
}

/// `data` as one raw deflate stream (a zip entry's data).
pub fn deflate_raw(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c
            .deflate_compress(data, &mut out)
            .expect("output buffer sized by deflate_compress_bound");
        out.truncate(n);
        out
    })
}

/// Compression is kept only when it saves more than about 3%: already
/// compressed media and archives are stored as they are, which reads
/// faster and costs no space.
pub fn worth_compressing(plain_len: usize, compressed_len: usize) -> bool {
    compressed_len + plain_len / 32 < plain_len
}

/// The stored form for `data` given the repository's preference, and the
/// bytes to write.
pub fn encode_small(data: &[u8], prefer: StoredForm) -> (StoredForm, Vec<u8>) {
    if prefer == StoredForm::Gzip && looks_compressible(data) {
        let gz = gzip_member(data);
        if worth_compressing(data.len(), gz.len()) {
            return (StoredForm::Gzip, gz);
        }
    }
    (StoredForm::Plain, data.to_vec())
}

/// The stored form for `data` in a pack given the repository's
/// preference, and the bytes to write: raw deflate, or the data as they are.
pub fn encode_raw(data: &[u8], prefer: StoredForm) -> (StoredForm, Vec<u8>) {
    if prefer == StoredForm::Gzip && looks_compressible(data) {
        let deflated = deflate_raw(data);
        if worth_compressing(data.len(), deflated.len()) {
            return (StoredForm::Gzip, deflated);
        }
    }
    (StoredForm::Plain, data.to_vec())
}

/// Bytes compressed as a trial before compressing a whole file.
const TRIAL: usize = 64 * 1024;

/// A quick trial on the first [`TRIAL`] bytes of larger data: media and
/// archives (already compressed) are not compressed in full only to be
/// stored plain after all.
fn looks_compressible(data: &[u8]) -> bool {
    data.len() < 2 * TRIAL || worth_compressing(TRIAL, gzip_member(&data[..TRIAL]).len())
}

/// Reads up to `buf.len()` bytes, fewer only at end of file.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hashes a whole stream without keeping it; returns the token and length.
pub fn hash_stream(reader: &mut impl Read, tokens: TokenHasher) -> io::Result<(ContentToken, u64)> {
    let mut hasher = tokens.hasher();
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_full(reader, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((ContentToken::from_hasher(&hasher), total))
}

/// Result of streaming content into a new object.
pub struct Written<'s> {
    pub token: ContentToken,
    pub size: u64,
    pub form: StoredForm,
    pub stored_size: u64,
    /// Not visible until committed; the caller checks the token first.
    pub object: Box<dyn NewObject + 's>,
}

/// How content is written: the form the repository prefers, how its
/// tokens are made, and its key when it is encrypted.
#[derive(Clone, Copy)]
pub struct Encoding<'k> {
    pub prefer: StoredForm,
    pub tokens: TokenHasher,
    pub seal: Option<&'k RepoKey>,
}

/// Where streamed content goes: straight into the object, or through age
/// (counting what reaches the object).
enum Out<'s> {
    Raw(Box<dyn NewObject + 's>),
    Sealed(crate::crypt::SealedWriter<Counting<Box<dyn NewObject + 's>>>),
}

impl Out<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Out::Raw(o) => o.write_all(bytes),
            Out::Sealed(o) => o.write_all(bytes),
        }
    }
}

/// Counts the bytes that pass.
pub struct Counting<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams `reader` into a new object, hashing as it goes and compressing
/// in parallel batches of independent gzip members (sealed content: then
/// encrypted as one age file). The object is created by `create` once the
/// first batch has decided the stored form (its name depends on it).
pub fn write_stream<'s>(
    reader: &mut impl Read,
    encoding: Encoding<'_>,
    create: impl FnOnce(StoredForm) -> io::Result<Box<dyn NewObject + 's>>,
) -> io::Result<Written<'s>> {
    let prefer = encoding.prefer;
    let sealed = prefer == StoredForm::Sealed;
    let mut create = Some(create);
    let mut object: Option<Out<'s>> = None;
    let mut hasher = encoding.tokens.hasher();
    let mut form = None;
    // Sealed content that does not compress: gzip in stored blocks.
    let mut stored_blocks: Option<bool> = None;
    let (mut size, mut stored_size) = (0u64, 0u64);
    loop {
        let batch = read_batch(reader)?;
        if batch.is_empty() && form.is_some() {
            break;
        }
        for chunk in &batch {
            hasher.update(chunk);
            size += chunk.len() as u64;
        }
        let compress = match prefer {
            StoredForm::Gzip => form != Some(StoredForm::Plain),
            StoredForm::Sealed => stored_blocks != Some(true),
            StoredForm::Plain => false,
        };
        let mut encoded: Vec<Vec<u8>> = if compress {
            batch.par_iter().map(|c| gzip_member(c)).collect()
        } else {
            Vec::new()
        };
        // The first batch decides for the whole file: media and archives
        // that do not shrink are stored plain (sealed: in stored gzip
        // blocks, so every sealed item is a gzip stream).
        let worth = compress
            && !batch.is_empty()
            && worth_compressing(batch_len(&batch), batch_len(&encoded));
        let chosen = *form.get_or_insert(match (sealed, worth) {
            (true, _) => StoredForm::Sealed,
            (false, true) => StoredForm::Gzip,
            (false, false) => StoredForm::Plain,
        });
        if sealed && stored_blocks.is_none() {
            stored_blocks = Some(!worth);
        }
        if sealed && stored_blocks == Some(true) {
            encoded = batch.iter().map(|c| gzip_stored(c)).collect();
        }
        let out = match &mut object {
            Some(o) => o,
            None => {
                let made = (create.take().expect("created once"))(chosen)?;
                let out = match encoding.seal {
                    Some(key) if sealed => Out::Sealed(key.seal_to(Counting {
                        inner: made,
                        count: 0,
                    })?),
                    _ => Out::Raw(made),
                };
                object.insert(out)
            }
        };
        let members = if chosen == StoredForm::Plain {
            &batch
        } else {
            &encoded
        };
        if sealed && batch.is_empty() && stored_size == 0 && members.is_empty() {
            // Empty content is still a gzip stream (of nothing).
            out.write_all(&gzip_stored(&[]))?;
        }
        for m in members {
            out.write_all(m)?;
            stored_size += m.len() as u64;
        }
        if batch.is_empty() {
            break;
        }
    }
    let (object, stored_size) = match object.expect("the first batch creates the object") {
        Out::Raw(o) => (o, stored_size),
        Out::Sealed(w) => {
            let counted = w.finish()?;
            (counted.inner, counted.count)
        }
    };
    Ok(Written {
        token: ContentToken::from_hasher(&hasher),
        size,
        form: form.unwrap_or(StoredForm::Plain),
        stored_size,
        object,
    })
}

fn batch_len(members: &[Vec<u8>]) -> usize {
    members.iter().map(Vec::len).sum()
}

fn read_batch(reader: &mut impl Read) -> io::Result<Vec<Vec<u8>>> {
    let mut batch = Vec::with_capacity(CHUNKS_PER_BATCH);
    for _ in 0..CHUNKS_PER_BATCH {
        let mut buf = vec![0; CHUNK];
        let n = read_full(reader, &mut buf)?;
        buf.truncate(n);
        let last = n < CHUNK;
        if n > 0 {
            batch.push(buf);
        }
        if last {
            break;
        }
    }
    Ok(batch)
}

/// A reader that remembers whether it failed, so a caller can tell a
/// source read error from a repository write error.
pub struct TrackedReader<R> {
    inner: R,
    failed: bool,
}

impl<R: Read> TrackedReader<R> {
    pub fn new(inner: R) -> Self {
        TrackedReader {
            inner,
            failed: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl<R: Read> Read for TrackedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.failed |= r.is_err();
        r
    }
}

/// A reader of a content object's bytes, whichever form it is stored in.
pub enum ContentReader {
    Plain(BufReader<ObjectReader>),
    Gzip(Box<MultiGzDecoder<BufReader<ObjectReader>>>),
    /// A packed item, decoded whole (packed items are small).
    Memory(io::Cursor<Vec<u8>>),
    /// Sealed content: decrypted, then gunzipped.
    Sealed(Box<MultiGzDecoder<BufReader<ObjectReader>>>),
}

impl ContentReader {
    /// `key` is the repository's key when it is encrypted (sealed objects
    /// cannot be read without it); `place` names the object in errors.
    pub fn new(
        object: ObjectReader,
        form: StoredForm,
        key: Option<&RepoKey>,
        place: &str,
    ) -> Result<ContentReader, crate::crypt::CryptError> {
        let buffered = |o| BufReader::with_capacity(256 * 1024, o);
        Ok(match (form, key) {
            (StoredForm::Plain, _) => ContentReader::Plain(buffered(object)),
            (StoredForm::Gzip, _) => {
                ContentReader::Gzip(Box::new(MultiGzDecoder::new(buffered(object))))
            }
            (StoredForm::Sealed, Some(key)) => {
                let plain = crate::crypt::open_reader(key, object, place)?;
                ContentReader::Sealed(Box::new(MultiGzDecoder::new(buffered(plain))))
            }
            (StoredForm::Sealed, None) => {
                return Err(crate::crypt::CryptError::Undecryptable {
                    place: place.to_owned(),
                    reason: "the repository is not encrypted, so it has no key for it".to_owned(),
                });
            }
        })
    }
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ContentReader::Plain(r) => r.read(buf),
            ContentReader::Gzip(r) => r.read(buf),
            ContentReader::Memory(r) => r.read(buf),
            ContentReader::Sealed(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn small_compressible_is_gzipped() {
        let data = b"hello hello hello hello hello hello hello hello".repeat(20);
        let (form, bytes) = encode_small(&data, StoredForm::Gzip);
        assert_eq!(form, StoredForm::Gzip);
        assert_eq!(gunzip(&bytes), data);
    }

    #[test]
    fn incompressible_is_stored_plain() {
        let mut data = vec![0u8; 64 * 1024];
        let mut x = 0x1234_5678u32;
        for b in &mut data {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let (form, bytes) = encode_small(&data, StoredForm::Gzip);
        assert_eq!(form, StoredForm::Plain);
        assert_eq!(bytes, data);
        assert_eq!(encode_small(b"", StoredForm::Gzip).0, StoredForm::Plain);
    }

    #[test]
    fn stream_writes_multi_member_gzip() {
        let store = crate::store::MemoryStore::named("t");
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let plain = Encoding {
            prefer: StoredForm::Gzip,
            tokens: TokenHasher::Plain,
            seal: None,
        };
        let w = write_stream(&mut &data[..], plain, |_| {
            store.create("out.gz").map_err(std::io::Error::other)
        })
        .unwrap();
        assert_eq!(w.token, ContentToken::of(&data));
        assert_eq!(w.size, data.len() as u64);
        assert_eq!(w.form, StoredForm::Gzip);
        assert!(store.stat("out.gz").unwrap().is_none());
        let _ = w.object.commit().unwrap();
        let stored = store.read("out.gz").unwrap();
        assert_eq!(stored.len() as u64, w.stored_size);
        assert_eq!(gunzip(&stored), data);
    }
}
