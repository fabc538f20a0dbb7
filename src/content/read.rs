//! Reading content back, and releasing references to it (the seed's
//! `open_contents_read_only`, `copy_contents_to`, `release_contents`).

use std::io;
use std::path::Path;

use super::codec::ContentReader;
use super::layout::content_name;
use super::ranged::RangedContent;
use super::source::create_target;
use super::{ContentError, ContentToken, Repository, Result, StoredForm, hash_reader};
use crate::clock::now_secs;
use crate::store::ObjectReader;

impl StoredForm {
    fn other(self) -> StoredForm {
        match self {
            StoredForm::Gzip => StoredForm::Plain,
            StoredForm::Plain => StoredForm::Gzip,
        }
    }
}

impl Repository {
    /// A reader of the content's bytes.
    pub fn open_contents_read_only(&self, token: &ContentToken) -> Result<ContentReader> {
        // A token the index lacks (an index update lost to two machines
        // writing at once) is still found by its name: content objects are
        // named by what they hold.
        let form = self.indexed_form(token);
        match self.open_content(token, form)? {
            Some((object, form)) => Ok(ContentReader::new(object, form)),
            None => Err(ContentError::MissingContent {
                token: *token,
                place: self.store.place(&content_name(token, form)),
            }),
        }
    }

    /// The content opened for reads at any offset, for readers that seek
    /// (the mount): see [`RangedContent`]. Memory stays a few buffers
    /// whatever the content's size. Unlike a whole read, nothing here
    /// checks the token: `check --read-data` does.
    pub fn open_contents_ranged(&self, token: &ContentToken) -> Result<RangedContent> {
        let form = self.indexed_form(token);
        match self.find_content(token, form) {
            Some(found) => Ok(RangedContent::new(
                self.store.clone(),
                content_name(token, found),
                found,
            )),
            None => Err(ContentError::MissingContent {
                token: *token,
                place: self.store.place(&content_name(token, form)),
            }),
        }
    }

    /// The form the index records, else the repository's preference.
    pub(super) fn indexed_form(&self, token: &ContentToken) -> StoredForm {
        self.index()
            .entries
            .get(token)
            .map_or(self.prefer, |e| e.form)
    }

    /// Opens the content object in `form`, else in the other form (readers
    /// accept either at any time). None when neither exists.
    fn open_content(
        &self,
        token: &ContentToken,
        form: StoredForm,
    ) -> Result<Option<(ObjectReader, StoredForm)>> {
        for f in [form, form.other()] {
            match self.store.open(&content_name(token, f)) {
                Ok(object) => return Ok(Some((object, f))),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// The form in which the content object exists, if it does.
    pub(super) fn find_content(
        &self,
        token: &ContentToken,
        form: StoredForm,
    ) -> Option<StoredForm> {
        [form, form.other()].into_iter().find(|f| {
            self.store
                .stat(&content_name(token, *f))
                .is_ok_and(|m| m.is_some())
        })
    }

    /// True when the object `name` (in `form`) holds exactly the content
    /// of `token`.
    pub(super) fn object_holds(&self, name: &str, form: StoredForm, token: &ContentToken) -> bool {
        let Ok(object) = self.store.open(name) else {
            return false;
        };
        let mut reader = ContentReader::new(object, form);
        hash_reader(&mut reader).is_ok_and(|t| t == *token)
    }

    /// Writes the content to `path` (created or truncated); returns its size.
    pub fn copy_contents_to(&self, token: &ContentToken, path: &Path) -> Result<u64> {
        let mut reader = self.open_contents_read_only(token)?;
        let target_err = |err| ContentError::Target {
            path: path.to_owned(),
            err,
        };
        let mut out = create_target(path).map_err(target_err)?;
        io::copy(&mut reader, &mut out).map_err(target_err)
    }

    /// Drops one reference per listed token (a token listed twice loses
    /// two). Returns how many tokens were unknown (already counted as
    /// nothing; never an error, so a delete always completes).
    pub fn release_contents<'t>(&self, tokens: impl IntoIterator<Item = &'t ContentToken>) -> u64 {
        let now = now_secs().max(1) as u64;
        let mut unknown = 0;
        let mut index = self.index();
        for token in tokens {
            match index.entries.get_mut(token) {
                Some(e) if e.refs > 0 => {
                    e.refs -= 1;
                    if e.refs == 0 {
                        e.zero_since = now;
                    }
                }
                _ => unknown += 1,
            }
        }
        drop(index);
        self.mark_dirty();
        unknown
    }
}
