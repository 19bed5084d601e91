//! Cancellation: `JoinHandle::kill` and `timeout`, in greenlets and on plain threads.

mod common;

use grove::Killed;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sets its flag when dropped: shows destructors ran during an unwind.
struct Flag(Arc<AtomicBool>);
impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

fn is_killed(e: &Box<dyn std::any::Any + Send>) -> bool {
    e.downcast_ref::<Killed>().is_some()
}

#[test]
fn rt_kill_unwinds_a_parked_greenlet_and_runs_destructors() {
    let dropped = Arc::new(AtomicBool::new(false));
    let reached_end = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (d, r, s) = (dropped.clone(), reached_end.clone(), started.clone());
    let h = grove::spawn(move || {
        let _flag = Flag(d);
        s.store(true, SeqCst);
        grove::sleep(Duration::from_secs(30));
        r.store(true, SeqCst);
    });
    common::wait_for("the greenlet to start", || started.load(SeqCst));
    grove::sleep(Duration::from_millis(20)); // let it park (a kill before that unwinds it too)
    let t = Instant::now();
    h.kill();
    let err = h.join().unwrap_err();
    assert!(is_killed(&err));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(dropped.load(SeqCst), "destructor did not run");
    assert!(!reached_end.load(SeqCst));
}

#[test]
fn rt_kill_takes_effect_at_the_next_blocking_call() {
    let go = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let after = Arc::new(AtomicUsize::new(0));
    let (g, s, a) = (go.clone(), started.clone(), after.clone());
    let h = grove::spawn(move || {
        s.store(true, SeqCst);
        while !g.load(SeqCst) {
            std::hint::spin_loop(); // busy: no blocking call, the kill must wait
        }
        a.fetch_add(1, SeqCst); // runs: the kill is not delivered mid-computation
        grove::yield_now(); // the next blocking call: unwinds here
        a.fetch_add(1, SeqCst);
    });
    // Kill only once it runs: a kill before the first run means it never runs
    // (another test), which is not what this one checks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.load(SeqCst) {
        assert!(Instant::now() < deadline, "the greenlet never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.kill();
    go.store(true, SeqCst);
    assert!(is_killed(&h.join().unwrap_err()));
    assert_eq!(after.load(SeqCst), 1);
}

#[test]
fn rt_kill_before_first_run_means_it_never_runs() {
    if common::role().is_some() {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        // On the only worker, nothing else runs until this greenlet parks.
        let outer = grove::spawn(move || {
            let victim = grove::spawn(move || r.store(true, SeqCst));
            victim.kill();
            victim.join()
        });
        let res = outer.join().unwrap();
        assert!(is_killed(&res.unwrap_err()));
        assert!(!ran.load(SeqCst), "a greenlet killed before it ran did run");
        return;
    }
    let out = common::run_child(
        "rt_kill_before_first_run_means_it_never_runs",
        "unstarted",
        &[("GROVE_WORKERS", "1")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn rt_kill_finished_greenlet_has_no_effect() {
    let h = grove::spawn(|| 7);
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    h.kill();
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn rt_kill_a_joining_greenlet_leaves_the_target_running() {
    let release = Arc::new(grove::sync::Event::new());
    let r = release.clone();
    let target = grove::spawn(move || {
        r.wait();
        5
    });
    let target_greenlet = target.greenlet();
    let target = Arc::new(std::sync::Mutex::new(Some(target)));
    let t2 = target.clone();
    let joining = Arc::new(AtomicBool::new(false));
    let j = joining.clone();
    let joiner = grove::spawn(move || {
        let h = t2.lock().unwrap().take().unwrap();
        j.store(true, SeqCst);
        h.join().unwrap()
    });
    common::wait_for("the joiner to start joining", || joining.load(SeqCst));
    joiner.kill();
    assert!(is_killed(&joiner.join().unwrap_err()));
    assert!(
        !target_greenlet.is_finished(),
        "killing the joiner ended the target"
    );
    release.set();
    assert!(target_greenlet.wait_timeout(Duration::from_secs(10)));
}

#[test]
fn rt_killed_greenlet_prints_no_panic_message() {
    if common::role().is_some() {
        let h = grove::spawn(|| grove::sleep(Duration::from_secs(30)));
        grove::sleep(Duration::from_millis(10));
        h.kill();
        assert!(is_killed(&h.join().unwrap_err()));
        let r = grove::spawn(|| {
            grove::timeout(Duration::from_millis(5), || {
                grove::sleep(Duration::from_secs(30))
            })
        });
        assert!(r.join().unwrap().is_err());
        return;
    }
    let out = common::run_child("rt_killed_greenlet_prints_no_panic_message", "quiet", &[]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(!err.contains("panicked"), "unexpected panic output: {err}");
}

#[test]
fn rt_kill_many_parked_greenlets() {
    let hs: Vec<_> = (0..500)
        .map(|_| grove::spawn(|| grove::sleep(Duration::from_secs(60))))
        .collect();
    grove::sleep(Duration::from_millis(20));
    for h in &hs {
        h.kill();
    }
    for h in hs {
        assert!(is_killed(&h.join().unwrap_err()));
    }
}

#[test]
fn rt_timeout_returns_value_when_in_time() {
    let r = grove::spawn(|| {
        grove::timeout(Duration::from_secs(5), || {
            grove::sleep(Duration::from_millis(5));
            11
        })
    });
    assert_eq!(r.join().unwrap(), Ok(11));
}

#[test]
fn rt_timeout_elapses_and_runs_destructors() {
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let h = grove::spawn(move || {
        let t = Instant::now();
        let r = grove::timeout(Duration::from_millis(30), move || {
            let _f = Flag(d);
            grove::sleep(Duration::from_secs(30));
            1
        });
        (r, t.elapsed())
    });
    let (r, took) = h.join().unwrap();
    assert_eq!(r.unwrap_err().to_string(), "deadline has elapsed");
    assert!(
        took >= Duration::from_millis(30) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(dropped.load(SeqCst));
}

#[test]
fn rt_nested_timeouts_only_the_earliest_fires_and_only_its_own_catches() {
    let h = grove::spawn(|| {
        // Outer is earlier: the inner timeout must not catch it.
        let outer = grove::timeout(Duration::from_millis(20), || {
            let inner = grove::timeout(Duration::from_secs(10), || {
                grove::sleep(Duration::from_secs(30));
            });
            panic!("inner timeout returned {inner:?} instead of letting the outer one through");
        });
        assert!(outer.is_err());
        // Inner is earlier: it catches, and the outer carries on.
        let outer = grove::timeout(Duration::from_secs(10), || {
            let inner = grove::timeout(Duration::from_millis(10), || {
                grove::sleep(Duration::from_secs(30));
            });
            assert!(inner.is_err());
            "outer finished"
        });
        assert_eq!(outer, Ok("outer finished"));
    });
    h.join().unwrap();
}

#[test]
fn rt_timeout_works_on_a_plain_thread() {
    let t = Instant::now();
    let r = grove::timeout(Duration::from_millis(20), || {
        grove::sleep(Duration::from_secs(30));
    });
    assert!(r.is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(grove::timeout(Duration::from_secs(1), || 3), Ok(3));
}

#[test]
fn rt_timeout_interrupts_join() {
    let h = grove::spawn(|| {
        let slow = grove::spawn(|| grove::sleep(Duration::from_millis(300)));
        let r = grove::timeout(Duration::from_millis(20), || slow.join());
        r.is_err()
    });
    assert!(h.join().unwrap());
}

#[test]
fn rt_timeout_deadline_already_passed_at_next_blocking_call() {
    let h = grove::spawn(|| {
        grove::timeout(Duration::from_millis(5), || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(20) {
                std::hint::spin_loop(); // not blocking: cannot be interrupted here
            }
            grove::yield_now(); // the scope has expired: unwinds here
            unreachable!("yield_now returned after the deadline");
        })
    });
    assert!(h.join().unwrap().is_err());
}

#[test]
fn rt_timeout_error_converts_to_io_timed_out() {
    let e: std::io::Error = grove::timeout(Duration::ZERO, || grove::sleep(Duration::from_secs(1)))
        .unwrap_err()
        .into();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn rt_kill_all_kills_parked_running_and_unstarted_greenlets() {
    let (tx, rx) = grove::sync::unbounded::<()>();
    let spinning = Arc::new(AtomicBool::new(true));
    let mut handles = Vec::new();
    // Parked on a channel (a wait-queue park), parked in a sleep (a timed park), busy without
    // a blocking call (the kill lands at its next one), and some that may not have started.
    for _ in 0..50 {
        let rx = rx.clone();
        handles.push(grove::spawn(move || {
            let _ = rx.recv();
        }));
        handles.push(grove::spawn(|| grove::sleep(Duration::from_secs(3600))));
    }
    let s = spinning.clone();
    handles.push(grove::spawn(move || {
        while s.load(SeqCst) {
            std::hint::spin_loop();
        }
        grove::yield_now();
    }));
    for _ in 0..50 {
        handles.push(grove::spawn(|| grove::sleep(Duration::from_secs(3600))));
    }
    std::thread::sleep(Duration::from_millis(20));
    let greenlets: Vec<grove::Greenlet> = handles.iter().map(|h| h.greenlet()).collect();
    let t = Instant::now();
    grove::kill_all(&greenlets);
    spinning.store(false, SeqCst);
    for h in handles {
        assert!(
            is_killed(&h.join().unwrap_err()),
            "a greenlet survived kill_all"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(tx);
}

/// Runs its closure when dropped: a destructor that blocks while its greenlet unwinds.
struct OnDrop<F: FnMut()>(F);
impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn rt_a_destructor_that_blocks_during_an_unwind_breaks_nobody_else() {
    // In a child: A holds its worker for ~100 ms on purpose, which on one worker would hold up
    // the other tests' greenlets in this process.
    if !common::in_processes_with_workers(
        "rt_a_destructor_that_blocks_during_an_unwind_breaks_nobody_else",
        &["1", "2"],
    ) {
        return;
    }
    // Greenlet A is killed; a destructor of its blocks in `recv` while A unwinds, and A is
    // killed again meanwhile. "This thread is panicking" is the worker thread's state: had A
    // switched away mid-unwind, the next greenlet on that worker would have inherited it, and
    // its `timeout` would never fire; the second kill turned A's `recv` into an error on a live
    // channel. Now A holds its worker until the unwind is over, and the rest goes on.
    let (tx, rx) = grove::sync::channel::<u32>();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let a = grove::spawn(move || {
        let _cleanup = OnDrop(|| {
            if let Ok(v) = rx.recv() {
                g.store(v as usize, SeqCst);
            }
        });
        s.store(true, SeqCst);
        grove::sleep(Duration::from_secs(30));
    });
    common::wait_for("A to start", || started.load(SeqCst));
    grove::sleep(Duration::from_millis(20));
    a.kill();
    grove::sleep(Duration::from_millis(20));
    a.kill();
    // B waits with a timeout on a channel whose sender stays alive: it must time out.
    let (keep, never) = grove::sync::channel::<u32>();
    let b = grove::spawn(move || grove::timeout(Duration::from_millis(50), || never.recv()));
    // Free A's destructor (on one worker, B only runs once A's unwind is over).
    std::thread::sleep(Duration::from_millis(100));
    tx.send(7).unwrap();
    assert!(is_killed(&a.join().unwrap_err()));
    assert_eq!(
        got.load(SeqCst),
        7,
        "A's recv did not get the value sent to it"
    );
    let b = b.join().unwrap();
    assert!(b.is_err(), "B's timeout did not fire: {b:?}");
    drop(keep);
}

#[test]
fn rt_a_destructor_waiting_for_a_greenlet_on_its_own_worker_during_an_unwind_completes() {
    // A greenlet that must block while it unwinds blocks its worker thread (see "Parking while
    // unwinding" in runtime/src/park.rs). With one worker, what it waits for can only happen if
    // that worker's other greenlets still run: its core is lent to a stand-in thread meanwhile.
    // It used to deadlock: C, which A's destructor waits for, never ran.
    if !common::in_processes_with_workers(
        "rt_a_destructor_waiting_for_a_greenlet_on_its_own_worker_during_an_unwind_completes",
        &["1", "2"],
    ) {
        return;
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        "the destructor's wait never ended".to_string()
    });
    let pinned_thread = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = grove::sync::channel::<u32>();
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let p = pinned_thread.clone();
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    // P is pinned to whichever worker it first runs on, and wakes up now and then while A's
    // destructor waits: it must always run on the same OS thread, lent core or not.
    let pinned = grove::Builder::new()
        .pinned(true)
        .spawn(move || {
            for _ in 0..20 {
                p.lock().unwrap().push(std::thread::current().id());
                grove::sleep(Duration::from_millis(5));
            }
        })
        .unwrap();
    let a = grove::spawn(move || {
        let _cleanup = OnDrop(|| {
            // Every greenlet of this worker, C included, waits behind this recv unless the
            // worker's core is lent out.
            if let Ok(v) = rx.recv() {
                g.store(v as usize, SeqCst);
            }
            // Blocked again during the same unwind: still no deadlock.
            let (tx2, rx2) = grove::sync::bounded::<u32>(0);
            let c2 = grove::spawn(move || tx2.send(9).unwrap());
            assert_eq!(rx2.recv(), Ok(9));
            c2.join().unwrap();
        });
        // C runs on this worker (spawned from here, behind A) unless another worker steals it.
        let _c = grove::spawn(move || {
            grove::sleep(Duration::from_millis(30));
            tx.send(7).unwrap();
        });
        s.store(true, SeqCst);
        grove::sleep(Duration::from_secs(30));
    });
    common::wait_for("A to start", || started.load(SeqCst));
    a.kill();
    assert!(is_killed(&a.join().unwrap_err()));
    assert_eq!(got.load(SeqCst), 7, "A's destructor did not get C's value");
    pinned.join().unwrap();
    let threads = pinned_thread.lock().unwrap();
    assert!(
        threads.iter().all(|t| *t == threads[0]),
        "a pinned greenlet ran on more than one thread: {threads:?}"
    );
}

#[test]
fn rt_nested_lends_of_a_core_during_unwinds_each_come_back() {
    // One worker. A's destructor blocks mid-unwind, so the core goes to a stand-in; there B is
    // killed and its destructor blocks too, so the core goes on to a second stand-in, where C
    // frees A first: A's thread wants the core back while B still holds its stand-in's thread.
    // Everything must finish, and the core end up where it started.
    if common::role().is_none() {
        let out = common::run_child(
            "rt_nested_lends_of_a_core_during_unwinds_each_come_back",
            "unwind",
            &[("GROVE_WORKERS", "1")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        "a lent core never came back".to_string()
    });
    let started = Arc::new(AtomicUsize::new(0));
    let waiter = |rx: grove::sync::Receiver<u32>, got: Arc<AtomicUsize>| {
        let started = started.clone();
        move || {
            let _cleanup = OnDrop(move || {
                if let Ok(v) = rx.recv() {
                    got.store(v as usize, SeqCst);
                }
            });
            started.fetch_add(1, SeqCst);
            grove::sleep(Duration::from_secs(30));
        }
    };
    let worker_thread = grove::Builder::new()
        .pinned(true)
        .spawn(|| std::thread::current().id())
        .unwrap()
        .join()
        .unwrap();
    let (tx_a, rx_a) = grove::sync::channel::<u32>();
    let (tx_b, rx_b) = grove::sync::channel::<u32>();
    let (got_a, got_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = grove::spawn(waiter(rx_a, got_a.clone()));
    let b = grove::spawn(waiter(rx_b, got_b.clone()));
    let c = grove::spawn(move || {
        grove::sleep(Duration::from_millis(100));
        tx_a.send(1).unwrap();
        grove::sleep(Duration::from_millis(30));
        tx_b.send(2).unwrap();
    });
    // Killed before their first run, they would have no destructor to block in.
    common::wait_for("A and B to start", || started.load(SeqCst) == 2);
    a.kill();
    grove::sleep(Duration::from_millis(30));
    b.kill();
    assert!(is_killed(&a.join().unwrap_err()));
    assert!(is_killed(&b.join().unwrap_err()));
    c.join().unwrap();
    assert_eq!((got_a.load(SeqCst), got_b.load(SeqCst)), (1, 2));
    // The core is back on the worker's own thread: a greenlet pinned before the lends and one
    // pinned after them run on the same thread.
    let after = grove::Builder::new()
        .pinned(true)
        .spawn(|| std::thread::current().id())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(after, worker_thread);
}

#[test]
fn rt_a_greenlet_pinned_on_first_run_is_not_stranded_on_a_lent_core() {
    // Two workers. A's destructor, blocking mid-unwind, lends A's core to a stand-in; it then
    // spawns P, pinned on its first run, and joins it. The stand-in took P and pinned it to the
    // lent core, where it could only run once the lend was over, which waited for P: deadlock,
    // though the other worker was free (it had only to finish a busy greenlet).
    if common::role().is_none() {
        let out = common::run_child(
            "rt_a_greenlet_pinned_on_first_run_is_not_stranded_on_a_lent_core",
            "unwind",
            &[("GROVE_WORKERS", "2")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    common::exit_if_still_running_after(Duration::from_secs(20), || {
        "the pinned greenlet never ran".to_string()
    });
    let a = grove::spawn(|| {
        let _cleanup = OnDrop(|| {
            // Keeps the other worker busy for a while (once it has stolen this).
            let busy = grove::spawn(|| {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(300) {}
            });
            std::thread::sleep(Duration::from_millis(50));
            let p = grove::Builder::new().pinned(true).spawn(|| 5).unwrap();
            assert_eq!(p.join().unwrap(), 5);
            busy.join().unwrap();
        });
        panic!("unwinds through a destructor that joins a pinned greenlet");
    });
    assert!(a.join().is_err());
}

#[test]
fn rt_timeout_bounds_a_wait_in_a_destructor_during_an_unwind() {
    // A destructor that runs while its greenlet is killed (or its thread panics) waits with a
    // `timeout` around it. The unwind cannot unwind again, but the deadline must still end the
    // wait: it used to be dropped, and the wait lasted for ever (holding the worker).
    if !common::in_processes_with_workers(
        "rt_timeout_bounds_a_wait_in_a_destructor_during_an_unwind",
        &["1", "2"],
    ) {
        return;
    }
    for green in [true, false] {
        let outcome = Arc::new(std::sync::Mutex::new(None));
        let o = outcome.clone();
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let body = move || {
            let (_keep, never) = grove::sync::channel::<u32>();
            let _cleanup = OnDrop(move || {
                let t = Instant::now();
                let r = grove::timeout(Duration::from_millis(50), || never.recv());
                *o.lock().unwrap() = Some((r.is_err(), t.elapsed()));
            });
            s.store(true, SeqCst);
            if green {
                grove::sleep(Duration::from_secs(30));
            } else {
                panic!("a plain thread's panic unwinds through the destructor");
            }
        };
        let t = Instant::now();
        if green {
            let h = grove::spawn(body);
            common::wait_for("the greenlet to start", || started.load(SeqCst));
            h.kill();
            assert!(is_killed(&h.join().unwrap_err()));
        } else {
            assert!(std::thread::spawn(body).join().is_err());
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the unwind took {:?}",
            t.elapsed()
        );
        let (elapsed, waited) = outcome.lock().unwrap().take().expect("the destructor ran");
        assert!(
            elapsed,
            "timeout did not report its deadline (green: {green})"
        );
        assert!(
            waited >= Duration::from_millis(50),
            "waited only {waited:?}"
        );
    }
}

/// Panics when dropped.
struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a drop that panics (expected in this test)");
    }
}

/// Joins a greenlet when dropped: a destructor that blocks.
struct JoinsOnDrop(Option<grove::JoinHandle<()>>);
impl Drop for JoinsOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn rt_values_dropped_outside_their_greenlet_break_no_worker() {
    // The captures of a greenlet killed before it ran, and the result of a detached greenlet,
    // were dropped on the worker's own stack: a `Drop` that panicked ended the worker thread
    // (the killed greenlet never completed; with one worker nothing ran again), and one that
    // blocked blocked the worker. In a child, one worker.
    if let Some(how) = common::role() {
        let busy = grove::spawn(|| spin(Duration::from_millis(100))); // holds the one worker
        std::thread::sleep(Duration::from_millis(10));
        let h = match how.as_str() {
            "unstarted_panic" => {
                let p = PanicsOnDrop;
                grove::spawn(move || drop(p))
            }
            "unstarted_join" => {
                let g = JoinsOnDrop(Some(grove::spawn(|| {
                    grove::sleep(Duration::from_millis(20))
                })));
                grove::spawn(move || drop(g))
            }
            _ => {
                drop(grove::spawn(|| PanicsOnDrop)); // detached: its result is dropped for it
                grove::spawn(|| ())
            }
        };
        if how != "result_panic" {
            h.kill(); // before it ever runs: the worker is busy
        }
        busy.join().unwrap();
        assert!(
            h.wait_timeout(Duration::from_secs(5)),
            "{how}: never finished"
        );
        let probes: Vec<_> = (0..8).map(|i| grove::spawn(move || i)).collect();
        for p in probes {
            assert!(
                p.wait_timeout(Duration::from_secs(5)),
                "{how}: the worker is gone"
            );
        }
        return;
    }
    for how in ["unstarted_panic", "unstarted_join", "result_panic"] {
        let out = common::run_child(
            "rt_values_dropped_outside_their_greenlet_break_no_worker",
            how,
            &[("GROVE_WORKERS", "1")],
        );
        assert!(out.status.success(), "{how}: {}", common::stderr(&out));
    }
}

/// Waits (bounded) in its destructor.
struct WaitsInDrop(Duration);
impl Drop for WaitsInDrop {
    fn drop(&mut self) {
        let (_keep, rx) = grove::sync::channel::<()>();
        let _ = rx.recv_timeout(self.0);
    }
}

#[test]
fn rt_timeout_bounds_a_closure_after_it_caught_an_unwind_that_waited() {
    // A destructor waited during an unwind the closure then caught; the scope's deadline was
    // reported to that wait and marked, and the mark kept the scope from bounding the rest of
    // the closure: its next `sleep` ran its full 3 s. In a child (the destructor's wait holds
    // its worker).
    if common::role().is_none() {
        let out = common::run_child(
            "rt_timeout_bounds_a_closure_after_it_caught_an_unwind_that_waited",
            "caught",
            &[("GROVE_WORKERS", "2")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    let t = Instant::now();
    let r = grove::spawn(|| {
        grove::timeout(Duration::from_millis(200), || {
            let _ = std::panic::catch_unwind(|| {
                let _d = WaitsInDrop(Duration::from_millis(400));
                std::panic::resume_unwind(Box::new(1));
            });
            grove::sleep(Duration::from_secs(3));
            "finished"
        })
    })
    .join()
    .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(2_500),
        "took {:?}",
        t.elapsed()
    );
}

/// Joins a greenlet when dropped.
struct JoinsHelper(Option<grove::JoinHandle<u32>>, Arc<AtomicUsize>);
impl Drop for JoinsHelper {
    fn drop(&mut self) {
        let r = self.0.take().unwrap().join();
        self.1.store(r.unwrap_or(0) as usize, SeqCst);
    }
}

#[test]
fn rt_a_timeouts_own_unwind_may_block_in_its_cleanup() {
    // When a timeout fired, the first blocking call of its own unwind's cleanup was handed the
    // expired deadline again and ended at once: `join` then read the result of a greenlet that
    // was still running ("result already taken", an abort), `recv` said disconnected. In a
    // child, two workers (the cleanup holds its worker while it waits).
    if common::role().is_none() {
        let out = common::run_child(
            "rt_a_timeouts_own_unwind_may_block_in_its_cleanup",
            "cleanup",
            &[("GROVE_WORKERS", "2")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let r = grove::spawn(move || {
        grove::timeout(Duration::from_millis(50), move || {
            let helper = grove::spawn(|| {
                grove::sleep(Duration::from_millis(150));
                7
            });
            let _j = JoinsHelper(Some(helper), g);
            grove::sleep(Duration::from_secs(10));
        })
    })
    .join()
    .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        got.load(SeqCst),
        7,
        "the cleanup's join did not wait for the helper"
    );
}

#[test]
fn rt_kill_during_a_results_drop_run_by_grove_is_not_lost() {
    // Dropping the last handle of a finished greenlet drops its result there, under a
    // `catch_unwind` of grove's. A `Drop` that blocked and was killed unwound into it, and the
    // kill was swallowed: the greenlet went on (here, slept 15 s) and `join` gave `Ok`.
    struct SleepsOnDrop;
    impl Drop for SleepsOnDrop {
        fn drop(&mut self) {
            grove::sleep(Duration::from_secs(15));
        }
    }
    let dropping = Arc::new(AtomicBool::new(false));
    let d = dropping.clone();
    let a = grove::spawn(move || {
        let done = grove::spawn(|| SleepsOnDrop);
        while !done.is_finished() {
            grove::sleep(Duration::from_millis(1));
        }
        grove::sleep(Duration::from_millis(20)); // its worker has let go of it: ours is the last
        d.store(true, SeqCst);
        drop(done); // SleepsOnDrop's drop runs here, in this greenlet
        grove::sleep(Duration::from_secs(15));
        "finished normally"
    });
    common::wait_for("the drop to start", || dropping.load(SeqCst));
    grove::sleep(Duration::from_millis(20));
    let t = Instant::now();
    a.kill();
    let r = a.join();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(is_killed(&r.unwrap_err()));
}

#[test]
fn rt_kill_while_waiting_in_yield_now_unwinds_from_that_yield() {
    // A kill that lands while the greenlet waits in the run queue after a `yield_now` is
    // delivered from that yield (as from a park a kill ends, and as gevent raises at the
    // switch): the greenlet ran one more step and unwound only at its next blocking call.
    // One worker, in a process of its own, so the order below is fixed. Found by a review.
    if !common::in_processes_with_workers(
        "rt_kill_while_waiting_in_yield_now_unwinds_from_that_yield",
        &["1"],
    ) {
        return;
    }
    let steps = Arc::new(AtomicUsize::new(0));
    let s = steps.clone();
    let (before, after) = grove::spawn(move || {
        let s2 = s.clone();
        let target = grove::spawn(move || loop {
            grove::yield_now();
            s2.fetch_add(1, SeqCst); // must not run once killed inside the yield above
        });
        grove::yield_now(); // the target runs, reaches its yield and queues behind us
        let before = s.load(SeqCst);
        target.kill(); // the target is inside its yield_now now
        let r = target.join();
        assert!(r.unwrap_err().downcast_ref::<Killed>().is_some());
        (before, s.load(SeqCst))
    })
    .join()
    .unwrap();
    assert_eq!(
        after, before,
        "the target ran on past the yield it was killed in"
    );
}

/// Waits (bounded) until `flag` is set.
fn wait_set(flag: &AtomicBool, what: &str) {
    common::wait_for(what, || flag.load(SeqCst));
}

#[test]
fn rt_kill_unwinds_a_running_spawn_blocking_job_from_its_grove_blocking_calls() {
    // The contract's `kill` ("the target unwinds from its current or next blocking call") made
    // no exception for `spawn_blocking`, but a started job's grove calls parked through its
    // thread's own slot, which `kill` did not reach: the job ran to its end. Found by a review.
    // A sleep, a channel receive and a join, each killed while the job waits in it, from a
    // plain thread and from a greenlet; destructors run, and `join` gives `Killed`.
    for from_greenlet in [false, true] {
        for wait in ["sleep", "recv", "join"] {
            let started = Arc::new(AtomicBool::new(false));
            let dropped = Arc::new(AtomicBool::new(false));
            let (_keep, rx) = grove::sync::channel::<()>();
            let target = grove::spawn(|| grove::sleep(Duration::from_secs(60)));
            let job = {
                let (started, dropped) = (started.clone(), dropped.clone());
                grove::spawn_blocking(move || {
                    let _flag = Flag(dropped);
                    started.store(true, SeqCst);
                    match wait {
                        "sleep" => grove::sleep(Duration::from_secs(60)),
                        "recv" => drop(rx.recv()),
                        _ => drop(target.join()),
                    }
                    "ran to its end"
                })
            };
            wait_set(&started, "the job to start");
            std::thread::sleep(Duration::from_millis(20)); // into its wait
            let t = Instant::now();
            let job = if from_greenlet {
                grove::spawn(move || {
                    job.kill();
                    job
                })
                .join()
                .unwrap()
            } else {
                job.kill();
                job
            };
            let r = grove::timeout(Duration::from_secs(10), || job.join())
                .expect("kill did not reach the job");
            let e = r.expect_err("the job ran to its end");
            assert!(e.downcast_ref::<Killed>().is_some(), "{wait}");
            assert!(dropped.load(SeqCst), "{wait}: destructors did not run");
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{wait}: {:?}",
                t.elapsed()
            );
        }
    }
}

#[test]
fn rt_kill_of_a_spawn_blocking_job_waits_out_its_shielded_section_and_spares_code_that_never_blocks(
) {
    // In a shielded section the kill waits for the first blocking call after it.
    let after = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let job = {
        let (after, started) = (after.clone(), started.clone());
        grove::spawn_blocking(move || {
            started.store(true, SeqCst);
            grove_runtime::shielded(|| grove::sleep(Duration::from_millis(300)));
            after.store(true, SeqCst); // reached: the shield held the kill back
            grove::sleep(Duration::from_secs(60)); // where it lands
        })
    };
    wait_set(&started, "the job to start");
    std::thread::sleep(Duration::from_millis(50));
    job.kill();
    let r = grove::timeout(Duration::from_secs(10), || job.join()).expect("the kill never landed");
    assert!(r.unwrap_err().downcast_ref::<Killed>().is_some());
    assert!(
        after.load(SeqCst),
        "the kill cut the shielded section short"
    );
    // A job that never blocks cannot be stopped (as with greenlets): it finishes.
    let spin = Arc::new(AtomicBool::new(false));
    let job = {
        let spin = spin.clone();
        grove::spawn_blocking(move || {
            spin.store(true, SeqCst);
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(100) {
                std::hint::spin_loop();
            }
            7
        })
    };
    wait_set(&spin, "the job to start");
    job.kill();
    assert_eq!(job.join().unwrap(), 7);
}

#[test]
fn rt_kills_racing_spawn_blocking_jobs_as_they_start_never_hang() {
    // A kill that lands as the job is being listed must either keep it from running or reach
    // its first park: 200 rounds, each job sleeping a minute unless killed.
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let h = grove::spawn_blocking(|| grove::sleep(Duration::from_secs(60)));
            h.kill();
            h
        })
        .collect();
    for h in handles {
        let r = grove::timeout(Duration::from_secs(20), || h.join()).expect("a killed job hung");
        assert!(r.unwrap_err().downcast_ref::<Killed>().is_some());
    }
}

/// Sets its flag, then sleeps, when dropped (a result whose `Drop` blocks).
struct SleepsOnDrop(Arc<AtomicBool>);
impl Drop for SleepsOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
        grove::sleep(Duration::from_millis(500));
    }
}

#[test]
fn rt_kill_of_a_job_inside_a_results_drop_run_by_grove_is_not_lost() {
    // A job drops the last handle of a finished greenlet nobody joined; the result's `Drop`
    // sleeps, and the kill lands there. grove runs that drop under a `catch_unwind` of its own
    // and puts a kill it caught back on the flag, but only a greenlet's: a job's was swallowed
    // and the job slept on (found by a review of the job-kill change).
    let in_drop = Arc::new(AtomicBool::new(false));
    let job = {
        let in_drop = in_drop.clone();
        grove::spawn_blocking(move || {
            let g = grove::spawn(move || SleepsOnDrop(in_drop));
            common::wait_for("the greenlet to finish", || g.is_finished());
            drop(g);
            grove::sleep(Duration::from_secs(60));
            "ran on"
        })
    };
    wait_set(&in_drop, "the result's drop");
    std::thread::sleep(Duration::from_millis(50));
    job.kill();
    let r = grove::timeout(Duration::from_secs(10), || job.join()).expect("the kill was lost");
    assert!(r.unwrap_err().downcast_ref::<Killed>().is_some());
}

#[test]
fn rt_a_kill_raised_in_a_job_is_a_cancellation_to_the_job() {
    // Code that turns caught panics into errors re-raises cancellations (`is_cancellation`);
    // inside a job, its own kill did not count as one.
    let started = Arc::new(AtomicBool::new(false));
    let job = {
        let started = started.clone();
        grove::spawn_blocking(move || {
            started.store(true, SeqCst);
            let r = std::panic::catch_unwind(|| grove::sleep(Duration::from_secs(60)));
            grove_runtime::is_cancellation(&*r.expect_err("not killed"))
        })
    };
    wait_set(&started, "the job to start");
    std::thread::sleep(Duration::from_millis(50));
    job.kill();
    let r = grove::timeout(Duration::from_secs(10), || job.join()).expect("hung");
    assert!(r.unwrap(), "is_cancellation(Killed) false inside a job");
}

/// Sleeps in a shielded section when dropped; flags its start and its end.
struct ShieldedSleepOnDrop(Arc<AtomicBool>, Arc<AtomicBool>);
impl Drop for ShieldedSleepOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
        grove_runtime::shielded(|| grove::sleep(Duration::from_millis(300)));
        self.1.store(true, SeqCst);
    }
}

grove::greenlet_local! {
    static JOB_SLOT: std::cell::RefCell<Option<ShieldedSleepOnDrop>> = std::cell::RefCell::new(None);
}

#[test]
fn rt_a_kill_after_a_jobs_code_returned_spares_its_locals_destructors() {
    // The job stayed listed for `kill` while its greenlet-locals were dropped after its code
    // returned; a kill then ended a destructor's park outside the job, and its shielded
    // section was cut short.
    let (in_drop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let job = {
        let (a, b) = (in_drop.clone(), done.clone());
        grove::spawn_blocking(move || {
            JOB_SLOT.with(|s| *s.borrow_mut() = Some(ShieldedSleepOnDrop(a, b)));
            7
        })
    };
    wait_set(&in_drop, "the local's drop");
    std::thread::sleep(Duration::from_millis(50));
    job.kill();
    let _ = grove::timeout(Duration::from_secs(10), || job.join()).expect("hung");
    assert!(done.load(SeqCst), "a kill cut a shielded section short");
}

#[test]
fn rt_a_second_kill_of_a_spawn_blocking_job_waits_until_its_unwind_is_over() {
    // As a greenlet's (`rt_a_destructor_that_blocks_during_an_unwind_breaks_nobody_else`): a
    // job killed in a sleep unwinds, and a destructor of its blocks in `recv`; a second kill
    // meanwhile must wait until the unwind is over. It ended the destructor's park instead, and
    // its `recv` failed on a live channel.
    let (tx, rx) = grove::sync::channel::<u32>();
    let got = Arc::new(AtomicUsize::new(0));
    let in_cleanup = Arc::new(AtomicBool::new(false));
    let job = {
        let (got, in_cleanup) = (got.clone(), in_cleanup.clone());
        grove::spawn_blocking(move || {
            let _cleanup = OnDrop(|| {
                in_cleanup.store(true, SeqCst);
                if let Ok(v) = rx.recv() {
                    got.store(v as usize, SeqCst);
                }
            });
            grove::sleep(Duration::from_secs(60));
        })
    };
    std::thread::sleep(Duration::from_millis(20)); // into its sleep
    job.kill();
    wait_set(&in_cleanup, "the job's cleanup");
    std::thread::sleep(Duration::from_millis(20)); // into its recv
    job.kill();
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        tx.send(7).is_ok(),
        "the second kill ended the cleanup's recv mid-unwind (its receiver is gone)"
    );
    let r = grove::timeout(Duration::from_secs(10), || job.join()).expect("the job hung");
    assert!(is_killed(&r.unwrap_err()), "the job was not killed");
    assert_eq!(
        got.load(SeqCst),
        7,
        "the second kill ended the cleanup's recv mid-unwind"
    );
}
