//! `ContentToken`: the name of one distinct content, the BLAKE3-256 hash of
//! its bytes. Snapshots store tokens; only the repository turns them into
//! paths.

use std::fmt;
use std::str::FromStr;

/// BLAKE3-256 of a file's content. Two files with the same token have the
/// same bytes, so the content is stored once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentToken([u8; 32]);

/// Text that is not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a content token (64 lowercase hex digits)")]
pub struct BadToken(pub String);

impl ContentToken {
    pub const LEN: usize = 32;

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ContentToken(bytes)
    }

    /// From a slice of exactly 32 bytes (as stored in snapshots and indexes).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(ContentToken)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The token of an in-memory buffer.
    pub fn of(data: &[u8]) -> Self {
        ContentToken(*blake3::hash(data).as_bytes())
    }

    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        ContentToken(*hasher.finalize().as_bytes())
    }

    /// Lowercase hex, as used in content file names.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    /// Name of the fan-out directory holding this content: the first two hex
    /// digits, so no directory grows past a few thousand entries.
    pub fn fan_out(&self) -> String {
        self.to_hex()[..2].to_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// How a repository makes tokens: plain BLAKE3 (anyone holding a file can
/// tell which content file is its copy: `b3sum`), or, in an encrypted
/// repository, BLAKE3 keyed with the repository's token key, so equal
/// content still has one name but names reveal nothing about content.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenHasher {
    Plain,
    Keyed([u8; 32]),
}

impl TokenHasher {
    /// A hasher to stream content into ([`ContentToken::from_hasher`]).
    pub fn hasher(&self) -> blake3::Hasher {
        match self {
            TokenHasher::Plain => blake3::Hasher::new(),
            TokenHasher::Keyed(key) => blake3::Hasher::new_keyed(key),
        }
    }

    /// The token of an in-memory buffer.
    pub fn of(&self, data: &[u8]) -> ContentToken {
        match self {
            TokenHasher::Plain => ContentToken::of(data),
            TokenHasher::Keyed(key) => ContentToken(*blake3::keyed_hash(key, data).as_bytes()),
        }
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.write_str(match self {
            TokenHasher::Plain => "TokenHasher::Plain",
            TokenHasher::Keyed(_) => "TokenHasher::Keyed",
        })
    }
}

impl FromStr for ContentToken {
    type Err = BadToken;

    fn from_str(s: &str) -> Result<Self, BadToken> {
        let bad = || BadToken(s.to_owned());
        if s.len() != 64 {
            return Err(bad());
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            out[i] = (digit(pair[0]).ok_or_else(bad)? << 4) | digit(pair[1]).ok_or_else(bad)?;
        }
        Ok(ContentToken(out))
    }
}

impl fmt::Display for ContentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentToken({})", self.to_hex())
    }
}

impl serde::Serialize for ContentToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ContentToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = serde::Deserialize::deserialize(d)?;
        ContentToken::from_slice(&bytes)
            .ok_or_else(|| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_blake3_of_content() {
        // Known BLAKE3 hash of the empty input.
        assert_eq!(
            ContentToken::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn keyed_tokens_differ_from_plain_and_stream_alike() {
        let data = vec![9u8; 70_000];
        let keyed = TokenHasher::Keyed([7; 32]);
        assert_eq!(TokenHasher::Plain.of(&data), ContentToken::of(&data));
        assert_ne!(keyed.of(&data), ContentToken::of(&data));
        assert_ne!(keyed.of(&data), TokenHasher::Keyed([8; 32]).of(&data));
        let mut h = keyed.hasher();
        for chunk in data.chunks(1000) {
            h.update(chunk);
        }
        assert_eq!(ContentToken::from_hasher(&h), keyed.of(&data));
    }

    #[test]
    fn hex_round_trip() {
        let t = ContentToken::of(b"hello");
        let parsed: ContentToken = t.to_hex().parse().unwrap();
        assert_eq!(parsed, t);
        assert_eq!(t.fan_out(), t.to_hex()[..2]);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!("abc".parse::<ContentToken>().is_err());
        let upper = ContentToken::of(b"x").to_hex().to_uppercase();
        assert!(upper.parse::<ContentToken>().is_err());
        let mut bad = ContentToken::of(b"x").to_hex();
        bad.replace_range(10..11, "g");
        assert!(bad.parse::<ContentToken>().is_err());
    }

    #[test]
    fn streaming_hash_equals_whole_hash() {
        let data = vec![7u8; 100_000];
        let mut h = blake3::Hasher::new();
        for chunk in data.chunks(333) {
            h.update(chunk);
        }
        assert_eq!(ContentToken::from_hasher(&h), ContentToken::of(&data));
    }
}
