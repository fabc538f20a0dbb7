//! Progress reporting as a sink the library calls and the command line
//! draws, so the library never prints. Calls must be cheap: they happen
//! once per file.

/// Receives progress from long operations (backup, restore).
pub trait Progress: Sync {
    /// A phase starts: `what` names it; totals are known or zero.
    fn phase(&self, _what: &str, _total_files: u64, _total_bytes: u64) {}
    /// One more entry seen by a walk.
    fn walked(&self) {}
    /// One file's content was read or written.
    fn file_done(&self, _bytes: u64) {}
    /// The operation ended (successfully or not).
    fn finish(&self) {}
    /// True once the user asked to stop (Ctrl-C, a GUI's Cancel button).
    /// Checked once per file: the operation then stops and undoes what a
    /// failed one would (a backup gives its references back).
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
