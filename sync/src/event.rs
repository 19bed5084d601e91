//! `Event` (gevent's and `threading`'s) and `AsyncResult` (gevent's one-shot result).
//!
//! Both are a flag (or value) plus a queue of waiters under one internal lock: `set` stores, then
//! wakes everyone; a waiter checks under the same lock before queueing, so a `set` can never fall
//! between its check and its park.

use crate::wait_queue::{wait, WaitQueue, Waited};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A flag greenlets and threads can wait on.
#[derive(Default)]
pub struct Event {
    flag: AtomicBool,
    waiters: crate::spin::SpinLock<WaitQueue<()>>,
}

impl Event {
    /// A new, cleared event.
    pub const fn new() -> Event {
        Event {
            flag: AtomicBool::new(false),
            waiters: crate::spin::SpinLock::new(WaitQueue::new_const()),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut q = self.waiters.lock();
        // Release: pairs with the Acquire in `is_set`, so waiters see what came before `set`.
        self.flag.store(true, Ordering::Release);
        q.wake_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.flag.store(false, Ordering::Release);
    }

    /// True if set.
    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Waits until the flag is set. A cancellation point.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `d`; true if the flag is set.
    pub fn wait_timeout(&self, d: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(d))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_set() {
            return true;
        }
        let q = self.waiters.lock();
        if self.is_set() {
            return true;
        }
        match wait(q, |q| q, (), deadline, || ()) {
            // Woken by `set`; a `clear` may already have followed: gevent's `wait` returns anyway.
            Waited::HandedOver => true,
            Waited::TimedOut => self.is_set(),
        }
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

/// A value that arrives once (gevent's `AsyncResult`): `get` waits for `set`.
pub struct AsyncResult<T: Clone> {
    state: crate::spin::SpinLock<(Option<T>, WaitQueue<()>)>,
}

impl<T: Clone> Default for AsyncResult<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> AsyncResult<T> {
    /// An empty result.
    pub const fn new() -> AsyncResult<T> {
        AsyncResult {
            state: crate::spin::SpinLock::new((None, WaitQueue::new_const())),
        }
    }

    /// Stores the value (replacing any earlier one) and wakes every waiter. The value replaced
    /// is dropped after the internal lock is released. (`get` clones the value under that lock,
    /// a spinlock: `T::clone` should be cheap and must not block.)
    pub fn set(&self, value: T) {
        let old = {
            let mut st = self.state.lock();
            let old = st.0.replace(value);
            st.1.wake_all();
            old
        };
        drop(old);
    }

    /// True once a value is set.
    pub fn ready(&self) -> bool {
        self.state.lock().0.is_some()
    }

    /// The value, waiting until it is set. A cancellation point.
    pub fn get(&self) -> T {
        loop {
            if let Some(v) = self.get_until(None) {
                return v;
            }
        }
    }

    /// The value if set within `d`.
    pub fn get_timeout(&self, d: Duration) -> Option<T> {
        self.get_until(Instant::now().checked_add(d))
    }

    /// The value if already set.
    pub fn try_get(&self) -> Option<T> {
        self.state.lock().0.clone()
    }

    fn get_until(&self, deadline: Option<Instant>) -> Option<T> {
        let st = self.state.lock();
        if let Some(v) = &st.0 {
            return Some(v.clone());
        }
        wait(st, |s| &mut s.1, (), deadline, || ());
        self.state.lock().0.clone()
    }
}

impl<T: Clone + std::fmt::Debug> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("value", &self.state.lock().0)
            .finish()
    }
}
