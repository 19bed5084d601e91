// What the hand-off models share (included by `loom_handoff_locks.rs` and
// `loom_handoff_channels.rs` with `include!`, so `crate::park_state` and the other items stay
// crate-root names in both): the model runner, the greenlet and its park (the production
// `park_state.rs`), wake-up tokens, the wait queue and `wait`, and cell helpers.
// `wait_queue.rs` is built on `grove_runtime::park` and cannot be included here. What can is
// the park state machine every waiter's park goes through, the production file
// `runtime/src/park_state.rs`, included verbatim with `#[path]` by each model file (its `sync`
// module makes `crate::sync::AtomicU64` loom's). The rest, the thin queue and slot logic, is
// re-implemented below step by step, each step naming the production function it mirrors
// (`WaitQueue::*` in `wait_queue.rs`, `queue_core.rs`, `semaphore.rs`, `mutex.rs`, `event.rs`,
// and for the park itself `runtime/src/park.rs`, `sched/worker.rs`, `cancel.rs`,
// `greenlet.rs`); functions, not line numbers, which drift. (8b3273f changed who holds a parked
// greenlet's reference: see `Green::left_wait`.) The objects' internal lock (`spin.rs`) is a
// loom `Mutex`.
// Each greenlet is a loom thread. Parked, it blocks on a loom `Notify` until a waker that won
// against `PARKED` "schedules" it, so a lost wake-up shows as loom's "deadlock" failure. A park
// with a deadline spawns a timer thread (`arm_timer`) that may fire at any point after
// `prepare`; `kill` is a thread running `kill_task`'s two steps. Data handed over (a lock's
// protected value, a channel slot) is a loom `UnsafeCell`, so loom also reports any access to it
// that the hand-off does not order.
// Broken variants these models were checked to catch (each in a scratch copy): `wake_one`
// ignoring a failed unpark, or not trying the next waiter after one; a sender dropping the value
// it took back from a timed-out receiver's slot; `take_available` not putting a timed-out
// putter's value back; no `Tidy` (a freed slot is written, a stale entry stays queued; `Tidy` skipped for a
// timed-out or killed waiter also trips `Green::left_wait` in `event_set_vs_timeout`);
// `Event::wait_until` not re-checking under the lock; a `Select` watch registering without
// checking readiness under the lock (`select_vs_send`); `Event::set` storing the flag after the
// unlock; `unlock_slow` not releasing when nobody woke; `QUEUED` set with `fetch_or`; a release
// counting the permit even after handing it over; a killed waiter treated as handed over; and,
// in `park_state.rs`, `wake` losing to `PREPARED`, `wake`'s CAS `Relaxed` (the hand-off is not
// published: loom reports the data race), and `commit` ignoring an early wake.
// Not caught here: dropping the worker's kill check before `commit` (the Dekker half; every
// kill here finds the park already prepared; `runtime/tests/loom_park.rs` models a kill at any
// point and catches it), and `take_wake` loading `Relaxed` (the "scheduling" flag's
// Release/Acquire, like the real run queue, already orders the hand-off).

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::sync::{Arc, Mutex, MutexGuard, Notify};
use loom::thread;
use park_state::{ParkState, Wake, WakeOutcome};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

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
    /// The generation of the last `wait` this greenlet has returned from. From then on the
    /// greenlet may finish and production may free its header, which a queue token does not
    /// keep alive (`park_borrowed`: "every use under the queue's lock"), so a queue token of
    /// that park or an older one must never be used again: [`Token::unpark`] checks it.
    left_wait: AtomicU64,
    /// Armed timers (spawned threads), joined at the end of the model.
    timers: std::sync::Mutex<Vec<thread::JoinHandle<()>>>,
}

/// A wake-up token (`Unparker`, park.rs).
struct Token {
    g: Arc<Green>,
    gen: u64,
}

/// `ParkId`.
type ParkId = (usize, u64);

impl Token {
    /// `Unparker::unpark`.
    fn unpark(&self) -> bool {
        assert!(
            self.g.left_wait.load(Acquire) < self.gen,
            "grove-model: a queue token used after its greenlet left the wait (its header may \
             be freed by then: borrowed tokens are only valid under the queue's lock)"
        );
        self.g.wake(self.gen, Wake::Unparked)
    }

    /// `Unparker::park_id`.
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
            left_wait: AtomicU64::new(0),
            timers: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// `Unparker::wake_with` for a greenlet. True if this call ended the park.
    fn wake(&self, gen: u64, why: Wake) -> bool {
        match self.park.wake(gen, why) {
            WakeOutcome::Lost => false,
            WakeOutcome::WonEarly => true,
            WakeOutcome::WonParked => {
                // `runtime().schedule(task, hint)`: a run-queue push (Release).
                self.scheduled.store(true, Release);
                self.run.notify();
                true
            }
        }
    }

    /// `greenlet::kill_tasks`: the flag, the heavy fence, then whatever park is current.
    fn kill(&self) {
        self.kill.store(true, Release);
        crate::asym_fence::heavy();
        if let Some(gen) = self.park.park_to_kill() {
            self.wake(gen, Wake::Killed);
        }
    }

    /// The first half of `park_greenlet`, up to and including the switch, and
    /// the worker's unlock step. `timed`: the park has a deadline. `Err` is how
    /// the park ended without parking: `Killed` (an unwind at the entry check), or `Unparked`
    /// (`register` found nothing to wait for).
    fn begin<G>(
        me: &Arc<Green>,
        timed: bool,
        register: impl FnOnce(Token) -> Option<G>,
    ) -> Result<Parking, Wake> {
        // `check_interrupts_greenlet`: unwind if killed.
        if me.kill.load(Relaxed) && me.kill.load(Acquire) && me.kill.swap(false, AcqRel) {
            return Err(Wake::Killed);
        }
        let gen = me.park.prepare();
        if timed {
            // `arm_timer(d, token.clone())`: the timer may fire any time from now.
            let g = me.clone();
            let t = thread::spawn(move || {
                g.wake(gen, Wake::TimedOut);
            });
            me.timers.lock().unwrap().push(t);
        }
        let token = Token { g: me.clone(), gen };
        let Some(unlock) = register(token) else {
            // .
            let _ = me.park.wake(gen, Wake::Unparked);
            let _ = me.park.take_wake(gen);
            return Err(Wake::Unparked);
        };
        // switches away; the worker runs the unlock step. The worker
        // may be preempted for any length of time before its commit, in `finish`.
        drop(unlock);
        Ok(Parking { gen })
    }

    /// The worker's kill check and commit (`run_task`, `ParkState::commit_unless_killed`). True
    /// if the greenlet must run again at once (woken or killed before it finished parking);
    /// false if it is parked.
    fn commit(&self, p: Parking) -> bool {
        !self.park.commit_unless_killed(p.gen, &self.kill)
    }

    /// After [`Green::commit`]: wait until scheduled if parked, then resume.
    fn resume(&self, p: Parking, run_now: bool) -> Wake {
        let gen = p.gen;
        if !run_now {
            // parked. Runs again once a waker schedules it. (loom's `Notify` may
            // wake spuriously: hence the flag.)
            while !self.scheduled.load(Acquire) {
                self.run.wait();
            }
            self.scheduled.store(false, Relaxed);
        }
        let why = self
            .park
            .take_wake(gen)
            .expect("grove: greenlet resumed from a park nobody ended");
                                                                         // cancels the timer unless it fired; a timer thread that still fires
                                                                         // later carries a stale generation, and `wake` says `Lost`: the same as a late cancel.
        if why == Wake::Killed {
            self.kill.store(false, Relaxed);
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

/// `Waiter<E>`.
struct Waiter<E> {
    token: Token,
    data: E,
}

/// `WaitQueue<E>`.
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

    /// `WaitQueue::push` (wait_queue.rs).
    fn push(&mut self, token: Token, data: E) {
        self.q.push_back(Waiter { token, data });
    }

    /// `WaitQueue::remove` (wait_queue.rs).
    fn remove(&mut self, id: ParkId) -> bool {
        match self.q.iter().rposition(|w| w.token.park_id() == id) {
            Some(i) => {
                self.q.remove(i);
                true
            }
            None => false,
        }
    }

    /// `WaitQueue::pop_front` (wait_queue.rs).
    fn pop_front(&mut self) -> Option<Waiter<E>> {
        self.q.pop_front()
    }

    /// `WaitQueue::wake_one` (wait_queue.rs).
    fn wake_one(&mut self, mut give: impl FnMut(&E), mut take_back: impl FnMut(&E)) -> Option<E> {
        while let Some(w) = self.q.pop_front() {
            give(&w.data);
            if w.token.unpark() {
                return Some(w.data);
            }
            take_back(&w.data);
        }
        None
    }

    /// `WaitQueue::wake_all` (wait_queue.rs).
    fn wake_all(&mut self) -> usize {
        self.q.drain(..).filter(|w| w.token.unpark()).count()
    }
}

/// `Waited`.
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

/// `wait`, first half: register under the lock and switch away.
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
    let mut id = None; // `Tidy { token: None }`
    let begun = Green::begin(me, timed, |token| {
        id = Some(token.park_id());
        queue(&mut guard).push(token, data);
        Some(guard) // the unlock step
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

/// `wait`, second half: resume, and `Tidy`. `committed`: the worker
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
            tidy = None; // the waker popped our entry
            Waited::HandedOver
        }
        // (a `Killed` park unwinds instead; `Tidy` runs the same way).
        Wake::TimedOut | Wake::Killed => Waited::TimedOut,
    };
    // `Tidy::drop`.
    if let Some(id) = tidy {
        let mut state = lock.lock().unwrap();
        queue(&mut state).remove(id);
    }
    // Leaving the wait: from here the header may go (see `Green::left_wait`).
    me.left_wait.store(q.park.gen, Release);
    waited
}

/// `wait`.
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
