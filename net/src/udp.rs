//! `UdpSocket` with std's methods and signatures, on the shared poller.

use crate::evented::{
    common_socket_methods, each_addr, resolve, timeout_methods, ttl_methods, Evented,
};
use crate::tcp::std_conversions;
use grove_runtime::io::Direction;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// A UDP socket: `recv*` park until a datagram arrives, `send*` until there is buffer room.
pub struct UdpSocket {
    ev: Evented<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to the first address of `addr` that works.
    pub fn bind<A: ToSocketAddrs + Send>(addr: A) -> io::Result<UdpSocket> {
        each_addr(resolve(addr)?, |a| {
            Ok(UdpSocket {
                ev: Evented::new_nonblocking(std::net::UdpSocket::bind(a)?)?,
            })
        })
    }

    /// Receives a datagram and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ev.io_recv(|| self.ev.sock.recv_from(buf), closed_from)
    }

    /// As `recv_from`, without consuming the datagram.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.ev.io_recv(|| self.ev.sock.peek_from(buf), closed_from)
    }

    /// Sends a datagram to `addr` (names resolved off the workers).
    pub fn send_to<A: ToSocketAddrs + Send>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addrs = resolve(addr)?;
        let target = addrs.first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.ev
            .io(Direction::Write, || self.ev.sock.send_to(buf, target))
    }

    /// Sets the default peer for `send`/`recv`.
    pub fn connect<A: ToSocketAddrs + Send>(&self, addr: A) -> io::Result<()> {
        each_addr(resolve(addr)?, |a| self.ev.sock.connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.ev.io(Direction::Write, || self.ev.sock.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io_recv(|| self.ev.sock.recv(buf), || Ok(0))
    }

    /// As `recv`, without consuming the datagram.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.ev.io_recv(|| self.ev.sock.peek(buf), || Ok(0))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.local_addr()
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.ev.sock.peer_addr()
    }

    /// A second handle to the same socket. As in std, the two share their timeouts and
    /// non-blocking mode: set on one, they apply to both.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            ev: self.ev.try_clone(|s| s.try_clone())?,
        })
    }

    timeout_methods!();
    ttl_methods!();
    common_socket_methods!();

    /// `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.ev.sock.set_broadcast(on)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.ev.sock.broadcast()
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, multicast_loop_v4: bool) -> io::Result<()> {
        self.ev.sock.set_multicast_loop_v4(multicast_loop_v4)
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.ev.sock.multicast_loop_v4()
    }

    /// `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, multicast_ttl_v4: u32) -> io::Result<()> {
        self.ev.sock.set_multicast_ttl_v4(multicast_ttl_v4)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.ev.sock.multicast_ttl_v4()
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v6(&self, multicast_loop_v6: bool) -> io::Result<()> {
        self.ev.sock.set_multicast_loop_v6(multicast_loop_v6)
    }

    /// `IPV6_MULTICAST_LOOP`.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.ev.sock.multicast_loop_v6()
    }

    /// Joins an IPv4 multicast group.
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.ev.sock.join_multicast_v4(multiaddr, interface)
    }

    /// Joins an IPv6 multicast group.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.ev.sock.join_multicast_v6(multiaddr, interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.ev.sock.leave_multicast_v4(multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.ev.sock.leave_multicast_v6(multiaddr, interface)
    }
}

std_conversions!(UdpSocket, std::net::UdpSocket);

/// What std's `recv_from`/`peek_from` give on a socket shut for reading: the kernel returns no
/// address, which std refuses.
fn closed_from() -> io::Result<(usize, SocketAddr)> {
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "invalid argument",
    ))
}
