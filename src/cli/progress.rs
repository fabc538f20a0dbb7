//! The progress display: an indicatif bar on stderr, drawn at most ten
//! times a second, only when stderr is a terminal and not with --quiet.
//! It also carries Ctrl-C to the library as a cancellation, so an
//! interrupted backup gives its references back like a failed one.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set by the first SIGINT or SIGTERM.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // A second signal ends the process at once.
    // SAFETY: signal() with SIG_DFL is async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// From now on, Ctrl-C (or SIGTERM) asks the running operation to stop
/// cleanly instead of killing the process; a second one kills it.
pub fn catch_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and resets the
        // disposition, both async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
    total_files: AtomicU64,
}

impl Bar {
    /// A bar that shows only on a terminal, unless `quiet`. Interrupts
    /// are caught from here on (see [`catch_interrupts`]).
    pub fn new(quiet: bool) -> Bar {
        catch_interrupts();
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
                .with_style(spinner_style())
        };
        Bar {
            bar,
            files: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
        }
    }
}

/// For work whose total is unknown (a walk): what, and how many so far.
fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}: {human_pos} entries").expect("valid template")
}

impl Progress for Bar {
    fn phase(&self, what: &str, total_files: u64, total_bytes: u64) {
        self.files.store(0, Ordering::Relaxed);
        self.total_files.store(total_files, Ordering::Relaxed);
        self.bar.reset();
        if total_bytes == 0 && total_files == 0 {
            self.bar.set_style(spinner_style());
            self.bar.set_length(0);
        } else {
            self.bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            self.bar.set_length(total_bytes);
        }
        self.bar.set_message(what.to_owned());
    }

    fn walked(&self) {
        self.bar.inc(1);
    }

    fn file_done(&self, bytes: u64) {
        let done = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total_files.load(Ordering::Relaxed);
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_message(format!("{done}/{total} files"));
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn cancelled(&self) -> bool {
        INTERRUPTED.load(Ordering::Relaxed)
    }
}
