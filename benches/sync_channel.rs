//! Channels: the round trip of a value between two greenlets, and many-to-many throughput.
//!
//! Three groups, one entry per runtime or library:
//!
//! * `channel_pingpong_1_worker`: nanoseconds per round trip. Two greenlets and two unbounded
//!   channels: the pinger sends `i` on one, the ponger receives it and sends `i + 1` back on the
//!   other, and the pinger receives it and checks it. A measurement of `iters` iterations runs
//!   `iters` round trips and times everything from the channels' creation to both joins, so
//!   spawning and joining are amortised over millions of round trips. Unbounded channels for
//!   every peer because may's channels are only unbounded (at most one value is ever in flight,
//!   so a bound would never be reached anyway). Entries:
//!   - `grove`: two greenlets, `grove::sync::channel`, `GROVE_WORKERS=1`;
//!   - `may`: two coroutines on one may worker, `may::sync::mpsc::channel`;
//!   - `tokio_current_thread`: two tasks, `tokio::sync::mpsc::unbounded_channel`;
//!   - `crossbeam_threads` and `std_threads`: two OS threads, `crossbeam_channel::unbounded` and
//!     `std::sync::mpsc::channel` (OS threads need no runtime: they are the same in both
//!     ping-pong groups, and always free to run on both cores).
//! * `channel_pingpong_2_workers`: the same on two workers (`GROVE_WORKERS=2`, may with two
//!   workers, `tokio_multi_thread` with two worker threads). The two greenlets are spawned from
//!   the main thread and not pinned: the runtime is free to run them on different workers.
//! * `channel_mpmc_4x4`: 4 producers send 25,000 numbers each (100,000 in all) through one
//!   channel with room for 128 values to 4 consumers, which receive until the channel is
//!   disconnected; the counts are checked. One iteration is one whole run, including spawning and
//!   joining the 8 greenlets (or tasks, or threads); the throughput is set to 100,000 elements, so
//!   criterion prints the time per run and the messages per second (time per message = time per
//!   run / 100,000). On two workers. Entries:
//!   - `grove`: 8 greenlets, `grove::sync::bounded(128)`;
//!   - `may_unbounded`: 8 coroutines, `may::sync::mpmc::channel` (may has no bounded channel);
//!   - `tokio_async_channel`: 8 tasks on the two-worker multi-thread runtime,
//!     `async_channel::bounded(128)` (tokio has no multi-consumer channel);
//!   - `tokio_mpsc_4x1`: tokio's own `tokio::sync::mpsc::channel(128)`, 4 producers and a single
//!     consumer (its receiver cannot be shared);
//!   - `crossbeam_threads`: 8 OS threads, `crossbeam_channel::bounded(128)`;
//!   - `std_threads_4x1`: `std::sync::mpsc::sync_channel(128)`, 4 producer threads and a single
//!     consumer thread (std's receiver cannot be shared).
//!
//! grove reads `GROVE_WORKERS` once, when its runtime starts, so the binary runs itself twice:
//! the first process (the one `cargo bench` starts) re-executes this executable with
//! `GROVE_SYNC_CHANNEL_WORKERS=1` (the 1-worker group) and then with `=2` (the 2-worker groups),
//! passing its arguments through, and fails if either child fails or outlives a time limit.
//!
//! Run: `cargo bench --bench sync_channel` (about a minute and a half). Criterion's usual
//! arguments work, e.g. `cargo bench --bench sync_channel -- mpmc` for the MPMC group alone.

use criterion::{black_box, Criterion, SamplingMode, Throughput};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set by the parent process on its children: the worker count this process benchmarks.
const CHILD_ENV: &str = "GROVE_SYNC_CHANNEL_WORKERS";

/// How long one child may run before it is taken to have hung.
const CHILD_LIMIT: Duration = Duration::from_secs(600);

/// `channel_mpmc_4x4`: producers, consumers, messages per run and channel capacity.
const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 4;
const MESSAGES: u64 = 100_000;
const PER_PRODUCER: u64 = MESSAGES / PRODUCERS;
const CAPACITY: usize = 128;

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(n) => child(n.parse().expect("the worker count must be a number")),
        Err(_) => parent(),
    }
}

// ---------------------------------------------------------------------------------------------
// Parent: one child process per worker count.

fn parent() {
    let exe = std::env::current_exe().expect("cannot find this executable");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    for workers in [1, 2] {
        let start = Instant::now();
        let mut child = Command::new(&exe)
            .args(&args)
            .env(CHILD_ENV, workers.to_string())
            .env("GROVE_WORKERS", workers.to_string())
            .spawn()
            .expect("cannot start the child process");
        let status = loop {
            if let Some(st) = child.try_wait().expect("cannot wait for the child") {
                break Some(st);
            }
            if start.elapsed() > CHILD_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let why = match status {
            Some(st) if st.success() => continue,
            Some(st) => format!("{st}"),
            None => format!("still running after {} s, killed", CHILD_LIMIT.as_secs()),
        };
        let rerun: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        eprintln!(
            "sync_channel: the {workers}-worker child failed ({why}); rerun: \
             {CHILD_ENV}={workers} GROVE_WORKERS={workers} {} {}",
            exe.display(),
            rerun.join(" ")
        );
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Child: the groups for one worker count.

fn child(workers: usize) {
    // The parent put GROVE_WORKERS in our environment; check that the runtime took it.
    assert_eq!(grove::workers(), workers, "GROVE_WORKERS was not applied");
    may::config().set_workers(workers);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    match workers {
        1 => bench_pingpong(&mut c, 1),
        2 => {
            bench_pingpong(&mut c, 2);
            bench_mpmc(&mut c);
        }
        n => panic!("no benchmarks for {n} workers"),
    }
    c.final_summary();
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

// ---------------------------------------------------------------------------------------------
// Ping-pong: `iters` round trips; the time of one iteration is the time of one round trip.

fn grove_pingpong(iters: u64) -> Duration {
    let start = Instant::now();
    let (to_pong, from_ping) = grove::sync::channel::<u64>();
    let (to_ping, from_pong) = grove::sync::channel::<u64>();
    let pong = grove::spawn(move || {
        for _ in 0..iters {
            let v = from_ping.recv().unwrap();
            to_ping.send(v + 1).unwrap();
        }
    });
    let ping = grove::spawn(move || {
        for i in 0..iters {
            to_pong.send(i).unwrap();
            assert_eq!(from_pong.recv().unwrap(), i + 1);
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
    start.elapsed()
}

fn may_pingpong(iters: u64) -> Duration {
    let start = Instant::now();
    let (to_pong, from_ping) = may::sync::mpsc::channel::<u64>();
    let (to_ping, from_pong) = may::sync::mpsc::channel::<u64>();
    let pong = may_spawn(move || {
        for _ in 0..iters {
            let v = from_ping.recv().unwrap();
            to_ping.send(v + 1).unwrap();
        }
    });
    let ping = may_spawn(move || {
        for i in 0..iters {
            to_pong.send(i).unwrap();
            assert_eq!(from_pong.recv().unwrap(), i + 1);
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
    start.elapsed()
}

fn tokio_pingpong(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let start = Instant::now();
        let (to_pong, mut from_ping) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (to_ping, mut from_pong) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let pong = tokio::spawn(async move {
            for _ in 0..iters {
                let v = from_ping.recv().await.unwrap();
                to_ping.send(v + 1).unwrap();
            }
        });
        let ping = tokio::spawn(async move {
            for i in 0..iters {
                to_pong.send(i).unwrap();
                assert_eq!(from_pong.recv().await.unwrap(), i + 1);
            }
        });
        ping.await.unwrap();
        pong.await.unwrap();
        start.elapsed()
    })
}

fn crossbeam_pingpong(iters: u64) -> Duration {
    let start = Instant::now();
    let (to_pong, from_ping) = crossbeam_channel::unbounded::<u64>();
    let (to_ping, from_pong) = crossbeam_channel::unbounded::<u64>();
    let pong = std::thread::spawn(move || {
        for _ in 0..iters {
            let v = from_ping.recv().unwrap();
            to_ping.send(v + 1).unwrap();
        }
    });
    let ping = std::thread::spawn(move || {
        for i in 0..iters {
            to_pong.send(i).unwrap();
            assert_eq!(from_pong.recv().unwrap(), i + 1);
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
    start.elapsed()
}

fn std_pingpong(iters: u64) -> Duration {
    let start = Instant::now();
    let (to_pong, from_ping) = std::sync::mpsc::channel::<u64>();
    let (to_ping, from_pong) = std::sync::mpsc::channel::<u64>();
    let pong = std::thread::spawn(move || {
        for _ in 0..iters {
            let v = from_ping.recv().unwrap();
            to_ping.send(v + 1).unwrap();
        }
    });
    let ping = std::thread::spawn(move || {
        for i in 0..iters {
            to_pong.send(i).unwrap();
            assert_eq!(from_pong.recv().unwrap(), i + 1);
        }
    });
    ping.join().unwrap();
    pong.join().unwrap();
    start.elapsed()
}

fn bench_pingpong(c: &mut Criterion, workers: usize) {
    let name = match workers {
        1 => "channel_pingpong_1_worker",
        _ => "channel_pingpong_2_workers",
    };
    let mut g = c.benchmark_group(name);
    g.bench_function("grove", |b| b.iter_custom(grove_pingpong));
    g.bench_function("may", |b| b.iter_custom(may_pingpong));

    let (label, rt) = match workers {
        1 => (
            "tokio_current_thread",
            tokio::runtime::Builder::new_current_thread().build(),
        ),
        n => (
            "tokio_multi_thread",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .build(),
        ),
    };
    let rt = rt.expect("tokio runtime");
    g.bench_function(label, |b| b.iter_custom(|iters| tokio_pingpong(&rt, iters)));
    drop(rt);

    g.bench_function("crossbeam_threads", |b| b.iter_custom(crossbeam_pingpong));
    g.bench_function("std_threads", |b| b.iter_custom(std_pingpong));
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// MPMC: one iteration moves MESSAGES values from PRODUCERS producers to the consumers.

/// Checks what the consumers received: every message once (the values are 0..PER_PRODUCER from
/// each producer, so their sum is known).
fn check(received: impl IntoIterator<Item = (u64, u64)>) {
    let (n, sum) = received
        .into_iter()
        .fold((0, 0), |(n, s), (n1, s1)| (n + n1, s + s1));
    assert_eq!(n, MESSAGES, "messages lost or duplicated");
    assert_eq!(sum, PRODUCERS * (PER_PRODUCER * (PER_PRODUCER - 1) / 2));
    black_box(sum);
}

fn grove_mpmc() {
    let (tx, rx) = grove::sync::bounded::<u64>(CAPACITY);
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            grove::spawn(move || {
                let (mut n, mut sum) = (0, 0);
                while let Ok(v) = rx.recv() {
                    n += 1;
                    sum += v;
                }
                (n, sum)
            })
        })
        .collect();
    drop(rx);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            grove::spawn(move || (0..PER_PRODUCER).for_each(|i| tx.send(i).unwrap()))
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|h| h.join().unwrap());
    check(consumers.into_iter().map(|h| h.join().unwrap()));
}

fn may_mpmc() {
    let (tx, rx) = may::sync::mpmc::channel::<u64>();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            may_spawn(move || {
                let (mut n, mut sum) = (0, 0);
                while let Ok(v) = rx.recv() {
                    n += 1;
                    sum += v;
                }
                (n, sum)
            })
        })
        .collect();
    drop(rx);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            may_spawn(move || (0..PER_PRODUCER).for_each(|i| tx.send(i).unwrap()))
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|h| h.join().unwrap());
    check(consumers.into_iter().map(|h| h.join().unwrap()));
}

fn tokio_async_channel_mpmc(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let (tx, rx) = async_channel::bounded::<u64>(CAPACITY);
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let (mut n, mut sum) = (0, 0);
                    while let Ok(v) = rx.recv().await {
                        n += 1;
                        sum += v;
                    }
                    (n, sum)
                })
            })
            .collect();
        drop(rx);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..PER_PRODUCER {
                        tx.send(i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for h in producers {
            h.await.unwrap();
        }
        let mut received = Vec::new();
        for h in consumers {
            received.push(h.await.unwrap());
        }
        check(received);
    })
}

fn tokio_mpsc_4x1(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
        let consumer = tokio::spawn(async move {
            let (mut n, mut sum) = (0, 0);
            while let Some(v) = rx.recv().await {
                n += 1;
                sum += v;
            }
            (n, sum)
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..PER_PRODUCER {
                        tx.send(i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        for h in producers {
            h.await.unwrap();
        }
        check([consumer.await.unwrap()]);
    })
}

fn crossbeam_mpmc() {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let (mut n, mut sum) = (0, 0);
                while let Ok(v) = rx.recv() {
                    n += 1;
                    sum += v;
                }
                (n, sum)
            })
        })
        .collect();
    drop(rx);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || (0..PER_PRODUCER).for_each(|i| tx.send(i).unwrap()))
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|h| h.join().unwrap());
    check(consumers.into_iter().map(|h| h.join().unwrap()));
}

fn std_mpsc_4x1() {
    let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(CAPACITY);
    let consumer = std::thread::spawn(move || {
        let (mut n, mut sum) = (0, 0);
        while let Ok(v) = rx.recv() {
            n += 1;
            sum += v;
        }
        (n, sum)
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || (0..PER_PRODUCER).for_each(|i| tx.send(i).unwrap()))
        })
        .collect();
    drop(tx);
    producers.into_iter().for_each(|h| h.join().unwrap());
    check([consumer.join().unwrap()]);
}

fn bench_mpmc(c: &mut Criterion) {
    let mut g = c.benchmark_group("channel_mpmc_4x4");
    // One iteration takes milliseconds: flat sampling keeps the run near the measurement time.
    g.throughput(Throughput::Elements(MESSAGES))
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("grove", |b| b.iter(grove_mpmc));
    g.bench_function("may_unbounded", |b| b.iter(may_mpmc));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    g.bench_function("tokio_async_channel", |b| {
        b.iter(|| tokio_async_channel_mpmc(&rt))
    });
    g.bench_function("tokio_mpsc_4x1", |b| b.iter(|| tokio_mpsc_4x1(&rt)));
    drop(rt);

    g.bench_function("crossbeam_threads", |b| b.iter(crossbeam_mpmc));
    g.bench_function("std_threads_4x1", |b| b.iter(std_mpsc_4x1));
    g.finish();
}
