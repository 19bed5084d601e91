//! Mutexes: the cost of one lock operation under contention and without it.
//!
//! Two groups, one entry per runtime or library:
//!
//! * `mutex_contended_64`: nanoseconds per lock operation. Each of 64 greenlets (or tasks, or
//!   coroutines) repeats lock, increment a shared `u64`, unlock; every 16 rounds it yields, while
//!   not holding the lock, so the others get a turn even on a runtime without preemption. A
//!   measurement of `iters` iterations shares `iters` rounds among the workers (the last ones do
//!   one fewer when `iters` is not a multiple) and times everything from the first spawn to the
//!   last join, and the counter is checked against `iters` at the end. Two workers throughout.
//!   Entries:
//!   - `grove`: 64 greenlets, `grove::sync::Mutex`, `grove::yield_now()`, `GROVE_WORKERS=2`;
//!   - `may`: 64 coroutines on two may workers, `may::sync::Mutex`, `may::coroutine::yield_now()`;
//!   - `tokio_multi_thread`: 64 tasks on a two-worker multi-thread runtime, `tokio::sync::Mutex`,
//!     `tokio::task::yield_now().await`;
//!   - `parking_lot_4_threads` and `std_4_threads`: 4 OS threads (not 64: a lock held by a
//!     preempted thread stalls everyone, and 64 threads on two cores would measure the kernel's
//!     scheduler), `parking_lot::Mutex` and `std::sync::Mutex`, `std::thread::yield_now()`.
//! * `mutex_uncontended`: lock, increment, unlock on one thread with nobody else around:
//!   - `grove`: `grove::sync::Mutex` on the main thread (a plain thread, outside the runtime);
//!   - `grove_in_greenlet`: the same inside one greenlet (the loop runs in the greenlet, timed
//!     there);
//!   - `parking_lot` and `std`: `parking_lot::Mutex` and `std::sync::Mutex` on the main thread.
//!
//! Run: `cargo bench --bench sync_mutex` (under a minute). Criterion's usual arguments
//! work, e.g. `cargo bench --bench sync_mutex -- contended` for the contended group alone.

use criterion::{black_box, Criterion};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Greenlets (tasks, coroutines) in `mutex_contended_64`, and OS threads for the thread peers.
const GREENLETS: u64 = 64;
const THREADS: u64 = 4;

/// Workers for every runtime.
const WORKERS: usize = 2;

/// A worker yields after every this many rounds, outside the lock.
const YIELD_EVERY: u64 = 16;

/// Rounds for worker `i` of `n` so that the `n` of them do `iters` in all.
fn share(iters: u64, n: u64, i: u64) -> u64 {
    iters / n + u64::from(i < iters % n)
}

/// One worker's rounds: lock, increment, unlock, and `yield_now` every YIELD_EVERY rounds.
macro_rules! rounds {
    ($rounds:expr, $lock:expr, $yield_now:expr) => {
        for r in 1..=$rounds {
            {
                let mut g = $lock;
                *g += 1;
            }
            if r % YIELD_EVERY == 0 {
                $yield_now;
            }
        }
    };
}

fn grove_contended(iters: u64) -> Duration {
    let m = Arc::new(grove::sync::Mutex::new(0u64));
    let start = Instant::now();
    let hs: Vec<_> = (0..GREENLETS)
        .map(|i| {
            let m = m.clone();
            grove::spawn(move || rounds!(share(iters, GREENLETS, i), m.lock(), grove::yield_now()))
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    assert_eq!(*m.lock(), iters);
    elapsed
}

fn may_contended(iters: u64) -> Duration {
    let m = Arc::new(may::sync::Mutex::new(0u64));
    let start = Instant::now();
    let hs: Vec<_> = (0..GREENLETS)
        .map(|i| {
            let m = m.clone();
            let body = move || {
                rounds!(
                    share(iters, GREENLETS, i),
                    m.lock().unwrap(),
                    may::coroutine::yield_now()
                )
            };
            // may's spawn is unsafe because a coroutine may move between threads (so it must
            // not rely on thread-locals) and because cancelling one drops its resources.
            // SAFETY: the bodies here use no thread-locals and nothing is cancelled.
            unsafe { may::coroutine::spawn(body) }
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    assert_eq!(*m.lock().unwrap(), iters);
    elapsed
}

fn tokio_contended(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let m = Arc::new(tokio::sync::Mutex::new(0u64));
        let start = Instant::now();
        let hs: Vec<_> = (0..GREENLETS)
            .map(|i| {
                let m = m.clone();
                tokio::spawn(async move {
                    rounds!(
                        share(iters, GREENLETS, i),
                        m.lock().await,
                        tokio::task::yield_now().await
                    )
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        let elapsed = start.elapsed();
        assert_eq!(*m.lock().await, iters);
        elapsed
    })
}

fn parking_lot_contended(iters: u64) -> Duration {
    let m = Arc::new(parking_lot::Mutex::new(0u64));
    let start = Instant::now();
    let hs: Vec<_> = (0..THREADS)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                rounds!(share(iters, THREADS, i), m.lock(), std::thread::yield_now())
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    assert_eq!(*m.lock(), iters);
    elapsed
}

fn std_contended(iters: u64) -> Duration {
    let m = Arc::new(std::sync::Mutex::new(0u64));
    let start = Instant::now();
    let hs: Vec<_> = (0..THREADS)
        .map(|i| {
            let m = m.clone();
            std::thread::spawn(move || {
                rounds!(
                    share(iters, THREADS, i),
                    m.lock().unwrap(),
                    std::thread::yield_now()
                )
            })
        })
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    let elapsed = start.elapsed();
    assert_eq!(*m.lock().unwrap(), iters);
    elapsed
}

fn bench_contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_contended_64");
    g.bench_function("grove", |b| b.iter_custom(grove_contended));
    g.bench_function("may", |b| b.iter_custom(may_contended));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .build()
        .expect("tokio runtime");
    g.bench_function("tokio_multi_thread", |b| {
        b.iter_custom(|iters| tokio_contended(&rt, iters))
    });
    drop(rt);

    g.bench_function("parking_lot_4_threads", |b| {
        b.iter_custom(parking_lot_contended)
    });
    g.bench_function("std_4_threads", |b| b.iter_custom(std_contended));
    g.finish();
}

fn bench_uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_uncontended");

    let m = grove::sync::Mutex::new(0u64);
    g.bench_function("grove", |b| b.iter(|| *black_box(&m).lock() += 1));

    g.bench_function("grove_in_greenlet", |b| {
        b.iter_custom(|iters| {
            grove::spawn(move || {
                let m = grove::sync::Mutex::new(0u64);
                let start = Instant::now();
                for _ in 0..iters {
                    *black_box(&m).lock() += 1;
                }
                let elapsed = start.elapsed();
                assert_eq!(*m.lock(), iters);
                elapsed
            })
            .join()
            .unwrap()
        })
    });

    let m = parking_lot::Mutex::new(0u64);
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&m).lock() += 1));

    let m = std::sync::Mutex::new(0u64);
    g.bench_function("std", |b| b.iter(|| *black_box(&m).lock().unwrap() += 1));
    g.finish();
}

fn main() {
    // SAFETY: nothing else runs yet: no runtime has started and no thread has been spawned, so
    // no other thread can be reading the environment.
    unsafe { std::env::set_var("GROVE_WORKERS", WORKERS.to_string()) };
    may::config().set_workers(WORKERS);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    bench_contended(&mut c);
    bench_uncontended(&mut c);
    c.final_summary();
}
