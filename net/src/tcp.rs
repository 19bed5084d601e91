//! `TcpListener` and `TcpStream` with std's methods and signatures, on the shared poller.

use crate::evented::{
    common_socket_methods, each_addr, resolve, timeout_methods, ttl_methods, Evented,
};
use crate::nonblocking;
use grove_runtime::io::Direction;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Backlog of listeners made by [`TcpListener::bind`] (std uses 128; servers want more).
pub const DEFAULT_BACKLOG: i32 = 1024;

/// A TCP stream: `read`/`write` park the greenlet (block a plain thread) until ready.
pub struct TcpStream {
    ev: Evented<std::net::TcpStream>,
}

/// A TCP listening socket.
pub struct TcpListener {
    ev: Evented<std::net::TcpListener>,
}

/// Options for [`TcpListener::bind_with`].
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// `SO_REUSEPORT`: several listeners (processes) share the port.
    pub reuse_port: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
        }
    }
}

impl TcpStream {
    /// Connects to the first address of `addr` that accepts (names resolved off the workers).
    pub fn connect<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpStream> {
        each_addr(resolve(addr)?, |a| connect_one(a, None))
    }

    /// Connects with a timeout (`ErrorKind::TimedOut` when it passes).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        connect_one(addr, Instant::now().checked_add(timeout))
    }

    fn from_std_nonblocking(s: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            ev: Evented::new(s)?,
        })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.local_addr()
    }

    /// Shuts down one or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.ev.shutdown(how, |s, how| s.shutdown(how))
    }

    /// A second handle to the same socket (its own registration on a duplicated fd). As in
    /// std, the two share their timeouts and non-blocking mode: set on one, they apply to both.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            ev: self.ev.try_clone(|s| s.try_clone())?,
        })
    }

    timeout_methods!();
    ttl_methods!();
    common_socket_methods!();

    /// Reads without consuming, waiting for data like `read`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io(Direction::Read, || self.ev.sock.peek(buf))
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.ev.sock.set_nodelay(on)
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.ev.sock.nodelay()
    }
}

fn connect_one(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let sock = nonblocking::socket(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    let pending = match sock.connect(&SockAddr::from(*addr)) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std_nonblocking(std::net::TcpStream::from(sock))?;
    if pending {
        stream.ev.finish_connect(deadline)?;
    }
    Ok(stream)
}

impl TcpStream {
    /// Writes all of `buf` as the last bytes this side sends, then shuts the write half. On
    /// Linux the bytes go with `MSG_MORE`, so the kernel holds the tail back and the shutdown
    /// sends it in one segment with the FIN: one packet fewer per connection for a server that
    /// answers and closes. The shutdown pushes out a tail that a close alone would drop when
    /// unread input turns the close into a reset; it cannot save data the reset finds still
    /// queued (a reply larger than the peer's window): the HTTP server lingers after error
    /// replies for that.
    pub(crate) fn write_all_then_shutdown(&self, buf: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        let mut buf = buf;
        #[cfg(target_os = "linux")]
        while !buf.is_empty() {
            let fd = self.ev.sock.as_raw_fd();
            let n = self.ev.io_stream(Direction::Write, buf.len(), || {
                // SAFETY: `buf` is valid for reads of `buf.len()` bytes; `fd` is this open
                // socket, alive while `self` is borrowed.
                let r = unsafe {
                    libc::send(
                        fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(r as usize)
                }
            })?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        #[cfg(not(target_os = "linux"))]
        (&*self).write_all(buf)?;
        self.shutdown(Shutdown::Write)
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev
            .io_stream(Direction::Read, buf.len(), || (&self.ev.sock).read(buf))
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        // Plain `io`: a vectored transfer can be short with more to move (the kernel takes
        // at most IOV_MAX buffers), so it says nothing about the socket buffer.
        self.ev
            .io(Direction::Read, || (&self.ev.sock).read_vectored(bufs))
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ev
            .io_stream(Direction::Write, buf.len(), || (&self.ev.sock).write(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Plain `io`, as in `read_vectored`.
        self.ev
            .io(Direction::Write, || (&self.ev.sock).write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TcpListener {
    /// Binds to the first address of `addr` that works (`SO_REUSEADDR`, backlog
    /// [`DEFAULT_BACKLOG`]).
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<TcpListener> {
        Self::bind_with(addr, ListenOptions::default())
    }

    /// Binds with explicit options (backlog, `SO_REUSEPORT`).
    pub fn bind_with<A: ToSocketAddrs + Send>(
        addr: A,
        opts: ListenOptions,
    ) -> io::Result<TcpListener> {
        each_addr(resolve(addr)?, |a| {
            let sock = Socket::new(Domain::for_address(*a), Type::STREAM, Some(Protocol::TCP))?;
            sock.set_reuse_address(true)?;
            if opts.reuse_port {
                sock.set_reuse_port(true)?;
            }
            sock.bind(&SockAddr::from(*a))?;
            sock.listen(opts.backlog)?;
            sock.set_nonblocking(true)?;
            Ok(TcpListener {
                ev: Evented::new(std::net::TcpListener::from(sock))?,
            })
        })
    }

    /// Waits for a connection. The new stream is non-blocking and registered, like every grove
    /// socket.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self
            .ev
            .io(Direction::Read, || nonblocking::accept(&self.ev.sock))?;
        Self::accepted(s, a)
    }

    /// As [`accept`](Self::accept), waiting for a connection even if the listener is in
    /// non-blocking mode: `StreamServer` waits whatever mode its listener came in (one made
    /// from a std listener set up for mio or tokio is non-blocking; its accept loop took the
    /// `WouldBlock` for an error and backed off, up to 1 s).
    pub(crate) fn accept_waiting(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self
            .ev
            .io_until(Direction::Read, None, || nonblocking::accept(&self.ev.sock))?;
        Self::accepted(s, a)
    }

    fn accepted(s: socket2::Socket, a: socket2::SockAddr) -> io::Result<(TcpStream, SocketAddr)> {
        let a = a.as_socket().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "accepted a non-IP address")
        })?;
        Ok((TcpStream::from_std_nonblocking(s.into())?, a))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.local_addr()
    }

    /// A second handle to the same listener, sharing its non-blocking mode (as std).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            ev: self.ev.try_clone(|s| s.try_clone())?,
        })
    }

    ttl_methods!();
    common_socket_methods!();

    /// `IPV6_V6ONLY` (deprecated in std: the option only matters before the socket is bound).
    #[deprecated(note = "this option can only be set before the socket is bound")]
    pub fn set_only_v6(&self, only_v6: bool) -> io::Result<()> {
        socket2::SockRef::from(&self.ev.sock).set_only_v6(only_v6)
    }

    /// `IPV6_V6ONLY` (deprecated in std, as its setter).
    #[deprecated(note = "this option can only be set before the socket is bound")]
    pub fn only_v6(&self) -> io::Result<bool> {
        socket2::SockRef::from(&self.ev.sock).only_v6()
    }
}

/// Iterator from [`TcpListener::incoming`]: endless, each item an `accept`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl std::iter::FusedIterator for Incoming<'_> {}

macro_rules! std_conversions {
    ($grove:ident, $std:ty) => {
        impl From<$std> for $grove {
            /// Adopts a std socket: puts it in non-blocking mode underneath; it is registered
            /// with the poller at its first operation that would block. A socket std's handle
            /// had in non-blocking mode keeps answering `WouldBlock`, as it did.
            ///
            /// # Panics
            /// If the socket's mode cannot be read or set (the fd is invalid).
            fn from(s: $std) -> $grove {
                Evented::adopt(s)
                    .map(|ev| $grove { ev })
                    .unwrap_or_else(|e| panic!("grove: cannot adopt a socket: {e}"))
            }
        }

        impl From<$grove> for $std {
            /// Gives the socket back to std, deregistered, in the mode this handle showed
            /// (blocking unless `set_nonblocking(true)`); while a `try_clone` of it is still
            /// in grove, it stays non-blocking underneath (see docs/net.md).
            fn from(s: $grove) -> $std {
                s.ev.into_std()
            }
        }

        impl AsRawFd for $grove {
            /// The fd. Once it has been handed out, it may be duplicated (`dup`), so this
            /// socket's drop takes its poller entry out itself rather than leave that to the
            /// close (see `Evented::expose_fd`).
            fn as_raw_fd(&self) -> RawFd {
                self.ev.expose_fd();
                self.ev.raw_fd()
            }
        }

        impl AsFd for $grove {
            /// As `as_raw_fd`.
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.ev.expose_fd();
                self.ev.sock.as_fd()
            }
        }

        impl IntoRawFd for $grove {
            fn into_raw_fd(self) -> RawFd {
                <$std>::from(self).into_raw_fd()
            }
        }

        impl From<OwnedFd> for $grove {
            /// Adopts an owned socket fd, as `From` the std type.
            ///
            /// # Panics
            /// If the socket cannot be put in non-blocking mode (the fd is invalid).
            fn from(fd: OwnedFd) -> $grove {
                <$grove>::from(<$std>::from(fd))
            }
        }

        impl From<$grove> for OwnedFd {
            /// Gives the fd back, as `From` for the std type.
            fn from(s: $grove) -> OwnedFd {
                OwnedFd::from(<$std>::from(s))
            }
        }

        impl FromRawFd for $grove {
            /// # Safety
            /// `fd` must be an open socket of the right kind that the caller owns.
            unsafe fn from_raw_fd(fd: RawFd) -> $grove {
                // SAFETY: the caller's promise, passed on to std.
                <$grove>::from(unsafe { <$std>::from_raw_fd(fd) })
            }
        }

        impl fmt::Debug for $grove {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($grove))
                    .field("fd", &self.ev.raw_fd())
                    .finish()
            }
        }
    };
}

std_conversions!(TcpStream, std::net::TcpStream);
std_conversions!(TcpListener, std::net::TcpListener);
pub(crate) use std_conversions;
