//! Every kind of wait in the toolkit, with a greenlet and a plain thread waiting on one object
//! at once, and cancelled in the middle (by `kill`, and by a `grove::timeout` scope): the
//! cancelled waiter unwinds without finishing its wait, the other waiter still gets the wake-up
//! (a cancelled waiter never swallows one meant for someone else), and the object is whole
//! afterwards. The mutex, the rwlock's writers, the condvar, channels and queues have their own
//! cancellation tests beside their other tests (`sync_locks.rs`, `sync_channels_select.rs`,
//! `sync_queues.rs`); this file covers the rest.

mod common;

use common::{ms, wait_for};
use grove::sync::{
    AsyncResult, Condvar, Event, Group, JoinableQueue, Mutex, Pool, RwLock, Semaphore,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum Cancel {
    Kill,
    Timeout,
}

const BOTH: [Cancel; 2] = [Cancel::Kill, Cancel::Timeout];

/// Runs `wait` in a greenlet and cancels it while it waits (`how`), then checks that it
/// unwound out of the wait instead of finishing it. `parked` says when the wait has begun.
fn cancel_a_wait(how: Cancel, parked: impl Fn() -> bool, wait: impl FnOnce() + Send + 'static) {
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let victim = match how {
        Cancel::Kill => grove::spawn(move || {
            wait();
            f.store(true, SeqCst);
        }),
        Cancel::Timeout => grove::spawn(move || {
            // Long enough for `parked` to be seen first on a loaded machine, short enough
            // for the test.
            let r = grove::timeout(ms(1000), wait);
            assert!(r.is_err(), "the wait ended by itself");
        }),
    };
    // (Or it is over already: a timeout that beat a slow machine's `parked` fails below.)
    wait_for("the victim to wait", || parked() || victim.is_finished());
    match how {
        Cancel::Kill => {
            victim.kill();
            let e = victim.join().unwrap_err();
            assert!(e.downcast_ref::<grove::Killed>().is_some(), "not killed");
        }
        Cancel::Timeout => victim.join().unwrap(),
    }
    assert!(!finished.load(SeqCst), "{how:?}: the wait finished");
}

/// For objects that show no count of their waiters: "parked" once the wait has had time to
/// begin (a wait that has not begun yet is cancelled all the same, so the test still holds; it
/// only tests less).
fn after_a_while() -> impl Fn() -> bool {
    || {
        grove::sleep(ms(20));
        true
    }
}

/// A plain thread that runs `wait` at once and gives back what it returned, with a flag it sets
/// just before.
fn thread_waiter(
    wait: impl FnOnce() -> bool + Send + 'static,
) -> (std::thread::JoinHandle<bool>, Arc<AtomicBool>) {
    let started = Arc::new(AtomicBool::new(false));
    let s = started.clone();
    let t = std::thread::spawn(move || {
        s.store(true, SeqCst);
        wait()
    });
    (t, started)
}

/// Waits until a plain thread has set `started`, then gives it time to block: nothing of a
/// thread's wait is visible from outside for these objects.
fn let_it_block(started: &AtomicBool) {
    wait_for("the thread to start", || started.load(SeqCst));
    grove::sleep(ms(20));
}

#[test]
fn sync_semaphore_greenlets_and_threads_wait_for_permits_together() {
    let s = Arc::new(Semaphore::new(0));
    let gs: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            grove::spawn(move || drop(s.acquire()))
        })
        .collect();
    let ts: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || drop(s.acquire()))
        })
        .collect();
    wait_for("five waiters", || {
        format!("{s:?}") == "Semaphore { available: 0, waiters: 5 }"
    });
    s.add_permits(2);
    s.add_permits(3);
    for g in gs {
        g.join().unwrap();
    }
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(s.available(), 5);
}

/// The waiter at the head of the queue is cancelled; the permit released afterwards goes to the
/// one behind it, not to the gone one. (A permit handed over at the very moment of the cancel
/// is passed on as well: the loom model `killed_first_waiter_passes_the_permit_on`.)
#[test]
fn sync_semaphore_cancelled_head_waiter_leaves_the_next_permit_to_the_one_behind() {
    for how in BOTH {
        let s = Arc::new(Semaphore::new(0));
        let (s1, s2) = (s.clone(), s.clone());
        // Cancelled once the thread has queued behind it.
        let parked = move || format!("{s2:?}") == "Semaphore { available: 0, waiters: 2 }";
        let s3 = s.clone();
        let victim_then_thread = grove::spawn(move || {
            cancel_a_wait(how, parked, move || s1.acquire().forget());
        });
        wait_for("the victim to queue", || {
            format!("{s:?}").contains("waiters: 1")
        });
        let (t, started) =
            thread_waiter(move || s3.acquire_timeout(Duration::from_secs(10)).is_some());
        let_it_block(&started);
        victim_then_thread.join().unwrap();
        s.add_permits(1);
        assert!(t.join().unwrap(), "{how:?}: the permit was swallowed");
        assert_eq!(s.available(), 1, "{how:?}");
    }
}

#[test]
fn sync_rwlock_writers_of_both_kinds_wait_behind_readers_of_both_kinds() {
    let l = Arc::new(RwLock::new(0));
    let r = l.read();
    let l1 = l.clone();
    let (thread_writer, _) = thread_waiter(move || {
        *l1.write() += 1;
        true
    });
    // A queued writer keeps new readers out (writer preference): that is how it shows.
    wait_for("the thread writer to queue", || l.try_read().is_none());
    let l2 = l.clone();
    let greenlet_writer = grove::spawn(move || *l2.write() += 10);
    // New readers wait behind the writers, greenlet and thread alike.
    let l3 = l.clone();
    let greenlet_reader = grove::spawn(move || *l3.read());
    let l4 = l.clone();
    let (thread_reader, started) = thread_waiter(move || *l4.read() >= 1);
    let_it_block(&started);
    assert!(!thread_reader.is_finished() && !greenlet_reader.is_finished());
    drop(r);
    assert!(thread_writer.join().unwrap());
    greenlet_writer.join().unwrap();
    // Each reader came in after the thread writer at least (the greenlet writer may have
    // queued after them on a slow machine).
    assert!(greenlet_reader.join().unwrap() >= 1);
    assert!(thread_reader.join().unwrap());
    assert_eq!(*l.read(), 11);
}

#[test]
fn sync_rwlock_cancelled_reader_leaves_the_lock_whole() {
    for how in BOTH {
        let l = Arc::new(RwLock::new(0));
        let w = l.write();
        // A thread reader queued first: the writer's release must still reach it.
        let l1 = l.clone();
        let (thread_reader, started) = thread_waiter(move || *l1.read() == 0);
        let_it_block(&started);
        let l2 = l.clone();
        let l3 = l.clone();
        cancel_a_wait(how, after_a_while(), move || drop(l3.read()));
        drop(w);
        assert!(thread_reader.join().unwrap(), "{how:?}");
        // Whole: a writer gets in, and readers after it.
        *l2.write() += 1;
        assert_eq!(*l2.read(), 1, "{how:?}");
    }
}

#[test]
fn sync_event_cancelled_waiter_leaves_the_others_waiting_for_set() {
    for how in BOTH {
        let e = Arc::new(Event::new());
        let e1 = e.clone();
        let (t, started) = thread_waiter(move || e1.wait_timeout(Duration::from_secs(10)));
        let_it_block(&started);
        let e2 = e.clone();
        let after = grove::spawn(move || e2.wait());
        let e3 = e.clone();
        cancel_a_wait(how, after_a_while(), move || e3.wait());
        assert!(!e.is_set());
        e.set();
        assert!(t.join().unwrap(), "{how:?}");
        after.join().unwrap();
    }
}

#[test]
fn sync_async_result_greenlet_and_thread_getters_wait_together() {
    let r = Arc::new(AsyncResult::new());
    let r1 = r.clone();
    let (t, started) = thread_waiter(move || r1.get() == 7);
    let_it_block(&started);
    let r2 = r.clone();
    let got = Arc::new(AtomicBool::new(false));
    let g2 = got.clone();
    let g = grove::spawn(move || {
        let v = r2.get();
        g2.store(true, SeqCst);
        v
    });
    grove::sleep(ms(20));
    assert!(
        !got.load(SeqCst) && !t.is_finished(),
        "a getter did not wait"
    );
    r.set(7);
    assert_eq!(g.join().unwrap(), 7);
    assert!(t.join().unwrap());
}

#[test]
fn sync_async_result_cancelled_getter_leaves_the_value_for_the_others() {
    for how in BOTH {
        let r = Arc::new(AsyncResult::new());
        let r1 = r.clone();
        let (t, started) =
            thread_waiter(move || r1.get_timeout(Duration::from_secs(10)) == Some(5));
        let_it_block(&started);
        let (r2, r3) = (r.clone(), r.clone());
        cancel_a_wait(how, after_a_while(), move || {
            let _ = r3.get();
        });
        r.set(5);
        assert!(t.join().unwrap(), "{how:?}");
        assert_eq!(r2.get(), 5);
    }
}

#[test]
fn sync_joinable_queue_cancelled_joiner_leaves_the_others_joining() {
    for how in BOTH {
        let q = Arc::new(JoinableQueue::new());
        q.put(1);
        let q1 = q.clone();
        let (t, started) = thread_waiter(move || q1.join_timeout(Duration::from_secs(10)));
        let_it_block(&started);
        let q2 = q.clone();
        cancel_a_wait(how, after_a_while(), move || q2.join());
        assert_eq!(
            q.unfinished_tasks(),
            1,
            "{how:?}: the cancelled join changed the count"
        );
        assert_eq!(q.get(), 1);
        q.task_done();
        assert!(t.join().unwrap(), "{how:?}");
        q.join();
    }
}

/// A greenlet of `spawn` that runs until `stop` is set.
fn held_until(stop: &Arc<Event>) -> impl FnOnce() + Send + 'static {
    let stop = stop.clone();
    move || stop.wait()
}

#[test]
fn sync_group_and_pool_cancelled_joiner_leaves_the_others_joining() {
    for how in BOTH {
        for pooled in [false, true] {
            let stop = Arc::new(Event::new());
            let (group, pool) = (Arc::new(Group::new()), Arc::new(Pool::new(2)));
            if pooled {
                pool.spawn(held_until(&stop));
            } else {
                group.spawn(held_until(&stop));
            }
            let (g1, p1) = (group.clone(), pool.clone());
            let join = move |d: Duration| {
                if pooled {
                    p1.join_timeout(d)
                } else {
                    g1.join_timeout(d)
                }
            };
            let (t, started) = thread_waiter(move || join(Duration::from_secs(10)));
            let_it_block(&started);
            let (g2, p2) = (group.clone(), pool.clone());
            cancel_a_wait(how, after_a_while(), move || {
                if pooled {
                    p2.join()
                } else {
                    g2.join()
                }
            });
            assert_eq!(if pooled { pool.len() } else { group.len() }, 1, "{how:?}");
            stop.set();
            assert!(t.join().unwrap(), "{how:?} pooled={pooled}");
        }
    }
}

#[test]
fn sync_pool_spawn_cancelled_while_full_takes_no_slot_and_runs_nothing() {
    for how in BOTH {
        let stop = Arc::new(Event::new());
        let pool = Arc::new(Pool::new(1));
        pool.spawn(held_until(&stop));
        assert_eq!(pool.free_count(), 0);
        let ran = Arc::new(AtomicUsize::new(0));
        let (p, r) = (pool.clone(), ran.clone());
        cancel_a_wait(how, after_a_while(), move || {
            p.spawn(move || {
                r.fetch_add(1, SeqCst);
            });
        });
        stop.set();
        pool.join();
        assert_eq!(ran.load(SeqCst), 0, "{how:?}: the cancelled spawn ran");
        assert_eq!(
            pool.free_count(),
            1,
            "{how:?}: the cancelled spawn kept a slot"
        );
        let r = ran.clone();
        pool.spawn(move || {
            r.fetch_add(1, SeqCst);
        })
        .join()
        .unwrap();
        assert_eq!(ran.load(SeqCst), 1);
    }
}

/// A condvar wakes a waiter only for a notify (no spurious wake-ups, as the contract says), so
/// one `wait` without a loop is enough: other condvars, timeouts and kills going on around it
/// must not end it early.
#[test]
fn sync_condvar_wait_returns_only_for_a_notify() {
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let woke_early = Arc::new(AtomicBool::new(false));
    let waiter = |pair: Arc<(Mutex<bool>, Condvar)>, early: Arc<AtomicBool>| {
        move || {
            let (m, c) = &*pair;
            let mut g = m.lock();
            if !*g {
                c.wait(&mut g);
                if !*g {
                    early.store(true, SeqCst);
                }
            }
        }
    };
    let greenlets: Vec<_> = (0..2)
        .map(|_| grove::spawn(waiter(pair.clone(), woke_early.clone())))
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(waiter(pair.clone(), woke_early.clone())))
        .collect();
    // Noise: another condvar notified, timed waits on it, a waiter on it killed.
    let other = Arc::new((Mutex::new(0), Condvar::new()));
    for round in 0..20 {
        let o = other.clone();
        let h = grove::spawn(move || {
            let (m, c) = &*o;
            let mut g = m.lock();
            let _ = c.wait_timeout(&mut g, ms(2));
        });
        other.1.notify_all();
        if round % 5 == 0 {
            h.kill();
        }
        let _ = h.join();
        grove::sleep(ms(1));
    }
    *pair.0.lock() = true;
    pair.1.notify_all();
    for g in greenlets {
        g.join().unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(!woke_early.load(SeqCst), "a wait returned without a notify");
}
