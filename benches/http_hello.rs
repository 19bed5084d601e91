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
//! * `grove`: `grove::net::http::Server::bind(addr, |_req| Response::static_text("Hello World!"))` and
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
//!    the ratio of the median to may_minihttp's. It also reads wrk's own CPU (`getrusage` of the
//!    reaped child): cores' worth over the run and µs per request. wrk is one thread, so at ~1.00
//!    core wrk, not the server, sets the pace; its µs per request rises for every peer at once
//!    when the host itself runs slower. Each run's line also says how many cores' worth of CPU
//!    the rest of the machine used meanwhile (/proc/stat busy time minus the server's and wrk's)
//!    and the steal time: on a shared machine, read the figures with those. It also gives the
//!    server's context switches per request, voluntary + involuntary, over its live threads.
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

mod common;

use common::{
    loadavg, measure_idle_rss, median_of, others_summary, peer_width, print_load_summary,
    raise_nofile, send_request, unknown_peer, Bench, IdleResult, Opts, Throughput, WrkRun,
    ACCEPT_RETRY,
};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};

/// The body every peer answers with.
const BODY: &str = "Hello World!";

/// The peers, in table order.
const PEERS: [&str; 3] = ["grove", "may_minihttp", "hyper"];

/// The peer the ratios are taken against.
const BASELINE: &str = "may_minihttp";

/// The ratio to may_minihttp the grove issue aims for.
const TARGET: f64 = 1.45;

/// wrk's connection count.
const CONNS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Servers (`--server PEER PORT`).

fn serve(peer: &str, addr: SocketAddr) -> io::Result<()> {
    match peer {
        "grove" => serve_grove(addr),
        "may_minihttp" => serve_may_minihttp(addr),
        "hyper" => serve_hyper(addr),
        _ => Err(unknown_peer(peer, &PEERS)),
    }
}

fn serve_grove(addr: SocketAddr) -> io::Result<()> {
    use grove::net::http::{Response, Server};
    eprintln!("grove: {} workers", grove::workers());
    Server::bind(addr, |_req| Response::static_text(BODY))?.serve_forever()
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
    let mut s = send_request(addr)?;
    let (head, size) = read_response(&mut s)?;
    Ok((s, head, size))
}

/// One idle-client connection: `GET /`, its response read back and checked.
fn open_idle_conn(addr: SocketAddr) -> io::Result<TcpStream> {
    get_once(addr).map(|(s, _, _)| s)
}

// ---------------------------------------------------------------------------------------------
// Orchestrator.

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
    let w = peer_width(&PEERS);

    // Throughput: all servers up at once, runs interleaved across peers.
    let mut throughput = Throughput::start(&o.peers)?;
    for s in &throughput.servers {
        let (_, head, size) = get_once(s.addr())
            .map_err(|e| io::Error::other(format!("{}: GET / failed: {e}", s.peer)))?;
        println!(
            "  {:<w$} response {size} bytes: {}",
            s.peer,
            head.replace("\r\n", " | ")
        );
    }
    throughput.warm_up(CONNS)?;
    // results[peer] = runs
    let results = throughput.rounds(CONNS, o, |round, s, r| {
        println!(
            "  round {} {:<w$} {:>9.0} req/s  {:>8} requests  {}",
            round + 1,
            s.peer,
            r.req_per_sec,
            r.requests,
            r.costs()
        )
    })?;
    throughput.print_cpu_outside_runs(w)?;
    let load_mid = loadavg();
    drop(throughput);

    // Idle keep-alive memory: a fresh server per peer.
    let idle = measure_idle_rss(&o.peers, o.idle, w)?;

    let base = o.peers.iter().position(|p| *p == BASELINE);
    let ratio = |pi: usize| {
        let rps = |pi: usize| median_of(&results[pi], |r| r.req_per_sec);
        base.map(|b| rps(pi) / rps(b))
    };
    print_table(o, &results, &idle, ratio);
    if let Some(x) = o.peers.iter().position(|p| *p == "grove").and_then(ratio) {
        println!();
        println!(
            "grove / {BASELINE} = {x:.2} (target >= {TARGET:.2}: {})",
            if x >= TARGET { "met" } else { "not met" }
        );
    }
    let steal = results
        .iter()
        .flatten()
        .map(|r| r.steal_cores)
        .fold(0.0f64, f64::max);
    println!();
    println!(
        "{}; max steal {steal:.2} cores",
        others_summary(results.iter().flatten())
    );
    print_load_summary(&load_mid);
    Ok(())
}

/// The results table: per peer the median req/s, its spread, its ratio to the baseline (from
/// `ratio`), the median CPU per request, the least and greatest share of its core wrk had, and
/// the RSS per idle connection.
fn print_table(
    o: &Opts,
    results: &[Vec<WrkRun>],
    idle: &[IdleResult],
    ratio: impl Fn(usize) -> Option<f64>,
) {
    println!();
    println!(
        "| peer | req/s c{CONNS} (median of {r}) | min-max | vs {BASELINE} | CPU µs/req | wrk's \
         cores (min-max) | RSS per idle conn |",
        r = o.rounds
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (pi, p) in o.peers.iter().enumerate() {
        let rps = median_of(&results[pi], |r| r.req_per_sec);
        let (lo, hi) = spread(&results[pi], |r| r.req_per_sec);
        let vs = ratio(pi).map_or_else(|| "-".into(), |x| format!("{x:.2}"));
        let cpu = median_of(&results[pi], |r| r.cpu_us_per_req);
        let (wlo, whi) = spread(&results[pi], |r| r.wrk_cores);
        println!(
            "| {p} | {rps:.0} | {lo:.0}-{hi:.0} | {vs} | {cpu:.2} | {wlo:.2}-{whi:.2} | {} |",
            idle[pi].per_conn_cell()
        );
    }
}

/// The least and the greatest of `runs` by `f`.
fn spread(runs: &[WrkRun], f: fn(&WrkRun) -> f64) -> (f64, f64) {
    runs.iter()
        .map(f)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
}

fn main() {
    Bench {
        name: "http_hello",
        peers: &PEERS,
        default_idle: 5_000,
        serve,
        open_idle_conn,
        orchestrate,
    }
    .main()
}
