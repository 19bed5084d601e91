//! `UnixListener`, `UnixStream` and `UnixDatagram` with std's methods, on the shared poller, and
//! [`Incoming`], the iterator of [`UnixListener::incoming`] (std's
//! `std::os::unix::net::Incoming`). The three socket types are also exported from `grove::net`.

use crate::evented::{common_socket_methods, retry_paced, timeout_methods, Evented};
use crate::nonblocking;
use crate::tcp::std_conversions;
use grove_runtime::io::Direction;
use socket2::{Domain, SockAddr, Type};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{self as unet, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// A Unix stream socket.
pub struct UnixStream {
    ev: Evented<unet::UnixStream>,
}

/// A Unix listening socket.
pub struct UnixListener {
    ev: Evented<unet::UnixListener>,
}

/// A Unix datagram socket.
pub struct UnixDatagram {
    ev: Evented<unet::UnixDatagram>,
}

/// Addresses, shutdown and cloning, shared by the connected Unix socket types.
macro_rules! connected_methods {
    ($ty:ident) => {
        /// The local address.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.ev.sock.local_addr()
        }

        /// The peer's address.
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.ev.sock.peer_addr()
        }

        /// Shuts down one or both halves.
        pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            self.ev.shutdown(how, |s, how| s.shutdown(how))
        }

        /// A second handle to the same socket. As in std, the two share their timeouts and
        /// non-blocking mode: set on one, they apply to both.
        pub fn try_clone(&self) -> io::Result<$ty> {
            Ok($ty {
                ev: self.ev.try_clone(|s| s.try_clone())?,
            })
        }
    };
}

/// An unnamed address, what std's `recv_from` gives on a datagram socket shut for reading.
fn unnamed_addr() -> io::Result<SocketAddr> {
    unet::UnixDatagram::unbound()?.local_addr()
}

/// `addr` as a raw socket address, for the calls std makes with it that grove makes itself.
fn sockaddr(addr: &SocketAddr) -> io::Result<SockAddr> {
    if let Some(path) = addr.as_pathname() {
        return SockAddr::unix(path);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(target_os = "android")]
        use std::os::android::net::SocketAddrExt;
        #[cfg(target_os = "linux")]
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        if let Some(name) = addr.as_abstract_name() {
            // socket2 takes a leading NUL for the abstract namespace.
            let mut bytes = Vec::with_capacity(name.len() + 1);
            bytes.push(0);
            bytes.extend_from_slice(name);
            return SockAddr::unix(std::ffi::OsStr::from_bytes(&bytes));
        }
    }
    // Unnamed: the bare family, as std passes it (connecting to it fails, as with std).
    SockAddr::unix("")
}

impl UnixStream {
    /// Connects to the socket at `path`.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        UnixStream::connect_addr(&SocketAddr::from_pathname(path)?)
    }

    /// Connects to the socket at `socket_addr`.
    ///
    /// A Unix connect completes or fails at once, unless the listener's backlog is full: then
    /// std's blocking connect waits, and grove retries (the socket gives the poller nothing to
    /// wait on), sleeping 50 µs, doubling to 10 ms, between tries: the greenlet parks, or the
    /// plain thread sleeps.
    pub fn connect_addr(socket_addr: &SocketAddr) -> io::Result<UnixStream> {
        let addr = sockaddr(socket_addr)?;
        let sock = nonblocking::socket(Domain::UNIX, Type::STREAM, None)?;
        let connect = || match sock.connect(&addr) {
            Ok(()) => Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(true),
            Err(e) => Err(e),
        };
        let pending = retry_paced(
            Duration::from_micros(50),
            Duration::from_millis(10),
            None,
            connect,
        )?;
        let stream = UnixStream {
            ev: Evented::new(unet::UnixStream::from(sock))?,
        };
        if pending {
            stream.ev.finish_connect(None)?;
        }
        Ok(stream)
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = unet::UnixStream::pair()?;
        Ok((
            UnixStream {
                ev: Evented::new_nonblocking(a)?,
            },
            UnixStream {
                ev: Evented::new_nonblocking(b)?,
            },
        ))
    }

    connected_methods!(UnixStream);

    timeout_methods!();
    common_socket_methods!();
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io(Direction::Read, || (&self.ev.sock).read(buf))
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.ev
            .io(Direction::Read, || (&self.ev.sock).read_vectored(bufs))
    }
}

impl Write for UnixStream {
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

// Writes wait in slices: a peer's `shutdown(Read)` gives no poller event (see
// `Evented::io_sliced`).
impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ev
            .io_sliced(Direction::Write, || (&self.ev.sock).write(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.ev
            .io_sliced(Direction::Write, || (&self.ev.sock).write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UnixListener {
    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Ok(UnixListener {
            ev: Evented::new_nonblocking(unet::UnixListener::bind(path)?)?,
        })
    }

    /// Binds to `socket_addr`.
    pub fn bind_addr(socket_addr: &SocketAddr) -> io::Result<UnixListener> {
        Ok(UnixListener {
            ev: Evented::new_nonblocking(unet::UnixListener::bind_addr(socket_addr)?)?,
        })
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = self.ev.io(Direction::Read, || self.ev.sock.accept())?;
        Ok((
            UnixStream {
                ev: Evented::new_nonblocking(s)?,
            },
            a,
        ))
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
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            ev: self.ev.try_clone(|s| s.try_clone())?,
        })
    }

    common_socket_methods!();
}

/// Iterator from [`UnixListener::incoming`]: endless, each item an `accept`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl<'a> IntoIterator for &'a UnixListener {
    type Item = io::Result<UnixStream>;
    type IntoIter = Incoming<'a>;
    fn into_iter(self) -> Incoming<'a> {
        self.incoming()
    }
}

impl UnixDatagram {
    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            ev: Evented::new_nonblocking(unet::UnixDatagram::bind(path)?)?,
        })
    }

    /// Binds to `socket_addr`.
    pub fn bind_addr(socket_addr: &SocketAddr) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            ev: Evented::new_nonblocking(unet::UnixDatagram::bind_addr(socket_addr)?)?,
        })
    }

    /// An unbound socket.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            ev: Evented::new_nonblocking(unet::UnixDatagram::unbound()?)?,
        })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = unet::UnixDatagram::pair()?;
        Ok((
            UnixDatagram {
                ev: Evented::new_nonblocking(a)?,
            },
            UnixDatagram {
                ev: Evented::new_nonblocking(b)?,
            },
        ))
    }

    /// Sets the default peer.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.ev.sock.connect(path)
    }

    /// Sets the default peer to `socket_addr`.
    pub fn connect_addr(&self, socket_addr: &SocketAddr) -> io::Result<()> {
        self.ev.sock.connect_addr(socket_addr)
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.ev.io(Direction::Write, || self.ev.sock.send(buf))
    }

    /// Sends to `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let p = path.as_ref();
        self.ev.io_paced(|| self.ev.sock.send_to(buf, p))
    }

    /// Sends to `socket_addr`.
    pub fn send_to_addr(&self, buf: &[u8], socket_addr: &SocketAddr) -> io::Result<usize> {
        self.ev
            .io_paced(|| self.ev.sock.send_to_addr(buf, socket_addr))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io_recv(|| self.ev.sock.recv(buf), || Ok(0))
    }

    /// Receives a datagram and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ev
            .io_recv(|| self.ev.sock.recv_from(buf), || Ok((0, unnamed_addr()?)))
    }

    connected_methods!(UnixDatagram);

    timeout_methods!();
    common_socket_methods!();
}

std_conversions!(UnixStream, unet::UnixStream);
std_conversions!(UnixListener, unet::UnixListener);
std_conversions!(UnixDatagram, unet::UnixDatagram);
