//! The GUI's JSON: how library results look in `/api/…` answers
//! (docs/gui-api.md), how a source is named in a query (`A:archive` or
//! `E:/snapshot/dir`), and the error answer.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::clock::Civil;
use crate::ops::OpError;
use crate::ops::browse::EntryInfo;
use crate::ops::source::SourceSpec;
use crate::snapshot::format::{Header, SnapshotName};
use crate::snapshot::restore::RestoreReport;
use crate::store::Location;

/// An error answer: a status and one sentence.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> ApiError {
        let status = match &e {
            OpError::NotInSnapshot { .. }
            | OpError::NoSuchSnapshot { .. }
            | OpError::NoSnapshotDir(_)
            | OpError::Config(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError(status, e.to_string())
    }
}

pub fn bad_request(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

pub type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// `A:NAME` (a configured archive) or `E:DIR` (a snapshot directory
/// opened without configuration, as `-E` does).
pub fn parse_source(src: &str) -> Result<SourceSpec, ApiError> {
    if let Some(name) = src.strip_prefix("A:") {
        name.parse::<crate::config::Name>()
            .map_err(|e| bad_request(e.to_string()))?;
        return Ok(SourceSpec::Archive(name.to_owned()));
    }
    if let Some(dir) = src.strip_prefix("E:") {
        if dir.contains('\0') {
            return Err(bad_request("a snapshot directory holds no NUL byte"));
        }
        let loc = Location::parse(std::ffi::OsStr::new(dir)).map_err(bad_request)?;
        if let Location::Dir(d) = &loc
            && !d.is_absolute()
        {
            return Err(bad_request(format!(
                "give the snapshot directory as an absolute path, not `{dir}`"
            )));
        }
        return Ok(SourceSpec::SnapshotDir(loc));
    }
    Err(bad_request(
        "src must be `A:ARCHIVE` or `E:/snapshot/directory`",
    ))
}

pub fn time_text(secs: i64) -> String {
    Civil::from_unix(secs).rfc3339()
}

pub fn stamp_json(n: &SnapshotName) -> Value {
    json!({ "name": n.stamp(), "time": time_text(n.secs), "compressed": n.compressed })
}

pub fn entry_json(e: &EntryInfo) -> Value {
    let a = &e.attrs;
    json!({
        "name": String::from_utf8_lossy(&e.name),
        "kind": e.kind.as_str(),
        "size": e.size,
        "mode": format!("{:o}", a.permissions()),
        "uid": a.uid,
        "gid": a.gid,
        "mtime_ns": a.mtime_ns,
        "mtime": time_text(a.mtime_ns.div_euclid(1_000_000_000)),
        "ctime_ns": a.ctime_ns,
        "atime_ns": a.atime_ns,
        "nlink": a.nlink,
        "token": e.token.as_ref().map(|t| t.to_string()),
        "target": e.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    })
}

pub fn header_json(h: &Header) -> Value {
    let s = &h.stats;
    let c = &s.counts;
    json!({
        "host": h.host,
        "user": h.user,
        "started": time_text(h.started_ns.div_euclid(1_000_000_000)),
        "repository": h.repo.name,
        "salvaged_from": h.salvaged_from,
        "counts": serde_json::to_value(c).unwrap_or(Value::Null),
        "new_items": s.new_items,
        "new_content_bytes": s.new_content_bytes,
        "new_stored_bytes": s.new_stored_bytes,
        "files_read": s.files_read,
        "skipped": s.skipped,
        "elapsed_secs": s.elapsed_secs,
    })
}

pub fn restore_json(r: &RestoreReport) -> Value {
    json!({
        "files": r.files,
        "bytes": r.bytes,
        "dirs": r.dirs,
        "links": r.links,
        "hard_links": r.hard_links,
        "unchanged": r.unchanged,
        "moved_aside": r.moved_aside.iter().map(|(a, b)| json!({
            "path": a.display().to_string(), "to": b.display().to_string()
        })).collect::<Vec<_>>(),
        "problems": r.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert!(matches!(parse_source("A:docs"), Ok(SourceSpec::Archive(a)) if a == "docs"));
        assert!(matches!(
            parse_source("E:/mnt/x"),
            Ok(SourceSpec::SnapshotDir(Location::Dir(_)))
        ));
        assert!(parse_source("E:relative/x").is_err());
        assert!(parse_source("E:/a\0b").is_err());
        assert!(parse_source("A:../x").is_err());
        assert!(parse_source("docs").is_err());
    }
}
