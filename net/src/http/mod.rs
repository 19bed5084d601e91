//! `grove::net::http`: an HTTP/1.1 server on `StreamServer`, a plain function per request
//! (gevent's `pywsgi` in spirit).
//!
//! ```no_run
//! use grove_net::http::{Response, Server};
//! let server = Server::bind("127.0.0.1:8080", |req| {
//!     Response::text(format!("hello from {}", req.path()))
//! })?;
//! server.serve_forever()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Keep-alive by default on HTTP/1.1 and on request for 1.0; pipelined requests are answered in
//! order; bodies by `Content-Length` or chunked, with `Expect: 100-continue`; responses with
//! `Content-Length`, or chunked when the handler streams ([`Response::stream`]); `Date` and
//! `Server` headers; `HEAD` answered without a body. A panicking handler gets its request a
//! `500` and the server goes on. See `conn.rs` for limits and timeouts, docs/http.md for more.

mod conn;
mod date;
mod framing;
mod head;
mod message;

/// `1*DIGIT`, without overflow: the strict `Content-Length` parse (shared with grove-ab).
#[doc(hidden)]
pub use framing::parse_content_length;

pub use message::{Request, Response, Text};

use crate::server::{ServerHandle, StreamServer};
use crate::tcp::TcpListener;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Limits on what a client may send, and how slowly.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) max_head_bytes: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) head_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 16 << 20,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// An HTTP/1.1 server.
pub struct Server {
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: Limits,
    max_connections: Option<usize>,
}

impl Server {
    /// Binds `addr`; `handler` answers every request.
    pub fn bind<A, H>(addr: A, handler: H) -> io::Result<Server>
    where
        A: ToSocketAddrs + Send,
        H: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            handler: Arc::new(handler),
            limits: Limits::default(),
            max_connections: None,
        })
    }

    /// At most `n` connections served at once; more wait in the backlog.
    pub fn max_connections(mut self, n: usize) -> Server {
        self.max_connections = Some(n);
        self
    }

    /// Largest request head (request line and headers) accepted; larger gets `431`.
    /// Default 16 KiB.
    pub fn max_header_bytes(mut self, n: usize) -> Server {
        self.limits.max_head_bytes = n;
        self
    }

    /// Largest request body accepted; larger gets `413`. Default 16 MiB.
    pub fn max_body_bytes(mut self, n: usize) -> Server {
        self.limits.max_body_bytes = n;
        self
    }

    /// Time a request head may take to arrive, from its first byte (then `408`), and a new
    /// connection's first byte from the accept (then a quiet close). Default 10 s.
    pub fn header_timeout(mut self, d: Duration) -> Server {
        self.limits.head_timeout = d;
        self
    }

    /// Time a keep-alive connection may sit idle between requests. Default 60 s.
    pub fn idle_timeout(mut self, d: Duration) -> Server {
        self.limits.idle_timeout = d;
        self
    }

    /// Time a response write may wait for the client to take more of it (each wait, so a slow
    /// reader is fine and one that stops reading is not); then the connection closes. Default
    /// 60 s. Without it, a client that never reads held its connection, and the response's
    /// memory, for ever.
    pub fn write_timeout(mut self, d: Duration) -> Server {
        self.limits.write_timeout = d.max(Duration::from_nanos(1));
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    fn into_stream_server(self) -> StreamServer {
        let handler = self.handler;
        let limits = Arc::new(self.limits);
        let server = StreamServer::tracked(self.listener, move |stream, peer, state| {
            conn::serve(stream, peer, &*handler, &limits, state)
        });
        match self.max_connections {
            Some(n) => server.max_connections(n),
            None => server,
        }
    }

    /// Serves until the process ends, blocking the caller.
    pub fn serve_forever(self) -> io::Result<()> {
        self.into_stream_server().serve_forever()
    }

    /// Serves in the background.
    pub fn start(self) -> ServerHandle {
        self.into_stream_server().start()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .finish()
    }
}
