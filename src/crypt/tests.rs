use std::io::{Read, Write};
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};

use super::*;

fn sealed_with(key: &RepoKey, plain: &[u8]) -> Vec<u8> {
    let sealed = key.seal(plain);
    assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
    sealed
}

#[test]
fn sealed_files_open_with_the_repository_key_and_with_plain_age() {
    let key = RepoKey::generate();
    let plain = b"some content".repeat(10_000);
    let sealed = sealed_with(&key, &plain);
    assert_eq!(key.open(&sealed, "x").unwrap(), plain);
    // What `age -d -i KEY` does: only the X25519 stanza, the standard one.
    let standard =
        age::x25519::Identity::from_str(key.identity.to_string().expose_secret()).unwrap();
    let mut back = Vec::new();
    age::Decryptor::new(&sealed[..])
        .unwrap()
        .decrypt(std::iter::once(&standard as &dyn age::Identity))
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, plain);
    // Each file has its own file key and nonce.
    assert_ne!(sealed_with(&key, &plain), sealed);
}

#[test]
fn another_key_truncation_and_changed_bytes_are_refused() {
    let key = RepoKey::generate();
    let other = RepoKey::generate();
    let sealed = sealed_with(&key, &vec![5u8; 200_000]);
    let err = other.open(&sealed, "content/ab/x.gz.age").unwrap_err();
    assert!(err.to_string().contains("content/ab/x.gz.age"), "{err}");
    assert!(key.open(&sealed[..sealed.len() - 100], "t").is_err());
    let mut changed = sealed.clone();
    let at = changed.len() / 2;
    changed[at] ^= 1;
    assert!(key.open(&changed, "t").is_err());
}

#[test]
fn streaming_seal_equals_whole_seal_in_content() {
    let key = RepoKey::generate();
    let mut w = key.seal_to(Vec::new()).unwrap();
    for _ in 0..100 {
        w.write_all(&[1u8; 7777]).unwrap();
    }
    let sealed = w.finish().unwrap();
    assert_eq!(key.open(&sealed, "s").unwrap(), vec![1u8; 777_700]);
}

#[test]
fn token_key_and_key_file_are_stable_and_secret() {
    let key = RepoKey::generate();
    let text = key.file_text("home");
    let again = RepoKey::from_file_text(text.expose_secret()).unwrap();
    assert_eq!(again.recipient(), key.recipient());
    assert_eq!(again.token_key(), key.token_key());
    assert_ne!(RepoKey::generate().token_key(), key.token_key());
    assert!(format!("{key:?}").starts_with("RepoKey(age1"));
    assert!(!format!("{key:?}").contains("SECRET"));
}

fn identity_file(dir: &std::path::Path, keys: &[&RepoKey]) -> std::path::PathBuf {
    let path = dir.join("id.txt");
    let text: String = keys
        .iter()
        .map(|k| k.file_text("x").expose_secret().to_owned())
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn keyring_opens_the_key_file_with_a_recipient_identity_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    let user = RepoKey::generate();
    let repo = RepoKey::generate();
    let wrapped = wrap_key(
        &repo,
        "r",
        &KeyProtection::Recipients(vec![user.recipient()]),
    )
    .unwrap();
    let read = &mut || Ok(wrapped.clone());
    let ring = Keyring {
        identity_file: Some(identity_file(tmp.path(), &[&RepoKey::generate(), &user])),
        ..Keyring::none()
    };
    let got = ring
        .unlock("r", &repo.recipient(), "r/key.age", read)
        .unwrap();
    assert_eq!(got.token_key(), repo.token_key());
    // Remembered: the key file is not read again.
    let got = ring
        .unlock("r", &repo.recipient(), "r/key.age", &mut || {
            panic!("read again")
        })
        .unwrap();
    assert_eq!(got.recipient(), repo.recipient());

    let stranger = Keyring {
        identity_file: Some(identity_file(tmp.path(), &[&RepoKey::generate()])),
        ..Keyring::none()
    };
    let err = stranger
        .unlock("r", &repo.recipient(), "r/key.age", &mut || {
            Ok(wrapped.clone())
        })
        .unwrap_err();
    assert!(matches!(err, CryptError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    let err = Keyring::none()
        .unlock("r", &repo.recipient(), "r/key.age", &mut || {
            Ok(wrapped.clone())
        })
        .unwrap_err();
    assert!(matches!(err, CryptError::NoKey { .. }), "{err}");
}

#[test]
fn keyring_uses_the_repository_key_itself_and_local_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = RepoKey::generate();
    let direct = Keyring {
        identity_file: Some(identity_file(tmp.path(), &[&repo])),
        ..Keyring::none()
    };
    let no_file = &mut || -> std::io::Result<Vec<u8>> { panic!("not needed") };
    assert!(direct.unlock("r", &repo.recipient(), "k", no_file).is_ok());

    let config = tmp.path().join("config");
    let ring = Keyring::from_env(None, &config, None);
    let saved = ring.save_local("home", &repo).unwrap();
    assert_eq!(ring.save_local("home", &repo).unwrap(), saved, "kept once");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let other = RepoKey::generate();
    assert_ne!(ring.save_local("home", &other).unwrap(), saved);
    let fresh = Keyring::from_env(None, &config, None);
    assert_eq!(
        fresh
            .unlock("r", &other.recipient(), "k", no_file)
            .unwrap()
            .recipient(),
        other.recipient()
    );
}

#[test]
fn keyring_asks_for_a_passphrase_and_refuses_a_wrong_one() {
    let repo = RepoKey::generate();
    let wrapped = wrap_key(
        &repo,
        "r",
        &KeyProtection::Passphrase(SecretString::from("correct horse".to_owned())),
    )
    .unwrap();
    let asking = |answer: &'static str| -> PassphrasePrompt {
        Arc::new(move |_: &str| Ok(Some(SecretString::from(answer.to_owned()))))
    };
    let right = Keyring {
        prompt: Some(asking("correct horse")),
        ..Keyring::none()
    };
    let got = right
        .unlock("r", &repo.recipient(), "k", &mut || Ok(wrapped.clone()))
        .unwrap();
    assert_eq!(got.recipient(), repo.recipient());
    let wrong = Keyring {
        prompt: Some(asking("battery staple")),
        ..Keyring::none()
    };
    let err = wrong
        .unlock("r", &repo.recipient(), "k", &mut || Ok(wrapped.clone()))
        .unwrap_err();
    assert!(matches!(err, CryptError::WrongPassphrase { .. }), "{err}");
    let err = Keyring::none()
        .unlock("r", &repo.recipient(), "k", &mut || Ok(wrapped.clone()))
        .unwrap_err();
    assert!(matches!(err, CryptError::NoPassphrase { .. }), "{err}");
}

#[test]
fn only_x25519_recipients_are_accepted() {
    let key = RepoKey::generate();
    assert_eq!(
        parse_recipients(&[key.recipient()]).unwrap(),
        vec![key.recipient()]
    );
    for bad in ["ssh-ed25519 AAAA", "age1xyz", ""] {
        assert!(parse_recipients(&[bad.to_owned()]).is_err(), "{bad}");
    }
}
