//! The HTML the server sends: one page shell per screen (the screen's
//! content is drawn by `assets/app.js` from the JSON API), the page for a
//! browser that is not signed in, the password sign-in, and the embedded
//! assets. Nothing here puts data into HTML except fixed text and the
//! launch's CSRF token (hex).

use axum::Form;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::guard;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

fn page(title: &str, body_attrs: &str, main: &str, nav: bool) -> String {
    let nav = if nav {
        r#"<nav aria-label="Main"><a href="/" class="brand">epygibus</a>
<a href="/">Dashboard</a><a href="/search">Search</a><a href="/housekeeping">Housekeeping</a><a href="/rescue">Open a snapshot directory</a></nav>"#
    } else {
        r#"<nav aria-label="Main"><span class="brand">epygibus</span></nav>"#
    };
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/assets/app.css">
{body_attrs}
</head><body>
<a class="skip" href="#app">Skip to content</a>
<header>{nav}</header>
<main id="app" tabindex="-1">{main}</main>
<div id="status" role="status" aria-live="polite"></div>
</body></html>"##
    )
}

/// Every screen: the same shell; app.js reads the address and draws it.
pub async fn shell(State(app): State<AppState>, uri: Uri) -> Html<String> {
    let head = format!(
        r#"<meta name="csrf" content="{}">
<script src="/assets/app.js" defer></script>"#,
        app.secrets.csrf
    );
    let title = match uri.path() {
        "/" => "Dashboard",
        "/browse" => "Snapshot browser",
        "/search" => "Search",
        "/housekeeping" => "Housekeeping",
        "/rescue" => "Open a snapshot directory",
        _ => "Archive",
    };
    Html(page(
        &format!("{title} — epygibus"),
        &head,
        r#"<p class="muted">Loading…</p><noscript>This page needs JavaScript.</noscript>"#,
        true,
    ))
}

/// What a browser without the session cookie sees.
pub fn unauthorized(password: bool) -> String {
    let main = if password {
        r#"<h1>Sign in</h1>
<form method="post" action="/login" class="card">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>"#
    } else {
        r#"<h1>Not signed in</h1>
<p>Open the address that <code>epygibus gui</code> printed when it started: it holds a token that signs this browser in.</p>"#
    };
    page("Sign in — epygibus", "", main, false)
}

#[derive(Deserialize)]
pub struct Login {
    password: String,
}

/// The password sign-in (only when listening beyond loopback).
pub async fn login(State(app): State<AppState>, Form(f): Form<Login>) -> Response {
    let ok = app
        .secrets
        .password
        .as_deref()
        .is_some_and(|p| guard::same(p, &f.password));
    if !ok {
        // Slows guessing down.
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        return (
            StatusCode::UNAUTHORIZED,
            Html(unauthorized(app.secrets.password.is_some())),
        )
            .into_response();
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r.headers_mut().insert(
        header::SET_COOKIE,
        guard::session_cookie(&app.secrets.session),
    );
    r
}

pub async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
