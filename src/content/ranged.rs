//! Random access to one content's bytes, for readers that seek (a mount
//! serving `less` or a video player): reads at any offset, with memory
//! bounded by a few buffers whatever the content's size.
//!
//! Plain content is read by range, a window at a time. Gzip content is a
//! series of independent members (1 MiB of input each, see `codec.rs`),
//! whose compressed lengths are nowhere recorded; so the reader decodes
//! forward and remembers where each member began, in the content and in
//! the object. A read behind the current position then restarts at the
//! nearest member start before it (at most one member to decode again),
//! and a read further ahead jumps to a known member start when one is
//! closer. Content written as one huge member (by other gzip tools) has
//! only its start to go back to: correct, only slower.
//!
//! Sealed content (an encrypted repository) is decrypted and decoded
//! forward from the start; a read behind the current position starts over
//! (correct, slower for players that seek back; memory stays bounded).

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::GzDecoder;

use super::refcount::StoredForm;
use crate::store::SharedStore;

/// Bytes fetched per range read of the object.
const WINDOW: usize = 256 * 1024;

/// A content opened for reads at any offset.
pub struct RangedContent {
    store: SharedStore,
    name: String,
    form: Form,
}

enum Form {
    /// A packed item, decoded whole (packed items are at most 512 KiB).
    Memory(Vec<u8>),
    /// The last window read: (offset, bytes).
    Plain(Option<(u64, Vec<u8>)>),
    Gzip(Box<Gzip>),
    Sealed(Box<Sealed>),
}

/// Forward decoding of a sealed object: the decoder and the content
/// offset of the next byte it yields.
struct Sealed {
    key: std::sync::Arc<crate::crypt::RepoKey>,
    at: Option<(Box<dyn Read + Send>, u64)>,
}

struct Gzip {
    /// (content offset, object offset) of every member start seen so far,
    /// increasing; the first is (0, 0).
    members: Vec<(u64, u64)>,
    /// The decoder and the content offset of the next byte it yields.
    at: Option<(Decoder, u64)>,
}

type Decoder = GzDecoder<Counted<BufReader<Ranges>>>;

impl RangedContent {
    pub(super) fn new(
        store: SharedStore,
        name: String,
        form: StoredForm,
        key: Option<std::sync::Arc<crate::crypt::RepoKey>>,
    ) -> RangedContent {
        let form = match (form, key) {
            (StoredForm::Sealed, Some(key)) => Form::Sealed(Box::new(Sealed { key, at: None })),
            (form, _) => match form {
                StoredForm::Plain | StoredForm::Sealed => Form::Plain(None),
                StoredForm::Gzip => Form::Gzip(Box::new(Gzip {
                    members: vec![(0, 0)],
                    at: None,
                })),
            },
        };
        RangedContent { store, name, form }
    }

    /// A packed item's content, already read and checked.
    pub(super) fn in_memory(store: SharedStore, data: Vec<u8>) -> RangedContent {
        RangedContent {
            store,
            name: String::new(),
            form: Form::Memory(data),
        }
    }

    /// Fills `buf` from content offset `offset`; fewer bytes only at the
    /// end of the content.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.form {
            Form::Memory(data) => {
                let from = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let n = (data.len() - from).min(buf.len());
                buf[..n].copy_from_slice(&data[from..from + n]);
                Ok(n)
            }
            Form::Plain(window) => plain_read(&self.store, &self.name, window, offset, buf),
            Form::Gzip(g) => g.read_at(&self.store, &self.name, offset, buf),
            Form::Sealed(s) => s.read_at(&self.store, &self.name, offset, buf),
        }
    }

    /// How many member starts of gzip content are known (for tests and
    /// statistics; 0 for plain content).
    pub fn known_members(&self) -> usize {
        match &self.form {
            Form::Memory(_) | Form::Plain(_) | Form::Sealed(_) => 0,
            Form::Gzip(g) => g.members.len(),
        }
    }
}

impl Sealed {
    fn read_at(
        &mut self,
        store: &SharedStore,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        if self.at.as_ref().is_none_or(|(_, pos)| *pos > offset) {
            let object = store.open(name).map_err(io::Error::other)?;
            let plain = crate::crypt::open_reader(&self.key, object, &store.place(name))
                .map_err(io::Error::other)?;
            let decoder: Box<dyn Read + Send> = Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(WINDOW, plain),
            ));
            self.at = Some((decoder, 0));
        }
        let (decoder, pos) = self.at.as_mut().expect("opened above");
        let skip = offset - *pos;
        let skipped = io::copy(&mut decoder.by_ref().take(skip), &mut io::sink())?;
        *pos += skipped;
        if skipped < skip {
            return Ok(0);
        }
        let mut done = 0;
        while done < buf.len() {
            let n = decoder.read(&mut buf[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        *pos += done as u64;
        Ok(done)
    }
}

fn plain_read(
    store: &SharedStore,
    name: &str,
    window: &mut Option<(u64, Vec<u8>)>,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let covered = matches!(window, Some((start, bytes))
            if *start <= at && at < *start + bytes.len() as u64);
        if !covered {
            let start = at - at % WINDOW as u64;
            let bytes = store
                .read_range(name, start, WINDOW as u64)
                .map_err(io::Error::other)?;
            *window = Some((start, bytes));
        }
        let (start, bytes) = window.as_ref().expect("a window was read");
        if at >= start + bytes.len() as u64 {
            break; // past the end of the content
        }
        let from = (at - start) as usize;
        let n = (bytes.len() - from).min(buf.len() - done);
        buf[done..done + n].copy_from_slice(&bytes[from..from + n]);
        done += n;
    }
    Ok(done)
}

impl Gzip {
    fn read_at(
        &mut self,
        store: &SharedStore,
        name: &str,
        offset: u64,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        self.position(store, name, offset)?;
        let mut done = 0;
        while done < buf.len() {
            let Some((dec, pos)) = &mut self.at else {
                break;
            };
            let n = dec.read(&mut buf[done..])?;
            if n > 0 {
                done += n;
                *pos += n as u64;
                continue;
            }
            if !self.next_member()? {
                break;
            }
        }
        Ok(done)
    }

    /// Puts the decoder at content offset `offset`.
    fn position(&mut self, store: &SharedStore, name: &str, offset: u64) -> io::Result<()> {
        let nearest = self.members[self.members.partition_point(|m| m.0 <= offset) - 1];
        let restart = match &self.at {
            None => true,
            Some((_, pos)) => *pos > offset || nearest.0 > *pos,
        };
        if restart {
            let source = Ranges {
                store: store.clone(),
                name: name.to_owned(),
                pos: nearest.1,
            };
            let counted = Counted {
                inner: BufReader::with_capacity(WINDOW, source),
                consumed: nearest.1,
            };
            self.at = Some((GzDecoder::new(counted), nearest.0));
        }
        let mut scratch = [0u8; 64 * 1024];
        loop {
            let Some((dec, pos)) = &mut self.at else {
                return Ok(());
            };
            if *pos >= offset {
                return Ok(());
            }
            let want = ((offset - *pos) as usize).min(scratch.len());
            let n = dec.read(&mut scratch[..want])?;
            if n > 0 {
                *pos += n as u64;
            } else if !self.next_member()? {
                return Ok(());
            }
        }
    }

    /// After a member ended: starts the next one, remembering where it
    /// begins. False at the end of the object.
    fn next_member(&mut self) -> io::Result<bool> {
        let Some((dec, pos)) = self.at.take() else {
            return Ok(false);
        };
        let mut inner = dec.into_inner();
        if inner.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let start = (pos, inner.consumed);
        if self.members.last().is_some_and(|m| m.0 < start.0) {
            self.members.push(start);
        }
        self.at = Some((GzDecoder::new(inner), pos));
        Ok(true)
    }
}

/// Counts the bytes taken from the reader: the object offset of the next
/// member once a decoder has finished one.
struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n)
    }
}

/// The object from an offset on, read by range.
struct Ranges {
    store: SharedStore,
    name: String,
    pos: u64,
}

impl Read for Ranges {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let bytes = self
            .store
            .read_range(&self.name, self.pos, buf.len() as u64)
            .map_err(io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.pos += bytes.len() as u64;
        Ok(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::codec::{CHUNK, gzip_member};
    use crate::store::{MemoryStore, Store};
    use std::sync::Arc;

    fn data(len: usize) -> Vec<u8> {
        // Compressible but not trivially: text with a counter.
        let mut out = Vec::with_capacity(len + 32);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("line {i} of some text\n").as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn stored(form: StoredForm, content: &[u8], member: usize) -> RangedContent {
        let store = Arc::new(MemoryStore::named("t"));
        let bytes = match form {
            StoredForm::Plain | StoredForm::Sealed => content.to_vec(),
            StoredForm::Gzip => content.chunks(member).flat_map(gzip_member).collect(),
        };
        let _ = store.put_new("obj", &bytes).unwrap();
        RangedContent::new(store, "obj".into(), form, None)
    }

    fn read(r: &mut RangedContent, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = r.read_at(offset, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn reads_anywhere_in_either_form() {
        let content = data(3 * CHUNK + 12_345);
        let len = content.len() as u64;
        for (form, member) in [
            (StoredForm::Plain, CHUNK),
            (StoredForm::Gzip, CHUNK),
            (StoredForm::Gzip, content.len()),
        ] {
            let mut r = stored(form, &content, member);
            // Forward, backward, across windows and members, past the end.
            let offsets = [
                0,
                5,
                WINDOW as u64 - 3,
                CHUNK as u64 - 10,
                2 * CHUNK as u64 + 7,
                100,
                len - 20,
                CHUNK as u64 + 1,
                len,
                len + 5,
                0,
            ];
            for off in offsets {
                for size in [1, 4096, 200_000] {
                    let start = (off as usize).min(content.len());
                    let end = (start + size).min(content.len());
                    assert_eq!(
                        read(&mut r, off, size),
                        &content[start..end],
                        "{form:?} member {member} at {off} for {size}"
                    );
                }
            }
        }
    }

    #[test]
    fn member_starts_are_learned_while_reading() {
        let content = data(4 * CHUNK + 1);
        let mut r = stored(StoredForm::Gzip, &content, CHUNK);
        assert_eq!(r.known_members(), 1);
        let mut buf = vec![0; 128 * 1024];
        let mut off = 0u64;
        loop {
            let n = r.read_at(off, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert_eq!(&buf[..n], &content[off as usize..off as usize + n]);
            off += n as u64;
        }
        assert_eq!(off, content.len() as u64);
        assert_eq!(r.known_members(), 5, "one start per 1 MiB member");
        // A jump back lands on a known member start.
        assert_eq!(
            read(&mut r, 3 * CHUNK as u64 + 3, 4),
            &content[3 * CHUNK + 3..][..4]
        );
    }

    #[test]
    fn damaged_gzip_is_an_error() {
        let content = data(2 * CHUNK);
        let store = Arc::new(MemoryStore::named("t"));
        let mut bytes: Vec<u8> = content.chunks(CHUNK).flat_map(gzip_member).collect();
        let mid = bytes.len() / 4;
        bytes[mid] ^= 0xff;
        bytes[mid + 1] ^= 0xff;
        let _ = store.put_new("obj", &bytes).unwrap();
        let mut r = RangedContent::new(store, "obj".into(), StoredForm::Gzip, None);
        let mut buf = vec![0; 2 * CHUNK];
        assert!(r.read_at(0, &mut buf).is_err());
    }
}
