//! Loom models of the hand-off protocol of `src/wait_queue.rs` for the locks: `Semaphore` and
//! `Mutex` (the channel and event models are in `loom_handoff_channels.rs`).
//!
//! How the models are built, and the broken variants they were checked to catch: the notes at
//! the top of `loom_handoff/common.rs`.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-sync --release --test loom_handoff_locks
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]
// Shared model code (loom_handoff/common.rs): not every model here uses every helper.
#![allow(dead_code)]

#[path = "../../runtime/tests/loom_support/sync.rs"]
mod sync;

#[path = "../../runtime/tests/loom_support/asym_fence.rs"]
mod asym_fence;

#[allow(dead_code)]
#[path = "../../runtime/src/park_state.rs"]
mod park_state;

use loom::sync::atomic::AtomicU8;

include!("loom_handoff/common.rs");

// ------------------------------------------------------------------------------------------------
// semaphore.rs
// ------------------------------------------------------------------------------------------------

/// `semaphore::State`.
struct SemState {
    permits: usize,
    waiters: WaitQueue<()>,
}

/// `Semaphore`, plus the data the permit guards (to check the hand-off
/// orders the releaser's writes before the next holder's accesses).
struct Semaphore {
    state: Mutex<SemState>,
    guarded: UnsafeCell<u32>,
}

impl Semaphore {
    fn new(permits: usize) -> Semaphore {
        Semaphore {
            state: Mutex::new(SemState {
                permits,
                waiters: WaitQueue::new(),
            }),
            guarded: UnsafeCell::new(0),
        }
    }

    /// `acquire_until`: true if it got a permit.
    fn acquire_until(&self, me: &Arc<Green>, timed: bool) -> bool {
        match self.acquire_begin(me, timed) {
            Ok(q) => self.acquire_end(me, q, None),
            Err(got) => got,
        }
    }

    /// `Semaphore::acquire_until` (semaphore.rs), up to the switch. `Err(got)`: done without parking.
    fn acquire_begin(&self, me: &Arc<Green>, timed: bool) -> Result<Queued, bool> {
        let mut st = self.state.lock().unwrap();
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1;
            return Err(true);
        }
        wait_begin(st, |s| &mut s.waiters, (), me, timed).map_err(|w| w == Waited::HandedOver)
    }

    /// `Semaphore::acquire_until`, after the switch (`committed`: as in [`wait_end`]).
    fn acquire_end(&self, me: &Green, q: Queued, committed: Option<bool>) -> bool {
        match wait_end(&self.state, |s| &mut s.waiters, me, q, committed) {
            Waited::HandedOver => true,
            Waited::TimedOut => false,
        }
    }

    /// `release`.
    fn release(&self) {
        let mut st = self.state.lock().unwrap();
        if st.waiters.wake_one(|_| (), |_| ()).is_none() {
            st.permits += 1;
        }
    }

    fn permits(&self) -> usize {
        self.state.lock().unwrap().permits
    }

    fn queued(&self) -> usize {
        self.state.lock().unwrap().waiters.len()
    }
}

/// (a) Semaphore hand-off vs the waiter's timeout. The main thread holds the only permit; a
/// greenlet calls `acquire_timeout` and parks (its timer may fire at any point after `prepare`);
/// the main thread releases. The permit is never lost (the waiter got it, or it is back in the
/// count) and never given twice (not both); the waiter's entry is gone; and the holder's writes
/// under the permit are ordered before the next holder's (loom's cell checks it).
#[test]
fn semaphore_release_vs_timeout() {
    model(Some(5), || {
        let sem = Arc::new(Semaphore::new(0));
        let w = Green::new();

        let waiter = {
            let (sem, w) = (sem.clone(), w.clone());
            thread::spawn(move || {
                let got = sem.acquire_until(&w, true);
                if got {
                    assert_eq!(get(&sem.guarded), 1, "holder's write not visible");
                    set(&sem.guarded, 2);
                }
                got
            })
        };

        set(&sem.guarded, 1); // under the permit
        sem.release();

        let got = waiter.join().unwrap();
        w.join_timers();
        assert_eq!(
            usize::from(got) + sem.permits(),
            1,
            "permit lost or given twice (waiter got it: {got})"
        );
        assert_eq!(sem.queued(), 0, "a stale entry stayed queued");
        if !got {
            assert_eq!(get(&sem.guarded), 1);
        }
    });
}

/// (b) "A killed waiter never swallows a wake-up meant for another." Two greenlets are parked on
/// the semaphore in FIFO order (both queued and switched away during setup; the second one's
/// worker has committed, the first one's commits in its thread). The first is killed while the main thread releases the only
/// permit. Whatever the order: if the release reached the first waiter before the kill did, it
/// holds the permit and (as a `Permit` drop) releases it when done; if the kill won, the release
/// passes the permit on. Either way the second waiter ends up with it (else it stays parked:
/// loom reports a deadlock), nothing is left in the count or the queue, and the first waiter
/// got it only if it was not killed first.
#[test]
fn killed_first_waiter_passes_the_permit_on() {
    model(Some(3), || {
        let sem = Arc::new(Semaphore::new(0));
        let w1 = Green::new();
        let w2 = Green::new();
        let q1 = sem.acquire_begin(&w1, false).expect("queued");
        let q2 = sem.acquire_begin(&w2, false).expect("queued");
        // The second waiter is fully parked before anything races (its worker committed); the
        // first one's worker commits in its thread, racing the kill and the release.
        let committed2 = w2.commit(q2.park);
        assert!(!committed2, "nothing woke it yet");

        let first = {
            let (sem, w1) = (sem.clone(), w1.clone());
            thread::spawn(move || {
                let got = sem.acquire_end(&w1, q1, None);
                if got {
                    sem.release(); // `Permit::drop`
                }
                got
            })
        };
        let second = {
            let (sem, w2) = (sem.clone(), w2.clone());
            thread::spawn(move || sem.acquire_end(&w2, q2, Some(committed2)))
        };
        let killer = {
            let w1 = w1.clone();
            thread::spawn(move || w1.kill())
        };

        sem.release();

        killer.join().unwrap();
        let got1 = first.join().unwrap();
        let got2 = second.join().unwrap();
        assert!(got2, "the second waiter was left without the permit");
        assert_eq!(sem.permits(), 0, "permit given twice");
        assert_eq!(sem.queued(), 0);
        // The first waiter either was killed (the kill consumed) or took the permit (and gave it
        // back), the kill then staying pending for its next park.
        assert_eq!(got1, w1.kill.load(Relaxed));
    });
}

// ------------------------------------------------------------------------------------------------
// mutex.rs
// ------------------------------------------------------------------------------------------------

const LOCKED: u8 = 1;
const QUEUED: u8 = 2;

/// `Mutex<u32>`.
struct GMutex {
    state: AtomicU8,
    queue: Mutex<WaitQueue<()>>,
    data: UnsafeCell<u32>,
}

impl GMutex {
    /// A mutex that the caller already holds.
    fn new_locked() -> GMutex {
        GMutex {
            state: AtomicU8::new(LOCKED),
            queue: Mutex::new(WaitQueue::new()),
            data: UnsafeCell::new(0),
        }
    }

    /// `lock`; false if the greenlet was killed while waiting (an unwind).
    fn lock(&self, me: &Arc<Green>) -> bool {
        if self
            .state
            .compare_exchange(0, LOCKED, Acquire, Relaxed)
            .is_err()
        {
            return self.lock_slow(me);
        }
        true
    }

    /// `lock_slow` with one worker (`workers() > 1` is false: no spinning).
    fn lock_slow(&self, me: &Arc<Green>) -> bool {
        loop {
            let q = self.queue.lock().unwrap();
            let s = self.state.load(Relaxed);
            if s & LOCKED == 0 {
                if self
                    .state
                    .compare_exchange(s, s | LOCKED, Acquire, Relaxed)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if s & QUEUED == 0
                && self
                    .state
                    .compare_exchange(s, s | QUEUED, Relaxed, Relaxed)
                    .is_err()
            {
                continue;
            }
            match wait(&self.queue, q, |q| q, (), me, false) {
                Waited::HandedOver => return true,
                // `continue`s only while already unwinding; a kill unwinds.
                Waited::TimedOut => return false,
            }
        }
    }

    /// `unlock`.
    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    /// `unlock_slow`.
    fn unlock_slow(&self) {
        let mut q = self.queue.lock().unwrap();
        if q.wake_one(|_| (), |_| ()).is_some() {
            if q.is_empty() {
                self.state.fetch_and(!QUEUED, Relaxed);
            }
        } else {
            self.state.store(0, Release);
        }
    }
}

/// (a') Mutex hand-off vs a kill of the only waiter. The main thread holds the lock; a greenlet
/// locks (finds it held, marks `QUEUED`, parks) while a third thread kills it, and the main
/// thread unlocks. The lock is never lost: in the end it is free (whether the waiter got it and
/// unlocked, or was killed and the unlock found nobody), nobody is left queued, and whoever held
/// it saw the previous holder's writes.
#[test]
fn mutex_unlock_vs_kill() {
    model(Some(4), || {
        let m = Arc::new(GMutex::new_locked());
        let w = Green::new();

        let waiter = {
            let (m, w) = (m.clone(), w.clone());
            thread::spawn(move || {
                let got = m.lock(&w);
                if got {
                    assert_eq!(get(&m.data), 1, "previous holder's write not visible");
                    set(&m.data, 2);
                    m.unlock();
                }
                got
            })
        };
        let killer = {
            let w = w.clone();
            thread::spawn(move || w.kill())
        };

        set(&m.data, 1);
        m.unlock();

        killer.join().unwrap();
        let got = waiter.join().unwrap();
        assert_eq!(m.state.load(Relaxed), 0, "lock lost (waiter got it: {got})");
        assert!(m.queue.lock().unwrap().is_empty());
        assert_eq!(get(&m.data), if got { 2 } else { 1 });
    });
}
