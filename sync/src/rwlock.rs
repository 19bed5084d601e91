//! `RwLock<T>`: many readers or one writer, for greenlets and threads.
//!
//! All state (reader count, writer flag, FIFO of waiting readers and writers) sits under one
//! internal lock; an uncontended `read` or `write` is that lock's two atomic operations.
//!
//! Fairness is phase-fair FIFO: a reader arriving while anyone waits queues behind them (so a
//! stream of readers cannot starve a writer); a releasing writer hands the lock to the next
//! writer, or to *all* the readers at the front of the queue at once. Hand-off, as everywhere
//! in this crate: the waker updates the counts for the waiter before unparking it, and undoes
//! that if the waiter's park had already ended.

use crate::wait_queue::{wait_leaving, WaitQueue, Waited};
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Read,
    Write,
}

struct State {
    readers: usize,
    writer: bool,
    waiters: WaitQueue<Want>,
}

/// A reader-writer lock.
pub struct RwLock<T: ?Sized> {
    state: crate::spin::SpinLock<State>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives `&mut T` to one writer or `&T` to readers that may be on different
// threads: Send for moving access, Sync for sharing it.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access; released on drop.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

/// Exclusive access; released on drop.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

// SAFETY: a read guard is a right to `&T`.
unsafe impl<T: ?Sized + Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a write guard is a right to `&mut T`.
unsafe impl<T: ?Sized + Send + Sync> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: `&RwLockWriteGuard` gives `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: crate::spin::SpinLock::new(State {
                readers: 0,
                writer: false,
                waiters: WaitQueue::new_const(),
            }),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock, returning the data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access, parking while a writer holds the lock or waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        loop {
            let mut st = self.state.lock();
            if !st.writer && st.waiters.is_empty() {
                st.readers += 1;
                return RwLockReadGuard { lock: self };
            }
            if self.wait(st, Want::Read) == Waited::HandedOver {
                return RwLockReadGuard { lock: self }; // the waker counted us in
            }
        }
    }

    /// Exclusive access, parking while anyone holds the lock or waits for it.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        loop {
            let mut st = self.state.lock();
            if !st.writer && st.readers == 0 && st.waiters.is_empty() {
                st.writer = true;
                return RwLockWriteGuard { lock: self };
            }
            if self.wait(st, Want::Write) == Waited::HandedOver {
                return RwLockWriteGuard { lock: self }; // the waker made us the writer
            }
        }
    }

    /// Queues for `want` until handed the lock. A waiter that leaves without it (killed, or a
    /// `timeout` around the call) lets in whoever it held back: a writer queued ahead of
    /// readers keeps them out while other readers hold the lock, and its leaving must not.
    fn wait(&self, st: crate::spin::SpinGuard<'_, State>, want: Want) -> Waited {
        let leave: fn(&mut State) = |st| {
            if !st.writer {
                Self::wake_next(st);
            }
        };
        wait_leaving(
            grove_runtime::Here::now(),
            st,
            |s| &mut s.waiters,
            want,
            None,
            || (),
            leave,
        )
    }

    /// Shared access if available now.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut st = self.state.lock();
        (!st.writer && st.waiters.is_empty()).then(|| {
            st.readers += 1;
            RwLockReadGuard { lock: self }
        })
    }

    /// Exclusive access if available now.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut st = self.state.lock();
        (!st.writer && st.readers == 0 && st.waiters.is_empty()).then(|| {
            st.writer = true;
            RwLockWriteGuard { lock: self }
        })
    }

    /// Mutable access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn read_unlock(&self) {
        let mut st = self.state.lock();
        st.readers -= 1;
        if st.readers == 0 {
            Self::wake_next(&mut st);
        }
    }

    fn write_unlock(&self) {
        let mut st = self.state.lock();
        st.writer = false;
        Self::wake_next(&mut st);
    }

    /// Hands the free lock to the next writer, or to every reader at the front of the queue.
    fn wake_next(st: &mut State) {
        while let Some(&want) = st.waiters.front() {
            match want {
                Want::Write => {
                    if st.readers > 0 {
                        return;
                    }
                    let w = st.waiters.pop_front().expect("grove: waiter vanished");
                    st.writer = true;
                    if w.token.unpark() {
                        return;
                    }
                    st.writer = false; // cancelled: try the next one
                }
                Want::Read => {
                    let w = st.waiters.pop_front().expect("grove: waiter vanished");
                    st.readers += 1;
                    if !w.token.unpark() {
                        st.readers -= 1;
                    }
                    // Keep going: every reader at the front gets in together.
                }
            }
        }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

/// Guards print as what they guard, as std's do.
macro_rules! guard_fmt {
    ($guard:ident) => {
        impl<T: ?Sized + fmt::Debug> fmt::Debug for $guard<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&**self, f)
            }
        }

        impl<T: ?Sized + fmt::Display> fmt::Display for $guard<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&**self, f)
            }
        }
    };
}

guard_fmt!(RwLockReadGuard);
guard_fmt!(RwLockWriteGuard);

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.try_read() {
            Some(g) => f.debug_struct("RwLock").field("data", &&*g).finish(),
            None => f.debug_struct("RwLock").field("data", &"<locked>").finish(),
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard means no writer holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard means we hold the lock exclusively.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}
