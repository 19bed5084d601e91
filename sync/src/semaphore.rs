//! `Semaphore`: counted permits, gevent's `Semaphore` (the permit is released on drop).
//!
//! Permits and a FIFO of waiters under one internal lock. A released permit is handed to the
//! first waiter still waiting (FIFO, no barging: a newcomer queues behind waiters even if a
//! permit is momentarily free), and goes back to the count only if nobody is.

use crate::wait_queue::{wait, WaitQueue, Waited};
use std::time::{Duration, Instant};

struct State {
    permits: usize,
    waiters: WaitQueue<()>,
}

/// A counting semaphore.
pub struct Semaphore {
    state: crate::spin::SpinLock<State>,
}

/// One permit of a [`Semaphore`], given back when dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: crate::spin::SpinLock::new(State {
                permits,
                waiters: WaitQueue::new_const(),
            }),
        }
    }

    /// Takes a permit, parking (blocking) until one is free. A cancellation point.
    pub fn acquire(&self) -> Permit<'_> {
        loop {
            if let Some(p) = self.acquire_until(None) {
                return p;
            }
        }
    }

    /// Takes a permit if one is free now (and nobody is queued before us).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut st = self.state.lock();
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            return Some(Permit { sem: self });
        }
        None
    }

    /// Takes a permit, waiting at most `d`.
    pub fn acquire_timeout(&self, d: Duration) -> Option<Permit<'_>> {
        match Instant::now().checked_add(d) {
            Some(deadline) => self.acquire_until(Some(deadline)),
            None => Some(self.acquire()),
        }
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Option<Permit<'_>> {
        let mut st = self.state.lock();
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            return Some(Permit { sem: self });
        }
        match wait(st, |s| &mut s.waiters, (), deadline, || ()) {
            Waited::HandedOver => Some(Permit { sem: self }),
            Waited::TimedOut => None,
        }
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.state.lock().permits
    }

    /// Adds `n` permits (handing them to waiters first), under one lock: a huge `n` costs no
    /// more than the waiters it wakes (it took the lock once per permit).
    ///
    /// # Panics
    /// If `available() + n` would overflow `usize` (before anything is added or woken).
    pub fn add_permits(&self, n: usize) {
        let mut st = self.state.lock();
        assert!(
            st.permits.checked_add(n).is_some(),
            "grove: Semaphore::add_permits overflows the permit count"
        );
        let mut left = n;
        while left > 0 && st.waiters.wake_one(|_| (), |_| ()).is_some() {
            left -= 1;
        }
        st.permits += left;
    }

    fn release(&self) {
        let mut st = self.state.lock();
        if st.waiters.wake_one(|_| (), |_| ()).is_none() {
            st.permits += 1;
        }
    }
}

impl Permit<'_> {
    /// Keeps the permit taken for good (it is not released on drop).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad("Permit { .. }")
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.sem.release();
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("Semaphore")
            .field("available", &st.permits)
            .field("waiters", &st.waiters.len())
            .finish()
    }
}
