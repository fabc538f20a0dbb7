//! Streamed create-only writes. An object is buffered in memory; one that
//! stays under [`PART_SIZE`] goes up in a single `PUT` with
//! `If-None-Match: *`, a larger one as a multipart upload whose
//! completion carries `If-None-Match: *`. Before the first part goes up
//! the name is checked, so content the bucket has already is not sent
//! again. Dropped without commit, a multipart upload is aborted; one a
//! killed run left is a leftover (`check --repair` aborts it).

use std::io::{self, Write};

use super::client::{Request, S3Error};
use super::{Leftover, S3Store, StoreError, parse_time, xml};
use crate::store::Store as _;
use crate::store::{Committed, NewObject, Result};

/// Size of a multipart upload's parts (S3 wants at least 5 MiB but for
/// the last part). Each storing thread holds one part in memory: 16
/// threads, 128 MiB at most, and only while large files are written.
pub const PART_SIZE: usize = 8 << 20;

/// How a leftover upload is named: `<object> (unfinished upload <id>)`.
const UPLOAD_MARK: &str = " (unfinished upload ";

enum State {
    /// Everything so far is in the buffer.
    Buffering,
    /// A multipart upload is under way; `parts` holds each part's ETag.
    Uploading { id: String, parts: Vec<String> },
    /// The name was taken before the first part went up: the rest of the
    /// bytes are dropped and the commit reports `Existed`.
    Taken,
}

pub struct S3Object<'s> {
    store: &'s S3Store,
    name: String,
    key: String,
    buf: Vec<u8>,
    state: State,
    committed: bool,
}

impl<'s> S3Object<'s> {
    pub fn new(store: &'s S3Store, name: &str, key: String) -> S3Object<'s> {
        S3Object {
            store,
            name: name.to_owned(),
            key,
            buf: Vec::new(),
            state: State::Buffering,
            committed: false,
        }
    }

    fn io_err(&self, e: S3Error) -> io::Error {
        io::Error::other(self.store.err("write", &self.name, e))
    }

    /// Sends the buffer as the next part, starting the upload first.
    fn send_part(&mut self) -> io::Result<()> {
        let client = self
            .store
            .client("write", &self.name)
            .map_err(io::Error::other)?;
        if matches!(self.state, State::Buffering) {
            // Content named by its hash that is there already need not be
            // sent again (the commit would be refused anyway).
            if self
                .store
                .stat(&self.name)
                .map_err(io::Error::other)?
                .is_some()
            {
                self.state = State::Taken;
                self.buf = Vec::new();
                return Ok(());
            }
            let answer = client
                .send(
                    &Request::new("POST", Some(&self.key)).query("uploads", ""),
                    &[200],
                )
                .map_err(|e| self.io_err(e))?;
            let id = xml::field(&answer.text(), "UploadId")
                .ok_or_else(|| io::Error::other("the S3 server gave no upload id"))?;
            self.state = State::Uploading {
                id,
                parts: Vec::new(),
            };
        }
        let State::Uploading { id, parts } = &mut self.state else {
            self.buf.clear();
            return Ok(());
        };
        let number = parts.len() + 1;
        let answer = client
            .send(
                &Request::new("PUT", Some(&self.key))
                    .query("partNumber", number.to_string())
                    .query("uploadId", id.clone())
                    .body(&self.buf),
                &[200],
            )
            .map_err(|e| io::Error::other(self.store.err("write", &self.name, e)))?;
        let etag = answer
            .header("etag")
            .ok_or_else(|| io::Error::other("the S3 server gave no ETag for a part"))?
            .to_owned();
        parts.push(etag);
        self.buf.clear();
        Ok(())
    }

    fn complete(&mut self, id: &str, parts: &[String]) -> Result<Committed> {
        let client = self.store.client("write", &self.name)?;
        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, etag) in parts.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let req = Request::new("POST", Some(&self.key))
            .query("uploadId", id)
            .header("if-none-match", "*")
            .body(body.as_bytes());
        match client.send(&req, &[200]) {
            Ok(_) => Ok(Committed::Created),
            // Taken meanwhile, or (after a lost answer) completed by our
            // own earlier attempt: either way the name holds content of
            // this name, which for content is the same bytes. Callers that
            // need to know (put_content) check what is there.
            Err(e) if e.status == Some(412) => {
                let _ = abort(self.store, &self.name, id);
                Ok(Committed::Existed)
            }
            Err(e) if e.ambiguous && e.code == "NoSuchUpload" => Ok(Committed::Existed),
            Err(e) => Err(self.store.err("write", &self.name, e)),
        }
    }
}

impl Write for S3Object<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if matches!(self.state, State::Taken) {
            return Ok(data.len());
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PART_SIZE {
            self.send_part()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for S3Object<'_> {
    fn commit(mut self: Box<Self>) -> Result<Committed> {
        self.committed = true;
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Taken => Ok(Committed::Existed),
            State::Buffering => {
                let buf = std::mem::take(&mut self.buf);
                self.store.put_bytes(&self.name, &buf)
            }
            state @ State::Uploading { .. } => {
                self.state = state;
                if !self.buf.is_empty() {
                    self.send_part()
                        .map_err(|e| StoreError::new("write", self.store.place(&self.name), e))?;
                }
                let State::Uploading { id, parts } =
                    std::mem::replace(&mut self.state, State::Taken)
                else {
                    return Ok(Committed::Existed);
                };
                let done = self.complete(&id, &parts);
                if done.is_err() {
                    let _ = abort(self.store, &self.name, &id);
                }
                done
            }
        }
    }
}

impl Drop for S3Object<'_> {
    fn drop(&mut self) {
        if let State::Uploading { id, .. } = &self.state
            && !self.committed
        {
            let _ = abort(self.store, &self.name, id);
        }
    }
}

/// Aborts upload `id` of object `name`; one already gone is fine.
pub fn abort(store: &S3Store, name: &str, id: &str) -> Result<()> {
    let key = store.checked_key("abort the upload of", name)?;
    store
        .client("abort the upload of", name)?
        .send(
            &Request::new("DELETE", Some(&key)).query("uploadId", id),
            &[200, 204, 404],
        )
        .map(|_| ())
        .map_err(|e| store.err("abort the upload of", name, e))
}

/// The object name and upload id of a leftover upload's name.
pub fn parse_leftover(name: &str) -> Option<(&str, &str)> {
    let (object, rest) = name.split_once(UPLOAD_MARK)?;
    Some((object, rest.strip_suffix(')')?))
}

/// Unfinished multipart uploads below the store's root.
pub fn unfinished(store: &S3Store) -> Result<Vec<Leftover>> {
    let client = store.client("list uploads in", "")?;
    let root = store.at.root();
    let mut found = Vec::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut req = Request::new("GET", None)
            .query("uploads", "")
            .query("prefix", root.clone());
        if let Some((key, id)) = &markers {
            req = req
                .query("key-marker", key.clone())
                .query("upload-id-marker", id.clone());
        }
        let answer = match client.send(&req, &[200]) {
            Ok(a) => a,
            // Some servers (s3s-fs) cannot list uploads: there are then
            // none this can see (a lifecycle rule of the bucket can still
            // abort old ones).
            Err(e) if e.status == Some(501) => return Ok(found),
            Err(e) => return Err(store.err("list uploads in", "", e)),
        };
        let text = answer.text();
        for upload in xml::blocks(&text, "Upload") {
            let (Some(key), Some(id)) = (xml::field(upload, "Key"), xml::field(upload, "UploadId"))
            else {
                continue;
            };
            let Some(name) = key.strip_prefix(&root) else {
                continue;
            };
            found.push(Leftover {
                name: format!("{name}{UPLOAD_MARK}{id})"),
                modified: xml::field(upload, "Initiated")
                    .and_then(|t| parse_time(&t))
                    .unwrap_or(std::time::UNIX_EPOCH),
                owner_dead: false,
            });
        }
        let truncated = xml::field(&text, "IsTruncated").is_some_and(|t| t == "true");
        match (
            xml::field(&text, "NextKeyMarker"),
            xml::field(&text, "NextUploadIdMarker"),
        ) {
            (Some(k), Some(i)) if truncated => markers = Some((k, i)),
            _ => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names_round_trip() {
        let name = format!("content/ab/abc.gz{UPLOAD_MARK}XyZ-1)");
        assert_eq!(parse_leftover(&name), Some(("content/ab/abc.gz", "XyZ-1")));
        assert_eq!(parse_leftover("content/ab/abc.gz"), None);
    }
}
