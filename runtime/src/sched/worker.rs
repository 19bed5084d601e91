//! A worker thread's loop: find a runnable greenlet, resume it, handle how it switched back.
//!
//! # Finding work, in order
//!
//! 1. Every [`GLOBAL_CHECK_INTERVAL`] ticks, the injector and the pinned inbox first, so a
//!    worker whose own greenlets keep each other busy cannot starve them (Go's `schedtick % 61`).
//! 2. `runnext`, at most [`MAX_RUNNEXT_STREAK`] times in a row: two greenlets that wake each
//!    other would otherwise hand the worker back and forth forever.
//! 3. The local deque (FIFO), the pinned inbox, a batch from the injector.
//! 4. Searching: steal half of another worker's deque (crossbeam's `steal_batch_and_pop`), and
//!    the `runnext` of a worker the monitor saw blocked; a few rounds, then give up.
//! 5. Due timers. Then linger, polling between yields of the CPU, for up to 50 µs (see
//!    [`super::linger`]). Then sleep (see [`super::idle`] and [`super::parker`]); the first
//!    worker to sleep takes the driver and sleeps inside the poller, with the nearest timer as
//!    timeout.
//!
//! # Resuming
//!
//! A greenlet switches back either to yield (it goes to the back of the deque) or to park, with
//! the unlock step of the blocking call it is in (Go's `gopark`). The worker runs that step on its
//! own stack, after the switch, and only then commits the park (see [`crate::park_state`]): from
//! that moment a waker may resume the greenlet on another worker, so nothing here touches it
//! after a successful commit.

use super::context::set_current_core;
use super::linger::linger;
use super::{Hint, Remote, Shared};
use crate::stack::{Stack, CREDIT_BATCH, LOCAL_CACHE_MAX};
use crate::task::{Header, ParkRequest, SchedSlot, Suspend, TaskRef, PIN_ON_FIRST_RUN};
use crate::task_alloc::LocalCells;
use corosensei::CoroutineResult;
use crossbeam_deque::{Steal, Stealer, Worker};
use std::cell::{Cell, UnsafeCell};
use std::io;
use std::sync::atomic::Ordering::Relaxed;

/// Ticks between checks of the global queues.
const GLOBAL_CHECK_INTERVAL: u32 = 61;
/// Ticks between checks for due timers while the worker is busy (a power of two). A check is one
/// clock read (~25 ns here), made only while a timer is armed; it bounds how late a due timer
/// waits behind busy greenlets to 8 ticks instead of 61 (where it was first). (In the
/// 200-connection 10 ms-handler test the sleeps still overran by ~0.6 ms: there the wait is the
/// burst of wake-ups itself.)
const TIMER_CHECK_INTERVAL: u32 = 8;
/// Ticks between non-blocking polls of the poller by a busy worker while *every* worker is
/// awake (a power of two, a multiple of [`TIMER_CHECK_INTERVAL`]). Then nobody else collects
/// readiness, so this bounds how long a woken socket waits behind running greenlets: at 61 (Go's
/// and tokio's figure), 200 keep-alive connections with 10 ms handlers lost ~5% of their rate
/// waiting for it (`slow_handler`: 16.9-17.6k req/s at 61, 18.3-19.0k at 16, alternating
/// builds). While some worker sleeps, the busy one polls only every
/// [`DRIVER_POLL_INTERVAL_IDLE`] ticks: each poll that finds a batch wakes the sleeper to share
/// it, and on two cores shared with the load generator those wake-ups cost more than they bring
/// (polling every 16 ticks regardless took wrk's 256-connection hello world from 122-125k to
/// 92-100k req/s, with 0.08-0.10 voluntary context switches per request instead of 0.055).
const DRIVER_POLL_INTERVAL: u32 = 16;
/// Ticks between those polls while some worker sleeps (a power of two).
const DRIVER_POLL_INTERVAL_IDLE: u32 = 64;
// The run loop tests the poll intervals only on timer ticks, and the idle one only on poll ticks.
// (`%`, not `is_multiple_of`, which is newer than the crate's rust-version.)
#[allow(unknown_lints, clippy::manual_is_multiple_of)]
const _: () = assert!(
    DRIVER_POLL_INTERVAL % TIMER_CHECK_INTERVAL == 0
        && DRIVER_POLL_INTERVAL_IDLE % DRIVER_POLL_INTERVAL == 0
        && DRIVER_POLL_INTERVAL_IDLE.is_power_of_two()
        && TIMER_CHECK_INTERVAL.is_power_of_two()
);
/// Consecutive greenlets taken from `runnext` before the deque gets a turn.
const MAX_RUNNEXT_STREAK: u32 = 16;
/// Rounds over all victims a searching worker makes before it goes to sleep.
const SEARCH_ROUNDS: usize = 4;

/// The right to run greenlets on one worker (Go's P): its run queue and caches.
pub(crate) struct Core {
    index: usize,
    /// `&Shared::remotes[index]`, set when the worker starts: the switch path reads it with one
    /// load instead of indexing the slice each time (~8 instructions per yield, callgrind).
    remote: Cell<*const Remote>,
    local: Worker<TaskRef>,
    runnext_streak: Cell<u32>,
    pub(super) searching: Cell<bool>,
    rng: Cell<u32>,
    /// Stacks kept by this worker (no lock to take one).
    stacks: UnsafeCell<Vec<Stack>>,
    /// Stack reservations this worker holds for greenlets it will spawn (see `stack`).
    credits: Cell<usize>,
    /// Freed task cells, for reuse (see `task_alloc`).
    cells: LocalCells,
    /// The greenlet this worker is running right now (null in the scheduler loop).
    current: Cell<*const Header>,
    /// Ticks left before the global queues get their turn.
    global_countdown: Cell<u32>,
    /// Whether that turn looks at the pinned inbox before the injector (alternates).
    pinned_first: Cell<bool>,
    /// Greenlets run so far (wrapping), for the timer and poller checks.
    ticks: Cell<u32>,
    /// Depth of the thread holding this core: 0 for its own worker thread, above for a
    /// stand-in it was lent to (see `lend`). A stand-in leaves pinned greenlets alone.
    lend_depth: Cell<u32>,
    /// A greenlet of this core armed a timer with nobody in the poller: once it has parked,
    /// hand the poller to a sleeper if this core still has work (`after_commit`).
    poller_wanted: Cell<bool>,
}

// A core is built on the thread that starts the runtime and then moved, once, to its worker
// thread, before anything has touched its caches; from then on one thread at a time uses it
// (others reach a worker through its `Remote`): its worker thread, or a stand-in it is lent to,
// the hand-overs ordered by a thread start and a lock (see `lend`). `current` records which
// greenlet runs, and only the thread holding the core dereferences it.
// SAFETY: so the move of a `Core` to its worker thread shares nothing.
unsafe impl Send for Core {}

impl Core {
    pub(crate) fn new(index: usize) -> Core {
        Core {
            index,
            remote: Cell::new(std::ptr::null()),
            local: Worker::new_fifo(),
            runnext_streak: Cell::new(0),
            searching: Cell::new(false),
            rng: Cell::new(0x9E37_79B9 ^ (index as u32 + 1).wrapping_mul(0x85EB_CA6B)),
            stacks: UnsafeCell::new(Vec::new()),
            credits: Cell::new(0),
            cells: LocalCells::new(),
            current: Cell::new(std::ptr::null()),
            global_countdown: Cell::new(GLOBAL_CHECK_INTERVAL),
            pinned_first: Cell::new(false),
            ticks: Cell::new(0),
            lend_depth: Cell::new(0),
            poller_wanted: Cell::new(false),
        }
    }

    /// See `Shared::want_the_poller_watched`.
    pub(crate) fn want_the_poller_watched(&self) {
        self.poller_wanted.set(true);
    }

    /// Nothing waits in this core's queues (deque, `runnext`, pinned inbox) or the global one:
    /// when the greenlet running now parks, the worker goes looking for work and, finding none
    /// to steal, sleeps.
    pub(crate) fn has_nothing_queued(&self, shared: &Shared) -> bool {
        let remote = self.remote(shared);
        self.local.is_empty()
            && remote.runnext.looks_empty()
            && remote.pinned.is_empty()
            && shared.injector.is_empty()
    }

    /// This worker's shared half, `Shared::remotes[index]`.
    #[inline]
    pub(crate) fn remote<'a>(&self, shared: &'a Shared) -> &'a Remote {
        let r = self.remote.get();
        debug_assert!(
            std::ptr::eq(r, &*shared.remotes[self.index]),
            "grove: a core's remote pointer is not its worker's"
        );
        // SAFETY: set by `attach` to an element of the runtime's `remotes`, which live as long
        // as the process (the runtime is leaked) and are never resized; `attach` runs before
        // the core is used.
        unsafe { &*r }
    }

    /// Records where this core's shared half lives (before its worker loop starts).
    fn attach(&self, shared: &'static Shared) {
        self.remote.set(&*shared.remotes[self.index]);
    }

    /// The greenlet running on this worker, or null.
    pub(crate) fn current(&self) -> *const Header {
        self.current.get()
    }

    pub(crate) fn set_current(&self, h: *const Header) {
        self.current.set(h)
    }

    pub(crate) fn lend_depth(&self) -> u32 {
        self.lend_depth.get()
    }

    pub(crate) fn set_lend_depth(&self, depth: u32) {
        self.lend_depth.set(depth)
    }

    /// True while a stand-in thread holds this core (see `lend`): pinned greenlets wait for
    /// the core's own thread.
    pub(super) fn lent(&self) -> bool {
        self.lend_depth.get() > 0
    }

    pub(crate) fn cells(&self) -> &LocalCells {
        &self.cells
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn stealer(&self) -> Stealer<TaskRef> {
        self.local.stealer()
    }

    /// Pushes a runnable greenlet on the back of this worker's deque.
    pub(crate) fn push(&self, task: TaskRef) {
        self.local.push(task);
    }

    /// A default-size stack from this worker's cache, refilled from the pool.
    pub(crate) fn take_stack(&self, shared: &Shared) -> io::Result<Stack> {
        // SAFETY: only this worker's thread uses its core's stack cache, never re-entrantly.
        let cache = unsafe { &mut *self.stacks.get() };
        if let Some(s) = cache.pop() {
            return Ok(s);
        }
        shared.stacks.take_into(cache, LOCAL_CACHE_MAX / 2)?;
        crate::stack::install_guards(cache);
        Ok(cache
            .pop()
            .expect("grove: stack pool gave nothing without an error"))
    }

    /// Reserves a pool stack for a greenlet being spawned on this worker.
    pub(crate) fn take_credit(&self, shared: &Shared) -> io::Result<()> {
        let c = self.credits.get();
        if c == 0 {
            shared.stacks.reserve(CREDIT_BATCH)?;
            self.credits.set(CREDIT_BATCH - 1);
        } else {
            self.credits.set(c - 1);
        }
        Ok(())
    }

    /// A greenlet with a pool stack ended (or never started): its reservation comes back.
    pub(crate) fn return_credit(&self, shared: &Shared) {
        let c = self.credits.get() + 1;
        if c > 2 * CREDIT_BATCH {
            shared.stacks.unreserve(CREDIT_BATCH);
            self.credits.set(c - CREDIT_BATCH);
        } else {
            self.credits.set(c);
        }
    }

    /// Gives every cached stack back to the pool (a shortage: another worker needs one).
    fn flush_stacks(&self, shared: &Shared) {
        // SAFETY: as in `take_stack`.
        let cache = unsafe { &mut *self.stacks.get() };
        if !cache.is_empty() {
            shared.stacks.put_all(cache.drain(..));
        }
    }

    /// Returns a finished greenlet's stack.
    pub(crate) fn put_stack(&self, shared: &Shared, stack: Stack) {
        if stack.is_dedicated() {
            return drop(stack);
        }
        // SAFETY: as in `take_stack`.
        let cache = unsafe { &mut *self.stacks.get() };
        cache.push(stack);
        if cache.len() > LOCAL_CACHE_MAX {
            shared.stacks.put_all(cache.drain(..LOCAL_CACHE_MAX / 2));
        }
    }

    fn next_rand(&self) -> u32 {
        // xorshift32: victim order only needs to differ between workers and rounds.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.set(x);
        x
    }
}

/// The worker thread's body.
pub(crate) fn run(shared: &'static Shared, core: Core) {
    let core = Box::new(core);
    core.attach(shared);
    set_current_core(&*core);
    // Kept for the thread's life (the loop never ends).
    let _altstack = crate::overflow::ensure_altstack();
    run_loop(shared, &core);
}

/// A stand-in thread's loop with a lent core (see `lend`): returns when its lender wants the
/// core back, between two greenlets.
pub(crate) fn run_lent(shared: &'static Shared, core: &Core) {
    run_loop(shared, core);
}

/// Runs greenlets: for ever on the core's own thread; on a stand-in, until its lender asks for
/// the core back (checked between two greenlets, in a field of the core: a loop parameter
/// cost a yield ~12 instructions, callgrind `yieldb`).
fn run_loop(shared: &'static Shared, core: &Core) {
    loop {
        if core.lent() && lent_core_asked_back(shared, core) {
            return;
        }
        let task = match next_task(shared, core) {
            Some(t) => Some(t),
            None => search(shared, core),
        };
        match task {
            Some(task) => {
                if core.searching.get() {
                    core.searching.set(false);
                    if shared.idle.end_searching() {
                        shared.notify_work();
                    }
                }
                run_task(shared, core, task);
                let ticks = core.ticks.get().wrapping_add(1);
                core.ticks.set(ticks);
                if ticks & (TIMER_CHECK_INTERVAL - 1) == 0 {
                    if shared.stacks.in_shortage() {
                        core.flush_stacks(shared);
                    }
                    shared.fire_due_timers();
                    if ticks & (DRIVER_POLL_INTERVAL - 1) == 0
                        && (ticks & (DRIVER_POLL_INTERVAL_IDLE - 1) == 0
                            || shared.idle.num_unparked() == shared.remotes.len())
                    {
                        let _ = shared.driver.poll_if_free();
                    }
                }
            }
            None => {
                if shared.fire_due_timers() == 0 && !linger(shared, core) {
                    park(shared, core);
                }
            }
        }
    }
}

#[inline(always)]
fn next_task(shared: &Shared, core: &Core) -> Option<TaskRef> {
    let remote = core.remote(shared);
    let countdown = core.global_countdown.get() - 1;
    core.global_countdown.set(countdown);
    if countdown == 0 {
        if let Some(t) = take_global(shared, core) {
            return Some(t);
        }
    }
    if !remote.runnext.looks_empty() {
        if let Some(t) = take_runnext(core, remote) {
            return Some(t);
        }
    }
    core.runnext_streak.set(0);
    if let Some(t) = core.local.pop() {
        return Some(t);
    }
    take_shared(shared, core, remote)
}

/// The periodic turn of the injector and the pinned inbox (see the module docs), each first in
/// turn: taking the pinned inbox first always let a pinned greenlet that kept yielding starve
/// the injector; taking the injector first always let unpinned yielders (which go there while
/// the pinned inbox holds work) starve the pinned inbox behind a deque that never runs dry.
#[cold]
fn take_global(shared: &Shared, core: &Core) -> Option<TaskRef> {
    core.global_countdown.set(GLOBAL_CHECK_INTERVAL);
    if core.lent() {
        return steal_one(&shared.injector);
    }
    let pinned = &shared.remotes[core.index].pinned;
    if core.pinned_first.replace(!core.pinned_first.get()) {
        steal_one(pinned).or_else(|| steal_one(&shared.injector))
    } else {
        steal_one(&shared.injector).or_else(|| steal_one(pinned))
    }
}

fn take_runnext(core: &Core, remote: &Remote) -> Option<TaskRef> {
    let streak = core.runnext_streak.get();
    let p = remote.runnext.take();
    if p.is_null() {
        return None;
    }
    // SAFETY: the slot held a pointer from `into_raw`; taking it made it ours.
    let t = unsafe { TaskRef::from_raw(p) };
    if streak < MAX_RUNNEXT_STREAK {
        core.runnext_streak.set(streak + 1);
        return Some(t);
    }
    core.push(t); // the deque's turn; this one waits behind it
    None
}

/// The local deque is empty: the pinned inbox, then a batch from the injector.
fn take_shared(shared: &Shared, core: &Core, remote: &Remote) -> Option<TaskRef> {
    if !core.lent() {
        if let Some(t) = steal_one(&remote.pinned) {
            return Some(t);
        }
    }
    loop {
        match shared.injector.steal_batch_and_pop(&core.local) {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

fn steal_one(q: &crossbeam_deque::Injector<TaskRef>) -> Option<TaskRef> {
    loop {
        match q.steal() {
            Steal::Success(t) => return Some(t),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

fn search(shared: &Shared, core: &Core) -> Option<TaskRef> {
    if !core.searching.get() {
        if !shared.idle.try_begin_searching() {
            return None;
        }
        core.searching.set(true);
    }
    let n = shared.remotes.len();
    for _ in 0..SEARCH_ROUNDS {
        let start = core.next_rand() as usize % n;
        for i in 0..n {
            let v = (start + i) % n;
            if v == core.index {
                continue;
            }
            if let Some(t) = steal_from(shared, core, v) {
                return Some(t);
            }
        }
        if let Some(t) = next_task(shared, core) {
            return Some(t);
        }
        std::hint::spin_loop();
    }
    None
}

fn steal_from(shared: &Shared, core: &Core, victim: usize) -> Option<TaskRef> {
    let remote = &shared.remotes[victim];
    loop {
        match remote.stealer.steal_batch_and_pop(&core.local) {
            Steal::Success(t) => return Some(t),
            Steal::Retry => continue,
            Steal::Empty => break,
        }
    }
    // (Tried even when the slot looks empty: the owner fills and empties it with plain stores,
    // and a thief's plain look missed it so often that steals all but stopped, while the
    // steal's barrier makes the owner's last store visible.)
    if remote.blocked.load(Relaxed) {
        // The victim has held one greenlet for long: whatever it queued to run next would wait.
        let p = remote.runnext.steal();
        if !p.is_null() {
            shared.runnext_steals.fetch_add(1, Relaxed);
            // SAFETY: the slot held a pointer from `into_raw`; the steal made it ours.
            return Some(unsafe { TaskRef::from_raw(p) });
        }
    }
    None
}

/// True if this core's own queues hold work: its deque, its `runnext` slot, or (unless the
/// core is lent) its pinned inbox. What a poll of this worker's just woke lands here.
pub(super) fn has_own_work(shared: &Shared, core: &Core) -> bool {
    let remote = core.remote(shared);
    !core.local.is_empty()
        || !remote.runnext.looks_empty()
        || (!remote.pinned.is_empty() && !core.lent())
}

/// True if work this core could take is anywhere: its own queues, the global queue, or another
/// worker's deque (or a blocked worker's `runnext`).
pub(super) fn has_work(shared: &Shared, core: &Core) -> bool {
    has_own_work(shared, core)
        || !shared.injector.is_empty()
        || shared.remotes.iter().any(|r| {
            // A blocked worker's `runnext` is ours to take too (see `steal_from`): a search
            // that ended just before the monitor marked it blocked must not leave it there.
            !r.stealer.is_empty() || (r.blocked.load(Relaxed) && !r.runnext.looks_empty())
        })
}

fn park(shared: &Shared, core: &Core) {
    if shared.stacks.in_shortage() {
        core.flush_stacks(shared);
    }
    let was_searching = core.searching.replace(false);
    shared.idle.transition_to_parked(core.index, was_searching);
    // Re-check after counting ourselves out: see the lost-wake-up argument in `idle`.
    let mut polled = None;
    if !has_work(shared, core) {
        let remote = core.remote(shared);
        match shared.driver.try_lock() {
            Some(mut driver) => {
                remote
                    .parker
                    .park_driver(|| driver.block_until_event(shared));
                polled = Some(driver);
            }
            None => remote.parker.park_condvar(),
        }
    }
    if !shared.idle.transition_from_parked(core.index) {
        // A producer chose us, and counted us as searching.
        core.searching.set(true);
    }
    shared.monitor.on_worker_woke();
    // Only now, counted awake again: letting go of the driver drops the tokens its poll woke,
    // and firing timers drops stale ones, either of which may be a finished greenlet's last
    // reference, whose result's `Drop` is user code. One that blocks lends this core to a
    // stand-in (`lend`), which must find the core counted awake: asleep, the stand-in's own
    // park counted it out a second time and broke the idle counters' invariant.
    if let Some(driver) = polled {
        drop(driver);
        // With the driver free (see `block_until_event`); they land on this deque.
        shared.fire_due_timers();
    }
}

/// Resumes `task` until it yields, parks or finishes.
fn run_task(shared: &Shared, core: &Core, task: TaskRef) {
    let mut task = task;
    let header: *const Header = task.header();
    // SAFETY: `task` keeps the header alive while this function holds it; `h` is not used once
    // the park has taken the reference over (the `Ok` arm returns at once).
    let h = unsafe { &*header };
    // The worker holding a runnable greenlet's TaskRef is the only one touching its scheduler
    // slot (the run queues and the park state's AcqRel transitions hand it over). We go through
    // a raw pointer and never keep a reference across a resume.
    let slot: *mut SchedSlot = h.sched_slot();
    // SAFETY: see above; the greenlet is not running, so nothing else refers to the slot.
    if unsafe { (*slot).coro.is_none() } {
        match start_task(shared, core, &task, slot) {
            Start::Ready => {}
            Start::Done => return,
            Start::NoStackHere => return wait_for_a_stack(shared, core, task),
            Start::Pinned => return defer_to_own_thread(shared, core, task),
        }
    }
    let remote = core.remote(shared);
    loop {
        remote.run.begin(h);
        core.current.set(h);
        // SAFETY: the slot's coroutine exists (made above) and only this thread touches it now.
        let result = unsafe {
            (*slot)
                .coro
                .as_mut()
                .expect("grove: no coroutine")
                .resume(())
        };
        // SAFETY: the greenlet has switched out on this thread; its local part is ours to read.
        if unsafe { (*h.local_ptr()).lent_at } != 0 {
            // It lent this thread's core out while it ran: the core is not ours now.
            return finish_without_core(shared, core, task, slot, result);
        }
        core.current.set(std::ptr::null());
        remote.run.end();
        match result {
            CoroutineResult::Yield(why) => {
                let Some(request) = why.park_request() else {
                    requeue_yielded(shared, core, task);
                    return;
                };
                // SAFETY: the greenlet has just switched out to park, and it cannot be resumed
                // before the commit below.
                let gen = unsafe { run_unlock_step(request) };
                match h.park.commit_handing_over(gen, &h.kill, task) {
                    // Parked: our reference now belongs to the park, and the waker that ends it
                    // takes it back (`park::wake_greenlet`, for every waker and `kill`). From
                    // here on the greenlet may run, and finish, on another worker: nothing here
                    // touches it again.
                    Ok(()) => {
                        if core.poller_wanted.get() {
                            after_commit(shared, core, true);
                        }
                        return;
                    }
                    // Woken (or killed) before it finished parking: run it again.
                    Err(t) => {
                        if core.poller_wanted.get() {
                            after_commit(shared, core, false);
                        }
                        task = t;
                    }
                }
            }
            CoroutineResult::Return(()) => {
                // SAFETY: finished; nothing refers to the coroutine any more.
                let coro = unsafe { (*slot).coro.take() }.expect("grove: coroutine vanished");
                let stack = coro.into_stack();
                if !stack.is_dedicated() {
                    core.return_credit(shared);
                }
                core.put_stack(shared, stack);
                h.complete_off_greenlet();
                return;
            }
        }
    }
}

/// A greenlet of this core armed a timer while nobody slept in the poller (see
/// `Shared::want_the_poller_watched`), and its park is now committed (`parked`) or found woken:
/// if this worker has more to run, nobody would watch the clock meanwhile, so a sleeper takes
/// the poller; if not, this worker will sleep in it.
#[cold]
#[inline(never)]
fn after_commit(shared: &Shared, core: &Core, parked: bool) {
    core.poller_wanted.set(false);
    if !parked || !core.has_nothing_queued(shared) {
        shared.hand_the_poller_to_a_sleeper();
    }
}

/// Runs a parking greenlet's unlock step, on this (the worker's) stack, and returns the
/// generation its park is to commit.
///
/// # Safety
///
/// `request` came with the switch-out of a greenlet that has not been resumed since, and will
/// not be until its park is committed or found woken: the request and its unlock step live in
/// that greenlet's suspended frame.
#[inline(always)]
unsafe fn run_unlock_step(request: *const ParkRequest) -> u64 {
    // SAFETY: the frame holding the request is suspended and alive (the caller's contract).
    let request = unsafe { &*request };
    let gen = request.gen;
    // SAFETY: as above; the step is run once, here, as `ParkRequest::unlock` requires (and the
    // park protocol says, `park` module): nothing else runs or drops it.
    unsafe { (request.unlock)(request.step) };
    gen
}

/// The switch-out of a greenlet that lent its thread's core to a stand-in while it ran (see
/// `lend`), handled without the core: whatever would go to the core's queues or caches goes to
/// the global ones. Then the core comes back.
#[cold]
#[inline(never)]
fn finish_without_core(
    shared: &Shared,
    core: &Core,
    task: TaskRef,
    slot: *mut SchedSlot,
    result: CoroutineResult<Suspend, ()>,
) {
    let h: *const Header = task.header();
    // SAFETY: as in `run_task`: switched out on this thread, not yet handed over.
    let depth = unsafe { std::mem::take(&mut (*(*h).local_ptr()).lent_at) } - 1;
    // No greenlet runs on this thread any more.
    super::context::set_adopted(std::ptr::null());
    match result {
        // (No core is current here, so `schedule` takes the global path, or the pinned inbox.)
        CoroutineResult::Yield(why) => match why.park_request() {
            None => shared.schedule(task, Hint::Back),
            Some(request) => {
                // SAFETY: as in `run_task`.
                let gen = unsafe { run_unlock_step(request) };
                // SAFETY: `task` keeps the header alive until the commit hands it over.
                let h = unsafe { &*h };
                if let Err(t) = h.park.commit_handing_over(gen, &h.kill, task) {
                    shared.schedule(t, Hint::Back);
                }
            }
        },
        CoroutineResult::Return(()) => {
            // SAFETY: as in `run_task`.
            let coro = unsafe { (*slot).coro.take() }.expect("grove: lent coroutine vanished");
            let stack = coro.into_stack();
            if !stack.is_dedicated() {
                shared.stacks.unreserve(1);
                shared.stacks.put_all(std::iter::once(stack));
            }
            task.header().complete_off_greenlet();
        }
    }
    super::lend::reclaim(shared, core, depth);
}

/// A greenlet that yielded goes behind this worker's other runnable greenlets: to the back of
/// its deque, or, if it is pinned here, to its pinned inbox, which other workers do not steal
/// from (the deque is stealable: a pinned greenlet put there could resume elsewhere, which
/// `rt_pinned_greenlet_stays_on_one_worker` caught with four workers). While the pinned inbox
/// or the global queue holds greenlets, an unpinned yielder goes to the back of the global
/// queue instead (where Go's `Gosched` always puts it): the worker takes those queues only when
/// its deque is empty, or every [`GLOBAL_CHECK_INTERVAL`] ticks, so behind its deque a yielder
/// could come round ~60 times before they ran. Two emptiness checks (plain loads) per yield.
fn requeue_yielded(shared: &Shared, core: &Core, task: TaskRef) {
    let remote = core.remote(shared);
    if task.header().home.load(Relaxed) == core.index {
        remote.pinned.push(task);
        if !shared.injector.is_empty() {
            // It cannot go to the global queue (another worker could take it), so the global
            // queue's turn comes now instead, injector first.
            core.global_countdown.set(1);
            core.pinned_first.set(false);
        }
    } else if !remote.pinned.is_empty() || !shared.injector.is_empty() {
        // This worker is awake and takes the global queue before it sleeps: nobody to wake.
        shared.injector.push(task);
    } else {
        core.push(task);
    }
}

/// A stand-in leaves a greenlet that pins itself on its first run to a worker on its own thread:
/// pinned to another core that is on its own thread, or, when every other core is lent out too
/// (or there is no other), to this one, to run when it is back on its own thread. (Pinning it
/// here always stranded it for the whole lend, and a destructor that spawned and joined one
/// deadlocked, though another worker was free.)
#[cold]
#[inline(never)]
fn defer_to_own_thread(shared: &Shared, core: &Core, task: TaskRef) {
    let home = super::lend::a_core_not_lent(shared, core.index).unwrap_or(core.index);
    task.header().home.store(home, Relaxed);
    shared.remotes[home].pinned.push(task);
    if home != core.index && shared.idle.claim_sleeper(home) {
        shared.unpark_worker(home);
    }
}

/// A stand-in's check between two greenlets: does its lender want the core back?
#[cold]
#[inline(never)]
fn lent_core_asked_back(shared: &Shared, core: &Core) -> bool {
    core.remote(shared)
        .lending
        .asked_back(core.lend_depth.get())
}

/// What a first run came to.
enum Start {
    /// The coroutine is made: resume it.
    Ready,
    /// The greenlet finished without running (its stack's guard could not be installed).
    Done,
    /// No free stack here or in the pool, and none could be carved: see `wait_for_a_stack`.
    NoStackHere,
    /// A stand-in found a greenlet that pins itself when it first runs: see
    /// `defer_to_own_thread`.
    Pinned,
}

/// A greenlet whose reserved stack sits in another worker's cache (every started greenlet has
/// one reserved, so a free one exists somewhere): mark a shortage, which makes every worker
/// give its cache back at its next timer tick or before it sleeps, wake the sleepers to do so,
/// and queue the greenlet behind the others to try again. (It used to finish at once with the
/// carving error, though its `spawn` had succeeded: at address-space exhaustion, the normal
/// case on two or more workers.)
///
/// A retry that still finds none (the stacks sit with a worker whose greenlet holds it without
/// scheduling) pauses this worker for a millisecond first: a slow poll, not a spin at 100% CPU
/// for as long as that greenlet runs. Only at address-space exhaustion.
#[cold]
fn wait_for_a_stack(shared: &Shared, core: &Core, task: TaskRef) {
    let again = shared.stacks.in_shortage();
    shared.stacks.set_shortage(true);
    core.flush_stacks(shared);
    if again {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    shared.injector.push(task);
    while let Some(i) = shared.idle.claim_any_sleeper() {
        shared.unpark_worker(i);
    }
}

/// First run: builds the coroutine (see [`Start`]).
fn start_task(shared: &Shared, core: &Core, task: &TaskRef, slot: *mut SchedSlot) -> Start {
    let h = task.header();
    if core.lent() && h.home.load(Relaxed) == PIN_ON_FIRST_RUN {
        // It would pin itself to this stand-in's thread, which ends with the lend.
        return Start::Pinned;
    }
    // SAFETY: as in `run_task`: this thread alone touches the slot of a greenlet it holds.
    let slot = unsafe { &mut *slot };
    // (A greenlet killed before it ever ran starts too, but never calls its closure: see
    // `task::run_body`.)
    let stack = match slot.stack.take() {
        Some(dedicated) => dedicated,
        None => {
            let Ok(mut s) = core.take_stack(shared) else {
                return Start::NoStackHere;
            };
            shared.stacks.set_shortage(false);
            if let Err(e) = s.ensure_guard() {
                // The guard could not be installed (out of mappings, on the `mprotect` path):
                // the greenlet cannot start safely, and says why through `join`.
                core.put_stack(shared, s);
                core.return_credit(shared);
                task.fail_unstarted(e);
                let _ = h.complete();
                // The closure was dropped unrun here, outside any greenlet.
                crate::local::clear_thread_locals();
                return Start::Done;
            }
            s
        }
    };
    if h.home.load(Relaxed) == PIN_ON_FIRST_RUN {
        h.home.store(core.index, Relaxed);
    }
    slot.guard = stack.guard();
    slot.coro = Some(task.make_coroutine(stack));
    Start::Ready
}
