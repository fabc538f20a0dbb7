//! Exclude globs. A glob without `/` matches an entry's name at any depth
//! (`*.o`, `.cache`); a glob with `/` matches the entry's absolute path,
//! where `*` stays within one component and `**` crosses them.

use std::ffi::OsStr;
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// A glob that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("`{glob}` is not a valid glob: {reason}")]
pub struct BadGlob {
    pub glob: String,
    pub reason: String,
}

/// Matches one list of globs against names and paths: the glob rules of
/// excludes, shared with `find` so a pattern means the same in both.
#[derive(Clone, Debug)]
pub struct Matcher {
    names: GlobSet,
    paths: GlobSet,
}

impl Matcher {
    /// Parses the globs; the first that does not parse is the error.
    pub fn new<S: AsRef<str>>(globs: &[S]) -> Result<Matcher, BadGlob> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for g in globs {
            let g = g.as_ref();
            let bad = |e: globset::Error| BadGlob {
                glob: g.to_owned(),
                reason: e.kind().to_string(),
            };
            if g.contains('/') {
                let glob = GlobBuilder::new(g)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(bad)?;
                paths.add(glob);
            } else {
                names.add(Glob::new(g).map_err(bad)?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| BadGlob {
                glob: globs
                    .iter()
                    .map(|g| g.as_ref())
                    .collect::<Vec<_>>()
                    .join(" "),
                reason: e.to_string(),
            })
        };
        Ok(Matcher {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether an entry called `name` at absolute `path` matches.
    pub fn matches(&self, name: &OsStr, path: &Path) -> bool {
        (!self.names.is_empty() && self.names.is_match(name))
            || (!self.paths.is_empty() && self.paths.is_match(path))
    }
}

/// The exclusions of an archive.
#[derive(Clone, Debug)]
pub struct Excludes {
    dirs: Matcher,
    files: Matcher,
}

impl Excludes {
    pub fn new(dirs: &[String], files: &[String]) -> Result<Excludes, BadGlob> {
        Ok(Excludes {
            dirs: Matcher::new(dirs)?,
            files: Matcher::new(files)?,
        })
    }

    pub fn none() -> Excludes {
        Excludes::new(&[], &[]).expect("no globs always build")
    }

    /// True when the directory (and all below it) is left out.
    pub fn excludes_dir(&self, name: &OsStr, path: &Path) -> bool {
        self.dirs.matches(name, path)
    }

    /// True when the file or symlink is left out.
    pub fn excludes_file(&self, name: &OsStr, path: &Path) -> bool {
        self.files.matches(name, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(dirs: &[&str], files: &[&str]) -> Excludes {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        Excludes::new(&s(dirs), &s(files)).unwrap()
    }

    fn file(e: &Excludes, path: &str) -> bool {
        let p = Path::new(path);
        e.excludes_file(p.file_name().unwrap(), p)
    }

    #[test]
    fn name_globs_match_at_any_depth() {
        let e = ex(&[".cache"], &["*.o", "*~"]);
        assert!(file(&e, "/a/b/c/x.o"));
        assert!(file(&e, "/x~"));
        assert!(!file(&e, "/a/x.c"));
        let p = Path::new("/home/u/.cache");
        assert!(e.excludes_dir(p.file_name().unwrap(), p));
    }

    #[test]
    fn path_globs_respect_separators() {
        let e = ex(&[], &["/home/*/secret.txt", "/srv/**/*.log"]);
        assert!(file(&e, "/home/u/secret.txt"));
        assert!(!file(&e, "/home/u/sub/secret.txt"));
        assert!(file(&e, "/srv/a/b/c.log"));
        assert!(!file(&e, "/var/c.log"));
    }

    #[test]
    fn invalid_glob_is_an_error() {
        let err = Excludes::new(&["a[".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
    }
}
