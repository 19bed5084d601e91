//! Loom models of a worker's `runnext` slot (`src/sched/runnext.rs`): the owner exchanges it with
//! plain accesses between compiler fences, thieves steal it behind a `membarrier`.
//!
//! The production file is included verbatim with `#[path]`. Its `crate::asym_fence` is
//! `loom_support/asym_fence.rs`: both fences as `SeqCst` fences, so the Dekker argument of the
//! module docs is what loom checks here.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-runtime --release --test loom_runnext
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

#[path = "loom_support/sync.rs"]
mod sync;

#[path = "loom_support/asym_fence.rs"]
mod asym_fence;

#[allow(dead_code)]
#[path = "../src/sched/runnext.rs"]
mod runnext;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use runnext::RunNext;

/// A greenlet stand-in: a payload its maker writes before queueing it, which whoever takes it
/// reads (loom's `UnsafeCell` fails the model if that read is not ordered after the write).
struct Task {
    id: u32,
    payload: UnsafeCell<u32>,
}

fn task(id: u32) -> *mut Task {
    Box::into_raw(Box::new(Task {
        id,
        payload: UnsafeCell::new(0),
    }))
}

/// Takes back a pointer from the slot: checks its payload and returns its id (0 for null).
fn claim(p: *mut Task) -> u32 {
    if p.is_null() {
        return 0;
    }
    // SAFETY: each pointer comes from `task` and, by the property under test, is claimed once.
    let t = unsafe { Box::from_raw(p) };
    // SAFETY: the pointer is valid while `with` runs; races are loom's to report.
    assert_eq!(
        t.payload.with(|v| unsafe { *v }),
        t.id,
        "payload not visible"
    );
    t.id
}

/// The owner queues a task it has just written.
fn queue(slot: &RunNext<Task>, p: *mut Task) -> *mut Task {
    // SAFETY: fresh from `task`, not yet shared.
    let t = unsafe { &*p };
    // SAFETY: as above.
    t.payload.with_mut(|v| unsafe { *v = t.id });
    slot.replace(p)
}

/// Owner: queue A, then B (displacing A unless it was stolen), then take. A thief steals once.
/// Every task is claimed exactly once, with its payload visible to whoever claims it.
#[test]
fn owner_exchanges_while_a_thief_steals() {
    loom::model(|| {
        let slot = Arc::new(RunNext::<Task>::new());
        let thief = {
            let slot = slot.clone();
            thread::spawn(move || claim(slot.steal()))
        };
        let mut got = vec![claim(queue(&slot, task(1)))];
        got.push(claim(queue(&slot, task(2))));
        got.push(claim(slot.take()));
        got.push(thief.join().unwrap());
        got.retain(|&id| id != 0);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2], "a task was lost or taken twice");
    });
}

/// Two thieves and the owner: still exactly once each (a thief that finds another at work gives
/// up; the owner falls back to a swap while a thief is inside).
#[test]
fn two_thieves_and_the_owner() {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(|| {
        let slot = Arc::new(RunNext::<Task>::new());
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || claim(slot.steal()))
            })
            .collect();
        let mut got = vec![claim(queue(&slot, task(1)))];
        got.push(claim(slot.take()));
        for t in thieves {
            got.push(t.join().unwrap());
        }
        got.retain(|&id| id != 0);
        assert_eq!(got, vec![1], "a task was lost or taken twice");
    });
}
