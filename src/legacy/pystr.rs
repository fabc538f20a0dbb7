//! Python strings in pickles, back into the bytes of file names: Python 3
//! writes a name that was not UTF-8 with `surrogateescape` (its bytes
//! 0x80-0xFF as the lone surrogates U+DC80-U+DCFF), which strict UTF-8
//! refuses.

/// Python's UTF-8 with lone surrogates (`surrogatepass`), back to the
/// bytes a file name had: U+DC80..U+DCFF are the undecodable bytes
/// 0x80..0xFF; anything else that is not valid UTF-8 is refused.
pub fn decode_str(raw: &[u8]) -> Option<Vec<u8>> {
    if let Ok(s) = std::str::from_utf8(raw) {
        return Some(s.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        // A surrogate: ED A0..BF xx (U+D800..U+DFFF), which strict UTF-8
        // refuses.
        if b == 0xED && i + 2 < raw.len() && (0xA0..=0xBF).contains(&raw[i + 1]) {
            let (b1, b2) = (raw[i + 1], raw[i + 2]);
            if b2 & 0xC0 != 0x80 {
                return None;
            }
            let cp = 0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
            if !(0xDC80..=0xDCFF).contains(&cp) {
                return None;
            }
            out.push((cp - 0xDC00) as u8);
            i += 3;
            continue;
        }
        let len = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return None,
        };
        let seq = raw.get(i..i + len)?;
        std::str::from_utf8(seq).ok()?;
        out.extend_from_slice(seq);
        i += len;
    }
    Some(out)
}

/// Code points to the bytes a file name had (see [`decode_str`]).
fn code_points_to_bytes(cps: impl IntoIterator<Item = u32>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for cp in cps {
        if (0xDC80..=0xDCFF).contains(&cp) {
            out.push((cp - 0xDC00) as u8);
        } else {
            let c = char::from_u32(cp)?;
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Some(out)
}

/// Protocol 0 text (`V`): latin-1 bytes with `\uXXXX` and `\UXXXXXXXX`
/// escapes.
pub fn raw_unicode_escape(line: &[u8]) -> Option<Vec<u8>> {
    let mut cps = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let digits = match (line[i], line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            (b, _) => {
                cps.push(u32::from(b));
                i += 1;
                continue;
            }
        };
        let hex = std::str::from_utf8(line.get(i + 2..i + 2 + digits)?).ok()?;
        cps.push(u32::from_str_radix(hex, 16).ok()?);
        i += 2 + digits;
    }
    code_points_to_bytes(cps)
}

/// Protocol 0 byte strings (`S`): a Python repr in single or double
/// quotes with backslash escapes.
pub fn quoted_bytes(line: &[u8]) -> Option<Vec<u8>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (&q, rest) = line.split_first()?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let body = rest.strip_suffix(&[q])?;
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        out.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'0' => 0,
            b'\\' | b'\'' | b'"' => e,
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                i += 2;
                u8::from_str_radix(hex, 16).ok()?
            }
            _ => return None,
        });
    }
    Some(out)
}
