//! `Condvar`: wait for a condition under a [`Mutex`], in greenlets and threads.
//!
//! A waiter queues itself under the condvar's internal lock, then releases the user's mutex and
//! parks; the internal lock is released after the switch, so a `notify_*` (which takes it) can
//! never run between the release of the mutex and the park: no lost notification. A notify is a
//! hand-off to a waiter that is still waiting, so nobody wakes without being notified (no
//! spurious wake-ups, as parking_lot promises) and a waiter that timed out or was killed never
//! swallows a `notify_one` meant for another. The waiter re-locks the mutex before returning,
//! also when the wait unwinds, so the caller's guard is always valid.

use crate::mutex::MutexGuard;
use crate::wait_queue::{wait, WaitQueue, Waited};
use std::cell::Cell;
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
        let relock = Relock {
            guard,
            unlocked: Cell::new(false),
        };
        let waited = wait(
            &self.waiters,
            q,
            |q| q,
            (),
            deadline,
            || {
                relock.guard.unlock_raw();
                relock.unlocked.set(true);
            },
        );
        drop(relock);
        waited == Waited::TimedOut
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

/// Re-locks the user's mutex when the wait ends, however it ends, if the wait had released it.
struct Relock<'g, 'm, T: ?Sized> {
    guard: &'g MutexGuard<'m, T>,
    unlocked: Cell<bool>,
}

impl<T: ?Sized> Drop for Relock<'_, '_, T> {
    fn drop(&mut self) {
        if self.unlocked.get() {
            self.guard.relock_raw();
        }
    }
}
