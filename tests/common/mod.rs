//! Helpers shared by the integration tests: running a test again in a child process.
//!
//! Crash cases (stack overflow, bad environment, a blocked worker) and anything that needs its
//! own `GROVE_*` settings run in a child: the test binary re-executes itself with `--exact` for
//! the one test, `GROVE_TEST_ROLE` set, and the environment it needs. The test function checks
//! [`role`] first and, in the child, does the dangerous part and returns.
#![allow(dead_code)]

use grove::sync::{bounded, unbounded, Receiver, Sender};
use std::any::Any;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod parity;

const ROLE_VAR: &str = "GROVE_TEST_ROLE";

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// For a test that measures its process's CPU time, which other tests running beside it in
/// the same process would add to: true in a child process that runs test `name` alone (run
/// the body there); in the parent, runs that child, checks that it passed and returns false.
#[allow(dead_code)]
pub fn in_a_process_of_its_own(name: &str) -> bool {
    if role().is_some() {
        return true;
    }
    let out = run_child(name, "alone", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    false
}

/// As [`in_a_process_of_its_own`], with one child per worker count in `workers`
/// (`GROVE_WORKERS`): for a test that holds or blocks a worker on purpose, which would hold up
/// the other tests' greenlets in a shared process, or that must run on a given count.
#[allow(dead_code)]
pub fn in_processes_with_workers(name: &str, workers: &[&str]) -> bool {
    if role().is_some() {
        return true;
    }
    for w in workers {
        let out = run_child(name, "workers", &[("GROVE_WORKERS", w)]);
        assert!(out.status.success(), "{w} workers: {}", stderr(&out));
    }
    false
}

/// Runs test `name` of this binary in a child with `role` and `env`; waits at most 60 s.
pub fn run_child(name: &str, role: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(ROLE_VAR, role)
    .env("RUST_BACKTRACE", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child test process");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            // SAFETY: pid is the child we started and have not reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("child test {name} ({role}) did not finish within 60 s");
        }
    }
}

/// In a child that may deadlock: ends the process with status 3, and `what()` on stderr, if it
/// is still running after `limit` (a failure at once, rather than the parent's 60 s limit).
pub fn exit_if_still_running_after(
    limit: Duration,
    what: impl FnOnce() -> String + Send + 'static,
) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("deadlocked: {}", what());
        std::process::exit(3);
    });
}

/// The child's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The child's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The signal that killed the child, if one did.
pub fn signal(out: &Output) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal()
}

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// ---------------------------------------------------------------------------------------------
// Helpers of the sync test suites: run code in a greenlet or on a thread, jitter.

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Microseconds.
pub fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// True if a join error is a kill.
pub fn is_killed(e: &Box<dyn std::any::Any + Send>) -> bool {
    e.downcast_ref::<grove::Killed>().is_some()
}

/// Runs `f` in a greenlet, waits for it, and re-raises its panic here.
pub fn in_greenlet<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match grove::spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Runs `f` once on this plain thread and once in a greenlet.
pub fn on_thread_and_greenlet(f: impl Fn() + Send + Sync + 'static) {
    let f = Arc::new(f);
    f();
    let g = f.clone();
    in_greenlet(move || g());
}

/// Either a greenlet or a plain thread, joined the same way.
pub enum Worker<T> {
    Green(grove::JoinHandle<T>),
    Thread(std::thread::JoinHandle<T>),
}

impl<T: Send + 'static> Worker<T> {
    pub fn spawn(green: bool, f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
        if green {
            Worker::Green(grove::spawn(f))
        } else {
            Worker::Thread(std::thread::spawn(f))
        }
    }

    pub fn join(self) -> T {
        let r = match self {
            Worker::Green(h) => h.join(),
            Worker::Thread(h) => h.join(),
        };
        r.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// A tiny deterministic PRNG (xorshift) for jitter; no dependency needed.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Channel test helpers.

/// The channel flavours: unbounded, rendezvous, and two buffered sizes.
pub const FLAVOURS: [Option<usize>; 4] = [None, Some(0), Some(1), Some(8)];

pub fn make<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    match cap {
        None => unbounded(),
        Some(n) => bounded(n),
    }
}

/// A short random pause: a few yields or a few microseconds of sleep (works in a greenlet and on
/// a thread alike).
pub fn jitter(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 => grove::yield_now(),
        2 => {
            for _ in 0..rng.below(5) {
                grove::yield_now();
            }
        }
        _ => grove::sleep(us(rng.below(60))),
    }
}

/// A value that counts its drops.
#[derive(Debug)]
pub struct Tracked {
    pub id: u64,
    pub drops: Arc<AtomicUsize>,
}

impl Tracked {
    pub fn new(id: u64, drops: &Arc<AtomicUsize>) -> Tracked {
        Tracked {
            id,
            drops: drops.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// Asserts every value in `0..n` was seen exactly once.
pub fn assert_exactly_once(mut got: Vec<u64>, n: u64, what: &str) {
    got.sort_unstable();
    let mut dup = None;
    for w in got.windows(2) {
        if w[0] == w[1] {
            dup = Some(w[0]);
            break;
        }
    }
    assert!(dup.is_none(), "{what}: value {dup:?} delivered twice");
    assert_eq!(
        got.len() as u64,
        n,
        "{what}: {} of {n} values delivered (lost some)",
        got.len()
    );
    assert!(
        got.iter().copied().eq(0..n),
        "{what}: delivered values are not exactly 0..{n}"
    );
}

/// Waits (bounded) for `cond`; panics with `what` after 5 s.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    // Generous: a loaded CI machine can stall a process for seconds; a bug waits for ever.
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        grove::sleep(ms(1));
    }
}

// ---------------------------------------------------------------------------------------------
// Queue and pool test helpers.

/// A panic payload as text.
pub fn panic_text(p: &Box<dyn Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Tracks how many run at once and the peak.
#[derive(Default)]
pub struct Concurrency {
    pub now: AtomicUsize,
    pub peak: AtomicUsize,
}

impl Concurrency {
    pub fn enter(&self) {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
    }
    pub fn leave(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// Channel ping-pong pairs (every value checked, a 1 ms nap every 64 round trips so that
/// workers go idle and steal) running for `run_for` beside `hogs` greenlets
/// that repeatedly wake a partner (into their own worker's `runnext`) and then hold their worker
/// for 12-20 ms without parking: the monitor keeps marking workers blocked, and the others keep
/// stealing what they queued, the partner in `runnext` included, while the hog's own worker may
/// come back to its slot at any moment. Returns (round trips made, greenlets stolen from a
/// `runnext` slot). Panics if anything stops making progress for `limit` (a greenlet lost), and
/// a greenlet run twice trips the runtime's own checks. This shows that steals happen in the
/// real runtime and lose nothing; the instants where an owner and a thief touch the slot
/// together are nanoseconds wide and rare here, so the protocol's correctness in those
/// instants is what `loom_runnext` checks (this test still passes with the protocol's checks
/// removed; loom does not).
pub fn pairs_beside_hogs(
    pairs: usize,
    hogs: usize,
    run_for: Duration,
    limit: Duration,
) -> (u64, u64) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hog_handles: Vec<_> = (0..hogs)
        .map(|h| {
            let stop = stop.clone();
            let (tx, rx) = bounded::<u64>(1);
            let partner = grove::spawn(move || {
                for (expected, v) in rx.iter().enumerate() {
                    assert_eq!(v, expected as u64, "a hand-off lost or repeated");
                }
            });
            grove::spawn(move || {
                let mut n = 0u64;
                while !stop.load(SeqCst) {
                    tx.send(n).unwrap();
                    let hold = Duration::from_millis(12 + (n + h as u64) % 9);
                    let t = Instant::now();
                    while t.elapsed() < hold {
                        std::hint::spin_loop();
                    }
                    grove::sleep(Duration::from_millis(1));
                    n += 1;
                }
                drop(tx);
                partner.join().unwrap();
            })
        })
        .collect();
    let pair_handles: Vec<_> = (0..pairs)
        .map(|_| {
            let stop = stop.clone();
            let (tx1, rx1) = bounded::<u64>(1);
            let (tx2, rx2) = bounded::<u64>(1);
            let echo = grove::spawn(move || {
                for v in rx1.iter() {
                    tx2.send(v + 1).unwrap();
                }
            });
            grove::spawn(move || {
                let mut i = 0u64;
                while !stop.load(SeqCst) {
                    tx1.send(2 * i).unwrap();
                    assert_eq!(rx2.recv().unwrap(), 2 * i + 1, "a value lost or repeated");
                    i += 1;
                    if i.is_multiple_of(64) {
                        // Leave the worker idle now and then, so it goes stealing.
                        grove::sleep(Duration::from_millis(1));
                    }
                }
                drop(tx1);
                echo.join().unwrap();
                i
            })
        })
        .collect();
    std::thread::sleep(run_for);
    stop.store(true, SeqCst);
    let t0 = Instant::now();
    let mut round_trips = 0;
    for h in pair_handles {
        while !h.is_finished() {
            assert!(
                t0.elapsed() < limit,
                "a ping-pong pair stopped making progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        round_trips += h.join().unwrap();
    }
    for h in hog_handles {
        while !h.is_finished() {
            assert!(
                t0.elapsed() < limit,
                "a hog's partner stopped making progress"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap();
    }
    (round_trips, grove::debug::runnext_steals())
}

/// Names of this process's threads (Linux; empty where `/proc` has none).
#[allow(dead_code)]
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}
