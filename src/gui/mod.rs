//! The web face (`epygibus gui`): a local web server with pages to see
//! archives and repositories, browse snapshots, download, restore, back up
//! and keep house, and the JSON API those pages use (docs/gui-api.md).
//! Like the CLI it only parses and presents: every decision is a library
//! operation (`crate::ops`), run on tokio's blocking pool. It must never
//! serve anything from a snapshot in a way the browser could run (see
//! `files.rs`), nor answer a request that [`guard`] did not let through.

mod actions;
mod api;
mod files;
mod guard;
mod jobs;
mod json;
mod pages;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::ops::Context;
use crate::ops::browse::Browser;

/// How `epygibus gui` serves.
#[derive(Clone, Debug)]
pub struct GuiOptions {
    /// 0: any free port.
    pub port: u16,
    /// The address to listen on; None: 127.0.0.1.
    pub listen: Option<IpAddr>,
    /// The password that signs a browser in (required beyond loopback).
    pub password: Option<String>,
    /// Open the browser on the URL (xdg-open).
    pub open_browser: bool,
}

/// Why the GUI could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuiError {
    #[error(
        "listening on {0} would let other machines reach the GUI: give --password-file FILE as well (the password signs browsers in)"
    )]
    NeedsPassword(IpAddr),
    #[error("cannot listen on {addr}: {source} (choose another --port, or 0 for any free one)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the web server failed: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub browser: Browser,
    pub jobs: jobs::Jobs,
    pub secrets: guard::Secrets,
    /// Host header values this server answers to.
    pub hosts: Vec<String>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn ctx(&self) -> &Context {
        self.browser.context()
    }
}

/// The Host header values a browser sends for `addr`.
fn hosts_for(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        ip => format!("{ip}:{port}"),
    }];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{port}"));
    }
    hosts
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::shell))
        .route("/archive/{name}", get(pages::shell))
        .route("/browse", get(pages::shell))
        .route("/search", get(pages::shell))
        .route("/housekeeping", get(pages::shell))
        .route("/rescue", get(pages::shell))
        .route("/login", post(pages::login))
        .route("/assets/{file}", get(pages::asset))
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
        .merge(api::routes())
        .merge(actions::routes())
        .merge(files::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::gate,
        ))
        .with_state(state)
}

/// Serves until Ctrl-C or SIGTERM. `announce` is told the URL to open
/// (with its token) once the server listens.
pub fn run(ctx: Context, opts: GuiOptions, announce: &dyn Fn(&str)) -> Result<(), GuiError> {
    let ip = opts.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    if !ip.is_loopback() && opts.password.is_none() {
        return Err(GuiError::NeedsPassword(ip));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(GuiError::Serve)?;
    runtime.block_on(async move {
        let want = SocketAddr::new(ip, opts.port);
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .map_err(|source| GuiError::Bind { addr: want, source })?;
        let addr = listener.local_addr().map_err(GuiError::Serve)?;
        let secrets = guard::Secrets {
            url_token: guard::random_hex(),
            session: guard::random_hex(),
            csrf: guard::random_hex(),
            password: opts.password,
        };
        let url = format!("http://{}/?token={}", hosts_for(addr)[0], secrets.url_token);
        let state = AppState(Arc::new(Inner {
            browser: Browser::new(ctx),
            jobs: jobs::Jobs::default(),
            secrets,
            hosts: hosts_for(addr),
        }));
        announce(&url);
        if opts.open_browser {
            open_browser(&url);
        }
        axum::serve(listener, router(state))
            .with_graceful_shutdown(stopped())
            .await
            .map_err(GuiError::Serve)
    })
}

/// Opens the user's browser; a machine without one is not an error (the
/// URL was printed).
fn open_browser(url: &str) {
    let _ = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_loopback_include_localhost() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(hosts_for(a), ["127.0.0.1:8080", "localhost:8080"]);
        let b: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(hosts_for(b), ["[::1]:80", "localhost:80"]);
        let c: SocketAddr = "192.0.2.7:9".parse().unwrap();
        assert_eq!(hosts_for(c), ["192.0.2.7:9"]);
    }

    #[test]
    fn beyond_loopback_needs_a_password() {
        let ctx = Context {
            config: crate::config::Config::at(std::path::Path::new("/nonexistent")),
            lock: crate::ops::LockSettings {
                timeout: std::time::Duration::from_secs(1),
                on_wait: None,
            },
            keys: crate::crypt::Keyring::none(),
        };
        let opts = GuiOptions {
            port: 0,
            listen: Some("0.0.0.0".parse().unwrap()),
            password: None,
            open_browser: false,
        };
        let e = run(ctx, opts, &|_| panic!("must not start")).unwrap_err();
        assert!(matches!(e, GuiError::NeedsPassword(_)), "{e}");
    }
}
