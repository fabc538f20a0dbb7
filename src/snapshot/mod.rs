//! Snapshot archives: per archive, a series of snapshot files each
//! describing a whole backed-up tree. Content is reached only through
//! [`crate::content::Repository`].
