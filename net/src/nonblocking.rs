//! Sockets born non-blocking: `socket(SOCK_NONBLOCK)` and `accept4(SOCK_NONBLOCK)` where the
//! platform has them (Linux, Android, the BSDs), saving the `fcntl`/`ioctl` pair a separate
//! `set_nonblocking` costs on every connection; elsewhere (macOS) that separate call.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::os::fd::AsFd;

cfg_if::cfg_if! {
    if #[cfg(any(
        target_os = "android",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "linux",
        target_os = "netbsd",
        target_os = "openbsd"
    ))] {
        mod imp {
            use super::*;

            pub(crate) fn socket(
                domain: Domain,
                ty: Type,
                proto: Option<Protocol>,
            ) -> io::Result<Socket> {
                Socket::new(domain, ty.nonblocking(), proto)
            }

            pub(crate) fn accept(listener: impl AsFd) -> io::Result<(Socket, SockAddr)> {
                socket2::SockRef::from(&listener)
                    .accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            }
        }
    } else {
        mod imp {
            use super::*;

            pub(crate) fn socket(
                domain: Domain,
                ty: Type,
                proto: Option<Protocol>,
            ) -> io::Result<Socket> {
                let s = Socket::new(domain, ty, proto)?;
                s.set_nonblocking(true)?;
                Ok(s)
            }

            pub(crate) fn accept(listener: impl AsFd) -> io::Result<(Socket, SockAddr)> {
                let (s, a) = socket2::SockRef::from(&listener).accept()?;
                s.set_nonblocking(true)?;
                Ok((s, a))
            }
        }
    }
}

/// A new socket in non-blocking mode, close-on-exec.
pub(crate) use imp::socket;

/// Accepts a connection as a non-blocking, close-on-exec socket (`WouldBlock` if none waits).
pub(crate) use imp::accept;
