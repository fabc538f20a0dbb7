//! The standard age `X25519` stanza, made faster for a recipient that
//! every file of a run is encrypted to.
//!
//! Each file needs a fresh ephemeral secret `e` and two X25519
//! multiplications: the ephemeral share `e·B` and the shared secret
//! `e·R`, `R` the repository key's point. The age crate computes `e·R`
//! with the Montgomery ladder (measured on the 2-core bench machine: about
//! 100 µs, two thirds of the cost of encrypting a small item, and a first
//! backup encrypts tens of thousands). `R` is the same for every file, so
//! here it gets what `B` has in curve25519-dalek: a table of its
//! multiples, built once (about 10 ms), after which `e·R` costs what `e·B`
//! does (about 25 µs). The result is the same number the ladder gives (the
//! u-coordinate of `e·R`; a unit test compares them), the stanza is
//! byte-for-byte the format of the age spec, and every file still has its
//! own ephemeral secret and file key: only the arithmetic is different.
//! The exchange (everything but wrapping the file key) does not depend on
//! the file, so it can be made ahead of time (`ahead.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use base64::prelude::{BASE64_STANDARD_NO_PAD, Engine};
use curve25519_dalek::edwards::{EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::traits::BasepointTable;
use zeroize::Zeroizing;

use super::ahead::Ahead;

/// The stanza tag and HKDF label of the age spec's X25519 recipient type.
const X25519_TAG: &str = "X25519";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// An age X25519 recipient with a precomputed table of its point, and
/// exchanges made ahead of time for it (`ahead.rs`).
pub(super) struct TabledRecipient {
    point: Arc<RecipientPoint>,
    ahead: Ahead,
}

impl TabledRecipient {
    /// The table for `recipient`, or `None` when its public key is not a
    /// point of the curve (never for a key age generated; the caller then
    /// keeps age's own recipient).
    pub fn new(recipient: &age::x25519::Recipient) -> Option<TabledRecipient> {
        let point = Arc::new(RecipientPoint::new(recipient)?);
        Some(TabledRecipient {
            ahead: Ahead::new(Arc::clone(&point)),
            point,
        })
    }

    /// Up to `files` more files will be sealed soon: make their exchanges
    /// while a core is idle.
    pub fn expect(&self, files: usize) {
        self.ahead.expect(files);
    }

    /// No more files than those already sealed: stop making exchanges.
    pub fn expect_none(&self) {
        self.ahead.expect_none();
    }
}

impl age::Recipient for TabledRecipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        let exchange = match self.ahead.take() {
            Some(ready) => ready,
            None => self.point.exchange().map_err(age::EncryptError::Io)?,
        };
        Ok((vec![exchange.stanza(file_key)], HashSet::new()))
    }
}

/// The recipient's public key and the table of its multiples.
pub(super) struct RecipientPoint {
    public: [u8; 32],
    table: EdwardsBasepointTable,
}

impl RecipientPoint {
    pub fn new(recipient: &age::x25519::Recipient) -> Option<RecipientPoint> {
        let public = public_bytes(recipient)?;
        // Either sign gives the same u-coordinate of every multiple.
        let point = MontgomeryPoint(public).to_edwards(0)?;
        Some(RecipientPoint {
            public,
            table: EdwardsBasepointTable::create(&point),
        })
    }

    /// X25519(`secret`, recipient), as RFC 7748 defines it.
    fn shared_secret(&self, secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.table.mul_base_clamped(*secret).to_montgomery().0)
    }

    /// One exchange with a fresh ephemeral secret, which is then dropped.
    pub fn exchange(&self) -> std::io::Result<Exchange> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rustix::rand::getrandom(&mut secret[..], rustix::rand::GetRandomFlags::empty())?;
        let share = EdwardsPoint::mul_base_clamped(*secret).to_montgomery().0;
        let shared = self.shared_secret(&secret);
        if shared.iter().all(|&b| b == 0) {
            // As age does: only a broken random source gets here.
            return Err(std::io::Error::other(
                "the random source gave an all-zero X25519 share",
            ));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&share);
        salt[32..].copy_from_slice(&self.public);
        let wrap_key = age_core::primitives::hkdf(&salt, X25519_LABEL, &shared[..]);
        Ok(Exchange {
            share,
            wrap_key: Zeroizing::new(wrap_key),
        })
    }
}

/// What one file's X25519 stanza needs besides the file key: the
/// ephemeral share and the key that wraps the file key. Used once.
pub(super) struct Exchange {
    share: [u8; 32],
    wrap_key: Zeroizing<[u8; 32]>,
}

impl Exchange {
    /// The stanza wrapping `file_key` (consumes the exchange: one file).
    pub fn stanza(self, file_key: &FileKey) -> Stanza {
        Stanza {
            tag: X25519_TAG.to_owned(),
            args: vec![BASE64_STANDARD_NO_PAD.encode(self.share)],
            body: age_core::primitives::aead_encrypt(&self.wrap_key, file_key.expose_secret()),
        }
    }

    #[cfg(test)]
    pub fn share(&self) -> [u8; 32] {
        self.share
    }
}

/// The 32 bytes of an `age1…` recipient.
fn public_bytes(recipient: &age::x25519::Recipient) -> Option<[u8; 32]> {
    age_core::primitives::bech32_decode(
        &recipient.to_string(),
        |_| (),
        |hrp| {
            if hrp.as_str() == "age" {
                Ok(())
            } else {
                Err(())
            }
        },
        |_, bytes| bytes.collect::<Vec<u8>>().try_into().map_err(|_| ()),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::Identity as _;
    use age::Recipient as _;

    #[test]
    fn the_table_gives_what_the_ladder_gives() {
        let identity = age::x25519::Identity::generate();
        let tabled = RecipientPoint::new(&identity.to_public()).unwrap();
        for _ in 0..200 {
            let mut secret = [0u8; 32];
            rustix::rand::getrandom(&mut secret, rustix::rand::GetRandomFlags::empty()).unwrap();
            // curve25519-dalek's Montgomery ladder, as x25519-dalek uses it.
            let ladder = MontgomeryPoint(tabled.public).mul_clamped(secret);
            assert_eq!(*tabled.shared_secret(&secret), ladder.0);
        }
    }

    #[test]
    fn ages_own_identity_unwraps_the_stanza() {
        let identity = age::x25519::Identity::generate();
        let tabled = TabledRecipient::new(&identity.to_public()).unwrap();
        let file_key = FileKey::new(Box::new(*b"sixteen byte key"));
        let (stanzas, _) = tabled.wrap_file_key(&file_key).unwrap();
        assert_eq!(stanzas.len(), 1);
        let unwrapped = identity.unwrap_stanza(&stanzas[0]).unwrap().unwrap();
        assert_eq!(unwrapped.expose_secret(), b"sixteen byte key");
        // Another key's identity finds nothing in it.
        let other = age::x25519::Identity::generate();
        assert!(!matches!(other.unwrap_stanza(&stanzas[0]), Some(Ok(_))));
        // Exchanges made ahead (or inline, if the thread is slow) as well.
        tabled.expect(5);
        std::thread::sleep(std::time::Duration::from_millis(100));
        for _ in 0..5 {
            let (stanzas, _) = tabled.wrap_file_key(&file_key).unwrap();
            let unwrapped = identity.unwrap_stanza(&stanzas[0]).unwrap().unwrap();
            assert_eq!(unwrapped.expose_secret(), b"sixteen byte key");
        }
    }
}
