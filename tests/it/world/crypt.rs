//! Age keys for tests of encrypted repositories, and a search for
//! plaintext that undoes compression wherever it can.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

/// A new age identity written to `dir/name` as `age-keygen` writes it;
/// returns the file and its public key.
pub fn new_identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let path = dir.join(name);
    fs::write(
        &path,
        format!(
            "# public key: {public}\n{}\n",
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    (path, public)
}

/// Every stream of `bytes` that decompresses: gzip members and zip
/// entries found at any offset (`1f 8b 08`, a zip local header), inflated
/// as far as they go.
fn decompressed(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..bytes.len().saturating_sub(4) {
        if bytes[i..].starts_with(&[0x1f, 0x8b, 0x08]) {
            let mut plain = Vec::new();
            let _ = flate2::read::MultiGzDecoder::new(&bytes[i..]).read_to_end(&mut plain);
            if !plain.is_empty() {
                out.push(plain);
            }
        }
        if bytes[i..].starts_with(b"PK\x03\x04") && i + 30 <= bytes.len() {
            let h = &bytes[i..];
            let name_len = u16::from_le_bytes([h[26], h[27]]) as usize;
            let extra_len = u16::from_le_bytes([h[28], h[29]]) as usize;
            let data = i + 30 + name_len + extra_len;
            if data <= bytes.len() {
                let mut plain = Vec::new();
                let _ = flate2::read::DeflateDecoder::new(&bytes[data..]).read_to_end(&mut plain);
                if !plain.is_empty() {
                    out.push(plain);
                }
            }
        }
    }
    out
}

/// Where any of `needles` appears under `root`: in a file or directory
/// name, in a file's bytes, or in anything they decompress to. Returns
/// "what where" for each find, and how many files were searched.
pub fn plaintext_finds(root: &Path, needles: &[&[u8]]) -> (Vec<String>, usize) {
    let mut finds = Vec::new();
    let mut files = 0;
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            for n in needles {
                if has(rel.as_bytes(), n) {
                    finds.push(format!("{} in the name {rel}", String::from_utf8_lossy(n)));
                }
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() {
                finds.push(format!("{rel} is not a regular file"));
                continue;
            }
            files += 1;
            finds.extend(finds_in(&rel, &fs::read(&path).unwrap(), needles));
        }
    }
    (finds, files)
}

/// Where any of `needles` appears in the object `name` (its name, its
/// bytes, what they decompress to).
pub fn finds_in(name: &str, bytes: &[u8], needles: &[&[u8]]) -> Vec<String> {
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let mut finds = Vec::new();
    let mut layers = vec![bytes.to_vec()];
    layers.extend(decompressed(bytes));
    for n in needles {
        if has(name.as_bytes(), n) {
            finds.push(format!("{} in the name {name}", String::from_utf8_lossy(n)));
        }
    }
    for (i, layer) in layers.iter().enumerate() {
        for n in needles {
            if has(layer, n) {
                let how = if i == 0 { "" } else { " (decompressed)" };
                finds.push(format!("{} in {name}{how}", String::from_utf8_lossy(n)));
            }
        }
    }
    finds
}
