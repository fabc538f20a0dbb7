//! The API calls that change something (`POST /api/…`): back up now,
//! restore or extract, apply a retention policy, check, prune, cancel.
//! Long ones start a job and answer its id at once. The gate has checked
//! the CSRF token and Origin before any of these runs.

use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::api::{ArchiveQuery, blocking};
use super::json::{ApiError, ApiResult, bad_request, header_json, parse_source, restore_json};
use crate::ops::backup::{BackupOptions, backup};
use crate::ops::browse::{Destination, RestoreSelected};
use crate::ops::check::{CheckRequest, CheckTarget, check};
use crate::ops::forget::{ForgetOptions, ForgetReport, forget};
use crate::ops::housekeeping::{PruneOptions, prune};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/backup", post(backup_now))
        .route("/api/restore", post(restore_items))
        .route("/api/forget", post(forget_apply))
        .route("/api/check", post(check_start))
        .route("/api/prune", post(prune_start))
        .route("/api/jobs/{id}/cancel", post(cancel))
}

fn started(job: &super::jobs::Job) -> Json<Value> {
    Json(json!({ "job": job.id }))
}

async fn backup_now(State(app): State<AppState>, Json(q): Json<ArchiveQuery>) -> ApiResult {
    // Fail fast on a name that is not an archive, before a job exists.
    let name = q.archive;
    let check = app.clone();
    let probe = name.clone();
    blocking(move || Ok(crate::ops::source::archive(check.ctx(), &probe)?.check_writable()?))
        .await?;
    let ctx = app.ctx().clone();
    let job = app
        .jobs
        .start("backup", format!("Back up {name}"), move |job| {
            let command = format!("epygibus gui: bu -A {name}");
            let r = backup(
                &ctx,
                &name,
                BackupOptions::default(),
                &command,
                &job.progress,
            )
            .map_err(|e| e.to_string())?;
            Ok(json!({
                "archive": name,
                "snapshot": r.name.stamp(),
                "header": header_json(&r.header),
                "problems": r.problems.iter().take(200).map(|p| json!({
                    "path": p.path.display().to_string(), "message": p.message
                })).collect::<Vec<_>>(),
                "problem_count": r.problems.len(),
                "warnings": r.warnings,
            }))
        });
    Ok(started(&job))
}

#[derive(Deserialize)]
struct RestoreBody {
    src: String,
    snap: String,
    paths: Vec<String>,
    /// `original` or `into`.
    mode: String,
    into_dir: Option<String>,
    with_name: Option<String>,
    #[serde(default)]
    overwrite: bool,
}

async fn restore_items(State(app): State<AppState>, Json(b): Json<RestoreBody>) -> ApiResult {
    let source = parse_source(&b.src)?;
    let destination = match b.mode.as_str() {
        "original" => Destination::Original,
        "into" => Destination::Into {
            dir: b
                .into_dir
                .ok_or_else(|| bad_request("give the directory to extract into"))?,
            with_name: b.with_name,
        },
        other => return Err(bad_request(format!("unknown restore mode `{other}`"))),
    };
    let req = RestoreSelected {
        source,
        stamp: b.snap,
        paths: b.paths,
        destination,
        overwrite: b.overwrite,
    };
    // Check what can be checked before a job starts: paths and target.
    if let Destination::Into { dir, .. } = &req.destination {
        crate::ops::browse::extract_target(dir)?;
    }
    for p in &req.paths {
        crate::ops::browse::check_path(p)?;
    }
    let title = format!("Restore {} item(s) from {}", req.paths.len(), req.stamp);
    let runner = app.clone();
    let job = app.jobs.start("restore", title, move |job| {
        let r = runner
            .browser
            .restore_selected(&req, "epygibus gui: restore", &job.progress)
            .map_err(|e| e.to_string())?;
        let mut v = restore_json(&r);
        v["destination"] = match &req.destination {
            Destination::Original => json!("original"),
            Destination::Into { dir, .. } => json!(dir),
        };
        Ok(v)
    });
    Ok(started(&job))
}

/// Applies the archive's stored retention policy.
async fn forget_apply(State(app): State<AppState>, Json(q): Json<ArchiveQuery>) -> ApiResult {
    blocking(move || {
        let command = format!("epygibus gui: forget -A {}", q.archive);
        let r = forget(
            app.ctx(),
            &q.archive,
            &ForgetOptions::default(),
            &command,
            &mut |_| {},
        )?;
        let r = r.ok_or_else(|| bad_request("the archive stores no retention policy"))?;
        Ok(Json(forget_json(&r)))
    })
    .await
}

/// A forget report (dry run or done) as the API shows it.
pub fn forget_json(r: &ForgetReport) -> Value {
    json!({
        "archive": r.archive.as_str(),
        "policy": r.policy.to_string(),
        "dry_run": r.dry_run,
        "snapshots": r.verdicts.iter().map(|v| json!({
            "name": v.name.stamp(),
            "keep": v.keep(),
            "reasons": v.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "removed": v.removed,
        })).collect::<Vec<_>>(),
        "to_remove": r.to_remove(),
        "removed": r.removed(),
        "unreadable": r.unreadable.iter().map(|(n, e)| json!({"name": n.stamp(), "error": e})).collect::<Vec<_>>(),
        "not_removed": r.not_removed.iter().map(|(n, e)| json!({"name": n.stamp(), "error": e})).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
struct CheckBody {
    repo: Option<String>,
    archive: Option<String>,
    #[serde(default)]
    read_data: bool,
}

async fn check_start(State(app): State<AppState>, Json(b): Json<CheckBody>) -> ApiResult {
    let target = match (b.repo, b.archive) {
        (Some(r), None) => CheckTarget::Repo(r),
        (None, Some(a)) => CheckTarget::Archive(a),
        _ => return Err(bad_request("give either repo or archive")),
    };
    let what = match &target {
        CheckTarget::Repo(r) => format!("repository {r}"),
        CheckTarget::Archive(a) => format!("archive {a}"),
    };
    let ctx = app.ctx().clone();
    let req = CheckRequest {
        read_data: b.read_data,
        ..CheckRequest::default()
    };
    let job = app.jobs.start("check", format!("Check {what}"), move |_| {
        let o = check(&ctx, &target, req, "epygibus gui: check").map_err(|e| e.to_string())?;
        let mut problems: Vec<String> = o.scan.unreachable.clone();
        problems.extend(o.scan.unreadable.iter().chain(&o.set_aside).cloned());
        let mut notes = Vec::new();
        for f in &o.report.findings {
            match f.is_harmless() {
                true => notes.push(f.to_string()),
                false => problems.push(f.to_string()),
            }
        }
        Ok(json!({
            "ok": problems.is_empty(),
            "problems": problems,
            "notes": notes,
            "snapshots": o.scan.snapshots,
            "snapshot_dirs": o.dirs.len(),
            "items_checked": o.report.items_checked,
            "read_data": req.read_data,
        }))
    });
    Ok(started(&job))
}

#[derive(Deserialize)]
struct RepoBody {
    repo: String,
}

async fn prune_start(State(app): State<AppState>, Json(b): Json<RepoBody>) -> ApiResult {
    let ctx = app.ctx().clone();
    let repo = b.repo;
    let job = app.jobs.start("prune", format!("Prune {repo}"), move |_| {
        let o = prune(&ctx, &repo, PruneOptions::default(), "epygibus gui: prune")
            .map_err(|e| e.to_string())?;
        Ok(json!({
            "repository": repo,
            "items": o.report.items,
            "content_bytes": o.report.content_bytes,
            "bytes_freed": o.report.bytes_freed,
            "packs_removed": o.report.packs_removed,
            "packs_rewritten": o.report.packs_rewritten,
            "kept_young": o.report.kept_young,
            "packs_damaged": o.report.packs_damaged,
            "min_age_secs": o.min_age.as_secs(),
        }))
    });
    Ok(started(&job))
}

async fn cancel(State(app): State<AppState>, UrlPath(id): UrlPath<u64>) -> ApiResult {
    let job = app.jobs.get(id).ok_or_else(|| {
        ApiError(
            axum::http::StatusCode::NOT_FOUND,
            format!("there is no job {id}"),
        )
    })?;
    job.cancel();
    Ok(Json(job.to_json()))
}
