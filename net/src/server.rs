//! `StreamServer`: gevent's `StreamServer`, one greenlet per connection.
//!
//! The accept loop runs in a greenlet of its own. With `max_connections(n)` it takes a slot of
//! an `n`-permit semaphore *before* accepting, so connections beyond `n` wait in the kernel's
//! backlog rather than in the server. Every accepted connection gets `TCP_NODELAY` (Go does the
//! same: without it a response written in two pieces waits ~40 ms for a delayed ACK).
//!
//! Accept errors never end the loop: `ECONNABORTED` (the client gave up in the backlog) is
//! skipped; running out of file descriptors (`EMFILE`, `ENFILE`) or buffers is reported once and
//! backed off from, 10 ms doubling to 1 s, instead of spinning on a listener that stays
//! readable; anything else is reported once per kind and backed off from the same way. A
//! connection whose greenlet cannot be spawned (no memory or mappings left for its stack) is
//! closed, and reported and backed off from likewise.
//!
//! `ServerHandle::stop(grace)` kills the accept loop (closing the listener), waits up to `grace`
//! for the running handlers, then kills the rest.
//!
//! # Idle connections at `stop`
//!
//! A plain `StreamServer` handler is opaque: `stop` waits for it. The HTTP server's handlers say
//! when they are idle, waiting for a keep-alive connection's next request ([`ConnState`]), and
//! `stop` closes those at once, as Go's `Shutdown` does, instead of letting one idle browser
//! connection hold `stop` for its whole grace. The race between a request arriving and `stop`
//! is settled by one compare-exchange on the connection's state: `stop` claims an `IDLE`
//! connection (`CLOSING`) and kills it, or the connection claimed it first (`BUSY`) and
//! answers, with `Connection: close` since the server is stopping. The state is per
//! connection, so the per-request cost is a store, a load and a compare-exchange on a line
//! only that connection's greenlet writes.

use crate::tcp::{TcpListener, TcpStream};
use grove_runtime::{Greenlet, GreenletId};
use grove_sync::{Group, Semaphore};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

type PlainFn = dyn Fn(TcpStream, SocketAddr) + Send + Sync + 'static;
type TrackedFn = dyn Fn(TcpStream, SocketAddr, &ConnState) + Send + Sync + 'static;

/// What the server calls for each connection.
#[derive(Clone)]
enum Handler {
    /// A user's handler: `stop` waits for it (up to the grace).
    Plain(Arc<PlainFn>),
    /// One that reports when it is idle (the HTTP server's), so `stop` may close it at once.
    Tracked(Arc<TrackedFn>),
}

const BUSY: u8 = 0;
const IDLE: u8 = 1;
const CLOSING: u8 = 2;

/// A tracked connection as `stop` sees it (see the module docs).
pub(crate) struct ConnState {
    state: AtomicU8,
    stopping: Arc<AtomicBool>,
    greenlet: OnceLock<Greenlet>,
}

impl ConnState {
    /// The handler is about to wait for the client's next request. False if the server is
    /// stopping: close instead.
    pub(crate) fn enter_idle(&self) -> bool {
        // SeqCst store, then SeqCst load: pairs with `stop`'s store of `stopping` and its
        // compare-exchange here, so either `stop` finds this connection idle or we see it
        // stopping.
        self.state.store(IDLE, SeqCst);
        !self.stopping.load(SeqCst)
    }

    /// A request has begun to arrive. False if `stop` claimed the connection first (it is
    /// being killed): close without answering.
    pub(crate) fn leave_idle(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, SeqCst, Relaxed)
            .is_ok()
    }

    /// True once `stop` has begun: answer with `Connection: close`.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    /// `stop`'s side: kills the connection if it is idle.
    fn close_if_idle(&self) {
        if self
            .state
            .compare_exchange(IDLE, CLOSING, SeqCst, Relaxed)
            .is_ok()
        {
            if let Some(g) = self.greenlet.get() {
                g.kill();
            }
        }
    }
}

/// Tracked connections of one server, and whether it is stopping.
#[derive(Default)]
struct Tracked {
    stopping: Arc<AtomicBool>,
    /// Taken by the accept loop and `stop` only, briefly: the connections, and the length at
    /// which to drop the finished ones (when it has doubled since: a scan per accept would make
    /// the accept loop quadratic in open connections).
    conns: std::sync::Mutex<(Vec<Arc<ConnState>>, usize)>,
}

impl Tracked {
    fn register(&self, conn: Arc<ConnState>) {
        let mut guard = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let (conns, prune_at) = &mut *guard;
        if conns.len() >= *prune_at {
            conns.retain(|c| !c.greenlet.get().is_some_and(|g| g.is_finished()));
            *prune_at = (conns.len() * 2).max(64);
        }
        conns.push(conn);
    }

    /// Marks the server stopping and closes every idle connection.
    fn close_idle(&self) {
        self.stopping.store(true, SeqCst);
        let conns = std::mem::take(&mut self.conns.lock().unwrap_or_else(|e| e.into_inner()).0);
        for c in conns {
            c.close_if_idle();
        }
    }
}

/// A TCP server calling `handler` in a new greenlet for each connection.
pub struct StreamServer {
    listener: TcpListener,
    handler: Handler,
    max_connections: Option<usize>,
    /// The server made the listener (`bind`), so it may set `TCP_NODELAY` on it (see `NoDelay`);
    /// a listener handed in by the caller is left as it is.
    owns_listener: bool,
}

/// A server running in the background (from [`StreamServer::start`]). Dropping it leaves the
/// server running for the rest of the process (as a dropped `JoinHandle` detaches its
/// greenlet); [`ServerHandle::stop`] ends it.
#[must_use = "dropping a ServerHandle leaves the server running with no way to stop it"]
pub struct ServerHandle {
    accept_loop: grove_runtime::JoinHandle<()>,
    handlers: Group,
    tracked: Arc<Tracked>,
    addr: io::Result<SocketAddr>,
    /// The greenlets inside [`ServerHandle::stop`] now (see there).
    stoppers: std::sync::Mutex<Vec<GreenletId>>,
}

/// A greenlet's turn inside `stop`: listed while it lasts.
struct Stopping<'a>(&'a std::sync::Mutex<Vec<GreenletId>>, GreenletId);

impl<'a> Stopping<'a> {
    fn enter(list: &'a std::sync::Mutex<Vec<GreenletId>>, id: GreenletId) -> Stopping<'a> {
        list.lock().unwrap_or_else(|p| p.into_inner()).push(id);
        Stopping(list, id)
    }
}

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = list.iter().position(|&id| id == self.1) {
            list.swap_remove(i);
        }
    }
}

impl StreamServer {
    /// Binds `addr`; `handler` will get each connection and its peer address.
    pub fn bind<A, H>(addr: A, handler: H) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs + Send,
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        Ok(StreamServer::from_own_listener(
            TcpListener::bind(addr)?,
            handler,
        ))
    }

    /// Serves on an existing listener.
    pub fn from_listener<H>(listener: TcpListener, handler: H) -> StreamServer
    where
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        StreamServer {
            listener,
            handler: Handler::Plain(Arc::new(handler)),
            max_connections: None,
            owns_listener: false,
        }
    }

    /// Serves on the HTTP server's own listener, with handlers that report when they are idle
    /// (see the module docs).
    pub(crate) fn tracked<H>(listener: TcpListener, handler: H) -> StreamServer
    where
        H: Fn(TcpStream, SocketAddr, &ConnState) + Send + Sync + 'static,
    {
        StreamServer {
            listener,
            handler: Handler::Tracked(Arc::new(handler)),
            max_connections: None,
            owns_listener: true,
        }
    }

    /// Serves on a listener made for this server alone (by `bind`, or by the HTTP server's),
    /// whose options the server may change (see `NoDelay`).
    pub(crate) fn from_own_listener<H>(listener: TcpListener, handler: H) -> StreamServer
    where
        H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        StreamServer {
            owns_listener: true,
            ..StreamServer::from_listener(listener, handler)
        }
    }

    /// At most `n` handlers at once; further connections wait in the backlog.
    pub fn max_connections(mut self, n: usize) -> StreamServer {
        self.max_connections = Some(n.max(1));
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until killed (or the process ends), blocking the caller.
    pub fn serve_forever(self) -> io::Result<()> {
        self.accept_loop(&Group::new(), &Tracked::default());
        Ok(())
    }

    /// Serves in a background greenlet.
    #[must_use = "dropping the ServerHandle leaves the server running with no way to stop it"]
    pub fn start(self) -> ServerHandle {
        let handlers = Group::new();
        let tracked = Arc::new(Tracked::default());
        let (g, t) = (handlers.clone(), tracked.clone());
        let addr = self.local_addr();
        let accept_loop = grove_runtime::Builder::new()
            .name("stream-server-accept")
            .spawn(move || self.accept_loop(&g, &t))
            .unwrap_or_else(|e| panic!("grove: cannot start the accept loop: {e}"));
        ServerHandle {
            accept_loop,
            handlers,
            tracked,
            addr,
            stoppers: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn accept_loop(self, handlers: &Group, tracked: &Tracked) {
        let slots = self.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let mut backoff = Backoff::default();
        let mut nodelay = NoDelay::new(&self.listener, self.owns_listener);
        loop {
            if let Some(s) = &slots {
                s.acquire().forget(); // before accept: the rest wait in the backlog
            }
            let accepted = self.listener.accept_waiting();
            let slot = slots.clone().map(Slot);
            match accepted {
                Ok((stream, peer)) => {
                    let handler = self.handler.clone();
                    let set_nodelay = !nodelay.inherited_by(&stream);
                    let state = match handler {
                        Handler::Plain(_) => None,
                        Handler::Tracked(_) => Some(Arc::new(ConnState {
                            state: AtomicU8::new(BUSY),
                            stopping: tracked.stopping.clone(),
                            greenlet: OnceLock::new(),
                        })),
                    };
                    let st = state.clone();
                    let spawned = grove_runtime::Builder::new().spawn(move || {
                        let _slot = slot;
                        // Here, not in the accept loop: the loop only accepts and spawns, so a
                        // burst of connections is spread over the workers sooner.
                        if set_nodelay {
                            let _ = stream.set_nodelay(true);
                        }
                        match (&handler, st) {
                            (Handler::Tracked(h), Some(st)) => h(stream, peer, &st),
                            (Handler::Plain(h), _) => h(stream, peer),
                            (Handler::Tracked(_), None) => unreachable!("grove: untracked"),
                        }
                    });
                    match spawned {
                        Ok(h) => {
                            backoff.reset();
                            handlers.add(h.greenlet());
                            if let Some(state) = state {
                                let _ = state.greenlet.set(h.greenlet());
                                tracked.register(state);
                            }
                        }
                        // No stack for its greenlet (memory or mappings ran out): the connection
                        // is closed (the closure and the stream in it are dropped), and the
                        // loop reports once and backs off, as for running out of descriptors.
                        Err(e) => backoff.on_error(&e),
                    }
                }
                Err(e) => {
                    drop(slot);
                    backoff.on_error(&e);
                }
            }
        }
    }
}

/// Gives a connection slot back when its handler ends, however it ends.
struct Slot(Arc<Semaphore>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

#[derive(Default)]
struct Backoff {
    delay_ms: u64,
    reported: Vec<io::ErrorKind>,
    reported_fd_exhaustion: bool,
}

impl Backoff {
    fn reset(&mut self) {
        self.delay_ms = 0;
    }

    fn on_error(&mut self, e: &io::Error) {
        match e.raw_os_error() {
            Some(libc::ECONNABORTED) | Some(libc::EINTR) => return,
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
                if !self.reported_fd_exhaustion {
                    self.reported_fd_exhaustion = true;
                    eprintln!(
                        "grove: StreamServer cannot accept: {e}; backing off (raise `ulimit -n`?)"
                    );
                }
            }
            None if e.kind() == io::ErrorKind::OutOfMemory => {
                if !self.reported_fd_exhaustion {
                    self.reported_fd_exhaustion = true;
                    eprintln!("grove: StreamServer cannot start a handler: {e}; backing off");
                }
            }
            _ => {
                if !self.reported.contains(&e.kind()) {
                    self.reported.push(e.kind());
                    eprintln!("grove: StreamServer accept failed: {e}; backing off");
                }
            }
        }
        self.delay_ms = (self.delay_ms * 2).clamp(10, 1000);
        grove_runtime::sleep(Duration::from_millis(self.delay_ms));
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.addr {
            Ok(a) => Ok(*a),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Handlers running now.
    pub fn connections(&self) -> usize {
        self.handlers.len()
    }

    /// Stops accepting (closing the listener), waits up to `grace` for the running handlers,
    /// then kills the rest and waits for them to unwind. Called from one of the server's own
    /// handlers (a `/shutdown` endpoint), it leaves that one running, and so does every other
    /// `stop` under way at the same time: handlers that stop the server together (two
    /// `/shutdown` requests) each waited out the grace for the other, then killed it.
    pub fn stop(&self, grace: Duration) {
        let _inside = grove_runtime::current().map(|c| Stopping::enter(&self.stoppers, c.id()));
        self.accept_loop.kill();
        self.accept_loop.greenlet().wait();
        self.tracked.close_idle();
        let stopping = |id: GreenletId| {
            let list = self.stoppers.lock().unwrap_or_else(|p| p.into_inner());
            list.contains(&id)
        };
        if !self.handlers.join_timeout_but(grace, &stopping) {
            self.handlers.kill_but(&stopping);
        }
    }
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("listener", &self.listener)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr.as_ref().ok())
            .field("connections", &self.connections())
            .finish()
    }
}

/// `TCP_NODELAY` for every accepted connection, with as few syscalls as the platform allows:
/// Linux copies the option from a listener to the sockets it accepts, so on a listener the server
/// made itself it is set once, checked once on the first connection (one `getsockopt`), and from
/// then on costs nothing per connection. Where that check fails, or the listener is the caller's
/// (`from_listener`: its other users must not see the option change), each handler sets it.
struct NoDelay {
    /// `None` until the first connection says whether it inherited the option.
    inherited: Option<bool>,
}

impl NoDelay {
    fn new(listener: &TcpListener, may_set_on_listener: bool) -> NoDelay {
        let set = may_set_on_listener && socket2::SockRef::from(listener).set_nodelay(true).is_ok();
        NoDelay {
            inherited: if set { None } else { Some(false) },
        }
    }

    /// Whether `stream` already has `TCP_NODELAY` from the listener.
    fn inherited_by(&mut self, stream: &TcpStream) -> bool {
        *self
            .inherited
            .get_or_insert_with(|| stream.nodelay().unwrap_or(false))
    }
}
