//! Loom models of the hand-off protocol of `src/wait_queue.rs` and `src/queue_core.rs`.
//!
//! `wait_queue.rs` is built on `grove_runtime::park` and cannot be included here. What can is
//! the park state machine every waiter's park goes through, the production file
//! `runtime/src/park_state.rs`, included verbatim with `#[path]` (the `sync` module below makes
//! its `crate::sync::AtomicU64` loom's). The rest, the thin queue and slot logic, is re-implemented
//! below line by line, each step naming the production line it mirrors (`wait_queue.rs:NN`,
//! `queue_core.rs:NN`, `semaphore.rs:NN`, `mutex.rs:NN`, `event.rs:NN`, and for the park itself
//! `runtime/src/park.rs:NN`, `runtime/src/sched/worker.rs:NN`, `runtime/src/cancel.rs:NN`,
//! `runtime/src/greenlet.rs:NN`). The objects' internal `parking_lot::Mutex` is a loom `Mutex`.
//!
//! Each greenlet is a loom thread. Parked, it blocks on a loom `Notify` until a waker that won
//! against `PARKED` "schedules" it, so a lost wake-up shows as loom's "deadlock" failure. A park
//! with a deadline spawns a timer thread (`arm_timer`) that may fire at any point after
//! `prepare`; `kill` is a thread running `kill_task`'s two steps. Data handed over (a lock's
//! protected value, a channel slot) is a loom `UnsafeCell`, so loom also reports any access to it
//! that the hand-off does not order.
//!
//! Broken variants these models were checked to catch (each in a scratch copy): `wake_one`
//! ignoring a failed unpark, or not trying the next waiter after one; a sender dropping the value
//! it took back from a timed-out receiver's slot; `take_available` not putting a timed-out
//! putter's value back; no `Tidy` (a freed slot is written, a stale entry stays queued);
//! `Event::wait_until` not re-checking under the lock; `Event::set` storing the flag after the
//! unlock; `unlock_slow` not releasing when nobody woke; `QUEUED` set with `fetch_or`; a release
//! counting the permit even after handing it over; a killed waiter treated as handed over; and,
//! in `park_state.rs`, `wake` losing to `PREPARED`, `wake`'s CAS `Relaxed` (the hand-off is not
//! published: loom reports the data race), and `commit` ignoring an early wake.
//!
//! Not caught, and not checkable here: dropping the worker's kill check after `commit` (the
//! Dekker half; every kill here finds the park already prepared, and a model where it need not
//! hits loom's `SeqCst` limitation, see `runtime/tests/loom_park.rs`), and `take_wake` loading
//! `Relaxed` (the "scheduling" flag's Release/Acquire, like the real run queue, already orders
//! the hand-off).
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-sync --release --test loom_handoff
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

#[path = "../../runtime/tests/loom_support/sync.rs"]
mod sync;

#[allow(dead_code)]
#[path = "../../runtime/src/park_state.rs"]
mod park_state;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU8};
use loom::sync::{Arc, Mutex, MutexGuard, Notify};
use loom::thread;
use park_state::{ParkState, Wake, WakeOutcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// Runs `f` under loom with at most `preemptions` preemptions, unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise (`None`: unbounded, loom's default).
///
/// Every model here is bounded: unbounded, each runs for minutes (the semaphore one, the
/// smallest, ~1 min; the others >2 min). The bounds keep each model well under a minute on one
/// core: 5 for the channel, semaphore-timeout and event-timeout models (3-7 s), 4 for the mutex
/// and two-waiter event models (~15 s), 3 for the two-waiter kill model (~50 s; 2 takes 3 s).
/// Lost wake-ups and lost hand-offs need only one or two preemptions to show: every deliberately
/// broken variant tried while writing these models was caught well within these bounds.
fn model<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    b.check(f);
}

// ------------------------------------------------------------------------------------------------
// The park, as a greenlet goes through it (park_state.rs is production code; the rest mirrors
// runtime/src/park.rs, sched/worker.rs, cancel.rs and greenlet.rs).
// ------------------------------------------------------------------------------------------------

/// One greenlet: its park word (production code), kill flag, and "run queue entry".
struct Green {
    park: ParkState,
    /// `Header::kill`.
    kill: AtomicBool,
    /// Set by a waker that won against `PARKED` (`runtime().schedule`); the greenlet's thread
    /// waits for it on `run` while parked.
    scheduled: AtomicBool,
    run: Notify,
    /// Armed timers (spawned threads), joined at the end of the model.
    timers: std::sync::Mutex<Vec<thread::JoinHandle<()>>>,
}

/// A wake-up token (`Unparker`, park.rs:45-48).
struct Token {
    g: Arc<Green>,
    gen: u64,
}

/// `ParkId` (park.rs:165-168).
type ParkId = (usize, u64);

impl Token {
    /// `Unparker::unpark` (park.rs:67-68).
    fn unpark(&self) -> bool {
        self.g.wake(self.gen, Wake::Unparked)
    }

    /// `Unparker::park_id` (park.rs:114-123).
    fn park_id(&self) -> ParkId {
        (Arc::as_ptr(&self.g) as usize, self.gen)
    }
}

/// Where a park stands once the greenlet has switched away (see [`Green::begin`]); the second
/// half is [`Green::commit`] then [`Green::resume`].
#[derive(Clone, Copy)]
struct Parking {
    gen: u64,
}

impl Green {
    fn new() -> Arc<Green> {
        Arc::new(Green {
            park: ParkState::new(),
            kill: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            run: Notify::new(),
            timers: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// `Unparker::wake_with` for a greenlet (park.rs:76-85). True if this call ended the park.
    fn wake(&self, gen: u64, why: Wake) -> bool {
        match self.park.wake(gen, why) {
            WakeOutcome::Lost => false,
            WakeOutcome::WonEarly => true,
            WakeOutcome::WonParked => {
                // park.rs:82 `runtime().schedule(task, hint)`: a run-queue push (Release).
                self.scheduled.store(true, Release);
                self.run.notify();
                true
            }
        }
    }

    /// `kill_task` (greenlet.rs:324-335): the flag, then whatever park is current.
    fn kill(&self) {
        self.kill.store(true, SeqCst); // greenlet.rs:331
        if let Some(gen) = self.park.current_park() {
            self.wake(gen, Wake::Killed); // greenlet.rs:332-333
        }
    }

    /// The first half of `park_greenlet` (park.rs:240-267), up to and including the switch, and
    /// the worker's unlock step (worker.rs:386). `timed`: the park has a deadline. `Err` is how
    /// the park ended without parking: `Killed` (an unwind at the entry check), or `Unparked`
    /// (`register` found nothing to wait for).
    fn begin<G>(
        me: &Arc<Green>,
        timed: bool,
        register: impl FnOnce(Token) -> Option<G>,
    ) -> Result<Parking, Wake> {
        // park.rs:240, `check_interrupts_greenlet` (cancel.rs:126, 138-139): unwind if killed.
        if me.kill.load(Relaxed) && me.kill.load(Acquire) && me.kill.swap(false, AcqRel) {
            return Err(Wake::Killed);
        }
        let gen = me.park.prepare(); // park.rs:242
        if timed {
            // park.rs:249 `arm_timer(d, token.clone())`: the timer may fire any time from now.
            let g = me.clone();
            let t = thread::spawn(move || {
                g.wake(gen, Wake::TimedOut);
            });
            me.timers.lock().unwrap().push(t);
        }
        let token = Token { g: me.clone(), gen };
        let Some(unlock) = register(token) else {
            // park.rs:250-255.
            let _ = me.park.wake(gen, Wake::Unparked);
            let _ = me.park.take_wake(gen);
            return Err(Wake::Unparked);
        };
        // park.rs:267 switches away; the worker runs the unlock step (worker.rs:386). The worker
        // may be preempted for any length of time before its commit, in `finish`.
        drop(unlock);
        Ok(Parking { gen })
    }

    /// The worker's commit and kill check (worker.rs:387-394). True if the greenlet must run
    /// again at once (woken before it finished parking, or killed); false if it is parked.
    fn commit(&self, p: Parking) -> bool {
        let gen = p.gen;
        if !self.park.commit(gen) {
            true // worker.rs:388: woken before it finished parking
        } else {
            // worker.rs:391: the Dekker pair with `kill`.
            self.kill.load(SeqCst) && self.park.wake(gen, Wake::Killed) == WakeOutcome::WonParked
        }
    }

    /// After [`Green::commit`]: wait until scheduled if parked, then resume (park.rs:268-275).
    fn resume(&self, p: Parking, run_now: bool) -> Wake {
        let gen = p.gen;
        if !run_now {
            // worker.rs:394: parked. Runs again once a waker schedules it. (loom's `Notify` may
            // wake spuriously: hence the flag.)
            while !self.scheduled.load(Acquire) {
                self.run.wait();
            }
            self.scheduled.store(false, Relaxed);
        }
        let why = self
            .park
            .take_wake(gen)
            .expect("grove: greenlet resumed from a park nobody ended"); // park.rs:268-271
                                                                         // park.rs:272-274 cancels the timer unless it fired; a timer thread that still fires
                                                                         // later carries a stale generation, and `wake` says `Lost`: the same as a late cancel.
        if why == Wake::Killed {
            self.kill.store(false, Relaxed); // cancel.rs:175
        }
        why
    }

    /// Joins the timer threads this greenlet armed.
    fn join_timers(&self) {
        let timers: Vec<_> = self.timers.lock().unwrap().drain(..).collect();
        for t in timers {
            t.join().unwrap();
        }
    }
}

// ------------------------------------------------------------------------------------------------
// wait_queue.rs
// ------------------------------------------------------------------------------------------------

/// `Waiter<E>` (wait_queue.rs:25-28).
struct Waiter<E> {
    token: Token,
    data: E,
}

/// `WaitQueue<E>` (wait_queue.rs:31-114).
struct WaitQueue<E> {
    q: VecDeque<Waiter<E>>,
}

impl<E> WaitQueue<E> {
    fn new() -> WaitQueue<E> {
        WaitQueue { q: VecDeque::new() }
    }

    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    fn len(&self) -> usize {
        self.q.len()
    }

    /// wait_queue.rs:60-62.
    fn push(&mut self, token: Token, data: E) {
        self.q.push_back(Waiter { token, data });
    }

    /// wait_queue.rs:65-74.
    fn remove(&mut self, id: ParkId) -> bool {
        match self.q.iter().rposition(|w| w.token.park_id() == id) {
            Some(i) => {
                self.q.remove(i);
                true
            }
            None => false,
        }
    }

    /// wait_queue.rs:85-87.
    fn pop_front(&mut self) -> Option<Waiter<E>> {
        self.q.pop_front()
    }

    /// wait_queue.rs:92-105.
    fn wake_one(&mut self, mut give: impl FnMut(&E), mut take_back: impl FnMut(&E)) -> Option<E> {
        while let Some(w) = self.q.pop_front() {
            give(&w.data); // wait_queue.rs:98
            if w.token.unpark() {
                return Some(w.data); // wait_queue.rs:99-101
            }
            take_back(&w.data); // wait_queue.rs:102
        }
        None
    }

    /// wait_queue.rs:108-113.
    fn wake_all(&mut self) -> usize {
        self.q.drain(..).filter(|w| w.token.unpark()).count()
    }
}

/// `Waited` (wait_queue.rs:118-123).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    HandedOver,
    TimedOut,
}

/// A `wait` whose greenlet has queued its token and switched away: what `Tidy` holds.
#[derive(Clone, Copy)]
struct Queued {
    park: Parking,
    id: ParkId,
}

/// `wait` (wait_queue.rs:130-160), first half: register under the lock and switch away.
/// `Err` if the park ended before the switch (killed at the entry check: an unwind, with no
/// entry queued, which `Tidy` with `token: None` leaves alone).
fn wait_begin<S, E>(
    guard: MutexGuard<'_, S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    data: E,
    me: &Arc<Green>,
    timed: bool,
) -> Result<Queued, Waited> {
    let mut guard = guard;
    let mut id = None; // wait_queue.rs:139-143 `Tidy { token: None }`
    let begun = Green::begin(me, timed, |token| {
        id = Some(token.park_id()); // wait_queue.rs:146
        queue(&mut guard).push(token, data); // wait_queue.rs:147
        Some(guard) // wait_queue.rs:149: the unlock step
    });
    match begun {
        Ok(park) => Ok(Queued {
            park,
            id: id.unwrap(),
        }),
        Err(Wake::Unparked) => unreachable!("wait's register always parks"),
        Err(_) => Err(Waited::TimedOut),
    }
}

/// `wait`, second half: resume, and `Tidy` (wait_queue.rs:153-175). `committed`: the worker
/// already ran its commit, with this result (see [`Green::commit`]); `None`: do it now.
fn wait_end<S, E>(
    lock: &Mutex<S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    me: &Green,
    q: Queued,
    committed: Option<bool>,
) -> Waited {
    let mut tidy = Some(q.id);
    let run_now = committed.unwrap_or_else(|| me.commit(q.park));
    let waited = match me.resume(q.park, run_now) {
        Wake::Unparked => {
            tidy = None; // wait_queue.rs:155: the waker popped our entry
            Waited::HandedOver
        }
        // wait_queue.rs:158 (a `Killed` park unwinds instead; `Tidy` runs the same way).
        Wake::TimedOut | Wake::Killed => Waited::TimedOut,
    };
    // `Tidy::drop` (wait_queue.rs:170-174).
    if let Some(id) = tidy {
        let mut state = lock.lock().unwrap();
        queue(&mut state).remove(id);
    }
    waited
}

/// `wait` (wait_queue.rs:130-160).
fn wait<S, E>(
    lock: &Mutex<S>,
    guard: MutexGuard<'_, S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    data: E,
    me: &Arc<Green>,
    timed: bool,
) -> Waited {
    match wait_begin(guard, queue, data, me, timed) {
        Ok(q) => wait_end(lock, queue, me, q, None),
        Err(w) => w,
    }
}

/// Reads a loom cell. Loom fails the model on any access not ordered by happens-before.
fn get(cell: &UnsafeCell<u32>) -> u32 {
    // SAFETY: the pointer is valid while `with` runs; races are loom's to report.
    cell.with(|p| unsafe { *p })
}

/// Writes a loom cell (see [`get`]).
fn set(cell: &UnsafeCell<u32>, v: u32) {
    // SAFETY: the pointer is valid while `with_mut` runs; races are loom's to report.
    cell.with_mut(|p| unsafe { *p = v })
}

// ------------------------------------------------------------------------------------------------
// semaphore.rs
// ------------------------------------------------------------------------------------------------

/// `semaphore::State` (semaphore.rs:10-13).
struct SemState {
    permits: usize,
    waiters: WaitQueue<()>,
}

/// `Semaphore` (semaphore.rs:16-18), plus the data the permit guards (to check the hand-off
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

    /// `acquire_until` (semaphore.rs:64-74): true if it got a permit.
    fn acquire_until(&self, me: &Arc<Green>, timed: bool) -> bool {
        match self.acquire_begin(me, timed) {
            Ok(q) => self.acquire_end(me, q, None),
            Err(got) => got,
        }
    }

    /// semaphore.rs:65-70, up to the switch. `Err(got)`: done without parking.
    fn acquire_begin(&self, me: &Arc<Green>, timed: bool) -> Result<Queued, bool> {
        let mut st = self.state.lock().unwrap(); // semaphore.rs:65
        if st.permits > 0 && st.waiters.is_empty() {
            st.permits -= 1; // semaphore.rs:66-69
            return Err(true);
        }
        wait_begin(st, |s| &mut s.waiters, (), me, timed).map_err(|w| w == Waited::HandedOver)
    }

    /// semaphore.rs:70-73, after the switch (`committed`: as in [`wait_end`]).
    fn acquire_end(&self, me: &Green, q: Queued, committed: Option<bool>) -> bool {
        match wait_end(&self.state, |s| &mut s.waiters, me, q, committed) {
            Waited::HandedOver => true,
            Waited::TimedOut => false,
        }
    }

    /// `release` (semaphore.rs:88-93).
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
                    sem.release(); // `Permit::drop` (semaphore.rs:104-106)
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

const LOCKED: u8 = 1; // mutex.rs:22
const QUEUED: u8 = 2; // mutex.rs:23

/// `Mutex<u32>` (mutex.rs:27-31).
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

    /// `lock` (mutex.rs:71-80); false if the greenlet was killed while waiting (an unwind).
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

    /// `lock_slow` (mutex.rs:101-152) with one worker (`workers() > 1` is false: no spinning).
    fn lock_slow(&self, me: &Arc<Green>) -> bool {
        loop {
            let q = self.queue.lock().unwrap(); // mutex.rs:123
            let s = self.state.load(Relaxed); // mutex.rs:124
            if s & LOCKED == 0 {
                if self
                    .state
                    .compare_exchange(s, s | LOCKED, Acquire, Relaxed)
                    .is_ok()
                {
                    return true; // mutex.rs:125-131
                }
                continue; // mutex.rs:133
            }
            if s & QUEUED == 0
                && self
                    .state
                    .compare_exchange(s, s | QUEUED, Relaxed, Relaxed)
                    .is_err()
            {
                continue; // mutex.rs:137-144
            }
            match wait(&self.queue, q, |q| q, (), me, false) {
                Waited::HandedOver => return true, // mutex.rs:148
                // mutex.rs:149 `continue`s only while already unwinding; a kill unwinds.
                Waited::TimedOut => return false,
            }
        }
    }

    /// `unlock` (mutex.rs:154-162).
    fn unlock(&self) {
        if self
            .state
            .compare_exchange(LOCKED, 0, Release, Relaxed)
            .is_err()
        {
            self.unlock_slow();
        }
    }

    /// `unlock_slow` (mutex.rs:165-176).
    fn unlock_slow(&self) {
        let mut q = self.queue.lock().unwrap();
        if q.wake_one(|_| (), |_| ()).is_some() {
            if q.is_empty() {
                self.state.fetch_and(!QUEUED, Relaxed); // mutex.rs:169-171
            }
        } else {
            self.state.store(0, Release); // mutex.rs:174
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

// ------------------------------------------------------------------------------------------------
// queue_core.rs
// ------------------------------------------------------------------------------------------------

/// What lives in a waiter's `Option<T>` slot in its stack frame, and whether the frame is alive.
struct SlotCell {
    live: bool,
    v: Option<u32>,
}

/// `Slot<T>` (queue_core.rs:88): a pointer into the waiter's frame. The frame is a loom cell, so
/// loom reports any access by a waker not ordered with the owner's; `live` catches an access
/// after the frame is gone (use after free) that happens to be ordered.
#[derive(Clone)]
struct Slot(Arc<UnsafeCell<SlotCell>>);

impl Slot {
    /// The frame's `let mut slot = v;`.
    fn new(v: Option<u32>) -> Slot {
        Slot(Arc::new(UnsafeCell::new(SlotCell { live: true, v })))
    }

    /// `*slot.0 = v` by a waker.
    fn put(&self, v: Option<u32>) {
        // SAFETY: loom checks the access; the cell lives while the `Arc` does.
        self.0.with_mut(|p| unsafe {
            assert!((*p).live, "waker wrote a slot whose frame is gone");
            (*p).v = v;
        })
    }

    /// `(*slot.0).take()` by a waker, or the owner reading its own slot.
    fn take(&self) -> Option<u32> {
        // SAFETY: as in `put`.
        self.0.with_mut(|p| unsafe {
            assert!((*p).live, "slot read after its frame is gone");
            (*p).v.take()
        })
    }

    /// The owner's frame ends.
    fn free(&self) {
        // SAFETY: as in `put`.
        self.0.with_mut(|p| unsafe { (*p).live = false })
    }
}

/// `queue_core::State` (queue_core.rs:95-105), FIFO buffer; no `Select` watchers (every
/// `watchers.wake_all()` below is on an empty queue, a no-op).
struct ChanState {
    buf: VecDeque<u32>,
    cap: Option<usize>,
    senders: usize,
    receivers: usize,
    getters: WaitQueue<Slot>,
    putters: WaitQueue<Slot>,
}

/// `PutError` (queue_core.rs:108-112).
#[derive(Debug, PartialEq, Eq)]
enum PutError {
    Full(u32),
    Disconnected(u32),
    Timeout(u32),
}

/// `GetError` (queue_core.rs:116-120).
#[derive(Debug, PartialEq, Eq)]
enum GetError {
    Empty,
    Disconnected,
    Timeout,
}

/// `QueueCore<u32, VecDeque<u32>>` (queue_core.rs:123-266).
struct Chan {
    state: Mutex<ChanState>,
}

impl Chan {
    fn new(cap: Option<usize>) -> Chan {
        Chan {
            state: Mutex::new(ChanState {
                buf: VecDeque::new(),
                cap,
                senders: 1,
                receivers: 1,
                getters: WaitQueue::new(),
                putters: WaitQueue::new(),
            }),
        }
    }

    /// `put` (queue_core.rs:147-184).
    fn put(&self, me: &Arc<Green>, v: u32, block: bool, timed: bool) -> Result<(), PutError> {
        let mut st = self.state.lock().unwrap();
        if st.receivers == 0 {
            return Err(PutError::Disconnected(v)); // queue_core.rs:154-156
        }
        let v = match hand_to_getter(&mut st, v) {
            None => return Ok(()), // queue_core.rs:157-160
            Some(v) => v,
        };
        if st.cap.is_none_or(|c| st.buf.len() < c) {
            st.buf.push_back(v); // queue_core.rs:161-165
            return Ok(());
        }
        if !block {
            return Err(PutError::Full(v)); // queue_core.rs:166-168
        }
        let slot = Slot::new(Some(v)); // queue_core.rs:170
        let waited = wait(&self.state, st, |s| &mut s.putters, slot.clone(), me, timed);
        let r = match (waited, slot.take()) {
            (_, None) => Ok(()), // queue_core.rs:180
            (Waited::HandedOver, Some(v)) => Err(PutError::Disconnected(v)),
            (Waited::TimedOut, Some(v)) => Err(PutError::Timeout(v)),
        };
        slot.free(); // `put` returns: its frame, and the slot, are gone
        r
    }

    /// `get` (queue_core.rs:187-214).
    fn get(&self, me: &Arc<Green>, block: bool, timed: bool) -> Result<u32, GetError> {
        loop {
            let mut st = self.state.lock().unwrap();
            if let Some(v) = take_available(&mut st) {
                return Ok(v); // queue_core.rs:190-192
            }
            if st.senders == 0 {
                return Err(GetError::Disconnected);
            }
            if !block {
                return Err(GetError::Empty);
            }
            let slot = Slot::new(None); // queue_core.rs:199
            let waited = wait(&self.state, st, |s| &mut s.getters, slot.clone(), me, timed);
            let r = match (waited, slot.take()) {
                (_, Some(v)) => Some(Ok(v)), // queue_core.rs:209
                (Waited::TimedOut, None) => Some(Err(GetError::Timeout)), // queue_core.rs:210
                (Waited::HandedOver, None) => None, // queue_core.rs:211
            };
            slot.free(); // end of the loop body: the slot's frame is gone
            if let Some(r) = r {
                return r;
            }
        }
    }

    fn buffered(&self) -> Vec<u32> {
        self.state.lock().unwrap().buf.iter().copied().collect()
    }

    fn assert_no_waiters(&self) {
        let st = self.state.lock().unwrap();
        assert!(st.getters.is_empty(), "a getter's entry stayed queued");
        assert!(st.putters.is_empty(), "a putter's entry stayed queued");
    }
}

/// `hand_to_getter` (queue_core.rs:276-289).
fn hand_to_getter(st: &mut ChanState, v: u32) -> Option<u32> {
    let mut v = Some(v);
    while let Some(w) = st.getters.pop_front() {
        w.data.put(v.take()); // queue_core.rs:281
        if w.token.unpark() {
            return None; // queue_core.rs:282-284
        }
        v = w.data.take(); // queue_core.rs:286: take it back
    }
    v
}

/// `take_available` (queue_core.rs:293-317).
fn take_available(st: &mut ChanState) -> Option<u32> {
    let got = st.buf.pop_front(); // queue_core.rs:294
    while let Some(w) = st.putters.pop_front() {
        let offered = w.data.take(); // queue_core.rs:298
        let Some(offered) = offered else {
            continue; // queue_core.rs:299-301
        };
        if !w.token.unpark() {
            w.data.put(Some(offered)); // queue_core.rs:302-306: it stays the putter's
            continue;
        }
        match got {
            Some(g) => {
                st.buf.push_back(offered); // queue_core.rs:309-312
                return Some(g);
            }
            None => return Some(offered), // queue_core.rs:313
        }
    }
    got
}

const VALUE: u32 = 42;

/// (c) A send into a waiting receiver's slot races the receiver's timeout. A greenlet receives
/// with a deadline and parks; the main thread sends (`send`, or `try_send` on a rendezvous
/// channel). The value ends up exactly once: received, or (its park had ended, so the sender
/// took it back out of the slot) buffered by `send` / returned by `try_send` as `Full`. The
/// sender touches the slot only while the receiver's frame is alive, in an order loom accepts.
fn send_vs_recv_timeout(cap: Option<usize>, block: bool) {
    model(Some(5), move || {
        let ch = Arc::new(Chan::new(cap));
        let rx = Green::new();
        let tx = Green::new();

        let receiver = {
            let (ch, rx) = (ch.clone(), rx.clone());
            thread::spawn(move || ch.get(&rx, true, true))
        };

        let sent = ch.put(&tx, VALUE, block, false);

        let got = receiver.join().unwrap();
        rx.join_timers();
        let buffered = ch.buffered();
        let mut copies = buffered.iter().filter(|&&v| v == VALUE).count();
        match &got {
            Ok(v) => {
                assert_eq!(*v, VALUE);
                copies += 1;
            }
            Err(e) => assert_eq!(*e, GetError::Timeout),
        }
        match &sent {
            Ok(()) => {}
            Err(PutError::Full(v)) => {
                assert_eq!(*v, VALUE);
                copies += 1;
            }
            Err(e) => panic!("send failed with {e:?}"),
        }
        assert_eq!(
            copies, 1,
            "value lost or duplicated: got {got:?}, sent {sent:?}"
        );
        ch.assert_no_waiters();
    });
}

#[test]
fn send_vs_recv_timeout_buffered() {
    send_vs_recv_timeout(None, true);
}

#[test]
fn try_send_vs_recv_timeout_rendezvous() {
    send_vs_recv_timeout(Some(0), false);
}

/// (c') The other direction: a greenlet sends on a rendezvous channel with a deadline and parks
/// with its value in its slot; the main thread `try_recv`s, taking the value out of the slot
/// and unparking the sender, which may be timing out. The value ends up exactly once: received,
/// or put back into the slot and returned by the sender's `Timeout`.
#[test]
fn try_recv_vs_send_timeout_rendezvous() {
    model(Some(5), || {
        let ch = Arc::new(Chan::new(Some(0)));
        let rx = Green::new();
        let tx = Green::new();

        let sender = {
            let (ch, tx) = (ch.clone(), tx.clone());
            thread::spawn(move || ch.put(&tx, VALUE, true, true))
        };

        let got = ch.get(&rx, false, false);

        let sent = sender.join().unwrap();
        tx.join_timers();
        let received = match &got {
            Ok(v) => {
                assert_eq!(*v, VALUE);
                true
            }
            Err(e) => {
                assert_eq!(*e, GetError::Empty);
                false
            }
        };
        let returned = match &sent {
            Ok(()) => false,
            Err(PutError::Timeout(v)) => {
                assert_eq!(*v, VALUE);
                true
            }
            Err(e) => panic!("send failed with {e:?}"),
        };
        assert!(ch.buffered().is_empty());
        assert!(
            received ^ returned,
            "value lost or duplicated: got {got:?}, sent {sent:?}"
        );
        ch.assert_no_waiters();
    });
}

// ------------------------------------------------------------------------------------------------
// event.rs
// ------------------------------------------------------------------------------------------------

/// `Event` (event.rs:13-16), plus data written before `set`.
struct Event {
    flag: AtomicBool,
    waiters: Mutex<WaitQueue<()>>,
    data: UnsafeCell<u32>,
}

impl Event {
    fn new() -> Event {
        Event {
            flag: AtomicBool::new(false),
            waiters: Mutex::new(WaitQueue::new()),
            data: UnsafeCell::new(0),
        }
    }

    /// `set` (event.rs:28-33).
    fn set(&self) {
        let mut q = self.waiters.lock().unwrap();
        self.flag.store(true, Release);
        q.wake_all();
    }

    /// `is_set` (event.rs:41-43).
    fn is_set(&self) -> bool {
        self.flag.load(Acquire)
    }

    /// `wait_until` (event.rs:55-68).
    fn wait_until(&self, me: &Arc<Green>, timed: bool) -> bool {
        if self.is_set() {
            return true; // event.rs:56-58
        }
        let q = self.waiters.lock().unwrap(); // event.rs:59
        if self.is_set() {
            return true; // event.rs:60-62
        }
        match wait(&self.waiters, q, |q| q, (), me, timed) {
            Waited::HandedOver => true,        // event.rs:65
            Waited::TimedOut => self.is_set(), // event.rs:66
        }
    }
}

/// (d) `Event::set` races waiters registering. Two greenlets wait (no deadline) while the main
/// thread writes some data and sets the event. No wake-up is lost (a waiter left parked is a
/// loom deadlock), each waiter returns true and sees the data, and nobody stays queued.
#[test]
fn event_set_vs_registration() {
    model(Some(4), || {
        let ev = Arc::new(Event::new());
        let waiter = |ev: &Arc<Event>| {
            let (ev, g) = (ev.clone(), Green::new());
            thread::spawn(move || {
                assert!(ev.wait_until(&g, false));
                assert_eq!(
                    get(&ev.data),
                    1,
                    "set's prior write not visible to a waiter"
                );
            })
        };
        let w1 = waiter(&ev);
        let w2 = waiter(&ev);

        set(&ev.data, 1);
        ev.set();

        w1.join().unwrap();
        w2.join().unwrap();
        assert!(ev.waiters.lock().unwrap().is_empty());
    });
}

/// (d') As (d) with one waiter that has a deadline, racing `set`: whichever of the timer and
/// `set` wins, nobody stays queued, and a waiter that says the event is set sees the data.
#[test]
fn event_set_vs_timeout() {
    model(Some(5), || {
        let ev = Arc::new(Event::new());
        let g = Green::new();

        let waiter = {
            let (ev, g) = (ev.clone(), g.clone());
            thread::spawn(move || {
                if ev.wait_until(&g, true) {
                    assert_eq!(
                        get(&ev.data),
                        1,
                        "set's prior write not visible to a waiter"
                    );
                }
            })
        };

        set(&ev.data, 1);
        ev.set();

        waiter.join().unwrap();
        g.join_timers();
        assert!(ev.waiters.lock().unwrap().is_empty());
    });
}
