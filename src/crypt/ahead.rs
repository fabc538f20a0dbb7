//! Key exchanges made ahead of time on a core that would otherwise idle.
//!
//! Every sealed file needs its own X25519 exchange (a fresh ephemeral
//! secret, `tabled.rs`), which does not depend on the file: only on the
//! repository key. A backup knows, while it walks the tree (one core busy
//! with `lstat`, the other idle), how many files it will store at most,
//! so a thread of the lowest scheduling class (`SCHED_IDLE`: it runs only
//! when nothing else wants the core) makes that many exchanges ahead, and
//! sealing takes a ready one instead of computing it. Each exchange is
//! taken once and then dropped; when none is ready, sealing makes its own,
//! so the result never depends on the thread. It makes no more exchanges
//! than were announced ([`Ahead::expect`]), so a backup with few changes
//! costs no more than a few exchanges.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::tabled::{Exchange, RecipientPoint};

/// At most this many exchanges wait (64 bytes each: 2 MiB).
const READY_MAX: usize = 1 << 15;

/// Exchanges announced, made and waiting for one recipient.
pub(super) struct Ahead {
    shared: Arc<Shared>,
}

struct Shared {
    point: Arc<RecipientPoint>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Exchange>,
    /// Exchanges announced and not yet made nor needed inline.
    wanted: usize,
    started: bool,
    /// The recipient is gone: the thread ends.
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ahead {
    pub fn new(point: Arc<RecipientPoint>) -> Ahead {
        Ahead {
            shared: Arc::new(Shared {
                point,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
        }
    }

    /// Up to `files` more files will be sealed soon.
    pub fn expect(&self, files: usize) {
        let mut state = self.shared.state();
        // The thread waits for this only when nothing was wanted: a walk
        // announcing file after file wakes it once, not once per file.
        let was_idle = state.wanted == 0;
        state.wanted = state.wanted.saturating_add(files);
        if !state.started {
            state.started = true;
            let shared = Arc::clone(&self.shared);
            // Without the thread every exchange is made inline: slower,
            // never wrong.
            let _ = std::thread::Builder::new()
                .name("key-exchanges".to_owned())
                .spawn(move || make_ahead(&shared));
        }
        drop(state);
        if was_idle {
            self.shared.wake.notify_one();
        }
    }

    /// Nothing more is announced: exchanges not yet made are not made
    /// (those ready stay, for whatever is still sealed).
    pub fn expect_none(&self) {
        self.shared.state().wanted = 0;
    }

    /// A ready exchange, or None (the caller makes one, and one fewer is
    /// wanted).
    pub fn take(&self) -> Option<Exchange> {
        let mut state = self.shared.state();
        let was_full = state.ready.len() >= READY_MAX;
        let ready = state.ready.pop_front();
        if ready.is_none() {
            state.wanted = state.wanted.saturating_sub(1);
        }
        drop(state);
        // The thread waits for room too: taking from a full queue makes it.
        if was_full {
            self.shared.wake.notify_one();
        }
        ready
    }

    #[cfg(test)]
    fn ready(&self) -> usize {
        self.shared.state().ready.len()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.wake.notify_all();
    }
}

/// The thread: makes wanted exchanges while there is room, at idle
/// priority; ends when the recipient is dropped or making one fails (the
/// inline path then reports the failure where it can be handled).
fn make_ahead(shared: &Shared) {
    lower_priority();
    loop {
        let mut state = shared.state();
        while !state.closed && (state.wanted == 0 || state.ready.len() >= READY_MAX) {
            state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            return;
        }
        state.wanted -= 1;
        drop(state);
        let Ok(exchange) = shared.point.exchange() else {
            return;
        };
        let mut state = shared.state();
        if state.closed {
            return;
        }
        state.ready.push_back(exchange);
    }
}

/// Puts the calling thread in the idle scheduling class (Linux), or at
/// the lowest nice value where that is refused.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; pid 0 is this thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    // SAFETY: plain system call on this thread (who 0) with no pointers.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn point() -> Arc<RecipientPoint> {
        Arc::new(RecipientPoint::new(&age::x25519::Identity::generate().to_public()).unwrap())
    }

    fn wait_for(ahead: &Ahead, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while ahead.ready() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} made",
                ahead.ready()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn nothing_is_made_before_it_is_announced_and_no_more_than_announced() {
        let ahead = Ahead::new(point());
        assert!(ahead.take().is_none());
        ahead.expect(5);
        wait_for(&ahead, 5);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ahead.ready(), 5);
        let taken: Vec<Exchange> = std::iter::from_fn(|| ahead.take()).collect();
        assert_eq!(taken.len(), 5);
        // Every exchange is its own: no ephemeral share twice.
        let mut shares: Vec<[u8; 32]> = taken.iter().map(Exchange::share).collect();
        shares.sort();
        shares.dedup();
        assert_eq!(shares.len(), 5);
    }

    #[test]
    fn nothing_more_is_made_once_no_more_is_expected() {
        let ahead = Ahead::new(point());
        ahead.expect(1_000_000);
        wait_for(&ahead, 1);
        ahead.expect_none();
        let made = ahead.ready();
        std::thread::sleep(Duration::from_millis(50));
        // At most the one being made when it was told.
        assert!(ahead.ready() <= made + 1, "{} after {made}", ahead.ready());
        assert_eq!(ahead.shared.state().wanted, 0);
    }

    #[test]
    fn an_exchange_made_inline_lowers_what_is_wanted() {
        let ahead = Ahead::new(point());
        // Taken before any is ready: the caller makes its own.
        {
            let mut state = ahead.shared.state();
            state.wanted = 3;
            state.started = true; // no thread
        }
        assert!(ahead.take().is_none());
        assert_eq!(ahead.shared.state().wanted, 2);
    }
}
