//! How one worker thread sleeps: on its condition variable, or inside the poller.
//!
//! # States
//!
//! * `EMPTY`: awake, no notification pending.
//! * `PARKED_CONDVAR`: asleep on the condvar; a notifier must signal it.
//! * `PARKED_DRIVER`: asleep in the poller (`epoll_wait`, holding the driver); a notifier must
//!   fire the poller's waker, which is the caller's job ([`Unpark::WakeDriver`]).
//! * `NOTIFIED`: a notification is pending; the next park returns at once and clears it.
//!
//! # Steps, and why a notification is never lost
//!
//! The notifier *swaps* `NOTIFIED` in, whatever the state was, and then acts on what it swapped
//! out. The sleeper moves `EMPTY` to a parked state with a compare-exchange; if that fails, a
//! notification is already there and it returns. A condvar sleeper holds the mutex across its
//! compare-exchange and its first wait; the notifier takes the same mutex before signalling, so
//! the signal cannot fall between the sleeper's check and its wait. The driver sleeper cannot
//! hold a mutex while in `epoll_wait`; instead the poller's waker is an eventfd registered
//! edge-triggered and never drained: a wake fired before `epoll_wait` begins puts the eventfd's
//! edge on the epoll ready list, where it stays until an `epoll_wait` collects it, so that wait
//! still returns at once.
//! After either kind of sleep the sleeper swaps `EMPTY` back in, consuming any notification.
//!
//! The swap and the compare-exchange are `SeqCst`/`AcqRel`, pairing with each other: work the
//! notifier published before notifying is visible to the sleeper when it wakes.

use crate::sync::{AtomicUsize, Condvar, Mutex};
use std::sync::atomic::Ordering::{AcqRel, Acquire, SeqCst};

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

/// What a notifier must still do after [`Parker::unpark`].
#[derive(Debug, PartialEq, Eq)]
pub enum Unpark {
    /// Nothing: the worker was awake, already notified, or has been signalled.
    Done,
    /// The worker sleeps in the poller: fire the poller's waker.
    WakeDriver,
}

/// One worker's sleep slot.
pub struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
}

impl Default for Parker {
    fn default() -> Self {
        Self::new()
    }
}

impl Parker {
    /// An awake parker with no notification pending.
    pub fn new() -> Parker {
        Parker {
            state: AtomicUsize::new(EMPTY),
            lock: Mutex::new(()),
            cvar: Condvar::new(),
        }
    }

    /// Sleeps on the condvar until notified (returns at once if a notification is pending).
    pub fn park_condvar(&self) {
        if self.take_notification() {
            return;
        }
        let mut guard = self.lock.lock().unwrap();
        if self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
            .is_err()
        {
            // NOTIFIED arrived between the first check and the lock.
            drop(guard);
            self.state.swap(EMPTY, AcqRel);
            return;
        }
        loop {
            guard = self.cvar.wait(guard).unwrap();
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wake-up: still PARKED_CONDVAR, wait again.
        }
    }

    /// Sleeps in the driver: `block` blocks in the poller until its waker fires or its timeout
    /// passes. Returns at once (without calling `block`) if a notification is pending.
    pub fn park_driver(&self, block: impl FnOnce()) {
        if self
            .state
            .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
            .is_err()
        {
            self.state.swap(EMPTY, AcqRel);
            return;
        }
        block();
        // Woken by the waker, an I/O event or the timeout: consume any notification either way.
        self.state.swap(EMPTY, AcqRel);
    }

    /// Notifies the worker. See [`Unpark`] for what is left to the caller.
    pub fn unpark(&self) -> Unpark {
        match self.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => Unpark::Done,
            PARKED_CONDVAR => {
                // Taking the lock orders this signal after the sleeper's wait began.
                drop(self.lock.lock().unwrap());
                self.cvar.notify_one();
                Unpark::Done
            }
            PARKED_DRIVER => Unpark::WakeDriver,
            other => panic!("grove: worker parker in unknown state {other}"),
        }
    }

    fn take_notification(&self) -> bool {
        self.state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Acquire)
            .is_ok()
    }
}
