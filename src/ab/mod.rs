//! The load generator behind the `grove-ab` binary: ab's flags and report, one greenlet per
//! concurrent client on grove's own sockets, latencies in `hdrhistogram`s. Also used by
//! `examples/slow_handler.rs`.

mod client;
mod reply;
mod report;
mod timings;

pub use report::Report;

use crate::net::http::{Response, Server};
use crate::net::TcpStream;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timings::Timings;

/// What to load, and how hard (`ab`'s flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// `-n`: requests to make.
    pub requests: u64,
    /// `-c`: clients at once (one greenlet each).
    pub concurrency: usize,
    /// `-k`: keep connections alive.
    pub keep_alive: bool,
    /// `-t`: stop after this long.
    pub time_limit: Option<Duration>,
    /// `-s`: per-operation timeout.
    pub timeout: Duration,
    /// `-H`: extra request headers, `Name: value`.
    pub headers: Vec<String>,
    /// `-m`: method (default GET, POST with a body).
    pub method: Option<String>,
    /// `-p`: request body.
    pub body: Option<Vec<u8>>,
    /// `-T`: body content type.
    pub content_type: Option<String>,
    /// `-q`: no progress output.
    pub quiet: bool,
    /// `-l`: bodies of different lengths are not failures (dynamic pages).
    pub variable_length: bool,
    /// `-r`: a receive error (a reset, or `-s` passing while a response is awaited) is counted
    /// as a failed request and the run goes on. Without it the first one ends the run, as in
    /// ab, and [`run`] returns it as an error.
    pub keep_going_on_receive_errors: bool,
    /// Print ab's `Benchmarking HOST (be patient)` line on stdout, as the `grove-ab` binary
    /// does even with `-q` (off for other callers, whose output it would interleave).
    pub announce: bool,
    /// The URL; `None` benchmarks the embedded hello server.
    pub url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            requests: 1,
            concurrency: 1,
            keep_alive: false,
            time_limit: None,
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            method: None,
            body: None,
            content_type: None,
            quiet: false,
            variable_length: false,
            keep_going_on_receive_errors: false,
            announce: false,
            url: None,
        }
    }
}

/// A parsed `http://host[:port]/path` URL.
pub struct Target {
    /// Host as written in the URL.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path (and query).
    pub path: String,
    /// Resolved address.
    pub addr: SocketAddr,
}

/// Parses and resolves an `http://` URL; as in ab, a URL without a scheme is taken as one.
pub fn parse_url(url: &str) -> Result<Target, String> {
    // A scheme is what comes before a "://" that precedes any '/' (a query may hold "://").
    let scheme_end = url.find("://").filter(|&i| !url[..i].contains('/'));
    let rest = match scheme_end.map(|i| (&url[..i], &url[i + 3..])) {
        None => url,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => {
            return Err(format!(
                "unsupported URL {url:?}: only http:// is supported"
            ))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("invalid URL {url:?}: no host"));
    }
    // `[v6 literal]` or a name, then `:port` or nothing.
    let host_end = match authority.strip_prefix('[') {
        Some(v6) => v6
            .find(']')
            .map(|i| i + 2)
            .ok_or_else(|| format!("invalid URL {url:?}: no ']' after an IPv6 address"))?,
        None => authority.find(':').unwrap_or(authority.len()),
    };
    let (host, port) = match &authority[host_end..] {
        "" => (authority.to_string(), 80),
        p => match p.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(port)) => (authority[..host_end].to_string(), port),
            _ => return Err(format!("invalid URL {url:?}: bad port {p:?}")),
        },
    };
    let lookup = format!("{}:{port}", bare_host(&host));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&lookup.as_str())
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}: no addresses"))?;
    Ok(Target {
        host,
        port,
        path: path.to_string(),
        addr,
    })
}

/// A host as written in a URL, without the brackets of an IPv6 literal (`[::1]` is `::1`).
fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

fn build_request(o: &Config, t: &Target) -> Vec<u8> {
    let method = o
        .method
        .clone()
        .unwrap_or_else(|| if o.body.is_some() { "POST" } else { "GET" }.into());
    // A `-H` of the same name replaces a default header, as in ab.
    let given = |name: &str| {
        o.headers.iter().any(|h| {
            h.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let mut r = format!("{method} {} HTTP/1.0\r\n", t.path);
    if !given("host") {
        r.push_str(&format!("Host: {}", t.host));
        if t.port != 80 {
            r.push_str(&format!(":{}", t.port));
        }
        r.push_str("\r\n");
    }
    if !given("user-agent") {
        r.push_str("User-Agent: grove-ab\r\n");
    }
    if !given("accept") {
        r.push_str("Accept: */*\r\n");
    }
    if o.keep_alive {
        r.push_str("Connection: keep-alive\r\n");
    }
    for h in &o.headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if let Some(b) = &o.body {
        let ct = o.content_type.as_deref().unwrap_or("text/plain");
        r.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    if let Some(b) = &o.body {
        bytes.extend_from_slice(b);
    }
    bytes
}

#[derive(Default)]
struct Tally {
    complete: u64,
    failed_connect: u64,
    failed_receive: u64,
    failed_length: u64,
    non_2xx: u64,
    keep_alive_requests: u64,
    bytes: u64,
    body_bytes: u64,
    /// Request bytes written, counted only when the requests carry a body (`-p`), as ab.
    posted: u64,
    doc_len: Option<usize>,
    server: Option<String>,
}

impl Tally {
    /// Adds a client's counts to the run's.
    fn merge(&mut self, t: Tally) {
        self.complete += t.complete;
        self.failed_connect += t.failed_connect;
        self.failed_receive += t.failed_receive;
        self.failed_length += t.failed_length;
        self.non_2xx += t.non_2xx;
        self.keep_alive_requests += t.keep_alive_requests;
        self.bytes += t.bytes;
        self.body_bytes += t.body_bytes;
        self.posted += t.posted;
        self.server = self.server.take().or(t.server);
    }
}

struct Shared {
    opts: Config,
    target: Target,
    request: Vec<u8>,
    /// The method is `HEAD`: responses carry no body.
    head_request: bool,
    /// Request numbers a client claims at a time (see [`TICKET_BATCH`]).
    batch: u64,
    /// The connection `run` opened to check the server is there, for the first client to use.
    probe: Mutex<Option<TcpStream>>,
    next: AtomicU64,
    done: AtomicU64,
    deadline: Option<Instant>,
    /// The body length of the first response of the whole run, which every later one is
    /// compared with as `ab` does ("Failed requests (Length)"); `UNSET_LEN` until then.
    doc_len: AtomicU64,
    /// How progress is shown, decided once (asking whether stderr is a terminal is a syscall):
    /// off with `-q`, `-t` or few requests, and only when it is on is `done` counted.
    progress: Progress,
    tally: Mutex<(Tally, Timings)>,
    /// The receive error that ended the run (without `-r`); the clients stop once it is set.
    receive_error: Mutex<Option<String>>,
    stopped: AtomicBool,
}

impl Shared {
    /// Claims up to `TICKET_BATCH` request numbers at once (one shared atomic per batch, not
    /// per request); returns how many were granted.
    fn take_tickets(&self) -> u64 {
        if self.stopped.load(Relaxed) {
            return 0;
        }
        let first = self.next.fetch_add(self.batch, Relaxed);
        self.opts.requests.saturating_sub(first).min(self.batch)
    }

    /// Without `-r`: the first receive error ends the run (ab's `apr_socket_recv` error and
    /// exit). The other clients are stopped by the run's watcher.
    fn stop_at_receive_error(&self, e: &std::io::Error) {
        let mut first = self.receive_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
        self.stopped.store(true, Relaxed);
    }

    /// True once the `-t` deadline has passed (never without `-t`).
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The timeout for the operations of a request starting at `now`: `-s`, cut short by the
    /// `-t` deadline (at least a millisecond: a zero timeout means none to grove's sockets).
    fn op_timeout(&self, now: Instant) -> Duration {
        match self.deadline {
            Some(d) => self
                .opts
                .timeout
                .min(d.saturating_duration_since(now))
                .max(Duration::from_millis(1)),
            None => self.opts.timeout,
        }
    }

    /// The body length of the run's first response: `len` if this is it. Each client asks once
    /// and keeps the answer, which never changes.
    fn first_length(&self, len: u64) -> u64 {
        match self
            .doc_len
            .compare_exchange(UNSET_LEN, len, Relaxed, Relaxed)
        {
            Ok(_) => len,
            Err(first) => first,
        }
    }
}

/// `Shared::doc_len` before any response.
const UNSET_LEN: u64 = u64::MAX;

/// Most request numbers a client claims at a time: enough to keep the shared counter off the
/// per-request path. Fewer when `-n` is small against `-c`: each client's share is then cut in
/// at least four batches, so every client gets work and the last batches end together (with 8
/// always, `-n 100 -c 50` kept 13 clients busy, not 50, and its last clients ran their batches
/// alone, one request after another).
const TICKET_BATCH: u64 = 8;

/// How `grove-ab` reports progress on stderr.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Progress {
    Off,
    /// A line every 10% of the requests, as `ab` prints.
    Lines,
    /// A live bar, when stderr is a terminal.
    Bar,
}

fn progress(sh: &Shared, done: u64) {
    if sh.progress == Progress::Bar {
        if done.is_multiple_of((sh.opts.requests / 100).max(1)) || done == sh.opts.requests {
            let pct = done * 100 / sh.opts.requests;
            let bar = "#".repeat((pct / 2) as usize);
            eprint!("\r[{bar:<50}] {pct:3}% ({done} requests)");
        }
    } else if done.is_multiple_of((sh.opts.requests / 10).max(100)) {
        // ab's heartbeat: every tenth of the run, but no more often than every 100.
        eprintln!("Completed {done} requests");
    }
}

/// Starts grove's embedded hello-world server on a loopback port.
pub fn hello_server() -> std::io::Result<(SocketAddr, crate::net::ServerHandle)> {
    let server = Server::bind("127.0.0.1:0", |_req| Response::static_text("Hello World!"))?;
    let addr = server.local_addr()?;
    Ok((addr, server.start()))
}

/// The most clients a run may have, as ab's `MAX_CONCURRENCY` (a huge `-c` spawned greenlets
/// until memory ran out, or overflowed the client list's capacity).
pub const MAX_CONCURRENCY: usize = 20_000;

/// Runs the load described by `cfg` against `cfg.url` (or, without one, the embedded hello
/// server) and returns the report. A concurrency of 0 or above [`MAX_CONCURRENCY`] is an error.
pub fn run(mut cfg: Config) -> Result<Report, String> {
    if cfg.concurrency == 0 || cfg.concurrency > MAX_CONCURRENCY {
        return Err(format!(
            "concurrency must be from 1 to {MAX_CONCURRENCY} (as ab's), not {}",
            cfg.concurrency
        ));
    }
    // The embedded server, if any, lives until the run ends.
    let (url, _server) = resolve_url(&mut cfg)?;
    let target = parse_url(&url)?;
    // Fail early and clearly on an unreachable server; the connection is then the first
    // client's, so the server sees no more connections than ab would open.
    let probe = TcpStream::connect_timeout(&target.addr, cfg.timeout)
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    let sh = Arc::new(Shared::new(cfg, target, probe));
    // As ab: on stdout, even with `-q`; without progress lines, "..done" ends it.
    let announce = sh.opts.announce;
    if announce {
        let host = bare_host(&sh.target.host);
        if sh.progress == Progress::Off {
            print!("Benchmarking {host} (be patient)...");
        } else {
            println!("Benchmarking {host} (be patient)");
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
    let start = Instant::now();
    INTERRUPTED.store(false, Relaxed);
    RUNNING.store(true, Relaxed);
    let clients: Vec<_> = (0..sh.opts.concurrency)
        .map(|_| {
            let sh = sh.clone();
            crate::spawn(move || client::run_client(sh))
        })
        .collect();
    let watch = watch_for_interrupt(clients.iter().map(|c| c.greenlet()).collect(), sh.clone());
    let mut panicked = false;
    for c in clients {
        match c.join() {
            Ok(()) => {}
            Err(p) if p.downcast_ref::<crate::Killed>().is_some() => {} // interrupted
            Err(_) => panicked = true,
        }
    }
    RUNNING.store(false, Relaxed);
    watch.kill();
    if panicked {
        return Err("a client greenlet panicked".to_string());
    }
    let elapsed = start.elapsed();
    let receive_error = sh.receive_error.lock().expect("receive error lock").take();
    if let Some(e) = receive_error {
        // As ab: the error, and how many requests completed; no report.
        let done = sh.take_report(elapsed).tally.complete;
        if sh.progress == Progress::Bar {
            eprintln!();
        }
        return Err(format!(
            "receive error: {e}; total of {done} requests completed \
             (-r counts receive errors as failed requests and goes on)"
        ));
    }
    if sh.progress == Progress::Off {
        if announce {
            println!("..done");
        }
    } else {
        let done = sh.done.load(Relaxed);
        if sh.progress == Progress::Bar {
            eprintln!();
        }
        eprintln!("Finished {done} requests");
    }
    Ok(sh.take_report(elapsed))
}

/// Set by [`interrupt`] during a run: the run ends now, and reports what it has (ab on
/// `SIGINT`). Cleared when a run starts.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True while [`run`]'s clients are at work.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Ends the run in progress as ab's `SIGINT` does: requests in flight are dropped (neither
/// complete nor failed), and [`run`] returns the report of those that finished. False, and
/// nothing done, if no run is at work (before its clients start, or after). Only touches
/// atomics, so a signal handler may call it.
pub fn interrupt() -> bool {
    if !RUNNING.load(Relaxed) {
        return false;
    }
    INTERRUPTED.store(true, Relaxed);
    true
}

/// True if the last run was ended by [`interrupt`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Relaxed)
}

/// A greenlet that kills the clients once [`interrupt`] is called or a receive error stopped
/// the run (looking every 20 ms; it is killed itself when the run ends).
fn watch_for_interrupt(clients: Vec<crate::Greenlet>, sh: Arc<Shared>) -> crate::JoinHandle<()> {
    crate::spawn(move || loop {
        if interrupted() || sh.stopped.load(Relaxed) {
            crate::kill_all(&clients);
            return;
        }
        crate::sleep(Duration::from_millis(20));
    })
}

/// The URL to load: `cfg.url`, or that of the embedded hello server, started here.
fn resolve_url(cfg: &mut Config) -> Result<(String, Option<crate::net::ServerHandle>), String> {
    if let Some(u) = cfg.url.take() {
        return Ok((u, None));
    }
    let (addr, handle) = hello_server().map_err(|e| format!("cannot start server: {e}"))?;
    if !cfg.quiet {
        eprintln!("No URL given: benchmarking grove's embedded hello-world server on {addr}");
    }
    Ok((format!("http://{addr}/"), Some(handle)))
}

impl Shared {
    fn new(cfg: Config, target: Target, probe: TcpStream) -> Shared {
        let request = build_request(&cfg, &target);
        let head_request = request.starts_with(b"HEAD ");
        // A limit too far away to represent is no limit (`-t 18446744073709551615` must not
        // panic).
        let deadline = cfg.time_limit.and_then(|t| Instant::now().checked_add(t));
        let batch = (cfg.requests / (cfg.concurrency as u64 * 4)).clamp(1, TICKET_BATCH);
        // As ab: progress lines above 150 requests (with `-t`, for its 50,000 or so).
        let progress = if cfg.quiet || cfg.requests <= 150 {
            Progress::Off
        } else if deadline.is_none() && std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        };
        Shared {
            opts: cfg,
            target,
            request,
            head_request,
            batch,
            probe: Mutex::new(Some(probe)),
            next: AtomicU64::new(0),
            done: AtomicU64::new(0),
            deadline,
            doc_len: AtomicU64::new(UNSET_LEN),
            progress,
            tally: Mutex::new((Tally::default(), Timings::new())),
            receive_error: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    /// The report, once every client has added its counts.
    fn take_report(&self, elapsed: Duration) -> Report {
        let mut g = self.tally.lock().expect("tally lock");
        let (mut tally, times) = std::mem::replace(&mut *g, (Tally::default(), Timings::new()));
        tally.doc_len = match self.doc_len.load(Relaxed) {
            UNSET_LEN => None,
            len => Some(len as usize),
        };
        Report {
            tally,
            times,
            elapsed,
            concurrency: self.opts.concurrency,
            keep_alive: self.opts.keep_alive,
            posting: self.opts.body.is_some(),
            variable_length: self.opts.variable_length,
            host: bare_host(&self.target.host).to_string(),
            port: self.target.port,
            path: self.target.path.clone(),
        }
    }
}
