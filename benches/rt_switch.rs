//! Context-switch cost: nanoseconds per `yield_now` when two greenlets ping-pong on one worker.
//!
//! Group `yield_now_2_greenlets_1_worker`, one entry per runtime:
//!
//! * `grove`: two greenlets on `GROVE_WORKERS=1`, each calling `grove::yield_now()` in a loop;
//! * `may`: the same with two `may` coroutines on one may worker;
//! * `tokio_current_thread`: two tasks looping on `tokio::task::yield_now().await`;
//! * `corosensei_floor`: one bare corosensei `Coroutine` resumed and suspended in a loop, with no
//!   scheduler at all: the cost of the two stack switches alone, which every stackful yield pays.
//!
//! A measurement of `iters` iterations spawns the two greenlets with `iters / 2` yields each and
//! times everything up to both joins, so the figure criterion reports is the time of one yield
//! (one switch from one greenlet to the other: out to the scheduler and into the next greenlet).
//! Spawning and joining are amortised over millions of yields.
//!
//! Run: `cargo bench --bench rt_switch` (about a minute). Criterion's usual arguments work, e.g.
//! `cargo bench --bench rt_switch -- grove` for grove alone.

use corosensei::{Coroutine, CoroutineResult, Yielder};
use criterion::{black_box, Criterion};
use std::time::{Duration, Instant};

/// Splits `iters` yields between the two greenlets.
fn halves(iters: u64) -> (u64, u64) {
    (iters / 2, iters - iters / 2)
}

fn grove_yield(iters: u64) -> Duration {
    let (a, b) = halves(iters);
    let start = Instant::now();
    let h1 = grove::spawn(move || (0..a).for_each(|_| grove::yield_now()));
    let h2 = grove::spawn(move || (0..b).for_each(|_| grove::yield_now()));
    h1.join().unwrap();
    h2.join().unwrap();
    start.elapsed()
}

fn may_spawn<F: FnOnce() + Send + 'static>(f: F) -> may::coroutine::JoinHandle<()> {
    // may's spawn is unsafe because a coroutine may move between threads (so it must
    // not rely on thread-locals) and because cancelling one drops its resources.
    // SAFETY: the bodies here use no thread-locals and nothing is cancelled.
    unsafe { may::coroutine::spawn(f) }
}

fn may_yield(iters: u64) -> Duration {
    let (a, b) = halves(iters);
    let start = Instant::now();
    let h1 = may_spawn(move || (0..a).for_each(|_| may::coroutine::yield_now()));
    let h2 = may_spawn(move || (0..b).for_each(|_| may::coroutine::yield_now()));
    h1.join().unwrap();
    h2.join().unwrap();
    start.elapsed()
}

fn tokio_yield(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    let (a, b) = halves(iters);
    rt.block_on(async move {
        let start = Instant::now();
        let h1 = tokio::spawn(async move {
            for _ in 0..a {
                tokio::task::yield_now().await;
            }
        });
        let h2 = tokio::spawn(async move {
            for _ in 0..b {
                tokio::task::yield_now().await;
            }
        });
        h1.await.unwrap();
        h2.await.unwrap();
        start.elapsed()
    })
}

fn bench_yield(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield_now_2_greenlets_1_worker");
    g.bench_function("grove", |b| b.iter_custom(grove_yield));
    g.bench_function("may", |b| b.iter_custom(may_yield));

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    g.bench_function("tokio_current_thread", |b| {
        b.iter_custom(|iters| tokio_yield(&rt, iters))
    });
    drop(rt);

    // The floor: one coroutine bounced between its stack and ours, no scheduler.
    let mut co = Coroutine::new(|y: &Yielder<(), ()>, ()| loop {
        y.suspend(());
    });
    g.bench_function("corosensei_floor", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                match black_box(co.resume(())) {
                    CoroutineResult::Yield(()) => {}
                    CoroutineResult::Return(()) => {
                        unreachable!("the floor coroutine never returns")
                    }
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn main() {
    // SAFETY: nothing else runs yet: no runtime has started and no thread has been spawned, so
    // no other thread can be reading the environment.
    unsafe { std::env::set_var("GROVE_WORKERS", "1") };
    may::config().set_workers(1);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    bench_yield(&mut c);
    c.final_summary();
}
