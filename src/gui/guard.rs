//! The GUI's gate: every request passes here before any handler. It
//! checks that the Host header names the served address (a DNS-rebinding
//! page cannot reach us under its own name), that the browser holds the
//! session cookie (got by opening the printed URL with its one-launch
//! token, or by the password when listening beyond loopback), and that a
//! state-changing request carries the CSRF token and an Origin of ours.
//! It adds the security headers (CSP, nosniff, no framing) to every answer.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub const COOKIE: &str = "epygibus_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The page's policy: our own script and style only, no inline code, no
/// frames, forms and fetches to us alone.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Secrets of one launch: the token in the printed URL, the session
/// cookie's value, the CSRF token, and the password when one is needed.
pub struct Secrets {
    pub url_token: String,
    pub session: String,
    pub csrf: String,
    pub password: Option<String>,
}

/// A random secret, 128 bits as hex, from the kernel.
pub fn random_hex() -> String {
    let mut b = [0u8; 16];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())
        .expect("the kernel's random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares secrets without an early exit (no timing hint).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `token` query parameter, if any.
fn url_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
}

/// The address to go on to: the same page and query, less the token.
fn without_token(path: &str, query: Option<&str>) -> String {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
        .collect();
    match rest.is_empty() {
        true => path.to_owned(),
        false => format!("{path}?{}", rest.join("&")),
    }
}

/// The cookie that keeps a browser in: HttpOnly (no script reads it),
/// SameSite=Strict (no other site's page sends it).
pub fn session_cookie(session: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/"
    ))
    .expect("hex is a valid header")
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_owned(),
    )
        .into_response()
}

/// The middleware: Host, authentication, CSRF and Origin, then headers.
pub async fn gate(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = check(&app, req, next).await;
    let h = resp.headers_mut();
    // A handler may set a stricter policy (image previews do).
    h.entry("content-security-policy")
        .or_insert(HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn check(app: &AppState, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !app.hosts.iter().any(|h| h == host) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only under the address it printed",
        );
    }
    let host = host.to_owned();
    let secrets = &app.secrets;
    let has_cookie = cookie_value(req.headers()).is_some_and(|c| same(&c, &secrets.session));
    let path = req.uri().path().to_owned();
    if !has_cookie {
        // The printed URL: exchange its token for the cookie, and go to
        // the same page without the token in the address bar.
        if req.method() == Method::GET
            && let Some(t) = url_token(req.uri().query())
            && same(&t, &secrets.url_token)
        {
            return Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, without_token(&path, req.uri().query()))
                .header(header::SET_COOKIE, session_cookie(&secrets.session))
                .body(Body::empty())
                .expect("a valid response");
        }
        let login = path == "/login" || path == "/assets/app.css";
        if !(login && secrets.password.is_some()) {
            return unauthorized(app, &path);
        }
    }
    if is_state_changing(req.method()) {
        let origin_ok = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| o == format!("http://{host}"));
        if !origin_ok {
            return plain(
                StatusCode::FORBIDDEN,
                "refused: the request does not come from this GUI's pages (Origin)",
            );
        }
        // The login form is the one change made before a session exists.
        let csrf_ok = path == "/login"
            || req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| same(v, &secrets.csrf));
        if !csrf_ok {
            return plain(
                StatusCode::FORBIDDEN,
                "refused: the request lacks this GUI's CSRF token",
            );
        }
    }
    next.run(req).await
}

fn is_state_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(app: &AppState, path: &str) -> Response {
    if path.starts_with("/api/") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "not signed in: open the address `epygibus gui` printed (it holds a token)"
            })),
        )
            .into_response();
    }
    let body = super::pages::unauthorized(app.secrets.password.is_some());
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(random_hex().len(), 32);
        assert_ne!(random_hex(), random_hex());
    }

    #[test]
    fn cookie_and_token_are_found() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; epygibus_session=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("xyz"));
        assert_eq!(url_token(Some("a=b&token=t1")).as_deref(), Some("t1"));
        assert_eq!(url_token(Some("tokenx=1")), None);
        assert_eq!(without_token("/", Some("token=t")), "/");
        assert_eq!(
            without_token("/browse", Some("src=A:d&token=t&path=/x")),
            "/browse?src=A:d&path=/x"
        );
    }
}
