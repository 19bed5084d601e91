//! gevent's classic `Pool(20).map(download, urls)`: fetch 100 URLs over HTTP/1.1, at most 20 at
//! a time, with an ordinary synchronous HTTP client ([ureq] 3) whose sockets are grove's.
//!
//! Run with `cargo run --example bulk_download`. It needs no network: it starts a local
//! `grove::net::http::Server` on `127.0.0.1:0` whose handler sleeps 1-20 ms (with
//! `grove::sleep`, so only its greenlet waits) and answers `/file/{i}` with a body of a few KB
//! that names the URL. It then downloads `http://127.0.0.1:PORT/file/0` .. `/file/99` with
//! `grove::sync::Pool::new(20).map(urls, download)`, checks every body byte for byte, does the
//! same one URL after another in a single greenlet for comparison, prints a summary line such
//! as `downloaded 100 URLs, 418898 bytes, in 70 ms with 20 at a time (20 connections)` and
//! stops the server. Expect about 1/15 of the sequential time in a release build.
//!
//! `GROVE_WORKERS=1 cargo run --example bulk_download` makes the point most plainly: the 20
//! downloads and the server's connection greenlets then share one worker thread, so a single
//! socket call or resolver lookup that blocked the thread instead of parking its greenlet
//! would stall (or deadlock) the whole run.
//!
//! How ureq is made to park greenlets instead of blocking worker threads: ureq 3 exposes its
//! transport layer in `ureq::unversioned::transport`. [`GroveConnector`] implements its
//! `Connector` trait and opens a `grove::net::TcpStream` (std's API; a connect, read or write
//! that would block parks only the calling greenlet, and the worker runs other greenlets);
//! [`GroveTransport`] implements `Transport` on it, mirroring ureq's own `TcpConnector` /
//! `TcpTransport` (same buffers, timeouts, `is_open` probe and shutdown handle).
//! [`GroveResolver`] answers IP literals itself and sends anything else to grove's blocking
//! pool. `Agent::with_parts(config, GroveConnector, GroveResolver)` puts them together; the rest
//! is plain ureq (`agent.get(url).call()`, connection pooling with keep-alive, body reading).
//!
//! [ureq]: https://docs.rs/ureq/3

use grove::net::http::{Response, Server};
use grove::net::TcpStream;
use grove::sync::Pool;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    time, Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::{Agent, Error};

/// How many URLs to fetch.
const URLS: usize = 100;
/// How many downloads run at once (gevent's `Pool(20)`).
const POOL_SIZE: usize = 20;

// ---------------------------------------------------------------------------------------------
// ureq on grove sockets

/// ureq `Connector` that dials with `grove::net::TcpStream`.
#[derive(Debug, Default)]
pub struct GroveConnector;

/// Connections opened so far (the rest of the requests reused pooled keep-alive connections).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

impl Connector<()> for GroveConnector {
    type Out = GroveTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<GroveTransport>, Error> {
        // Like ureq's TcpConnector: each address in turn, the first that accepts wins. The
        // connect timeout is what is left of the request's budget, per address.
        let mut last_err = None;
        let mut stream = None;
        for addr in details.addrs.iter() {
            let left = remaining(details)?;
            let attempt = match left {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(*addr),
            };
            match attempt {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last_err = Some(Error::Timeout(details.timeout.reason));
                }
                Err(e) => last_err = Some(Error::Io(e)),
            }
        }
        let Some(stream) = stream else {
            return Err(last_err.unwrap_or(Error::HostNotFound));
        };
        CONNECTIONS.fetch_add(1, Relaxed);
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        let transport = GroveTransport::new(stream, buffers);
        // Lets `Agent::shutdown` interrupt a request parked on this socket.
        (details.register_shutdown)(transport.shutdown_handle())?;
        Ok(Some(transport))
    }
}

/// What is left of the connect budget: `None` for no timeout.
fn remaining(details: &ConnectionDetails) -> Result<Option<Duration>, Error> {
    let Some(budget) = details.timeout.not_zero() else {
        return Ok(None);
    };
    let spent = match ((details.current_time)(), details.now) {
        (time::Instant::Exact(now), time::Instant::Exact(start)) => {
            now.saturating_duration_since(start)
        }
        _ => Duration::ZERO,
    };
    match budget.checked_sub(spent) {
        Some(left) if !left.is_zero() => Ok(Some(left)),
        _ => Err(Error::Timeout(details.timeout.reason)),
    }
}

/// A grove socket, shared (weakly) with the agent so that `Agent::shutdown` can shut it down.
struct Socket(TcpStream);

impl ShutdownHandle for Socket {
    fn shutdown(&self) {
        // Wakes a greenlet parked in read or write on it (the poller reports the hang-up).
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// ureq `Transport` over a `grove::net::TcpStream`: reads and writes park the greenlet.
pub struct GroveTransport {
    socket: Arc<Socket>,
    buffers: LazyBuffers,
    /// Timeouts last set on the socket, so they are only set when they change.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl GroveTransport {
    fn new(stream: TcpStream, buffers: LazyBuffers) -> GroveTransport {
        GroveTransport {
            socket: Arc::new(Socket(stream)),
            buffers,
            read_timeout: None,
            write_timeout: None,
        }
    }

    fn shutdown_handle(&self) -> Weak<dyn ShutdownHandle> {
        Arc::downgrade(&self.socket) as Weak<dyn ShutdownHandle>
    }

    fn stream(&self) -> &TcpStream {
        &self.socket.0
    }
}

/// The timeout to put on the socket for `timeout` (`None`: wait forever), or the timeout error
/// if the budget is already spent.
fn socket_timeout(timeout: NextTimeout) -> Result<Option<Duration>, Error> {
    if timeout.after.is_zero() {
        return Err(Error::Timeout(timeout.reason));
    }
    Ok(timeout.not_zero().map(|d| *d))
}

/// grove reports an expired socket timeout as `TimedOut` (std on Unix says `WouldBlock`);
/// either becomes ureq's timeout error.
fn io_error(e: io::Error, timeout: NextTimeout) -> Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(timeout.reason),
        _ => Error::Io(e),
    }
}

impl Transport for GroveTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let t = socket_timeout(timeout)?;
        if t != self.write_timeout {
            self.stream().set_write_timeout(t)?;
            self.write_timeout = t;
        }
        let output = &self.buffers.output()[..amount];
        (&self.socket.0)
            .write_all(output)
            .map_err(|e| io_error(e, timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let t = socket_timeout(timeout)?;
        if t != self.read_timeout {
            self.stream().set_read_timeout(t)?;
            self.read_timeout = t;
        }
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.socket.0).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| io_error(e, timeout))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // ureq's probe before reusing a pooled connection: nothing may be waiting to be read
        // (unexpected bytes or EOF mean the server is done with it). Non-blocking for the probe.
        let mut stream = self.stream();
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            stream.read(&mut [0u8]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        open && stream.set_nonblocking(false).is_ok()
    }
}

impl fmt::Debug for GroveTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroveTransport")
            .field("addr", &self.stream().peer_addr().ok())
            .finish()
    }
}

/// ureq `Resolver` that never blocks a worker thread.
///
/// ureq's `DefaultResolver` calls `ToSocketAddrs` (a blocking `getaddrinfo`) on the calling
/// thread, and when a timeout is set it spawns an OS thread and blocks on a std channel until
/// it answers: either way a grove worker would be stuck, with every greenlet queued on it. So
/// an IP literal (like this example's `127.0.0.1`) is parsed right here, with no syscall, and
/// anything else runs `DefaultResolver` on grove's blocking pool (`grove::spawn_blocking`),
/// whose `join` parks only the calling greenlet.
#[derive(Debug, Default)]
pub struct GroveResolver;

impl Resolver for GroveResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, Error> {
        let literal = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority)
                .and_then(|hp| hp.parse::<SocketAddr>().ok()),
            _ => None,
        };
        if let Some(addr) = literal {
            let mut addrs = self.empty();
            for a in config.ip_family().keep_wanted(std::iter::once(addr)) {
                addrs.push(a);
            }
            return if addrs.is_empty() {
                Err(Error::HostNotFound)
            } else {
                Ok(addrs)
            };
        }
        let (uri, config) = (uri.clone(), config.clone());
        grove::spawn_blocking(move || DefaultResolver::default().resolve(&uri, &config, timeout))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// A ureq agent whose every socket operation parks only the calling greenlet.
fn grove_agent() -> Agent {
    let config = Config::builder()
        // No proxy from the environment: this example talks to its own loopback server.
        .proxy(None)
        // Keep up to one idle keep-alive connection per concurrent download.
        .max_idle_connections(POOL_SIZE)
        .max_idle_connections_per_host(POOL_SIZE)
        // A bound on each request, so a stuck download fails instead of hanging the example.
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    Agent::with_parts(config, GroveConnector, GroveResolver)
}

// ---------------------------------------------------------------------------------------------
// The server and the files it serves

/// The body of `/file/{i}`: a first line naming the URL, then 2-6 KB of bytes derived from `i`.
fn file_body(i: usize) -> String {
    let mut body = format!("this is /file/{i}\n");
    let len = 2048 + mix(i as u64) as usize % 4096;
    body.extend((0..len).map(|k| (b'a' + ((i * 7 + k) % 26) as u8) as char));
    body
}

/// A cheap deterministic pseudo-random number (splitmix64's finaliser).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The server's handler: `/file/{i}` after a 1-20 ms nap that parks only its greenlet.
fn serve_file(path: &str) -> Response {
    let Some(i) = path
        .strip_prefix("/file/")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Response::new(404);
    };
    grove::sleep(Duration::from_millis(1 + mix(!(i as u64)) % 20));
    Response::text(file_body(i))
}

// ---------------------------------------------------------------------------------------------
// The downloads

/// Fetches `url` (whose file number is `i`) and checks its body: the body's length, or what
/// went wrong.
fn download(agent: &Agent, i: usize, url: &str) -> Result<usize, String> {
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: reading the body: {e}"))?;
    if body != file_body(i) {
        return Err(format!(
            "{url}: wrong body ({} bytes, starting {:?})",
            body.len(),
            body.lines().next().unwrap_or("")
        ));
    }
    Ok(body.len())
}

/// Totals the results of a run, or lists what failed.
fn total(results: &[Result<usize, String>]) -> Result<usize, String> {
    let failures: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(String::as_str))
        .collect();
    if failures.is_empty() {
        Ok(results.iter().flatten().sum())
    } else {
        Err(format!(
            "{} of {} downloads failed:\n  {}",
            failures.len(),
            results.len(),
            failures.join("\n  ")
        ))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::bind("127.0.0.1:0", |req| serve_file(req.path()))?.start();
    let port = server.local_addr()?.port();
    println!("serving {URLS} files on http://127.0.0.1:{port}/file/{{0..{URLS}}}");

    let urls: Vec<(usize, String)> = (0..URLS)
        .map(|i| (i, format!("http://127.0.0.1:{port}/file/{i}")))
        .collect();
    let agent = grove_agent();

    // gevent: `Pool(20).map(download, urls)`. Each call runs in a pool greenlet; results come
    // back in the order of `urls`.
    let pool = Pool::new(POOL_SIZE);
    let started = Instant::now();
    let results = {
        let agent = agent.clone();
        pool.map(urls.clone(), move |(i, url)| download(&agent, i, &url))
    };
    let pooled = started.elapsed();
    let bytes = total(&results)?;
    println!(
        "downloaded {} URLs, {bytes} bytes, in {} ms with {POOL_SIZE} at a time \
         ({} connections)",
        results.len(),
        pooled.as_millis(),
        CONNECTIONS.load(Relaxed)
    );

    // The same downloads one after another, in one greenlet, for comparison.
    let started = Instant::now();
    let results = grove::spawn(move || {
        urls.iter()
            .map(|(i, url)| download(&agent, *i, url))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let sequential = started.elapsed();
    let again = total(&results)?;
    assert_eq!(again, bytes, "the sequential run saw different bodies");
    println!(
        "sequentially: {} URLs in {} ms ({:.1}x slower)",
        results.len(),
        sequential.as_millis(),
        sequential.as_secs_f64() / pooled.as_secs_f64().max(1e-9)
    );

    server.stop(Duration::from_secs(1));
    Ok(())
}
