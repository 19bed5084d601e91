//! Loom models of one worker's sleep slot (`src/sched/parker.rs`).
//!
//! The production file is included verbatim with `#[path]`; the `sync` module below makes its
//! `crate::sync::{AtomicUsize, Condvar, Mutex}` loom's. Loom fails a model with "deadlock" when
//! every thread is blocked, so "terminates in every interleaving" is checked by simply running.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-runtime --release --test loom_parker
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

#[path = "loom_support/sync.rs"]
mod sync;

#[allow(dead_code)]
#[path = "../src/sched/parker.rs"]
mod parker;

use loom::cell::UnsafeCell;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use parker::{Parker, Unpark};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Reads a loom cell. Loom tracks every access to it and fails the model on any access not
/// ordered by happens-before, which is what the models use it to check.
fn get(cell: &UnsafeCell<u32>) -> u32 {
    // SAFETY: the pointer is valid while `with` runs; races are loom's to report.
    cell.with(|p| unsafe { *p })
}

/// Writes a loom cell (see [`get`]).
fn set(cell: &UnsafeCell<u32>, v: u32) {
    // SAFETY: the pointer is valid while `with_mut` runs; races are loom's to report.
    cell.with_mut(|p| unsafe { *p = v })
}

/// 3(a). One thread sleeps on the condvar while another unparks it: every interleaving ends (no
/// lost signal), and what the notifier wrote before `unpark` is visible after the sleep (loom's
/// `UnsafeCell` flags it otherwise).
#[test]
fn park_condvar_vs_unpark_terminates() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let data = Arc::new(UnsafeCell::new(0u32));

        let sleeper = {
            let (p, data) = (p.clone(), data.clone());
            thread::spawn(move || {
                p.park_condvar();
                assert_eq!(get(&data), 1);
            })
        };

        set(&data, 1);
        assert_eq!(p.unpark(), Unpark::Done);
        sleeper.join().unwrap();
    });
}

/// 3(a'). The worker loop as it really runs: sleep until there is work (tolerating any wake-up
/// that is not for this work), against a producer that publishes work and then unparks twice
/// (two pushes, two notifications; the second may find the worker awake or still notified).
#[test]
fn park_condvar_until_work() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let work = Arc::new(AtomicBool::new(false));

        let worker = {
            let (p, work) = (p.clone(), work.clone());
            thread::spawn(move || {
                while !work.load(Acquire) {
                    p.park_condvar();
                }
            })
        };

        work.store(true, Release);
        assert_eq!(p.unpark(), Unpark::Done);
        assert_eq!(p.unpark(), Unpark::Done);
        worker.join().unwrap();
    });
}

/// 3(b). An unpark before the park is kept as a token: the park returns at once (with no other
/// thread to wake it, a blocking park would be a loom deadlock), and consumes it. Likewise for
/// the driver sleep, which must not even call `block`.
#[test]
fn unpark_before_park_returns_at_once() {
    loom::model(|| {
        let p = Parker::new();
        assert_eq!(p.unpark(), Unpark::Done);
        assert_eq!(p.unpark(), Unpark::Done); // coalesces with the first
        p.park_condvar();

        assert_eq!(p.unpark(), Unpark::Done);
        p.park_driver(|| panic!("blocked in the driver with a notification pending"));

        // Both notifications were consumed: the next notifier finds the worker awake and idle.
        assert_eq!(p.unpark(), Unpark::Done);
        p.park_condvar();
    });
}

/// The poller's waker, reduced to what matters: level-triggered (like the eventfd, it stays set
/// until the poller drains it).
struct FakeDriver {
    fired: AtomicBool,
}

impl FakeDriver {
    fn new() -> FakeDriver {
        FakeDriver {
            fired: AtomicBool::new(false),
        }
    }

    /// `driver.wake()`.
    fn wake(&self) {
        self.fired.store(true, Release);
    }

    /// `block_until_event` with no I/O and no timeout: returns once the waker fired, draining it.
    ///
    /// Spins on a *load*: loom only guarantees a spinning thread eventually sees another thread's
    /// store for loads followed by `yield_now`; a spin on `swap` makes loom explore executions in
    /// which the store stays after every swap in modification order forever.
    fn block(&self) {
        while !self.fired.load(Acquire) {
            thread::yield_now();
        }
        assert!(self.fired.swap(false, AcqRel));
    }
}

/// 3(c). A worker sleeps in the driver while another thread unparks it. `unpark` answers
/// `WakeDriver` exactly when the worker is (or is about to be) blocked in the poller, and the
/// notifier then fires the poller's waker (`Shared::unpark_worker`). No interleaving may leave the
/// fake `block` spinning forever (loom fails a model whose threads only yield without progress),
/// and the notifier's data is visible after the sleep.
#[test]
fn park_driver_vs_unpark_terminates() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let driver = Arc::new(FakeDriver::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let blocked = Arc::new(std::sync::atomic::AtomicBool::new(false)); // bookkeeping

        let sleeper = {
            let (p, driver, data, blocked) =
                (p.clone(), driver.clone(), data.clone(), blocked.clone());
            thread::spawn(move || {
                p.park_driver(|| {
                    blocked.store(true, Relaxed);
                    driver.block();
                });
                assert_eq!(get(&data), 1);
            })
        };

        set(&data, 1);
        let wake_driver = p.unpark() == Unpark::WakeDriver;
        if wake_driver {
            driver.wake();
        }
        sleeper.join().unwrap();
        // `block` ran only if the notifier was told to fire the waker (else it would still spin).
        assert!(!blocked.load(Relaxed) || wake_driver);
    });
}

/// 3(c'). A driver sleep that ends by itself (an I/O event or the poller's timeout) while a
/// notifier unparks: whatever the notifier was told, the slot ends up `EMPTY` (the sleeper
/// consumed the notification), so the next condvar sleep needs a fresh unpark, and gets it.
#[test]
fn park_driver_timeout_vs_unpark() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let driver = Arc::new(FakeDriver::new());

        let notifier = {
            let (p, driver) = (p.clone(), driver.clone());
            thread::spawn(move || {
                if p.unpark() == Unpark::WakeDriver {
                    driver.wake();
                }
            })
        };

        p.park_driver(|| {}); // timed out at once
        notifier.join().unwrap();

        // The notification was either consumed by the driver sleep or is still pending; in
        // both cases one more unpark must be enough to get through a condvar sleep, and a
        // stale driver wake-up (the eventfd still set) is harmless.
        let again = {
            let p = p.clone();
            thread::spawn(move || assert_eq!(p.unpark(), Unpark::Done))
        };
        p.park_condvar();
        again.join().unwrap();
    });
}
