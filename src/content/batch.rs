//! Reading many items in the order they lie in the repository, for a
//! restore: each pack once, front to back, in range reads of a few MiB
//! that cover neighbouring entries, and loose files one by one. On a NAS
//! that turns thousands of small reads into a few large ones.

use std::io;
use std::sync::OnceLock;

use super::codec::ContentReader;
use super::pack::{self, PackName};
use super::{ContentToken, IndexEntry, Place, Repository, Result};

/// Neighbouring packed items share one range read while the bytes between
/// them are fewer than this (reading a gap costs less than a round trip)…
const MAX_GAP: u64 = 256 << 10;
/// …and the read stays below this, so memory per reading thread is bounded.
const MAX_SPAN: u64 = 8 << 20;

/// Items read together: the packed items of one range of one pack, or one
/// loose item.
pub struct ReadBatch {
    span: Option<Span>,
    /// Positions in the caller's list, with their tokens.
    members: Vec<(usize, ContentToken)>,
}

struct Span {
    pack: PackName,
    start: u64,
    end: u64,
}

impl ReadBatch {
    /// The positions (in the list given to [`Repository::plan_reads`]) of
    /// the items in this batch, with their tokens.
    pub fn members(&self) -> &[(usize, ContentToken)] {
        &self.members
    }
}

/// A batch being read: the pack range is fetched once, on the first item
/// asked for.
pub struct BatchData<'a> {
    repo: &'a Repository,
    batch: ReadBatch,
    bytes: OnceLock<Option<Vec<u8>>>,
}

impl Repository {
    /// Orders `tokens` for reading: loose items first (large files, which
    /// keep the threads busy longest), then packed items by pack and
    /// offset, neighbours grouped into one range read.
    pub fn plan_reads(&self, tokens: &[ContentToken]) -> Vec<ReadBatch> {
        let index = self.index();
        let mut loose = Vec::new();
        let mut packed: Vec<(PackName, u64, u64, usize, ContentToken)> = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            let entry = index.entries.get(token);
            match entry.map(|e| (e.place, e.stored_size)) {
                Some((Place::Packed { pack, offset }, len)) => match index.packs.get(&pack) {
                    Some(info) => packed.push((info.name.clone(), offset, offset + len, i, *token)),
                    None => loose.push((i, *token)),
                },
                _ => loose.push((i, *token)),
            }
        }
        drop(index);
        packed.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut batches: Vec<ReadBatch> = loose
            .into_iter()
            .map(|member| ReadBatch {
                span: None,
                members: vec![member],
            })
            .collect();
        for (pack, start, end, i, token) in packed {
            if let Some(ReadBatch {
                span: Some(span),
                members,
            }) = batches.last_mut()
                && span.pack == pack
                && start <= span.end + MAX_GAP
                && end.max(span.end) - span.start <= MAX_SPAN
            {
                span.end = span.end.max(end);
                members.push((i, token));
                continue;
            }
            batches.push(ReadBatch {
                span: Some(Span { pack, start, end }),
                members: vec![(i, token)],
            });
        }
        batches
    }

    /// Starts reading a batch (nothing is read until an item is opened).
    pub fn read_batch(&self, batch: ReadBatch) -> BatchData<'_> {
        BatchData {
            repo: self,
            batch,
            bytes: OnceLock::new(),
        }
    }
}

impl BatchData<'_> {
    /// The batch's members (see [`ReadBatch::members`]).
    pub fn members(&self) -> &[(usize, ContentToken)] {
        self.batch.members()
    }

    /// A reader of one member's content, from the batch's range when it
    /// holds the item intact, else the way a single read goes (which finds
    /// an item another machine moved, and names what is damaged).
    pub fn open(&self, token: &ContentToken) -> Result<ContentReader> {
        if let Some(data) = self.read_from_span(token) {
            return Ok(ContentReader::Memory(io::Cursor::new(data)));
        }
        self.repo.open_contents_read_only(token)
    }

    fn read_from_span(&self, token: &ContentToken) -> Option<Vec<u8>> {
        let span = self.batch.span.as_ref()?;
        let entry: IndexEntry = *self.repo.index().entries.get(token)?;
        let Place::Packed { offset, .. } = entry.place else {
            return None;
        };
        let bytes = self
            .bytes
            .get_or_init(|| {
                self.repo
                    .store
                    .read_range(&span.pack.object_name(), span.start, span.end - span.start)
                    .ok()
            })
            .as_ref()?;
        let from = usize::try_from(offset.checked_sub(span.start)?).ok()?;
        let to = from.checked_add(usize::try_from(entry.stored_size).ok()?)?;
        let data = pack::decode_item(
            bytes.get(from..to)?,
            entry.form,
            entry.size,
            self.repo.key.as_deref(),
        )
        .ok()?;
        (self.repo.tokens.of(&data) == *token).then_some(data)
    }
}
