//! The short internal lock of every primitive in this crate: a test-and-test-and-set spinlock.
//!
//! Each primitive keeps its state and its wait queue under one lock held for a few dozen
//! instructions, never across a blocking call: a waiter parks with the lock's release as the
//! unlock step, which the worker runs right after the switch. So a contender waits at most a few
//! hundred nanoseconds, unless the holder's OS thread is preempted; then it yields its thread
//! after a few rounds of spinning (crossbeam's `Backoff::snooze`), as crossbeam-channel's own
//! spinlock does.
//!
//! Why not `parking_lot::Mutex`, which this replaced: its unlock is a compare-exchange (it must
//! see whether anyone is parked), where this lock's is a plain release store. A channel round
//! trip between two greenlets takes the lock four times, so that is four atomic
//! read-modify-writes fewer per round trip (callgrind and the ping-pong bench in
//! docs/benchmarks.md). Nobody ever sleeps on this lock, so there is nothing to wake.

use crossbeam_utils::Backoff;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands `&mut T` to one thread at a time, so sharing it moves `T` between
// threads: `T: Send` is what that needs (as for `std::sync::Mutex`).
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: as above; owning the lock owns the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

// A critical section under this lock is a few lines of this crate's code, never the user's (no
// callback, no `Drop` of a user value, no blocking call), so an unwind never leaves the state
// half-changed: every primitive built on it is as unwind-safe as std's (crossbeam-channel and
// std's `mpsc` make the same promise for theirs).
impl<T> std::panic::RefUnwindSafe for SpinLock<T> {}
impl<T> std::panic::UnwindSafe for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding the thread) while another holds it.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // Acquire: pairs with the Release store in `SpinGuard::drop` of the previous holder.
        if self.locked.swap(true, Acquire) {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            _borrow: PhantomData,
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let backoff = Backoff::new();
        loop {
            // Read-only until it looks free, so waiters do not bounce the line between cores.
            while self.locked.load(Relaxed) {
                backoff.snooze();
            }
            if !self.locked.swap(true, Acquire) {
                return;
            }
        }
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// A guard is as shareable as `&mut T` (so `Sync` only for `T: Sync`), not as `&SpinLock`.
    _borrow: PhantomData<&'a mut T>,
}

impl<'a, T> SpinGuard<'a, T> {
    /// The lock this guard holds (an associated function, so as not to shadow `T`'s methods).
    pub(crate) fn lock_of(guard: &Self) -> &'a SpinLock<T> {
        guard.lock
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // Release: publishes the critical section to the next `lock` (its Acquire swap).
        self.lock.locked.store(false, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;

    #[test]
    fn sync_spinlock_excludes_threads() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 400_000);
    }
}
