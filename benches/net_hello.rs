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

mod common;

use common::{
    loadavg, measure_idle_rss, median_of, others_summary, peer_width, print_load_summary,
    raise_nofile, send_request, unknown_peer, Bench, IdleResult, Opts, Throughput, WrkRun,
    ACCEPT_RETRY,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// The fixed response, written with one `write` per request.
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nHello World!";

/// Per-connection read buffer. A request that does not fit closes the connection.
const BUF: usize = 4096;

/// The four peers, in table order.
const PEERS: [&str; 4] = ["grove", "may", "tokio", "std_threads"];

/// Listen backlog for every peer (grove's and may's default; set explicitly for tokio and std).
const BACKLOG: i32 = 1024;

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

fn serve(peer: &str, addr: SocketAddr) -> io::Result<()> {
    match peer {
        "grove" => serve_grove(addr),
        "may" => serve_may(addr),
        "tokio" => serve_tokio(addr),
        "std_threads" => serve_std(addr),
        _ => Err(unknown_peer(peer, &PEERS)),
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
// Idle client connection and orchestrator.

/// One idle-client connection: one request, and its response read back and compared.
fn open_idle_conn(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut s = send_request(addr)?;
    let mut got = [0u8; RESPONSE.len()];
    s.read_exact(&mut got)?;
    if got[..] != *RESPONSE {
        return Err(io::Error::other("unexpected response"));
    }
    Ok(s)
}

/// wrk's connection counts, in table order.
const CONCS: [usize; 2] = [256, 16];

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
    let w = peer_width(&PEERS);

    // Throughput: all servers up at once, runs interleaved across peers.
    let mut throughput = Throughput::start(&o.peers)?;
    throughput.warm_up(256)?;
    // results[conc][peer] = runs
    let mut results: Vec<Vec<Vec<WrkRun>>> = Vec::new();
    for c in CONCS {
        results.push(throughput.rounds(c, o, |round, s, r| {
            println!(
                "  c{c:<3} round {} {:<w$} {:>10.0} req/s  {:>9} requests  {}",
                round + 1,
                s.peer,
                r.req_per_sec,
                r.requests,
                r.costs()
            )
        })?);
    }
    throughput.print_cpu_outside_runs(w)?;
    let load_mid = loadavg();
    drop(throughput);

    // Idle keep-alive memory: a fresh server per peer.
    let idle = measure_idle_rss(&o.peers, o.idle, w)?;

    print_table(o, &results, &idle);
    println!();
    println!("{}", others_summary(results.iter().flatten().flatten()));
    print_load_summary(&load_mid);
    Ok(())
}

/// The results table: per peer and concurrency, the median req/s, its ratio to may's and the
/// median CPU per request; then the RSS per idle connection.
fn print_table(o: &Opts, results: &[Vec<Vec<WrkRun>>], idle: &[IdleResult]) {
    let may_idx = o.peers.iter().position(|p| *p == "may");
    let med = |ci: usize, pi: usize, f: fn(&WrkRun) -> f64| median_of(&results[ci][pi], f);
    println!();
    println!(
        "| peer | c256 req/s (median of {r}) | c256 vs may | c256 CPU µs/req | c16 req/s (median \
         of {r}) | c16 vs may | c16 CPU µs/req | RSS per idle conn |",
        r = o.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (pi, p) in o.peers.iter().enumerate() {
        let mut row = format!("| {p} |");
        for ci in 0..CONCS.len() {
            let rps = med(ci, pi, |r| r.req_per_sec);
            let ratio = may_idx
                .map(|m| format!("{:.2}", rps / med(ci, m, |r| r.req_per_sec)))
                .unwrap_or_else(|| "-".into());
            let cpu = med(ci, pi, |r| r.cpu_us_per_req);
            row.push_str(&format!(" {rps:.0} | {ratio} | {cpu:.2} |"));
        }
        row.push_str(&format!(" {} |", idle[pi].per_conn_cell()));
        println!("{row}");
    }
}

fn main() {
    Bench {
        name: "net_hello",
        peers: &PEERS,
        default_idle: 10_000,
        serve,
        open_idle_conn,
        orchestrate,
    }
    .main()
}
