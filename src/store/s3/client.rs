//! A small synchronous S3 client: signed requests over one pooled HTTP
//! agent, retried with backoff on 5xx answers, throttling and network
//! errors, and S3's error answers turned into sentences that say what to
//! do (403: the keys; a missing bucket: its name and the endpoint).

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ureq::http;

use super::settings::Settings;
use super::sign::{self, ToSign};
use super::xml;

/// Requests sent by this process (every attempt counts), for `bu --stats`
/// and the benchmark.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Requests sent to S3 servers by this process so far.
pub fn requests_sent() -> u64 {
    REQUESTS.load(Ordering::Relaxed)
}

/// An answer S3 gave, or why none came.
#[derive(Debug)]
pub struct S3Error {
    /// HTTP status, None when no answer came (network, timeout).
    pub status: Option<u16>,
    /// S3's error code (`NoSuchKey`, `AccessDenied`, …) when it sent one.
    pub code: String,
    pub message: String,
    /// An earlier attempt of the same request may have taken effect
    /// although its answer was lost.
    pub ambiguous: bool,
}

impl S3Error {
    /// As an I/O error whose kind callers branch on (NotFound) and whose
    /// text says what to do.
    pub fn into_io(self, bucket: &str) -> io::Error {
        let kind = match (self.status, self.code.as_str()) {
            (_, "NoSuchBucket") => io::ErrorKind::Other,
            (Some(404), _) | (_, "NoSuchKey") | (_, "NoSuchUpload") => io::ErrorKind::NotFound,
            (Some(403), _) => io::ErrorKind::PermissionDenied,
            (None, _) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        let text = match (self.status, self.code.as_str()) {
            (_, "NoSuchBucket") => format!(
                "bucket `{bucket}` does not exist on this server; check the bucket name, AWS_ENDPOINT_URL and AWS_REGION"
            ),
            (Some(403), _) => format!(
                "access denied by the S3 server ({} {}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may use bucket `{bucket}`",
                self.code, self.message
            ),
            (None, _) => format!("the S3 server did not answer: {}", self.message),
            (Some(s), _) => format!("the S3 server answered {s} {} {}", self.code, self.message)
                .trim_end()
                .to_owned(),
        };
        io::Error::new(kind, text)
    }
}

/// One request to make.
pub struct Request<'a> {
    pub method: &'static str,
    /// The object key, None for the bucket itself.
    pub key: Option<&'a str>,
    pub query: Vec<(String, String)>,
    /// Extra headers (lowercase names), all signed.
    pub headers: Vec<(&'static str, String)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, key: Option<&'a str>) -> Request<'a> {
        Request {
            method,
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
        }
    }

    pub fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_owned(), v.into()));
        self
    }

    pub fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }
}

/// A whole answer.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// An earlier attempt may have taken effect (see [`S3Error::ambiguous`]).
    pub ambiguous: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A streamed answer (a GET of a whole object).
pub struct Stream {
    pub headers: http::HeaderMap,
    pub body: ureq::BodyReader<'static>,
}

#[derive(Clone)]
pub struct Client {
    pub settings: Settings,
    pub bucket: String,
    agent: ureq::Agent,
}

/// Statuses and codes worth another attempt.
fn retryable(status: u16, code: &str) -> bool {
    matches!(status, 500 | 502 | 503 | 504 | 429 | 408)
        || matches!(
            code,
            "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
        )
        // S3 asks for a retry when two conditional writes meet.
        || (status == 409 && code == "ConditionalRequestConflict")
}

impl Client {
    pub fn new(settings: Settings, bucket: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(64)
            .max_idle_connections_per_host(32)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(settings.timeout))
            .timeout_send_body(Some(settings.timeout * 2))
            // A GET of a large object streams for long; each read must
            // still make progress.
            .timeout_per_read(Some(settings.timeout))
            .user_agent(concat!("epygibus/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            settings,
            bucket: bucket.to_owned(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The path and host of a key (path-style or virtual-hosted).
    fn path_and_host(&self, key: Option<&str>) -> (String, String) {
        let key = key.map(|k| sign::uri_encode(k, true)).unwrap_or_default();
        if self.settings.path_style {
            let path = if key.is_empty() {
                format!("/{}", self.bucket)
            } else {
                format!("/{}/{key}", self.bucket)
            };
            (path, self.settings.host.clone())
        } else {
            (
                format!("/{key}"),
                format!("{}.{}", self.bucket, self.settings.host),
            )
        }
    }

    fn build(&self, req: &Request<'_>) -> Result<http::Request<Vec<u8>>, S3Error> {
        let (path, host) = self.path_and_host(req.key);
        let now = crate::clock::now_secs();
        let amz_date = sign::amz_date(now);
        let payload = sign::sha256_hex(req.body);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.clone()),
            ("x-amz-content-sha256".into(), payload.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        if let Some(token) = &self.settings.credentials.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        headers.extend(req.headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let auth = sign::authorization(
            &self.settings.credentials,
            &self.settings.region,
            &amz_date,
            &ToSign {
                method: req.method,
                path: &path,
                query: &req.query,
                headers: &headers,
                payload_sha256: &payload,
            },
        );
        let query = sign::canonical_query(&req.query);
        let uri = if query.is_empty() {
            format!("{}://{host}{path}", self.settings.scheme)
        } else {
            format!("{}://{host}{path}?{query}", self.settings.scheme)
        };
        let mut builder = http::Request::builder().method(req.method).uri(uri);
        for (k, v) in headers.iter().filter(|(k, _)| k != "host") {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder
            .header("authorization", auth)
            .body(req.body.to_vec())
            .map_err(|e| S3Error {
                status: None,
                code: String::new(),
                message: format!("bad request: {e}"),
                ambiguous: false,
            })
    }

    /// Sends `req`, retrying as the settings say; returns the answer,
    /// success or not, once it is final. 2xx, 3xx and 4xx other than
    /// throttling are final; 5xx and network errors are tried again.
    fn run<T>(
        &self,
        req: &Request<'_>,
        mut take: impl FnMut(http::Response<ureq::Body>) -> Result<T, Retry>,
    ) -> Result<(T, bool), S3Error> {
        let mut ambiguous = false;
        let mut wait = self.settings.backoff;
        let mut attempt = 1;
        loop {
            REQUESTS.fetch_add(1, Ordering::Relaxed);
            let outcome = self
                .agent
                .run(self.build(req)?)
                .map_err(|e| Retry::Network(e.to_string()))
                .and_then(&mut take);
            let last = attempt >= self.settings.attempts;
            match outcome {
                Ok(v) => return Ok((v, ambiguous)),
                Err(Retry::Final(mut e)) => {
                    e.ambiguous |= ambiguous;
                    return Err(e);
                }
                Err(Retry::Again(mut e)) if last => {
                    e.ambiguous |= ambiguous;
                    return Err(e);
                }
                Err(Retry::Network(message)) if last => {
                    return Err(S3Error {
                        status: None,
                        code: String::new(),
                        message: format!("{message} (after {attempt} attempts)"),
                        ambiguous: true,
                    });
                }
                Err(_) => {}
            }
            // A lost answer or a server error after the body went out:
            // the write may have happened.
            ambiguous |= req.method != "GET" && req.method != "HEAD";
            std::thread::sleep(jitter(wait));
            wait = (wait * 2).min(Duration::from_secs(10));
            attempt += 1;
        }
    }

    /// Sends `req` and reads the whole answer; any status comes back as an
    /// [`Answer`] except the retryable ones, which are retried, and S3
    /// errors, which come back as [`S3Error`] when `ok` refuses the status.
    pub fn send(&self, req: &Request<'_>, ok: &[u16]) -> Result<Answer, S3Error> {
        let answer = self.run(req, |resp| {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .map_err(|e| Retry::Network(e.to_string()))?;
            if ok.contains(&status) && !error_in_ok(req, status, &body) {
                return Ok(Answer {
                    status,
                    headers,
                    body,
                    ambiguous: false,
                });
            }
            let e = error_of(status, &body);
            if retryable(status, &e.code) {
                Err(Retry::Again(e))
            } else {
                Err(Retry::Final(e))
            }
        });
        answer.map(|(mut a, ambiguous)| {
            a.ambiguous = ambiguous;
            a
        })
    }

    /// Sends a GET and returns the body as a stream once the answer's
    /// status is `ok` (errors and retries as [`Client::send`]).
    pub fn stream(&self, req: &Request<'_>, ok: &[u16]) -> Result<Stream, S3Error> {
        let streamed = self.run(req, |resp| {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            if ok.contains(&status) {
                return Ok(Stream {
                    headers,
                    body: resp.into_body().into_reader(),
                });
            }
            let mut body = Vec::new();
            let _ = resp
                .into_body()
                .into_reader()
                .take(1 << 20)
                .read_to_end(&mut body);
            let e = error_of(status, &body);
            if retryable(status, &e.code) {
                Err(Retry::Again(e))
            } else {
                Err(Retry::Final(e))
            }
        });
        streamed.map(|(s, _)| s)
    }
}

/// What one attempt came to.
enum Retry {
    /// An error answer worth another attempt.
    Again(S3Error),
    /// An error answer that another attempt would not change.
    Final(S3Error),
    /// No answer (connection refused or reset, timeout).
    Network(String),
}

/// CompleteMultipartUpload and CopyObject may answer 200 and put an error
/// in the body (S3 documents this).
fn error_in_ok(req: &Request<'_>, status: u16, body: &[u8]) -> bool {
    status == 200
        && req.method == "POST"
        && req.query.iter().any(|(k, _)| k == "uploadId")
        && body.windows(7).any(|w| w == b"<Error>")
}

fn error_of(status: u16, body: &[u8]) -> S3Error {
    let text = String::from_utf8_lossy(body);
    S3Error {
        status: Some(status),
        code: xml::field(&text, "Code").unwrap_or_default(),
        message: xml::field(&text, "Message").unwrap_or_default(),
        ambiguous: false,
    }
}

/// `d` plus up to a quarter more, so clients that failed together do not
/// come back together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos() as u64);
    d + Duration::from_nanos(nanos % (d.as_nanos() as u64 / 4 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_sentences_with_kinds() {
        let e = |status, code: &str| S3Error {
            status,
            code: code.into(),
            message: "m".into(),
            ambiguous: false,
        };
        let missing = e(Some(404), "NoSuchKey").into_io("b");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let bucket = e(Some(404), "NoSuchBucket").into_io("b");
        assert_ne!(
            bucket.kind(),
            io::ErrorKind::NotFound,
            "a missing bucket must not look like a missing object"
        );
        assert!(bucket.to_string().contains("bucket `b` does not exist"));
        let denied = e(Some(403), "AccessDenied").into_io("b");
        assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
        assert!(denied.to_string().contains("AWS_ACCESS_KEY_ID"));
        assert!(retryable(503, ""));
        assert!(retryable(400, "RequestTimeout"));
        assert!(!retryable(412, "PreconditionFailed"));
        assert!(!retryable(404, "NoSuchKey"));
    }
}
