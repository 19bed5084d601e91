//! The Greenlets section of the API contract: spawn, Builder, JoinHandle, current, sleep,
//! yield_now, workers, greenlet-local storage.

mod common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn rt_spawn_join_returns_value_from_plain_thread() {
    assert!(grove::current().is_none());
    assert_eq!(grove::spawn(|| 40 + 2).join().unwrap(), 42);
}

#[test]
fn rt_spawn_join_inside_greenlets_nests() {
    let h = grove::spawn(|| {
        let inner: Vec<_> = (0..50u64).map(|i| grove::spawn(move || i * i)).collect();
        inner.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(h.join().unwrap(), (0..50u64).map(|i| i * i).sum());
}

#[test]
fn rt_join_gives_panic_payload_like_std() {
    let seven = std::hint::black_box(7);
    let h = grove::Builder::new()
        .name("boom")
        .spawn(move || -> u32 { panic!("kaboom {seven}") })
        .unwrap();
    let err = h.join().unwrap_err();
    assert_eq!(
        err.downcast_ref::<String>().map(String::as_str),
        Some("kaboom 7")
    );
}

#[test]
fn rt_is_finished_turns_true_after_completion() {
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let h = grove::spawn(move || {
        while !g.load(SeqCst) {
            grove::sleep(Duration::from_millis(1));
        }
    });
    assert!(!h.is_finished());
    gate.store(true, SeqCst);
    let t = Instant::now();
    while !h.is_finished() {
        assert!(t.elapsed() < Duration::from_secs(5), "never finished");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.join().unwrap();
}

#[test]
fn rt_builder_name_id_and_current() {
    let h = grove::Builder::new()
        .name("worker-bee")
        .spawn(|| {
            let c = grove::current().expect("inside a greenlet");
            (c.id(), c.name().map(str::to_owned))
        })
        .unwrap();
    let id = h.id();
    assert_eq!(h.name(), Some("worker-bee"));
    let (cid, cname) = h.join().unwrap();
    assert_eq!(cid, id);
    assert_eq!(cname.as_deref(), Some("worker-bee"));
    let unnamed = grove::spawn(|| grove::current().unwrap().name().map(str::to_owned));
    assert_eq!(unnamed.name(), None);
    assert_eq!(unnamed.join().unwrap(), None);
}

#[test]
fn rt_ids_are_unique() {
    let hs: Vec<_> = (0..1000).map(|_| grove::spawn(|| ())).collect();
    let mut ids: Vec<_> = hs.iter().map(|h| h.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    for h in hs {
        h.join().unwrap();
    }
}

fn recurse(depth: u32) -> u64 {
    let buf = [depth as u8; 1024];
    if depth == 0 {
        return buf[0] as u64;
    }
    std::hint::black_box(&buf);
    recurse(depth - 1) + buf[1] as u64
}

#[test]
fn rt_builder_stack_size_allows_deep_recursion() {
    // ~2 MiB of frames: far past the default stack, fine on an 8 MiB one.
    let h = grove::Builder::new()
        .stack_size(8 << 20)
        .spawn(|| recurse(2000))
        .unwrap();
    assert!(h.join().unwrap() > 0);
}

#[test]
fn rt_builder_stack_size_small_values_are_rounded_up() {
    let h = grove::Builder::new().stack_size(1).spawn(|| 5).unwrap();
    assert_eq!(h.join().unwrap(), 5);
}

#[test]
fn rt_sleep_parks_for_at_least_the_duration() {
    let h = grove::spawn(|| {
        let t = Instant::now();
        grove::sleep(Duration::from_millis(30));
        t.elapsed()
    });
    let e = h.join().unwrap();
    assert!(e >= Duration::from_millis(30), "{e:?}");
    assert!(e < Duration::from_secs(5), "{e:?}");
}

#[test]
fn rt_sleeping_greenlets_overlap() {
    let t = Instant::now();
    let hs: Vec<_> = (0..1000)
        .map(|_| grove::spawn(|| grove::sleep(Duration::from_millis(50))))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(50) && e < Duration::from_secs(10),
        "{e:?}"
    );
}

#[test]
fn rt_sleep_until_and_past_deadlines() {
    let h = grove::spawn(|| {
        let t = Instant::now();
        grove::sleep_until(t + Duration::from_millis(20));
        let slept = t.elapsed();
        let t2 = Instant::now();
        grove::sleep_until(t2 - Duration::from_millis(5)); // already past: just yields
        grove::sleep(Duration::ZERO);
        (slept, t2.elapsed())
    });
    let (slept, past) = h.join().unwrap();
    assert!(slept >= Duration::from_millis(20));
    // Just a yield; the bound leaves room for other tests' greenlets queued on this worker.
    assert!(past < Duration::from_secs(2), "{past:?}");
}

#[test]
fn rt_sleep_on_plain_thread_blocks_thread() {
    let t = Instant::now();
    grove::sleep(Duration::from_millis(20));
    assert!(t.elapsed() >= Duration::from_millis(20));
}

#[test]
fn rt_yield_now_on_plain_thread_returns() {
    grove::yield_now();
}

#[test]
fn rt_workers_follows_grove_workers() {
    if common::role().is_some() {
        assert_eq!(grove::workers(), 3);
        return;
    }
    let out = common::run_child(
        "rt_workers_follows_grove_workers",
        "workers",
        &[("GROVE_WORKERS", "3")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn rt_yield_now_runs_every_other_runnable_greenlet_first() {
    if common::role().is_some() {
        // One worker: a, b and c take turns strictly.
        let log = Arc::new(Mutex::new(Vec::new()));
        let outer = log.clone();
        grove::spawn(move || {
            let hs: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .map(|name| {
                    let log = outer.clone();
                    grove::spawn(move || {
                        for i in 0..3 {
                            log.lock().unwrap().push(format!("{name}{i}"));
                            grove::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        })
        .join()
        .unwrap();
        let got = log.lock().unwrap().join(" ");
        assert_eq!(got, "a0 b0 c0 a1 b1 c1 a2 b2 c2");
        return;
    }
    let out = common::run_child(
        "rt_yield_now_runs_every_other_runnable_greenlet_first",
        "yield",
        &[("GROVE_WORKERS", "1")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn rt_yield_now_lets_pinned_and_global_queue_greenlets_run_first() {
    // With one worker, greenlets that wait in the pinned inbox (a woken pinned greenlet) or in
    // the global queue (spawned from a plain thread) came round only every 61 ticks: a yielding
    // greenlet went ~50 times before them.
    if common::role().is_some() {
        let ev = Arc::new(grove::sync::Event::new());
        let ran = Arc::new(AtomicBool::new(false));
        let (e, r) = (ev.clone(), ran.clone());
        let yields = grove::spawn(move || {
            let b = grove::Builder::new()
                .pinned(true)
                .spawn(move || {
                    e.wait();
                    r.store(true, SeqCst);
                })
                .unwrap();
            grove::sleep(Duration::from_millis(10)); // b parks on the event
            ev.set();
            let mut n = 0;
            while !ran.load(SeqCst) {
                grove::yield_now();
                n += 1;
            }
            b.join().unwrap();
            n
        })
        .join()
        .unwrap();
        assert!(yields <= 1, "the pinned greenlet ran after {yields} yields");
        // A greenlet spawned from this plain thread (into the global queue), while a greenlet
        // yields in a loop: counted from when the spawn has returned.
        let flags: Arc<[AtomicBool; 3]> = Default::default(); // looping, queued, ran
        let f = flags.clone();
        let yielder = grove::spawn(move || {
            f[0].store(true, SeqCst);
            let mut after = 0u64;
            while !f[2].load(SeqCst) {
                grove::yield_now();
                after += u64::from(f[1].load(SeqCst));
            }
            after
        });
        while !flags[0].load(SeqCst) {
            std::thread::yield_now();
        }
        let f = flags.clone();
        grove::spawn(move || f[2].store(true, SeqCst));
        flags[1].store(true, SeqCst);
        let after = yielder.join().unwrap();
        assert!(after <= 2, "the spawned greenlet ran after {after} yields");
        return;
    }
    let out = common::run_child(
        "rt_yield_now_lets_pinned_and_global_queue_greenlets_run_first",
        "yield",
        &[("GROVE_WORKERS", "1")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn rt_builder_refuses_a_stack_too_large_to_describe() {
    // Near usize::MAX the size arithmetic wrapped: a silent default stack, or a segfault.
    for size in [usize::MAX, usize::MAX - 4095, (1 << 40) + 1] {
        let e = grove::Builder::new()
            .stack_size(size)
            .spawn(|| ())
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{size}: {e}");
        assert!(e.to_string().contains("stack"), "{e}");
    }
    let h = grove::Builder::new()
        .stack_size(100_001)
        .spawn(|| 7)
        .unwrap();
    assert_eq!(h.join().unwrap(), 7);
}

#[test]
fn rt_ten_thousand_greenlets_spawn_and_join() {
    let count = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..10_000)
        .map(|_| {
            let c = count.clone();
            grove::spawn(move || {
                grove::yield_now();
                c.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(count.load(SeqCst), 10_000);
}

#[test]
fn rt_join_from_greenlet_parks_only_that_greenlet() {
    // The joined greenlet can only finish if a third greenlet makes progress while the joiner is
    // parked in `join`: with one worker, a join that blocked the thread would deadlock.
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let ticker = grove::spawn(move || {
        for _ in 0..5 {
            p.fetch_add(1, SeqCst);
            grove::sleep(Duration::from_millis(1));
        }
    });
    let p = progress.clone();
    let joiner = grove::spawn(move || {
        grove::spawn(move || {
            while p.load(SeqCst) < 5 {
                grove::sleep(Duration::from_millis(1));
            }
        })
        .join()
        .unwrap()
    });
    assert!(
        joiner.wait_timeout(Duration::from_secs(10)),
        "join blocked the worker"
    );
    joiner.join().unwrap();
    ticker.join().unwrap();
}

grove::greenlet_local! {
    static COUNTER: Cell<u32> = Cell::new(0);
    static DROPS: DropCounter = DropCounter;
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct DropCounter;
impl Drop for DropCounter {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, SeqCst);
    }
}

#[test]
fn rt_greenlet_local_is_per_greenlet_and_dropped_at_end() {
    let before = DROPPED.load(SeqCst);
    let hs: Vec<_> = (0..20)
        .map(|i| {
            grove::spawn(move || {
                DROPS.with(|_| ());
                for _ in 0..i {
                    COUNTER.with(|c| c.set(c.get() + 1));
                    grove::yield_now();
                }
                COUNTER.with(|c| c.get())
            })
        })
        .collect();
    for (i, h) in hs.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u32);
    }
    assert_eq!(DROPPED.load(SeqCst) - before, 20);
    // On a plain thread the value is per thread.
    COUNTER.with(|c| c.set(99));
    std::thread::spawn(|| COUNTER.with(|c| assert_eq!(c.get(), 0)))
        .join()
        .unwrap();
    COUNTER.with(|c| assert_eq!(c.get(), 99));
}

grove::greenlet_local! {
    /// Made from another local, by an initialiser that blocks.
    static ANSWER: u32 = BASE.with(|b| *b + 1);
    static BASE: u32 = {
        grove::sleep(Duration::from_millis(1));
        41
    };
    /// Uses another local as it is dropped.
    static FAREWELL: UsesLocalOnDrop = UsesLocalOnDrop;
    static FAREWELLS_SEEN: Cell<u32> = Cell::new(0);
}

static LOCAL_USED_IN_DROP: AtomicUsize = AtomicUsize::new(0);

struct UsesLocalOnDrop;
impl Drop for UsesLocalOnDrop {
    fn drop(&mut self) {
        FAREWELLS_SEEN.with(|c| c.set(c.get() + 1));
        LOCAL_USED_IN_DROP.fetch_add(1, SeqCst);
    }
}

#[test]
fn rt_greenlet_local_initialisers_and_destructors_may_use_other_locals() {
    let before = LOCAL_USED_IN_DROP.load(SeqCst);
    let h = grove::spawn(|| {
        FAREWELL.with(|_| ());
        ANSWER.with(|a| *a)
    });
    assert_eq!(h.join().unwrap(), 42);
    assert_eq!(LOCAL_USED_IN_DROP.load(SeqCst) - before, 1);
    // On a plain thread too (its map was borrowed across the initialiser: "already borrowed").
    assert_eq!(
        std::thread::spawn(|| ANSWER.with(|a| *a)).join().unwrap(),
        42
    );
}

#[test]
fn rt_pinned_greenlet_stays_on_one_worker() {
    let h = grove::Builder::new()
        .pinned(true)
        .spawn(|| {
            let first = std::thread::current().id();
            for i in 0..200 {
                if i % 2 == 0 {
                    grove::yield_now();
                } else {
                    grove::sleep(Duration::from_micros(100));
                }
                assert_eq!(std::thread::current().id(), first, "pinned greenlet moved");
            }
        })
        .unwrap();
    // Keep the other workers busy stealing, to give them every chance to take it.
    let noise: Vec<_> = (0..200)
        .map(|_| grove::spawn(|| grove::sleep(Duration::from_micros(50))))
        .collect();
    h.join().unwrap();
    for n in noise {
        n.join().unwrap();
    }
}

#[test]
fn rt_join_handle_methods_answer_in_the_contracts_path_form() {
    use grove::JoinHandle;
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let h: JoinHandle<()> = grove::Builder::new()
        .name("paths")
        .spawn(move || {
            while !r.load(SeqCst) {
                grove::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    assert_eq!(JoinHandle::name(&h), Some("paths"));
    assert_eq!(JoinHandle::id(&h), h.greenlet().id());
    assert!(!JoinHandle::is_finished(&h));
    JoinHandle::kill(&h);
    let t = Instant::now();
    while !JoinHandle::is_finished(&h) {
        assert!(t.elapsed() < Duration::from_secs(10), "kill did not end it");
        std::thread::sleep(Duration::from_millis(1));
    }
    let err = h.join().unwrap_err();
    assert!(err.downcast_ref::<grove::Killed>().is_some());
    release.store(true, SeqCst);
}

/// Sleeps and joins a greenlet when its thread's thread-locals are destroyed.
struct BlocksOnThreadExit(std::sync::mpsc::Sender<bool>);
impl Drop for BlocksOnThreadExit {
    fn drop(&mut self) {
        grove::sleep(Duration::from_millis(5));
        let joined = grove::spawn(|| 5).join().is_ok_and(|v| v == 5);
        // A `timeout` and a condvar wait (which re-locks shielded) here too: each kept state on
        // a stand-in context made afresh per call (scopes popped out of order; a shield count
        // that underflowed), and aborted the process.
        let timed = grove::timeout(Duration::from_millis(50), || 1) == Ok(1);
        let m = grove::sync::Mutex::new(());
        let cv = grove::sync::Condvar::new();
        let waited = cv.wait_timeout(&mut m.lock(), Duration::from_millis(5));
        let _ = self.0.send(joined && timed && waited);
    }
}

thread_local! {
    static ON_EXIT: std::cell::RefCell<Option<BlocksOnThreadExit>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn rt_blocking_calls_work_in_a_thread_local_destructor() {
    // A user's thread-local registered before grove's own per-thread context is destroyed
    // after it: its `Drop` calling `grove::sleep` panicked ("cannot access a Thread Local
    // Storage value during or after destruction") and the process aborted. In a child.
    if common::role().is_none() {
        let out = common::run_child(
            "rt_blocking_calls_work_in_a_thread_local_destructor",
            "tls",
            &[],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    let _ = grove::workers();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        ON_EXIT.with(|x| *x.borrow_mut() = Some(BlocksOnThreadExit(tx))); // registered first
        grove::sleep(Duration::from_millis(1)); // grove's context second
    })
    .join()
    .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
}

grove::greenlet_local! {
    static JOB_VALUE: Cell<u32> = Cell::new(0);
    static JOB_DROPS: JobDropCounter = JobDropCounter;
}

static JOB_DROPPED: AtomicUsize = AtomicUsize::new(0);

struct JobDropCounter;
impl Drop for JobDropCounter {
    fn drop(&mut self) {
        JOB_DROPPED.fetch_add(1, SeqCst);
    }
}

#[test]
fn rt_spawn_blocking_jobs_get_their_own_locals_dropped_when_they_end() {
    // Values were kept per pool thread: a later, unrelated job saw an earlier job's value,
    // and none was dropped when its job ended.
    for i in 0..4u32 {
        let seen = grove::spawn_blocking(move || {
            JOB_DROPS.with(|_| ());
            let seen = JOB_VALUE.with(|v| v.get());
            JOB_VALUE.with(|v| v.set(100 + i));
            seen
        })
        .join()
        .unwrap();
        assert_eq!(seen, 0, "job {i} saw another job's value");
        assert_eq!(
            JOB_DROPPED.load(SeqCst),
            i as usize + 1,
            "job {i}'s value lived on"
        );
    }
}

grove::greenlet_local! {
    /// Uses its own key as it is dropped (a logger that logs through itself).
    static SELFISH: UsesItselfOnDrop = UsesItselfOnDrop;
    static PANICS_ONCE: PanicsOnDrop = PanicsOnDrop;
    static PANICS_TWICE: PanicsOnDrop = PanicsOnDrop;
    static OUTLIVES_PANICS: Cell<u32> = Cell::new(0);
}

static SELFISH_DROPS: AtomicUsize = AtomicUsize::new(0);

struct UsesItselfOnDrop;
impl Drop for UsesItselfOnDrop {
    fn drop(&mut self) {
        SELFISH_DROPS.fetch_add(1, SeqCst);
        SELFISH.with(|_| ()); // panics: the value is gone, and must not be made again
    }
}

struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a greenlet-local's destructor panics");
    }
}

#[test]
fn rt_greenlet_local_teardown_survives_destructors_that_panic_or_use_their_own_key() {
    // A destructor that used its own key made the value again, round after round, and the
    // greenlet never finished; a second panicking destructor, dropped during the first one's
    // unwind, aborted the process. Now each value is dropped once, each panic is caught, and
    // the greenlet's own result stands; on a plain pool thread too, whose keys are usable again
    // by the next job.
    let body = || {
        SELFISH.with(|_| ());
        PANICS_ONCE.with(|_| ());
        OUTLIVES_PANICS.with(|c| c.set(1));
        PANICS_TWICE.with(|_| ());
        7
    };
    let before = SELFISH_DROPS.load(SeqCst);
    let h = grove::spawn(body);
    common::wait_for("the greenlet to finish its teardown", || h.is_finished());
    assert_eq!(h.join().unwrap(), 7);
    assert_eq!(SELFISH_DROPS.load(SeqCst) - before, 1);
    for _ in 0..2 {
        let job = grove::spawn_blocking(body);
        common::wait_for("the job to finish its teardown", || job.is_finished());
        assert_eq!(job.join().unwrap(), 7);
    }
    assert_eq!(SELFISH_DROPS.load(SeqCst) - before, 3);
}

grove::greenlet_local! {
    static COUNTED: Cell<u32> = Cell::new(0);
    static NAMES: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(Vec::new())
}

grove::greenlet_local!(static LONE: Cell<u8> = Cell::new(7));

#[test]
fn rt_greenlet_local_keys_have_std_local_key_conveniences() {
    // A std user's `FOO.set(3)`, `FOO.with_borrow_mut(..)`, and a declaration without its last
    // `;` did not compile.
    let h = grove::spawn(|| {
        COUNTED.set(3);
        assert_eq!(COUNTED.get(), 3);
        assert_eq!(COUNTED.replace(5), 3);
        assert_eq!(COUNTED.take(), 5);
        NAMES.with_borrow_mut(|v| v.push("a".into()));
        NAMES.set(vec!["b".into()]);
        assert_eq!(NAMES.with_borrow(|v| v.clone()), ["b"]);
        assert_eq!(NAMES.take(), ["b"]);
        assert_eq!(LONE.try_with(|c| c.get()), Ok(7));
    });
    h.join().unwrap();
    // Per greenlet: a fresh one starts from the initialisers again.
    assert_eq!(grove::spawn(|| COUNTED.get()).join().unwrap(), 0);
}

static SET_INITS: AtomicUsize = AtomicUsize::new(0);

grove::greenlet_local! {
    static SET_ONLY: Cell<u32> = {
        SET_INITS.fetch_add(1, SeqCst);
        Cell::new(1)
    };
}

#[test]
fn rt_greenlet_local_set_does_not_run_the_initialiser() {
    // As std's `LocalKey::set`: a value set before any use is the value, without the
    // initialiser's side effects.
    let before = SET_INITS.load(SeqCst);
    let got = grove::spawn(|| {
        SET_ONLY.set(9);
        SET_ONLY.get()
    })
    .join()
    .unwrap();
    assert_eq!(got, 9);
    assert_eq!(SET_INITS.load(SeqCst), before);
}

#[test]
fn rt_a_plain_threads_locals_are_dropped_newest_first_at_exit_and_may_use_each_other() {
    // std dropped a plain thread's map as a plain vector, oldest value first, inside its
    // thread-local destructor: a value whose `Drop` used another local panicked there, which
    // aborts the process. (In a child: the old code took the whole test binary down.)
    const NAME: &str =
        "rt_a_plain_threads_locals_are_dropped_newest_first_at_exit_and_may_use_each_other";
    if common::role().is_none() {
        let out = common::run_child(NAME, "exit", &[]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    let before = LOCAL_USED_IN_DROP.load(SeqCst);
    std::thread::spawn(|| {
        FAREWELLS_SEEN.with(|c| c.set(5)); // older than FAREWELL, so still there for its drop
        FAREWELL.with(|_| ());
    })
    .join()
    .unwrap();
    assert_eq!(LOCAL_USED_IN_DROP.load(SeqCst) - before, 1);
}

grove::greenlet_local! {
    /// Its initialiser uses its own key once (per thread or greenlet), so two values are made
    /// and one loses.
    static REENTRANT: LoserUsesLocals = make_reentrant();
    static LOSERS_DROPPED: Cell<u32> = Cell::new(0);
    static REENTERED: Cell<bool> = Cell::new(false);
}

struct LoserUsesLocals;
impl Drop for LoserUsesLocals {
    fn drop(&mut self) {
        LOSERS_DROPPED.with(|c| c.set(c.get() + 1));
    }
}

fn make_reentrant() -> LoserUsesLocals {
    if !REENTERED.replace(true) {
        REENTRANT.with(|_| ()); // stores the inner value: the one made here loses
    }
    LoserUsesLocals
}

#[test]
fn rt_a_local_value_that_lost_a_reentrant_initialisation_is_dropped_with_no_borrow_held() {
    // The losing value was dropped while the map was still borrowed: on a plain thread its
    // `Drop`, using a local, panicked ("already mutably borrowed"); in a greenlet it reached
    // the map through a pointer while a `&mut` to it was live.
    let made = || {
        REENTRANT.with(|_| ());
        LOSERS_DROPPED.get()
    };
    assert_eq!(std::thread::spawn(made).join().unwrap(), 1);
    assert_eq!(grove::spawn(made).join().unwrap(), 1);
}

#[test]
fn rt_a_panic_hook_set_before_the_runtime_starts_sees_greenlet_panics() {
    // grove's hook replaced the previous one inside greenlets, so a program's own reporter (set
    // at start, before the first spawn) never heard of a greenlet's panic. It now gets every
    // panic; grove names the greenlet itself only in front of std's default hook. Found by a
    // review.
    if common::role().is_some() {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or("?");
            let who =
                grove::current().map_or("a thread".to_string(), |g| format!("{}", g.id().as_u64()));
            eprintln!("CUSTOM HOOK ({who}): {msg}");
        }));
        assert!(std::thread::spawn(|| panic!("in a thread")).join().is_err());
        assert!(grove::spawn(|| panic!("in a greenlet")).join().is_err());
        return;
    }
    let out = common::run_child(
        "rt_a_panic_hook_set_before_the_runtime_starts_sees_greenlet_panics",
        "hook",
        &[],
    );
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("CUSTOM HOOK (a thread): in a thread"), "{err}");
    assert!(err.contains("CUSTOM HOOK (1): in a greenlet"), "{err}");
    assert!(
        !err.contains("greenlet '<unnamed>'"),
        "grove reported over the program's hook: {err}"
    );
}

/// Counts its drops; sends on `tx` when dropped (so a test can wait for the drop).
struct DropSignal(grove::sync::Sender<&'static str>, &'static str);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(self.1);
    }
}

#[test]
fn rt_detached_greenlets_result_is_dropped_when_it_finishes_not_when_its_timers_expire() {
    // The greenlet parks with a long timeout first: the cancelled timer's token keeps a
    // reference to the task until the old deadline. The result must not wait for it.
    let (drops_tx, drops) = grove::sync::channel::<&'static str>();
    let (go_tx, go) = grove::sync::channel::<()>();
    let tx = drops_tx.clone();
    drop(grove::spawn(move || {
        go.recv_timeout(Duration::from_secs(60)).unwrap();
        DropSignal(tx, "handle dropped first")
    }));
    common::wait_for("the greenlet to park", || go_tx.waiting().1 == 1);
    go_tx.send(()).unwrap();
    assert_eq!(
        drops.recv_timeout(Duration::from_secs(10)),
        Ok("handle dropped first"),
        "the finished greenlet's result was kept"
    );

    // The handle dropped after the greenlet finished: the result goes with the handle.
    let (go_tx, go) = grove::sync::channel::<()>();
    let tx = drops_tx.clone();
    let h = grove::spawn(move || {
        go.recv_timeout(Duration::from_secs(60)).unwrap();
        DropSignal(tx, "handle dropped after")
    });
    common::wait_for("the greenlet to park", || go_tx.waiting().1 == 1);
    go_tx.send(()).unwrap();
    common::wait_for("the greenlet to finish", || h.is_finished());
    assert!(
        drops.try_recv().is_err(),
        "dropped while its handle could still take it"
    );
    drop(h);
    assert_eq!(
        drops.try_recv(),
        Ok("handle dropped after"),
        "not dropped with the handle"
    );
}

#[test]
fn rt_a_join_that_unwinds_leaves_the_result_to_nobody() {
    // The joiner is killed while it waits: the join's handle is gone, so the target's result is
    // dropped when the target finishes, not kept until the target's last reference goes.
    let (drops_tx, drops) = grove::sync::channel::<&'static str>();
    let (go_tx, go) = grove::sync::channel::<()>();
    let target = grove::spawn(move || {
        go.recv_timeout(Duration::from_secs(60)).unwrap();
        DropSignal(drops_tx, "result")
    });
    common::wait_for("the target to park", || go_tx.waiting().1 == 1);
    let target_greenlet = target.greenlet();
    let (joining_tx, joining) = grove::sync::channel::<()>();
    let joiner = grove::spawn(move || {
        joining_tx.send(()).unwrap();
        target.join().map(drop) // a kill landing before or in its park unwinds it from here
    });
    joining.recv_timeout(Duration::from_secs(10)).unwrap();
    joiner.kill();
    assert!(joiner.join().is_err(), "the joiner was not killed");
    go_tx.send(()).unwrap();
    assert_eq!(drops.recv_timeout(Duration::from_secs(10)), Ok("result"));
    common::wait_for("the target to finish", || target_greenlet.is_finished());
}

#[test]
fn rt_joined_result_is_dropped_by_its_taker_only() {
    let (drops_tx, drops) = grove::sync::channel::<&'static str>();
    let h = grove::spawn(move || DropSignal(drops_tx, "taken"));
    let r = h.join().unwrap();
    assert!(
        drops.try_recv().is_err(),
        "dropped although join gave it away"
    );
    drop(r);
    assert_eq!(drops.try_recv(), Ok("taken"));
    assert!(drops.try_recv().is_err(), "dropped twice");
}
