//! Where the key of an encrypted repository comes from, in this order:
//!
//! 1. an identity file (`--identity FILE`, else `EPYGIBUS_IDENTITY`)
//!    holding the repository key itself;
//! 2. this machine's copy of the repository key in the configuration
//!    (`<config>/keys/*.txt`, written by `new_repo` and `attach`), so
//!    backups run unattended;
//! 3. `key.age` in the repository, opened with the identity file's keys
//!    (the user's own age identity) or, for a passphrase repository, with
//!    `EPYGIBUS_PASSPHRASE` or a passphrase asked on the terminal.
//!
//! Keys are matched by their public key, which the repository's `format`
//! records, so a wrong key is told as such before anything is read or
//! written. A key found once is remembered for the rest of the process.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use age::secrecy::{ExposeSecret, SecretString};

use super::{CryptError, RepoKey, Result};

/// Asks for a passphrase (the face decides how: a terminal prompt that
/// does not echo). `None`: nobody can be asked.
pub type PassphrasePrompt = Arc<dyn Fn(&str) -> io::Result<Option<SecretString>> + Send + Sync>;

/// A passphrase given to `new_repo`.
pub type Passphrase = SecretString;

/// The keys this process may use, and those it has found.
#[derive(Clone, Default)]
pub struct Keyring {
    pub(super) identity_file: Option<PathBuf>,
    pub(super) local_dir: Option<PathBuf>,
    pub(super) passphrase: Option<SecretString>,
    pub(super) prompt: Option<PassphrasePrompt>,
    pub(super) found: Arc<Mutex<HashMap<String, Arc<RepoKey>>>>,
}

/// Name of the directory of the configuration holding this machine's copies
/// of repository keys.
pub const LOCAL_KEYS_DIR: &str = "keys";

impl Keyring {
    /// A keyring with nothing to offer: plain repositories only.
    pub fn none() -> Keyring {
        Keyring::default()
    }

    /// `identity` (from `--identity`), else `EPYGIBUS_IDENTITY`; the local
    /// keys under `config_root`; `EPYGIBUS_PASSPHRASE`, else `prompt`.
    pub fn from_env(
        identity: Option<PathBuf>,
        config_root: &Path,
        prompt: Option<PassphrasePrompt>,
    ) -> Keyring {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Keyring {
            identity_file: identity.or_else(|| var("EPYGIBUS_IDENTITY").map(PathBuf::from)),
            local_dir: Some(config_root.join(LOCAL_KEYS_DIR)),
            passphrase: var("EPYGIBUS_PASSPHRASE")
                .map(|p| SecretString::from(p.to_string_lossy().into_owned())),
            prompt,
            found: Arc::default(),
        }
    }

    /// The passphrase for a new repository: `EPYGIBUS_PASSPHRASE`, else
    /// asked twice. None when neither is possible.
    pub fn new_passphrase(&self) -> Result<Option<SecretString>> {
        if let Some(p) = &self.passphrase {
            return Ok(Some(p.clone()));
        }
        let Some(prompt) = &self.prompt else {
            return Ok(None);
        };
        let io_err = |err| CryptError::Io {
            action: "read the passphrase".to_owned(),
            err,
        };
        let Some(first) = prompt("Passphrase for the new repository: ").map_err(io_err)? else {
            return Ok(None);
        };
        let again = prompt("The same passphrase again: ")
            .map_err(io_err)?
            .unwrap_or_default();
        if first.expose_secret() != again.expose_secret() {
            return Err(CryptError::Io {
                action: "read the passphrase".to_owned(),
                err: io::Error::other("the two passphrases differ; nothing was created"),
            });
        }
        if first.expose_secret().is_empty() {
            return Err(CryptError::Io {
                action: "read the passphrase".to_owned(),
                err: io::Error::other("the passphrase is empty; nothing was created"),
            });
        }
        Ok(Some(first))
    }

    /// Remembers a key (one just made, or unlocked elsewhere).
    pub fn remember(&self, key: Arc<RepoKey>) {
        lock(&self.found).insert(key.recipient(), key);
    }

    /// The key of a repository whose `format` names `recipient`.
    /// `key_file` reads its `key.age` (at `key_place`); `repo` names the
    /// repository in errors.
    pub fn unlock(
        &self,
        repo: &str,
        recipient: &str,
        key_place: &str,
        key_file: &mut dyn FnMut() -> io::Result<Vec<u8>>,
    ) -> Result<Arc<RepoKey>> {
        if let Some(k) = lock(&self.found).get(recipient) {
            return Ok(k.clone());
        }
        let mut given = self.given_keys()?;
        let mut local = self.local_keys();
        for keys in [&mut given, &mut local] {
            if let Some(i) = keys.iter().position(|k| k.recipient() == recipient) {
                let key = Arc::new(keys.swap_remove(i));
                self.remember(key.clone());
                return Ok(key);
            }
        }
        let sealed = key_file().map_err(|err| CryptError::Io {
            action: format!("read {key_place}"),
            err,
        })?;
        let key = self.open_key_file(repo, key_place, &sealed, &given)?;
        if key.recipient() != recipient {
            return Err(CryptError::BadKeyFile {
                place: key_place.to_owned(),
                reason: "it holds another key than the repository's `format` names".to_owned(),
            });
        }
        let key = Arc::new(key);
        self.remember(key.clone());
        Ok(key)
    }

    fn open_key_file(
        &self,
        repo: &str,
        key_place: &str,
        sealed: &[u8],
        given: &[RepoKey],
    ) -> Result<RepoKey> {
        let bad = |reason: String| CryptError::BadKeyFile {
            place: key_place.to_owned(),
            reason,
        };
        let decryptor = age::Decryptor::new(sealed).map_err(|e| bad(e.to_string()))?;
        let plain = if decryptor.is_scrypt() {
            let passphrase = self.passphrase_for(repo)?;
            let identity = age::scrypt::Identity::new(passphrase);
            let mut reader = match decryptor.decrypt(std::iter::once(&identity as _)) {
                Ok(r) => r,
                Err(age::DecryptError::DecryptionFailed)
                | Err(age::DecryptError::KeyDecryptionFailed)
                | Err(age::DecryptError::NoMatchingKeys) => {
                    return Err(CryptError::WrongPassphrase {
                        repo: repo.to_owned(),
                        key_file: key_place.to_owned(),
                    });
                }
                Err(e) => return Err(bad(e.to_string())),
            };
            read_all(&mut reader).map_err(|e| bad(e.to_string()))?
        } else {
            let Some(file) = &self.identity_file else {
                return Err(CryptError::NoKey {
                    repo: repo.to_owned(),
                    passphrase: String::new(),
                });
            };
            let identities: Vec<&dyn age::Identity> =
                given.iter().map(|k| k.identity() as _).collect();
            let mut reader = match decryptor.decrypt(identities.into_iter()) {
                Ok(r) => r,
                Err(age::DecryptError::NoMatchingKeys)
                | Err(age::DecryptError::DecryptionFailed)
                | Err(age::DecryptError::KeyDecryptionFailed) => {
                    return Err(CryptError::WrongKey {
                        repo: repo.to_owned(),
                        given: file.display().to_string(),
                        key_file: key_place.to_owned(),
                    });
                }
                Err(e) => return Err(bad(e.to_string())),
            };
            read_all(&mut reader).map_err(|e| bad(e.to_string()))?
        };
        let text = String::from_utf8(plain).map_err(|_| bad("it is not text".to_owned()))?;
        RepoKey::from_file_text(&text).ok_or_else(|| bad("it holds no age identity".to_owned()))
    }

    fn passphrase_for(&self, repo: &str) -> Result<SecretString> {
        if let Some(p) = &self.passphrase {
            return Ok(p.clone());
        }
        let asked = match &self.prompt {
            Some(prompt) => {
                prompt(&format!("Passphrase of repository {repo}: ")).map_err(|err| {
                    CryptError::Io {
                        action: "read the passphrase".to_owned(),
                        err,
                    }
                })?
            }
            None => None,
        };
        asked.ok_or_else(|| CryptError::NoPassphrase {
            repo: repo.to_owned(),
        })
    }

    /// The X25519 identities of the identity file, if one was given.
    fn given_keys(&self) -> Result<Vec<RepoKey>> {
        let Some(path) = &self.identity_file else {
            return Ok(Vec::new());
        };
        let bad = |reason: String| CryptError::BadIdentityFile {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if bytes.starts_with(b"age-encryption.org/") {
            return Err(bad(
                "it is itself encrypted; decrypt it first (age -d FILE > key.txt)".to_owned(),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|_| bad("it is not text".to_owned()))?;
        let keys = identity_lines(&text)
            .map(|l| {
                age::x25519::Identity::from_str(l)
                    .map(RepoKey::from_identity)
                    .map_err(|_| {
                        bad(format!(
                            "a line starting `{}` is not an age X25519 identity",
                            &l[..l.len().min(16)]
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(bad(
                "it holds no age identity (AGE-SECRET-KEY-1… line)".to_owned()
            ));
        }
        Ok(keys)
    }

    /// This machine's copies of repository keys; unreadable files are
    /// passed over.
    fn local_keys(&self) -> Vec<RepoKey> {
        let Some(dir) = &self.local_dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".txt"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| RepoKey::from_file_text(&t))
            .collect()
    }

    /// Keeps `key` in the configuration (`keys/<name>.txt`, readable by the
    /// user only), so later runs on this machine need no identity. Returns
    /// where it is; a copy already there is kept.
    pub fn save_local(&self, name: &str, key: &RepoKey) -> Result<PathBuf> {
        let dir = self.local_dir.clone().ok_or_else(|| CryptError::Io {
            action: "keep the repository key".to_owned(),
            err: io::Error::other("no configuration directory"),
        })?;
        let io_err = |what: &Path| {
            let what = what.display().to_string();
            move |err| CryptError::Io {
                action: format!("write {what}"),
                err,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for n in 0..1000 {
            let file = if n == 0 {
                format!("{name}.txt")
            } else {
                format!("{name}.{n}.txt")
            };
            let path = dir.join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                if RepoKey::from_file_text(&text).is_some_and(|k| k.recipient() == key.recipient())
                {
                    return Ok(path);
                }
                continue;
            }
            if write_private_new(&path, key.file_text(name).expose_secret().as_bytes())
                .map_err(io_err(&path))?
            {
                return Ok(path);
            }
        }
        Err(CryptError::Io {
            action: format!("keep the key of {name} in {}", dir.display()),
            err: io::Error::other("too many key files of that name"),
        })
    }
}

/// Lines of an identity file that hold an identity.
fn identity_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn read_all(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes a new file readable by its owner only; false when it exists.
fn write_private_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(true)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
