//! Finding entries by glob in a snapshot tree, with the glob rules of
//! excludes ([`super::exclude`]) so a pattern means the same in `find` as
//! in `-Xf`: a glob without `/` matches an entry's own name at any depth,
//! a glob with `/` matches its whole absolute path (`*` stays within one
//! component, `**` crosses them).
//!
//! Unlike restic's `find`, a match is the entry whose name or path
//! matches, not also everything below a matching directory (restic's
//! patterns match a path prefix, so `restic find deep` also lists
//! `…/deep/x`). Listing only the entries themselves keeps `find .cache`
//! one line per snapshot; `ls` shows what is inside.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::exclude::{BadGlob, Matcher};
use super::lookup::{Kind, path_of};
use super::model::{Attrs, DirNode, Node};
use crate::content::ContentToken;

/// Compiled find patterns; build once, search many snapshots.
#[derive(Clone, Debug)]
pub struct Patterns(Matcher);

impl Patterns {
    /// Parses the globs; the first that does not parse is the error.
    pub fn new<S: AsRef<str>>(globs: &[S]) -> Result<Patterns, BadGlob> {
        Matcher::new(globs).map(Patterns)
    }

    /// Whether an entry called `name` at absolute `path` matches.
    pub fn is_match(&self, name: &[u8], path: &[u8]) -> bool {
        self.0
            .matches(OsStr::from_bytes(name), Path::new(OsStr::from_bytes(path)))
    }
}

/// An inclusive range of times in nanoseconds since the epoch; `None` ends
/// are open. As restic's `find --oldest/--newest`, it filters matches by
/// their mtime; [`in_range`] applies it to snapshot times.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub oldest_ns: Option<i64>,
    pub newest_ns: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, ns: i64) -> bool {
        self.oldest_ns.is_none_or(|o| ns >= o) && self.newest_ns.is_none_or(|n| ns <= n)
    }
}

/// The items (snapshots, say, with their start times) whose time is in the
/// range, in the order given.
pub fn in_range<I>(items: impl IntoIterator<Item = (I, i64)>, range: &TimeRange) -> Vec<I> {
    items
        .into_iter()
        .filter(|(_, t)| range.contains(*t))
        .map(|(i, _)| i)
        .collect()
}

/// One matching entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// Absolute path (directories without a trailing `/`, as restic).
    pub path: PathBuf,
    pub kind: Kind,
    /// Content size for files, target length for symlinks (what lstat
    /// says), 0 for directories (their size is not recorded).
    pub size: u64,
    pub mtime_ns: i64,
    /// Mode, owner and times as recorded.
    pub attrs: Attrs,
    /// The content token of a file (for `extract`, `cat`, `history`).
    pub token: Option<ContentToken>,
}

/// Every entry of the tree matching one of the patterns whose mtime is in
/// `mtime`, in tree order. The root `/` is no entry and never matches.
pub fn find(root: &DirNode, patterns: &Patterns, mtime: &TimeRange) -> Vec<Match> {
    let mut found = Vec::new();
    let mut path = Vec::with_capacity(256);
    walk(root, patterns, mtime, &mut path, &mut found);
    found
}

fn walk(
    dir: &DirNode,
    patterns: &Patterns,
    mtime: &TimeRange,
    path: &mut Vec<u8>,
    found: &mut Vec<Match>,
) {
    for e in &dir.entries {
        let len = path.len();
        path.push(b'/');
        path.extend_from_slice(e.name.as_bytes());
        let attrs = e.node.attrs();
        if patterns.is_match(e.name.as_bytes(), path) && mtime.contains(attrs.mtime_ns) {
            let (size, token) = match &e.node {
                Node::File(f) => (f.size, Some(f.token)),
                Node::Link(l) => (l.target.len() as u64, None),
                Node::Dir(_) => (0, None),
            };
            found.push(Match {
                path: path_of(path),
                kind: Kind::of(&e.node),
                size,
                mtime_ns: attrs.mtime_ns,
                attrs: *attrs,
                token,
            });
        }
        if let Node::Dir(d) = &e.node {
            walk(d, patterns, mtime, path, found);
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::exclude::Excludes;
    use crate::snapshot::testtree::{d, f, l, synthetic, tree, tree_bytes, with};

    fn paths(root: &DirNode, globs: &[&str]) -> Vec<String> {
        find(root, &Patterns::new(globs).unwrap(), &TimeRange::default())
            .iter()
            .map(|m| format!("{} {}", m.kind, m.path.display()))
            .collect()
    }

    fn sample() -> DirNode {
        tree(&[
            ("home/u/notes.txt", f(b"n")),
            ("home/u/sub/deep/a.txt", f(b"aaa")),
            ("home/u/sub/b.TXT", f(b"b")),
            ("home/u/.cache", d()),
            ("home/u/.cache/x.txt", f(b"x")),
            ("home/v/secret.txt", l("notes.txt")),
            ("srv/log/app.log", f(b"1")),
            ("srv/log/old/app.log", f(b"2")),
        ])
    }

    #[test]
    fn globs_by_name_and_by_path() {
        let t = sample();
        let table: &[(&[&str], &[&str])] = &[
            (
                &["*.txt"],
                &[
                    "file /home/u/.cache/x.txt",
                    "file /home/u/notes.txt",
                    "file /home/u/sub/deep/a.txt",
                    "symlink /home/v/secret.txt",
                ],
            ),
            (&[".cache"], &["dir /home/u/.cache"]),
            (&["deep"], &["dir /home/u/sub/deep"]),
            (
                &["*.TXT", "app.log"],
                &[
                    "file /home/u/sub/b.TXT",
                    "file /srv/log/app.log",
                    "file /srv/log/old/app.log",
                ],
            ),
            (&["/home/*/secret.txt"], &["symlink /home/v/secret.txt"]),
            (&["/home/*.txt"], &[]),
            (
                &["/home/**/*.txt"],
                &[
                    "file /home/u/.cache/x.txt",
                    "file /home/u/notes.txt",
                    "file /home/u/sub/deep/a.txt",
                    "symlink /home/v/secret.txt",
                ],
            ),
            (
                &["/srv/log/*"],
                &["file /srv/log/app.log", "dir /srv/log/old"],
            ),
            (&["/srv"], &["dir /srv"]),
            (&["nothing"], &[]),
            (&[], &[]),
        ];
        for (globs, want) in table {
            assert_eq!(paths(&t, globs), *want, "{globs:?}");
        }
    }

    #[test]
    fn match_details() {
        let t = tree(&[
            ("a/f", with(f(b"hello"), |a| a.mtime_ns = 42)),
            ("a/l", l("target")),
        ]);
        let m = find(
            &t,
            &Patterns::new(&["f", "l", "a"]).unwrap(),
            &TimeRange::default(),
        );
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].kind, m[0].size, m[0].token), (Kind::Dir, 0, None));
        assert_eq!(m[1].kind, Kind::File);
        assert_eq!((m[1].size, m[1].mtime_ns), (5, 42));
        assert_eq!(m[1].token, Some(ContentToken::of(b"hello")));
        assert_eq!((m[2].kind, m[2].size), (Kind::Link, 6));
    }

    #[test]
    fn non_utf8_names_match() {
        let t = tree_bytes(&[(b"d/caf\xe9.txt", f(b"1")), (b"d/\xff", f(b"2"))]);
        let m = find(
            &t,
            &Patterns::new(&["*.txt"]).unwrap(),
            &TimeRange::default(),
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].path.as_os_str().as_bytes(), b"/d/caf\xe9.txt");
        let m = find(
            &t,
            &Patterns::new(&["/d/?"]).unwrap(),
            &TimeRange::default(),
        );
        assert_eq!(
            m.len(),
            1,
            "one byte that is not UTF-8 is one character to globset"
        );
    }

    #[test]
    fn mtime_range_filters_matches() {
        let t = tree(&[
            ("a", with(f(b"1"), |a| a.mtime_ns = 10)),
            ("b", with(f(b"2"), |a| a.mtime_ns = 20)),
            ("c", with(f(b"3"), |a| a.mtime_ns = 30)),
        ]);
        let p = Patterns::new(&["*"]).unwrap();
        let names = |r: TimeRange| -> Vec<String> {
            find(&t, &p, &r)
                .iter()
                .map(|m| m.path.display().to_string())
                .collect()
        };
        let r = |o, n| TimeRange {
            oldest_ns: o,
            newest_ns: n,
        };
        assert_eq!(names(r(None, None)), ["/a", "/b", "/c"]);
        assert_eq!(names(r(Some(20), None)), ["/b", "/c"]);
        assert_eq!(names(r(None, Some(20))), ["/a", "/b"]);
        assert_eq!(names(r(Some(11), Some(29))), ["/b"]);
        assert_eq!(
            in_range([("s1", 5), ("s2", 15), ("s3", 25)], &r(Some(10), Some(25))),
            ["s2", "s3"]
        );
    }

    #[test]
    fn bad_glob_names_itself() {
        let e = Patterns::new(&["ok", "a[", "b"]).unwrap_err();
        assert_eq!(e.glob, "a[");
        let e = Patterns::new(&["/x/{a"]).unwrap_err();
        assert!(e.to_string().contains("/x/{a"), "{e}");
    }

    /// The same globs decide the same way here and in excludes.
    #[test]
    fn agrees_with_exclude_rules() {
        let globs = [
            "*.o",
            "*~",
            ".cache",
            "[ab]?.txt",
            "{x,y}",
            r"a\*b",
            "**",
            "*",
            "/home/*/secret",
            "/srv/**/*.log",
            "/a/b",
            "/**/c",
            "/a/[!x]*",
            r"/esc/\?",
            "/a/*/",
        ];
        let paths = [
            "/a/b",
            "/a/x.o",
            "/home/u/secret",
            "/home/u/v/secret",
            "/srv/a/b/c.log",
            "/srv/c.log",
            "/c",
            "/deep/er/c",
            "/x",
            "/q/y",
            "/a/ab.txt",
            "/a/b1.txt",
            "/a*b",
            "/a/a*b",
            "/esc/?",
            "/esc/x",
            "/a/xy",
            "/a/yy",
            "/.cache",
            "/f~",
        ];
        for g in globs {
            let ours = Patterns::new(&[g]).unwrap();
            let theirs = Excludes::new(&[], &[g.to_owned()]).unwrap();
            for p in paths {
                let path = Path::new(p);
                let name = path.file_name().unwrap();
                assert_eq!(
                    ours.is_match(name.as_bytes(), p.as_bytes()),
                    theirs.excludes_file(name, path),
                    "glob {g:?} on {p}"
                );
            }
        }
    }

    /// A name and a path glob over 60k entries: prints the best of five.
    #[test]
    fn sixty_thousand_entries() {
        let root = synthetic(300, 200);
        for (glob, hits) in [
            ("file-0042.txt", 300),
            ("/dir-001*/file-00[0-4]?.txt", 10 * 50),
        ] {
            let p = Patterns::new(&[glob]).unwrap();
            let (mut m, mut took) = (Vec::new(), std::time::Duration::MAX);
            for _ in 0..5 {
                let t = std::time::Instant::now();
                m = find(&root, &p, &TimeRange::default());
                took = took.min(t.elapsed());
            }
            assert_eq!(m.len(), hits, "{glob}");
            println!(
                "find {glob} in 60k entries: {:.2} ms",
                took.as_secs_f64() * 1e3
            );
        }
    }
}
