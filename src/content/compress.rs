//! `compress [-U] -R`: rewriting every content object into the other
//! form. Reads work the same before, during and after.

use super::codec::{self, ContentReader};
use super::layout::content_name;
use super::{ContentError, ContentToken, IndexEntry, Repository, Result, StoredForm};

/// Conversions between index saves.
const COMPRESS_SAVE_EVERY: usize = 2000;

/// What a `compress` run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompressReport {
    pub converted: u64,
    pub kept_plain: u64,
    pub stored_before: u64,
    pub stored_after: u64,
}

impl Repository {
    /// Rewrites every content object into `target` form (gzip keeps
    /// content that does not shrink plain). Each conversion is checked
    /// against its token before the old object is removed, and old objects
    /// are removed only after an index naming the new ones is durable.
    pub fn compress_all(&self, target: StoredForm) -> Result<CompressReport> {
        let todo: Vec<(ContentToken, IndexEntry)> = self
            .items()
            .into_iter()
            .filter(|(_, e)| e.form != target)
            .collect();
        let mut report = CompressReport::default();
        let mut stale = Vec::new();
        for (i, (token, entry)) in todo.iter().enumerate() {
            if let Some(old) = self.convert_one(token, entry, target, &mut report)? {
                stale.push(old);
            }
            if (i + 1) % COMPRESS_SAVE_EVERY == 0 {
                self.commit_and_remove(&mut stale)?;
            }
        }
        self.commit_and_remove(&mut stale)?;
        Ok(report)
    }

    fn commit_and_remove(&self, stale: &mut Vec<String>) -> Result<()> {
        self.commit()?;
        for name in stale.drain(..) {
            self.store.delete(&name)?;
        }
        Ok(())
    }

    /// Converts one content object; returns the old object's name once the
    /// new one is written, or None when it stays as it is.
    fn convert_one(
        &self,
        token: &ContentToken,
        entry: &IndexEntry,
        target: StoredForm,
        report: &mut CompressReport,
    ) -> Result<Option<String>> {
        let Some(old_form) = self.find_content(token, entry.form) else {
            return Err(ContentError::MissingContent {
                token: *token,
                place: self.store.place(&content_name(token, entry.form)),
            });
        };
        let old_name = content_name(token, old_form);
        let store = self.store.as_ref();
        let mut reader = ContentReader::new(store.open(&old_name)?, old_form);
        let written = codec::write_stream(&mut reader, target, |form| {
            store
                .create(&content_name(token, form))
                .map_err(std::io::Error::other)
        });
        let written = match written {
            Ok(w) => w,
            Err(e) => {
                return Err(match e.downcast::<crate::store::StoreError>() {
                    Ok(store_err) => store_err.into(),
                    // A decoding error: the stored bytes are not what they
                    // claim to be.
                    Err(_) => ContentError::DamagedContent {
                        place: store.place(&old_name),
                    },
                });
            }
        };
        if written.token != *token {
            return Err(ContentError::DamagedContent {
                place: store.place(&old_name),
            });
        }
        if written.form == old_form {
            report.kept_plain += 1;
            return Ok(None);
        }
        let new_form = written.form;
        let stored_after = written.stored_size;
        // An object already in the new form (a compress interrupted after
        // writing it) is kept when it is whole; one a crash tore before it
        // was synced is written again, before the old object goes.
        let new_name = content_name(token, new_form);
        if written.object.commit()? == crate::store::Committed::Existed
            && !self.object_holds(&new_name, new_form, token)
        {
            store.delete(&new_name)?;
            return self.convert_one(token, entry, target, report);
        }
        report.converted += 1;
        report.stored_before += entry.stored_size;
        report.stored_after += stored_after;
        if let Some(e) = self.index().entries.get_mut(token) {
            e.form = new_form;
            e.stored_size = stored_after;
        }
        self.mark_dirty();
        Ok(Some(old_name))
    }
}
