//! Scheduler behaviour: blocked workers, the blocking monitor, timers under load, idle CPU,
//! the blocking pool, stack mappings.

mod common;

use common::{role, run_child, stderr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn rt_blocking_monitor_reports_a_hog_once_by_name() {
    if role().is_some() {
        let h = grove::Builder::new()
            .name("hog")
            .spawn(|| std::thread::sleep(Duration::from_millis(1_000)))
            .unwrap();
        h.join().unwrap();
        // A short run afterwards is no incident.
        grove::spawn(|| std::thread::sleep(Duration::from_millis(5)))
            .join()
            .unwrap();
        grove::sleep(Duration::from_millis(100));
        return;
    }
    let out = run_child(
        "rt_blocking_monitor_reports_a_hog_once_by_name",
        "hog",
        // 200 ms: the 5 ms run would need a stall of 195 ms to be reported too.
        &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "200")],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("has held worker").count(), 1, "{err}");
    assert!(err.contains("greenlet 'hog' (id "), "{err}");
    assert!(err.contains("GROVE_MAX_BLOCKING_MS=200"), "{err}");
}

#[test]
fn rt_blocking_monitor_off_at_zero() {
    if role().is_some() {
        grove::spawn(|| std::thread::sleep(Duration::from_millis(200)))
            .join()
            .unwrap();
        return;
    }
    let out = run_child(
        "rt_blocking_monitor_off_at_zero",
        "hog",
        &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success());
    assert!(
        !stderr(&out).contains("has held worker"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rt_greenlets_queued_behind_a_blocked_worker_are_stolen() {
    if role().is_some() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let t0 = Instant::now();
        let hog = grove::spawn(move || {
            // Queue work on this worker: a greenlet woken into `runnext`, and spawned ones on
            // the deque. Then hold the worker without parking.
            let waiter_done = d.clone();
            let slot: Arc<Mutex<Option<grove::rt::Unparker>>> = Arc::new(Mutex::new(None));
            let s2 = slot.clone();
            let waiter = grove::spawn(move || {
                grove::rt::park(
                    |u| {
                        *s2.lock().unwrap() = Some(u);
                        Some(|| ())
                    },
                    None,
                );
                waiter_done.fetch_add(1, SeqCst);
            });
            while slot.lock().unwrap().is_none() {
                grove::sleep(Duration::from_millis(1));
            }
            for _ in 0..10 {
                let d = d.clone();
                grove::spawn(move || {
                    d.fetch_add(1, SeqCst);
                });
            }
            slot.lock().unwrap().take().unwrap().unpark(); // into this worker's runnext
                                                           // Holds the worker until the work queued behind it is done elsewhere (10 s if it
                                                           // never is).
            while d.load(SeqCst) < 11 && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            waiter
        });
        while done.load(SeqCst) < 11 {
            assert!(
                t0.elapsed() < Duration::from_secs(8),
                "work stuck behind the hog"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        hog.join().unwrap().join().unwrap();
        return;
    }
    let out = run_child(
        "rt_greenlets_queued_behind_a_blocked_worker_are_stolen",
        "steal",
        &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "100")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_timer_fires_on_time_while_a_worker_is_blocked() {
    if role().is_some() {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let h = grove::spawn(move || {
            // The hog lands on this worker's deque; it blocks whichever worker runs it until the
            // timer has fired (or 5 s: what a timer stuck behind it would take).
            let d2 = d.clone();
            let hog = grove::spawn(move || {
                let t = Instant::now();
                while !d2.load(SeqCst) && t.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let t = Instant::now();
            grove::sleep(Duration::from_millis(50));
            let late = t.elapsed();
            d.store(true, SeqCst);
            hog.join().unwrap();
            late
        });
        let late = h.join().unwrap();
        assert!(
            late < Duration::from_millis(2_500),
            "timer fired after {late:?}"
        );
        return;
    }
    for _ in 0..3 {
        let out = run_child(
            "rt_timer_fires_on_time_while_a_worker_is_blocked",
            "timer",
            &[("GROVE_WORKERS", "2")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

fn wait_for_every_worker_to_sleep() {
    common::wait_for("every worker to sleep", || {
        grove::debug::awake_workers() == Some(0)
    });
}

/// The CPU this process uses while its thread sleeps for `window`.
fn cpu_used_over(window: Duration) -> Duration {
    let cpu0 = common::cpu_time();
    std::thread::sleep(window);
    common::cpu_time() - cpu0
}

#[test]
fn rt_idle_runtime_uses_no_cpu() {
    if role().is_some() {
        let hs: Vec<_> = (0..100)
            .map(|i| grove::spawn(move || grove::sleep(Duration::from_millis(i % 10))))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Everyone goes to sleep (a worker that stayed awake never does: the wait times out).
        wait_for_every_worker_to_sleep();
        let used = cpu_used_over(Duration::from_millis(1000));
        assert!(
            used < Duration::from_millis(10),
            "idle runtime used {used:?} of CPU in 1 s"
        );
        return;
    }
    let out = run_child(
        "rt_idle_runtime_uses_no_cpu",
        "idle",
        &[("GROVE_WORKERS", "4")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_a_worker_out_of_work_lingers_for_the_idle_spin_then_sleeps() {
    if role().is_some() {
        grove::spawn(|| ()).join().unwrap();
        let joined = Instant::now();
        // The worker that ran it is spinning now (0.4 s, set below), counted awake: with no
        // linger it would be asleep within microseconds.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            grove::debug::awake_workers().unwrap() > 0,
            "no worker lingered after running out of work"
        );
        // The spin is bounded: then everyone sleeps and the runtime uses no CPU.
        wait_for_every_worker_to_sleep();
        // (Generous for a loaded machine; a spin that ignored its bound would not end.)
        assert!(
            joined.elapsed() < Duration::from_secs(4),
            "the 0.4 s spin ended after {:?}",
            joined.elapsed()
        );
        let used = cpu_used_over(Duration::from_millis(500));
        assert!(
            used < Duration::from_millis(10),
            "used {used:?} of CPU in 0.5 s after the spin"
        );
        return;
    }
    let out = run_child(
        "rt_a_worker_out_of_work_lingers_for_the_idle_spin_then_sleeps",
        "linger",
        &[("GROVE_WORKERS", "2"), ("GROVE_IDLE_SPIN_US", "400000")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_spawn_blocking_runs_off_the_workers_and_joins_from_greenlets() {
    let worker_thread = grove::spawn(|| std::thread::current().id()).join().unwrap();
    let h = grove::spawn(move || {
        let job = grove::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(30));
            (
                std::thread::current().id(),
                std::thread::current().name().map(str::to_owned),
            )
        });
        job.join().unwrap()
    });
    let (tid, name) = h.join().unwrap();
    assert_ne!(tid, worker_thread);
    assert_eq!(name.as_deref(), Some("grove-blocking"));
    // From a plain thread too.
    assert_eq!(grove::spawn_blocking(|| 9).join().unwrap(), 9);
    // A panic in the job comes back through join.
    assert!(grove::spawn_blocking(|| -> () { panic!("job failed") })
        .join()
        .is_err());
}

#[test]
fn rt_spawn_blocking_parks_only_the_joining_greenlet() {
    if role().is_some() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let t = ticks.clone();
        let ticker = grove::spawn(move || {
            for _ in 0..10 {
                t.fetch_add(1, SeqCst);
                grove::sleep(Duration::from_millis(5));
            }
        });
        // The job ends when the ticker is done (or after 10 s: a blocked worker never ticks).
        let t = ticks.clone();
        let joiner = grove::spawn(move || {
            grove::spawn_blocking(move || {
                let start = Instant::now();
                while t.load(SeqCst) < 10 && start.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .join()
            .unwrap()
        });
        joiner.join().unwrap();
        assert_eq!(
            ticks.load(SeqCst),
            10,
            "the single worker was blocked by the join"
        );
        ticker.join().unwrap();
        return;
    }
    let out = run_child(
        "rt_spawn_blocking_parks_only_the_joining_greenlet",
        "blocking",
        &[("GROVE_WORKERS", "1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_blocking_pool_grows_to_its_cap_and_threads_exit_when_idle() {
    if role().is_some() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let (r, p) = (running.clone(), peak.clone());
                grove::spawn_blocking(move || {
                    let now = r.fetch_add(1, SeqCst) + 1;
                    p.fetch_max(now, SeqCst);
                    std::thread::sleep(Duration::from_millis(40));
                    r.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        assert!(grove::debug::blocking_threads() <= 3);
        for j in jobs {
            j.join().unwrap();
        }
        assert_eq!(peak.load(SeqCst), 3, "pool did not grow to its cap of 3");
        let t = Instant::now();
        while grove::debug::blocking_threads() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "idle pool threads did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let out = run_child(
        "rt_blocking_pool_grows_to_its_cap_and_threads_exit_when_idle",
        "pool",
        &[
            ("GROVE_MAX_BLOCKING_THREADS", "3"),
            ("GROVE_BLOCKING_KEEPALIVE_MS", "100"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_killed_blocking_job_that_has_not_started_never_runs() {
    if role().is_some() {
        let ran = Arc::new(AtomicBool::new(false));
        // The only pool thread is busy with `first` until the kill is done.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = grove::spawn_blocking(move || {
            let _ = released.recv_timeout(Duration::from_secs(10));
        });
        let r = ran.clone();
        let second = grove::spawn_blocking(move || r.store(true, SeqCst));
        second.kill();
        release.send(()).unwrap();
        first.join().unwrap();
        assert!(second
            .join()
            .unwrap_err()
            .downcast_ref::<grove::Killed>()
            .is_some());
        assert!(!ran.load(SeqCst));
        return;
    }
    let out = run_child(
        "rt_killed_blocking_job_that_has_not_started_never_runs",
        "pool",
        &[("GROVE_MAX_BLOCKING_THREADS", "1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_blocking_pool_shrinks_under_a_light_load_after_a_burst() {
    if role().is_some() {
        // A burst starts 12 threads; then one short job every 10 ms, which one thread serves.
        let burst: Vec<_> = (0..12)
            .map(|_| grove::spawn_blocking(|| std::thread::sleep(Duration::from_millis(60))))
            .collect();
        for j in burst {
            j.join().unwrap();
        }
        let peak = grove::debug::blocking_threads();
        assert!(peak >= 6, "the burst started only {peak} threads");
        // With one condvar for all idle threads, each job woke the next one in turn, which
        // restarted its 300 ms keep-alive (12 threads, a job every 10 ms: 120 ms apart), so
        // all 12 lived for ever. The thread idle the shortest time takes the job now.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1_200) {
            grove::spawn_blocking(|| ()).join().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = grove::debug::blocking_threads();
        assert!(
            left <= 2,
            "{left} of {peak} pool threads still alive under a light load"
        );
        return;
    }
    let out = run_child(
        "rt_blocking_pool_shrinks_under_a_light_load_after_a_burst",
        "pool",
        &[("GROVE_BLOCKING_KEEPALIVE_MS", "300")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_a_blocking_jobs_locals_never_pass_to_the_next_job() {
    grove::greenlet_local! { static NUM: std::cell::Cell<u64> = std::cell::Cell::new(0); }
    struct SetsLocal(u64);
    impl Drop for SetsLocal {
        fn drop(&mut self) {
            NUM.with(|n| n.set(self.0));
        }
    }
    if role().is_some() {
        // A job killed in the queue: its closure is dropped unrun on the pool thread, and the
        // value it captured sets a greenlet-local there as it goes.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let first = grove::spawn_blocking(move || {
            let _ = released.recv_timeout(Duration::from_secs(10));
        });
        let captured = SetsLocal(42);
        let queued = grove::spawn_blocking(move || drop(captured));
        queued.kill();
        release.send(()).unwrap();
        first.join().unwrap();
        assert!(queued.join().is_err());
        let seen = grove::spawn_blocking(|| NUM.with(|n| n.get()))
            .join()
            .unwrap();
        assert_eq!(seen, 0, "the killed job's value reached the next job");
        // A result whose handle is dropped after the job stored it but before it reported
        // done: `complete` drops it on the pool thread, after the job's locals were cleared.
        // The job leaves a local whose drop (in that clear) takes 60 ms; the handle goes 20 ms
        // into it. (Found by a review: spinning on `is_finished` first, as this test did, could
        // only drop the handle after `complete`, on this thread.)
        struct Slow;
        impl Drop for Slow {
            fn drop(&mut self) {
                std::thread::sleep(Duration::from_millis(60));
            }
        }
        grove::greenlet_local! {
            static SLOW: std::cell::RefCell<Option<Slow>> = std::cell::RefCell::new(None);
        }
        for _ in 0..3 {
            let (stored, storing) = std::sync::mpsc::channel::<()>();
            let h = grove::spawn_blocking(move || {
                SLOW.with(|s| *s.borrow_mut() = Some(Slow));
                stored.send(()).unwrap();
                SetsLocal(7)
            });
            storing.recv_timeout(Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_millis(20)); // inside `Slow`'s drop now
            drop(h);
            let seen = grove::spawn_blocking(|| NUM.with(|n| n.get()))
                .join()
                .unwrap();
            assert_eq!(seen, 0, "a dropped result's value reached the next job");
        }
        return;
    }
    let out = run_child(
        "rt_a_blocking_jobs_locals_never_pass_to_the_next_job",
        "pool",
        &[("GROVE_MAX_BLOCKING_THREADS", "1")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn count_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn rt_guard_pages_cost_no_mapping_per_greenlet() {
    if role().is_some() {
        let before = count_maps();
        let stop = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..20_000)
            .map(|_| {
                let s = stop.clone();
                grove::spawn(move || {
                    while !s.load(SeqCst) {
                        grove::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        grove::sleep(Duration::from_millis(50));
        let during = count_maps();
        stop.store(true, SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        println!(
            "maps before={before} during={during} madvise={}",
            grove::debug::guards_use_madvise()
        );
        if grove::debug::guards_use_madvise() {
            assert!(
                during < before + 100,
                "20k stacks took {} mappings",
                during - before
            );
        } else {
            assert!(
                during >= before + 20_000,
                "mprotect guards should split the mappings"
            );
        }
        return;
    }
    let out = run_child("rt_guard_pages_cost_no_mapping_per_greenlet", "maps", &[]);
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        stderr(&out)
    );
}

#[test]
fn rt_runnext_steals_race_the_owner_without_losing_a_greenlet() {
    if role().is_some() {
        // Runs of 800 ms until a steal has happened (at most ten): how soon one comes depends on
        // how the two cores are shared at that moment.
        let (mut trips, mut steals) = (0, 0);
        for _ in 0..10 {
            let (t, s) = common::pairs_beside_hogs(
                8,
                2,
                Duration::from_millis(800),
                Duration::from_secs(20),
            );
            (trips, steals) = (trips + t, steals + s);
            if steals > 0 {
                break;
            }
        }
        println!("{trips} round trips, {steals} runnext steals");
        assert!(trips > 0, "the pairs made no progress");
        assert!(steals > 0, "no greenlet was ever taken from a runnext slot");
        return;
    }
    let out = run_child(
        "rt_runnext_steals_race_the_owner_without_losing_a_greenlet",
        "race",
        &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rt_yielding_pinned_greenlet_lets_the_global_queue_run() {
    // One worker: a pinned greenlet polls a flag with `yield_now`; the greenlet that sets it was
    // spawned from a plain thread (the global queue). The pinned inbox was taken before the
    // global queue, even on the global queue's periodic turn: the setter never ran.
    if common::role().is_none() {
        let out = common::run_child(
            "rt_yielding_pinned_greenlet_lets_the_global_queue_run",
            "pinned",
            &[("GROVE_WORKERS", "1")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    let flag = Arc::new(AtomicBool::new(false));
    let spawned = Arc::new(AtomicBool::new(false));
    let (f, sp) = (flag.clone(), spawned.clone());
    let (started_tx, started) = std::sync::mpsc::channel();
    let poller = grove::Builder::new()
        .pinned(true)
        .spawn(move || {
            started_tx.send(()).unwrap();
            let t = Instant::now();
            // Yields counted once the setter is queued (this thread may be descheduled
            // between `spawn` and the store: that only undercounts).
            let mut yields = 0u64;
            while !f.load(SeqCst) && t.elapsed() < Duration::from_secs(5) {
                yields += u64::from(sp.load(SeqCst));
                grove::yield_now();
            }
            (f.load(SeqCst), yields)
        })
        .unwrap();
    started.recv().unwrap();
    let f = flag.clone();
    let setter = grove::spawn(move || f.store(true, SeqCst));
    spawned.store(true, SeqCst);
    let (seen, yields) = poller.join().unwrap();
    assert!(seen, "the setter never ran ({yields} yields)");
    assert!(yields <= 64, "the setter ran only after {yields} yields");
    setter.join().unwrap();
}

#[test]
fn rt_greenlet_woken_on_a_blocked_worker_is_taken_by_another() {
    // A greenlet that has held its worker long enough for the monitor to mark it blocked wakes
    // another: the woken one went to the blocked worker's `runnext`, and nobody was told, so
    // it waited until the busy one parked (600 ms here).
    if common::role().is_none() {
        let out = common::run_child(
            "rt_greenlet_woken_on_a_blocked_worker_is_taken_by_another",
            "blocked",
            &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "0")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    fn spin(d: Duration) {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    }
    let (tx, rx) = grove::sync::channel::<Instant>();
    let got = Arc::new(AtomicBool::new(false));
    let g = got.clone();
    let waiter = grove::spawn(move || {
        let latency = rx.recv().unwrap().elapsed();
        g.store(true, SeqCst);
        latency
    });
    grove::sleep(Duration::from_millis(20)); // parked in recv
    let busy = grove::spawn(move || {
        spin(Duration::from_millis(60)); // the monitor marks this worker blocked
        tx.send(Instant::now()).unwrap(); // wakes the waiter into this worker's runnext
                                          // Holds the worker until the waiter has run elsewhere (5 s if it never could).
        let t = Instant::now();
        while !got.load(SeqCst) && t.elapsed() < Duration::from_secs(5) {
            std::hint::spin_loop();
        }
    });
    let latency = waiter.join().unwrap();
    busy.join().unwrap();
    assert!(
        latency < Duration::from_millis(2_500),
        "the woken greenlet waited {latency:?}"
    );
}

#[test]
fn rt_pinned_greenlet_runs_beside_a_busy_deque_and_yielders() {
    // One worker: a pinned greenlet that sleeps 5 ms in a loop, beside a ping-pong pair (the
    // deque never runs dry) and a yielder (which goes to the global queue while the pinned
    // inbox holds work, so that queue is never empty at its turn). With the global turn taking
    // the global queue first every time, the pinned inbox never got one: 0 wake-ups in 2 s.
    if role().is_none() {
        let out = run_child(
            "rt_pinned_greenlet_runs_beside_a_busy_deque_and_yielders",
            "pinned",
            &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(AtomicUsize::new(0));
    let (atx, arx) = grove::sync::channel::<u32>();
    let (btx, brx) = grove::sync::channel::<u32>();
    let s = stop.clone();
    let a = grove::spawn(move || {
        while !s.load(SeqCst) {
            btx.send(1).unwrap();
            if arx.recv().is_err() {
                break;
            }
        }
    });
    let b = grove::spawn(move || {
        while let Ok(v) = brx.recv() {
            if atx.send(v).is_err() {
                break;
            }
        }
    });
    let s = stop.clone();
    let y = grove::spawn(move || {
        while !s.load(SeqCst) {
            grove::yield_now();
        }
    });
    let (s, t) = (stop.clone(), ticks.clone());
    let p = grove::Builder::new()
        .pinned(true)
        .spawn(move || {
            while !s.load(SeqCst) {
                grove::sleep(Duration::from_millis(5));
                t.fetch_add(1, SeqCst);
            }
        })
        .unwrap();
    // 20 wake-ups take 100 ms when it gets its turns; a starved one never gets there.
    let t = Instant::now();
    while ticks.load(SeqCst) < 20 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, SeqCst);
    let woke = ticks.load(SeqCst);
    for h in [a, b, y, p] {
        h.join().unwrap();
    }
    assert!(
        woke >= 20,
        "the pinned greenlet woke {woke} times in {:?}",
        t.elapsed()
    );
}

#[test]
fn rt_a_finished_greenlets_result_dropped_by_the_timers_may_sleep() {
    // A detached greenlet whose park had a deadline but was woken early leaves a stale timer
    // entry holding the last reference to it. Those entries used to be dropped with the timer
    // heap's lock held: the greenlet's result was dropped there, and a `Drop` that slept (armed
    // a timer) deadlocked on that lock, taking every timer of the runtime with it.
    if common::role().is_none() {
        let out = common::run_child(
            "rt_a_finished_greenlets_result_dropped_by_the_timers_may_sleep",
            "timers",
            &[("GROVE_WORKERS", "2")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    static DROPS_DONE: AtomicUsize = AtomicUsize::new(0);
    static TOKENS: Mutex<Vec<grove::rt::Unparker>> = Mutex::new(Vec::new());
    struct SleepsOnDrop;
    impl Drop for SleepsOnDrop {
        fn drop(&mut self) {
            grove::sleep(Duration::from_millis(1));
            DROPS_DONE.fetch_add(1, SeqCst);
        }
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        format!("drops done {}", DROPS_DONE.load(SeqCst))
    });
    const N: usize = 300;
    for _ in 0..N {
        drop(grove::spawn(|| {
            let _ = grove::rt::park(
                |u| {
                    TOKENS.lock().unwrap().push(u);
                    Some(|| ())
                },
                Some(Instant::now() + Duration::from_secs(60)),
            );
            SleepsOnDrop
        }));
    }
    common::wait_for("every greenlet parked", || {
        TOKENS.lock().unwrap().len() == N
    });
    let tokens = std::mem::take(&mut *TOKENS.lock().unwrap());
    for u in tokens {
        assert!(u.unpark());
        // Spread out, so that timers are cancelled while earlier greenlets have finished.
        std::thread::sleep(Duration::from_micros(200));
    }
    // The stale entries are dropped by a compaction (or when their deadline passes, in 60 s):
    // arm and cancel timers until a compaction has dropped results.
    let t = Instant::now();
    while DROPS_DONE.load(SeqCst) < N / 4 && t.elapsed() < Duration::from_secs(15) {
        let _ = grove::spawn(|| {
            for _ in 0..100 {
                grove::sleep(Duration::from_micros(1));
            }
        })
        .join();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        DROPS_DONE.load(SeqCst) >= N / 4,
        "only {} results dropped",
        DROPS_DONE.load(SeqCst)
    );
    let probe = grove::spawn(|| grove::sleep(Duration::from_millis(1)));
    probe.join().unwrap();
}

/// A value that joins a greenlet when it is dropped, and says what it got.
struct JoinsOnDrop(Option<grove::JoinHandle<u32>>, Arc<AtomicUsize>);

impl Drop for JoinsOnDrop {
    fn drop(&mut self) {
        let v = self.0.take().unwrap().join().unwrap();
        self.1.store(v as usize, SeqCst);
    }
}

#[test]
fn rt_a_detached_results_blocking_drop_in_the_worker_loop_holds_up_no_greenlet() {
    // A detached greenlet's result, dropped once it finishes. That was in the worker loop, right
    // after the greenlet finished, where a `Drop` that blocks blocked the worker thread with its
    // core: with one worker, a greenlet the `Drop` joined never ran; with more, neither did one
    // woken into that worker's `runnext`, which the monitor never marked blocked (no greenlet
    // ran); the loop came to lend its core to a stand-in while it waits. Now a greenlet whose
    // handle is gone drops its result itself, where a blocking `Drop` parks like any greenlet
    // code; the loop drops one only when the handle goes between the two (`Header::complete`),
    // and lends its core as before then.
    if !common::in_processes_with_workers(
        "rt_a_detached_results_blocking_drop_in_the_worker_loop_holds_up_no_greenlet",
        &["1", "2"],
    ) {
        return;
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        "a detached result's drop never finished".to_string()
    });
    // Its own child, still queued on the worker (or asleep) when the parent finishes.
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    drop(grove::spawn(move || {
        let child = grove::spawn(|| {
            grove::sleep(Duration::from_millis(10));
            7
        });
        JoinsOnDrop(Some(child), g)
    }));
    common::wait_for("the drop to join the child", || got.load(SeqCst) == 7);
    // A greenlet it woke into its worker's `runnext` just before it finished.
    let got = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = grove::sync::channel::<u32>();
    let parked = Arc::new(AtomicBool::new(false));
    let p = parked.clone();
    let r = grove::spawn(move || {
        p.store(true, SeqCst);
        rx.recv().unwrap()
    });
    common::wait_for("r to start", || parked.load(SeqCst));
    let g = got.clone();
    drop(grove::spawn(move || {
        tx.send(8).unwrap();
        JoinsOnDrop(Some(r), g)
    }));
    common::wait_for("the drop to join r", || got.load(SeqCst) == 8);
    assert_eq!(grove::spawn(|| 5).join().unwrap(), 5);
}

#[test]
fn rt_a_blocking_result_drop_as_a_worker_wakes_from_the_poller_holds_up_no_greenlet() {
    // A worker waking from the poller drops the tokens its poll woke and fires due timers, and
    // a stale timer token may be a finished greenlet's last reference: its result's `Drop` ran
    // while the worker was still counted asleep, and the stand-in that took its core counted it
    // out a second time (an idle-counter assertion, a poisoned lock, a hung runtime).
    if !common::in_processes_with_workers(
        "rt_a_blocking_result_drop_as_a_worker_wakes_from_the_poller_holds_up_no_greenlet",
        &["1", "2"],
    ) {
        return;
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        "the runtime hung after a result's drop in the poller's wake-up".to_string()
    });
    let got = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = grove::sync::channel::<()>();
    let g = got.clone();
    drop(grove::spawn(move || {
        // Woken early: its timer entry, now stale, keeps a reference to this greenlet.
        rx.recv_timeout(Duration::from_millis(100)).unwrap();
        let child = grove::spawn(|| {
            grove::sleep(Duration::from_millis(300));
            7
        });
        JoinsOnDrop(Some(child), g) // its drop joins; it runs when the stale timer comes due
    }));
    std::thread::sleep(Duration::from_millis(20));
    tx.send(()).unwrap();
    common::wait_for("the drop to join the child", || got.load(SeqCst) == 7);
    assert_eq!(grove::spawn(|| 5).join().unwrap(), 5);
}

#[test]
fn rt_a_greenlet_yielded_to_the_global_queue_behind_a_hog_is_run_by_an_idle_worker() {
    // A greenlet that yields while its worker's pinned inbox holds work goes to the global
    // queue without waking anyone. When that worker's next greenlet then held it, the monitor
    // marked it blocked but looked only at its deque and `runnext`: the other worker slept on.
    if role().is_none() {
        let out = run_child(
            "rt_a_greenlet_yielded_to_the_global_queue_behind_a_hog_is_run_by_an_idle_worker",
            "hog",
            &[("GROVE_WORKERS", "2"), ("GROVE_MAX_BLOCKING_MS", "0")],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        return;
    }
    let progress = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = grove::sync::channel::<()>();
    let (p, s) = (progress.clone(), stop.clone());
    let y = grove::spawn(move || {
        rx.recv().unwrap();
        while !s.load(SeqCst) {
            p.fetch_add(1, SeqCst);
            grove::yield_now();
        }
    });
    std::thread::sleep(Duration::from_millis(50)); // everyone asleep, Y parked
    let p = progress.clone();
    let m = grove::Builder::new()
        .pinned(true)
        .spawn(move || {
            // First let the other worker, woken to look for work as this one took it, go back
            // to sleep.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            tx.send(()).unwrap(); // Y into this worker's runnext
            grove::yield_now(); // this pinned greenlet into its inbox; Y runs, yields
            let before = p.load(SeqCst);
            let t = Instant::now();
            while p.load(SeqCst) == before && t.elapsed() < Duration::from_secs(5) {
                std::hint::spin_loop(); // holds the worker until Y runs elsewhere
            }
            p.load(SeqCst) - before
        })
        .unwrap();
    let ran = m.join().unwrap();
    stop.store(true, SeqCst);
    y.join().unwrap();
    assert!(ran > 0, "Y sat in the global queue while a worker slept");
}

#[test]
fn rt_the_monitor_runs_no_results_drop_itself() {
    // A finished, detached greenlet's last reference can be a stale timer token the monitor
    // drops (it fires the timers no busy worker came by to fire): its result's `Drop`, user
    // code that may block, ran on the monitor thread, whose timers and checks stopped
    // meanwhile. It now runs in a greenlet.
    if !common::in_processes_with_workers("rt_the_monitor_runs_no_results_drop_itself", &["1"]) {
        return;
    }
    struct RecordsThread(Arc<Mutex<Option<String>>>);
    impl Drop for RecordsThread {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            *self.0.lock().unwrap() = Some(name);
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let (tx, rx) = grove::sync::channel::<()>();
    let s = seen.clone();
    drop(grove::spawn(move || {
        // Woken early: the timer's entry goes stale, holding a reference to this greenlet.
        rx.recv_timeout(Duration::from_millis(30)).unwrap();
        RecordsThread(s)
    }));
    std::thread::sleep(Duration::from_millis(5));
    tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    // The only worker is held past the stale entry's deadline: the monitor pops it.
    grove::spawn(|| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            std::hint::spin_loop();
        }
    })
    .join()
    .unwrap();
    common::wait_for("the result's drop", || seen.lock().unwrap().is_some());
    let name = seen.lock().unwrap().clone().unwrap();
    assert_ne!(name, "grove-monitor");
}

#[test]
fn rt_a_timer_compaction_whose_drops_park_keeps_no_thread_local_across_the_switch() {
    // The timer heap's compaction drops stale tokens, which may hold the last reference to a
    // finished greenlet whose result's `Drop` parks; the compacting greenlet may then resume on
    // another thread. The compaction kept its first thread's thread-local address across that
    // and wrote to it: here that thread is a stand-in that has exited, and glibc (told to
    // cache no thread stacks) has unmapped its thread-locals: SIGSEGV. Found by a review. (The
    // address is kept only by an optimised build: `cargo test --release` catches the bug.)
    if role().is_some() {
        common::exit_if_still_running_after(Duration::from_secs(30), || "hung".into());
        static FIRST: AtomicBool = AtomicBool::new(true);
        static IN_DROP: AtomicBool = AtomicBool::new(false);
        struct SleepsOnDrop;
        impl Drop for SleepsOnDrop {
            fn drop(&mut self) {
                if FIRST.swap(false, SeqCst) {
                    IN_DROP.store(true, SeqCst);
                    grove::sleep(Duration::from_millis(400));
                }
            }
        }
        // 64 finished, detached greenlets, each referred to only by a stale timer entry (woken
        // before their timeout): one short of a compaction.
        let mut senders = Vec::new();
        for _ in 0..64 {
            let (tx, rx) = grove::sync::channel::<()>();
            drop(grove::spawn(move || {
                rx.recv_timeout(Duration::from_secs(10)).unwrap();
                SleepsOnDrop
            }));
            senders.push(tx);
        }
        common::wait_for("the timers to be armed", || {
            grove::debug::armed_timers() >= 64
        });
        for tx in &senders {
            tx.send(()).unwrap();
        }
        // (A send fails once its greenlet has finished and dropped the receiver.)
        common::wait_for("the greenlets to finish", || {
            senders.iter().all(|tx| tx.send(()).is_err())
        });
        // The only worker's greenlet blocks its thread mid-unwind: its core goes to a stand-in.
        let (release, released) = grove::sync::channel::<()>();
        struct BlocksOnDrop(grove::sync::Receiver<()>);
        impl Drop for BlocksOnDrop {
            fn drop(&mut self) {
                let _ = self.0.recv();
            }
        }
        let unwinder = grove::spawn(move || {
            let _g = BlocksOnDrop(released);
            std::panic::resume_unwind(Box::new("grove test: unwind on purpose"));
        });
        common::wait_for("a stand-in thread", || {
            common::thread_names()
                .iter()
                .any(|n| n.starts_with("grove-worker-0."))
        });
        // This greenlet runs on the stand-in; its cancelled timer is the 65th stale one, so it
        // compacts, and the first result's drop parks it inside the compaction.
        let (ctx, crx) = grove::sync::channel::<()>();
        let compactor = grove::spawn(move || {
            crx.recv_timeout(Duration::from_secs(10)).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        ctx.send(()).unwrap();
        common::wait_for("the result's drop", || IN_DROP.load(SeqCst));
        // The stand-in gives the core back and exits while the compactor sleeps.
        release.send(()).unwrap();
        common::wait_for("the stand-in to exit", || {
            !common::thread_names()
                .iter()
                .any(|n| n.starts_with("grove-worker-0."))
        });
        // A thread with a stack no cached one fits: its join frees the cached stacks, the
        // stand-in's included (with glibc's stack cache off).
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| ())
            .unwrap()
            .join()
            .unwrap();
        assert!(unwinder.join().is_err());
        compactor.join().unwrap();
        return;
    }
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    let out = run_child(
        "rt_a_timer_compaction_whose_drops_park_keeps_no_thread_local_across_the_switch",
        "compact",
        &[
            ("GROVE_WORKERS", "1"),
            ("GLIBC_TUNABLES", "glibc.pthread.stack_cache_size=0"),
        ],
    );
    assert!(
        out.status.success(),
        "signal {:?}: {}",
        common::signal(&out),
        stderr(&out)
    );
}

#[test]
fn rt_timer_fires_on_time_while_its_worker_is_blocked_and_nobody_sleeps_in_the_poller() {
    if !common::in_processes_with_workers(
        "rt_timer_fires_on_time_while_its_worker_is_blocked_and_nobody_sleeps_in_the_poller",
        &["2", "4"],
    ) {
        return;
    }
    // A greenlet woken by the poller leaves it with nobody inside (the other workers went to
    // sleep on their condvars while it held it), hands its worker to a hog that blocks the
    // thread, and waits 20 ms. Its timer must fire on time, on another worker: it was up to
    // two monitor rounds late (10-20 ms). The hog comes through `runnext` before the wait, or
    // through the wait's own unlock step (a condvar's mutex handed to it after the timer was
    // armed; a first fix looked at the queues too early for that one, found by a review).
    for hog_via_unlock_step in [false, true] {
        let mut late: Vec<Duration> = (0..5)
            .map(|_| oversleep_behind_a_hog(hog_via_unlock_step))
            .collect();
        late.sort();
        // The median round: one bad round in five may be the machine's (a loaded CI host).
        assert!(
            late[2] < Duration::from_millis(5),
            "hog via unlock step {hog_via_unlock_step}: a 20 ms wait overslept by {late:?}"
        );
    }
}

/// One round of the test above: how much later than 20 ms the wait ended.
fn oversleep_behind_a_hog(hog_via_unlock_step: bool) -> Duration {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (mut w, mut r) = std::os::unix::net::UnixStream::pair().unwrap();
    r.set_nonblocking(true).unwrap();
    let m = Arc::new(grove::sync::Mutex::new(()));
    let cv = Arc::new(grove::sync::Condvar::new());
    let (tx, rx) = grove::sync::bounded::<()>(1);
    let m2 = m.clone();
    let hog = grove::spawn(move || {
        rx.recv().unwrap();
        if hog_via_unlock_step {
            drop(m2.lock()); // parks until the sleeper's wait releases the mutex
        }
        std::thread::sleep(Duration::from_millis(100)); // holds its worker thread
    });
    let sleeper = grove::spawn(move || {
        let mut b = [0u8; 1];
        while r.read(&mut b).is_err() {
            grove::net::wait_readable(r.as_raw_fd(), Some(Duration::from_secs(10))).unwrap();
        }
        let mut g = m.lock();
        tx.send(()).unwrap(); // the hog goes to this worker's runnext: nobody is woken
        if hog_via_unlock_step {
            grove::yield_now(); // the hog runs and parks on the mutex
        }
        let t = Instant::now();
        cv.wait_timeout(&mut g, Duration::from_millis(20));
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50)); // every worker idle, one in the poller
    w.write_all(b"x").unwrap();
    let took = sleeper.join().unwrap();
    hog.join().unwrap();
    took.saturating_sub(Duration::from_millis(20))
}
