//! The one parking primitive every blocking call goes through, in a greenlet or on a thread.
//!
//! # The protocol (Go's `gopark`)
//!
//! A blocking call (a lock, a channel receive, a socket read, `join`, `sleep`) is written as:
//!
//! ```text
//! let guard = object.lock();              // the object's own lock
//! if ready(&guard) { return ... }        // fast path
//! park(|token| {                          // runs in the caller, before the switch
//!     guard.waiters.push(token);          //   hand out the wake-up token
//!     Some(move || drop(guard))           //   the unlock step, run AFTER the switch
//! }, deadline);
//! ```
//!
//! In a greenlet, [`park`] makes the token (bumping the park generation, see
//! [`crate::park_state`]), arms the deadline's timer, runs `register`, and switches to the
//! worker. The worker runs the returned unlock step on its own stack and only then commits the
//! park. A waker can only find the token under the object's lock, and the lock is released by
//! the unlock step, after the switch: so a waker finds the greenlet switched out, though perhaps
//! not yet committed (a `Select` even publishes its tokens with no lock to release). Either way
//! no waker ever resumes a greenlet whose stack is still in use: waking a park that has not
//! committed only marks it (`WonEarly`) and schedules nothing; the worker's commit then fails
//! and it resumes the greenlet itself. Timers and `kill` do not take the object's lock; the
//! park state's compare-exchanges settle those races.
//!
//! # Who keeps a parked greenlet alive
//!
//! The worker that commits a park gives its reference to the park, and the waker that ends a
//! committed park ([`wake_greenlet`]) takes it back to schedule the greenlet. A token from
//! [`park`] holds a reference of its own as well, since its holder may keep it past the park's
//! end; a token from [`park_borrowed`] holds none, which saves two locked instructions per wait,
//! under the rules its safety section states.
//!
//! On a plain OS thread the same call blocks the thread: the unlock step runs at once, and the
//! thread sleeps on its own mutex and condvar until the park state says a waker won.
//!
//! # Cancellation
//!
//! Every park is a cancellation point. A pending `kill`, or an expired `timeout` scope, makes
//! `park` unwind instead of returning (`resume_unwind`, so no panic message is printed); the
//! caller's destructors, such as the guard that removes its token from a wait list, run as the
//! stack unwinds. While the thread is already unwinding, `park` never starts another unwind: it
//! returns [`Wake::Killed`] or [`Wake::TimedOut`] instead.
//!
//! # Parking while unwinding
//!
//! A destructor that runs during an unwind may block (a condvar re-taking its mutex, a user's
//! cleanup that receives from a channel). A greenlet in that state does not switch away: it
//! blocks its worker thread instead, as a plain thread would, after lending the thread's core
//! to a stand-in thread that runs the worker's other greenlets meanwhile (`sched::lend`). The
//! reason is that
//! "this thread is panicking" (`std::thread::panicking`, the count std keeps per thread and
//! no stable API can save and restore) belongs to the worker thread, not the greenlet: switching
//! away mid-unwind handed it to the next greenlet on that worker, whose `timeout` and `kill` then
//! stopped working, and a greenlet resumed mid-unwind on another worker could panic again
//! without std noticing the double panic. A `kill` meanwhile waits until the unwind is over (it
//! could only abort the process).
//!
//! # Why the switch paths are inlined
//!
//! [`park`], [`park_borrowed`], the greenlet half of both and [`yield_now`] are
//! `#[inline(always)]` (and grove-sync inlines its wait path into each primitive), so that as
//! few stack frames as possible lie between a greenlet's own code and the switch. The reason is
//! the CPU's return-stack predictor: a switch moves to another stack, so every `ret` that leaves
//! a frame entered *before* the switch goes to an address the predictor did not see pushed, and
//! is mispredicted (and the worker's side of the switch then meets the same mismatch). On this
//! machine `yield_now` as a function of its own took 41-44 ns per yield, inlined into its
//! caller 18-25 ns; with the channel receive path flattened the same way, a channel ping-pong
//! round trip went from ~230-290 ns to ~160 ns (see docs/benchmarks.md). Instruction counts
//! barely move (callgrind does not model the predictor): time it. Calls made *after* the
//! switch (to the park state, the scheduler) return normally and are predicted, so they stay
//! out of line.

use crate::cancel;
use crate::park_state::{ParkState, Wake, WakeOutcome, Woken};
use crate::sched::context::current_task;
use crate::sched::{runtime, Hint};
use crate::task::{Header, ParkRequest, Suspend, TaskRef};
use crate::timer::TimerKey;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wake-up token for one park of one greenlet or thread.
pub struct Unparker {
    target: Target,
    gen: u64,
}

enum Target {
    /// A greenlet, kept alive by this token's own reference.
    Greenlet(TaskRef),
    /// A greenlet this token does not keep alive (see [`park_borrowed`]).
    Borrowed(NonNull<Header>),
    Thread(Arc<ThreadParker>),
}

// SAFETY: a borrowed token reaches only the header's park state (atomics) and, when it wins,
// the park's own reference; `park_borrowed`'s contract keeps the header alive while it is used.
unsafe impl Send for Target {}
// SAFETY: as above; `&Unparker` only reads.
unsafe impl Sync for Target {}

impl Unparker {
    /// A counted token for park `gen` of `task` (what a timer holds: it may fire long after the
    /// park ended, so it keeps the header alive itself).
    pub(crate) fn for_greenlet(task: TaskRef, gen: u64) -> Unparker {
        Unparker {
            target: Target::Greenlet(task),
            gen,
        }
    }

    /// Wakes the park this token was made for. True if this call woke it; false if the park
    /// already ended (woken by another token, timed out, killed) or was never committed to.
    /// A waker handing over a resource must pass it on to another waiter when this is false.
    #[inline]
    pub fn unpark(self) -> bool {
        if let Target::Borrowed(h) = self.target {
            // The wait queues' token (the hot path): straight to the park word, with no drop
            // glue for the token (16 instructions per channel round trip, callgrind).
            // SAFETY: a borrowed token is only used while its greenlet is alive
            // (`park_borrowed`'s contract).
            return unsafe { wake_greenlet(h, self.gen, Wake::Unparked, Hint::Next) };
        }
        self.wake_with(Wake::Unparked, Hint::Next)
    }

    /// [`Unparker::unpark`] without consuming the token.
    pub fn unpark_by_ref(&self) -> bool {
        self.wake_by_ref(Wake::Unparked, Hint::Next)
    }

    pub(crate) fn wake_with(self, why: Wake, hint: Hint) -> bool {
        self.wake_by_ref(why, hint)
    }

    pub(crate) fn wake_by_ref(&self, why: Wake, hint: Hint) -> bool {
        let h = match &self.target {
            Target::Greenlet(task) => NonNull::from(task.header()),
            Target::Borrowed(h) => *h,
            Target::Thread(t) => return t.wake(self.gen, why),
        };
        // SAFETY: a counted token keeps its header alive; a borrowed one is only used while its
        // greenlet is alive (`park_borrowed`'s contract).
        unsafe { wake_greenlet(h, self.gen, why, hint) }
    }

    /// True while the park this token was made for has not ended.
    pub fn is_waiting(&self) -> bool {
        match &self.target {
            Target::Greenlet(task) => task.header().park.is_waiting(self.gen),
            // SAFETY: as in `wake_by_ref`.
            Target::Borrowed(h) => unsafe { h.as_ref() }.park.is_waiting(self.gen),
            Target::Thread(t) => t.state.is_waiting(self.gen),
        }
    }

    /// An identity for the park this token wakes, without holding the greenlet alive (no
    /// reference count to touch): for finding one's own entry in a wait list later.
    pub fn park_id(&self) -> ParkId {
        let target = match &self.target {
            Target::Greenlet(t) => t.header() as *const _ as usize,
            Target::Borrowed(h) => h.as_ptr() as usize,
            Target::Thread(t) => Arc::as_ptr(t) as usize,
        };
        ParkId {
            target,
            gen: self.gen,
        }
    }

    /// True if both tokens wake the same park.
    pub fn same_park(&self, other: &Unparker) -> bool {
        self.park_id() == other.park_id()
    }
}

impl Clone for Unparker {
    fn clone(&self) -> Unparker {
        Unparker {
            target: match &self.target {
                Target::Greenlet(t) => Target::Greenlet(t.clone()),
                Target::Borrowed(h) => Target::Borrowed(*h),
                Target::Thread(t) => Target::Thread(t.clone()),
            },
            gen: self.gen,
        }
    }
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Greenlet(_) | Target::Borrowed(_) => "greenlet",
            Target::Thread(_) => "thread",
        };
        f.debug_struct("Unparker")
            .field("target", &kind)
            .field("gen", &self.gen)
            .finish()
    }
}

/// Ends park `gen` of the greenlet `h` for `why`. On a win against a committed park, the
/// park's reference (given to it by the worker that committed it) becomes ours, and we schedule
/// the greenlet with it.
///
/// `h` is a pointer, not a reference, on purpose: once `schedule` has the greenlet it may run,
/// finish and be freed on another worker before this function returns (with a borrowed token
/// nothing else holds it), and a reference argument would claim it stays valid for the whole
/// call.
///
/// # Safety
///
/// `h` points to a live greenlet header at least until its park state's compare-exchange below
/// (what a counted token, a borrowed token under its queue's lock, or a kill caller's handle
/// each guarantee).
#[inline(never)]
pub(crate) unsafe fn wake_greenlet(h: NonNull<Header>, gen: u64, why: Wake, hint: Hint) -> bool {
    // SAFETY: the caller keeps the header alive until the compare-exchange; `h` is the raw
    // form of a `TaskRef` (`TaskRef::into_raw` gives the header's address); the reference to
    // the park word ends with the statement.
    let woken = unsafe {
        h.as_ref()
            .park
            .wake_reclaiming::<TaskRef>(gen, why, h.as_ptr())
    };
    match woken {
        Woken::Lost => false,
        Woken::Early => true,
        Woken::Parked(task) => {
            // The park's reference, taken back: it keeps the greenlet alive until `schedule`
            // has it.
            runtime().schedule(task, hint);
            true
        }
    }
}

/// Which park an [`Unparker`] wakes (see [`Unparker::park_id`]). Two ids are equal only if
/// their tokens wake the same park of the same greenlet or thread, as long as that greenlet or
/// thread is alive (which it is while its own park is in progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkId {
    target: usize,
    gen: u64,
}

/// A plain thread's park slot.
pub(crate) struct ThreadParker {
    state: ParkState,
    lock: parking_lot::Mutex<()>,
    cvar: parking_lot::Condvar,
}

impl ThreadParker {
    /// `kill`'s side for a blocking-pool job running on this thread (its flag stored, the heavy
    /// fence made): ends the park in progress, if any, as `Killed`.
    pub(crate) fn wake_to_kill(&self) {
        if let Some(gen) = self.state.park_to_kill() {
            self.wake(gen, Wake::Killed);
        }
    }

    fn wake(&self, gen: u64, why: Wake) -> bool {
        match self.state.wake(gen, why) {
            WakeOutcome::Lost => false,
            WakeOutcome::WonEarly => true,
            WakeOutcome::WonParked => {
                // Taking the lock orders this signal after the sleeper's check (see `park_thread`).
                drop(self.lock.lock());
                self.cvar.notify_one();
                true
            }
        }
    }
}

/// A plain thread's grove context: its park slot, its `timeout` scopes, and the depth of its
/// shielded sections (see [`crate::cancel::shielded`]).
pub(crate) struct ThreadCtx {
    pub(crate) parker: Arc<ThreadParker>,
    pub(crate) scopes: RefCell<Vec<(Instant, u64)>>,
    pub(crate) shield: std::cell::Cell<u32>,
    pub(crate) shield_floor: std::cell::Cell<usize>,
}

impl ThreadParker {
    fn new() -> Arc<ThreadParker> {
        Arc::new(ThreadParker {
            state: ParkState::new(),
            lock: parking_lot::Mutex::new(()),
            cvar: parking_lot::Condvar::new(),
        })
    }
}

thread_local! {
    static THREAD_CTX: ThreadCtx = ThreadCtx {
        parker: ThreadParker::new(),
        scopes: RefCell::new(Vec::new()),
        shield: std::cell::Cell::new(0),
        shield_floor: std::cell::Cell::new(0),
    };
}

/// Runs `f` with this plain thread's context, unless it is already destroyed (in a
/// thread-local destructor that runs after it).
#[inline(never)]
pub(crate) fn try_with_thread_ctx<R>(f: impl FnOnce(&ThreadCtx) -> R) -> Option<R> {
    THREAD_CTX.try_with(f).ok()
}

/// This plain thread's park slot. In a thread-local destructor that runs after the context's
/// own (a user's value whose `Drop` sleeps or locks), a fresh slot stands in for the park:
/// blocking works there as `std::thread::sleep` does (with no `timeout` scopes, see `cancel`).
pub(crate) fn thread_parker() -> Arc<ThreadParker> {
    try_with_thread_ctx(|c| c.parker.clone()).unwrap_or_else(ThreadParker::new)
}

/// Blocks the current greenlet (or thread) until a token made here is unparked or `deadline`
/// passes.
///
/// `register` receives the token and returns the unlock step to run once the caller is switched
/// out, or `None` if it found there is nothing to wait for after all (then `park` returns
/// [`Wake::Unparked`] at once). Unwinds on `kill` or an expired `timeout` scope; see the
/// module docs.
#[inline(always)]
pub fn park<R, U>(register: R, deadline: Option<Instant>) -> Wake
where
    R: FnOnce(Unparker) -> Option<U>,
    U: FnOnce(),
{
    let h = current_task();
    if h.is_null() || std::thread::panicking() {
        return park_thread(register, deadline);
    }
    // SAFETY: a non-null current task is the greenlet running this code, alive while it runs.
    park_greenlet(unsafe { &*h }, register, deadline, true)
}

/// The greenlet running here (or none, on a plain thread), looked up once for a blocking call
/// that may both charge the cooperative budget and park ([`Here::charge`],
/// [`park_borrowed`]): the lookup is a call that cannot be inlined (see `sched::context`), ~10
/// instructions each time. It names the greenlet, not the worker thread, so it stays right
/// after a switch; it is not `Send`. Using one outside the call that looked it up (kept in a
/// thread-local, which the greenlets of a worker share) would reach another greenlet, or a
/// freed one: hence the `unsafe` on every use.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Here(*const Header);

impl Here {
    /// The greenlet running on this thread now.
    #[inline]
    pub fn now() -> Here {
        Here(current_task())
    }

    /// [`crate::coop::charge`] for this greenlet.
    ///
    /// # Safety
    ///
    /// `self` came from [`Here::now`] called by the same greenlet (or plain thread) that calls
    /// this, within the same blocking call.
    #[inline]
    pub unsafe fn charge(self) {
        crate::coop::charge_task(self.0)
    }
}

/// [`park`], with a token that does not keep the greenlet alive: no reference count to raise
/// and drop, which is two locked instructions per wait. For a wait queue under a lock. `here` is
/// [`Here::now`], from the greenlet (or thread) that parks.
///
/// # Safety
///
/// The token, and every clone of it, may be used (woken, cloned, dropped, asked
/// [`Unparker::is_waiting`]) only while the parked greenlet cannot have finished. It suffices
/// that (a) every use happens under one lock, (b) `register` is called with that lock held and
/// puts the token where only holders of the lock reach it, (c) the unlock step releases it, and
/// (d) whenever the park ends other than by that token, the caller takes the lock and removes
/// the token before the greenlet goes on (also when the park unwinds). grove-sync's wait queues
/// keep those rules (`wait_queue::wait`). And `here` came from [`Here::now`] called by the
/// greenlet (or thread) that parks, within the same blocking call: another greenlet's would
/// switch out through that greenlet's yielder from the wrong stack.
#[doc(hidden)]
#[inline(always)]
pub unsafe fn park_borrowed<R, U>(here: Here, register: R, deadline: Option<Instant>) -> Wake
where
    R: FnOnce(Unparker) -> Option<U>,
    U: FnOnce(),
{
    let h = here.0;
    if h.is_null() || std::thread::panicking() {
        // A thread's token counts its parker itself, so the borrowed rules are kept trivially.
        return park_thread(register, deadline);
    }
    // SAFETY: as in `park`.
    park_greenlet(unsafe { &*h }, register, deadline, false)
}

#[inline(always)]
fn park_greenlet<R, U>(h: &Header, register: R, deadline: Option<Instant>, counted: bool) -> Wake
where
    R: FnOnce(Unparker) -> Option<U>,
    U: FnOnce(),
{
    let scope = cancel::check_interrupts_greenlet(h);
    let effective = earliest(deadline, scope.map(|s| s.0));
    let gen = h.park.prepare();
    let target = if counted {
        // SAFETY: `h` is the running greenlet's header, alive.
        Target::Greenlet(unsafe { TaskRef::clone_from_header(h) })
    } else {
        Target::Borrowed(NonNull::from(h))
    };
    let token = Unparker { target, gen };
    // The timer may fire after the park has ended any other way: its token keeps the greenlet
    // alive.
    let timer = effective.map(|d| {
        // SAFETY: as above.
        let me = unsafe { TaskRef::clone_from_header(h) };
        runtime().arm_timer(d, Unparker::for_greenlet(me, gen))
    });
    let Some(unlock) = register(token) else {
        // Nothing to wait for: end the park ourselves (a racing waker may have ended it first).
        let _ = h.park.wake(gen, Wake::Unparked);
        let _ = h.park.take_wake(gen);
        cancel_timer(timer);
        return Wake::Unparked;
    };
    // The worker moves the step out of this frame and runs it, once (`ParkRequest::unlock`);
    // this frame never drops it.
    let mut unlock = std::mem::ManuallyDrop::new(unlock);
    let request = ParkRequest {
        gen,
        unlock: run_once::<U>,
        step: (&mut *unlock as *mut U).cast(),
    };
    suspend(h, Suspend::park(&request));
    crate::coop::refill(h);
    let why = h
        .park
        .take_wake(gen)
        .expect("grove: greenlet resumed from a park nobody ended");
    if why != Wake::TimedOut {
        cancel_timer(timer);
    }
    cancel::resolve_wake(why, deadline, scope)
}

/// Runs the unlock step of type `U` at `step`, moving it out.
///
/// # Safety
///
/// `step` points to a live `U` that nothing else will use or drop: this call takes it.
unsafe fn run_once<U: FnOnce()>(step: *mut ()) {
    // SAFETY: the caller hands the value over.
    let u = unsafe { step.cast::<U>().read() };
    u()
}

fn cancel_timer(timer: Option<TimerKey>) {
    if let Some(key) = timer {
        runtime().timers.cancel(key);
    }
}

fn park_thread<R, U>(register: R, deadline: Option<Instant>) -> Wake
where
    R: FnOnce(Unparker) -> Option<U>,
    U: FnOnce(),
{
    if std::thread::panicking() && !crate::blocking::current_job().is_null() {
        // A blocking-pool job's destructor, blocking while the job unwinds: as a greenlet's, it
        // waits out any `kill` until the unwind is over (see `blocking`, "Killing a running
        // job").
        return crate::blocking::out_of_kills_reach(|| park_thread_now(register, deadline));
    }
    park_thread_now(register, deadline)
}

/// [`park_thread`]'s body.
fn park_thread_now<R, U>(register: R, deadline: Option<Instant>) -> Wake
where
    R: FnOnce(Unparker) -> Option<U>,
    U: FnOnce(),
{
    let scope = cancel::check_interrupts_thread();
    let effective = earliest(deadline, scope.map(|s| s.0));
    let parker = thread_parker();
    let gen = parker.state.prepare();
    let token = Unparker {
        target: Target::Thread(parker.clone()),
        gen,
    };
    let Some(unlock) = register(token) else {
        let _ = parker.state.wake(gen, Wake::Unparked);
        let _ = parker.state.take_wake(gen);
        return Wake::Unparked;
    };
    unlock();
    if commit_thread_park(&parker, gen) {
        // A greenlet blocking its worker thread mid-unwind, or the worker loop itself blocking
        // (a result's `Drop`), lends the thread's core out, so the worker's other greenlets run
        // meanwhile (see `sched::lend`).
        let lent = crate::sched::lend::lend_core_while_blocked();
        let mut guard = parker.lock.lock();
        while parker.state.is_waiting(gen) {
            match effective {
                None => parker.cvar.wait(&mut guard),
                Some(d) => {
                    if Instant::now() >= d || parker.cvar.wait_until(&mut guard, d).timed_out() {
                        // Claim the timeout ourselves; a waker that got in first wins instead.
                        let _ = parker.state.wake(gen, Wake::TimedOut);
                    }
                }
            }
        }
        drop(guard);
        if let Some(lent) = lent {
            crate::sched::lend::take_back(lent);
        }
    }
    let why = parker
        .state
        .take_wake(gen)
        .expect("grove: thread woke from a park nobody ended");
    cancel::resolve_wake(why, deadline, scope)
}

/// A plain thread's commit. On a blocking-pool thread running a job, the park answers to the
/// job's kill flag first, as a greenlet's does (`ParkState::commit_unless_killed`, the
/// owner's half of the Dekker pair with `kill`; see `blocking`, "Killing a running job"),
/// unless the job is in a shielded section or unwinding.
fn commit_thread_park(parker: &ThreadParker, gen: u64) -> bool {
    let job = crate::blocking::current_job();
    if job.is_null() || cancel::shielded_now() || std::thread::panicking() {
        return parker.state.commit(gen);
    }
    // SAFETY: the job this thread runs is alive while it runs (`run_job` holds its task).
    let kill = unsafe { &(*job).kill };
    parker.state.commit_unless_killed(gen, kill)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Switches from the running greenlet `h` to its worker.
#[inline(always)]
fn suspend(h: &Header, why: Suspend) {
    // SAFETY: only the running greenlet reads its own yielder, set when its coroutine started.
    let yielder = unsafe { (*h.local_ptr()).yielder };
    assert!(!yielder.is_null(), "grove: greenlet has no yielder");
    // SAFETY: the yielder lives at the base of this greenlet's stack for as long as it runs.
    unsafe { (*yielder).suspend(why) };
}

/// Lets every other runnable greenlet of this worker run first (`std::thread::yield_now` on a
/// plain thread). A cancellation point, like every blocking call.
#[inline(always)]
pub fn yield_now() {
    let h = current_task();
    // Mid-unwind, the greenlet keeps its worker (see "Parking while unwinding").
    if h.is_null() || std::thread::panicking() {
        cancel::check_interrupts_thread();
        std::thread::yield_now();
        return;
    }
    // SAFETY: as in `park`.
    let h = unsafe { &*h };
    cancel::check_interrupts_greenlet(h);
    suspend(h, Suspend::YIELD);
    crate::coop::refill(h);
    // A kill that landed while it waited in the run queue is delivered from this yield, as
    // from a park that a kill ends: the greenlet does not run on past it. (Only the flag is
    // read here, ~3 instructions; a `timeout` that expired meanwhile is met at the next
    // blocking call, as before: the full check cost a yield ~10.)
    if h.kill.load(std::sync::atomic::Ordering::Relaxed) {
        cancel::check_interrupts_greenlet(h);
    }
}

/// Sleeps for `d`: parks the greenlet (blocks a plain thread). `sleep(Duration::ZERO)` yields.
pub fn sleep(d: Duration) {
    match Instant::now().checked_add(d) {
        Some(deadline) => sleep_until(deadline),
        None => sleep_forever(),
    }
}

/// Sleeps until `deadline`; yields if it has passed.
pub fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return yield_now();
    }
    while park(|_token| Some(|| ()), Some(deadline)) != Wake::TimedOut {
        if Instant::now() >= deadline {
            return;
        }
    }
}

fn sleep_forever() {
    loop {
        park(|_token| Some(|| ()), None);
    }
}
