//! Loom models of the monitor's two hand-offs with parking workers (`monitor.rs`), over the
//! production `idle.rs` and `runnext.rs`; the worker's and monitor's steps around them are
//! written out here, each citing the function it stands for.
//!
//! 1. A blocked worker's `runnext`. Worker 1 holds one greenlet for long, with greenlet Y in
//!    its `runnext` and nothing in its deque. Worker 0, the only searcher, is at the end of its
//!    last search round; the monitor marks worker 1 blocked and calls `notify_work`, which wakes
//!    nobody while worker 0 still counts as searching. Worker 0 then parks. Unless its last
//!    look (`has_work`) includes blocked workers' `runnext`, Y is stranded until worker 1's
//!    greenlet parks. (The monitor also re-notifies on every tick while the worker stays
//!    blocked, which bounds the stall even without that look; the model shows the look alone
//!    suffices.)
//! 2. The poller. The monitor polls the driver when it is free (`poll_if_free`), releases it,
//!    and, if every worker is parked, wakes one to sleep in the poller. The last worker counts
//!    itself out (`transition_to_parked`), then tries the driver, else sleeps on its condvar.
//!    Without a SeqCst fence between the monitor's release and its count, both may miss: the
//!    worker sees the driver taken, the monitor sees it awake, and nobody waits in the poller.
#![cfg(loom)]

#[path = "loom_support/asym_fence.rs"]
mod asym_fence;
#[allow(dead_code)]
#[path = "../src/sched/idle.rs"]
mod idle;
#[allow(dead_code)]
#[path = "../src/sched/runnext.rs"]
mod runnext;
#[path = "loom_support/sync.rs"]
mod sync;

use idle::Idle;
use loom::sync::atomic::{fence, AtomicBool};
use loom::sync::Arc;
use loom::thread;
use runnext::RunNext;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

fn blocked_runnext(last_look_includes_blocked_runnext: bool) {
    loom::model(move || {
        let idle = Arc::new(Idle::new(2));
        assert!(idle.try_begin_searching()); // worker 0 searches
        let slot = Arc::new(RunNext::<u32>::new());
        // Before it was seen blocked, worker 1's greenlet woke Y (`schedule`, Hint::Next).
        assert!(slot.replace(Box::into_raw(Box::new(7))).is_null());
        let blocked = Arc::new(AtomicBool::new(false));

        let monitor = {
            let (idle, slot, blocked) = (idle.clone(), slot.clone(), blocked.clone());
            thread::spawn(move || {
                // `check_worker`: mark blocked; something queued: `notify_work`.
                blocked.store(true, Relaxed);
                if !slot.looks_empty() {
                    idle.worker_to_notify()
                } else {
                    None
                }
            })
        };

        // Worker 0, `steal_from(1)`: a blocked victim's `runnext` may be taken.
        let mut got = std::ptr::null_mut();
        if blocked.load(Relaxed) {
            got = slot.steal();
        }
        let mut asleep = false;
        if got.is_null() {
            // `park`: count out, then `has_work` (its deque checks are SeqCst fences).
            idle.transition_to_parked(0, true);
            fence(SeqCst);
            let sees =
                last_look_includes_blocked_runnext && blocked.load(Relaxed) && !slot.looks_empty();
            asleep = !sees;
        }
        let chosen = monitor.join().unwrap();
        if !got.is_null() {
            // SAFETY: taken from the slot, once.
            drop(unsafe { Box::from_raw(got) });
        }
        assert!(
            !got.is_null() || !asleep || chosen == Some(0),
            "Y stranded in blocked worker 1's runnext: worker 0 asleep, monitor woke {chosen:?}"
        );
        let left = slot.steal();
        if !left.is_null() {
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(left) });
        }
    });
}

#[test]
fn blocked_workers_runnext_is_never_stranded() {
    blocked_runnext(true);
}

#[test]
#[should_panic(expected = "stranded")]
fn without_the_last_look_a_blocked_runnext_is_stranded() {
    blocked_runnext(false);
}

/// `Driver::try_lock`: a relaxed look, then the compare-exchange.
fn try_lock(l: &AtomicBool) -> bool {
    !l.load(Relaxed) && l.compare_exchange(false, true, Acquire, Relaxed).is_ok()
}

#[test]
fn monitor_poll_and_last_worker_never_both_miss_the_poller() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(1));
        let driver = Arc::new(AtomicBool::new(true)); // held by the monitor's `poll_if_free`
        let worker = {
            let (idle, driver) = (idle.clone(), driver.clone());
            thread::spawn(move || {
                idle.transition_to_parked(0, false);
                fence(SeqCst); // `has_work`
                try_lock(&driver) // in the poller, or on its condvar
            })
        };
        assert!(driver
            .compare_exchange(true, false, Release, Relaxed)
            .is_ok());
        fence(SeqCst); // the monitor's fence before counting the sleepers
        let claimed = idle.num_unparked() < 1 && idle.claim_any_sleeper().is_some();
        let in_poller = worker.join().unwrap();
        assert!(
            in_poller || claimed,
            "nobody in the poller: the worker sleeps on its condvar unclaimed"
        );
    });
}

/// As above with a second worker that stays awake (held by a greenlet that blocks its thread):
/// the monitor must hand the poller to the sleeper although not every worker is parked. With
/// the old test, "every worker parked", it never did, and timers waited for the monitor.
#[test]
fn monitor_poll_hands_the_poller_on_while_another_worker_is_busy() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2)); // worker 0 stays awake throughout
        let driver = Arc::new(AtomicBool::new(true));
        let worker = {
            let (idle, driver) = (idle.clone(), driver.clone());
            thread::spawn(move || {
                idle.transition_to_parked(1, false);
                fence(SeqCst);
                try_lock(&driver)
            })
        };
        assert!(driver
            .compare_exchange(true, false, Release, Relaxed)
            .is_ok());
        fence(SeqCst);
        let claimed = idle.num_unparked() < 2 && idle.claim_any_sleeper().is_some();
        let in_poller = worker.join().unwrap();
        assert!(
            in_poller || claimed,
            "nobody in the poller: the worker sleeps on its condvar unclaimed"
        );
    });
}
