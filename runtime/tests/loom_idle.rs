//! Loom models of the worker sleep/wake counters (`src/sched/idle.rs`), alone and together with a
//! worker's sleep slot (`src/sched/parker.rs`).
//!
//! The production files are included verbatim with `#[path]`; the `sync` module below makes
//! their `crate::sync::{fence, AtomicUsize, Mutex, Condvar}` loom's.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-runtime --release --test loom_idle
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
//!
//! # How "work" is modelled
//!
//! The lost-wake-up argument in `idle` is a Dekker pair between the producer (push; `fence(SeqCst)`
//! in `worker_to_notify`; load the counters) and the sleeper (SeqCst RMW in
//! `transition_to_parked`; re-check the queues in `worker::has_work`). Its correctness depends on
//! how the queue push and the queue re-check are ordered, so the work flag here copies what
//! crossbeam-deque 0.8 does for a worker's deque, which is what other workers steal from:
//!
//! * `Worker::push`: `fence(Release)`, then the `back` index store (`Relaxed`);
//! * `Stealer::is_empty` (in `has_work`): `front.load(Acquire)`, `fence(SeqCst)`,
//!   `back.load(Acquire)`.
//!
//! The injector (`Injector::push`: SeqCst CAS on the tail; `Injector::is_empty`: two SeqCst loads,
//! no fence) is correct under the C++20 model too (the sleeper's SeqCst RMW and SeqCst load,
//! against the producer's SeqCst fence and SeqCst load), but loom cannot check it: loom treats
//! SeqCst *accesses* as AcqRel (its README, "Unsupported features"); only SeqCst fences are
//! modelled, so such a model fails spuriously on loom.
#![cfg(loom)]

#[path = "loom_support/sync.rs"]
mod sync;

#[allow(dead_code)]
#[path = "../src/sched/idle.rs"]
mod idle;

#[allow(dead_code)]
#[path = "../src/sched/parker.rs"]
mod parker;

use idle::Idle;
use loom::sync::atomic::{fence, AtomicBool};
use loom::sync::Arc;
use loom::thread;
use parker::{Parker, Unpark};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Test bookkeeping (which worker a producer chose, ...). Deliberately *std* atomics: they are
/// not part of the protocol, and as loom atomics every access would multiply the interleavings.
/// Loom runs all model threads on one OS thread, so they are exact.
struct Book {
    notified: Vec<std::sync::atomic::AtomicBool>,
}

impl Book {
    fn new(n: usize) -> Arc<Book> {
        Arc::new(Book {
            notified: (0..n)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
        })
    }

    fn notify(&self, i: usize) {
        let was = self.notified[i].swap(true, Relaxed);
        assert!(!was, "worker {i} chosen twice");
    }

    fn notified(&self, i: usize) -> bool {
        self.notified[i].load(Relaxed)
    }

    fn count(&self) -> usize {
        self.notified.iter().filter(|b| b.load(Relaxed)).count()
    }
}

/// A stealable queue reduced to "has one item", ordered like crossbeam's `Worker`/`Stealer`.
struct Work(AtomicBool);

impl Work {
    fn new() -> Work {
        Work(AtomicBool::new(false))
    }

    /// `Worker::push`: release fence, then the relaxed `back` store.
    fn push(&self) {
        fence(Release);
        self.0.store(true, Relaxed);
    }

    /// `Stealer::is_empty`, negated: (the `front` load,) SeqCst fence, `back` load (Acquire).
    fn has_work(&self) -> bool {
        fence(SeqCst);
        self.0.load(Acquire)
    }
}

/// The producer side of `Shared::notify_work`, after the push: who (if anyone) to wake.
fn produce(idle: &Idle, work: &Work, book: &Book) {
    work.push();
    if let Some(i) = idle.worker_to_notify() {
        book.notify(i);
    }
}

/// The counters' searching component, read through the public API: `end_searching` says whether
/// it was the last searcher, and `try_begin_searching` + `end_searching` probe for zero.
/// Consumes the searchers it counts; for the end of a model only.
fn drain_searching(idle: &Idle) -> usize {
    let mut n = 0;
    loop {
        if !idle.try_begin_searching() {
            // At or over half: there is at least one searcher; take it off.
            idle.end_searching();
            n += 1;
            continue;
        }
        // We just added one; if it was the only one, nobody else was searching.
        if idle.end_searching() {
            return n;
        }
        // Ours is gone again and there were others: take one of theirs off.
        idle.end_searching();
        n += 1;
    }
}

/// 2(a). No lost wake-up. Two workers; worker 0 runs out of work and goes to sleep
/// (`transition_to_parked`, then the `has_work` re-check), while a producer pushes work to a
/// queue and asks `worker_to_notify`. Either the sleeper's re-check sees the work, or the
/// producer chooses it (checked after both finish).
fn no_lost_wakeup(searching: bool) {
    loom::model(move || {
        let idle = Arc::new(Idle::new(2));
        if searching {
            assert!(idle.try_begin_searching());
        }
        let work = Arc::new(Work::new());
        let book = Book::new(2);

        let producer = {
            let (idle, work, book) = (idle.clone(), work.clone(), book.clone());
            thread::spawn(move || produce(&idle, &work, &book))
        };

        idle.transition_to_parked(0, searching);
        let saw_work = work.has_work();

        producer.join().unwrap();
        assert!(
            saw_work || book.notified(0),
            "lost wake-up: worker 0 sleeps, the producer chose nobody"
        );
        // Counters stay consistent: a chosen sleeper is counted awake and searching already.
        if book.notified(0) {
            assert!(!idle.transition_from_parked(0));
            assert_eq!(drain_searching(&idle), 1);
        } else {
            assert!(idle.transition_from_parked(0));
            assert_eq!(drain_searching(&idle), 0);
        }
        assert_eq!(idle.num_unparked(), 2);
    });
}

#[test]
fn no_lost_wakeup_idle_worker() {
    no_lost_wakeup(false);
}

#[test]
fn no_lost_wakeup_searching_worker() {
    no_lost_wakeup(true);
}

/// 2(a'). The same race end to end, with the real sleep: worker 0 counts itself out, re-checks,
/// sleeps on its `Parker` (condvar) if it saw nothing, and on waking calls
/// `transition_from_parked`; the producer pushes, asks `worker_to_notify` and unparks whoever it
/// chose (`Shared::unpark_worker`). Loom reports a deadlock if any interleaving leaves worker 0
/// asleep; after waking, the work must be visible to it.
#[test]
fn no_lost_wakeup_with_parker() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        let parkers = Arc::new([Parker::new(), Parker::new()]);
        let work = Arc::new(Work::new());

        let producer = {
            let (idle, parkers, work) = (idle.clone(), parkers.clone(), work.clone());
            thread::spawn(move || {
                work.push();
                if let Some(i) = idle.worker_to_notify() {
                    assert_eq!(parkers[i].unpark(), Unpark::Done);
                }
            })
        };

        idle.transition_to_parked(0, false);
        if !work.has_work() {
            parkers[0].park_condvar();
        }
        let chosen = !idle.transition_from_parked(0);
        assert!(work.has_work(), "woke without seeing the work");

        producer.join().unwrap();
        assert_eq!(idle.num_unparked(), 2);
        assert_eq!(drain_searching(&idle), usize::from(chosen));
    });
}

/// 2(b). The last searcher. Four workers: 0 and 1 are searching, 2 and 3 asleep. Workers 0 and 1
/// both find work at once and stop searching (`end_searching`; the last one notifies, as
/// `worker::run` does), while a producer pushes more work and notifies. Exactly one of 0 and 1 is
/// the last searcher; in the end the new work has someone looking for it: a sleeper was woken
/// (it counts as searching), and the counters agree with who was woken.
#[test]
fn last_searcher_wakes_a_sleeper() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(4));
        assert!(idle.try_begin_searching());
        assert!(idle.try_begin_searching());
        assert!(
            !idle.try_begin_searching(),
            "half the workers already search"
        );
        idle.transition_to_parked(2, false);
        idle.transition_to_parked(3, false);
        let work = Arc::new(Work::new());
        let book = Book::new(4);

        let finder = |_me: usize| {
            let (idle, book) = (idle.clone(), book.clone());
            thread::spawn(move || {
                let last = idle.end_searching();
                if last {
                    if let Some(i) = idle.worker_to_notify() {
                        book.notify(i);
                    }
                }
                last
            })
        };
        let w0 = finder(0);
        let w1 = finder(1);

        produce(&idle, &work, &book);

        let last0 = w0.join().unwrap();
        let last1 = w1.join().unwrap();
        assert!(last0 ^ last1, "last searcher: w0 {last0}, w1 {last1}");
        let woken = book.count();
        assert!(woken >= 1, "work pushed, nobody searching, nobody woken");
        assert!(
            !book.notified(0) && !book.notified(1),
            "woke a worker that was awake"
        );
        assert_eq!(idle.num_unparked(), 2 + woken);
        assert_eq!(drain_searching(&idle), woken);
    });
}

/// 2(b'). Two workers: worker 0 is the only searcher and finds work while worker 1 sleeps and a
/// producer pushes. Worker 1 is woken exactly once, by whichever of the two notifies first.
#[test]
fn last_searcher_two_workers() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        assert!(idle.try_begin_searching());
        idle.transition_to_parked(1, false);
        let work = Arc::new(Work::new());
        let book = Book::new(2);

        let finder = {
            let (idle, book) = (idle.clone(), book.clone());
            thread::spawn(move || {
                assert!(idle.end_searching(), "the only searcher is the last one");
                if let Some(i) = idle.worker_to_notify() {
                    book.notify(i);
                }
            })
        };
        produce(&idle, &work, &book);
        finder.join().unwrap();

        assert!(book.notified(1), "worker 1 left asleep with work queued");
        assert_eq!(book.count(), 1);
        assert_eq!(idle.num_unparked(), 2);
        assert!(!idle.transition_from_parked(1));
        assert_eq!(drain_searching(&idle), 1);
    });
}

/// 2(c). `claim_sleeper` (a pinned greenlet was queued for worker 0) races worker 0 waking by
/// itself (`transition_from_parked`). Exactly one of them takes worker 0 off the sleeper list;
/// the counters say both workers are awake, and worker 0 counts as searching iff it was claimed.
#[test]
fn claim_vs_wake_by_itself() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        idle.transition_to_parked(0, false);

        let claimer = {
            let idle = idle.clone();
            thread::spawn(move || idle.claim_sleeper(0))
        };
        let still_sleeper = idle.transition_from_parked(0);
        let claimed = claimer.join().unwrap();

        assert!(
            claimed ^ still_sleeper,
            "claimed {claimed}, self-woke {still_sleeper}"
        );
        assert_eq!(idle.num_unparked(), 2);
        assert_eq!(drain_searching(&idle), usize::from(claimed));
    });
}

/// 2(c'). Three-way: `claim_sleeper`, a producer's `worker_to_notify`, and worker 0 waking by
/// itself. Exactly one of the three removes worker 0 from the sleeper list.
#[test]
fn claim_vs_notify_vs_wake_by_itself() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        idle.transition_to_parked(0, false);

        let claimer = {
            let idle = idle.clone();
            thread::spawn(move || idle.claim_sleeper(0))
        };
        let notifier = {
            let idle = idle.clone();
            thread::spawn(move || idle.worker_to_notify())
        };
        let still_sleeper = idle.transition_from_parked(0);
        let claimed = claimer.join().unwrap();
        let chosen = notifier.join().unwrap();
        assert!(matches!(chosen, None | Some(0)));

        let takers =
            usize::from(claimed) + usize::from(chosen.is_some()) + usize::from(still_sleeper);
        assert_eq!(
            takers, 1,
            "claimed {claimed}, chosen {chosen:?}, self-woke {still_sleeper}"
        );
        assert_eq!(idle.num_unparked(), 2);
        assert_eq!(drain_searching(&idle), usize::from(!still_sleeper));
    });
}
