//! The original's content tokens: the SHA-1 of the content in hex, and
//! readers that check content against it while it streams.

use std::fmt;
use std::io::{self, Read};

use sha1::{Digest, Sha1};

/// A SHA-1 as the original named content by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha1Hex(pub [u8; 20]);

impl Sha1Hex {
    /// 40 hex digits (either case).
    pub fn parse(hex: &[u8]) -> Option<Sha1Hex> {
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Sha1Hex(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn of(data: &[u8]) -> Sha1Hex {
        Sha1Hex(Sha1::digest(data).into())
    }
}

impl fmt::Debug for Sha1Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Sha1Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Passes content through, hashing it; at the end of the stream it fails
/// (`InvalidData`, naming `what`) when the content is not the expected
/// size and SHA-1. A reader that consumes everything thus never accepts
/// damaged content.
pub struct Verified<R> {
    inner: R,
    hasher: Sha1,
    seen: u64,
    want: Sha1Hex,
    want_size: Option<u64>,
    what: String,
    done: bool,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, want: Sha1Hex, want_size: Option<u64>, what: String) -> Self {
        Verified {
            inner,
            hasher: Sha1::new(),
            seen: 0,
            want,
            want_size,
            what,
            done: false,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.hasher.update(&buf[..n]);
            self.seen += n as u64;
            return Ok(n);
        }
        let got = Sha1Hex(self.hasher.clone().finalize().into());
        if got != self.want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not match its SHA-1 (it holds content with SHA-1 {got}): it is damaged",
                    self.what
                ),
            ));
        }
        if let Some(size) = self.want_size
            && size != self.seen
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes but the snapshot records {size}",
                    self.what, self.seen
                ),
            ));
        }
        self.done = true;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        let hex = b"1eb2bb9856b1a1d9c85984ae64b514cd18e0d50f";
        let t = Sha1Hex::parse(hex).unwrap();
        assert_eq!(t.to_hex().as_bytes(), hex);
        assert!(Sha1Hex::parse(b"1eb2").is_none());
        assert!(Sha1Hex::parse(&[b'g'; 40]).is_none());
        assert_eq!(
            Sha1Hex::of(b"hello\n").to_hex(),
            "f572d396fae9206628714fb2ce00f72e94f2258f"
        );
    }

    #[test]
    fn verified_reader_refuses_other_content() {
        let want = Sha1Hex::of(b"hello\n");
        let mut ok = Vec::new();
        Verified::new(&b"hello\n"[..], want, Some(6), "x".into())
            .read_to_end(&mut ok)
            .unwrap();
        assert_eq!(ok, b"hello\n");
        let err = Verified::new(&b"hellO\n"[..], want, None, "/r/f/57/2d".into())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(
            err.to_string().contains("/r/f/57/2d does not match"),
            "{err}"
        );
        let err = Verified::new(&b"hello\n"[..], want, Some(7), "x".into())
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("records 7"), "{err}");
    }
}
