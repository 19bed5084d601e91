//! The driver: the poller the runtime sleeps in, shared by all workers, and the sources
//! registered with it (see `io.rs` for each source's readiness and waiters).
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

use crate::io::{event_bits, IoSource};
use crate::park::Unparker;
use crate::sched::Shared;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::{Mutex, MutexGuard};
use std::cell::Cell;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKE_TOKEN: Token = Token(usize::MAX);

/// Not asleep in the poller: nobody needs waking for an earlier timer.
const AWAKE: u64 = 0;

pub(crate) struct Driver {
    inner: Mutex<DriverInner>,
    waker: Waker,
    /// A handle for (de)registering while another worker sleeps in the poll.
    registry: mio::Registry,
    /// Registered sources by token (a slab: `None` slots are free, listed in `free`).
    sources: Mutex<Sources>,
    /// Registered sources right now; busy workers poll only when there are any.
    registered: AtomicUsize,
    /// Deadline (ns since epoch) the holder sleeps until; `u64::MAX` without timeout; `AWAKE`.
    sleep_until: AtomicU64,
}

struct DriverInner {
    poll: Poll,
    events: Events,
    /// Precise wake-ups for timers (Linux): `epoll_wait` takes whole milliseconds, which made
    /// every `sleep` up to 1 ms late; a timerfd fires within microseconds of the deadline.
    timer: Option<PreciseTimer>,
}

/// A timerfd registered with the poller, and the deadline it is armed for.
struct PreciseTimer {
    // Only Linux has a timerfd; elsewhere no `PreciseTimer` is ever made.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fd: std::os::fd::OwnedFd,
    armed: u64,
}

const TIMER_TOKEN: Token = Token(usize::MAX - 1);

impl PreciseTimer {
    #[cfg(target_os = "linux")]
    fn new(registry: &mio::Registry) -> Option<PreciseTimer> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: timerfd_create has no memory preconditions; a negative result is an error.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry
            .register(
                &mut SourceFd(&fd.as_raw_fd()),
                TIMER_TOKEN,
                Interest::READABLE,
            )
            .ok()?;
        Some(PreciseTimer {
            fd,
            armed: u64::MAX,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_registry: &mio::Registry) -> Option<PreciseTimer> {
        None
    }

    /// Arms the timerfd to expire `wait` from now (if not armed for `deadline` already).
    #[cfg(target_os = "linux")]
    fn arm(&mut self, deadline: u64, wait: Duration) {
        use std::os::fd::AsRawFd;
        if self.armed == deadline {
            return;
        }
        let wait = wait.max(Duration::from_nanos(1)); // zero would disarm it
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        self.armed = deadline;
    }

    #[cfg(not(target_os = "linux"))]
    fn arm(&mut self, _deadline: u64, _wait: Duration) {}

    /// Consumes an expiry (the fd stays readable until read).
    fn drain(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our own non-blocking fd.
            unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        self.armed = u64::MAX;
    }
}

/// The registered sources, by slot. A poller token is a slot *and* that slot's generation,
/// bumped whenever the slot is freed: an event that `epoll_wait` returned for a socket that
/// another worker deregistered before this batch was dispatched carries the old generation,
/// and is dropped instead of reaching the socket that reuses the slot. (Without it, a stale
/// "read closed" from a closed Unix socket landed on a fresh one, whose reads then spun on
/// `WouldBlock` forever, seen with two and four workers.) The same holds for an entry a raw
/// duplicate keeps in the epoll set after its socket closed (`release_closed`), for as long as
/// the duplicate lives: until the slot's generation wraps, after 2^31 (on 32-bit targets 2^15)
/// more registrations in that one slot.
#[derive(Default)]
struct Sources {
    /// The generation, and the fd and source of a live registration.
    slots: Vec<(u32, Option<Live>)>,
    free: Vec<usize>,
}

/// A live registration's fd and source.
type Live = (RawFd, Arc<IoSource>);

/// Token bits that name the slot; the generation sits above them.
const SLOT_BITS: u32 = usize::BITS / 2;
/// Generations wrap below the top bit, so no token is ever `WAKE_TOKEN` or `TIMER_TOKEN`.
const GENERATION_MASK: u32 = (1 << (usize::BITS / 2 - 1)) - 1;

fn token_of(slot: usize, generation: u32) -> usize {
    slot | (generation as usize) << SLOT_BITS
}

fn slot_of(token: usize) -> (usize, u32) {
    (token & ((1 << SLOT_BITS) - 1), (token >> SLOT_BITS) as u32)
}

/// The right to sleep in the poller.
pub(crate) struct DriverGuard<'a> {
    inner: ManuallyDrop<MutexGuard<'a, DriverInner>>,
    driver: &'a Driver,
    /// Tokens its polls woke, dropped once the lock is released (see `IoSource::dispatch`).
    spent: Vec<Unparker>,
}

thread_local! {
    /// The empty `spent` list of this thread's last guard, kept for its capacity.
    static SPENT: Cell<Vec<Unparker>> = const { Cell::new(Vec::new()) };
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
        let registry = poll.registry().try_clone()?;
        let timer = PreciseTimer::new(&registry);
        Ok(Driver {
            inner: Mutex::new(DriverInner {
                poll,
                events: Events::with_capacity(1024),
                timer,
            }),
            waker,
            registry,
            sources: Mutex::new(Sources::default()),
            registered: AtomicUsize::new(0),
            sleep_until: AtomicU64::new(AWAKE),
        })
    }

    /// Registers `fd` for both directions, edge-triggered; its events go to `source`.
    pub(crate) fn register(&self, fd: RawFd, source: Arc<IoSource>) -> io::Result<usize> {
        let token = {
            let mut s = self.sources.lock();
            let slot = match s.free.pop() {
                Some(t) => t,
                None => {
                    assert!(
                        s.slots.len() < (1 << SLOT_BITS) - 1,
                        "grove: too many registered sockets for the poller's tokens"
                    );
                    s.slots.push((0, None));
                    s.slots.len() - 1
                }
            };
            s.slots[slot].1 = Some((fd, source));
            token_of(slot, s.slots[slot].0)
        };
        let registered =
            match self
                .registry
                .register(&mut SourceFd(&fd), Token(token), source_interest())
            {
                // The fd's open file is in the set under this number already. If no live
                // registration has it, the entry is a leftover: an earlier handle closed without
                // `EPOLL_CTL_DEL` (`release_closed`) while a duplicate kept the file open, and
                // the duplicate has since been given the same number. Take that entry over. A
                // live one (the fd registered twice) is refused, as it always was: taking it over
                // would leave its owner waiting for events that go to the newcomer.
                Err(e)
                    if e.raw_os_error() == Some(libc::EEXIST)
                        && !self.registered_elsewhere(fd, token) =>
                {
                    self.registry
                        .reregister(&mut SourceFd(&fd), Token(token), source_interest())
                }
                r => r,
            };
        if let Err(e) = registered {
            self.release_token(token);
            return Err(e);
        }
        self.registered.fetch_add(1, Relaxed);
        Ok(token)
    }

    /// Undoes [`Driver::register`] (the fd is still open).
    pub(crate) fn deregister(&self, fd: RawFd, token: usize) {
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        self.release_token(token);
        self.registered.fetch_sub(1, Relaxed);
    }

    /// True if a live registration other than `token`'s has `fd` (a scan of every slot: only
    /// after an `EEXIST`, which a correct program meets only with a leftover entry).
    fn registered_elsewhere(&self, fd: RawFd, token: usize) -> bool {
        let (mine, _) = slot_of(token);
        let s = self.sources.lock();
        s.slots
            .iter()
            .enumerate()
            .any(|(i, (_, live))| i != mine && matches!(live, Some((f, _)) if *f == fd))
    }

    /// Undoes [`Driver::register`] for an fd that is closed next and shares its open file with
    /// no other descriptor: the close takes it out of the epoll set, so no `EPOLL_CTL_DEL` (one
    /// syscall fewer per short-lived connection). Should a duplicate exist after all, its entry
    /// stays in the set until the file is closed, and its events carry this token, whose
    /// generation is bumped here: they are dropped ([`Sources`]).
    pub(crate) fn release_closed(&self, token: usize) {
        self.release_token(token);
        self.registered.fetch_sub(1, Relaxed);
    }

    fn release_token(&self, token: usize) {
        let (slot, generation) = slot_of(token);
        let mut s = self.sources.lock();
        assert_eq!(
            s.slots[slot].0, generation,
            "grove: a poller token released twice"
        );
        s.slots[slot] = ((generation + 1) & GENERATION_MASK, None);
        s.free.push(slot);
    }

    /// The source `token` was given to, if it is still registered under it (see [`Sources`]).
    fn source_for(&self, token: usize) -> Option<Arc<IoSource>> {
        let (slot, generation) = slot_of(token);
        match self.sources.lock().slots.get(slot) {
            Some((g, Some((_, source)))) if *g == generation => Some(source.clone()),
            _ => None,
        }
    }

    /// Hands each event to its source (outside any driver lock but the slab's, briefly).
    fn dispatch(&self, events: &Events, spent: &mut Vec<Unparker>) {
        for e in events.iter() {
            if e.token() == WAKE_TOKEN || e.token() == TIMER_TOKEN {
                continue;
            }
            if let Some(source) = self.source_for(e.token().0) {
                source.dispatch(event_bits(e), spent);
            }
        }
    }

    /// A busy worker's (or the monitor's) look at the poller, without blocking, if no worker
    /// is in it and anything is registered. True if it polled.
    pub(crate) fn poll_if_free(&self) -> bool {
        if self.registered.load(Relaxed) == 0 {
            return false;
        }
        match self.try_lock() {
            Some(mut g) => {
                g.poll_now();
                true
            }
            None => false,
        }
    }

    /// Takes the driver if no other worker holds it.
    pub(crate) fn try_lock(&self) -> Option<DriverGuard<'_>> {
        self.inner.try_lock().map(|inner| DriverGuard {
            inner: ManuallyDrop::new(inner),
            driver: self,
            spent: SPENT.try_with(Cell::take).unwrap_or_default(),
        })
    }

    /// Wakes the worker asleep in the poller (or makes its next sleep return at once).
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            panic!("grove: cannot wake the poller: {e}");
        }
    }

    /// A timer earlier than all others was armed at `ns`: wake the poller if it sleeps past it.
    /// False if nobody sleeps in the poller at all (then nobody is watching the clock: see
    /// `Shared::arm_timer`).
    pub(crate) fn on_earlier_timer(&self, ns: u64) -> bool {
        // SeqCst: pairs with the store in `block_until_event` (module docs).
        let until = self.sleep_until.load(SeqCst);
        if ns < until {
            self.wake();
        }
        until != AWAKE
    }

    /// True if no worker holds the driver (none sleeps in the poller or polls it right now).
    pub(crate) fn is_free(&self) -> bool {
        !self.inner.is_locked()
    }
}

impl DriverGuard<'_> {
    /// Sleeps in the poller until an event, the waker, or the earliest timer. The caller fires
    /// the due timers once it has let go of the driver (a stale timer token may drop a finished
    /// greenlet's result, user code, which must not run while nobody can poll).
    pub(crate) fn block_until_event(&mut self, shared: &Shared) {
        let driver = self.driver;
        let mut until = shared.timers.next_deadline().unwrap_or(u64::MAX);
        driver.sleep_until.store(until.max(1), SeqCst);
        // Re-read after publishing (module docs): an earlier timer may have just been armed.
        if let Some(n) = shared.timers.next_deadline() {
            until = until.min(n);
        }
        let mut timeout = (until != u64::MAX).then(|| {
            let now = shared.timers.nanos(Instant::now());
            Duration::from_nanos(until.saturating_sub(now))
        });
        if let (Some(wait), Some(timer)) = (timeout, self.inner.timer.as_mut()) {
            // The timerfd wakes us on time; epoll's own (millisecond, rounded up) timeout stays
            // as a backstop.
            timer.arm(until, wait);
            timeout = Some(wait + Duration::from_millis(1));
        }
        self.poll(timeout);
        driver.sleep_until.store(AWAKE, SeqCst);
    }

    /// Polls without blocking and dispatches what it finds.
    pub(crate) fn poll_now(&mut self) {
        self.poll(Some(Duration::ZERO));
    }

    fn poll(&mut self, timeout: Option<Duration>) {
        let inner: &mut DriverInner = &mut self.inner;
        if let Err(e) = inner.poll.poll(&mut inner.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                panic!("grove: epoll_wait failed: {e}");
            }
        }
        if inner.events.iter().any(|e| e.token() == TIMER_TOKEN) {
            if let Some(t) = inner.timer.as_mut() {
                t.drain();
            }
        }
        self.driver.dispatch(&inner.events, &mut self.spent);
    }
}

impl Drop for DriverGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
        // The woken tokens, dropped with the driver unlocked (see `IoSource::dispatch`).
        self.spent.clear();
        put_spent(std::mem::take(&mut self.spent));
    }
}

/// Gives this thread its spare `spent` list back, looking the thread-local up afresh: the drops
/// just before it run users' code (a finished greenlet's result), and a runtime frame keeps no
/// thread-local address across code that may block or switch (docs/tls.md; the timer heap's
/// compaction did, and wrote to an exited thread's slot).
#[inline(never)]
fn put_spent(spent: Vec<Unparker>) {
    let _ = SPENT.try_with(|s| s.set(spent));
}

/// What a source is registered for: both directions, and on Linux urgent TCP data too (see
/// `io_readiness::PRIORITY`).
fn source_interest() -> Interest {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return Interest::READABLE | Interest::WRITABLE;
}

#[cfg(test)]
mod tests {
    use super::{slot_of, Driver};
    use crate::io::IoSource;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    #[test]
    fn rt_a_reused_poller_slot_does_not_take_the_old_sockets_events() {
        let driver = Driver::new().unwrap();
        let (a, _a2) = std::os::unix::net::UnixStream::pair().unwrap();
        let (b, _b2) = std::os::unix::net::UnixStream::pair().unwrap();
        let old = driver
            .register(a.as_raw_fd(), Arc::new(IoSource::new(true)))
            .unwrap();
        driver.deregister(a.as_raw_fd(), old);
        let new = driver
            .register(b.as_raw_fd(), Arc::new(IoSource::new(true)))
            .unwrap();
        assert_eq!(slot_of(old).0, slot_of(new).0, "the freed slot is reused");
        assert_ne!(old, new);
        // An event still in flight for the old socket finds nobody; the new one's is delivered.
        assert!(driver.source_for(old).is_none());
        assert!(driver.source_for(new).is_some());
        driver.deregister(b.as_raw_fd(), new);
        assert!(driver.source_for(new).is_none());
    }
}
