//! Streaming an object: one GET, resumed from where it broke off (a
//! ranged GET pinned to the same ETag) when the connection fails midway,
//! so a long restore survives a flaky network.

use std::io::{self, Read};

use super::client::{Client, Request, S3Error, Stream};

/// How many times one read resumes before giving up.
const RESUMES: u32 = 5;

pub struct ObjectStream {
    /// Its own handle (clones share the connection pool): the stream
    /// outlives the borrow of the store.
    client: Client,
    key: String,
    etag: Option<String>,
    offset: u64,
    body: Option<ureq::BodyReader<'static>>,
    resumes: u32,
}

/// Starts streaming `key`.
pub fn open(client: &Client, key: &str) -> Result<ObjectStream, S3Error> {
    let client = client.clone();
    let Stream { headers, body, .. } = client.stream(&Request::new("GET", Some(key)), &[200])?;
    Ok(ObjectStream {
        client,
        key: key.to_owned(),
        etag: headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        offset: 0,
        body: Some(body),
        resumes: 0,
    })
}

impl ObjectStream {
    fn resume(&mut self) -> io::Result<()> {
        let mut req =
            Request::new("GET", Some(&self.key)).header("range", format!("bytes={}-", self.offset));
        if let Some(etag) = &self.etag {
            req = req.header("if-match", etag.clone());
        }
        let stream = self
            .client
            .stream(&req, &[206])
            .map_err(|e| e.into_io(&self.client.bucket))?;
        self.body = Some(stream.body);
        Ok(())
    }
}

impl Read for ObjectStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.body.is_none() {
                self.resume()?;
            }
            let body = self.body.as_mut().expect("resumed above");
            match body.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if self.resumes < RESUMES => {
                    self.resumes += 1;
                    self.body = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
