//! Locks and events: Mutex, RwLock, Condvar, Semaphore, Event, AsyncResult. Waiters of both
//! kinds (greenlets and plain threads) on the same object; cancellation in the middle of a wait
//! (`sync_waits.rs` has the rest of the waits, each with both kinds of waiter; greenlet-locals
//! are tested in `rt_greenlets.rs`).

mod common;

use common::{role, run_child, stderr};
use grove::sync::{AsyncResult, Condvar, Event, Mutex, RwLock, Semaphore};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn killed(e: &Box<dyn std::any::Any + Send>) -> bool {
    e.downcast_ref::<grove::Killed>().is_some()
}

#[test]
fn sync_mutex_counts_correctly_with_greenlets_and_threads() {
    let m = Arc::new(Mutex::new(0u64));
    let mut gs = Vec::new();
    for _ in 0..50 {
        let m = m.clone();
        gs.push(grove::spawn(move || {
            for i in 0..200 {
                let mut g = m.lock();
                *g += 1;
                if i % 50 == 0 {
                    grove::yield_now(); // hold it across a switch
                }
            }
        }));
    }
    let ts: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for g in gs {
        g.join().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 50 * 200 + 4 * 500);
}

#[test]
fn sync_mutex_try_lock_and_no_poisoning() {
    let m = Arc::new(Mutex::new(1));
    let g = m.lock();
    assert!(m.try_lock().is_none());
    assert!(m.is_locked());
    drop(g);
    let m2 = m.clone();
    let r = grove::spawn(move || {
        let _g = m2.lock();
        panic!("holder panics");
    })
    .join();
    assert!(r.is_err());
    assert_eq!(
        *m.try_lock().expect("a panicking holder releases the lock"),
        1
    );
}

#[test]
fn sync_mutex_is_fifo_fair() {
    // Waiters queue by sleeping between their starts, which a loaded machine can upset, so an
    // out-of-order attempt is retried; a real fairness bug fails every attempt.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = Arc::new(Mutex::new(Vec::new()));
        let g = m.lock();
        let hs: Vec<_> = (0..5)
            .map(|i| {
                let m = m.clone();
                let h = grove::spawn(move || m.lock().push(i));
                grove::sleep(Duration::from_millis(10)); // queue in order 0..5
                h
            })
            .collect();
        drop(g);
        for h in hs {
            h.join().unwrap();
        }
        let got = m.lock().clone();
        if got == vec![0, 1, 2, 3, 4] {
            return;
        }
        seen.push(got);
    }
    panic!("mutex waiters served out of arrival order in every attempt: {seen:?}");
}

#[test]
fn sync_killed_mutex_waiter_does_not_swallow_the_handoff() {
    let m = Arc::new(Mutex::new(0));
    let g = m.lock();
    let m1 = m.clone();
    let victim = grove::spawn(move || *m1.lock() += 100);
    grove::sleep(Duration::from_millis(10));
    let m2 = m.clone();
    let next = grove::spawn(move || *m2.lock() += 1);
    grove::sleep(Duration::from_millis(10));
    victim.kill();
    assert!(killed(&victim.join().unwrap_err()));
    drop(g); // must reach `next`, not the dead victim
    assert!(
        next.wait_timeout(Duration::from_secs(5)),
        "hand-off swallowed"
    );
    next.join().unwrap();
    assert_eq!(*m.lock(), 1);
}

#[test]
fn sync_killed_holder_releases_its_guard() {
    let m = Arc::new(Mutex::new(()));
    let m1 = m.clone();
    let locked = Arc::new(AtomicBool::new(false));
    let l = locked.clone();
    let holder = grove::spawn(move || {
        let _g = m1.lock();
        l.store(true, SeqCst);
        grove::sleep(Duration::from_secs(60));
    });
    common::wait_for("the holder to lock", || locked.load(SeqCst));
    assert!(m.try_lock().is_none());
    holder.kill();
    let _ = holder.join();
    assert!(m.try_lock().is_some());
}

#[test]
fn sync_timeout_interrupts_a_lock_wait() {
    let m = Arc::new(Mutex::new(()));
    let _g = m.lock();
    let m1 = m.clone();
    let h = grove::spawn(move || {
        grove::timeout(Duration::from_millis(20), || drop(m1.lock())).is_err()
    });
    assert!(h.join().unwrap());
}

#[test]
fn sync_rwlock_readers_share_writers_exclude() {
    let l = Arc::new(RwLock::new(0));
    let r1 = l.read();
    let r2 = l.try_read().expect("readers share");
    assert!(l.try_write().is_none());
    drop((r1, r2));
    let in_write = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..20)
        .map(|i| {
            let (l, w) = (l.clone(), in_write.clone());
            grove::spawn(move || {
                for _ in 0..50 {
                    if i % 4 == 0 {
                        let mut g = l.write();
                        w.store(true, SeqCst);
                        *g += 1;
                        grove::yield_now();
                        w.store(false, SeqCst);
                    } else {
                        let _g = l.read();
                        assert!(!w.load(SeqCst), "reader inside a write section");
                        grove::yield_now();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*l.read(), 5 * 50);
}

#[test]
fn sync_rwlock_waiting_writer_is_not_starved_by_new_readers() {
    let l = Arc::new(RwLock::new(()));
    let r = l.read();
    let l1 = l.clone();
    let writer = grove::spawn(move || drop(l1.write()));
    // Once the writer queues, no new reader gets in; had it overtaken the writer, it would go on
    // getting in and this wait would time out.
    common::wait_for("new readers to be kept out behind the writer", || {
        l.try_read().is_none()
    });
    drop(r);
    writer.join().unwrap();
}

#[test]
fn sync_rwlock_cancelled_writer_lets_the_readers_behind_it_in() {
    // A reader holds the lock; a writer queues (and so would keep new readers out), then gives
    // up. The reader that queued behind the writer must get in at once, not when the first
    // reader leaves (which, if it waited for the second, would be a deadlock).
    let l = Arc::new(RwLock::new(0));
    let first = l.read();
    let l2 = l.clone();
    let writer =
        grove::spawn(move || grove::timeout(Duration::from_millis(50), || drop(l2.write())));
    grove::sleep(Duration::from_millis(10));
    let l3 = l.clone();
    let reader = grove::spawn(move || drop(l3.read()));
    assert!(writer.join().unwrap().is_err(), "the writer got the lock");
    let t0 = Instant::now();
    while !reader.is_finished() && t0.elapsed() < Duration::from_secs(5) {
        grove::sleep(Duration::from_millis(2));
    }
    assert!(
        reader.is_finished(),
        "the reader stayed out behind a gone writer"
    );
    assert!(l.try_read().is_some());
    drop(first);
    // The same with `kill` instead of `timeout`.
    let first = l.read();
    let l2 = l.clone();
    let writer = grove::spawn(move || drop(l2.write()));
    grove::sleep(Duration::from_millis(10));
    let l3 = l.clone();
    let reader = grove::spawn(move || drop(l3.read()));
    grove::sleep(Duration::from_millis(10));
    writer.kill();
    assert!(killed(&writer.join().unwrap_err()));
    reader.join().unwrap();
    drop(first);
    assert!(l.try_write().is_some());
}

#[test]
fn sync_condvar_mixed_waiters_are_all_notified() {
    let pair = Arc::new((Mutex::new(0), Condvar::new()));
    let mut hs = Vec::new();
    for _ in 0..5 {
        let p = pair.clone();
        hs.push(grove::spawn(move || {
            let (m, c) = &*p;
            let mut g = m.lock();
            c.wait_while(&mut g, |v| *v == 0);
        }));
    }
    let ts: Vec<_> = (0..2)
        .map(|_| {
            let p = pair.clone();
            std::thread::spawn(move || {
                let (m, c) = &*p;
                let mut g = m.lock();
                while *g == 0 {
                    c.wait(&mut g);
                }
            })
        })
        .collect();
    grove::sleep(Duration::from_millis(20));
    *pair.0.lock() = 1;
    pair.1.notify_all();
    for h in hs {
        h.join().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
}

#[test]
fn sync_condvar_wait_timeout_reports_timeout_and_keeps_the_lock() {
    let m = Mutex::new(5);
    let c = Condvar::new();
    let mut g = m.lock();
    let t = Instant::now();
    assert!(c.wait_timeout(&mut g, Duration::from_millis(20)));
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert_eq!(*g, 5);
    assert!(m.try_lock().is_none(), "the guard holds the lock again");
    assert!(!c.notify_one(), "nobody waits");
}

#[test]
fn sync_condvar_notify_one_skips_a_killed_waiter() {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    // Each waiter raises its flag holding the mutex, and `wait` releases it only once waiting:
    // the flag up and the mutex free again mean it waits.
    let waiting = |flag: &Arc<AtomicBool>| {
        common::wait_for("a waiter to start", || flag.load(SeqCst));
        drop(pair.0.lock());
    };
    let (p, victim_in) = (pair.clone(), Arc::new(AtomicBool::new(false)));
    let v = victim_in.clone();
    let victim = grove::spawn(move || {
        let mut g = p.0.lock();
        v.store(true, SeqCst);
        p.1.wait(&mut g);
    });
    waiting(&victim_in);
    let (p, other_in) = (pair.clone(), Arc::new(AtomicBool::new(false)));
    let o = other_in.clone();
    let other = grove::spawn(move || {
        let mut g = p.0.lock();
        o.store(true, SeqCst);
        p.1.wait(&mut g);
        true
    });
    waiting(&other_in);
    victim.kill();
    assert!(killed(&victim.join().unwrap_err()));
    assert!(
        pair.0.try_lock().is_some(),
        "the killed waiter left the mutex unlocked"
    );
    assert!(pair.1.notify_one());
    assert!(other.join().unwrap());
}

/// A mutex guard, a condvar and a flag that says whether `holder` holds the mutex.
struct Relock {
    m: Mutex<u32>,
    cv: Condvar,
    holder_in: AtomicBool,
}

/// Locks, notifies, and holds the mutex across a 150 ms park before adding 10.
/// Returns whether the notification found a waiter (on a loaded single worker it may come
/// after the waiter's deadline).
fn notify_then_hold(st: Arc<Relock>) -> grove::JoinHandle<bool> {
    grove::spawn(move || {
        grove::sleep(Duration::from_millis(20));
        let mut g = st.m.lock();
        st.holder_in.store(true, SeqCst);
        let woke = st.cv.notify_one();
        grove::sleep(Duration::from_millis(250));
        *g += 10;
        st.holder_in.store(false, SeqCst);
        woke
    })
}

#[test]
fn sync_condvar_relock_outlasts_a_timeout_and_keeps_the_notification() {
    // The waiter is notified, then its re-lock waits for the holder; its `timeout` expires
    // meanwhile. The wait must still return holding the mutex (it had unwound without it,
    // leaving a guard for a mutex the holder owned), and with the notification (the deadline
    // now falls due at the next blocking call, and there is none inside the closure).
    for green in [true, false] {
        let st = Arc::new(Relock {
            m: Mutex::new(0),
            cv: Condvar::new(),
            holder_in: AtomicBool::new(false),
        });
        let s = st.clone();
        let waiter = common::Worker::spawn(green, move || {
            let mut g = s.m.lock();
            let r = grove::timeout(Duration::from_millis(100), || s.cv.wait(&mut g));
            let holder_out = !s.holder_in.load(SeqCst);
            *g += 1;
            (r.is_ok(), holder_out)
        });
        let holder = notify_then_hold(st.clone());
        let (notified, holder_out) = waiter.join();
        let woke_the_waiter = holder.join().unwrap();
        assert!(
            holder_out,
            "the wait returned while the holder had the mutex (green: {green})"
        );
        // (If the holder came after the deadline, the wait timed out before any notification.)
        assert!(
            notified || !woke_the_waiter,
            "the notification was lost (green: {green})"
        );
        assert_eq!(*st.m.lock(), 11);
    }
}

#[test]
fn sync_condvar_kill_during_relock_lands_at_the_next_blocking_call() {
    let st = Arc::new(Relock {
        m: Mutex::new(0),
        cv: Condvar::new(),
        holder_in: AtomicBool::new(false),
    });
    let returned_holding = Arc::new(AtomicBool::new(false));
    let (s, r) = (st.clone(), returned_holding.clone());
    let waiter = grove::spawn(move || {
        let mut g = s.m.lock();
        s.cv.wait(&mut g);
        r.store(!s.holder_in.load(SeqCst), SeqCst);
        *g += 1;
        drop(g);
        grove::sleep(Duration::from_secs(10)); // the kill lands here
    });
    let holder = notify_then_hold(st.clone());
    grove::sleep(Duration::from_millis(60)); // the waiter is re-locking now
    waiter.kill();
    assert!(killed(&waiter.join().unwrap_err()));
    if !holder.join().unwrap() {
        return; // a loaded worker ran the holder late: the kill came first, nothing to check
    }
    assert!(
        returned_holding.load(SeqCst),
        "the wait returned without the mutex"
    );
    assert_eq!(*st.m.lock(), 11);
}

#[test]
fn sync_condvar_cancelled_wait_relocks_without_blocking_the_worker() {
    // One worker: the waiter's `timeout` fires (or a kill comes) while another greenlet holds
    // the mutex across a park. Re-locking inside the unwind blocked the worker thread, so the
    // holder never ran again (a deadlock); now the waiter parks for the mutex and the unwind
    // resumes after.
    if let Some(how) = role() {
        let st = Arc::new((Mutex::new(0u32), Condvar::new()));
        let (s, by_timeout) = (st.clone(), how == "timeout");
        let waiter = grove::spawn(move || {
            let mut g = s.0.lock();
            if by_timeout {
                let r = grove::timeout(Duration::from_millis(30), || s.1.wait(&mut g));
                assert!(r.is_err(), "the wait did not time out");
            } else {
                s.1.wait(&mut g);
            }
            *g += 1; // unreachable when killed
        });
        let s = st.clone();
        let holder = grove::spawn(move || {
            grove::sleep(Duration::from_millis(10));
            let mut g = s.0.lock();
            grove::sleep(Duration::from_millis(100));
            *g += 10;
        });
        if !by_timeout {
            std::thread::sleep(Duration::from_millis(30));
            waiter.kill();
            assert!(killed(&waiter.join().unwrap_err()));
        } else {
            waiter.join().unwrap();
        }
        holder.join().unwrap();
        assert_eq!(*st.0.lock(), if by_timeout { 11 } else { 10 });
        return;
    }
    for how in ["timeout", "kill"] {
        let out = run_child(
            "sync_condvar_cancelled_wait_relocks_without_blocking_the_worker",
            how,
            &[("GROVE_WORKERS", "1")],
        );
        assert!(out.status.success(), "{how}: {}", stderr(&out));
    }
}

#[test]
fn sync_semaphore_bounds_concurrency_and_hands_off_permits() {
    let s = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..30)
        .map(|_| {
            let (s, i, p) = (s.clone(), inside.clone(), peak.clone());
            grove::spawn(move || {
                let _permit = s.acquire();
                let now = i.fetch_add(1, SeqCst) + 1;
                p.fetch_max(now, SeqCst);
                grove::sleep(Duration::from_millis(2));
                i.fetch_sub(1, SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(peak.load(SeqCst), 3);
    assert_eq!(s.available(), 3);
    let p = s.try_acquire().unwrap();
    assert_eq!(s.available(), 2);
    p.forget();
    assert_eq!(s.available(), 2);
    s.add_permits(1);
    assert_eq!(s.available(), 3);
    let _all: Vec<_> = (0..3).map(|_| s.acquire()).collect();
    assert!(s.acquire_timeout(Duration::from_millis(10)).is_none());
}

/// `add_permits` serves the waiters first and adds the rest in one step: `add_permits` of a
/// huge count took the lock once per permit (50M permits: ~0.25 s; `usize::MAX / 2`: for ever).
#[test]
fn sync_semaphore_add_permits_wakes_waiters_then_adds_the_rest_at_once() {
    let s = Arc::new(Semaphore::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            grove::spawn(move || s.acquire().forget())
        })
        .collect();
    while format!("{s:?}") != "Semaphore { available: 0, waiters: 3 }" {
        grove::sleep(Duration::from_millis(1));
    }
    let t = std::time::Instant::now();
    s.add_permits(usize::MAX / 2);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(s.available(), usize::MAX / 2 - 3);
    let overflow =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.add_permits(usize::MAX)));
    assert!(overflow.is_err());
    assert_eq!(
        s.available(),
        usize::MAX / 2 - 3,
        "a failed add changed the count"
    );
}

#[test]
fn sync_event_wakes_greenlets_and_threads() {
    let e = Arc::new(Event::new());
    assert!(!e.is_set());
    let hs: Vec<_> = (0..10)
        .map(|_| {
            let e = e.clone();
            grove::spawn(move || e.wait())
        })
        .collect();
    let e2 = e.clone();
    let t = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(10)));
    grove::sleep(Duration::from_millis(10));
    e.set();
    for h in hs {
        h.join().unwrap();
    }
    assert!(t.join().unwrap());
    e.clear();
    assert!(!e.wait_timeout(Duration::from_millis(10)));
}

#[test]
fn sync_async_result_delivers_to_every_getter() {
    let r = Arc::new(AsyncResult::new());
    assert!(!r.ready());
    let hs: Vec<_> = (0..5)
        .map(|_| {
            let r = r.clone();
            grove::spawn(move || r.get())
        })
        .collect();
    assert_eq!(r.get_timeout(Duration::from_millis(5)), None);
    grove::sleep(Duration::from_millis(10));
    r.set("done".to_string());
    for h in hs {
        assert_eq!(h.join().unwrap(), "done");
    }
    assert_eq!(r.get(), "done");
    assert!(r.ready());
}

#[test]
fn sync_event_wait_is_a_cancellation_point() {
    let e = Arc::new(Event::new());
    let e1 = e.clone();
    let h = grove::spawn(move || e1.wait());
    grove::sleep(Duration::from_millis(5));
    h.kill();
    assert!(killed(&h.join().unwrap_err()));
    e.set(); // nobody left; must not misbehave
}

#[test]
fn sync_locks_and_guards_have_the_std_conversions_and_formatting() {
    // Missing next to std's: `RwLock::from`, `Debug` for the RwLock guards and the permit,
    // `Display` for every guard.
    let lock = RwLock::from(5);
    assert_eq!(format!("{:?} {}", lock.read(), lock.read()), "5 5");
    let w = lock.write();
    assert_eq!(format!("{w:?} {w}"), "5 5");
    drop(w);
    let m = Mutex::from(String::from("hi"));
    let g = m.lock();
    assert_eq!(format!("{g} {g:?}"), "hi \"hi\"");
    let sem = Semaphore::new(1);
    assert_eq!(format!("{:?}", sem.acquire()), "Permit { .. }");
}

#[test]
fn sync_mutex_contended_only_by_plain_threads_starts_no_runtime() {
    // A contended lock asked the runtime how many workers it had, which started it: worker
    // threads appeared in a program that never spawned a greenlet.
    if !common::in_a_process_of_its_own(
        "sync_mutex_contended_only_by_plain_threads_starts_no_runtime",
    ) {
        return;
    }
    if !std::path::Path::new("/proc/self/task").exists() {
        return; // no way to list threads here
    }
    let m = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*m.lock(), 80_000);
    let workers: Vec<_> = common::thread_names()
        .into_iter()
        .filter(|n| n.starts_with("grove-"))
        .collect();
    assert!(workers.is_empty(), "runtime threads started: {workers:?}");
}
