//! I/O readiness: each registered fd's readiness word and its waiters (the per-socket waiter
//! protocol).
//!
//! # Design
//!
//! A socket is registered with the shared poller once, for its lifetime (from the first
//! operation that would block: see [`Registration`]), edge-triggered, for both directions. Its
//! `IoSource` holds a readiness word and two lists of parked waiters (read and write). A
//! blocking operation tries the syscall first; on `WouldBlock` it clears the readiness it acted
//! on and parks on its direction's list; the poller's event sets readiness and wakes exactly the
//! waiters of the directions that became ready. Any worker (or plain thread)
//! can resume any woken greenlet: no socket is bound to a worker.
//!
//! # The readiness word, and why no event is lost
//!
//! `tick << 8 | bits`. Each event from the poller ORs its bits in and bumps `tick`. An operation
//! reads the word, tries the syscall, and on `WouldBlock` clears its bits only if `tick` is
//! unchanged (`IoSource::clear_readiness`, a compare-exchange): if an event arrived after the
//! read of the word, the bits stay and the operation retries instead of parking on an edge that
//! has already passed.
//!
//! Parking: the waiter takes the list's lock, re-reads the word, and parks only if its bits are
//! still clear, with the lock released after the switch. The poller updates the word (AcqRel)
//! *before* taking the lock to drain the list. So either the waiter's re-read sees the event's
//! bits, or the event's drain (which takes the lock after the waiter released it) finds the
//! waiter's token. The same two-step is modelled in `tests/loom_io.rs`.
//!
//! A new source starts out ready in both directions, so the first operation tries its syscall
//! at once instead of waiting for the registration's first event.

use crate::io_readiness::Readiness;
pub use crate::io_readiness::{Direction, ReadyEvent, READABLE, WRITABLE};
use crate::io_readiness::{ERROR, PRIORITY, READ_CLOSED, WRITE_CLOSED};
use crate::park::{park, Unparker};
use crate::park_state::Wake;
use crate::sched::runtime;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

/// One registered fd's readiness and waiters.
pub(crate) struct IoSource {
    readiness: Readiness,
    waiters: parking_lot::Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    read: Vec<Unparker>,
    write: Vec<Unparker>,
}

// The waiter lists are changed under their lock by this module alone, never across user code:
// an unwind leaves them whole, so sockets may cross `catch_unwind` as std's do.
impl std::panic::RefUnwindSafe for IoSource {}
impl std::panic::UnwindSafe for IoSource {}

impl IoSource {
    /// A source that starts ready in both directions (`optimistic`) or in neither.
    pub(crate) fn new(optimistic: bool) -> IoSource {
        IoSource {
            readiness: Readiness::new(optimistic),
            waiters: parking_lot::Mutex::new(Waiters::default()),
        }
    }

    /// The poller saw `bits`: record them, then wake the waiters they concern. The woken
    /// tokens go to `spent`, for the poller to drop once it has let go of its lock: a token may
    /// hold the last reference to a greenlet that has finished meanwhile, whose result's `Drop`
    /// (user code, which may do I/O) must not run while nobody can poll.
    pub(crate) fn dispatch(&self, bits: u8, spent: &mut Vec<Unparker>) {
        self.readiness.set(bits);
        // Appended, not taken: the lists keep their capacity, so a wait/wake cycle allocates
        // nothing (taking the Vec cost a malloc and a free per request, seen in callgrind).
        // Straight into `spent` (reused by the poller), woken from there after the lock.
        let start = spent.len();
        {
            let mut w = self.waiters.lock();
            if Direction::Read.wants(bits) {
                spent.append(&mut w.read);
            }
            if Direction::Write.wants(bits) {
                spent.append(&mut w.write);
            }
        }
        // Into `runnext`: the worker that polled runs a ready socket's greenlet next, and wakes
        // another worker only for the ones it displaces (a lone event costs no futex wake-up:
        // measured with benches/net_hello, 9.35 -> 6.8-7.9 us of server CPU per request at
        // c256, and involuntary context switches 0.058 -> 0.005 per request).
        for u in &spent[start..] {
            u.wake_by_ref(Wake::Unparked, crate::sched::Hint::Next);
        }
    }

    /// Clears the data readiness `ev` observed (a short transfer), unless an event came in
    /// since.
    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        self.readiness.clear(ev);
    }

    /// Clears all the readiness `ev` observed (its operation said `WouldBlock`), unless an
    /// event came in since.
    pub(crate) fn clear_after_would_block(&self, ev: ReadyEvent) {
        self.readiness.clear_would_block(ev);
    }

    /// Waits until `dir` is ready (or `deadline` passes: `TimedOut`).
    pub(crate) fn poll_ready(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
    ) -> io::Result<ReadyEvent> {
        crate::coop::charge();
        loop {
            if let Some(ev) = self.readiness.ready(dir) {
                return Ok(ev);
            }
            let mut listed = Unlist {
                source: self,
                dir,
                id: None,
            };
            let woke = park(
                |token| {
                    let mut w = self.waiters.lock();
                    if self.readiness.ready(dir).is_some() {
                        return None; // an event got in first
                    }
                    listed.id = Some(token.park_id());
                    w.list(dir).push(token);
                    Some(move || drop(w))
                },
                deadline,
            );
            match woke {
                // Only an event unparks this park, and it took our token off the list.
                Wake::Unparked => listed.id = None,
                // Only a park during an unwind (which blocks its thread with its own token, see
                // `park`) or in a shielded section returns this: take our token off.
                Wake::Killed => drop(listed),
                Wake::TimedOut => {
                    drop(listed);
                    // Readiness that raced in with the timeout is taken, except during an
                    // unwind: there an expired `timeout` scope is reported once, and an
                    // operation that then still found `WouldBlock` parked again with nothing
                    // left to bound it.
                    if let Some(ev) = self.readiness.ready(dir) {
                        if !std::thread::panicking() {
                            return Ok(ev);
                        }
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "grove: operation timed out",
                    ));
                }
            }
        }
    }
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut Vec<Unparker> {
        match dir {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

/// Takes a waiter's token off its source's list when its park ends other than by an event: a
/// timeout, or an unwind through the park (`kill`, a `timeout` scope). Left there, the token
/// (which holds a reference to its greenlet) would stay until the socket next became ready,
/// which for an idle socket may be never: 30,000 greenlets killed while reading one idle UDP
/// socket held ~12 MB.
struct Unlist<'a> {
    source: &'a IoSource,
    dir: Direction,
    id: Option<crate::park::ParkId>,
}

impl Drop for Unlist<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut w = self.source.waiters.lock();
            w.list(self.dir).retain(|u| u.park_id() != id);
        }
    }
}

/// Maps a mio event to readiness bits.
pub(crate) fn event_bits(e: &mio::event::Event) -> u8 {
    let mut b = 0;
    if e.is_readable() {
        b |= READABLE;
    }
    if e.is_writable() {
        b |= WRITABLE;
    }
    if e.is_read_closed() {
        b |= READ_CLOSED;
    }
    if e.is_write_closed() {
        b |= WRITE_CLOSED;
    }
    if e.is_error() {
        b |= ERROR;
    }
    if e.is_priority() {
        b |= PRIORITY;
    }
    b
}

/// An fd registered with the runtime's poller for as long as this lives (the way in for
/// sockets, and for other libraries' fds).
///
/// The `epoll_ctl` that registers the fd waits until the first time an operation would block (or
/// [`wait`](Self::wait) is called): a connection that is served without ever waiting (a request
/// already in the buffer when it is accepted, answered, closed) costs no poller syscall at all.
/// Registering late loses nothing: `EPOLL_CTL_ADD` checks the fd's readiness at once and queues
/// an event if it is ready, and the readiness word is only cleared with its tick (see above).
pub struct Registration {
    source: Arc<IoSource>,
    /// The poller's token for this fd, or [`UNREGISTERED`]. Set once, under the source's waiter
    /// lock (so two first waiters register once), read lock-free on every would-block.
    token: AtomicUsize,
    fd: RawFd,
    /// See [`Registration::set_closes_with_fd`].
    closes_with_fd: AtomicBool,
}

const UNREGISTERED: usize = usize::MAX;

impl Registration {
    /// Registers `fd` (which must be non-blocking and stay open while registered) for both
    /// directions, edge-triggered, from the first operation that would block on. That is also
    /// when a registration error (`ENOMEM`, `ENOSPC` from `fs.epoll.max_user_watches`) shows,
    /// as the error of that operation; `new` itself does not fail today.
    pub fn new(fd: RawFd) -> io::Result<Registration> {
        Ok(Self::with_source(fd, IoSource::new(true)))
    }

    /// Ends the registration now, taking the fd out of the poller (it may stay open).
    pub fn deregister(mut self) {
        self.end(false);
    }

    fn with_source(fd: RawFd, source: IoSource) -> Registration {
        Registration {
            source: Arc::new(source),
            token: AtomicUsize::new(UNREGISTERED),
            fd,
            closes_with_fd: AtomicBool::new(false),
        }
    }

    /// Registers the fd with the poller unless that is done already.
    fn ensure_registered(&self) -> io::Result<()> {
        // Acquire: pairs with the Release store below (a registration made on another thread).
        if self.token.load(Acquire) != UNREGISTERED {
            return Ok(());
        }
        let _first = self.source.waiters.lock();
        if self.token.load(Relaxed) == UNREGISTERED {
            let token = runtime().driver.register(self.fd, self.source.clone())?;
            self.token.store(token, Release);
        }
        Ok(())
    }

    /// The readiness read before `op` was stale: register if needed, then clear it.
    fn on_would_block(&self, ev: ReadyEvent) -> io::Result<()> {
        self.ensure_registered()?;
        self.source.clear_after_would_block(ev);
        Ok(())
    }

    /// Runs `op` until it does not fail with `WouldBlock`, parking until `dir` is ready between
    /// attempts, up to `deadline` (then `ErrorKind::TimedOut`). A cancellation point.
    pub fn io<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let ev = self.source.poll_ready(dir, deadline)?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.on_would_block(ev)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// As [`io`](Self::io), for one plain `read` or `write` of `asked` bytes on a TCP stream: a
    /// transfer shorter than asked, but not empty, means the kernel's buffer ran dry (read) or
    /// full (write) at that moment, so the direction's readiness is cleared without the extra
    /// syscall that would only say `WouldBlock`. As tokio does. No event is lost: data or room
    /// that comes after the syscall brings a new edge, whose tick makes the clear fail if it was
    /// dispatched first, and which sets the bit again if it is dispatched later.
    ///
    /// Only where a short transfer does mean that: not for datagrams, `peek`, vectored calls
    /// (the kernel takes at most `IOV_MAX` buffers) or Unix streams (a read stops at a message
    /// that carries fds or other credentials, with more queued). A TCP read also stops short at
    /// an urgent (out-of-band) mark with in-band data behind it: on Linux the poller reports
    /// urgent data (`PRIORITY`), and while that bit is set only a `WouldBlock` clears the readiness (tokio
    /// has no such guard: there, the data behind the mark waits for the next event).
    pub fn io_stream(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        asked: usize,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            let ev = self.source.poll_ready(dir, deadline)?;
            match op() {
                Ok(n) if n > 0 && n < asked => {
                    // Unregistered, the word is never set again: leave it, and let the next
                    // operation's `WouldBlock` register (a connection served in one exchange
                    // never needs to).
                    if self.token.load(Relaxed) != UNREGISTERED && !ev.urgent() {
                        self.source.clear_readiness(ev);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.on_would_block(ev)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// As [`io`](Self::io), for receiving (or peeking at) a datagram. A datagram socket shut
    /// for reading reports itself readable and read-closed, yet a non-blocking receive on it
    /// says `WouldBlock`, where the blocking receive of std answers at once (`Ok(0)` from
    /// `recv`): so a `WouldBlock` while the readiness says read-closed gives `closed()`, what
    /// std's call gives there, instead of waiting for an event that never comes. (Only this
    /// socket's own `shutdown` sets it for datagrams: a Unix datagram peer's close does not.)
    pub fn io_recv<R>(
        &self,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<R>,
        closed: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let ev = self.source.poll_ready(Direction::Read, deadline)?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && ev.read_closed() => {
                    return closed();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.on_would_block(ev)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// This handle shut its socket down for `dir` (or both): wakes the operations waiting on
    /// it in those directions, which then retry and meet the shutdown (`BrokenPipe`, end of
    /// stream). The kernel reports no event for it on every socket: a Unix socket shut for
    /// writing with its send buffer full stays silent, and its blocked writer waited for ever
    /// where std's returns `BrokenPipe`.
    pub fn on_shutdown(&self, read: bool, write: bool) {
        let bits = if read { READ_CLOSED } else { 0 } | if write { WRITE_CLOSED } else { 0 };
        let mut woken = Vec::new();
        self.source.dispatch(bits, &mut woken);
        drop(woken); // after the source's lock, as the poller does
    }

    /// Waits until `dir` is ready, up to `deadline`, without doing anything.
    ///
    /// The data readiness this registration keeps is a hint its own operations correct when
    /// they meet `WouldBlock` (it starts out ready, and stays so after a caller's own syscall
    /// drained the fd), which a bare wait cannot see. So the kernel has the last word on it: a
    /// readiness it does not confirm (`poll(2)`, no wait) is cleared and the wait goes on
    /// until the next event. Without that, a loop of `wait` and a non-blocking call that says
    /// `WouldBlock` never parked and spun a core. A closed half or an error (the poller's, or
    /// this handle's own `on_shutdown`) is final and answers at once.
    pub fn wait(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        self.ensure_registered()?;
        loop {
            let ev = self.source.poll_ready(dir, deadline)?;
            if ev.closed_or_error() || ready_now(self.fd, dir) {
                return Ok(());
            }
            self.source.clear_after_would_block(ev);
        }
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the owner closes the fd right after dropping this registration, the fd being
    /// the only descriptor of its open file that grove knows of (no `try_clone`). Then the drop
    /// leaves the fd's removal from the poller to the close, saving the `EPOLL_CTL_DEL`.
    /// [`deregister`](Self::deregister) always removes it. For grove's own sockets; an fd that
    /// stays open after a drop with this set stays in the poller (harmlessly: its events are
    /// dropped as stale, and registering it again takes the old entry over).
    #[doc(hidden)]
    pub fn set_closes_with_fd(&self, on: bool) {
        self.closes_with_fd.store(on, Relaxed);
    }

    fn end(&mut self, closing: bool) {
        let token = std::mem::replace(self.token.get_mut(), UNREGISTERED);
        if token == UNREGISTERED {
            return;
        }
        if closing && *self.closes_with_fd.get_mut() {
            runtime().driver.release_closed(token);
        } else {
            runtime().driver.deregister(self.fd, token);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.end(true);
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .field("token", &self.token)
            .finish()
    }
}

/// Waits until `fd` is readable, or `timeout` passes (`ErrorKind::TimedOut`): for other
/// libraries' sockets (a C client's fd). Parks a greenlet; blocks a plain thread. Any number of
/// waiters may wait on one fd, grove's own sockets' included: each wait registers a private
/// duplicate of `fd`, so it needs one free descriptor (at the process's fd limit it fails with
/// the `EMFILE` error of `fcntl(F_DUPFD)`).
pub fn wait_readable(fd: RawFd, timeout: Option<std::time::Duration>) -> io::Result<()> {
    wait_fd(fd, Direction::Read, timeout)
}

/// As [`wait_readable`], for writability.
pub fn wait_writable(fd: RawFd, timeout: Option<std::time::Duration>) -> io::Result<()> {
    wait_fd(fd, Direction::Write, timeout)
}

fn wait_fd(fd: RawFd, dir: Direction, timeout: Option<std::time::Duration>) -> io::Result<()> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    // The wait registers a private duplicate of `fd`, not `fd` itself. The poller keys its
    // registrations by fd number, so registering `fd` clashed (`EEXIST`) with a second waiter
    // on it, or with a grove socket that owns it; and unregistering by number after the caller
    // closed `fd` could remove the registration of an unrelated socket that reused the number.
    // The duplicate's number is ours until we close it, after unregistering.
    // SAFETY: F_DUPFD_CLOEXEC on a caller's fd only makes a new descriptor (or fails).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    let _close = CloseFd(dup);
    // Not optimistic: for a bare wait we need the kernel's word, which the edge-triggered
    // registration reports as its first event.
    let reg = Registration::with_source(dup, IoSource::new(false));
    match reg.wait(dir, deadline) {
        // epoll refuses regular files and the like, which poll(2) reports ready at once.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        // A deadline that passed before the poller's first event for the new registration
        // (a zero or tiny timeout) says nothing about the fd: ask the kernel once, as poll(2)
        // with that timeout would. A ready fd said `TimedOut` for a zero timeout.
        Err(e) if e.kind() == io::ErrorKind::TimedOut && ready_now(dup, dir) => Ok(()),
        r => r,
    }
    // `reg` unregisters, then `_close` closes the duplicate.
}

/// True if `poll(2)` says `fd` is ready for `dir` now (errors and hang-ups count as ready, as
/// a wait's caller then learns them from its next operation).
fn ready_now(fd: RawFd, dir: Direction) -> bool {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the call's duration; a zero timeout never blocks.
    match unsafe { libc::poll(&mut p, 1, 0) } {
        0 => false,
        // A failed `poll` (`ENOMEM`) proves nothing: say ready, and the caller's own operation
        // meets the truth. (`EINTR` only comes back, with a zero timeout, for an fd not ready.)
        -1 => io::Error::last_os_error().raw_os_error() != Some(libc::EINTR),
        _ => true,
    }
}

/// Closes a descriptor this module made, when dropped.
struct CloseFd(RawFd);

impl Drop for CloseFd {
    fn drop(&mut self) {
        // SAFETY: the fd was made by `wait_fd` and is closed once, here.
        unsafe { libc::close(self.0) };
    }
}
