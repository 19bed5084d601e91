//! What every grove socket shares: a non-blocking std socket, its registration with the shared
//! poller, and std-style timeouts.
//!
//! An operation tries the syscall; on `WouldBlock` it parks until the poller says the direction
//! is ready (see `grove_runtime::io`), up to the socket's read or write timeout, which then gives
//! `ErrorKind::TimedOut` (std gives `WouldBlock` on Unix for its timeouts; grove always gives
//! `TimedOut`). On a plain thread the same call blocks the thread. A socket the user puts in
//! non-blocking mode (`set_nonblocking(true)`) never waits: it returns `WouldBlock` as std does.
//!
//! The timeouts and the non-blocking mode live in a `Settings` shared by every handle that
//! `try_clone` made from the same socket, as std keeps them on the socket itself (`SO_RCVTIMEO`,
//! `O_NONBLOCK` on the shared file description): set on one handle, they apply to all. Each
//! handle keeps its own fd and its own registration with the poller.

use grove_runtime::io::{Direction, Registration};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A registered socket of type `S` (a std socket in non-blocking mode).
pub(crate) struct Evented<S: AsRawFd> {
    /// Declared before `sock` so it drops first: deregistering after the close could hit an
    /// fd number another thread has just been given for a new socket, and silence that one.
    /// A handle never cloned leaves the removal from the poller to the close (no
    /// `EPOLL_CTL_DEL`: `Registration::set_closes_with_fd`); once `try_clone` has made a second
    /// descriptor of the file, the close would leave the entry in the poller, so each handle
    /// then deregisters before it closes. (A stale entry's events could not reach another
    /// socket either way: they carry the freed token, whose generation has moved on.)
    reg: Registration,
    pub(crate) sock: S,
    /// Shared with the handles `try_clone` made from this one (and they with theirs).
    settings: Arc<Settings>,
}

/// What std keeps on the socket rather than on the handle: one per socket, shared by its clones.
#[derive(Default)]
struct Settings {
    /// Timeouts in nanoseconds; 0 = none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// The user asked for non-blocking behaviour.
    nonblocking: AtomicBool,
}

impl<S: AsRawFd> Evented<S> {
    /// Registers `sock`, which must already be in non-blocking mode.
    pub(crate) fn new(sock: S) -> io::Result<Evented<S>> {
        let reg = Registration::new(sock.as_raw_fd())?;
        reg.set_closes_with_fd(true);
        Ok(Evented {
            reg,
            sock,
            settings: Arc::default(),
        })
    }

    /// A second handle to this socket, as std's `try_clone`: `dup` duplicates the fd (the copy
    /// shares the file description, so it is non-blocking too), which gets its own
    /// registration; the timeouts and the non-blocking mode stay shared with this handle.
    pub(crate) fn try_clone(
        &self,
        dup: impl FnOnce(&S) -> io::Result<S>,
    ) -> io::Result<Evented<S>> {
        let sock = dup(&self.sock)?;
        // Two descriptors of one file from now on: each close must take its own entry out.
        self.reg.set_closes_with_fd(false);
        Ok(Evented {
            reg: Registration::new(sock.as_raw_fd())?,
            sock,
            settings: self.settings.clone(),
        })
    }

    /// As [`io`](Self::io) for receiving or peeking at a datagram; `closed` gives what std's
    /// blocking call gives on a socket shut for reading (see `Registration::io_recv`).
    pub(crate) fn io_recv<R>(
        &self,
        op: impl FnMut() -> io::Result<R>,
        closed: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        let mut op = op;
        if self.settings.nonblocking.load(Relaxed) {
            return op();
        }
        self.reg.io_recv(self.deadline(Direction::Read), op, closed)
    }

    /// Shuts the socket down (`shut` makes the call), then wakes this handle's waiters in the
    /// directions shut (see `Registration::on_shutdown`).
    pub(crate) fn shutdown(
        &self,
        how: std::net::Shutdown,
        shut: impl FnOnce(&S, std::net::Shutdown) -> io::Result<()>,
    ) -> io::Result<()> {
        use std::net::Shutdown::{Both, Read, Write};
        shut(&self.sock, how)?;
        self.reg
            .on_shutdown(matches!(how, Read | Both), matches!(how, Write | Both));
        Ok(())
    }

    /// Runs `op` in direction `dir`, parking while it would block.
    pub(crate) fn io<R>(&self, dir: Direction, op: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        let mut op = op;
        if self.settings.nonblocking.load(Relaxed) {
            return op();
        }
        self.reg.io(dir, self.deadline(dir), op)
    }

    /// As [`io`](Self::io), for a send whose room no poller event reports: an unconnected Unix
    /// datagram `send_to` waits for room in the *receiver's* queue, while the sender's own
    /// socket reports writable after every failed attempt (the kernel frees the attempt's
    /// buffer), so waiting for readiness spun a core until the receiver drained. It retries
    /// after a pause instead, 1 ms doubling to 8 ms, within the write timeout.
    pub(crate) fn io_paced<R>(&self, op: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        let mut op = op;
        if self.settings.nonblocking.load(Relaxed) {
            return op();
        }
        let deadline = self.deadline(Direction::Write);
        retry_paced(
            Duration::from_millis(1),
            Duration::from_millis(8),
            deadline,
            op,
        )
    }

    /// As [`io`](Self::io), for a Unix stream write, whose wait for room may see no event at
    /// all: a peer that shuts its read half (`shutdown(Read)`) marks our side shut for
    /// sending, and Linux reports that with no poller event while our send buffer is full,
    /// where std's blocked `sendmsg` is woken by the state change and fails with `EPIPE`. So
    /// the wait is cut into slices, 20 ms doubling to 1 s, and the write is tried again after
    /// each: the `BrokenPipe` shows within a slice, while room that does come wakes the writer
    /// through its event as before. (A writer on a `try_clone` of a socket its sibling shuts
    /// for writing is caught the same way.) The cost: a writer parked on a full Unix socket
    /// wakes at most once a second.
    pub(crate) fn io_sliced<R>(
        &self,
        dir: Direction,
        op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        let mut op = op;
        if self.settings.nonblocking.load(Relaxed) {
            return op();
        }
        let deadline = self.deadline(dir);
        let mut slice = Duration::from_millis(20);
        loop {
            let end = Instant::now().checked_add(slice);
            let cut = match (deadline, end) {
                (Some(d), Some(e)) => Some(d.min(e)),
                (d, e) => d.or(e),
            };
            // Read before the wait, which may mark the scope reported. Only an unwind needs it:
            // outside one, an expired scope unwinds the wait instead of returning `TimedOut`.
            let scope = std::thread::panicking()
                .then(grove_runtime::scope_deadline)
                .flatten();
            match self.reg.io(dir, cut, &mut op) {
                // Only the slice's own end: a `TimedOut` while the thread unwinds is an expired
                // `timeout` scope's if that scope's deadline came first, which the runtime then
                // marks reported (it bounds no later wait). Not the clock: the park wakes late,
                // and a scope ending just before the slice was taken for the slice, and lost.
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        && end.is_some_and(|x| cut == Some(x) && scope.is_none_or(|s| s >= x)) =>
                {
                    // The slice ended: try once more, whatever the readiness says.
                    match op() {
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) => {}
                        r => return r,
                    }
                    slice = (slice * 2).min(Duration::from_secs(1));
                }
                r => return r,
            }
        }
    }

    /// As [`io`](Self::io) for a stream read or write of `asked` bytes (see
    /// `Registration::io_stream`: a short transfer clears the readiness without a syscall).
    pub(crate) fn io_stream(
        &self,
        dir: Direction,
        asked: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut op = op;
        if self.settings.nonblocking.load(Relaxed) {
            return op();
        }
        self.reg.io_stream(dir, self.deadline(dir), asked, op)
    }

    /// The deadline of an operation starting now, from the socket's timeout for `dir`.
    fn deadline(&self, dir: Direction) -> Option<Instant> {
        let t = match dir {
            Direction::Read => &self.settings.read_timeout,
            Direction::Write => &self.settings.write_timeout,
        };
        match t.load(Relaxed) {
            0 => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        }
    }

    /// Runs `op` in direction `dir` until it stops saying `WouldBlock`, up to `deadline`
    /// (ignoring the socket's own timeouts: for connect).
    pub(crate) fn io_until<R>(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        self.reg.io(dir, deadline, op)
    }

    /// Waits, up to `deadline`, for the end of a non-blocking connect that said `EINPROGRESS`,
    /// and gives its outcome.
    pub(crate) fn finish_connect(&self, deadline: Option<Instant>) -> io::Result<()>
    where
        S: AsFd,
    {
        // Until the handshake ends, getpeername fails: then SO_ERROR says whether it failed, or
        // it is still going ("would block": a registration starts out optimistic, so
        // a handshake that is already over, as on loopback, costs no wait).
        let sock = socket2::SockRef::from(&self.sock);
        self.io_until(Direction::Write, deadline, || match sock.peer_addr() {
            Ok(_) => Ok(()),
            // ENOTCONN (Linux), or EINVAL (macOS, for a refused or pending connect).
            Err(e) => match sock.take_error()? {
                Some(failed) => Err(failed),
                None if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::EINVAL)) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                None => Err(e),
            },
        })
    }

    pub(crate) fn set_timeout(&self, dir: Direction, d: Option<Duration>) -> io::Result<()> {
        if d == Some(Duration::ZERO) {
            // std's rule: a zero timeout is an error.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        let ns = d.map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64);
        match dir {
            Direction::Read => self.settings.read_timeout.store(ns, Relaxed),
            Direction::Write => self.settings.write_timeout.store(ns, Relaxed),
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        let t = match dir {
            Direction::Read => &self.settings.read_timeout,
            Direction::Write => &self.settings.write_timeout,
        };
        match t.load(Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.settings.nonblocking.store(on, Relaxed);
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The fd is being handed out of grove (`AsRawFd`, `AsFd`), where it may be duplicated: a
    /// `dup` would keep the file open past this socket's close, and with it the poller entry
    /// the close was to take out (its events then woke the poller for nothing). From now on the
    /// drop removes the entry itself (`EPOLL_CTL_DEL`, one syscall), as for an adopted socket.
    pub(crate) fn expose_fd(&self) {
        self.reg.set_closes_with_fd(false);
    }

    /// Takes the std socket back out (deregistering it), in blocking mode as std expects.
    pub(crate) fn into_inner(self) -> S {
        self.reg.deregister(); // the fd stays open: out of the poller now
        self.sock
    }

    /// Registers `sock`, a socket grove just made or accepted in blocking mode, after putting it
    /// in non-blocking mode.
    pub(crate) fn new_nonblocking(sock: S) -> io::Result<Evented<S>>
    where
        S: AsFd,
    {
        socket2::SockRef::from(&sock).set_nonblocking(true)?;
        Evented::new(sock)
    }

    /// Adopts a std socket (`From<std>`), keeping what std's handle showed: a socket the user
    /// had put in non-blocking mode keeps returning `WouldBlock` instead of waiting, and the
    /// read and write timeouts set on it (std keeps them in the socket, `SO_RCVTIMEO` and
    /// `SO_SNDTIMEO`) go on applying.
    pub(crate) fn adopt(sock: S) -> io::Result<Evented<S>>
    where
        S: AsFd,
    {
        let sref = socket2::SockRef::from(&sock);
        let was_nonblocking = sref.nonblocking()?;
        let (read_timeout, write_timeout) = (sref.read_timeout()?, sref.write_timeout()?);
        if !was_nonblocking {
            sref.set_nonblocking(true)?;
        }
        let ev = Evented::new(sock)?;
        // A socket from outside may have other descriptors (a `dup`, a parent process's copy):
        // its close would leave its poller entry behind, so it deregisters first.
        ev.reg.set_closes_with_fd(false);
        ev.set_nonblocking(was_nonblocking);
        // The kernel has no zero timeout (zero means none), so these cannot be refused.
        ev.set_timeout(Direction::Read, read_timeout)?;
        ev.set_timeout(Direction::Write, write_timeout)?;
        Ok(ev)
    }

    /// Gives the std socket back (`From<grove> for std`, `into_raw_fd`), deregistered, with this
    /// handle's timeouts, and in the mode this handle showed: non-blocking if the user asked for it, else blocking, as std's
    /// handle would be. One exception: while another grove handle (a `try_clone`) still shares
    /// the socket, it stays non-blocking underneath, since the mode belongs to the socket and
    /// that handle relies on it (blocking would stall its worker); the std handle then says
    /// `WouldBlock` where it would have waited.
    pub(crate) fn into_std(self) -> S
    where
        S: AsFd,
    {
        let keep_nonblocking =
            self.settings.nonblocking.load(Relaxed) || Arc::strong_count(&self.settings) > 1;
        let timeouts = (
            self.timeout(Direction::Read),
            self.timeout(Direction::Write),
        );
        let sock = self.into_inner();
        let sref = socket2::SockRef::from(&sock);
        if !keep_nonblocking {
            let _ = sref.set_nonblocking(false);
        }
        // std reads its timeouts from the socket: they go back there.
        let _ = sref.set_read_timeout(timeouts.0);
        let _ = sref.set_write_timeout(timeouts.1);
        sock
    }
}

/// Runs `op` until it does not fail with `WouldBlock`, sleeping between tries (`first`, doubling
/// to `cap`; the greenlet parks, a plain thread sleeps) and failing with `TimedOut` at
/// `deadline`: for waits that no poller event reports. `Interrupted` retries at once.
pub(crate) fn retry_paced<R>(
    first: Duration,
    cap: Duration,
    deadline: Option<Instant>,
    mut op: impl FnMut() -> io::Result<R>,
) -> io::Result<R> {
    // Mid-unwind an expiring `timeout` scope cannot unwind a nap: it only ends it, and is then
    // marked reported and bounds nothing after. So while the thread unwinds, the scope's
    // deadline bounds the retry as the operation's own does (scopes are lexical: the one
    // live now stays the innermost for the whole call). An expiry found by the clock below,
    // not by a park, is marked reported there (`report_expired_scope`), or the unwind's next
    // wait would report it again.
    let own = deadline;
    let deadline = match std::thread::panicking().then(grove_runtime::scope_deadline) {
        Some(Some(scope)) => Some(deadline.map_or(scope, |d| d.min(scope))),
        _ => deadline,
    };
    let mut pause = first;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
        let now = Instant::now();
        let nap = match deadline {
            Some(d) if now >= d => {
                grove_runtime::report_expired_scope(own);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "grove: operation timed out",
                ));
            }
            Some(d) => pause.min(d - now),
            None => pause,
        };
        grove_runtime::sleep(nap);
        pause = (pause * 2).min(cap);
    }
}

/// Resolves `addr`. In a greenlet a name lookup runs on the blocking pool: it may block for
/// seconds and must not hold a worker. On a plain thread it simply blocks the thread, as std.
/// Addresses that need no lookup (a `SocketAddr`, an `(IpAddr, u16)`, ...) are converted in
/// place: a UDP server answering each datagram with `send_to(peer)` paid a pool round trip per
/// packet (27 µs against 7 µs), and waited behind busy pool threads.
pub(crate) fn resolve<A: std::net::ToSocketAddrs + Send>(
    addr: A,
) -> io::Result<Vec<std::net::SocketAddr>> {
    if grove_runtime::current().is_none() || needs_no_lookup::<A>() {
        return addr.to_socket_addrs().map(|i| i.collect());
    }
    grove_runtime::block_in_pool(move || addr.to_socket_addrs().map(|i| i.collect::<Vec<_>>()))
}

/// True if `A` is one of std's address types whose `to_socket_addrs` never looks a name up.
/// `type_name` is a hint, not a contract: a type it misses (or a future spelling) only takes the
/// pool path, which is always correct. (`TypeId` would need `A: 'static`, which `&str` is not.)
fn needs_no_lookup<A>() -> bool {
    const ADDRESSES: [&str; 3] = ["SocketAddr", "SocketAddrV4", "SocketAddrV6"];
    const PAIRS: [&str; 3] = [
        "(core::net::ip_addr::IpAddr, u16)",
        "(core::net::ip_addr::Ipv4Addr, u16)",
        "(core::net::ip_addr::Ipv6Addr, u16)",
    ];
    let name = std::any::type_name::<A>().trim_start_matches('&');
    let name = name
        .strip_prefix('[')
        .map_or(name, |n| n.trim_end_matches(']'));
    let last = name.rsplit("::").next().unwrap_or(name);
    let std_path = name.starts_with("core::net::") || name.starts_with("std::net::");
    (std_path && ADDRESSES.contains(&last)) || PAIRS.contains(&name)
}

/// Runs `f` on each address until one works; std's error for an empty list otherwise.
pub(crate) fn each_addr<T>(
    addrs: Vec<std::net::SocketAddr>,
    mut f: impl FnMut(&std::net::SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in &addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The std timeout methods, for a type with an `ev: Evented<_>` field.
macro_rules! timeout_methods {
    () => {
        /// Read timeout: a read waiting longer fails with `ErrorKind::TimedOut`.
        pub fn set_read_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
            self.ev.set_timeout(grove_runtime::io::Direction::Read, d)
        }

        /// Write timeout: a write waiting longer fails with `ErrorKind::TimedOut`.
        pub fn set_write_timeout(&self, d: Option<std::time::Duration>) -> std::io::Result<()> {
            self.ev.set_timeout(grove_runtime::io::Direction::Write, d)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.ev.timeout(grove_runtime::io::Direction::Read))
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.ev.timeout(grove_runtime::io::Direction::Write))
        }
    };
}

/// `SO_ERROR` and std's non-blocking mode, for a type with an `ev: Evented<_>` field.
macro_rules! common_socket_methods {
    () => {
        /// `SO_ERROR`, cleared.
        pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
            self.ev.sock.take_error()
        }

        /// With `true`, operations return `WouldBlock` instead of waiting (std's
        /// non-blocking mode).
        pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
            self.ev.set_nonblocking(on);
            Ok(())
        }
    };
}

/// `IP_TTL`, for an IP socket with an `ev: Evented<_>` field.
macro_rules! ttl_methods {
    () => {
        /// `IP_TTL`.
        pub fn set_ttl(&self, ttl: u32) -> std::io::Result<()> {
            self.ev.sock.set_ttl(ttl)
        }

        /// `IP_TTL`.
        pub fn ttl(&self) -> std::io::Result<u32> {
            self.ev.sock.ttl()
        }
    };
}

pub(crate) use {common_socket_methods, timeout_methods, ttl_methods};

#[cfg(test)]
mod tests {
    use super::needs_no_lookup;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    #[test]
    fn net_addresses_need_no_lookup_and_names_do() {
        assert!(needs_no_lookup::<SocketAddr>());
        assert!(needs_no_lookup::<&SocketAddr>());
        assert!(needs_no_lookup::<SocketAddrV4>());
        assert!(needs_no_lookup::<SocketAddrV6>());
        assert!(needs_no_lookup::<&[SocketAddr]>());
        assert!(needs_no_lookup::<(IpAddr, u16)>());
        assert!(needs_no_lookup::<(Ipv4Addr, u16)>());
        assert!(needs_no_lookup::<(Ipv6Addr, u16)>());
        assert!(!needs_no_lookup::<&str>());
        assert!(!needs_no_lookup::<String>());
        assert!(!needs_no_lookup::<(&str, u16)>());
        assert!(!needs_no_lookup::<(String, u16)>());
    }
}
