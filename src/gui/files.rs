//! Bytes out of snapshots: a file as a download, a directory as one tar
//! stream (written as it is read, never held whole), and previews. A
//! backed-up file is never served as something the browser would run in
//! our origin: downloads are attachments of type octet-stream with
//! nosniff, text previews travel as JSON strings the page puts in as text,
//! and images are served inline only when their first bytes are PNG, JPEG,
//! GIF or WebP, typed by those bytes and sandboxed (never SVG).

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;

use super::AppState;
use super::api::{EntryQuery, blocking};
use super::json::{ApiError, ApiResult, parse_source};
use crate::ops::browse::ExportItem;
use crate::snapshot::lookup::Kind;

/// Bytes of a file a text preview shows at most.
const PREVIEW_TEXT: usize = 64 * 1024;
/// Largest image shown inline.
const PREVIEW_IMAGE: u64 = 20 * 1024 * 1024;
/// Chunk size of streamed downloads.
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/download", get(download))
        .route("/api/download-dir", get(download_dir))
        .route("/api/preview", get(preview))
        .route("/api/image", get(image))
}

/// A `Write` that hands chunks to the response body; a closed body (the
/// browser went away) is a write error, which stops the producer.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader left"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A body produced by `produce` on the blocking pool while it is sent.
/// A failure midway ends the stream with an error, so the browser sees a
/// failed download rather than a short file.
fn streamed(
    produce: impl FnOnce(&mut ChannelWriter) -> Result<(), String> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = produce(&mut w).and_then(|()| w.flush().map_err(|e| e.to_string()));
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

/// `attachment; filename*=UTF-8''…` for any name.
fn disposition(kind: &str, name: &str) -> HeaderValue {
    let mut enc = String::new();
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => enc.push(b as char),
            _ => enc.push_str(&format!("%{b:02X}")),
        }
    }
    HeaderValue::from_str(&format!("{kind}; filename*=UTF-8''{enc}")).expect("only ASCII is left")
}

fn attachment(name: &str, content_type: &'static str, len: Option<u64>, body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_DISPOSITION, disposition("attachment", name));
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    r
}

fn base_name(path: &str) -> String {
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("root")
        .to_owned()
}

async fn download(
    State(app): State<AppState>,
    Query(q): Query<EntryQuery>,
) -> Result<Response, ApiError> {
    let spec = parse_source(&q.src)?;
    let (src, snap, path) = (spec.clone(), q.snap.clone(), q.path.clone());
    let opener = app.clone();
    let (info, reader) =
        blocking(move || Ok(opener.browser.open_file(&src, &snap, &path)?)).await?;
    let body = streamed(move |w| {
        let mut reader = reader;
        std::io::copy(&mut reader, w)
            .map(|_| ())
            .map_err(|e| format!("reading the file failed: {e}"))
    });
    Ok(attachment(
        &base_name(&q.path),
        "application/octet-stream",
        Some(info.size),
        body,
    ))
}

async fn download_dir(
    State(app): State<AppState>,
    Query(q): Query<EntryQuery>,
) -> Result<Response, ApiError> {
    let spec = parse_source(&q.src)?;
    // Check before the answer starts: afterwards an error can only cut it.
    let (src, snap, path) = (spec.clone(), q.snap.clone(), q.path.clone());
    let probe = app.clone();
    let info = blocking(move || Ok(probe.browser.stat(&src, &snap, &path)?)).await?;
    if info.kind != Kind::Dir {
        return Err(super::json::bad_request(format!(
            "{} is not a directory",
            q.path
        )));
    }
    let name = format!("{}-{}.tar", base_name(&q.path), q.snap);
    let (snap, path) = (q.snap.clone(), q.path.clone());
    let body = streamed(move |w| {
        let mut tar = tar::Builder::new(w);
        tar.follow_symlinks(false);
        app.browser
            .export(&spec, &snap, &path, &mut |item| append(&mut tar, item))
            .map_err(|e| e.to_string())?;
        tar.finish().map_err(|e| e.to_string())
    });
    Ok(attachment(&name, "application/x-tar", None, body))
}

/// One entry into the tar stream, with the recorded mode, owner and mtime.
fn append(tar: &mut tar::Builder<&mut ChannelWriter>, item: ExportItem<'_>) -> std::io::Result<()> {
    let a = &item.info.attrs;
    let mut h = tar::Header::new_gnu();
    h.set_mode(a.permissions());
    h.set_uid(a.uid.into());
    h.set_gid(a.gid.into());
    h.set_mtime(a.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    match (item.info.kind, item.content) {
        (Kind::File, Some(content)) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(item.info.size);
            // Exactly the recorded size: a short read would shift every
            // later entry, so it is an error instead.
            let mut exact = content.take(item.info.size);
            tar.append_data(&mut h, &item.path, &mut exact)
        }
        (Kind::Link, _) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = std::path::Path::new(std::ffi::OsStr::from_bytes(
                item.info.target.as_deref().unwrap_or(b""),
            ));
            tar.append_link(&mut h, &item.path, target)
        }
        _ => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, &item.path, std::io::empty())
        }
    }
}

/// The image type the first bytes say, among those a browser shows
/// without running anything.
fn image_type(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The start of a file as text, if it looks like text: no NUL, valid
/// UTF-8 (a character cut at the end of the window is fine).
fn as_text(head: &[u8]) -> Option<String> {
    if head.contains(&0) {
        return None;
    }
    match std::str::from_utf8(head) {
        Ok(s) => Some(s.to_owned()),
        Err(e) if e.error_len().is_none() && head.len() - e.valid_up_to() < 4 => {
            Some(String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    }
}

async fn preview(State(app): State<AppState>, Query(q): Query<EntryQuery>) -> ApiResult {
    let spec = parse_source(&q.src)?;
    blocking(move || {
        let (info, reader) = app.browser.open_file(&spec, &q.snap, &q.path)?;
        let mut head = Vec::new();
        reader
            .take(PREVIEW_TEXT as u64)
            .read_to_end(&mut head)
            .map_err(|e| super::json::bad_request(format!("reading the file failed: {e}")))?;
        if let Some(mime) = image_type(&head) {
            return Ok(Json(json!({
                "kind": if info.size <= PREVIEW_IMAGE { "image" } else { "binary" },
                "mime": mime,
                "size": info.size,
            })));
        }
        Ok(Json(match as_text(&head) {
            Some(text) => json!({
                "kind": "text",
                "text": text,
                "truncated": info.size > head.len() as u64,
                "size": info.size,
            }),
            None => json!({ "kind": "binary", "size": info.size }),
        }))
    })
    .await
}

async fn image(
    State(app): State<AppState>,
    Query(q): Query<EntryQuery>,
) -> Result<Response, ApiError> {
    let spec = parse_source(&q.src)?;
    let bytes = blocking(move || {
        let (info, reader) = app.browser.open_file(&spec, &q.snap, &q.path)?;
        if info.size > PREVIEW_IMAGE {
            return Err(super::json::bad_request(
                "the image is too large to preview; download it",
            ));
        }
        let mut all = Vec::new();
        reader
            .take(PREVIEW_IMAGE)
            .read_to_end(&mut all)
            .map_err(|e| super::json::bad_request(format!("reading the file failed: {e}")))?;
        Ok(all)
    })
    .await?;
    let Some(mime) = image_type(&bytes) else {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not a PNG, JPEG, GIF or WebP image; download it instead".into(),
        ));
    };
    let mut r = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        bytes,
    )
        .into_response();
    // Tighter than the pages' policy: nothing in it may run or load.
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_are_shown() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nxxxx"), Some("image/png"));
        assert_eq!(image_type(b"GIF89a..."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            image_type(b"<svg xmlns=\"http://www.w3.org/2000/svg\">"),
            None
        );
        assert_eq!(image_type(b"<html><script>"), None);
    }

    #[test]
    fn text_is_told_from_binary() {
        assert_eq!(as_text(b"hello\n").as_deref(), Some("hello\n"));
        assert_eq!(as_text(b"a\0b"), None);
        // A UTF-8 character cut by the preview window.
        assert_eq!(
            as_text("ab\u{e9}".as_bytes()[..3].as_ref()).as_deref(),
            Some("ab")
        );
        assert_eq!(as_text(b"\xff\xfe\xfd\xfc\xfb"), None);
    }

    #[test]
    fn download_names_are_encoded() {
        assert_eq!(
            disposition("attachment", "a b\"é.txt"),
            "attachment; filename*=UTF-8''a%20b%22%C3%A9.txt"
        );
    }
}
