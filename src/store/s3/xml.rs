//! The few fields epygibus reads from S3's XML answers (listings, upload
//! ids, errors). S3 answers are flat and never nest an element in one of
//! the same name, so finding `<Tag>…</Tag>` pairs is enough; entities are
//! decoded.

/// The inner text of every `<tag>…</tag>` (or `<tag attr…>…</tag>`) in
/// `xml`, in order.
pub fn blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        // `<Key>` but not `<KeyMarker>`.
        let Some(gt) = after.find('>') else { break };
        let head = &after[..gt];
        if !(head.is_empty() || head.starts_with(char::is_whitespace) || head == "/") {
            rest = after;
            continue;
        }
        if head.ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The decoded text of the first `<tag>` in `xml`.
pub fn field(xml: &str, tag: &str) -> Option<String> {
    blocks(xml, tag).first().map(|t| unescape(t))
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric
/// references; anything else is kept as it is.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for an XML body we send.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing() {
        let xml = r#"<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><KeyCount>2</KeyCount><Contents><Key>a&amp;b</Key><Size>5</Size></Contents><Contents><Key>c&#x2F;d</Key><Size>7</Size></Contents><NextContinuationToken>t&lt;1</NextContinuationToken><Empty/></ListBucketResult>"#;
        let items = blocks(xml, "Contents");
        assert_eq!(items.len(), 2);
        assert_eq!(field(items[0], "Key").unwrap(), "a&b");
        assert_eq!(field(items[1], "Key").unwrap(), "c/d");
        assert_eq!(field(items[1], "Size").unwrap(), "7");
        assert_eq!(field(xml, "IsTruncated").unwrap(), "true");
        assert_eq!(field(xml, "NextContinuationToken").unwrap(), "t<1");
        assert_eq!(field(xml, "Empty").unwrap(), "");
        assert!(field(xml, "Missing").is_none());
        assert_eq!(blocks(xml, "Key").len(), 2, "KeyCount is not Key");
    }

    #[test]
    fn unescape_leaves_strange_text_alone() {
        assert_eq!(
            unescape("a & b &bogus; &#1114112;"),
            "a & b &bogus; &#1114112;"
        );
        assert_eq!(escape("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }

    proptest::proptest! {
        #[test]
        fn xml_reading_never_panics(text in ".{0,300}") {
            let _ = blocks(&text, "Key");
            let _ = field(&text, "Contents");
            let _ = unescape(&text);
        }
    }
}
