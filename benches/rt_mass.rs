//! Mass greenlets: what a million parked greenlets cost, and how 100,000 sleepers are handled.
//!
//! Two experiments, each run for grove, tokio (multi-thread, 2 workers) and may (2 workers):
//!
//! * `parked_1m`: spawn 1,000,000 greenlets that each bump a shared counter and then block
//!   forever (grove: `grove::rt::park` on a token nobody keeps; tokio: `std::future::pending()`;
//!   may: `may::coroutine::park()`), and wait until the counter reaches 1,000,000. Reports the
//!   wall time per greenlet, the resident memory per greenlet (growth of `VmRSS`) and the page
//!   tables per greenlet (growth of `VmPTE`, memory that `VmRSS` does not count). The join
//!   handles are kept, as a program that could still wake or join them would.
//! * `sleep_100k`: spawn 100,000 greenlets that each sleep 1 to 100 ms (the same pseudo-random
//!   durations for every runtime), then join them all. Reports the wall time and the CPU time
//!   (user + system, `getrusage(RUSAGE_SELF)`) from the first spawn to the last join, and how
//!   late the sleepers woke (mean and maximum, from each one's first run).
//!
//! Every spawn is made from the process's main thread, a plain thread outside the runtime.
//!
//! Each (experiment, runtime) pair runs in a child process of its own (this binary re-executed
//! with `--child`, `GROVE_WORKERS=2` in its environment), under a time limit, so that a runtime
//! that crashes, runs out of mappings or hangs is reported as a failure and leaves the others
//! alone; the failure line shows the last line the child wrote to stderr and the command that
//! reruns it. may is expected to fail `parked_1m`: each of its stacks takes two memory mappings
//! (stack and `mprotect` guard page), so Linux's default `vm.max_map_count` of 65,530 stops it
//! near 32,700 live coroutines. In `sleep_100k` it spawns slowly enough (each spawn maps a fresh
//! stack) that early sleepers finish first and fewer are alive at once, so it usually passes.
//!
//! Run: `cargo bench --bench rt_mass` (under a minute; grove's million parked greenlets need
//! about 5 GB of memory), or
//! `cargo bench --bench rt_mass -- --quick` for a sanity run with every count divided by ten.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

const PEERS: [&str; 3] = ["grove", "tokio", "may"];

/// Workers for every runtime.
const WORKERS: usize = 2;

/// Greenlets in `parked` and in `sleep` (full run; `--quick` divides by ten).
const PARKED_N: usize = 1_000_000;
const SLEEP_N: usize = 100_000;

/// Greenlets that have started running (bumped by each greenlet's first action).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Oversleep of the sleepers, in microseconds: sum and maximum (see [`Oversleep`]).
static LATE_SUM_US: AtomicU64 = AtomicU64::new(0);
static LATE_MAX_US: AtomicU64 = AtomicU64::new(0);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
    } else {
        // `cargo bench` also passes `--bench`; it is ignored.
        parent(args.iter().any(|a| a == "--quick"));
    }
}

// ---------------------------------------------------------------------------------------------
// Parent: one child process per (experiment, peer), under a time limit.

fn parent(quick: bool) {
    let scale = if quick { 10 } else { 1 };
    // (experiment, count, time limit of its child process)
    let limit = |secs: u64| Duration::from_secs(secs / scale as u64);
    let experiments = [
        ("parked", PARKED_N / scale, limit(180)),
        ("sleep", SLEEP_N / scale, limit(120)),
    ];
    let exe = std::env::current_exe().expect("cannot find this executable");
    println!(
        "rt_mass: {} workers per runtime, one child process per line{}",
        WORKERS,
        if quick { " (--quick: counts / 10)" } else { "" }
    );
    for (exp, n, limit) in experiments {
        let label = format!("{exp}_{}", count_label(n));
        for peer in PEERS {
            let args = ["--child", exp, peer, &n.to_string()].map(String::from);
            let mut cmd = Command::new(&exe);
            // No backtraces: a child that runs out of memory mappings would deadlock printing one
            // (std's allocation-failure hook waits for the backtrace lock the panic holds). The
            // failure line gives the command to rerun by hand for a backtrace.
            cmd.args(&args)
                .env("GROVE_WORKERS", WORKERS.to_string())
                .env("RUST_BACKTRACE", "0");
            let run = run_with_limit(cmd, limit);
            let result = run
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("RESULT "))
                .map(str::to_owned);
            match (&run.outcome, result) {
                (Outcome::Exited(st), Some(fields)) if st.success() => {
                    println!("{label:<12} {peer:<6} {fields}");
                }
                (outcome, _) => {
                    let why = match outcome {
                        Outcome::Exited(st) => describe_exit(st),
                        Outcome::TimedOut => "time limit reached, killed".to_owned(),
                    };
                    let last = run
                        .stderr
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("(no output on stderr)");
                    println!(
                        "{label:<12} {peer:<6} FAILED ({why} after {:.1} s): {}",
                        run.elapsed.as_secs_f64(),
                        last.trim()
                    );
                    println!(
                        "{:<19} rerun: GROVE_WORKERS={WORKERS} {} {}",
                        "",
                        exe.display(),
                        args.join(" ")
                    );
                }
            }
        }
    }
}

/// "1m", "100k", "10k"...
fn count_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}m", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn describe_exit(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{st}"),
    }
}

enum Outcome {
    Exited(ExitStatus),
    TimedOut,
}

struct ChildRun {
    outcome: Outcome,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

/// Runs `cmd`, collecting its output, and kills it once `limit` has passed.
fn run_with_limit(mut cmd: Command, limit: Duration) -> ChildRun {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the child process");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let outcome = loop {
        if let Some(st) = child.try_wait().expect("cannot wait for the child") {
            break Outcome::Exited(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break Outcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    ChildRun {
        outcome,
        elapsed,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Child: one experiment on one runtime. Prints `RESULT <fields>` and exits without tearing the
// runtime down (a million parked greenlets need not be unwound to be measured).

fn child(args: &[String]) {
    let [exp, peer, n] = args else {
        eprintln!("usage: rt_mass --child <parked|sleep> <grove|tokio|may> <count>");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("count must be a number");
    let fields = match (exp.as_str(), peer.as_str()) {
        ("parked", "grove") => parked(n, Grove::start()),
        ("parked", "tokio") => parked(n, Tokio::start()),
        ("parked", "may") => parked(n, May::start()),
        ("sleep", "grove") => sleep(n, Grove::start()),
        ("sleep", "tokio") => sleep(n, Tokio::start()),
        ("sleep", "may") => sleep(n, May::start()),
        _ => {
            eprintln!("unknown experiment or runtime: {exp} {peer}");
            std::process::exit(2);
        }
    };
    println!("RESULT {fields}");
    std::io::stdout().flush().expect("stdout");
    std::process::exit(0);
}

/// What the experiments need from a runtime. Spawns are made from the main thread.
trait Peer {
    type Handle;
    /// Starts the runtime (its threads exist once this returns).
    fn start() -> Self;
    /// Spawns greenlet `i`, which bumps [`STARTED`] and then blocks forever.
    fn spawn_parked(&self, i: usize) -> Self::Handle;
    /// Spawns greenlet `i`, which sleeps for `d`.
    fn spawn_sleeper(&self, i: usize, d: Duration) -> Self::Handle;
    /// Joins all of `hs`.
    fn join_all(&self, hs: Vec<Self::Handle>);
}

/// Exits the child with a message naming the greenlet whose spawn failed.
fn spawn_failed(i: usize, e: impl std::fmt::Display) -> ! {
    eprintln!("spawn #{i} failed: {e}");
    std::process::exit(1);
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

struct Grove;

impl Peer for Grove {
    type Handle = grove::JoinHandle<()>;

    fn start() -> Grove {
        grove::spawn(|| ()).join().unwrap();
        Grove
    }

    fn spawn_parked(&self, i: usize) -> Self::Handle {
        grove::Builder::new()
            .spawn(|| {
                STARTED.fetch_add(1, Relaxed);
                loop {
                    // A token nobody keeps: nothing ever wakes this park.
                    grove::rt::park(|_token| Some(|| ()), None);
                }
            })
            .unwrap_or_else(|e| spawn_failed(i, e))
    }

    fn spawn_sleeper(&self, i: usize, d: Duration) -> Self::Handle {
        grove::Builder::new()
            .spawn(move || {
                let o = Oversleep::start(d);
                grove::sleep(d);
                o.record();
            })
            .unwrap_or_else(|e| spawn_failed(i, e))
    }

    fn join_all(&self, hs: Vec<Self::Handle>) {
        for h in hs {
            h.join().unwrap();
        }
    }
}

struct Tokio(tokio::runtime::Runtime);

impl Peer for Tokio {
    type Handle = tokio::task::JoinHandle<()>;

    fn start() -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_time()
            .build()
            .expect("tokio runtime");
        rt.block_on(rt.spawn(async {})).unwrap();
        Tokio(rt)
    }

    fn spawn_parked(&self, _i: usize) -> Self::Handle {
        self.0.spawn(async {
            STARTED.fetch_add(1, Relaxed);
            std::future::pending::<()>().await;
        })
    }

    fn spawn_sleeper(&self, _i: usize, d: Duration) -> Self::Handle {
        self.0.spawn(async move {
            let o = Oversleep::start(d);
            tokio::time::sleep(d).await;
            o.record();
        })
    }

    fn join_all(&self, hs: Vec<Self::Handle>) {
        self.0.block_on(async {
            for h in hs {
                h.await.unwrap();
            }
        });
    }
}

struct May;

impl May {
    fn spawn<F: FnOnce() + Send + 'static>(i: usize, f: F) -> may::coroutine::JoinHandle<()> {
        // may panics, rather than returning an error, when it cannot map a stack.
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // may's spawn is unsafe because a coroutine may move between threads (so it must
            // not rely on thread-locals) and because cancelling one drops its resources.
            // SAFETY: the bodies here use no thread-locals and nothing is cancelled.
            unsafe { may::coroutine::Builder::new().spawn(f) }
        }));
        match r {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => spawn_failed(i, e),
            Err(p) => spawn_failed(i, format!("panicked: {}", panic_message(&*p))),
        }
    }
}

impl Peer for May {
    type Handle = may::coroutine::JoinHandle<()>;

    fn start() -> May {
        may::config().set_workers(WORKERS);
        May::spawn(0, || ()).join().unwrap();
        May
    }

    fn spawn_parked(&self, i: usize) -> Self::Handle {
        May::spawn(i, || {
            STARTED.fetch_add(1, Relaxed);
            loop {
                // Nobody unparks it; the loop covers spurious returns.
                may::coroutine::park();
            }
        })
    }

    fn spawn_sleeper(&self, i: usize, d: Duration) -> Self::Handle {
        May::spawn(i, move || {
            let o = Oversleep::start(d);
            may::coroutine::sleep(d);
            o.record();
        })
    }

    fn join_all(&self, hs: Vec<Self::Handle>) {
        for h in hs {
            h.join().unwrap();
        }
    }
}

fn parked<P: Peer>(n: usize, peer: P) -> String {
    let mut hs = Vec::with_capacity(n);
    let (rss0, pte0) = (status_kib("VmRSS"), status_kib("VmPTE"));
    let start = Instant::now();
    for i in 0..n {
        hs.push(peer.spawn_parked(i));
    }
    let mut last_report = Instant::now();
    while STARTED.load(Relaxed) < n {
        std::thread::sleep(Duration::from_micros(200));
        if last_report.elapsed() > Duration::from_secs(2) {
            // Only shown if the run fails: how far it got.
            eprintln!("waiting: {} of {n} started", STARTED.load(Relaxed));
            last_report = Instant::now();
        }
    }
    let wall = start.elapsed();
    let (rss1, pte1) = (status_kib("VmRSS"), status_kib("VmPTE"));
    let per = |kib0: u64, kib1: u64| kib1.saturating_sub(kib0) as f64 * 1024.0 / n as f64;
    let fields = format!(
        "ns/greenlet={:.0}  rss/greenlet={:.0}B  pte/greenlet={:.0}B  (wall {:.2} s, rss +{} MiB)",
        wall.as_nanos() as f64 / n as f64,
        per(rss0, rss1),
        per(pte0, pte1),
        wall.as_secs_f64(),
        rss1.saturating_sub(rss0) / 1024,
    );
    std::mem::forget(hs);
    fields
}

fn sleep<P: Peer>(n: usize, peer: P) -> String {
    let durations = sleep_durations(n);
    let mut hs = Vec::with_capacity(n);
    let cpu0 = cpu_time();
    let start = Instant::now();
    for (i, &d) in durations.iter().enumerate() {
        hs.push(peer.spawn_sleeper(i, d));
    }
    let spawned = start.elapsed();
    peer.join_all(hs);
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu0;
    format!(
        "wall_ms={:.1}  cpu_ms={:.1}  (spawning {:.1} ms; longest sleep {} ms; \
         oversleep mean {:.2} ms, max {:.1} ms)",
        wall.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        spawned.as_secs_f64() * 1e3,
        durations.iter().max().map_or(0, Duration::as_millis),
        LATE_SUM_US.load(Relaxed) as f64 / n as f64 / 1e3,
        LATE_MAX_US.load(Relaxed) as f64 / 1e3,
    )
}

/// How much later than asked a sleeper woke, measured from its first run (so the time it
/// waited in a run queue before starting is not counted).
struct Oversleep {
    start: Instant,
    asked: Duration,
}

impl Oversleep {
    fn start(asked: Duration) -> Oversleep {
        Oversleep {
            start: Instant::now(),
            asked,
        }
    }

    fn record(self) {
        let late = self.start.elapsed().saturating_sub(self.asked).as_micros() as u64;
        LATE_SUM_US.fetch_add(late, Relaxed);
        LATE_MAX_US.fetch_max(late, Relaxed);
    }
}

/// `n` sleeps of 1 to 100 ms from a fixed-seed splitmix64, the same for every runtime.
fn sleep_durations(n: usize) -> Vec<Duration> {
    let mut x: u64 = 0x5EED_5EED_5EED;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            Duration::from_millis(1 + z % 100)
        })
        .collect()
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// User + system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: all-zero bytes are a valid `rusage` (plain integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` for the call to fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
