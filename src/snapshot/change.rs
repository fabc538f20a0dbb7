//! Deciding whether a file changed since the previous snapshot without
//! reading it: the predicate that decides what a backup can miss, so it
//! is table-tested below.

use super::model::{Attrs, FileNode};

/// Files modified this close before the previous backup started are
/// "racily clean": with coarse timestamps (1 s on exFAT, SMB; 2 s on FAT) a
/// write just after the previous backup read the file can leave size and
/// times unchanged, so such files are read again.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// How the previous snapshot is compared with what is on disk now.
#[derive(Clone, Copy, Debug)]
pub struct ChangeRules {
    /// When the previous backup's walk started (ns since the epoch).
    pub previous_started_ns: i64,
    /// Also require the same inode and device.
    pub compare_inodes: bool,
}

/// True when the file's content can be taken from the previous snapshot:
/// same size, mtime and ctime to the nanosecond (and inode when asked),
/// and not modified within [`RACY_WINDOW_NS`] of the previous backup's
/// start or later.
pub fn unchanged(previous: &FileNode, now: &Attrs, now_size: u64, rules: ChangeRules) -> bool {
    let before = &previous.attrs;
    let same_identity = !rules.compare_inodes || (before.ino == now.ino && before.dev == now.dev);
    let settled = rules.previous_started_ns - RACY_WINDOW_NS;
    previous.size == now_size
        && before.mtime_ns == now.mtime_ns
        && before.ctime_ns == now.ctime_ns
        && same_identity
        && now.mtime_ns < settled
        && now.ctime_ns < settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentToken;

    const T0: i64 = 1_700_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn node(size: u64, mtime: i64, ctime: i64, ino: u64) -> FileNode {
        FileNode {
            attrs: Attrs {
                mtime_ns: mtime,
                ctime_ns: ctime,
                ino,
                dev: 1,
                ..Attrs::default()
            },
            size,
            token: ContentToken::of(b""),
        }
    }

    #[test]
    fn change_predicate_table() {
        let prev = node(100, T0 - 60 * SEC, T0 - 60 * SEC, 7);
        let started = T0;
        // (case, size, mtime, ctime, inode, compare_inodes, expected unchanged)
        let rows: &[(&str, u64, i64, i64, u64, bool, bool)] = &[
            (
                "identical",
                100,
                T0 - 60 * SEC,
                T0 - 60 * SEC,
                7,
                false,
                true,
            ),
            (
                "size differs",
                101,
                T0 - 60 * SEC,
                T0 - 60 * SEC,
                7,
                false,
                false,
            ),
            (
                "mtime differs by 1 ns",
                100,
                T0 - 60 * SEC + 1,
                T0 - 60 * SEC,
                7,
                false,
                false,
            ),
            (
                "ctime differs (chmod, rename over)",
                100,
                T0 - 60 * SEC,
                T0 - 30 * SEC,
                7,
                false,
                false,
            ),
            (
                "mtime set back, ctime moved",
                100,
                T0 - 60 * SEC,
                T0 + SEC,
                7,
                false,
                false,
            ),
            (
                "inode differs, not compared",
                100,
                T0 - 60 * SEC,
                T0 - 60 * SEC,
                8,
                false,
                true,
            ),
            (
                "inode differs, compared",
                100,
                T0 - 60 * SEC,
                T0 - 60 * SEC,
                8,
                true,
                false,
            ),
            (
                "same inode, compared",
                100,
                T0 - 60 * SEC,
                T0 - 60 * SEC,
                7,
                true,
                true,
            ),
        ];
        for &(case, size, mtime, ctime, ino, cmp, expected) in rows {
            let now = node(size, mtime, ctime, ino).attrs;
            let rules = ChangeRules {
                previous_started_ns: started,
                compare_inodes: cmp,
            };
            assert_eq!(unchanged(&prev, &now, size, rules), expected, "{case}");
        }
    }

    #[test]
    fn racily_clean_files_are_read_again() {
        // (case, mtime relative to the previous start, expected unchanged)
        let rows: &[(&str, i64, bool)] = &[
            ("long before", -60 * SEC, true),
            ("just outside the window", -RACY_WINDOW_NS - 1, true),
            ("at the window edge", -RACY_WINDOW_NS, false),
            ("half a second before start", -SEC / 2, false),
            ("at the start", 0, false),
            ("during the previous backup", 3 * SEC, false),
        ];
        for &(case, offset, expected) in rows {
            let t = T0 + offset;
            let prev = node(5, t, t, 1);
            let rules = ChangeRules {
                previous_started_ns: T0,
                compare_inodes: false,
            };
            assert_eq!(unchanged(&prev, &prev.attrs, 5, rules), expected, "{case}");
        }
    }
}
