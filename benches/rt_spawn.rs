//! Spawn + join cost: one wave of 10,000 trivial greenlets, spawned and joined from inside the
//! runtime, on two workers.
//!
//! Group `spawn_join_wave_10k_2_workers`, one entry per runtime; each iteration is one wave, and
//! the throughput is set to 10,000 elements, so criterion prints the time per wave and the
//! spawns+joins per second:
//!
//! * `grove`: a driver greenlet spawns 10,000 greenlets (each returns a number) and joins them
//!   all; spawning from a greenlet puts them on the worker's own queue, where the other worker
//!   steals from (`GROVE_WORKERS=2`);
//! * `may`: the same with a driver coroutine on two may workers;
//! * `tokio_multi_thread`: the same with a driver task on a two-worker multi-thread runtime,
//!   awaiting every `JoinHandle`;
//! * `corosensei_floor`: one thread makes a corosensei `Coroutine` on a reused stack, runs it to
//!   completion and takes the stack back, 10,000 times: the cost of building and entering a
//!   coroutine with no scheduler, no allocation of stacks and no synchronisation;
//! * `std_thread`: 10,000 OS threads spawned and joined (ten samples only: it is slow).
//!
//! Run: `cargo bench --bench rt_spawn` (under a minute).

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use criterion::{black_box, Criterion, SamplingMode, Throughput};
use std::time::Duration;

/// Greenlets per wave.
const WAVE: usize = 10_000;

fn grove_wave() {
    grove::spawn(|| {
        let hs: Vec<_> = (0..WAVE)
            .map(|i| grove::spawn(move || black_box(i)))
            .collect();
        for h in hs {
            black_box(h.join().unwrap());
        }
    })
    .join()
    .unwrap();
}

fn may_spawn<T, F>(f: F) -> may::coroutine::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // may's spawn is unsafe because a coroutine may move between threads (so it must
    // not rely on thread-locals) and because cancelling one drops its resources.
    // SAFETY: the bodies here use no thread-locals and nothing is cancelled.
    unsafe { may::coroutine::spawn(f) }
}

fn may_wave() {
    may_spawn(|| {
        let hs: Vec<_> = (0..WAVE).map(|i| may_spawn(move || black_box(i))).collect();
        for h in hs {
            black_box(h.join().unwrap());
        }
    })
    .join()
    .unwrap();
}

fn tokio_wave(rt: &tokio::runtime::Runtime) {
    let driver = rt.spawn(async {
        let hs: Vec<_> = (0..WAVE)
            .map(|i| tokio::spawn(async move { black_box(i) }))
            .collect();
        for h in hs {
            black_box(h.await.unwrap());
        }
    });
    rt.block_on(driver).unwrap();
}

fn corosensei_wave(stack: &mut Option<DefaultStack>) {
    for i in 0..WAVE {
        let s = stack.take().expect("the stack is always put back");
        let mut co = Coroutine::with_stack(s, move |_: &Yielder<(), ()>, ()| black_box(i));
        match co.resume(()) {
            CoroutineResult::Return(r) => {
                black_box(r);
            }
            CoroutineResult::Yield(()) => unreachable!("the coroutine never suspends"),
        }
        *stack = Some(co.into_stack());
    }
}

fn std_wave() {
    let hs: Vec<_> = (0..WAVE)
        .map(|i| std::thread::spawn(move || black_box(i)))
        .collect();
    for h in hs {
        black_box(h.join().unwrap());
    }
}

fn bench_spawn(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join_wave_10k_2_workers");
    g.throughput(Throughput::Elements(WAVE as u64));

    g.bench_function("grove", |b| b.iter(grove_wave));
    g.bench_function("may", |b| b.iter(may_wave));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    g.bench_function("tokio_multi_thread", |b| b.iter(|| tokio_wave(&rt)));
    drop(rt);

    let mut stack = Some(DefaultStack::new(256 * 1024).expect("corosensei stack"));
    g.bench_function("corosensei_floor", |b| {
        b.iter(|| corosensei_wave(&mut stack))
    });

    // A wave of OS threads takes a good fraction of a second: ten flat samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("std_thread", |b| b.iter(std_wave));
    g.finish();
}

fn main() {
    // SAFETY: nothing else runs yet: no runtime has started and no thread has been spawned, so
    // no other thread can be reading the environment.
    unsafe { std::env::set_var("GROVE_WORKERS", "2") };
    may::config().set_workers(2);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();
    bench_spawn(&mut c);
    c.final_summary();
}
