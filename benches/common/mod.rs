//! What the hello-world benches (`net_hello`, `http_hello`) share: the binary's three modes
//! (`--server PEER PORT`, `--idle-client PORT N`, the orchestrator) and their options; servers
//! started as child processes and killed by PID; `wrk` runs, their parsing and the interleaved
//! throughput rounds; the /proc and `getrusage` readers behind CPU per request, context switches,
//! other processes' load and steal time; the idle-connection client and the RSS measurement; and
//! the summary lines both print. Each bench keeps its peers' servers and its tables.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Pause after a failed `accept` (EMFILE and the like) in the accept loops the benches write.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The request the idle client (and `http_hello`'s startup check) sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// What sets one bench binary apart: its name, its peers and how it serves and checks them.
pub struct Bench {
    /// The binary's name, prefixed to a fatal error.
    pub name: &'static str,
    /// All the peers, in table order (`--peers` picks among them).
    pub peers: &'static [&'static str],
    /// Idle connections per peer unless `--idle` says otherwise.
    pub default_idle: usize,
    /// Runs PEER's server on ADDR until killed (`--server PEER PORT`).
    pub serve: fn(&str, SocketAddr) -> io::Result<()>,
    /// Opens one idle-client connection: one request sent, its response read and checked.
    pub open_idle_conn: fn(SocketAddr) -> io::Result<TcpStream>,
    /// The orchestrator (the default mode).
    pub orchestrate: fn(&Opts) -> io::Result<()>,
}

impl Bench {
    /// Runs the mode the command line asks for; on error prints it and exits with status 1.
    pub fn main(&self) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = self.run(&args) {
            eprintln!("{}: {e}", self.name);
            std::process::exit(1);
        }
    }

    fn run(&self, args: &[String]) -> io::Result<()> {
        match args.first().map(String::as_str) {
            Some("--server") => {
                raise_nofile();
                match (args.get(1), args.get(2).and_then(|p| p.parse().ok())) {
                    (Some(peer), Some(port)) => (self.serve)(peer, localhost(port)),
                    _ => Err(io::Error::other("usage: --server PEER PORT")),
                }
            }
            Some("--idle-client") => {
                raise_nofile();
                match (
                    args.get(1).and_then(|p| p.parse().ok()),
                    args.get(2).and_then(|n| n.parse().ok()),
                ) {
                    (Some(port), Some(n)) => idle_client(localhost(port), n, self.open_idle_conn),
                    _ => Err(io::Error::other("usage: --idle-client PORT N")),
                }
            }
            _ => Opts::parse(args, self.peers, self.default_idle)
                .and_then(|o| (self.orchestrate)(&o)),
        }
    }
}

/// The error for a peer name that is not one of `peers`.
pub fn unknown_peer(peer: &str, peers: &[&str]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("unknown peer {peer:?}; one of {peers:?}"),
    )
}

/// Width of the peer column in the per-run lines: the longest peer name.
pub fn peer_width(peers: &[&str]) -> usize {
    peers.iter().map(|p| p.len()).max().unwrap_or(0)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

// ---------------------------------------------------------------------------------------------
// Options.

pub struct Opts {
    pub peers: Vec<&'static str>,
    pub idle: usize,
    pub secs: u64,
    pub rounds: usize,
}

impl Opts {
    /// Parses `--peers a,b`, `--idle N`, `--duration SECS`, `--rounds R`; ignores anything else.
    fn parse(args: &[String], peers: &[&'static str], default_idle: usize) -> io::Result<Opts> {
        let mut o = Opts {
            peers: peers.to_vec(),
            idle: default_idle,
            secs: 5,
            rounds: 3,
        };
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--peers" => {
                    let list = it.next().ok_or_else(|| bad("--peers needs a list"))?;
                    o.peers =
                        list.split(',')
                            .map(|p| {
                                peers.iter().copied().find(|q| *q == p).ok_or_else(|| {
                                    bad(&format!("unknown peer {p}; one of {peers:?}"))
                                })
                            })
                            .collect::<io::Result<_>>()?;
                }
                "--idle" => {
                    o.idle = number(it.next()).ok_or_else(|| bad("--idle needs a count"))?
                }
                "--duration" => {
                    o.secs = number(it.next())
                        .filter(|s| *s > 0)
                        .ok_or_else(|| bad("--duration needs seconds"))?
                }
                "--rounds" => {
                    o.rounds = number(it.next())
                        .filter(|r| *r > 0)
                        .ok_or_else(|| bad("--rounds needs a count"))?
                }
                // cargo bench passes --bench (and maybe a filter): ignored.
                _ => {}
            }
        }
        Ok(o)
    }
}

/// An option's value, parsed.
fn number<T: std::str::FromStr>(arg: Option<&String>) -> Option<T> {
    arg.and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Idle client (`--idle-client PORT N`): N keep-alive connections, one request each, then idle
// until stdin closes (or a minute passes). Prints `ready HELD [first error]` once all are open.

fn idle_client(
    addr: SocketAddr,
    n: usize,
    open: fn(SocketAddr) -> io::Result<TcpStream>,
) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conns = Vec::with_capacity(n);
    let mut error = String::new();
    while conns.len() < n && Instant::now() < deadline {
        match open(addr) {
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

/// Connects to `addr` (5 s timeout), sets a 5 s read timeout and sends `REQUEST`.
pub fn send_request(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(REQUEST)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Process and machine accounting (/proc, getrlimit, getrusage).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
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

/// The 1, 5 and 15 minute load averages, as /proc/loadavg gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Child processes: the servers and the idle client.

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

/// A peer's server, a child process of this binary (`--server PEER PORT`), killed when dropped.
pub struct Server {
    pub peer: &'static str,
    port: u16,
    child: Child,
}

impl Server {
    /// Starts PEER's server on a free port and waits (up to 10 s) until it accepts.
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

    pub fn addr(&self) -> SocketAddr {
        localhost(self.port)
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

// ---------------------------------------------------------------------------------------------
// Throughput: wrk runs.

#[derive(Clone, Debug, Default)]
pub struct WrkRun {
    pub req_per_sec: f64,
    pub requests: u64,
    pub cpu_us_per_req: f64,
    latency: String,
    errors: String,
    /// Cores' worth of CPU used during the run by everything but the server and wrk.
    others_cores: f64,
    /// Server context switches per request, voluntary and involuntary (live threads only).
    ctx_per_req: (f64, f64),
    /// Cores' worth of steal time (the hypervisor running someone else) during the run.
    pub steal_cores: f64,
    /// wrk's own CPU: cores' worth over the run, and µs per request. wrk is one thread, so at
    /// ~1.00 core it is the limit, whatever the server; its µs per request also tells how fast
    /// the host runs the kernel's loopback path at the time (it rises for every peer alike
    /// when the host slows).
    pub wrk_cores: f64,
    pub wrk_us_per_req: f64,
}

impl WrkRun {
    /// The end of a run's line: server CPU, wrk's CPU, latency, context switches, others' load,
    /// errors.
    pub fn costs(&self) -> String {
        format!(
            "{:>6.2} us CPU/req  wrk {:.2} cores {:.2} us/req  latency avg {:<8} ctxsw/req \
             {:.3}+{:.3}  others {:.2} cores, steal {:.2} {}",
            self.cpu_us_per_req,
            self.wrk_cores,
            self.wrk_us_per_req,
            self.latency,
            self.ctx_per_req.0,
            self.ctx_per_req.1,
            self.others_cores,
            self.steal_cores,
            self.errors
        )
    }

    /// The server's CPU time over the run, in clock ticks.
    fn server_ticks(&self) -> f64 {
        self.cpu_us_per_req * self.requests as f64 / 1e6 * clk_tck()
    }

    /// Fills the fields wrk prints: `Requests/sec:`, `N requests in`, latency, errors.
    fn parse_wrk_output(&mut self, out: &str) {
        for line in out.lines() {
            let l = line.trim();
            if let Some(v) = l.strip_prefix("Requests/sec:") {
                self.req_per_sec = v.trim().parse().unwrap_or(0.0);
            } else if l.contains(" requests in ") {
                self.requests = l
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else if l.starts_with("Latency") {
                self.latency = l.split_whitespace().nth(1).unwrap_or("").to_string();
            } else if l.starts_with("Socket errors") || l.starts_with("Non-2xx") {
                if !self.errors.is_empty() {
                    self.errors.push_str("; ");
                }
                self.errors.push_str(l);
            }
        }
    }
}

/// The median of `runs` by `f` (the upper one for an even count).
pub fn median_of(runs: &[WrkRun], f: fn(&WrkRun) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
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

/// Starts `wrk -t1 -cCONNS -dSECS` against `port`, its stdout piped.
fn spawn_wrk(port: u16, conns: usize, secs: u64) -> io::Result<Child> {
    Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            &format!("http://127.0.0.1:{port}/"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot run wrk ({e}); apt-get install -y wrk")))
}

/// Runs wrk against `server` with the server's CPU and context switches, the machine's busy and
/// steal time and wrk's own CPU read around it.
fn run_wrk(server: &mut Server, conns: usize, secs: u64) -> io::Result<WrkRun> {
    server.check_alive()?;
    let pid = server.pid();
    let t0 = cpu_ticks(pid)?;
    let cs0 = ctx_switches(pid);
    let (busy0, steal0) = machine_ticks()?;
    let kids0 = children_ticks();
    let wall = Instant::now();
    let mut wrk = spawn_wrk(server.port, conns, secs)?;
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
    run.parse_wrk_output(&out);
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
    run.wrk_cores = wrk_ticks as f64 / wall;
    run.wrk_us_per_req = wrk_ticks as f64 / clk_tck() * 1e6 / run.requests as f64;
    Ok(run)
}

/// The throughput phase: every peer's server up at once, wrk runs interleaved across peers
/// (so a change in the machine's load hits all of them alike), and each server's CPU time
/// outside its own measured runs.
pub struct Throughput {
    pub servers: Vec<Server>,
    /// Each server's CPU ticks when the counting started (after the warm-up).
    ticks_at_start: Vec<u64>,
    /// Each server's CPU ticks within its own measured runs.
    ticks_in_runs: Vec<f64>,
}

impl Throughput {
    /// Starts a server per peer.
    pub fn start(peers: &[&'static str]) -> io::Result<Throughput> {
        let servers: Vec<Server> = peers
            .iter()
            .map(|p| Server::start(p))
            .collect::<io::Result<_>>()?;
        Ok(Throughput {
            ticks_in_runs: vec![0.0; servers.len()],
            ticks_at_start: Vec::new(),
            servers,
        })
    }

    /// Runs wrk for one second against each server, not counted; the CPU accounting starts
    /// after it.
    pub fn warm_up(&mut self, conns: usize) -> io::Result<()> {
        for s in &mut self.servers {
            run_wrk(s, conns, 1)?;
        }
        self.ticks_at_start = self
            .servers
            .iter()
            .map(|s| cpu_ticks(s.pid()))
            .collect::<io::Result<_>>()?;
        Ok(())
    }

    /// Runs `o.rounds` rounds of `wrk -cCONNS -d{o.secs}s`, each against every server in turn;
    /// `report(round, server, run)` prints each run (rounds from 0). Returns the runs per server.
    pub fn rounds(
        &mut self,
        conns: usize,
        o: &Opts,
        report: impl Fn(usize, &Server, &WrkRun),
    ) -> io::Result<Vec<Vec<WrkRun>>> {
        let mut runs = vec![Vec::new(); self.servers.len()];
        for round in 0..o.rounds {
            for (pi, s) in self.servers.iter_mut().enumerate() {
                let r = run_wrk(s, conns, o.secs)?;
                report(round, s, &r);
                self.ticks_in_runs[pi] += r.server_ticks();
                runs[pi].push(r);
            }
        }
        Ok(runs)
    }

    /// Prints each server's CPU time since the warm-up outside its own measured runs.
    pub fn print_cpu_outside_runs(&self, width: usize) -> io::Result<()> {
        for (pi, s) in self.servers.iter().enumerate() {
            let total = cpu_ticks(s.pid())? - self.ticks_at_start[pi];
            let idle_ms = (total as f64 - self.ticks_in_runs[pi]) / clk_tck() * 1e3;
            println!(
                "  {:<width$} CPU while other peers were loaded: {idle_ms:.0} ms",
                s.peer
            );
        }
        Ok(())
    }
}

/// The line on the load from other processes during `runs`.
pub fn others_summary<'a>(runs: impl Iterator<Item = &'a WrkRun>) -> String {
    let mut others: Vec<f64> = runs.map(|r| r.others_cores).collect();
    others.sort_by(f64::total_cmp);
    format!(
        "other processes during the measured runs: median {:.2} cores, max {:.2} (of {} CPUs)",
        median(&others),
        others.last().copied().unwrap_or(0.0),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// Prints the load averages after the throughput phase (`load_mid`) and now.
pub fn print_load_summary(load_mid: &str) {
    println!(
        "load average: start-of-run figure above; after throughput {load_mid}; at end {}",
        loadavg()
    );
}

// ---------------------------------------------------------------------------------------------
// Idle memory: RSS per idle keep-alive connection.

pub struct IdleResult {
    rss_before_kib: u64,
    rss_with_kib: u64,
    rss_after_close_kib: u64,
    held: usize,
    threads_with: u64,
    note: String,
}

impl IdleResult {
    /// The table cell: RSS growth per connection held, and how many were held.
    pub fn per_conn_cell(&self) -> String {
        let per = (self.rss_with_kib as f64 - self.rss_before_kib as f64) * 1024.0
            / self.held.max(1) as f64;
        format!("{per:.0} B ({} conns)", self.held)
    }
}

/// For each peer, a fresh server and `n` idle connections to it; prints each peer's line.
pub fn measure_idle_rss(
    peers: &[&'static str],
    n: usize,
    width: usize,
) -> io::Result<Vec<IdleResult>> {
    let mut idle = Vec::new();
    for p in peers {
        let r = idle_rss(p, n)?;
        println!(
            "  idle {:<width$} RSS {} -> {} KiB with {} conns ({} threads), {} KiB after they \
             closed {}",
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
    Ok(idle)
}

/// Starts this binary as `--idle-client PORT N`, its stdin and stdout piped.
fn spawn_idle_client(port: u16, n: usize) -> io::Result<KillOnDrop> {
    Ok(KillOnDrop(
        Command::new(std::env::current_exe()?)
            .args(["--idle-client", &port.to_string(), &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    ))
}

/// The idle client's `ready HELD [after ...: error]` line: the count held and a note.
fn parse_ready(line: &str) -> (usize, String) {
    let held = line
        .strip_prefix("ready ")
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let note = line
        .split_once(" after ")
        .map(|(_, e)| format!("client stopped after {e}"))
        .unwrap_or_default();
    (held, note)
}

fn idle_rss(peer: &'static str, n: usize) -> io::Result<IdleResult> {
    let mut server = Server::start(peer)?;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kib = status_field(pid, "VmRSS")?;
    let mut client = spawn_idle_client(server.port, n)?;
    let client = &mut client.0;
    let stdin: ChildStdin = client.stdin.take().expect("piped");
    let mut line = String::new();
    BufReader::new(client.stdout.take().expect("piped")).read_line(&mut line)?;
    let (held, note) = parse_ready(line.trim());
    std::thread::sleep(Duration::from_millis(500));
    let rss_with_kib = status_field(pid, "VmRSS")?;
    let threads_with = status_field(pid, "Threads")?;
    drop(stdin);
    wait_bounded(client, Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_millis(1000));
    let rss_after_close_kib = status_field(pid, "VmRSS")?;
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
