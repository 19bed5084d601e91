//! Where a non-keep-alive request's time goes in gevent's classic experiment (examples/
//! slow_handler's grove row), by phase: `slowphase N` runs N requests from 200 client greenlets
//! against a 10 ms-sleep `http::Server` in this process. Each request carries its send time in
//! its path and each response its handler's start and end, all on one clock, so the client can
//! split its cycle into: connect+send, send -> handler start (accept, read, parse), the sleep,
//! handler end -> response read (write, delivery, wake), and read -> close.
use grove::net::TcpStream;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();
fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

static SUMS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const NAMES: [&str; 5] = [
    "connect+send",
    "send->handler",
    "sleep",
    "handler->read",
    "close",
];

fn client(addr: std::net::SocketAddr, left: &AtomicU64) {
    let mut buf = [0u8; 1024];
    while left.fetch_sub(1, Relaxed) as i64 > 0 {
        let t0 = now_us();
        let mut s = TcpStream::connect(addr).expect("connect");
        let t1 = now_us();
        let req = format!("GET /{t1} HTTP/1.0\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut got = 0;
        loop {
            match s.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => panic!("read: {e}"),
            }
        }
        let t3 = now_us();
        drop(s);
        let t4 = now_us();
        let text = std::str::from_utf8(&buf[..got]).expect("utf8");
        let body = text.rsplit("\r\n\r\n").next().expect("body");
        let mut it = body.split(' ').map(|x| x.parse::<u64>().expect("stamp"));
        let (hs, he) = (it.next().unwrap(), it.next().unwrap());
        for (i, d) in [t1 - t0, hs - t1, he - hs, t3 - he, t4 - t3]
            .into_iter()
            .enumerate()
        {
            SUMS[i].fetch_add(d, Relaxed);
        }
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    now_us();
    let server = grove::net::http::Server::bind("127.0.0.1:0", |_req| {
        let hs = now_us();
        grove::sleep(Duration::from_millis(10));
        grove::net::http::Response::text(format!("{hs} {}", now_us()))
    })
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    std::mem::forget(server.start());
    let left = std::sync::Arc::new(AtomicU64::new(n));
    let t = Instant::now();
    let hs: Vec<_> = (0..200)
        .map(|_| {
            let left = left.clone();
            grove::spawn(move || client(addr, &left))
        })
        .collect();
    for h in hs {
        h.join().expect("client");
    }
    let secs = t.elapsed().as_secs_f64();
    print!("{:.0} req/s; mean µs:", n as f64 / secs);
    for (i, name) in NAMES.iter().enumerate() {
        print!(" {name} {:.0};", SUMS[i].load(Relaxed) as f64 / n as f64);
    }
    println!();
}
