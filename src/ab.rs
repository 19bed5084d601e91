//! The load generator behind the `grove-ab` binary: ab's flags and report, one greenlet per
//! concurrent client on grove's own sockets, latencies in an `hdrhistogram`. Also used by
//! `examples/slow_handler.rs`.

use crate::net::http::{Response, Server};
use crate::net::TcpStream;
use hdrhistogram::Histogram;
use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Parses and resolves an `http://` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("invalid URL {url:?}: no host"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("invalid URL {url:?}: bad port {p:?}"))?,
        ),
        _ => (authority.to_string(), 80),
    };
    let lookup = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
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

fn build_request(o: &Config, t: &Target) -> Vec<u8> {
    let method = o
        .method
        .clone()
        .unwrap_or_else(|| if o.body.is_some() { "POST" } else { "GET" }.into());
    let mut r = format!("{method} {} HTTP/1.0\r\nHost: {}", t.path, t.host);
    if t.port != 80 {
        r.push_str(&format!(":{}", t.port));
    }
    r.push_str("\r\nUser-Agent: grove-ab\r\nAccept: */*\r\n");
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

/// What one response looked like.
struct Reply {
    status: u16,
    body_len: usize,
    total_len: usize,
    keep_alive: bool,
    server: Option<String>,
}

/// A client connection's read buffer: zeroed once, refilled in place (valid bytes are
/// `data[start..end]`), so a response costs no allocation and no memset.
struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// With `-t`: the run's deadline and `-s`. Each read then waits at most `-s` and never past
    /// the deadline, however many reads a response takes (a server that trickles its bytes must
    /// not keep a timed run going).
    cap: Option<(Instant, Duration)>,
}

impl ReadBuf {
    fn new() -> ReadBuf {
        ReadBuf {
            data: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            cap: None,
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
    }

    /// Reads more; an error at end of stream.
    fn fill(&mut self, s: &TcpStream) -> std::io::Result<()> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.data.resize(self.data.len() * 2, 0);
            }
        }
        if let Some((deadline, per_read)) = self.cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            // A plain store for grove's sockets, no syscall.
            s.set_read_timeout(Some(per_read.min(left)))?;
        }
        let n = (&*s).read(&mut self.data[self.end..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

/// Reads one response from `s` into `buf` (which may already hold its start). The `Server`
/// header is copied out only when `want_server` (the first response of each client).
fn read_reply(s: &TcpStream, buf: &mut ReadBuf, want_server: bool) -> std::io::Result<Reply> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    loop {
        // Uninitialised: filling 64 empty headers before every parse cost ~400 instructions
        // per response (callgrind).
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf.bytes(), &mut headers)
            .map_err(|e| bad(&e.to_string()))?;
        match parsed {
            httparse::Status::Complete(head) => {
                let status = resp.code.unwrap_or(0);
                let mut len: Option<usize> = None;
                let mut close = resp.version == Some(0);
                let mut chunked = false;
                let mut server = None;
                for h in resp.headers.iter() {
                    let v = h.value.trim_ascii();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        len = parse_decimal(v);
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = v.eq_ignore_ascii_case(b"close");
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = v.eq_ignore_ascii_case(b"chunked");
                    } else if want_server && h.name.eq_ignore_ascii_case("server") {
                        server = Some(String::from_utf8_lossy(v).into_owned());
                    }
                }
                if chunked {
                    return Err(bad("chunked responses are not supported"));
                }
                let body_len = match len {
                    Some(l) => l,
                    None => {
                        // Body until the connection closes.
                        loop {
                            match buf.fill(s) {
                                Ok(()) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                                Err(e) => return Err(e),
                            }
                        }
                        close = true;
                        buf.bytes().len() - head
                    }
                };
                while buf.bytes().len() < head + body_len {
                    buf.fill(s)?;
                }
                buf.consume(head + body_len);
                return Ok(Reply {
                    status,
                    body_len,
                    total_len: head + body_len,
                    keep_alive: !close,
                    server,
                });
            }
            httparse::Status::Partial => buf.fill(s)?,
        }
    }
}

/// A `Content-Length` value: ASCII digits only (no sign, no spaces), as RFC 9110 has it.
fn parse_decimal(v: &[u8]) -> Option<usize> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |n, &b| {
        let d = b.wrapping_sub(b'0');
        (d < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(usize::from(d))
    })
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
    doc_len: Option<usize>,
    server: Option<String>,
}

struct Shared {
    opts: Config,
    target: Target,
    request: Vec<u8>,
    next: AtomicU64,
    done: AtomicU64,
    stop: AtomicBool,
    deadline: Option<Instant>,
    /// The body length of the first response of the whole run, which every later one is
    /// compared with as `ab` does ("Failed requests (Length)"); `UNSET_LEN` until then.
    doc_len: AtomicU64,
    /// How progress is shown, decided once (asking whether stderr is a terminal is a syscall):
    /// off with `-q`, `-t` or few requests, and only when it is on is `done` counted.
    progress: Progress,
    tally: Mutex<(Tally, Histogram<u64>)>,
}

impl Shared {
    /// Claims up to `TICKET_BATCH` request numbers at once (one shared atomic per batch, not
    /// per request); returns how many were granted.
    fn take_tickets(&self) -> u64 {
        if self.stop.load(Relaxed) {
            return 0;
        }
        let first = self.next.fetch_add(TICKET_BATCH, Relaxed);
        self.opts.requests.saturating_sub(first).min(TICKET_BATCH)
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

/// Requests up to this size are written as one segment (below any MSS, even a 1,500-byte MTU's),
/// so they need no `TCP_NODELAY` (one syscall per connection saved).
const NAGLE_SAFE_REQUEST: usize = 1_200;

/// Request numbers a client claims at a time: small enough that `-n` splits evenly over the
/// clients, large enough to keep the shared counter off the per-request path.
const TICKET_BATCH: u64 = 8;

/// One concurrent client: a greenlet issuing requests until the tickets run out.
fn client(sh: Arc<Shared>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    let mut t = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = ReadBuf::new();
    buf.cap = sh.deadline.map(|d| (d, sh.opts.timeout));
    // The run's first body length, once known (it never changes after).
    let mut first_len: Option<u64> = None;
    let mut tickets = 0u64;
    loop {
        if tickets == 0 {
            tickets = sh.take_tickets();
            if tickets == 0 {
                break;
            }
        }
        let start = Instant::now();
        if sh.deadline.is_some_and(|d| start >= d) {
            break;
        }
        tickets -= 1;
        let timeout = sh.op_timeout(start);
        let fresh = conn.is_none();
        if fresh {
            match TcpStream::connect_timeout(&sh.target.addr, timeout) {
                Ok(s) => {
                    // A request that fits one segment goes out at once whatever Nagle says (it
                    // is written whole, with nothing unacknowledged in flight); only a larger one
                    // (a `-p` body) could have its tail held back for a delayed ACK.
                    if sh.request.len() > NAGLE_SAFE_REQUEST {
                        let _ = s.set_nodelay(true);
                    }
                    // Reads wait `-s` at most (and, with `-t`, not past the deadline: `fill`).
                    let _ = s.set_read_timeout(Some(sh.opts.timeout));
                    let _ = s.set_write_timeout(Some(timeout));
                    conn = Some(s);
                    buf.clear();
                }
                Err(_) => {
                    if sh.past_deadline() {
                        break;
                    }
                    t.failed_connect += 1;
                    continue;
                }
            }
        } else if sh.deadline.is_some() {
            // With `-t` the write ends by the deadline too: a stalled server must not stretch
            // the run by up to `-s`. (grove's socket timeouts are plain stores, no syscall.)
            let s = conn.as_ref().expect("checked above");
            let _ = s.set_write_timeout(Some(timeout));
        }
        let s = conn.as_ref().expect("connected above");
        let r = (&*s)
            .write_all(&sh.request)
            .and_then(|()| read_reply(s, &mut buf, t.server.is_none()));
        match r {
            Ok(reply) => {
                let micros = start.elapsed().as_micros().max(1) as u64;
                let _ = hist.record(micros);
                t.complete += 1;
                t.bytes += reply.total_len as u64;
                t.body_bytes += reply.body_len as u64;
                if !(200..300).contains(&reply.status) {
                    t.non_2xx += 1;
                }
                let len = reply.body_len as u64;
                if *first_len.get_or_insert_with(|| sh.first_length(len)) != len {
                    t.failed_length += 1;
                }
                if t.server.is_none() {
                    t.server = reply.server;
                }
                if sh.opts.keep_alive && reply.keep_alive {
                    if !fresh {
                        t.keep_alive_requests += 1;
                    }
                } else {
                    conn = None;
                }
            }
            Err(_) => {
                conn = None;
                if sh.past_deadline() {
                    break; // cut off by `-t`, as ab stops: neither complete nor failed
                }
                t.failed_receive += 1;
            }
        }
        if sh.progress != Progress::Off {
            let done = sh.done.fetch_add(1, Relaxed) + 1;
            progress(&sh, done);
        }
    }
    let mut g = sh.tally.lock().expect("tally lock");
    merge(&mut g.0, t);
    g.1.add(&hist).expect("histogram bounds match");
}

fn merge(into: &mut Tally, t: Tally) {
    into.complete += t.complete;
    into.failed_connect += t.failed_connect;
    into.failed_receive += t.failed_receive;
    into.failed_length += t.failed_length;
    into.non_2xx += t.non_2xx;
    into.keep_alive_requests += t.keep_alive_requests;
    into.bytes += t.bytes;
    into.body_bytes += t.body_bytes;
    into.server = into.server.take().or(t.server);
}

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
    let step = (sh.opts.requests / 10).max(1);
    if sh.progress == Progress::Bar {
        if done % (sh.opts.requests / 100).max(1) == 0 || done == sh.opts.requests {
            let pct = done * 100 / sh.opts.requests;
            let bar = "#".repeat((pct / 2) as usize);
            eprint!("\r[{bar:<50}] {pct:3}% ({done} requests)");
            if done == sh.opts.requests {
                eprintln!();
            }
        }
    } else if done % step == 0 {
        eprintln!("Completed {done} requests");
    }
}

/// Starts grove's embedded hello-world server on a loopback port.
pub fn hello_server() -> std::io::Result<(SocketAddr, crate::net::ServerHandle)> {
    let server = Server::bind("127.0.0.1:0", |_req| Response::text("Hello World!"))?;
    let addr = server.local_addr()?;
    Ok((addr, server.start()))
}

/// Runs the load described by `cfg` against `cfg.url` (or, without one, the embedded hello
/// server) and returns the report.
pub fn run(mut cfg: Config) -> Result<Report, String> {
    let (url, _server) = match cfg.url.take() {
        Some(u) => (u, None),
        None => {
            let (addr, handle) = hello_server().map_err(|e| format!("cannot start server: {e}"))?;
            if !cfg.quiet {
                eprintln!(
                    "No URL given: benchmarking grove's embedded hello-world server on {addr}"
                );
            }
            (format!("http://{addr}/"), Some(handle))
        }
    };
    let target = parse_url(&url)?;
    // Fail early and clearly on an unreachable server.
    TcpStream::connect_timeout(&target.addr, cfg.timeout)
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;
    if !cfg.quiet {
        eprintln!("Benchmarking {} (be patient)", target.host);
    }
    let request = build_request(&cfg, &target);
    let hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    // A limit too far away to represent is no limit (`-t 18446744073709551615` must not panic).
    let deadline = cfg.time_limit.and_then(|t| Instant::now().checked_add(t));
    let concurrency = cfg.concurrency;
    let progress = if cfg.quiet || cfg.requests < 150 || deadline.is_some() {
        Progress::Off
    } else if std::io::stderr().is_terminal() {
        Progress::Bar
    } else {
        Progress::Lines
    };
    let sh = Arc::new(Shared {
        opts: cfg,
        target,
        request,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        deadline,
        doc_len: AtomicU64::new(UNSET_LEN),
        progress,
        tally: Mutex::new((Tally::default(), hist)),
    });
    let start = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let sh = sh.clone();
            crate::spawn(move || client(sh))
        })
        .collect();
    for c in clients {
        c.join()
            .map_err(|_| "a client greenlet panicked".to_string())?;
    }
    let elapsed = start.elapsed();
    let mut g = sh.tally.lock().expect("tally lock");
    let (mut tally, hist) = std::mem::replace(
        &mut *g,
        (Tally::default(), Histogram::new(3).expect("histogram")),
    );
    tally.doc_len = match sh.doc_len.load(Relaxed) {
        UNSET_LEN => None,
        len => Some(len as usize),
    };
    Ok(Report {
        tally,
        hist,
        elapsed,
        concurrency,
        keep_alive: sh.opts.keep_alive,
        host: sh.target.host.clone(),
        port: sh.target.port,
        path: sh.target.path.clone(),
    })
}

/// What a run measured.
pub struct Report {
    tally: Tally,
    hist: Histogram<u64>,
    elapsed: Duration,
    concurrency: usize,
    keep_alive: bool,
    host: String,
    port: u16,
    path: String,
}

impl Report {
    /// Requests completed per second of the run.
    pub fn requests_per_second(&self) -> f64 {
        self.tally.complete as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Requests completed.
    pub fn complete(&self) -> u64 {
        self.tally.complete
    }

    /// Failed requests (connect, receive, length), as ab counts them.
    pub fn failed(&self) -> u64 {
        self.tally.failed_connect + self.tally.failed_receive + self.tally.failed_length
    }

    /// Latency at quantile `q` (0..=1), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Prints the report the way `ab` does.
    pub fn print(&self) {
        report(self)
    }
}

fn report(r: &Report) {
    let (t, h) = (&r.tally, &r.hist);
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let failed = t.failed_connect + t.failed_receive + t.failed_length;
    let rps = t.complete as f64 / secs;
    println!();
    println!(
        "Server Software:        {}",
        t.server.as_deref().unwrap_or("")
    );
    println!("Server Hostname:        {}", r.host);
    println!("Server Port:            {}", r.port);
    println!();
    println!("Document Path:          {}", r.path);
    println!("Document Length:        {} bytes", t.doc_len.unwrap_or(0));
    println!();
    println!("Concurrency Level:      {}", r.concurrency);
    println!("Time taken for tests:   {secs:.3} seconds");
    println!("Complete requests:      {}", t.complete);
    println!("Failed requests:        {failed}");
    if failed > 0 {
        println!(
            "   (Connect: {}, Receive: {}, Length: {}, Exceptions: 0)",
            t.failed_connect, t.failed_receive, t.failed_length
        );
    }
    if t.non_2xx > 0 {
        println!("Non-2xx responses:      {}", t.non_2xx);
    }
    if r.keep_alive {
        println!("Keep-Alive requests:    {}", t.keep_alive_requests);
    }
    println!("Total transferred:      {} bytes", t.bytes);
    println!("HTML transferred:       {} bytes", t.body_bytes);
    println!("Requests per second:    {rps:.2} [#/sec] (mean)");
    println!(
        "Time per request:       {:.3} [ms] (mean)",
        r.concurrency as f64 * 1000.0 / rps.max(1e-9)
    );
    println!(
        "Time per request:       {:.3} [ms] (mean, across all concurrent requests)",
        1000.0 / rps.max(1e-9)
    );
    println!(
        "Transfer rate:          {:.2} [Kbytes/sec] received",
        t.bytes as f64 / 1024.0 / secs
    );
    println!();
    println!("Percentage of the requests served within a certain time (ms)");
    for (p, label) in [50.0, 66.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 100.0]
        .iter()
        .zip([
            "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "100%",
        ])
    {
        let ms = h.value_at_quantile(p / 100.0) as f64 / 1000.0;
        if *p == 100.0 {
            println!(" {label:>4}  {ms:6.0} (longest request)");
        } else {
            println!(" {label:>4}  {ms:6.0}");
        }
    }
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::parse_decimal;

    #[test]
    fn http_ab_content_length_digits_only() {
        assert_eq!(parse_decimal(b"12"), Some(12));
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"1 2"), None);
        assert_eq!(parse_decimal(b"99999999999999999999999"), None);
    }
}
