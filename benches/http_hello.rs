//! Hello-world HTTP/1.1 through each peer's HTTP server library: throughput, server CPU per
//! request, and server memory per idle keep-alive connection.
//!
//! Every peer is a keep-alive HTTP/1.1 server on 127.0.0.1 (listen backlog 1024 for all three)
//! that answers every request (`GET /` from the load generator) with `200`, `Content-Type:
//! text/plain` and the 12-byte body `Hello World!`, with 2 worker threads. Each library writes
//! its own headers (`Date`, `Server`, `Content-Length`); the startup check prints each peer's
//! response head and size. Unlike `net_hello`, the HTTP parsing and response writing are the
//! libraries' own:
//!
//! * `grove`: `grove::net::http::Server::bind(addr, |_req| Response::text("Hello World!"))` and
//!   `serve_forever()`, `GROVE_WORKERS=2` (its `StreamServer` sets `TCP_NODELAY` on every
//!   accepted connection);
//! * `may_minihttp`: `may_minihttp::HttpServer(HelloWorld).start(addr)` and `join()`, as in its
//!   README, the service doing `rsp.header("Content-Type: text/plain").body("Hello World!")`
//!   (its own plaintext example); `may::config().set_workers(2)`, may's defaults otherwise.
//!   may_minihttp does *not* set `TCP_NODELAY` (the call is commented out in its accept loop,
//!   0.1.11) and offers no hook to set it, so its connections keep Nagle on;
//! * `hyper`: hyper 1.x `server::conn::http1::Builder` (keep-alive on, its default) over
//!   `hyper_util::rt::TokioIo`, `service_fn` returning `http_body_util::Full<Bytes>`, on a
//!   tokio multi-thread runtime with 2 workers; the accept loop is a task of its own, one
//!   `tokio::spawn` per connection, `TCP_NODELAY` on each accepted socket.
//!
//! What the orchestrator (the default mode) does, all on 127.0.0.1, against servers it starts as
//! child processes of this same binary (`--server PEER PORT`) and kills by PID:
//!
//! 1. Throughput: starts the servers on free ports, checks each answers `GET /` with `200` and
//!    `Hello World!`, warms each with `wrk -d1s`, then for three rounds runs
//!    `wrk -t1 -c256 -d5s http://127.0.0.1:PORT/` (keep-alive, wrk's default) against each peer
//!    in turn (peers interleaved within a round, so a change in the machine's load hits all of
//!    them alike). It parses `Requests/sec:` and `N requests in`, and reads the server's
//!    utime+stime from `/proc/PID/stat` before and after the run: CPU µs per request = CPU time /
//!    requests completed. The table gives the median of the rounds, the spread (min-max), and
//!    the ratio of the median to may_minihttp's. Each run's line also says how many cores' worth
//!    of CPU the rest of the machine used meanwhile (/proc/stat busy time minus the server's and
//!    wrk's) and the steal time: on a shared machine, read the figures with those. It also gives
//!    the server's context switches per request, voluntary + involuntary, over its live threads.
//! 2. Idle memory: for each peer, a fresh server; VmRSS from `/proc/PID/status` once it is idle;
//!    then a client process (this binary, `--idle-client PORT N`) opens N = 5,000 connections,
//!    sends one `GET /` on each, reads its whole response (head, then `Content-Length` bytes),
//!    and holds them all open, idle; VmRSS again; the figure is (RSS with connections - RSS
//!    before) / N. The file-descriptor limit is raised to its hard limit (`setrlimit`) in every
//!    process; if the client cannot open N connections it says how many it held, and that count
//!    is the divisor.
//!
//! Run: `cargo bench --bench http_hello` (about two minutes; needs `wrk` on the PATH, e.g.
//! `apt-get install -y wrk`, and a hard `ulimit -n` above 5,000 for the full idle test).
//! Options after `--`: `--peers grove,may_minihttp`, `--idle N`, `--duration SECS`,
//! `--rounds R`. A server alone:
//! `GROVE_WORKERS=2 target/release/deps/http_hello-* --server grove 8080`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The body every peer answers with.
const BODY: &str = "Hello World!";

/// The request the startup check and the idle client send.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// The peers, in table order.
const PEERS: [&str; 3] = ["grove", "may_minihttp", "hyper"];

/// The peer the ratios are taken against.
const BASELINE: &str = "may_minihttp";

/// The ratio to may_minihttp the grove issue aims for.
const TARGET: f64 = 1.45;

/// wrk's connection count.
const CONNS: usize = 256;

/// Pause after a failed `accept` (EMFILE and the like) in the accept loop we write (hyper's).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Servers (`--server PEER PORT`).

fn serve(peer: &str, port: u16) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match peer {
        "grove" => serve_grove(addr),
        "may_minihttp" => serve_may_minihttp(addr),
        "hyper" => serve_hyper(addr),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {peer:?}; one of {PEERS:?}"),
        )),
    }
}

fn serve_grove(addr: SocketAddr) -> io::Result<()> {
    use grove::net::http::{Response, Server};
    eprintln!("grove: {} workers", grove::workers());
    Server::bind(addr, |_req| Response::text(BODY))?.serve_forever()
}

/// may_minihttp's hello-world service (its README's, with its plaintext example's header).
#[derive(Clone)]
struct HelloWorld;

impl may_minihttp::HttpService for HelloWorld {
    fn call(
        &mut self,
        _req: may_minihttp::Request,
        rsp: &mut may_minihttp::Response,
    ) -> io::Result<()> {
        rsp.header("Content-Type: text/plain").body(BODY);
        Ok(())
    }
}

fn serve_may_minihttp(addr: SocketAddr) -> io::Result<()> {
    may::config().set_workers(2);
    let server = may_minihttp::HttpServer(HelloWorld).start(addr)?;
    server
        .join()
        .map_err(|_| io::Error::other("may_minihttp: server coroutine panicked"))
}

async fn hyper_hello(
    _req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use hyper::header::{HeaderValue, CONTENT_TYPE};
    let mut rsp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        BODY.as_bytes(),
    )));
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(rsp)
}

fn serve_hyper(addr: SocketAddr) -> io::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // tokio's `bind`: SO_REUSEADDR, backlog 1024.
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let acceptor = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(async move {
                            let _ = http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(s), service_fn(hyper_hello))
                                .await;
                        });
                    }
                    Err(e) => {
                        eprintln!("hyper: accept: {e}");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                }
            }
        });
        acceptor
            .await
            .map_err(|_| io::Error::other("hyper: accept loop panicked"))
    })
}

// ---------------------------------------------------------------------------------------------
// Client side: one `GET /` and its response.

/// Reads one response from `s` (head up to `"\r\n\r\n"`, then `Content-Length` bytes of body)
/// and checks it is a `200` with body `Hello World!`. Returns the head and the response's size
/// in bytes. Bounded: at most 1 KiB is read, and `s` should have a read timeout.
fn read_response(s: &mut TcpStream) -> io::Result<(String, usize)> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut buf = [0u8; 1024];
    let mut len = 0;
    let mut head: Option<(String, usize)> = None; // (head, total response length)
    loop {
        if let Some((h, total)) = &head {
            if len >= *total {
                if len > *total {
                    return Err(bad(format!("{} bytes after the response", len - total)));
                }
                let body = &buf[total - BODY.len()..*total];
                if body != BODY.as_bytes() {
                    return Err(bad(format!(
                        "body {:?}, not {BODY:?}",
                        String::from_utf8_lossy(body)
                    )));
                }
                return Ok((h.clone(), *total));
            }
        }
        if len == buf.len() {
            return Err(bad("response longer than 1 KiB".into()));
        }
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Err(bad(format!("connection closed after {len} bytes")));
        }
        len += n;
        if head.is_some() {
            continue;
        }
        let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let h = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !h.starts_with("HTTP/1.1 200") {
            return Err(bad(format!("not a 200: {h:?}")));
        }
        let clen: usize = h
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| bad(format!("no Content-Length: {h:?}")))?;
        if clen != BODY.len() {
            return Err(bad(format!("Content-Length {clen}, not {}", BODY.len())));
        }
        head = Some((h, end + 4 + clen));
    }
}

/// Connects to `addr`, sends `GET /` and reads the response; returns the open connection, the
/// response head and its size.
fn get_once(addr: SocketAddr) -> io::Result<(TcpStream, String, usize)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(REQUEST)?;
    let (head, size) = read_response(&mut s)?;
    Ok((s, head, size))
}

// ---------------------------------------------------------------------------------------------
// Idle client (`--idle-client PORT N`): N keep-alive connections, one request each, then idle
// until stdin closes (or a minute passes). Prints `ready HELD [first error]` once all are open.

fn idle_client(port: u16, n: usize) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conns = Vec::with_capacity(n);
    let mut error = String::new();
    while conns.len() < n && Instant::now() < deadline {
        match get_once(addr) {
            Ok((s, _, _)) => conns.push(s),
            Err(e) => {
                error = format!(" after {} connections: {e}", conns.len());
                break;
            }
        }
    }
    let mut out = io::stdout();
    writeln!(out, "ready {}{error}", conns.len())?;
    out.flush()?;
    // Hold the connections until the orchestrator closes our stdin, bounded in time.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = io::stdin().read_to_end(&mut Vec::new());
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    drop(conns);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Orchestrator helpers.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`, a valid rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    r.rlim_cur = r.rlim_max;
    // SAFETY: setrlimit reads `r`, a valid rlimit that outlives the call.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_cur
}

/// Clock ticks per second, the unit of utime/stime in /proc.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat
        .rfind(')')
        .ok_or_else(|| io::Error::other("bad stat"))?
        + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> io::Result<u64> {
        f.get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("bad stat field"))
    };
    // utime is field 14, stime field 15 (1-based); `rest` starts at field 3.
    Ok(num(14 - 3)? + num(15 - 3)?)
}

/// Machine-wide busy and steal time from /proc/stat, in clock ticks.
fn machine_ticks() -> io::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let f: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| io::Error::other("bad /proc/stat"))?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Ok((at(0) + at(1) + at(2) + at(5) + at(6), at(7)))
}

/// CPU ticks (user + system) of reaped children of this process.
fn children_ticks() -> u64 {
    // SAFETY: an all-zero rusage is a valid value (plain integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into `ru`, a valid rusage that outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    ((us(ru.ru_utime) + us(ru.ru_stime)) / 1e6 * clk_tck()) as u64
}

/// A `key: value kB` line of /proc/PID/status, as a number.
fn status_field(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {key} in /proc/{pid}/status")))
}

/// Voluntary and involuntary context switches summed over the live threads of a process.
fn ctx_switches(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for t in dir.flatten() {
        let Ok(st) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        for l in st.lines() {
            let num = |v: &str| v.trim().parse::<u64>().unwrap_or(0);
            if let Some(v) = l.strip_prefix("voluntary_ctxt_switches:") {
                total.0 += num(v);
            } else if let Some(v) = l.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.1 += num(v);
            }
        }
    }
    total
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits for a child with a bound; kills it (by its PID) when the bound passes.
fn wait_bounded(child: &mut Child, limit: Duration) -> io::Result<bool> {
    let end = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(true);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Server {
    peer: &'static str,
    port: u16,
    child: Child,
}

impl Server {
    fn start(peer: &'static str) -> io::Result<Server> {
        let port = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["--server", peer, &port.to_string()])
            .env("GROVE_WORKERS", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut server = Server { peer, port, child };
        let addr = server.addr();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = server.child.try_wait()? {
                return Err(io::Error::other(format!("{peer} server exited: {st}")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= end {
                return Err(io::Error::other(format!("{peer} server does not accept")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the server has exited (crashed).
    fn check_alive(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(st) => Err(io::Error::other(format!(
                "{} server (pid {}) died: {st}",
                self.peer,
                self.pid()
            ))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (by its PID) and reaped when dropped, on every path.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Debug, Default)]
struct WrkRun {
    req_per_sec: f64,
    requests: u64,
    cpu_us_per_req: f64,
    latency: String,
    errors: String,
    /// Cores' worth of CPU used during the run by everything but the server and wrk.
    others_cores: f64,
    /// Server context switches per request, voluntary and involuntary (live threads only).
    ctx_per_req: (f64, f64),
    /// Cores' worth of steal time (the hypervisor running someone else) during the run.
    steal_cores: f64,
}

fn run_wrk(server: &mut Server, conns: usize, secs: u64) -> io::Result<WrkRun> {
    server.check_alive()?;
    let pid = server.pid();
    let t0 = cpu_ticks(pid)?;
    let cs0 = ctx_switches(pid);
    let (busy0, steal0) = machine_ticks()?;
    let kids0 = children_ticks();
    let wall = Instant::now();
    let mut wrk = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            &format!("http://127.0.0.1:{}/", server.port),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run wrk ({e}); apt-get install -y wrk")))?;
    let mut out = String::new();
    let mut stdout = wrk.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let finished = wait_bounded(&mut wrk, Duration::from_secs(secs + 30))?;
    let out = reader.join().unwrap_or_default();
    let t1 = cpu_ticks(pid)?;
    let cs1 = ctx_switches(pid);
    let (busy1, steal1) = machine_ticks()?;
    let wrk_ticks = children_ticks().saturating_sub(kids0);
    let wall = wall.elapsed().as_secs_f64() * clk_tck();
    server.check_alive()?;
    if !finished {
        return Err(io::Error::other(format!(
            "wrk against {} did not finish in {}s (killed): server hung?\n{out}",
            server.peer,
            secs + 30
        )));
    }
    let mut run = WrkRun::default();
    for line in out.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            run.req_per_sec = v.trim().parse().unwrap_or(0.0);
        } else if l.contains(" requests in ") {
            run.requests = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if l.starts_with("Latency") {
            run.latency = l.split_whitespace().nth(1).unwrap_or("").to_string();
        } else if l.starts_with("Socket errors") || l.starts_with("Non-2xx") {
            if !run.errors.is_empty() {
                run.errors.push_str("; ");
            }
            run.errors.push_str(l);
        }
    }
    if run.requests == 0 {
        return Err(io::Error::other(format!(
            "wrk against {} completed no request:\n{out}",
            server.peer
        )));
    }
    run.cpu_us_per_req = (t1 - t0) as f64 / clk_tck() * 1e6 / run.requests as f64;
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / run.requests as f64;
    run.ctx_per_req = (per(cs1.0, cs0.0), per(cs1.1, cs0.1));
    run.others_cores = (busy1 - busy0) as f64 - (t1 - t0) as f64 - wrk_ticks as f64;
    run.others_cores = (run.others_cores / wall).max(0.0);
    run.steal_cores = (steal1 - steal0) as f64 / wall;
    Ok(run)
}

struct IdleResult {
    rss_before_kib: u64,
    rss_with_kib: u64,
    rss_after_close_kib: u64,
    held: usize,
    threads_with: u64,
    note: String,
}

fn idle_rss(peer: &'static str, n: usize) -> io::Result<IdleResult> {
    let server = Server::start(peer)?;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kib = status_field(pid, "VmRSS")?;
    let mut client = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .args(["--idle-client", &server.port.to_string(), &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let client = &mut client.0;
    let stdin: ChildStdin = client.stdin.take().expect("piped");
    let mut line = String::new();
    BufReader::new(client.stdout.take().expect("piped")).read_line(&mut line)?;
    let line = line.trim().to_string();
    let held: usize = line
        .strip_prefix("ready ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let note = line
        .split_once(" after ")
        .map(|(_, e)| format!("client stopped after {e}"))
        .unwrap_or_default();
    std::thread::sleep(Duration::from_millis(500));
    let rss_with_kib = status_field(pid, "VmRSS")?;
    let threads_with = status_field(pid, "Threads")?;
    drop(stdin);
    wait_bounded(client, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(1000));
    let rss_after_close_kib = status_field(pid, "VmRSS")?;
    let mut server = server;
    server.check_alive()?;
    Ok(IdleResult {
        rss_before_kib,
        rss_with_kib,
        rss_after_close_kib,
        held,
        threads_with,
        note,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Opts {
    peers: Vec<&'static str>,
    idle: usize,
    secs: u64,
    rounds: usize,
}

fn parse_opts(args: &[String]) -> io::Result<Opts> {
    let mut o = Opts {
        peers: PEERS.to_vec(),
        idle: 5_000,
        secs: 5,
        rounds: 3,
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peers" => {
                let list = it.next().ok_or_else(|| bad("--peers needs a list"))?;
                o.peers = list
                    .split(',')
                    .map(|p| {
                        PEERS
                            .iter()
                            .copied()
                            .find(|q| *q == p)
                            .ok_or_else(|| bad(&format!("unknown peer {p}; one of {PEERS:?}")))
                    })
                    .collect::<io::Result<_>>()?;
            }
            "--idle" => {
                o.idle = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("--idle needs a count"))?
            }
            "--duration" => {
                o.secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("--duration needs seconds"))?
            }
            "--rounds" => {
                o.rounds = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|r| *r > 0)
                    .ok_or_else(|| bad("--rounds needs a count"))?
            }
            // cargo bench passes --bench (and maybe a filter): ignored.
            _ => {}
        }
    }
    Ok(o)
}

fn orchestrate(o: &Opts) -> io::Result<()> {
    let nofile = raise_nofile();
    println!(
        "http_hello: wrk -t1 -c{CONNS} -d{}s, {} rounds, peers {:?}, idle {}; RLIMIT_NOFILE \
         {nofile}; load average at start {}",
        o.secs,
        o.rounds,
        o.peers,
        o.idle,
        loadavg()
    );

    // Throughput: all servers up at once, runs interleaved across peers.
    let mut servers: Vec<Server> = o
        .peers
        .iter()
        .map(|p| Server::start(p))
        .collect::<io::Result<_>>()?;
    for s in &mut servers {
        let (_, head, size) = get_once(s.addr())
            .map_err(|e| io::Error::other(format!("{}: GET / failed: {e}", s.peer)))?;
        println!(
            "  {:<12} response {size} bytes: {}",
            s.peer,
            head.replace("\r\n", " | ")
        );
    }
    for s in &mut servers {
        run_wrk(s, CONNS, 1)?; // warm-up, not counted
    }
    let idle_ticks_before: Vec<u64> = servers
        .iter()
        .map(|s| cpu_ticks(s.pid()))
        .collect::<io::Result<_>>()?;
    let mut loaded_ticks = vec![0.0f64; servers.len()];
    // results[peer] = runs
    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); servers.len()];
    for round in 0..o.rounds {
        for (pi, s) in servers.iter_mut().enumerate() {
            let r = run_wrk(s, CONNS, o.secs)?;
            println!(
                "  round {} {:<12} {:>9.0} req/s  {:>8} requests  {:>6.2} us CPU/req  latency avg \
                 {:<8} ctxsw/req {:.3}+{:.3}  others {:.2} cores, steal {:.2} {}",
                round + 1,
                s.peer,
                r.req_per_sec,
                r.requests,
                r.cpu_us_per_req,
                r.latency,
                r.ctx_per_req.0,
                r.ctx_per_req.1,
                r.others_cores,
                r.steal_cores,
                r.errors
            );
            loaded_ticks[pi] += r.cpu_us_per_req * r.requests as f64 / 1e6 * clk_tck();
            results[pi].push(r);
        }
    }
    for (pi, s) in servers.iter().enumerate() {
        let total = cpu_ticks(s.pid())? - idle_ticks_before[pi];
        let idle_ms = (total as f64 - loaded_ticks[pi]) / clk_tck() * 1e3;
        println!(
            "  {:<12} CPU while other peers were loaded: {idle_ms:.0} ms",
            s.peer
        );
    }
    let load_mid = loadavg();
    drop(servers);

    // Idle keep-alive memory: a fresh server per peer.
    let mut idle: Vec<IdleResult> = Vec::new();
    for p in &o.peers {
        let r = idle_rss(p, o.idle)?;
        println!(
            "  idle {:<12} RSS {} -> {} KiB with {} conns ({} threads), {} KiB after they closed \
             {}",
            p,
            r.rss_before_kib,
            r.rss_with_kib,
            r.held,
            r.threads_with,
            r.rss_after_close_kib,
            r.note
        );
        idle.push(r);
    }

    let base = o.peers.iter().position(|p| *p == BASELINE);
    let med =
        |pi: usize, f: fn(&WrkRun) -> f64| median(&results[pi].iter().map(f).collect::<Vec<_>>());
    let ratio = |pi: usize| base.map(|b| med(pi, |r| r.req_per_sec) / med(b, |r| r.req_per_sec));
    println!();
    println!(
        "| peer | req/s c{CONNS} (median of {r}) | min-max | vs {BASELINE} | CPU µs/req | RSS per \
         idle conn |",
        r = o.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (pi, p) in o.peers.iter().enumerate() {
        let rps = med(pi, |r| r.req_per_sec);
        let (lo, hi) = results[pi]
            .iter()
            .map(|r| r.req_per_sec)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let vs = ratio(pi).map_or_else(|| "-".into(), |x| format!("{x:.2}"));
        let cpu = med(pi, |r| r.cpu_us_per_req);
        let r = &idle[pi];
        let per = (r.rss_with_kib as f64 - r.rss_before_kib as f64) * 1024.0 / r.held.max(1) as f64;
        println!(
            "| {p} | {rps:.0} | {lo:.0}-{hi:.0} | {vs} | {cpu:.2} | {per:.0} B ({} conns) |",
            r.held
        );
    }
    if let Some(g) = o.peers.iter().position(|p| *p == "grove") {
        if let Some(x) = ratio(g) {
            println!();
            println!(
                "grove / {BASELINE} = {x:.2} (target >= {TARGET:.2}: {})",
                if x >= TARGET { "met" } else { "not met" }
            );
        }
    }
    let mut others: Vec<f64> = results.iter().flatten().map(|r| r.others_cores).collect();
    others.sort_by(f64::total_cmp);
    let steal = results
        .iter()
        .flatten()
        .map(|r| r.steal_cores)
        .fold(0.0f64, f64::max);
    println!();
    println!(
        "other processes during the measured runs: median {:.2} cores, max {:.2} (of {} CPUs); \
         max steal {steal:.2} cores",
        median(&others),
        others.last().copied().unwrap_or(0.0),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "load average: start-of-run figure above; after throughput {load_mid}; at end {}",
        loadavg()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--server") => {
            raise_nofile();
            match (args.get(1), args.get(2).and_then(|p| p.parse().ok())) {
                (Some(peer), Some(port)) => serve(peer, port),
                _ => Err(io::Error::other("usage: --server PEER PORT")),
            }
        }
        Some("--idle-client") => {
            raise_nofile();
            match (
                args.get(1).and_then(|p| p.parse().ok()),
                args.get(2).and_then(|n| n.parse().ok()),
            ) {
                (Some(port), Some(n)) => idle_client(port, n),
                _ => Err(io::Error::other("usage: --idle-client PORT N")),
            }
        }
        _ => parse_opts(&args).and_then(|o| orchestrate(&o)),
    };
    if let Err(e) = result {
        eprintln!("http_hello: {e}");
        std::process::exit(1);
    }
}
