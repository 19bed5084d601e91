//! gevent's classic experiment: a hello-world server whose handler sleeps 10 ms, hit by 200
//! concurrent clients, served three ways in one run:
//!
//! 1. a sequential accept loop (one connection at a time, like a naive blocking server),
//! 2. a thread per connection (std threads, `std::thread::sleep`),
//! 3. grove greenlets (`grove::net::http::Server`, `grove::sleep`).
//!
//! Each is measured with grove's load generator (`grove::ab`, the engine of `grove-ab`) at
//! `-c 200`, without and with keep-alive. The theoretical limit is 200 / 10 ms = 20,000 req/s.
//!
//! Run with `cargo run --release --example slow_handler [-- REQUESTS]` (default 50,000 per run:
//! about three seconds each, so the 200 connections' start-up and the last stragglers do not
//! weigh on the rate; at 20,000 they cost grove ~5% of it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const SLEEP: Duration = Duration::from_millis(10);
const REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nHello World!";
const REPLY_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello World!";

/// Serves one connection with blocking std I/O: read a request head, sleep, answer; keep going
/// while the client keeps the connection alive.
fn serve_blocking(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let keep = head.contains("connection: keep-alive");
        std::thread::sleep(SLEEP);
        if s.write_all(if keep { REPLY } else { REPLY_CLOSE }).is_err() || !keep {
            return;
        }
    }
}

fn sequential_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            serve_blocking(s);
        }
    });
    addr
}

fn threaded_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_blocking(s));
        }
    });
    addr
}

fn grove_server() -> SocketAddr {
    let server = grove::net::http::Server::bind("127.0.0.1:0", |_req| {
        grove::sleep(SLEEP);
        grove::net::http::Response::static_text("Hello World!")
    })
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    std::mem::forget(server.start()); // serves until the process ends
    addr
}

fn measure(addr: SocketAddr, requests: u64, keep_alive: bool, time_cap: Duration) -> (f64, u64) {
    let cfg = grove::ab::Config {
        requests,
        concurrency: 200,
        keep_alive,
        time_limit: Some(time_cap),
        quiet: true,
        // A reset or a stall is a failed request here, counted as ab -r counts it, not the
        // end of the measurement.
        keep_going_on_receive_errors: true,
        url: Some(format!("http://{addr}/")),
        ..Default::default()
    };
    match grove::ab::run(cfg) {
        Ok(r) => (r.requests_per_second(), r.failed()),
        Err(e) => {
            eprintln!("load run failed: {e}");
            (0.0, 0)
        }
    }
}

fn main() {
    let requests: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    println!("handler sleeps 10 ms; 200 concurrent clients; limit 20,000 req/s");
    println!(
        "{:<26} {:>14} {:>14}",
        "server", "no keep-alive", "keep-alive"
    );
    let servers: [(&str, SocketAddr, u64); 3] = [
        // The sequential server does ~100 req/s: give it fewer requests and a time cap.
        ("sequential accept loop", sequential_server(), 200),
        ("thread per connection", threaded_server(), requests),
        ("grove greenlets", grove_server(), requests),
    ];
    for (name, addr, n) in servers {
        let cap = Duration::from_secs(10);
        let (plain, f1) = measure(addr, n, false, cap);
        let (ka, f2) = measure(addr, n, true, cap);
        println!("{name:<26} {plain:>10.0} r/s {ka:>10.0} r/s");
        if f1 + f2 > 0 {
            println!("  ({} failed requests)", f1 + f2);
        }
    }
}
