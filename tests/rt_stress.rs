//! Long stress runs, behind `--ignored`:
//! `cargo test --release --test rt_stress -- --ignored --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 1024
}

#[test]
#[ignore = "stress: a million live greenlets (about 5 GiB)"]
fn rt_stress_one_million_parked_greenlets() {
    const N: usize = 1_000_000;
    let tokens: Arc<Mutex<Vec<grove::rt::Unparker>>> = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let started = Arc::new(AtomicUsize::new(0));
    let rss0 = rss_bytes();
    let t = Instant::now();
    let mut handles = Vec::with_capacity(N);
    for _ in 0..N {
        let (tokens, started) = (tokens.clone(), started.clone());
        handles.push(grove::spawn(move || {
            started.fetch_add(1, SeqCst);
            grove::rt::park(
                |u| {
                    tokens.lock().unwrap().push(u);
                    Some(|| ())
                },
                None,
            );
        }));
    }
    while started.load(SeqCst) < N {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t.elapsed();
    let rss = rss_bytes() - rss0;
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count();
    println!(
        "1M parked: {:.0} ns/greenlet, {} bytes RSS/greenlet, {maps} mappings",
        took.as_nanos() as f64 / N as f64,
        rss / N
    );
    // Wake them all and join them all.
    let t = Instant::now();
    loop {
        let batch: Vec<_> = std::mem::take(&mut *tokens.lock().unwrap());
        if batch.is_empty() && handles.iter().all(|h| h.is_finished()) {
            break;
        }
        for u in batch {
            u.unpark();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for h in handles {
        h.join().unwrap();
    }
    println!("woke and joined 1M in {:?}", t.elapsed());
    assert!(maps < 10_000, "{maps} mappings for 1M stacks");
}

#[test]
#[ignore = "stress: 100k sleepers"]
fn rt_stress_hundred_thousand_sleepers() {
    let t = Instant::now();
    let cpu0 = common::cpu_time();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let handles: Vec<_> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ms = 1 + seed % 100;
            grove::spawn(move || grove::sleep(Duration::from_millis(ms)))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "100k sleepers: wall {:?}, cpu {:?}",
        t.elapsed(),
        common::cpu_time() - cpu0
    );
}

#[test]
#[ignore = "stress: a random mix of spawn, sleep, kill, timeout and join for 10 s"]
fn rt_stress_kill_timeout_join_mix() {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let drivers: Vec<_> = (0..8u64)
        .map(|d| {
            let (stop, done) = (stop.clone(), done.clone());
            grove::spawn(move || {
                let mut x = d + 1;
                while !stop.load(SeqCst) {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let us = (x >> 33) % 2000;
                    let victim = grove::spawn(move || {
                        let _ = grove::timeout(Duration::from_micros(us / 2), || {
                            grove::sleep(Duration::from_micros(us))
                        });
                        grove::yield_now();
                        us
                    });
                    if x % 3 == 0 {
                        victim.kill();
                    }
                    let r = victim.join();
                    if let Err(e) = r {
                        assert!(e.downcast_ref::<grove::Killed>().is_some());
                    }
                    done.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, SeqCst);
    for d in drivers {
        d.join().unwrap();
    }
    println!("mix: {} rounds", done.load(SeqCst));
    // Progress, not throughput: alone this makes ~215,000 rounds, but the other stress tests
    // of this file run beside it in the same runtime, and with `GROVE_WORKERS=1` the million
    // parked greenlets' page faults hold the only worker for most of the 10 s (~10,000 rounds
    // then; fewer than 1,000 once, with a CI run loading the machine).
    assert!(done.load(SeqCst) > 100);
}

#[test]
#[ignore = "stress: ~10 s of runnext steals racing their owners"]
fn rt_stress_runnext_steals_race_the_owner() {
    // In a child of its own: beside the other stress tests no worker is ever idle, so nobody
    // would steal.
    if common::role().is_some() {
        let workers = grove::workers();
        let (trips, steals) = common::pairs_beside_hogs(
            16,
            workers,
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        println!("{trips} round trips, {steals} runnext steals ({workers} workers)");
        assert!(trips > 0, "the pairs made no progress");
        if workers > 1 {
            assert!(steals > 0, "no greenlet was ever taken from a runnext slot");
        }
        return;
    }
    let workers = std::env::var("GROVE_WORKERS").unwrap_or_else(|_| "2".into());
    let out = common::run_child(
        "rt_stress_runnext_steals_race_the_owner",
        "race",
        &[("GROVE_WORKERS", &workers), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    println!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("steals"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}
