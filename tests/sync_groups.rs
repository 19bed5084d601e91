//! gevent's Group and Pool: membership, join, kill, the Pool's size limit, map and
//! imap_unordered.
//!
//! Every loop is bounded in count, and every wait that could hang on a bug is bounded in time.

mod common;

use common::*;

use grove::sync::{Event, Group, Pool};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Group

#[test]
fn sync_group_join_waits_for_every_member() {
    on_thread_and_greenlet(|| {
        let group = Group::new();
        let done = Arc::new(AtomicUsize::new(0));
        for i in 0..6u64 {
            let done = done.clone();
            group.spawn(move || {
                grove::sleep(ms(5 * i));
                done.fetch_add(1, SeqCst);
            });
        }
        group.join();
        assert_eq!(
            done.load(SeqCst),
            6,
            "join returned before every member finished"
        );
        assert_eq!(group.len(), 0);
        assert!(group.is_empty());
        group.join(); // an empty group joins at once
    });
}

#[test]
fn sync_group_join_waits_for_members_spawned_while_joining() {
    let group = Group::new();
    let late_done = Arc::new(AtomicBool::new(false));
    {
        let (g2, late_done) = (group.clone(), late_done.clone());
        group.spawn(move || {
            grove::sleep(ms(20));
            // Spawned while the test thread is already in join().
            g2.spawn(move || {
                grove::sleep(ms(40));
                late_done.store(true, SeqCst);
            });
        });
    }
    group.join();
    assert!(
        late_done.load(SeqCst),
        "join missed a member spawned while it waited"
    );
    assert!(group.is_empty());
}

#[test]
fn sync_group_kill_kills_sleeping_members() {
    let group = Group::new();
    let woke = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let woke = woke.clone();
            group.spawn(move || {
                grove::sleep(Duration::from_secs(30));
                woke.fetch_add(1, SeqCst);
            })
        })
        .collect();
    grove::sleep(ms(20)); // all asleep
    assert_eq!(group.len(), 5);
    let t0 = Instant::now();
    group.kill();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "kill waited for the sleeps"
    );
    // kill() waits for them to die.
    assert!(
        handles.iter().all(|h| h.is_finished()),
        "kill returned before members died"
    );
    assert_eq!(group.len(), 0);
    for h in handles {
        assert!(
            is_killed(&h.join().unwrap_err()),
            "a killed member's join gives Killed"
        );
    }
    assert_eq!(
        woke.load(SeqCst),
        0,
        "a killed member ran on after its sleep"
    );
}

#[test]
fn sync_group_len_counts_running_members_only() {
    let group = Group::new();
    assert_eq!(group.len(), 0);
    let gate = Arc::new(Event::new());
    let quick = group.spawn(|| 1);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let gate = gate.clone();
            group.spawn(move || gate.wait())
        })
        .collect();
    assert_eq!(quick.join().unwrap(), 1);
    assert_eq!(group.len(), 2, "a finished member is not counted");
    assert!(!group.is_empty());
    gate.set();
    for h in slow {
        h.join().unwrap();
    }
    assert_eq!(group.len(), 0);
    assert!(group.is_empty());
}

#[test]
fn sync_group_add_adopts_a_greenlet_spawned_elsewhere() {
    let group = Group::new();
    let gate = Arc::new(Event::new());
    let h = {
        let gate = gate.clone();
        grove::spawn(move || {
            gate.wait();
            5
        })
    };
    group.add(h.greenlet());
    assert_eq!(group.len(), 1);
    assert!(
        !group.join_timeout(ms(30)),
        "join_timeout with a running member"
    );
    gate.set();
    assert!(group.join_timeout(Duration::from_secs(5)));
    assert!(h.is_finished());
    assert_eq!(h.join().unwrap(), 5);

    // An adopted greenlet is killed with the group.
    let sleeper = grove::spawn(|| grove::sleep(Duration::from_secs(30)));
    group.add(sleeper.greenlet());
    grove::sleep(ms(10));
    group.kill();
    assert!(is_killed(&sleeper.join().unwrap_err()));
}

#[test]
fn sync_group_join_timeout() {
    let group = Group::new();
    let t0 = Instant::now();
    let release = Arc::new(grove::sync::Event::new());
    let r = release.clone();
    group.spawn(move || r.wait());
    assert!(!group.join_timeout(ms(20)));
    assert!(t0.elapsed() >= ms(20));
    assert_eq!(group.len(), 1);
    release.set();
    assert!(group.join_timeout(Duration::from_secs(5)));
    assert!(group.is_empty());
}

#[test]
fn sync_group_join_timeout_with_a_huge_timeout() {
    // Like every other *_timeout in grove (JoinHandle::wait_timeout, Queue::get_timeout,
    // recv_timeout), a timeout too large for an Instant means "no deadline".
    let h = grove::spawn(|| grove::sleep(ms(10)));
    assert!(h.wait_timeout(Duration::MAX));
    let group = Group::new();
    group.spawn(|| grove::sleep(ms(10)));
    let r = catch_unwind(AssertUnwindSafe(|| group.join_timeout(Duration::MAX)));
    match r {
        Ok(done) => assert!(done),
        Err(p) => panic!(
            "Group::join_timeout(Duration::MAX) panicked: {}",
            panic_text(&p)
        ),
    }
    let pool = Pool::new(1);
    pool.spawn(|| grove::sleep(ms(10)));
    let r = catch_unwind(AssertUnwindSafe(|| pool.join_timeout(Duration::MAX)));
    match r {
        Ok(done) => assert!(done),
        Err(p) => panic!(
            "Pool::join_timeout(Duration::MAX) panicked: {}",
            panic_text(&p)
        ),
    }
}

#[test]
fn sync_group_member_panic_does_not_break_join() {
    let group = Group::new();
    let ok = group.spawn(|| {
        grove::sleep(ms(10));
        "fine"
    });
    let bad = group.spawn(|| -> u8 { panic!("member failed") });
    group.join();
    assert_eq!(ok.join().unwrap(), "fine");
    assert_eq!(panic_text(&bad.join().unwrap_err()), "member failed");
    assert!(group.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Pool

#[test]
fn sync_pool_never_runs_more_than_size_at_once() {
    for size in [1usize, 3] {
        let pool = Pool::new(size);
        assert_eq!(pool.size(), size);
        let c = Arc::new(Concurrency::default());
        // Spawned from this thread and from a greenlet at once.
        let spawn_some = |pool: Pool, c: Arc<Concurrency>| {
            for _ in 0..8 {
                let c = c.clone();
                pool.spawn(move || {
                    c.enter();
                    grove::sleep(ms(10));
                    c.leave();
                });
            }
        };
        let other = {
            let (pool, c) = (pool.clone(), c.clone());
            grove::spawn(move || spawn_some(pool, c))
        };
        spawn_some(pool.clone(), c.clone());
        other.join().unwrap();
        pool.join();
        assert_eq!(
            c.peak(),
            size,
            "peak concurrency must be exactly the pool size"
        );
        assert_eq!(pool.free_count(), size);
    }
}

#[test]
fn sync_pool_spawn_waits_while_full() {
    let pool = Pool::new(2);
    let gate = Arc::new(Event::new());
    let members: Vec<_> = (0..2)
        .map(|i| {
            let gate = gate.clone();
            pool.spawn(move || {
                gate.wait();
                i
            })
        })
        .collect();
    assert_eq!(pool.free_count(), 0);
    assert_eq!(pool.len(), 2);
    let spawned = Arc::new(AtomicBool::new(false));
    let third_ran = Arc::new(AtomicBool::new(false));
    let spawner = {
        let (pool, spawned, third_ran) = (pool.clone(), spawned.clone(), third_ran.clone());
        grove::spawn(move || {
            let h = pool.spawn(move || third_ran.store(true, SeqCst));
            spawned.store(true, SeqCst);
            h.join().unwrap();
        })
    };
    grove::sleep(ms(40));
    assert!(
        !spawned.load(SeqCst),
        "spawn returned while the pool was full"
    );
    assert!(!third_ran.load(SeqCst));
    gate.set();
    spawner.join().unwrap();
    assert!(third_ran.load(SeqCst));
    let mut got: Vec<i32> = members.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1]);
    assert_eq!(pool.free_count(), 2);
}

#[test]
fn sync_pool_spawner_killed_while_waiting_takes_no_slot() {
    let pool = Pool::new(1);
    let gate = Arc::new(Event::new());
    let member = {
        let gate = gate.clone();
        pool.spawn(move || gate.wait())
    };
    let ran = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let spawner = {
        let (pool, ran, started) = (pool.clone(), ran.clone(), started.clone());
        grove::spawn(move || {
            started.store(true, SeqCst);
            pool.spawn(move || ran.store(true, SeqCst));
        })
    };
    wait_for("the spawner to start", || started.load(SeqCst));
    grove::sleep(ms(20)); // waiting for the slot
    spawner.kill();
    assert!(is_killed(&spawner.join().unwrap_err()));
    gate.set();
    member.join().unwrap();
    assert_eq!(pool.free_count(), 1, "a killed spawn leaked or took a slot");
    assert_eq!(pool.map(0..3, |x: u8| x), vec![0, 1, 2]);
    assert!(!ran.load(SeqCst), "a killed spawn still ran its function");
}

#[test]
fn sync_pool_free_count_tracks_running_members() {
    let pool = Pool::new(3);
    assert_eq!(pool.free_count(), 3);
    assert!(pool.is_empty());
    let gates: Vec<Arc<Event>> = (0..3).map(|_| Arc::new(Event::new())).collect();
    let hs: Vec<_> = gates
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let g = g.clone();
            let h = pool.spawn(move || g.wait());
            assert_eq!(pool.free_count(), 2 - k);
            h
        })
        .collect();
    assert_eq!(pool.len(), 3);
    for (k, (g, h)) in gates.iter().zip(hs).enumerate() {
        g.set();
        h.join().unwrap();
        assert_eq!(pool.free_count(), k + 1, "a joined member's slot is free");
    }
    assert!(pool.is_empty());
}

#[test]
fn sync_pool_slot_is_free_once_a_member_is_joined() {
    // The slot goes back before the result is delivered: whoever joins finds it free. Also
    // for a member that panics, and one that is killed.
    for size in [1usize, 2] {
        let pool = Pool::new(size);
        for i in 0..200u32 {
            let h = pool.spawn(move || i * 2);
            assert_eq!(h.join().unwrap(), i * 2);
            assert_eq!(pool.free_count(), size, "slot still taken after join ({i})");
        }
        let inside = {
            let p = pool.clone();
            pool.spawn(move || p.free_count())
        };
        assert_eq!(
            inside.join().unwrap(),
            size - 1,
            "a running member holds one slot"
        );
        let h = pool.spawn(|| -> u32 { panic!("member panics") });
        assert!(h.join().is_err());
        assert_eq!(
            pool.free_count(),
            size,
            "a panicking member gives its slot back"
        );
        let h = pool.spawn(|| grove::sleep(Duration::from_secs(30)));
        grove::sleep(ms(5));
        h.kill();
        assert!(is_killed(&h.join().unwrap_err()));
        assert_eq!(
            pool.free_count(),
            size,
            "a killed member gives its slot back"
        );
        // Killed before it ever ran.
        let h = pool.spawn(|| 1);
        h.kill();
        let _ = h.join();
        assert_eq!(
            pool.free_count(),
            size,
            "a member killed before it ran gives its slot back"
        );
    }
}

#[test]
fn sync_pool_kill_kills_members_and_frees_their_slots() {
    let pool = Pool::new(3);
    let hs: Vec<_> = (0..3)
        .map(|_| pool.spawn(|| grove::sleep(Duration::from_secs(30))))
        .collect();
    grove::sleep(ms(10));
    assert_eq!(pool.free_count(), 0);
    let t0 = Instant::now();
    pool.kill();
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(pool.free_count(), 3);
    assert!(pool.is_empty());
    for h in hs {
        assert!(is_killed(&h.join().unwrap_err()));
    }
    // The pool is still usable.
    assert_eq!(pool.map(0..5, |x: i32| x + 1), vec![1, 2, 3, 4, 5]);
}

#[test]
fn sync_pool_map_returns_results_in_input_order() {
    on_thread_and_greenlet(|| {
        let pool = Pool::new(4);
        let finished = Arc::new(StdMutex::new(Vec::new()));
        let c = Arc::new(Concurrency::default());
        let f = {
            let (finished, c) = (finished.clone(), c.clone());
            move |i: u64| {
                c.enter();
                grove::sleep(ms((8 - i) * 6)); // later items finish first
                finished.lock().unwrap().push(i);
                c.leave();
                i * 10
            }
        };
        let out = pool.map(0..8u64, f);
        assert_eq!(out, (0..8).map(|i| i * 10).collect::<Vec<_>>());
        let order = finished.lock().unwrap().clone();
        assert_eq!(order.len(), 8);
        assert!(
            order.windows(2).any(|w| w[0] > w[1]),
            "the test needs items finishing out of order: {order:?}"
        );
        assert!(c.peak() <= 4, "map ran {} at once in a pool of 4", c.peak());
        assert_eq!(pool.free_count(), 4);
        // Empty input.
        assert_eq!(pool.map(Vec::<u8>::new(), |x| x), Vec::<u8>::new());
    });
}

#[test]
fn sync_pool_map_reraises_a_members_panic() {
    let pool = Pool::new(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let f = {
        let ran = ran.clone();
        move |i: u32| {
            grove::sleep(ms(2));
            ran.fetch_add(1, SeqCst);
            if i == 3 {
                panic!("boom {i}");
            }
            i
        }
    };
    let r = catch_unwind(AssertUnwindSafe(|| pool.map(0..6u32, f)));
    let p = r.expect_err("map must re-raise the member's panic");
    assert_eq!(panic_text(&p), "boom 3", "the member's own payload");
    assert_eq!(ran.load(SeqCst), 6, "every call ran before map re-raised");
    assert_eq!(pool.free_count(), 2);
    assert!(pool.is_empty());
}

#[test]
fn sync_pool_imap_unordered_yields_results_as_they_finish() {
    // Finish order comes from sleep lengths, which a loaded machine can upset (the feeder may
    // start the 60 ms item late), so an attempt out of order is retried; yielding in input
    // order (or any fixed order) fails every attempt.
    let pool = Pool::new(3);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let got: Vec<u64> = pool
            .imap_unordered(vec![120u64, 10, 60], |d| {
                grove::sleep(ms(d));
                d
            })
            .collect();
        if got == [10, 60, 120] {
            break;
        }
        seen.push(got);
    }
    assert!(seen.len() < 3, "results not in finish order: {seen:?}");

    // Every result, each once, with more items than slots.
    let pool = Pool::new(4);
    let got: Vec<u64> = pool
        .imap_unordered(0..100u64, |i| {
            if i % 7 == 0 {
                grove::sleep(us(200));
            }
            i
        })
        .collect();
    assert_exactly_once(got, 100, "imap_unordered");
}

#[test]
fn sync_pool_slot_is_free_once_imap_unordered_is_exhausted() {
    // As with join: once every result has been delivered (the iterator has ended), every
    // member's slot must be free again, so a following spawn never waits for a finished one.
    let pool = Pool::new(2);
    let mut late = Vec::new();
    for round in 0..3000u32 {
        let got: Vec<u32> = pool.imap_unordered(0..2u32, |i| i).collect();
        assert_eq!(got.len(), 2);
        let free = pool.free_count();
        if free != 2 {
            late.push((round, free));
        }
        pool.join();
    }
    assert!(
        late.is_empty(),
        "after imap_unordered ended, a slot was still taken in {} of 3000 rounds \
         (round, free_count): {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
}

#[test]
fn sync_pool_imap_unordered_consumes_items_lazily() {
    let pool = Pool::new(2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Event::new());
    let c = Arc::new(Concurrency::default());
    let items = {
        let pulled = pulled.clone();
        (0..10u64).inspect(move |_| {
            pulled.fetch_add(1, SeqCst);
        })
    };
    let mut it = {
        let (gate, c) = (gate.clone(), c.clone());
        pool.imap_unordered(items, move |i| {
            c.enter();
            gate.wait();
            c.leave();
            i
        })
    };
    wait_for("two members running", || c.now.load(SeqCst) == 2);
    grove::sleep(ms(30));
    let n = pulled.load(SeqCst);
    // Two members hold the slots; the feeder may hold one more item while it waits for a slot.
    assert!(
        (2..=3).contains(&n),
        "{n} items pulled from the input with a pool of 2 blocked"
    );
    gate.set();
    let first = it.next().expect("a first result");
    let mut all = vec![first];
    all.extend(it);
    assert_exactly_once(all, 10, "lazy imap_unordered");
    assert_eq!(pulled.load(SeqCst), 10);
    assert!(c.peak() <= 2);
}

#[test]
fn sync_pool_imap_unordered_gives_early_results_before_later_items_start() {
    // Results can be consumed while later items still wait for a slot.
    let pool = Pool::new(1);
    let started = Arc::new(AtomicUsize::new(0));
    // Items after the first wait for this gate, opened once the first result is checked: a
    // pool that ran ahead of its consumer would still have them all started.
    let gate = Arc::new(grove::sync::Event::new());
    let mut it = {
        let (started, gate) = (started.clone(), gate.clone());
        pool.imap_unordered(0..5u32, move |i| {
            started.fetch_add(1, SeqCst);
            if i > 0 {
                gate.wait();
            }
            i
        })
    };
    assert_eq!(it.next(), Some(0));
    assert!(
        started.load(SeqCst) < 5,
        "all items had started before the first result was consumed"
    );
    gate.set();
    assert_eq!(
        it.collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "a pool of 1 runs in order"
    );
}

#[test]
fn sync_pool_imap_unordered_reraises_a_panic_when_reached() {
    let pool = Pool::new(2);
    let mut it = pool.imap_unordered(0..4u32, |i| {
        if i == 2 {
            grove::sleep(ms(30));
            panic!("imap boom");
        }
        i
    });
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.push(it.next().unwrap());
    }
    ok.sort_unstable();
    assert_eq!(ok, vec![0, 1, 3]);
    let r = catch_unwind(AssertUnwindSafe(|| it.next()));
    assert_eq!(
        panic_text(&r.expect_err("the panic re-raises")),
        "imap boom"
    );
}

#[test]
fn sync_pool_spawned_from_threads_and_greenlets() {
    let pool = Pool::new(3);
    let c = Arc::new(Concurrency::default());
    let total = Arc::new(AtomicUsize::new(0));
    let spawners: Vec<_> = (0..4)
        .map(|k| {
            let (pool, c, total) = (pool.clone(), c.clone(), total.clone());
            Worker::spawn(k % 2 == 0, move || {
                let hs: Vec<_> = (0..10)
                    .map(|i| {
                        let (c, total) = (c.clone(), total.clone());
                        pool.spawn(move || {
                            c.enter();
                            grove::sleep(us(300));
                            total.fetch_add(i, SeqCst);
                            c.leave();
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            })
        })
        .collect();
    for s in spawners {
        s.join();
    }
    pool.join();
    assert_eq!(total.load(SeqCst), 4 * 45);
    assert!(c.peak() <= 3, "peak {} in a pool of 3", c.peak());
    assert_eq!(pool.free_count(), 3);
}

#[test]
fn sync_pool_imap_unordered_reraises_a_panic_of_the_input_iterator() {
    // gevent delivers an error raised while iterating the input to the consumer. Here the
    // input panics at its fourth item: the results must not just end early as if complete.
    let pool = Pool::new(2);
    let items = (0..10u32).inspect(|&i| {
        if i == 3 {
            panic!("input boom");
        }
    });
    let it = pool.imap_unordered(items, |i| i);
    let r = catch_unwind(AssertUnwindSafe(|| it.collect::<Vec<_>>()));
    match r {
        Err(p) => assert_eq!(panic_text(&p), "input boom"),
        Ok(got) => {
            panic!("the input's panic was swallowed: imap_unordered ended quietly after {got:?}")
        }
    }
}

#[test]
#[should_panic(expected = "at least one slot")]
fn sync_pool_of_size_zero_panics() {
    let _ = Pool::new(0);
}

/// A member that, when it dies, spawns its successor into the same group (a restart pattern).
struct Respawn(Group, u32);
impl Drop for Respawn {
    fn drop(&mut self) {
        if self.1 > 0 {
            let (g, n) = (self.0.clone(), self.1 - 1);
            self.0.spawn(move || {
                let _r = Respawn(g, n);
                grove::sleep(Duration::from_secs(30));
            });
        }
    }
}

#[test]
fn sync_group_kill_also_kills_members_spawned_while_dying() {
    // gevent's `kill(block=True)` loops while the group has members; one snapshot left the
    // successors running.
    let g = Group::new();
    let g2 = g.clone();
    g.spawn(move || {
        let _r = Respawn(g2, 3);
        grove::sleep(Duration::from_secs(30));
    });
    grove::sleep(Duration::from_millis(20));
    let t = Instant::now();
    g.kill();
    assert_eq!(g.len(), 0, "a successor survived kill");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn sync_pool_kill_and_join_reach_imap_unordered_items_not_yet_started() {
    // The feeder was not a member: after `kill` it went on starting members, and `join`
    // returned before the items it had yet to start had run.
    let started = Arc::new(AtomicUsize::new(0));
    let pool = Pool::new(1);
    let s = started.clone();
    let it = pool.imap_unordered(0..5u32, move |i| {
        s.fetch_add(1, SeqCst);
        grove::sleep(Duration::from_secs(30)); // still running when the kill comes
        i
    });
    common::wait_for("the first item to start", || started.load(SeqCst) == 1);
    pool.kill();
    let after_kill = started.load(SeqCst);
    grove::sleep(Duration::from_millis(150));
    assert_eq!(
        started.load(SeqCst),
        after_kill,
        "members started after kill"
    );
    let got: Vec<u32> = it.collect(); // the killed member has no result; nothing re-raised
    assert!(got.is_empty(), "{got:?}");

    let done = Arc::new(AtomicUsize::new(0));
    let pool = Pool::new(1);
    let d = done.clone();
    let _it = pool.imap_unordered(0..4u32, move |_| {
        grove::sleep(Duration::from_millis(5));
        d.fetch_add(1, SeqCst);
    });
    pool.join();
    assert_eq!(done.load(SeqCst), 4, "join returned before every item ran");
}

#[test]
fn sync_pool_imap_yields_in_input_order_and_group_maps() {
    // gevent's `Pool.imap` (ordered) and `Group.map` were missing next to `imap_unordered`.
    let pool = Pool::new(3);
    let got: Vec<u64> = pool
        .imap(0..10u64, |i| {
            // Later items finish first.
            grove::sleep(Duration::from_millis(10 - i));
            i * 10
        })
        .collect();
    assert_eq!(got, (0..10).map(|i| i * 10).collect::<Vec<_>>());
    // A panic comes out at its place in the order, after the results before it.
    let mut it = pool.imap(0..4u32, |i| {
        if i == 2 {
            panic!("item two");
        }
        i
    });
    assert_eq!((it.next(), it.next()), (Some(0), Some(1)));
    let p = catch_unwind(AssertUnwindSafe(|| it.next())).unwrap_err();
    assert_eq!(panic_text(&p), "item two");
    let group = Group::new();
    assert_eq!(group.map(vec!["a", "bb", "ccc"], |s| s.len()), [1, 2, 3]);
}

#[test]
fn sync_pool_imap_skips_members_the_pool_killed() {
    // `imap` re-raised a killed member's `Killed` in the caller, as if it had been killed.
    let pool = Pool::new(2);
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let mut it = pool.imap(0..2u32, move |i| {
        s.fetch_add(1, SeqCst);
        if i == 1 {
            grove::sleep(Duration::from_secs(30));
        }
        i
    });
    assert_eq!(it.next(), Some(0));
    wait_for("both members to start", || started.load(SeqCst) == 2);
    pool.kill();
    assert_eq!(it.next(), None);
}

#[test]
fn sync_map_of_a_killed_pool_or_group_raises_a_message_not_the_members_kill() {
    // `map` re-raised a killed member's `Killed` in its caller, which then looked killed
    // itself (its `join` gave `Err(Killed)`) though nobody killed it. `imap` skips such
    // members; `map`, which owes a result per item, raises `MAP_KILLED` instead.
    for use_pool in [true, false] {
        let pool = Pool::new(2);
        let group = Group::new();
        let started = Arc::new(AtomicUsize::new(0));
        let (p, g, s) = (pool.clone(), group.clone(), started.clone());
        let caller = grove::spawn(move || {
            let f = move |i: u32| {
                s.fetch_add(1, SeqCst);
                grove::sleep(Duration::from_secs(30));
                i
            };
            if use_pool {
                p.map(0..2u32, f)
            } else {
                g.map(0..2u32, f)
            }
        });
        common::wait_for("both members to start", || started.load(SeqCst) == 2);
        if use_pool {
            pool.kill();
        } else {
            group.kill();
        }
        let err = caller.join().unwrap_err();
        assert!(!err.is::<grove::Killed>(), "map's caller looks killed");
        assert_eq!(common::panic_text(&err), grove::sync::MAP_KILLED);
    }
}

#[test]
fn sync_pool_kill_stops_a_map_that_is_still_feeding() {
    // `map` feeds its items from its caller, waiting for slots, where `kill` cannot reach: a
    // slot freed by the kill went to the next item, which started after `kill` returned.
    let pool = Pool::new(1);
    let started = Arc::new(AtomicUsize::new(0));
    let (p, s) = (pool.clone(), started.clone());
    let caller = grove::spawn(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.map(0..4u32, move |i| {
                s.fetch_add(1, SeqCst);
                grove::sleep(Duration::from_secs(30));
                i
            })
        }))
    });
    common::wait_for("the first item to start", || started.load(SeqCst) == 1);
    pool.kill();
    let after_kill = started.load(SeqCst);
    let err = caller.join().unwrap().unwrap_err(); // map raised, caught by the caller
    assert_eq!(common::panic_text(&err), grove::sync::MAP_KILLED);
    assert_eq!(started.load(SeqCst), after_kill, "items started after kill");
    assert_eq!(pool.free_count(), 1, "a slot was lost");
}

#[test]
fn sync_pool_join_from_a_member_lets_imap_unordered_start_its_waiting_items() {
    // A member that joins its pool waited for the feeder, which waited for the member's slot:
    // with one slot, for ever. The member now gives its slot back while it waits.
    let pool = Pool::new(1);
    let p = pool.clone();
    let joined = Arc::new(AtomicBool::new(false));
    let j = joined.clone();
    let it = pool.imap_unordered(0..3u32, move |i| {
        if i == 0 {
            let r = grove::timeout(Duration::from_secs(10), || p.join());
            j.store(r.is_ok(), SeqCst);
        }
        i
    });
    let mut got: Vec<u32> = it.collect();
    got.sort();
    assert_eq!(got, [0, 1, 2]);
    assert!(joined.load(SeqCst), "join from a member never returned");
    // The slot came back to the member, and then to the pool: still one slot, no more.
    assert_eq!(pool.free_count(), 1);
    assert_eq!(pool.size(), 1);
}
