use std::time::Instant;

use super::*;
use crate::content::ContentToken;
use crate::snapshot::model::{FileNode, Node};
use crate::snapshot::testtree::{d, f, l, synthetic, tree, tree_bytes, with};

/// `marker path` per change, the path as displayed.
fn lines(r: &DiffReport) -> Vec<String> {
    r.changes
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.marker,
                String::from_utf8_lossy(&c.display_path())
            )
        })
        .collect()
}

fn resized(node: Node, size: u64) -> Node {
    match node {
        Node::File(x) => Node::File(FileNode { size, ..x }),
        other => other,
    }
}

struct Case {
    what: &'static str,
    old: Vec<(&'static str, Node)>,
    new: Vec<(&'static str, Node)>,
    under: Option<&'static str>,
    metadata: bool,
    want: &'static [&'static str],
}

fn case(
    what: &'static str,
    old: Vec<(&'static str, Node)>,
    new: Vec<(&'static str, Node)>,
    want: &'static [&'static str],
) -> Case {
    Case {
        what,
        old,
        new,
        under: None,
        metadata: false,
        want,
    }
}

fn cases() -> Vec<Case> {
    let base = || {
        vec![
            ("a/f", f(b"one")),
            ("a/g", f(b"two")),
            ("b", l("a/f")),
            ("c/d/e", f(b"deep")),
        ]
    };
    let plus = |extra: Vec<(&'static str, Node)>| {
        let mut v = base();
        v.extend(extra);
        v
    };
    let minus = |gone: &str| {
        let mut v = base();
        v.retain(|(p, _)| *p != gone);
        v
    };
    let chmod = |n: Node| with(n, |a| a.mode = (a.mode & !0o7777) | 0o600);
    vec![
        case("unchanged", base(), base(), &[]),
        case(
            "added file",
            base(),
            plus(vec![("a/h", f(b"new"))]),
            &["+ /a/h"],
        ),
        case("removed file", base(), minus("a/g"), &["- /a/g"]),
        case(
            "content, same size",
            base(),
            plus(vec![("a/f", f(b"ONE"))]),
            &["M /a/f"],
        ),
        case(
            "size only",
            base(),
            plus(vec![("a/f", resized(f(b"one"), 9))]),
            &["M /a/f"],
        ),
        case(
            "nested change has no parent lines",
            base(),
            plus(vec![("c/d/e", f(b"DEEP"))]),
            &["M /c/d/e"],
        ),
        case(
            "added dir lists its contents in tree order",
            base(),
            plus(vec![
                ("n/y", f(b"y")),
                ("n/deep/x", f(b"x")),
                ("n/deep/z", l("x")),
            ]),
            &[
                "+ /n/",
                "+ /n/deep/",
                "+ /n/deep/x",
                "+ /n/deep/z",
                "+ /n/y",
            ],
        ),
        case(
            "removed dir lists its contents",
            base(),
            minus("c/d/e")
                .into_iter()
                .filter(|(p, _)| !p.starts_with('c'))
                .collect(),
            &["- /c/", "- /c/d/", "- /c/d/e"],
        ),
        case(
            "file became dir: T only",
            base(),
            {
                let mut v = minus("a/g");
                v.push(("a/g/inner", f(b"i")));
                v
            },
            &["T /a/g/"],
        ),
        case(
            "dir became file",
            base(),
            {
                let mut v: Vec<_> = base()
                    .into_iter()
                    .filter(|(p, _)| !p.starts_with('c'))
                    .collect();
                v.push(("c", f(b"c")));
                v
            },
            &["T /c"],
        ),
        case(
            "symlink became file",
            base(),
            plus(vec![("b", f(b"x"))]),
            &["T /b"],
        ),
        case(
            "symlink target",
            base(),
            plus(vec![("b", l("a/g"))]),
            &["M /b"],
        ),
        case(
            "chmod without --metadata",
            base(),
            plus(vec![("a/f", chmod(f(b"one")))]),
            &[],
        ),
        Case {
            metadata: true,
            ..case(
                "chmod, mtime, owner of a link, dir mtime",
                base(),
                plus(vec![
                    ("a/f", chmod(f(b"one"))),
                    ("a/g", with(f(b"two"), |a| a.mtime_ns = 5)),
                    ("b", with(l("a/f"), |a| a.uid = 1000)),
                    ("c/d", with(d(), |a| a.mtime_ns = 7)),
                ]),
                &["U /a/f", "U /a/g", "U /b", "U /c/d/"],
            )
        },
        Case {
            metadata: true,
            ..case(
                "atime, ctime, inode, link count are not metadata changes",
                base(),
                plus(vec![(
                    "a/f",
                    with(f(b"one"), |a| {
                        a.atime_ns = 1;
                        a.ctime_ns = 2;
                        a.ino = 3;
                        a.dev = 4;
                        a.nlink = 2;
                    }),
                )]),
                &[],
            )
        },
        Case {
            metadata: true,
            ..case(
                "new hard link: only the new name",
                base(),
                plus(vec![
                    ("a/f", with(f(b"one"), |a| a.nlink = 2)),
                    ("a/hard", with(f(b"one"), |a| a.nlink = 2)),
                ]),
                &["+ /a/hard"],
            )
        },
        Case {
            metadata: true,
            ..case(
                "dir line before its entries, content beats metadata",
                base(),
                plus(vec![
                    ("a", with(d(), |a| a.uid = 1)),
                    ("a/f", chmod(f(b"1"))),
                ]),
                &["U /a/", "M /a/f"],
            )
        },
        case(
            "dir sorts by bytes: /a/ entries before /a.b",
            vec![("a/x", f(b"x"))],
            vec![("a/x", f(b"y")), ("a.b", f(b"z")), ("a/y", f(b"w"))],
            &["M /a/x", "+ /a/y", "+ /a.b"],
        ),
        Case {
            under: Some("/a"),
            ..case(
                "under a dir",
                base(),
                plus(vec![("a/f", f(b"1")), ("c/d/e", f(b"2")), ("z", f(b"3"))]),
                &["M /a/f"],
            )
        },
        Case {
            under: Some("/a/f"),
            ..case(
                "under a file",
                base(),
                plus(vec![("a/f", f(b"1")), ("a/g", f(b"2"))]),
                &["M /a/f"],
            )
        },
        Case {
            under: Some("/n"),
            ..case(
                "under an added dir",
                base(),
                plus(vec![("n/x", f(b"x"))]),
                &["+ /n/", "+ /n/x"],
            )
        },
        Case {
            under: Some("/nowhere/x"),
            ..case(
                "under a missing path",
                base(),
                plus(vec![("q", f(b""))]),
                &[],
            )
        },
        Case {
            under: Some("/b/x"),
            ..case("under a path through a symlink", base(), base(), &[])
        },
    ]
}

#[test]
fn table() {
    for c in cases() {
        let r = diff(
            &tree(&c.old),
            &tree(&c.new),
            c.under.map(Path::new),
            c.metadata,
        );
        assert_eq!(lines(&r), c.want, "{}", c.what);
        // Reversed, every `+` is a `-` and the other way round.
        let back = diff(
            &tree(&c.new),
            &tree(&c.old),
            c.under.map(Path::new),
            c.metadata,
        );
        let flip = |s: &str| match s.split_at(1) {
            ("+", rest) => format!("-{rest}"),
            ("-", rest) => format!("+{rest}"),
            _ => s.to_owned(),
        };
        let mut want: Vec<String> = c.want.iter().map(|s| flip(s)).collect();
        let mut got = lines(&back);
        // `T` of file→dir ends in `/` one way and not the other.
        let norm = |v: &mut Vec<String>| {
            for s in v.iter_mut() {
                if s.starts_with('T') {
                    *s = s.trim_end_matches('/').to_owned();
                }
            }
            v.sort();
        };
        norm(&mut want);
        norm(&mut got);
        assert_eq!(got, want, "{} (reversed)", c.what);
    }
}

#[test]
fn summary_counts_and_bytes() {
    let old = tree(&[
        ("keep", f(b"same")),
        ("mod", f(b"12345")),
        ("gone/x", f(b"xx")),
        ("gone/l", l("x")),
        ("t", f(b"abc")),
        ("link", l("a")),
    ]);
    let new = tree(&[
        ("keep", f(b"same")),
        ("mod", f(b"1234567")),
        ("new/a", f(b"aaaa")),
        ("new/b/c", f(b"c")),
        ("t/inside", f(b"0123456789")),
        ("link", l("b")),
    ]);
    let r = diff(&old, &new, None, false);
    let s = r.summary;
    assert_eq!(
        s.added,
        Counts {
            files: 2,
            dirs: 2,
            links: 0
        }
    );
    assert_eq!(
        s.removed,
        Counts {
            files: 1,
            dirs: 1,
            links: 1
        }
    );
    assert_eq!(
        s.changed,
        Counts {
            files: 1,
            dirs: 1,
            links: 1
        }
    );
    // Added: new/a 4 + new/b/c 1 + mod's new 7 + t's new dir 10.
    assert_eq!(s.bytes_added, 4 + 1 + 7 + 10);
    // Removed: gone/x 2 + mod's old 5 + t's old file 3.
    assert_eq!(s.bytes_removed, 2 + 5 + 3);
    let kinds: Vec<_> = r.changes.iter().map(|c| (c.old, c.new)).collect();
    assert!(kinds.contains(&(Some(Kind::File), Some(Kind::Dir))));
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["added"]["dirs"], 2);
    assert_eq!(json["bytes_removed"], 10);
}

#[test]
fn display_matches_restic_columns() {
    let r = diff(&tree(&[]), &tree(&[("d/x", f(b"1"))]), None, false);
    let shown: Vec<String> = r.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(shown, ["+    /d/", "+    /d/x"]);
    assert_eq!(r.changes[0].path, Path::new("/d"));
    assert_eq!(
        serde_json::to_string(&[Marker::Added, Marker::TypeChanged]).unwrap(),
        r#"["+","T"]"#
    );
}

#[test]
fn non_utf8_names_keep_their_bytes() {
    let name: &[u8] = b"caf\xe9/\xff\xfe";
    let old = tree_bytes(&[(name, f(b"1"))]);
    let new = tree_bytes(&[(name, f(b"2")), (b"caf\xe9/n\x80", l("x"))]);
    let r = diff(&old, &new, None, false);
    let got: Vec<Vec<u8>> = r.changes.iter().map(|c| c.display_path()).collect();
    assert_eq!(
        got,
        [b"/caf\xe9/n\x80".to_vec(), b"/caf\xe9/\xff\xfe".to_vec()]
    );
    use std::os::unix::ffi::OsStrExt;
    let under = Path::new(std::ffi::OsStr::from_bytes(b"/caf\xe9/\xff\xfe"));
    assert_eq!(diff(&old, &new, Some(under), false).changes.len(), 1);
}

/// Restricting to a path gives exactly the whole diff's changes at or
/// below it, for every path of either tree not below a type change.
#[test]
fn under_is_a_filter_of_the_whole_diff() {
    let c = cases();
    for c in c.iter().filter(|c| c.under.is_none()) {
        let (old, new) = (tree(&c.old), tree(&c.new));
        let whole = diff(&old, &new, None, true);
        let mut paths = Vec::new();
        for t in [&old, &new] {
            t.walk(&mut |names, _| {
                let p: Vec<u8> = names
                    .iter()
                    .flat_map(|n| [&b"/"[..], n.as_bytes()].concat())
                    .collect();
                paths.push(path_of(&p));
            });
        }
        // Below a type change the whole diff does not descend (restic's
        // way); a diff restricted to such a path does.
        let below_t = |p: &Path| {
            whole.changes.iter().any(|ch| {
                ch.marker == Marker::TypeChanged && p.starts_with(&ch.path) && p != ch.path
            })
        };
        for p in paths.into_iter().filter(|p| !below_t(p)) {
            let want: Vec<&Change> = whole
                .changes
                .iter()
                .filter(|ch| ch.path.starts_with(&p))
                .collect();
            let part = diff(&old, &new, Some(&p), true);
            let got: Vec<&Change> = part.changes.iter().collect();
            assert_eq!(got, want, "{} under {}", c.what, p.display());
        }
    }
}

/// Two 60k-entry trees (300 directories of 200 files) differing in 1% of
/// their files: prints the best time of five, asserts only the result.
#[test]
fn sixty_thousand_entries() {
    let root = synthetic(300, 200);
    let mut changed = root.clone();
    for (i, e) in changed.entries.iter_mut().enumerate() {
        let Node::Dir(dir) = &mut e.node else {
            unreachable!()
        };
        if let Node::File(x) = &mut dir.entries[i % 100].node {
            x.token = ContentToken::of(b"changed");
        }
        if i % 3 == 0 {
            dir.entries.remove(150);
        }
    }
    for metadata in [false, true] {
        // Best of five: the machine is shared.
        let (mut r, mut took) = (DiffReport::default(), std::time::Duration::MAX);
        for _ in 0..5 {
            let t = Instant::now();
            r = diff(&root, &changed, None, metadata);
            took = took.min(t.elapsed());
        }
        assert_eq!(r.changes.len(), 300 + 100);
        println!(
            "diff of two 60k-entry trees (metadata: {metadata}): {:.2} ms, {} changes",
            took.as_secs_f64() * 1e3,
            r.changes.len()
        );
    }
}
