//! Hello-world HTTP/1.1 over each runtime's own sockets: throughput, server CPU per request, and
//! server memory per idle keep-alive connection.
//!
//! Every peer runs the same program: a listener on 127.0.0.1 (backlog 1024), an accept loop that
//! starts one greenlet / coroutine / task / thread per connection, `TCP_NODELAY` on each
//! connection, and a connection loop that reads into a 4 KiB buffer until it holds a
//! `"\r\n\r\n"`, answers each complete request with one write of the fixed 77-byte
//! `HTTP/1.1 200 OK` / `Content-Length: 12` / `Hello World!` response, and keeps the connection
//! open (keep-alive) until the client closes it. No HTTP library is involved.
//!
//! * `grove`: `grove::net::TcpListener` and `grove::spawn` per connection, `GROVE_WORKERS=2`;
//! * `may`: `may::net::TcpListener` and `go!` per connection, `may::config().set_workers(2)`
//!   (may's defaults otherwise: 32 KiB stacks, workers pinned to cores);
//! * `tokio`: `tokio::net` on a multi-thread runtime with 2 workers, `tokio::spawn` per
//!   connection, `AsyncReadExt::read` / `AsyncWriteExt::write_all`;
//! * `std_threads`: `std::net` and one `std::thread::spawn` (default 2 MiB stack) per connection.
//!
//! Each accept loop itself runs as a greenlet / coroutine / task of its runtime (on the main
//! thread for `std_threads`).
//!
//! What the orchestrator (the default mode) does, all on 127.0.0.1, against servers it starts as
//! child processes of this same binary (`--server PEER PORT`) and kills by PID:
//!
//! 1. Throughput: starts the four servers on free ports, warms each with `wrk -d1s`, then for
//!    `-c256` and then `-c16`, three rounds each, runs `wrk -t1 -cC -d5s http://127.0.0.1:PORT/`
//!    (keep-alive, wrk's default) against each peer in turn (peers interleaved within a round, so
//!    a change in the machine's load hits all of them alike). It parses `Requests/sec:` and
//!    `N requests in`, and reads the server's utime+stime from `/proc/PID/stat` before and after
//!    the run: CPU µs per request = CPU time / requests completed. The table gives the median of
//!    the three runs, and the ratio of that median to may's. Each run's line also says how many
//!    cores' worth of CPU the rest of the machine used meanwhile (/proc/stat busy time minus the
//!    server's and wrk's) and the steal time: on a shared machine, read the figures with those.
//!    It also gives the server's context switches per request, voluntary + involuntary, summed
//!    over its live threads (so `std_threads`, whose connection threads have exited by then, is
//!    undercounted).
//! 2. Idle memory: for each peer, a fresh server; VmRSS from `/proc/PID/status` once it is idle;
//!    then a client process (this binary, `--idle-client PORT N`) opens N = 10,000 connections,
//!    sends one request on each, reads its response, and holds them all open, idle; VmRSS again;
//!    the figure is (RSS with connections - RSS before) / N. The file-descriptor limit is raised
//!    to its hard limit (`setrlimit`) in every process; if the client cannot open N connections
//!    it says how many it held, and that count is the divisor.
//!
//! Run: `cargo bench --bench net_hello` (about three minutes; needs `wrk` on the PATH, e.g.
//! `apt-get install -y wrk`, and a hard `ulimit -n` above 10,000 for the full idle test).
//! Options after `--`: `--peers grove,may`, `--idle N`, `--duration SECS`, `--rounds R`.
//! A server alone: `GROVE_WORKERS=2 target/release/deps/net_hello-* --server grove 8080`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The fixed response, written with one `write` per request.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nHello World!";

/// Per-connection read buffer. A request that does not fit closes the connection.
const BUF: usize = 4096;

/// The four peers, in table order.
const PEERS: [&str; 4] = ["grove", "may", "tokio", "std_threads"];

/// Listen backlog for every peer (grove's and may's default; set explicitly for tokio and std).
const BACKLOG: i32 = 1024;

/// Pause after a failed `accept` (EMFILE and the like), the same for every peer.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Request framing, shared by every peer.

/// Counts the complete requests (each ended by `"\r\n\r\n"`) at the start of `buf`; returns the
/// count and the bytes they take.
fn frame(buf: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut used = 0;
    while let Some(i) = buf[used..].windows(4).position(|w| w == b"\r\n\r\n") {
        count += 1;
        used += i + 4;
    }
    (count, used)
}

/// The connection loop for the blocking-style peers (grove, may, std threads).
fn conn_sync<S: Read + Write>(mut s: S) {
    let mut buf = [0u8; BUF];
    let mut len = 0;
    loop {
        match s.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let (count, used) = frame(&buf[..len]);
        for _ in 0..count {
            if s.write_all(RESPONSE).is_err() {
                return;
            }
        }
        buf.copy_within(used..len, 0);
        len -= used;
        if len == BUF {
            return;
        }
    }
}

/// The same loop for tokio.
async fn conn_tokio(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; BUF];
    let mut len = 0;
    loop {
        match s.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let (count, used) = frame(&buf[..len]);
        for _ in 0..count {
            if s.write_all(RESPONSE).await.is_err() {
                return;
            }
        }
        buf.copy_within(used..len, 0);
        len -= used;
        if len == BUF {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers (`--server PEER PORT`).

fn serve(peer: &str, port: u16) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match peer {
        "grove" => serve_grove(addr),
        "may" => serve_may(addr),
        "tokio" => serve_tokio(addr),
        "std_threads" => serve_std(addr),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown peer {peer:?}; one of {PEERS:?}"),
        )),
    }
}

fn serve_grove(addr: SocketAddr) -> io::Result<()> {
    let listener = grove::net::TcpListener::bind(addr)?;
    eprintln!("grove: {} workers", grove::workers());
    grove::spawn(move || loop {
        match listener.accept() {
            Ok((s, _)) => {
                grove::spawn(move || {
                    let _ = s.set_nodelay(true);
                    conn_sync(s);
                });
            }
            Err(e) => {
                eprintln!("grove: accept: {e}");
                grove::sleep(ACCEPT_RETRY);
            }
        }
    })
    .join()
    .map_err(|_| io::Error::other("grove: accept loop panicked"))
}

fn serve_may(addr: SocketAddr) -> io::Result<()> {
    may::config().set_workers(2);
    let listener = may::net::TcpListener::bind(addr)?;
    let acceptor = may::go!(move || loop {
        match listener.accept() {
            Ok((s, _)) => {
                may::go!(move || {
                    let _ = s.set_nodelay(true);
                    conn_sync(s);
                });
            }
            Err(e) => {
                eprintln!("may: accept: {e}");
                may::coroutine::sleep(ACCEPT_RETRY);
            }
        }
    });
    acceptor
        .join()
        .map_err(|_| io::Error::other("may: accept loop panicked"))
}

fn serve_tokio(addr: SocketAddr) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(addr)?;
        let listener = sock.listen(BACKLOG as u32)?;
        let acceptor = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            let _ = s.set_nodelay(true);
                            conn_tokio(s).await;
                        });
                    }
                    Err(e) => {
                        eprintln!("tokio: accept: {e}");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                }
            }
        });
        acceptor
            .await
            .map_err(|_| io::Error::other("tokio: accept loop panicked"))
    })
}

fn serve_std(addr: SocketAddr) -> io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    let listener = std::net::TcpListener::from(sock);
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                std::thread::spawn(move || {
                    let _ = s.set_nodelay(true);
                    conn_sync(s);
                });
            }
            Err(e) => {
                eprintln!("std_threads: accept: {e}");
                std::thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle client (`--idle-client PORT N`): N keep-alive connections, one request each, then idle
// until stdin closes (or a minute passes). Prints `ready HELD [first error]` once all are open.

fn idle_client(port: u16, n: usize) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut conns = Vec::with_capacity(n);
    let mut error = String::new();
    let open_one = || -> io::Result<TcpStream> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(request)?;
        let mut got = [0u8; RESPONSE.len()];
        s.read_exact(&mut got)?;
        if got[..] != *RESPONSE {
            return Err(io::Error::other("unexpected response"));
        }
        Ok(s)
    };
    while conns.len() < n && Instant::now() < deadline {
        match open_one() {
            Ok(s) => conns.push(s),
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

/// Voluntary and involuntary context switches summed over the live threads of a process (threads
/// that have exited are not counted).
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
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
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
        idle: 10_000,
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
                            .ok_or_else(|| bad(&format!("unknown peer {p}")))
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
        "net_hello: wrk -t1 -c{{256,16}} -d{}s, {} rounds, peers {:?}; RLIMIT_NOFILE {nofile}; \
         load average at start {}",
        o.secs,
        o.rounds,
        o.peers,
        loadavg()
    );

    // Throughput: all servers up at once, runs interleaved across peers.
    let mut servers: Vec<Server> = o
        .peers
        .iter()
        .map(|p| Server::start(p))
        .collect::<io::Result<_>>()?;
    for s in &mut servers {
        run_wrk(s, 256, 1)?; // warm-up, not counted
    }
    let idle_ticks_before: Vec<u64> = servers
        .iter()
        .map(|s| cpu_ticks(s.pid()))
        .collect::<io::Result<_>>()?;
    let mut loaded_ticks = vec![0.0f64; servers.len()];
    let concs = [256usize, 16];
    // results[conc][peer] = runs
    let mut results: Vec<Vec<Vec<WrkRun>>> = vec![vec![Vec::new(); servers.len()]; concs.len()];
    for (ci, &c) in concs.iter().enumerate() {
        for round in 0..o.rounds {
            for (pi, s) in servers.iter_mut().enumerate() {
                let r = run_wrk(s, c, o.secs)?;
                println!(
                    "  c{c:<3} round {} {:<11} {:>10.0} req/s  {:>9} requests  {:>6.2} us CPU/req  \
                     latency avg {:<8} ctxsw/req {:.3}+{:.3}  others {:.2} cores, steal {:.2} {}",
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
                results[ci][pi].push(r);
            }
        }
    }
    for (pi, s) in servers.iter().enumerate() {
        let total = cpu_ticks(s.pid())? - idle_ticks_before[pi];
        let idle_ms = (total as f64 - loaded_ticks[pi]) / clk_tck() * 1e3;
        println!(
            "  {:<11} CPU while other peers were loaded: {idle_ms:.0} ms",
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
            "  idle {:<11} RSS {} -> {} KiB with {} conns ({} threads), {} KiB after they closed {}",
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

    let may_idx = o.peers.iter().position(|p| *p == "may");
    let med = |ci: usize, pi: usize, f: fn(&WrkRun) -> f64| {
        median(&results[ci][pi].iter().map(f).collect::<Vec<_>>())
    };
    println!();
    println!(
        "| peer | c256 req/s (median of {r}) | c256 vs may | c256 CPU µs/req | c16 req/s (median \
         of {r}) | c16 vs may | c16 CPU µs/req | RSS per idle conn |",
        r = o.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (pi, p) in o.peers.iter().enumerate() {
        let mut row = format!("| {p} |");
        for ci in 0..concs.len() {
            let rps = med(ci, pi, |r| r.req_per_sec);
            let ratio = may_idx
                .map(|m| format!("{:.2}", rps / med(ci, m, |r| r.req_per_sec)))
                .unwrap_or_else(|| "-".into());
            let cpu = med(ci, pi, |r| r.cpu_us_per_req);
            row.push_str(&format!(" {rps:.0} | {ratio} | {cpu:.2} |"));
        }
        let r = &idle[pi];
        let per = (r.rss_with_kib as f64 - r.rss_before_kib as f64) * 1024.0 / r.held.max(1) as f64;
        row.push_str(&format!(" {per:.0} B ({} conns) |", r.held));
        println!("{row}");
    }
    let mut others: Vec<f64> = results
        .iter()
        .flatten()
        .flatten()
        .map(|r| r.others_cores)
        .collect();
    others.sort_by(f64::total_cmp);
    println!();
    println!(
        "other processes during the measured runs: median {:.2} cores, max {:.2} (of {} CPUs)",
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
        eprintln!("net_hello: {e}");
        std::process::exit(1);
    }
}
