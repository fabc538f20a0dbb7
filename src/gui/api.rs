//! The read-only JSON API (`GET /api/…`): what the pages show, each
//! answer one library call (or a few) run on the blocking pool.

use axum::extract::{Path as UrlPath, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::json::{
    ApiError, ApiResult, bad_request, entry_json, header_json, parse_source, stamp_json, time_text,
};
use crate::ops::browse::PageRequest;
use crate::ops::diff::{DiffRequest, NewSide, diff_snapshots};
use crate::ops::find::{FindRequest, find_entries, history};
use crate::ops::forget::{ForgetOptions, forget};
use crate::ops::{overview, source};
use crate::progress::NoProgress;
use crate::snapshot::find::TimeRange;
use crate::snapshot::format;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/overview", get(overview_api))
        .route("/api/archives/{name}", get(archive_api))
        .route("/api/snapshots", get(snapshots))
        .route("/api/list", get(list))
        .route("/api/stat", get(stat))
        .route("/api/find", get(find_api))
        .route("/api/history", get(history_api))
        .route("/api/diff", get(diff_api))
        .route("/api/forget-preview", get(forget_preview))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
}

/// Runs library work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ApiError(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request failed unexpectedly: {e}"),
        ))
    })
}

async fn session(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "csrf": app.secrets.csrf }))
}

async fn overview_api(State(app): State<AppState>) -> ApiResult {
    blocking(move || {
        let ctx = app.ctx();
        let archives: Vec<Value> = overview::archives(ctx)
            .iter()
            .map(|a| {
                let last = a.last.as_ref().map(|(n, h)| {
                    let mut v = stamp_json(n);
                    v["age_secs"] = json!(crate::clock::now_secs() - n.secs);
                    match h {
                        Ok(h) => v["header"] = header_json(h),
                        Err(e) => v["error"] = json!(e),
                    }
                    v
                });
                json!({
                    "name": a.name,
                    "repository": a.repo,
                    "snapshot_dir": a.snapshot_dir,
                    "read_only": a.read_only,
                    "snapshots": a.snapshots,
                    "last": last,
                    "schedules": a.schedules.iter().map(|s| json!({
                        "name": s.name, "when": s.when, "enabled": s.enabled
                    })).collect::<Vec<_>>(),
                    "warnings": a.warnings,
                    "error": a.error,
                })
            })
            .collect();
        let repos: Vec<Value> = overview::repos(ctx)
            .iter()
            .map(|r| {
                let stats = match &r.stats {
                    Ok(s) => json!({
                        "referenced_items": s.referenced_items,
                        "references": s.references,
                        "content_bytes": s.referenced_content_bytes,
                        "stored_bytes": s.referenced_stored_bytes,
                        "unreferenced_items": s.unreferenced_items,
                        "unreferenced_stored_bytes": s.unreferenced_stored_bytes,
                        "packs": s.packs,
                    }),
                    Err(e) => json!({ "error": e }),
                };
                json!({
                    "name": r.name,
                    "location": r.location,
                    "stats": stats,
                    "lock": r.lock.as_ref().map(|l| l.describe()),
                })
            })
            .collect();
        Ok(Json(json!({ "archives": archives, "repositories": repos })))
    })
    .await
}

async fn archive_api(State(app): State<AppState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    blocking(move || {
        let ctx = app.ctx();
        let a = source::archive(ctx, &name)?;
        let names = a.list()?;
        let store = a.snapshots.as_ref();
        let snapshots: Vec<Value> = names
            .iter()
            .rev()
            .map(|n| {
                let mut v = stamp_json(n);
                match format::read_header(store, n) {
                    Ok(h) => v["header"] = header_json(&h),
                    Err(e) => v["error"] = json!(e.to_string()),
                }
                v["file_bytes"] = json!(format::file_size(store, n));
                v
            })
            .collect();
        let policy = match crate::ops::forget::stored_policy(ctx, &a.spec.name) {
            Ok(Some(p)) => json!({ "text": p.to_string(), "fields": p.to_fields() }),
            Ok(None) => Value::Null,
            Err(e) => json!({ "error": e.to_string() }),
        };
        Ok(Json(json!({
            "name": a.spec.name.as_str(),
            "repository": a.spec.repo.as_str(),
            "snapshot_dir": a.spec.snapshot_dir.to_string(),
            "includes": a.spec.includes.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "excluded_dirs": a.spec.excluded_dirs,
            "excluded_files": a.spec.excluded_files,
            "read_only": a.check_writable().is_err(),
            "policy": policy,
            "set_aside": crate::snapshot::damaged::list_set_aside(store).unwrap_or_default(),
            "snapshots": snapshots,
        })))
    })
    .await
}

#[derive(Deserialize)]
pub struct SrcQuery {
    pub src: String,
}

async fn snapshots(State(app): State<AppState>, Query(q): Query<SrcQuery>) -> ApiResult {
    let spec = parse_source(&q.src)?;
    blocking(move || {
        let names = app.browser.snapshots(&spec)?;
        Ok(Json(json!({
            "src": q.src,
            "snapshots": names.iter().rev().map(stamp_json).collect::<Vec<_>>(),
        })))
    })
    .await
}

/// Which entry of which snapshot.
#[derive(Deserialize)]
pub struct EntryQuery {
    pub src: String,
    pub snap: String,
    #[serde(default = "root")]
    pub path: String,
}

fn root() -> String {
    "/".into()
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(flatten)]
    at: EntryQuery,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: usize,
    filter: Option<String>,
}

async fn list(State(app): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult {
    let spec = parse_source(&q.at.src)?;
    blocking(move || {
        let started = std::time::Instant::now();
        let page = PageRequest {
            offset: q.offset,
            limit: q.limit,
            filter: q.filter.filter(|f| !f.is_empty()),
        };
        let p = app.browser.list(&spec, &q.at.snap, &q.at.path, &page)?;
        Ok(Json(json!({
            "path": p.path.display().to_string(),
            "dir": entry_json(&p.dir),
            "total": p.total,
            "offset": p.offset,
            "entries": p.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "server_ms": started.elapsed().as_secs_f64() * 1000.0,
        })))
    })
    .await
}

async fn stat(State(app): State<AppState>, Query(q): Query<EntryQuery>) -> ApiResult {
    let spec = parse_source(&q.src)?;
    blocking(move || {
        let e = app.browser.stat(&spec, &q.snap, &q.path)?;
        Ok(Json(entry_json(&e)))
    })
    .await
}

#[derive(Deserialize)]
struct FindQuery {
    /// An archive name; empty or absent: every archive.
    archive: Option<String>,
    pattern: String,
}

async fn find_api(State(app): State<AppState>, Query(q): Query<FindQuery>) -> ApiResult {
    if q.pattern.trim().is_empty() {
        return Err(bad_request("give a name or glob to search for"));
    }
    blocking(move || {
        let archive = q.archive.filter(|a| !a.is_empty());
        let req = FindRequest {
            all: archive.is_none(),
            archives: archive.into_iter().collect(),
            patterns: vec![q.pattern.trim().to_owned()],
            mtime: TimeRange::default(),
        };
        let found = find_entries(app.ctx(), &req)?;
        let archives: Vec<Value> = found
            .iter()
            .map(|a| {
                let snaps: Vec<Value> = a
                    .snapshots
                    .iter()
                    .rev()
                    .filter(|s| s.result.as_ref().map_or(true, |m| !m.is_empty()))
                    .map(|s| {
                        let mut v = stamp_json(&s.snapshot);
                        match &s.result {
                            Ok(m) => {
                                v["matches"] = m
                                    .iter()
                                    .take(500)
                                    .map(|m| {
                                        json!({
                                            "path": m.path.display().to_string(),
                                            "kind": m.kind,
                                            "size": m.size,
                                            "mtime": time_text(m.mtime_ns.div_euclid(1_000_000_000)),
                                        })
                                    })
                                    .collect();
                                v["hits"] = json!(m.len());
                            }
                            Err(e) => v["error"] = json!(e),
                        }
                        v
                    })
                    .collect();
                json!({ "archive": a.archive, "searched": a.snapshots.len(), "snapshots": snaps })
            })
            .collect();
        Ok(Json(json!({ "archives": archives })))
    })
    .await
}

#[derive(Deserialize)]
struct HistoryQuery {
    src: String,
    path: String,
}

async fn history_api(State(app): State<AppState>, Query(q): Query<HistoryQuery>) -> ApiResult {
    let spec = parse_source(&q.src)?;
    let path = crate::ops::browse::check_path(&q.path)?;
    blocking(move || {
        let h = history(app.ctx(), &spec, &path)?;
        let versions: Vec<Value> = h
            .versions
            .iter()
            .rev()
            .map(|v| {
                json!({
                    "first": stamp_json(&v.first.name),
                    "last": stamp_json(&v.last.name),
                    "snapshots": v.snapshots,
                    "kind": v.kind,
                    "size": v.size,
                    "mtime": time_text(v.mtime_ns.div_euclid(1_000_000_000)),
                    "token": v.token.map(|t| t.to_hex()),
                })
            })
            .collect();
        Ok(Json(json!({
            "path": h.path.display().to_string(),
            "snapshots": h.snapshots,
            "versions": versions,
            "damaged": h.damaged.iter().map(|(n, e)| json!({"name": n.stamp(), "error": e})).collect::<Vec<_>>(),
        })))
    })
    .await
}

#[derive(Deserialize)]
struct DiffQuery {
    src: String,
    old: String,
    new: String,
    path: Option<String>,
    #[serde(default)]
    metadata: bool,
}

async fn diff_api(State(app): State<AppState>, Query(q): Query<DiffQuery>) -> ApiResult {
    let spec = parse_source(&q.src)?;
    let path = match q.path.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(crate::ops::browse::check_path(p)?),
        None => None,
    };
    blocking(move || {
        let old = app.browser.back_of(&spec, &q.old)?;
        let new = app.browser.back_of(&spec, &q.new)?;
        let req = DiffRequest {
            source: spec,
            old,
            new: NewSide::Back(new),
            path,
            metadata: q.metadata,
        };
        let o = diff_snapshots(app.ctx(), &req, &NoProgress)?;
        let changes: Vec<Value> = o
            .report
            .changes
            .iter()
            .take(5000)
            .map(|c| json!({ "modifier": c.marker, "path": c.path.display().to_string() }))
            .collect();
        Ok(Json(json!({
            "old": stamp_json(&o.old.0),
            "new": o.new.as_ref().map(|(n, _)| stamp_json(n)),
            "changes": changes,
            "total_changes": o.report.changes.len(),
            "summary": serde_json::to_value(o.report.summary).unwrap_or(Value::Null),
        })))
    })
    .await
}

#[derive(Deserialize)]
pub struct ArchiveQuery {
    pub archive: String,
}

/// What `forget` would remove by the archive's stored policy (a dry run).
async fn forget_preview(State(app): State<AppState>, Query(q): Query<ArchiveQuery>) -> ApiResult {
    blocking(move || {
        let opts = ForgetOptions {
            dry_run: true,
            ..ForgetOptions::default()
        };
        let r = forget(app.ctx(), &q.archive, &opts, "epygibus gui", &mut |_| {})?;
        let r = r.ok_or_else(|| bad_request("the archive stores no retention policy"))?;
        Ok(Json(super::actions::forget_json(&r)))
    })
    .await
}

async fn jobs(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "jobs": app.jobs.all().iter().map(|j| j.to_json()).collect::<Vec<_>>() }))
}

async fn job(State(app): State<AppState>, UrlPath(id): UrlPath<u64>) -> ApiResult {
    match app.jobs.get(id) {
        Some(j) => Ok(Json(j.to_json())),
        None => Err(ApiError(
            axum::http::StatusCode::NOT_FOUND,
            format!("there is no job {id}"),
        )),
    }
}
