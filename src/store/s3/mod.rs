//! A store in an S3 bucket (AWS S3 or any S3-compatible server: MinIO,
//! Ceph, Garage, Backblaze B2, Wasabi), under a key prefix. Objects are
//! named `<prefix>/<name>`, so the layout is the same as in a directory
//! and any S3 client can fetch an object by hand.
//!
//! How the storage interface maps onto S3 (docs/design.md, section 2):
//! - create-only writes are `PUT` (or `CompleteMultipartUpload`, for
//!   objects over [`upload::PART_SIZE`]) with `If-None-Match: *`: the
//!   server refuses with 412 when the name is taken, so nothing is ever
//!   replaced, even between machines (`new_repo` checks that the server
//!   honours it);
//! - an object is durable once S3 acknowledged it: the barrier does nothing;
//! - `rename_new` is a create-only copy followed by a delete, which S3
//!   offers no atomic way to do (see [`S3Store::rename_new`]);
//! - `touch` writes a small marker object beside the object (see
//!   [`S3Store::touch`]): S3 cannot change an object's time without
//!   rewriting it;
//! - leftovers are unfinished multipart uploads, temp-named objects and
//!   markers whose object is gone.

mod client;
mod read;
mod settings;
mod sign;
mod upload;
mod xml;

pub use client::requests_sent;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::SystemTime;

use client::{Client, Request, S3Error};
use settings::Settings;

use super::{
    Committed, Leftover, Location, NewObject, ObjectMeta, ObjectReader, Result, Store, StoreError,
    check_name,
};
use crate::fsio;

/// `s3://BUCKET/PREFIX`: a bucket and a key prefix (without leading or
/// trailing `/`; empty for the whole bucket).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`; empty components are dropped.
    pub fn parse(url: &str) -> std::result::Result<S3Location, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let bucket = parts
            .next()
            .ok_or_else(|| format!("`{url}` names no bucket (use s3://BUCKET/PREFIX)"))?;
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(format!(
                "`{bucket}` is not a valid bucket name (3 to 63 lowercase letters, digits, `.` or `-`)"
            ));
        }
        let parts: Vec<&str> = parts.collect();
        if parts.iter().any(|p| *p == "." || *p == "..") {
            return Err(format!("`{url}` has `.` or `..` in its key prefix"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: parts.join("/"),
        })
    }

    /// The location of `rel` (a `/`-separated name) below this one.
    pub fn join(&self, rel: &str) -> S3Location {
        let mut parts: Vec<&str> = self.prefix.split('/').filter(|p| !p.is_empty()).collect();
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                parts.pop();
            } else {
                parts.push(part);
            }
        }
        S3Location {
            bucket: self.bucket.clone(),
            prefix: parts.join("/"),
        }
    }

    /// The key of object `name` in this location.
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The key prefix every object of this location has.
    fn root(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Marks a touch marker's name: `<name>~touch~<hex>`. `~` never occurs in
/// the names epygibus gives objects (they use `[0-9a-z._-]`), so a marker
/// cannot be taken for an object.
const TOUCH_MARK: &str = "~touch~";

/// The object a touch marker stands for, if `name` is one.
fn touched_object(name: &str) -> Option<&str> {
    name.find(TOUCH_MARK).map(|i| &name[..i])
}

fn is_temp(name: &str) -> bool {
    let leaf = name.rsplit('/').next().unwrap_or(name);
    fsio::is_temp_name(leaf.as_bytes())
}

/// A store under an S3 location.
pub struct S3Store {
    location: Location,
    at: S3Location,
    /// Settings come from the environment; when they are unusable (no
    /// credentials) every operation fails with why, so opening a store
    /// never fails and a store that is not used needs no credentials.
    client: std::result::Result<Client, String>,
    /// The touch markers this process made, per object: the previous one is
    /// removed when a newer one exists, and with the object.
    markers: Mutex<HashMap<String, String>>,
}

impl S3Store {
    /// The store at `at`, reaching the server as the environment says
    /// (see [`settings`]).
    pub fn new(at: &S3Location) -> S3Store {
        S3Store::with(at, Settings::from_env())
    }

    /// The store at `at`, with the variables of `vars` in place of the
    /// environment (tests).
    pub fn with_vars(at: &S3Location, vars: &HashMap<String, String>) -> S3Store {
        S3Store::with(at, Settings::from_vars(&|k| vars.get(k).cloned()))
    }

    fn with(at: &S3Location, settings: std::result::Result<Settings, String>) -> S3Store {
        S3Store {
            location: Location::S3(at.clone()),
            at: at.clone(),
            client: settings.map(|s| Client::new(s, &at.bucket)),
            markers: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, action: &'static str, name: &str) -> Result<&Client> {
        self.client
            .as_ref()
            .map_err(|why| StoreError::new(action, self.place(name), io::Error::other(why.clone())))
    }

    fn err(&self, action: &'static str, name: &str, e: S3Error) -> StoreError {
        StoreError::new(action, self.place(name), e.into_io(&self.at.bucket))
    }

    fn checked_key(&self, action: &'static str, name: &str) -> Result<String> {
        check_name(name).map_err(|e| StoreError::new(action, self.place(name), e))?;
        Ok(self.at.key(name))
    }

    /// Every key below the root starting with `prefix`, with size and
    /// time, page by page (ListObjectsV2 returns at most 1000 at a time).
    fn list_raw(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let client = self.client("list", prefix)?;
        let root = self.at.root();
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = Request::new("GET", None)
                .query("list-type", "2")
                .query("prefix", format!("{root}{prefix}"));
            if let Some(t) = &token {
                req = req.query("continuation-token", t.clone());
            }
            let answer = client
                .send(&req, &[200])
                .map_err(|e| self.err("list", prefix, e))?;
            let text = answer.text();
            for item in xml::blocks(&text, "Contents") {
                let Some(key) = xml::field(item, "Key") else {
                    continue;
                };
                let Some(name) = key.strip_prefix(&root) else {
                    continue;
                };
                found.push(ObjectMeta {
                    name: name.to_owned(),
                    size: xml::field(item, "Size")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                    modified: xml::field(item, "LastModified")
                        .and_then(|t| parse_time(&t))
                        .unwrap_or(std::time::UNIX_EPOCH),
                });
            }
            let truncated = xml::field(&text, "IsTruncated").is_some_and(|t| t == "true");
            token = xml::field(&text, "NextContinuationToken");
            if !truncated || token.is_none() {
                return Ok(found);
            }
        }
    }

    /// Objects as the interface lists them: no leftovers, and each object's
    /// time raised to its newest touch marker's.
    fn fold_markers(raw: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
        let mut touched: HashMap<String, SystemTime> = HashMap::new();
        let mut objects = Vec::with_capacity(raw.len());
        for meta in raw {
            if let Some(object) = touched_object(&meta.name) {
                let t = touched.entry(object.to_owned()).or_insert(meta.modified);
                *t = (*t).max(meta.modified);
            } else if !is_temp(&meta.name) {
                objects.push(meta);
            }
        }
        for meta in &mut objects {
            if let Some(t) = touched.get(&meta.name) {
                meta.modified = meta.modified.max(*t);
            }
        }
        objects
    }

    fn delete_key(&self, name: &str) -> Result<()> {
        let key = self.checked_key("remove", name)?;
        self.client("remove", name)?
            .send(&Request::new("DELETE", Some(&key)), &[200, 204, 404])
            .map(|_| ())
            .map_err(|e| self.err("remove", name, e))
    }

    /// Writes `bytes` create-only in one PUT. When an earlier attempt's
    /// answer was lost and the retry finds the name taken, the object is
    /// read back: holding exactly these bytes, it is ours.
    fn put_bytes(&self, name: &str, bytes: &[u8]) -> Result<Committed> {
        let key = self.checked_key("write", name)?;
        let client = self.client("write", name)?;
        let req = Request::new("PUT", Some(&key))
            .header("if-none-match", "*")
            .body(bytes);
        match client.send(&req, &[200]) {
            Ok(_) => Ok(Committed::Created),
            Err(e) if e.status == Some(412) && e.ambiguous => match self.read(name) {
                Ok(stored) if stored == bytes => Ok(Committed::Created),
                _ => Ok(Committed::Existed),
            },
            Err(e) if e.status == Some(412) => Ok(Committed::Existed),
            Err(e) => Err(self.err("write", name, e)),
        }
    }

    /// Whether the server honours `If-None-Match: *` (refuses to write an
    /// existing name). Writes and removes a probe object.
    pub fn conditional_writes_honoured(&self) -> Result<bool> {
        let name = format!("probe.{}", fsio::temp_name().trim_start_matches("tmp."));
        let first = self.put_bytes(&name, b"first")?;
        let second = self.put_bytes(&name, b"second")?;
        let kept = self.read(&name)?;
        self.delete_key(&name)?;
        Ok(first == Committed::Created && second == Committed::Existed && kept == b"first")
    }
}

/// S3's times: `2026-11-27T08:42:00.000Z`.
fn parse_time(text: &str) -> Option<SystemTime> {
    let t: jiff::Timestamp = text.parse().ok()?;
    let nanos = t.as_nanosecond();
    if nanos < 0 {
        return None;
    }
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64))
}

impl Store for S3Store {
    fn location(&self) -> &Location {
        &self.location
    }

    fn place(&self, name: &str) -> String {
        format!("{}/{name}", self.at)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(S3Store::fold_markers(self.list_raw(prefix)?))
    }

    /// One LIST of the name as prefix: it finds the object and its touch
    /// markers in one request (a HEAD would need a second for the markers).
    fn stat(&self, name: &str) -> Result<Option<ObjectMeta>> {
        self.checked_key("inspect", name)?;
        let raw: Vec<ObjectMeta> = self
            .list_raw(name)?
            .into_iter()
            .filter(|m| m.name == name || touched_object(&m.name) == Some(name))
            .collect();
        Ok(S3Store::fold_markers(raw)
            .into_iter()
            .find(|m| m.name == name))
    }

    fn open(&self, name: &str) -> Result<ObjectReader> {
        let key = self.checked_key("open", name)?;
        let client = self.client("open", name)?;
        read::open(client, &key)
            .map(|r| Box::new(r) as ObjectReader)
            .map_err(|e| self.err("open", name, e))
    }

    fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let key = self.checked_key("read", name)?;
        let client = self.client("read", name)?;
        if len == 0 {
            return match self.stat(name)? {
                Some(_) => Ok(Vec::new()),
                None => Err(StoreError::new(
                    "read",
                    self.place(name),
                    io::ErrorKind::NotFound.into(),
                )),
            };
        }
        let range = format!("bytes={offset}-{}", offset.saturating_add(len - 1));
        let req = Request::new("GET", Some(&key)).header("range", range);
        match client.send(&req, &[200, 206]) {
            // A server that ignores Range sends everything.
            Ok(a) if a.status == 200 => {
                let start = (offset as usize).min(a.body.len());
                let end = start.saturating_add(len as usize).min(a.body.len());
                Ok(a.body[start..end].to_vec())
            }
            Ok(a) => Ok(a.body),
            // Asking past the end: nothing there.
            Err(e) if e.status == Some(416) => Ok(Vec::new()),
            Err(e) => Err(self.err("read", name, e)),
        }
    }

    fn create(&self, name: &str) -> Result<Box<dyn NewObject + '_>> {
        let key = self.checked_key("write", name)?;
        self.client("write", name)?;
        Ok(Box::new(upload::S3Object::new(self, name, key)))
    }

    fn put_new(&self, name: &str, bytes: &[u8]) -> Result<Committed> {
        self.put_bytes(name, bytes)
    }

    /// S3 has no rename: the object is read, written create-only under
    /// `to`, then removed under `from`. Not atomic: a crash in between
    /// leaves it under both names (nothing is lost, and what was set aside
    /// is found again under its new name). Used only to set small objects
    /// aside: a dead run's lock (content/lock.rs) and a damaged index
    /// generation (content/persist.rs).
    fn rename_new(&self, from: &str, to: &str) -> Result<bool> {
        let bytes = self.read(from)?;
        match self.put_bytes(to, &bytes)? {
            Committed::Existed => Ok(false),
            Committed::Created => {
                self.delete(from)?;
                Ok(true)
            }
        }
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.delete_key(name)?;
        let marker = self
            .markers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(marker) = marker {
            let _ = self.delete_key(&marker);
        }
        Ok(())
    }

    /// S3 cannot change an object's time without rewriting the object (a
    /// copy onto itself replaces it, which the safety rules forbid). So a
    /// touch writes an empty marker object `<name>~touch~<hex>` beside it,
    /// create-only, with the server's clock; listings and `stat` report
    /// the object's time as the newest of its own and its markers'. The
    /// previous marker this process made is removed once the new one
    /// exists; markers whose object is gone are leftovers.
    fn touch(&self, name: &str) -> Result<()> {
        check_name(name).map_err(|e| StoreError::new("touch", self.place(name), e))?;
        let stamp = crate::clock::now_nanos() as u64;
        let marker = format!(
            "{name}{TOUCH_MARK}{stamp:016x}{:04x}",
            std::process::id() & 0xffff
        );
        let _ = self.put_bytes(&marker, b"")?;
        let previous = self
            .markers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), marker);
        if let Some(previous) = previous {
            let _ = self.delete_key(&previous);
        }
        Ok(())
    }

    /// S3 acknowledges a write only once it is durable.
    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn leftovers(&self) -> Result<Vec<Leftover>> {
        let mut found = upload::unfinished(self)?;
        let raw = self.list_raw("")?;
        let names: std::collections::HashSet<&str> = raw
            .iter()
            .filter(|m| touched_object(&m.name).is_none())
            .map(|m| m.name.as_str())
            .collect();
        for meta in &raw {
            let orphan_marker = touched_object(&meta.name).is_some_and(|o| !names.contains(o));
            if is_temp(&meta.name) || orphan_marker {
                let leaf = meta.name.rsplit('/').next().unwrap_or(&meta.name);
                found.push(Leftover {
                    name: meta.name.clone(),
                    modified: meta.modified,
                    owner_dead: is_temp(&meta.name) && fsio::temp_owner_is_dead(leaf.as_bytes()),
                });
            }
        }
        Ok(found)
    }

    fn remove_leftover(&self, leftover: &Leftover) -> Result<()> {
        match upload::parse_leftover(&leftover.name) {
            Some((name, id)) => upload::abort(self, name, id),
            None => self.delete_key(&leftover.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_join() {
        let l = S3Location::parse("s3://my-bucket//backups/home/").unwrap();
        assert_eq!(l.bucket, "my-bucket");
        assert_eq!(l.prefix, "backups/home");
        assert_eq!(l.to_string(), "s3://my-bucket/backups/home");
        assert_eq!(l.key("index.1"), "backups/home/index.1");
        let whole = S3Location::parse("s3://bkt").unwrap();
        assert_eq!(whole.key("a/b"), "a/b");
        assert_eq!(whole.root(), "");
        assert_eq!(
            l.join("epygibus.d/snapshots/h/u/a")
                .join("../../../../repos/u/r")
                .to_string(),
            "s3://my-bucket/backups/home/epygibus.d/repos/u/r"
        );
        for bad in [
            "s3://",
            "http://b/x",
            "s3://UP/x",
            "s3://b_b/x",
            "s3://ok/../x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn markers_raise_times_and_leftovers_are_hidden() {
        let at = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        let meta = |name: &str, t| ObjectMeta {
            name: name.into(),
            size: 1,
            modified: at(t),
        };
        let folded = S3Store::fold_markers(vec![
            meta("a", 10),
            meta("a~touch~01", 50),
            meta("a~touch~02", 40),
            meta("b", 20),
            meta("gone~touch~01", 90),
            meta("x/tmp.host.1.2.3", 5),
        ]);
        let mut names: Vec<_> = folded
            .iter()
            .map(|m| (m.name.as_str(), m.modified))
            .collect();
        names.sort();
        assert_eq!(names, [("a", at(50)), ("b", at(20))]);
        assert_eq!(
            parse_time("2026-11-27T08:42:00.500Z"),
            Some(at(1_795_768_920) + std::time::Duration::from_millis(500))
        );
    }
}
