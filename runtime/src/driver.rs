//! The driver: the poller the runtime sleeps in, shared by all workers.
//!
//! One `mio::Poll` (epoll on Linux, kqueue on BSD and macOS) serves the whole runtime. No thread
//! is dedicated to it: the first worker to run out of work takes the driver's lock and sleeps in
//! `epoll_wait`, with the earliest timer as its timeout (Go's netpoller works the same way). The
//! other idle workers sleep on their condvars. A notifier that needs the worker in the poller
//! fires the poller's waker (an eventfd).
//!
//! Sleep deadline protocol: before blocking, the worker stores the deadline it will sleep until
//! (`SeqCst`), then reads the earliest timer (`SeqCst`). A thread arming an earlier timer stores
//! the new earliest (`SeqCst`, in `Timers::insert`), then reads the sleep deadline. Of the two
//! reads at least one sees the other's store, so either the worker sleeps with the new timeout
//! or it is woken to recompute it.

use crate::sched::Shared;
use mio::{Events, Poll, Token, Waker};
use parking_lot::{Mutex, MutexGuard};
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

const WAKE_TOKEN: Token = Token(usize::MAX);

/// Not asleep in the poller: nobody needs waking for an earlier timer.
const AWAKE: u64 = 0;

pub(crate) struct Driver {
    inner: Mutex<DriverInner>,
    waker: Waker,
    /// Deadline (ns since epoch) the holder sleeps until; `u64::MAX` without timeout; `AWAKE`.
    sleep_until: AtomicU64,
}

struct DriverInner {
    poll: Poll,
    events: Events,
}

/// The right to sleep in the poller.
pub(crate) struct DriverGuard<'a> {
    inner: MutexGuard<'a, DriverInner>,
    driver: &'a Driver,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
        Ok(Driver {
            inner: Mutex::new(DriverInner {
                poll,
                events: Events::with_capacity(1024),
            }),
            waker,
            sleep_until: AtomicU64::new(AWAKE),
        })
    }

    /// Takes the driver if no other worker holds it.
    pub(crate) fn try_lock(&self) -> Option<DriverGuard<'_>> {
        self.inner.try_lock().map(|inner| DriverGuard {
            inner,
            driver: self,
        })
    }

    /// Wakes the worker asleep in the poller (or makes its next sleep return at once).
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            panic!("grove: cannot wake the poller: {e}");
        }
    }

    /// A timer earlier than all others was armed at `ns`: wake the poller if it sleeps past it.
    pub(crate) fn on_earlier_timer(&self, ns: u64) {
        // SeqCst: pairs with the store in `block_until_event` (module docs).
        if ns < self.sleep_until.load(SeqCst) {
            self.wake();
        }
    }
}

impl DriverGuard<'_> {
    /// Sleeps in the poller until an event, the waker, or the earliest timer; then fires due
    /// timers (their greenlets land on this worker's deque).
    pub(crate) fn block_until_event(&mut self, shared: &Shared) {
        let driver = self.driver;
        let mut until = shared.timers.next_deadline().unwrap_or(u64::MAX);
        driver.sleep_until.store(until.max(1), SeqCst);
        // Re-read after publishing (module docs): an earlier timer may have just been armed.
        if let Some(n) = shared.timers.next_deadline() {
            until = until.min(n);
        }
        let timeout = (until != u64::MAX).then(|| {
            let now = shared.timers.nanos(Instant::now());
            // Round up to whole milliseconds the way epoll does, so we never wake early and spin.
            Duration::from_nanos(until.saturating_sub(now))
        });
        let inner = &mut *self.inner;
        if let Err(e) = inner.poll.poll(&mut inner.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                panic!("grove: epoll_wait failed: {e}");
            }
        }
        driver.sleep_until.store(AWAKE, SeqCst);
        // Only the waker is registered so far; the net layer adds socket readiness here.
        shared.fire_due_timers();
    }
}
