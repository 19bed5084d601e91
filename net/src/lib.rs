//! grove's networking: std-shaped sockets on the runtime's shared poller, and `StreamServer`.
//!
//! `TcpListener`, `TcpStream`, `UdpSocket`, `UnixListener`, `UnixStream`, `UnixDatagram` have
//! their std namesakes' methods and signatures. A call that would block parks the greenlet (its
//! worker runs others) or, on a plain OS thread, blocks the thread. Read, write and connect
//! timeouts give `ErrorKind::TimedOut` (std gives `WouldBlock` for read/write timeouts on Unix;
//! grove always gives `TimedOut`). Name resolution runs on the blocking pool, never on a worker.
//! `wait_readable`/`wait_writable` let other libraries wait on their own fds. See docs/net.md.
//!
//! TCP's `Incoming` is [`Incoming`]; the Unix listener's is [`unix::Incoming`] (std's
//! `std::os::unix::net::Incoming`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod evented;
pub mod http;
mod nonblocking;
mod server;
mod tcp;
mod udp;
pub mod unix;

pub use grove_runtime::io::{wait_readable, wait_writable};
pub use server::{ServerHandle, StreamServer};
pub use tcp::{Incoming, ListenOptions, TcpListener, TcpStream, DEFAULT_BACKLOG};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
