//! Sealing and opening one age file: a writer that encrypts as bytes
//! arrive (large content never sits whole in memory) and a reader that
//! decrypts and authenticates chunk by chunk (64 KiB each, age's STREAM).
//!
//! Every sealed file's header holds two stanzas wrapping its (fresh,
//! per-file) file key:
//!
//! - a standard `X25519` stanza to the repository key, which `age -d -i
//!   KEY` opens by hand (made with a table of the key's point, `tabled.rs`);
//! - an `epygibus-item` stanza, the file key wrapped with a symmetric key
//!   derived from the same repository key: `ChaCha20-Poly1305(key =
//!   HKDF-SHA-256(ikm = item key, salt = 16 random bytes, info =
//!   "epygibus.d/v1/item"), nonce = 0, plaintext = file key)`, the salt
//!   in hex as its one argument. age implementations ignore stanzas of
//!   types they do not know (the spec's grease), so Debian's age still
//!   opens the file; epygibus opens it with this stanza, which costs a
//!   hash instead of an X25519 multiplication (measured here: 74 µs each,
//!   most of the cost of opening a small item, and a restore opens tens of
//!   thousands).

use std::collections::HashSet;
use std::io::{self, Read, Write};

use age::secrecy::ExposeSecret;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};

use super::{CryptError, RepoKey, Result};

/// The tag of epygibus's own stanza.
const ITEM_TAG: &str = "epygibus-item";
/// HKDF info of its wrap key.
const ITEM_INFO: &[u8] = b"epygibus.d/v1/item";

/// Wraps the file key with the repository's symmetric item key.
pub(super) struct ItemRecipient {
    pub key: [u8; 32],
}

/// Unwraps [`ItemRecipient`]'s stanza.
pub(super) struct ItemIdentity {
    pub key: [u8; 32],
}

fn wrap_key(item_key: &[u8; 32], salt: &[u8]) -> [u8; 32] {
    age_core::primitives::hkdf(salt, ITEM_INFO, item_key)
}

impl age::Recipient for ItemRecipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> std::result::Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let mut salt = [0u8; 16];
        rustix::rand::getrandom(&mut salt, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| age::EncryptError::Io(io::Error::from(e)))?;
        let body = age_core::primitives::aead_encrypt(
            &wrap_key(&self.key, &salt),
            file_key.expose_secret(),
        );
        let stanza = Stanza {
            tag: ITEM_TAG.to_owned(),
            args: vec![hex(&salt)],
            body,
        };
        Ok((vec![stanza], HashSet::new()))
    }
}

impl age::Identity for ItemIdentity {
    fn unwrap_stanza(
        &self,
        stanza: &Stanza,
    ) -> Option<std::result::Result<FileKey, age::DecryptError>> {
        if stanza.tag != ITEM_TAG {
            return None;
        }
        let salt = match stanza.args.as_slice() {
            [s] => unhex(s),
            _ => None,
        };
        let Some(salt) = salt.filter(|s| s.len() == 16) else {
            return Some(Err(age::DecryptError::InvalidHeader));
        };
        let plain = age_core::primitives::aead_decrypt(
            &wrap_key(&self.key, &salt),
            FILE_KEY_BYTES,
            &stanza.body,
        );
        Some(match plain {
            Ok(bytes) => {
                let mut key = Box::new([0u8; FILE_KEY_BYTES]);
                key.copy_from_slice(&bytes);
                Ok(FileKey::new(key))
            }
            Err(_) => Err(age::DecryptError::DecryptionFailed),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Encrypts what is written into the inner writer, as one age file.
pub struct SealedWriter<W: Write> {
    inner: age::stream::StreamWriter<W>,
}

pub(super) fn seal_to<W: Write>(key: &RepoKey, out: W) -> io::Result<SealedWriter<W>> {
    let recipients: [&dyn age::Recipient; 2] = [key.x25519_recipient(), &key.item_recipient];
    let encryptor = age::Encryptor::with_recipients(recipients.into_iter())
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(SealedWriter {
        inner: encryptor.wrap_output(out)?,
    })
}

impl<W: Write> SealedWriter<W> {
    /// Writes the last chunk (an age file is incomplete without it) and
    /// gives the inner writer back.
    pub fn finish(self) -> io::Result<W> {
        self.inner.finish()
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader of the plain bytes of the age file `sealed`, encrypted to
/// `key`; `place` names it in errors. Truncation or any changed byte is a
/// read error when it is reached (each 64 KiB chunk is authenticated), so
/// a reader sees only bytes that were written by a holder of the key.
pub fn open_reader<'r, R: Read + Send + 'r>(
    key: &RepoKey,
    sealed: R,
    place: &str,
) -> Result<Box<dyn Read + Send + 'r>> {
    Ok(Box::new(open_buffered(
        key,
        io::BufReader::new(sealed),
        place,
    )?))
}

/// [`open_reader`] of a reader that buffers already (a slice in memory:
/// no copy into another buffer).
pub(super) fn open_buffered<R: io::BufRead>(
    key: &RepoKey,
    sealed: R,
    place: &str,
) -> Result<age::stream::StreamReader<R>> {
    let undecryptable = |reason: String| CryptError::Undecryptable {
        place: place.to_owned(),
        reason,
    };
    let decryptor =
        age::Decryptor::new_buffered(sealed).map_err(|e| undecryptable(e.to_string()))?;
    // The item stanza first: a hash instead of an X25519 multiplication.
    let identities: [&dyn age::Identity; 2] = [&key.item_identity, &key.identity];
    decryptor
        .decrypt(identities.into_iter())
        .map_err(|e| undecryptable(e.to_string()))
}
