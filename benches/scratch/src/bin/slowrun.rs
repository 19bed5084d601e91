//! gevent's classic experiment, grove alone (examples/slow_handler's third row): `slowrun K N`
//! runs N requests at -c 200 against a 10 ms-sleep `http::Server` in this process, keep-alive if
//! K is 1, and prints req/s and the process's user and system CPU µs per request, so a change
//! to the no-keep-alive path can be timed and strace'd without the other two servers. K = 2 only
//! serves (printing its address) for N seconds, for a load generator in another process. With
//! `SLOWRUN_REPORT` set it also prints ab's report and how far past 10 ms the sleeps ran.
use std::time::Duration;

/// Sleeps that ran past their 10 ms, by how far, in 250 µs steps (the last: 5.75 ms or more).
static OVER: [std::sync::atomic::AtomicU64; 24] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 24];

fn cpu_us() -> (f64, f64) {
    // SAFETY: getrusage writes a whole rusage into the zeroed value it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(u.ru_utime), us(u.ru_stime))
}

fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (keep_alive, n) = (arg(1, 0) == 1, arg(2, 50_000));
    let server = grove::net::http::Server::bind("127.0.0.1:0", |_req| {
        let t0 = std::time::Instant::now();
        grove::sleep(Duration::from_millis(10));
        let over = (t0.elapsed().as_micros() as usize).saturating_sub(10_000) / 250;
        OVER[over.min(OVER.len() - 1)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        grove::net::http::Response::static_text("Hello World!")
    })
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    std::mem::forget(server.start());
    if arg(1, 0) == 2 {
        println!("{addr}");
        std::thread::sleep(Duration::from_secs(arg(2, 60)));
        return;
    }
    let (u0, s0) = cpu_us();
    let cfg = grove::ab::Config {
        requests: n,
        concurrency: 200,
        keep_alive,
        time_limit: Some(Duration::from_secs(20)),
        quiet: true,
        keep_going_on_receive_errors: true,
        url: Some(format!("http://{addr}/")),
        ..Default::default()
    };
    let r = grove::ab::run(cfg).expect("load run");
    let (u1, s1) = cpu_us();
    let done = n as f64;
    println!(
        "{:.0} req/s, user {:.1} µs/req, sys {:.1} µs/req, failed {}",
        r.requests_per_second(),
        (u1 - u0) / done,
        (s1 - s0) / done,
        r.failed()
    );
    if std::env::var_os("SLOWRUN_REPORT").is_some() {
        let v: Vec<u64> = OVER
            .iter()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        println!("sleep overshoot per 250 µs bucket: {v:?}");
        r.print();
    }
}
