//! `UnixListener`, `UnixStream` and `UnixDatagram` with std's methods, on the shared poller.

use crate::evented::{common_socket_methods, timeout_methods, Evented};
use crate::tcp::std_conversions;
use grove_runtime::io::Direction;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::{self as unet, SocketAddr};
use std::path::Path;

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
            self.ev.sock.shutdown(how)
        }

        /// A second handle to the same socket.
        pub fn try_clone(&self) -> io::Result<$ty> {
            Ok($ty {
                ev: Evented::new(self.ev.sock.try_clone()?)?,
            })
        }
    };
}

fn adopt<S: AsRawFd>(s: S, nb: impl FnOnce(&S) -> io::Result<()>) -> io::Result<Evented<S>> {
    nb(&s)?;
    Evented::new(s)
}

impl UnixStream {
    /// Connects to the socket at `path`.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        // A Unix connect completes or fails at once unless the listener's backlog is full;
        // then it is EAGAIN, and we retry after yielding.
        loop {
            match unet::UnixStream::connect(path.as_ref()) {
                Ok(s) => {
                    return Ok(UnixStream {
                        ev: adopt(s, |s| s.set_nonblocking(true))?,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => grove_runtime::yield_now(),
                Err(e) => return Err(e),
            }
        }
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = unet::UnixStream::pair()?;
        Ok((
            UnixStream {
                ev: adopt(a, |s| s.set_nonblocking(true))?,
            },
            UnixStream {
                ev: adopt(b, |s| s.set_nonblocking(true))?,
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
}

impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io(Direction::Read, || (&self.ev.sock).read(buf))
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ev.io(Direction::Write, || (&self.ev.sock).write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UnixListener {
    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        Ok(UnixListener {
            ev: adopt(unet::UnixListener::bind(path)?, |s| s.set_nonblocking(true))?,
        })
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = self.ev.io(Direction::Read, || self.ev.sock.accept())?;
        Ok((
            UnixStream {
                ev: adopt(s, |s| s.set_nonblocking(true))?,
            },
            a,
        ))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.local_addr()
    }

    /// A second handle to the same listener.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            ev: Evented::new(self.ev.sock.try_clone()?)?,
        })
    }

    common_socket_methods!();
}

impl UnixDatagram {
    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            ev: adopt(unet::UnixDatagram::bind(path)?, |s| s.set_nonblocking(true))?,
        })
    }

    /// An unbound socket.
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            ev: adopt(unet::UnixDatagram::unbound()?, |s| s.set_nonblocking(true))?,
        })
    }

    /// A connected pair.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = unet::UnixDatagram::pair()?;
        Ok((
            UnixDatagram {
                ev: adopt(a, |s| s.set_nonblocking(true))?,
            },
            UnixDatagram {
                ev: adopt(b, |s| s.set_nonblocking(true))?,
            },
        ))
    }

    /// Sets the default peer.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.ev.sock.connect(path)
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.ev.io(Direction::Write, || self.ev.sock.send(buf))
    }

    /// Sends to `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let p = path.as_ref();
        self.ev
            .io(Direction::Write, || self.ev.sock.send_to(buf, p))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io(Direction::Read, || self.ev.sock.recv(buf))
    }

    /// Receives a datagram and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ev.io(Direction::Read, || self.ev.sock.recv_from(buf))
    }

    connected_methods!(UnixDatagram);

    timeout_methods!();
    common_socket_methods!();
}

std_conversions!(UnixStream, unet::UnixStream);
std_conversions!(UnixListener, unet::UnixListener);
std_conversions!(UnixDatagram, unet::UnixDatagram);
