//! `Condvar`: wait for a condition under a [`Mutex`], in greenlets and threads.
//!
//! A waiter queues itself under the condvar's internal lock, then releases the user's mutex and
//! parks; the internal lock is released after the switch, so a `notify_*` (which takes it) can
//! never run between the release of the mutex and the park: no lost notification. A notify is a
//! hand-off to a waiter that is still waiting, so nobody wakes without being notified (no
//! spurious wake-ups, as parking_lot promises) and a waiter that timed out or was killed never
//! swallows a `notify_one` meant for another.
//!
//! The waiter re-locks the mutex before it returns *and before it unwinds*, so the caller's
//! guard is always valid. A `kill` or an expired `timeout` that ends the wait is caught, the
//! mutex re-taken, and the unwind resumed; the re-lock itself runs shielded
//! (`grove_runtime::shielded`): a kill or timeout that arrives while it waits for the mutex
//! takes effect at the caller's next blocking call. Two things went wrong before: the re-lock
//! ran in the unwind's destructor, where a contended mutex blocked the worker thread (a
//! greenlet cannot switch away mid-unwind) and with one worker deadlocked against the holder;
//! and a second kill cut the re-lock short, leaving the caller with a guard for a mutex it did
//! not hold, and, for a notified waiter, swallowing the notification.

use crate::mutex::MutexGuard;
use crate::wait_queue::{wait, WaitQueue, Waited};
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A condition variable for [`crate::Mutex`].
#[derive(Default)]
pub struct Condvar {
    waiters: crate::spin::SpinLock<WaitQueue<()>>,
}

impl Condvar {
    /// A condvar with no waiters.
    pub const fn new() -> Condvar {
        Condvar {
            waiters: crate::spin::SpinLock::new(WaitQueue::new_const()),
        }
    }

    /// Releases the mutex, waits for a notification, and re-locks before returning.
    pub fn wait<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>) {
        self.wait_until_inner(guard, None);
    }

    /// As [`Condvar::wait`], for at most `d`. True if it timed out without a notification.
    pub fn wait_timeout<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, d: Duration) -> bool {
        self.wait_until_inner(guard, Instant::now().checked_add(d))
    }

    /// As [`Condvar::wait`], until `deadline`. True if it timed out without a notification.
    pub fn wait_until<T: ?Sized>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> bool {
        self.wait_until_inner(guard, Some(deadline))
    }

    /// Waits while `condition` holds (re-checked after every notification).
    pub fn wait_while<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) {
        while condition(&mut *guard) {
            self.wait(guard);
        }
    }

    fn wait_until_inner<T: ?Sized>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<Instant>,
    ) -> bool {
        let q = self.waiters.lock();
        let unlocked = Cell::new(false);
        // A kill or an expired `timeout` unwinds out of the wait; it is caught here and raised
        // again once the mutex is ours (see the module docs).
        let waited = catch_unwind(AssertUnwindSafe(|| {
            wait(
                q,
                |q| q,
                (),
                deadline,
                || {
                    guard.unlock_raw();
                    unlocked.set(true);
                },
            )
        }));
        if unlocked.get() {
            grove_runtime::shielded(|| guard.relock_raw());
        }
        match waited {
            Ok(w) => w == Waited::TimedOut,
            Err(cancelled) => resume_unwind(cancelled),
        }
    }

    /// Wakes one waiter; true if there was one.
    pub fn notify_one(&self) -> bool {
        self.waiters.lock().wake_one(|_| (), |_| ()).is_some()
    }

    /// Wakes every waiter; returns how many.
    pub fn notify_all(&self) -> usize {
        self.waiters.lock().wake_all()
    }
}

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condvar")
            .field("waiters", &self.waiters.lock().len())
            .finish()
    }
}
