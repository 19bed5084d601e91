//! A greenlet's memory: one allocation holding the header, the closure and the result slot.
//!
//! The scheduler moves greenlets around as [`TaskRef`]s: a *thin* pointer to the [`Header`] at the
//! start of a `TaskCell<F, T>`, with a reference count of our own and a hand-written vtable for
//! the parts that depend on `F` and `T`. We do not use `Arc<dyn Task>` because its pointer is
//! fat: a fat pointer cannot sit in an `AtomicPtr`, and the per-worker `runnext` slot must be one
//! so that other workers can steal from it while its owner is blocked. One allocation per spawn
//! (header, closure and result together) is also what keeps spawn+join cheap.
//!
//! The coroutine itself does not depend on `F` or `T`: corosensei moves the body closure onto the
//! greenlet's own stack, so `Coroutine<(), Suspend, (), Stack>` is one concrete type and lives in
//! the header.

use crate::park::Unparker;
use crate::park_state::ParkState;
use crate::park_state::Wake;
use crate::sched::Hint;
use crate::stack::Stack;
use corosensei::{Coroutine, Yielder};
use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
use std::sync::Arc;
use std::thread;

/// What a greenlet passes to its worker when it switches away: null for `yield_now`, else its
/// park request. One word, so that corosensei hands it over in a register; as a two-variant
/// enum of four words it went through memory and was copied out on the worker's side (~8
/// instructions per switch, callgrind `yieldb`).
#[derive(Clone, Copy)]
pub(crate) struct Suspend(*const ParkRequest);

/// A park's request to its worker, in the parking greenlet's frame (alive until it resumes).
pub(crate) struct ParkRequest {
    /// The park generation to commit.
    pub(crate) gen: u64,
    /// Runs the unlock step at `step` on the worker's stack once the switch is done, moving
    /// it out of the parking frame: called exactly once, with `step`. (A plain function
    /// pointer and a data pointer, not a `dyn FnMut` over an `Option`: no vtable and no
    /// "already taken" check on the switch path.)
    pub(crate) unlock: unsafe fn(*mut ()),
    /// The unlock step, a closure in the parking greenlet's frame.
    pub(crate) step: *mut (),
}

impl Suspend {
    /// `yield_now`: requeue behind every other runnable greenlet of this worker.
    pub(crate) const YIELD: Suspend = Suspend(std::ptr::null());

    /// Park as `req` says.
    pub(crate) fn park(req: &ParkRequest) -> Suspend {
        Suspend(req)
    }

    /// The park request, or `None` for a yield.
    #[inline]
    pub(crate) fn park_request(self) -> Option<*const ParkRequest> {
        (!self.0.is_null()).then_some(self.0)
    }
}

/// A greenlet's coroutine: its stack, its saved context.
pub(crate) type Coro = Coroutine<(), Suspend, (), Stack>;

/// A greenlet's identity, unique for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GreenletId(pub(crate) u64);

impl GreenletId {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for GreenletId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Operations that depend on a task's closure and result types.
pub(crate) struct VTable {
    /// Builds the coroutine that will run the closure on `stack`.
    make_coroutine: unsafe fn(NonNull<Header>, Stack) -> Coro,
    /// Runs the closure on the current thread (blocking pool) and stores its result.
    run_inline: unsafe fn(NonNull<Header>),
    /// Stores `Err(payload)` without ever running the closure.
    cancel_unstarted: unsafe fn(NonNull<Header>, Box<dyn std::any::Any + Send>),
    /// Moves the result into `*out`, which is an `Option<thread::Result<T>>`.
    take_result: unsafe fn(NonNull<Header>, out: *mut ()),
    /// Drops the result here (nobody can take it any more).
    drop_result: unsafe fn(NonNull<Header>),
    /// Frees the whole cell.
    dealloc: unsafe fn(NonNull<Header>),
}

/// Parts of a greenlet only its owner touches: the greenlet itself while it runs, or the
/// worker that is resuming it.
pub(crate) struct Local {
    pub(crate) yielder: *const Yielder<(), Suspend>,
    /// `timeout` scopes, innermost last: (deadline, scope id).
    pub(crate) scopes: crate::lazy_vec::LazyVec<(std::time::Instant, u64)>,
    /// Greenlet-local storage.
    pub(crate) locals: crate::local::LocalMap,
    /// Ready operations left before the greenlet must yield (see `coop`).
    pub(crate) budget: u32,
    /// Nesting depth of [`crate::cancel::shielded`] sections: while above zero, parks neither
    /// unwind for a kill nor honour the `timeout` scopes.
    pub(crate) shield: u32,
    /// Scopes below this index (opened before the outermost shielded section) are held back.
    pub(crate) shield_floor: usize,
    /// A kill that arrived inside a shielded section, re-armed when the outermost one ends.
    pub(crate) kill_deferred: bool,
    /// The runtime has raised a kill in this greenlet (see `cancel::is_cancellation`).
    pub(crate) kill_raised: bool,
    /// Non-zero while this greenlet runs on a worker thread whose core it lent out (it blocked
    /// the thread mid-unwind): the lender's depth plus one, for the thread to take the core
    /// back when the greenlet next switches out (see `sched::lend`).
    pub(crate) lent_at: u32,
}

/// The type-independent front of every task.
#[repr(C)]
pub(crate) struct Header {
    refs: AtomicUsize,
    vtable: &'static VTable,
    pub(crate) park: ParkState,
    /// Set by `kill`, consumed when the kill is delivered.
    pub(crate) kill: AtomicBool,
    /// `DONE` once the result is stored; `JOINER` once anyone registered to be woken;
    /// `DETACHED` once the `JoinHandle` is gone without taking the result; `BLOCKING_JOB` from
    /// creation for a `spawn_blocking` job.
    completion: AtomicU8,
    /// Worker this greenlet is pinned to, `NOT_PINNED`, or `PIN_ON_FIRST_RUN`.
    pub(crate) home: AtomicUsize,
    pub(crate) id: GreenletId,
    pub(crate) name: Option<Arc<str>>,
    joiners: parking_lot::Mutex<Joiners>,
    pub(crate) local: UnsafeCell<Local>,
    sched: UnsafeCell<SchedSlot>,
}

/// Parts of a greenlet only the worker that holds it (runnable, not running) touches.
pub(crate) struct SchedSlot {
    /// A dedicated stack mapped at spawn, until the first run makes the coroutine on it (pool
    /// stacks are taken at first run instead).
    pub(crate) stack: Option<Stack>,
    /// The coroutine, made on first run.
    pub(crate) coro: Option<Coro>,
    /// The stack's guard range, for the overflow handler.
    pub(crate) guard: (usize, usize),
}

const DONE: u8 = 1;
const JOINER: u8 = 2;
const DETACHED: u8 = 4;
/// Set at creation, never changed: the task is a `spawn_blocking` job (see
/// [`Header::is_blocking_job`]).
const BLOCKING_JOB: u8 = 8;

/// Tokens of the parks waiting for a task to end: one inline (the usual `join`), more in a
/// vector (several waiters, e.g. a group and a handle).
#[derive(Default)]
pub(crate) struct Joiners {
    first: Option<Unparker>,
    rest: crate::lazy_vec::LazyVec<Unparker>,
}

impl Joiners {
    fn push(&mut self, u: Unparker) {
        match self.first {
            None => self.first = Some(u),
            Some(_) => self.rest.push(u),
        }
    }

    fn pop(&mut self) {
        if self.rest.pop().is_none() {
            self.first = None;
        }
    }

    /// Takes out the registrations whose park has ended; the caller drops them after the lock
    /// (a token may hold the last reference to its greenlet, whose result's `Drop` is user code).
    fn take_stale(&mut self) -> Vec<Unparker> {
        let (live, mut stale): (Vec<Unparker>, Vec<Unparker>) = std::mem::take(&mut self.rest)
            .into_vec()
            .into_iter()
            .partition(|u| u.is_waiting());
        self.rest = live.into();
        if self.first.as_ref().is_some_and(|u| !u.is_waiting()) {
            stale.extend(self.first.take());
            self.first = self.rest.pop();
        }
        stale
    }
}

pub(crate) const NOT_PINNED: usize = usize::MAX;
pub(crate) const PIN_ON_FIRST_RUN: usize = usize::MAX - 1;

#[repr(C)]
struct TaskCell<F, T> {
    header: Header,
    start: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<thread::Result<T>>>,
}

/// An owned reference to a task (one count of its reference count).
pub(crate) struct TaskRef(NonNull<Header>);

// The closure is `Send` (spawn requires it) and the result `T: Send`; the header's shared fields
// are atomics or locks, and its owner-only fields (`local`) are touched only by the one thread
// that currently runs or resumes the greenlet, handed over through the run queues and the park
// state's AcqRel transitions.
// SAFETY: so a `TaskRef` may move between threads.
unsafe impl Send for TaskRef {}
// SAFETY: as above; `&TaskRef` only reaches the header's atomics and locks.
unsafe impl Sync for TaskRef {}

impl TaskRef {
    /// A new task for `f`, with one reference.
    pub(crate) fn new<F, T>(f: F, id: GreenletId, name: Option<Arc<str>>, opts: TaskOpts) -> TaskRef
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Allocated first, and the cell written straight into it: built on the stack before the
        // allocation, the ~300-byte cell was then copied over with `memcpy` (~65 instructions
        // per spawn, callgrind).
        let mem =
            crate::task_alloc::alloc(Layout::new::<TaskCell<F, T>>()).cast::<TaskCell<F, T>>();
        let cell = TaskCell::<F, T> {
            header: Header {
                refs: AtomicUsize::new(1),
                vtable: vtable_of::<F, T>(),
                park: ParkState::new(),
                kill: AtomicBool::new(false),
                completion: AtomicU8::new(if opts.blocking_job { BLOCKING_JOB } else { 0 }),
                home: AtomicUsize::new(if opts.pinned {
                    PIN_ON_FIRST_RUN
                } else {
                    NOT_PINNED
                }),
                id,
                name,
                joiners: parking_lot::Mutex::new(Joiners::default()),
                local: UnsafeCell::new(Local {
                    yielder: std::ptr::null(),
                    scopes: crate::lazy_vec::LazyVec::new(),
                    locals: Default::default(),
                    budget: crate::coop::BUDGET,
                    shield: 0,
                    shield_floor: 0,
                    kill_deferred: false,
                    kill_raised: false,
                    lent_at: 0,
                }),
                sched: UnsafeCell::new(SchedSlot {
                    stack: opts.stack,
                    coro: None,
                    guard: (0, 0),
                }),
            },
            start: UnsafeCell::new(Some(f)),
            result: UnsafeCell::new(None),
        };
        // SAFETY: `mem` is a fresh block with the layout of TaskCell<F, T>.
        unsafe { mem.as_ptr().write(cell) };
        let ptr = mem.cast::<Header>();
        TaskRef(ptr)
    }

    /// The header.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: we hold a count, so the cell is alive; Header is its first field (repr(C)).
        unsafe { self.0.as_ref() }
    }

    /// Gives up ownership as a thin raw pointer (for `AtomicPtr` slots).
    pub(crate) fn into_raw(self) -> *mut Header {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes back ownership of a pointer from [`TaskRef::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and be taken back exactly once.
    pub(crate) unsafe fn from_raw(p: *mut Header) -> TaskRef {
        // SAFETY: the caller passes a non-null pointer produced by `into_raw`.
        TaskRef(unsafe { NonNull::new_unchecked(p) })
    }

    /// A new counted reference from a borrowed header (the greenlet making a token for itself).
    ///
    /// # Safety
    /// `h` must be the header of a live task.
    pub(crate) unsafe fn clone_from_header(h: &Header) -> TaskRef {
        h.refs.fetch_add(1, Relaxed);
        TaskRef(NonNull::from(h))
    }

    /// Builds the coroutine for this task's closure on `stack`.
    pub(crate) fn make_coroutine(&self, stack: Stack) -> Coro {
        // SAFETY: the vtable belongs to this cell's concrete type; we hold a count.
        unsafe { (self.header().vtable.make_coroutine)(self.0, stack) }
    }

    /// Runs the closure to completion on this thread (blocking pool).
    pub(crate) fn run_inline(&self) {
        // SAFETY: as above; the pool runs each task once.
        unsafe { (self.header().vtable.run_inline)(self.0) }
    }

    /// Finishes a task that never ran with `Err(Killed)`.
    pub(crate) fn cancel_unstarted(&self) {
        // SAFETY: as above; called instead of ever running it.
        unsafe { (self.header().vtable.cancel_unstarted)(self.0, Box::new(crate::cancel::Killed)) }
    }

    /// Finishes a task that could not start with `Err(error)`.
    pub(crate) fn fail_unstarted(&self, error: std::io::Error) {
        // SAFETY: as above; called instead of ever running it.
        unsafe { (self.header().vtable.cancel_unstarted)(self.0, Box::new(error)) }
    }

    /// Moves the result out.
    ///
    /// # Safety
    /// `T` must be the task's result type, and the task must be done.
    pub(crate) unsafe fn take_result<T>(&self) -> Option<thread::Result<T>> {
        let mut out: Option<thread::Result<T>> = None;
        // SAFETY: the caller guarantees T matches the cell's result type.
        unsafe { (self.header().vtable.take_result)(self.0, &mut out as *mut _ as *mut ()) };
        out
    }
}

impl Clone for TaskRef {
    fn clone(&self) -> TaskRef {
        // Relaxed: a new count is derived from an existing one, as in `Arc::clone`.
        self.header().refs.fetch_add(1, Relaxed);
        TaskRef(self.0)
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // Release/Acquire as in `Arc::drop`: every use through another count happens before the
        // free.
        if self.header().refs.fetch_sub(1, Release) == 1 {
            std::sync::atomic::fence(Acquire);
            // SAFETY: this was the last count.
            unsafe { (self.header().vtable.dealloc)(self.0) }
        }
    }
}

/// Spawn options that live in the header.
#[derive(Default)]
pub(crate) struct TaskOpts {
    pub(crate) pinned: bool,
    /// Its own stack, for a non-default size (pool stacks are taken at first run).
    pub(crate) stack: Option<Stack>,
    /// A `spawn_blocking` job, run on a pool thread rather than as a greenlet.
    pub(crate) blocking_job: bool,
}

impl Header {
    /// True if the task is a `spawn_blocking` job. Only a job's park can be in the blocking
    /// pool's `running` list, so `kill` looks there for jobs alone.
    pub(crate) fn is_blocking_job(&self) -> bool {
        self.completion.load(Relaxed) & BLOCKING_JOB != 0
    }

    /// True once the task has stored its result.
    pub(crate) fn is_done(&self) -> bool {
        // Acquire: pairs with the AcqRel `fetch_or(DONE)` in `complete`, publishing the result.
        self.completion.load(Acquire) & DONE != 0
    }

    /// Marks the task finished and wakes every joiner.
    ///
    /// The joiner protocol: a joiner pushes its token under the lock and then sets `JOINER`; the
    /// completer sets `DONE`. Both are read-modify-writes of one word, so one sees the other: a
    /// completer that saw no `JOINER` skips the lock (the common case: nobody waits), and a joiner
    /// that then sees `DONE` takes its token back and does not park.
    ///
    /// The result's owner, the same way: a `JoinHandle` dropped unjoined sets `DETACHED`
    /// ([`detach_result`](Self::detach_result)). Whichever of the two read-modify-writes sees the
    /// other's bit drops the result, so a detached greenlet's result goes as soon as both have
    /// happened, as `std::thread`'s does, not when the last reference to the task goes (a stale
    /// timer token kept it until the timer's old deadline). The greenlet itself drops it when
    /// the handle was gone before it finished (`run_body`). True if the result was dropped
    /// here: user code ran on this thread (see [`complete_off_greenlet`](Self::complete_off_greenlet)).
    pub(crate) fn complete(&self) -> bool {
        let prev = self.completion.fetch_or(DONE, AcqRel);
        if prev & JOINER != 0 {
            let joiners = std::mem::take(&mut *self.joiners.lock());
            if let Some(first) = joiners.first {
                // Behind queued work: a joiner typically collects many results, and running it
                // after the others finish saves it parking again for each one.
                first.wake_with(Wake::Unparked, Hint::Back);
            }
            for j in joiners.rest.into_vec() {
                j.wake_with(Wake::Unparked, Hint::Back);
            }
        }
        if prev & DETACHED != 0 {
            // SAFETY: the handle is gone (nobody takes the result any more), the result was
            // stored before this call, and only the side whose RMW saw the other's bit gets here.
            unsafe { (self.vtable.drop_result)(NonNull::from(self)) };
            return true;
        }
        false
    }

    /// [`complete`](Self::complete), called by the runtime outside any greenlet (a worker or
    /// stand-in after the greenlet returned, a pool thread after its job): if it dropped the
    /// result there, the greenlet-locals that user code left in the thread's own map are
    /// nobody's, and go too.
    pub(crate) fn complete_off_greenlet(&self) {
        if self.complete() {
            crate::local::clear_thread_locals();
        }
    }

    /// The `JoinHandle` is dropped without taking the result: the result is nobody's. Dropped
    /// here if the task is done, else by [`complete`](Self::complete) (see there).
    pub(crate) fn detach_result(&self) {
        if self.completion.fetch_or(DETACHED, AcqRel) & DONE != 0 {
            // SAFETY: done (the Acquire half of the RMW publishes the result), the handle is
            // going, and only the side whose RMW saw the other's bit gets here.
            unsafe { (self.vtable.drop_result)(NonNull::from(self)) };
        }
    }

    /// True once the `JoinHandle` is gone without taking the result.
    fn is_detached(&self) -> bool {
        self.completion.load(Acquire) & DETACHED != 0
    }

    /// Registers `u` to be woken at completion. `None` (and `u` dropped) if already done;
    /// otherwise the held lock, to be released after the caller has switched out.
    pub(crate) fn add_joiner(&self, u: Unparker) -> Option<parking_lot::MutexGuard<'_, Joiners>> {
        let mut g = self.joiners.lock();
        if self.is_done() {
            return None;
        }
        g.push(u);
        if self.completion.fetch_or(JOINER, AcqRel) & DONE != 0 {
            g.pop(); // the completer did not see us: it is done already
            return None;
        }
        Some(g)
    }

    /// Drops joiner registrations whose park has ended (after a timed-out or killed join).
    pub(crate) fn remove_stale_joiners(&self) {
        let stale = self.joiners.lock().take_stale();
        drop(stale);
    }

    /// The scheduler slot, as a raw pointer (see `SchedSlot` for who may use it).
    pub(crate) fn sched_slot(&self) -> *mut SchedSlot {
        self.sched.get()
    }

    /// The owner-only part, as a raw pointer. Only the greenlet itself (while it runs) or the
    /// worker resuming it may dereference it, and always one field at a time
    /// (`(*p).budget`, `(*p).scopes.is_empty()`), never as a `&mut Local`: the fields are used
    /// re-entrantly (a greenlet-local's initialiser or destructor may do I/O, which spends the
    /// budget and reads the scopes), and a reference to the whole part would overlap the
    /// borrow of the field in use.
    pub(crate) fn local_ptr(&self) -> *mut Local {
        self.local.get()
    }
}

// A header's cells are changed only by the runtime (the owner's part by the greenlet or the
// worker resuming it, the scheduler slot by its holder, the joiners under their lock), never
// across user code, so an unwind through a user's frame leaves them whole: a `JoinHandle` or
// `Greenlet` may cross `catch_unwind` as std's `JoinHandle` does.
impl std::panic::RefUnwindSafe for Header {}
impl std::panic::UnwindSafe for Header {}

impl Drop for Header {
    fn drop(&mut self) {
        if let Some(coro) = self.sched.get_mut().coro.take() {
            if coro.started() && !coro.done() {
                // Still suspended. Not reached for a parked greenlet (a committed park holds a
                // count until a waker takes it back, so a greenlet parked forever leaks its
                // header with its stack, like a goroutine blocked forever), nor for a yielded
                // one (the run queue holding it is never dropped): a defensive branch. Unwinding
                // here would run its destructors on whatever thread dropped the last reference,
                // so leak the coroutine instead, stack and all; its stack memory stays reserved,
                // which also keeps any waiter records that point into it valid.
                std::mem::forget(coro);
            }
        }
    }
}

fn vtable_of<F, T>() -> &'static VTable
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    struct Holder<F, T>(PhantomData<(F, T)>);
    impl<F, T> Holder<F, T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        const VTABLE: VTable = VTable {
            make_coroutine: make_coroutine::<F, T>,
            run_inline: run_inline::<F, T>,
            cancel_unstarted: cancel_unstarted::<F, T>,
            take_result: take_result::<F, T>,
            drop_result: drop_result::<F, T>,
            dealloc: dealloc::<F, T>,
        };
    }
    &Holder::<F, T>::VTABLE
}

/// # Safety
/// `h` is the header of a live `TaskCell<F, T>` whose coroutine has not been made yet.
unsafe fn make_coroutine<F, T>(h: NonNull<Header>, stack: Stack) -> Coro
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cell = h.cast::<TaskCell<F, T>>().as_ptr() as usize;
    Coroutine::with_stack(stack, move |yielder: &Yielder<(), Suspend>, ()| {
        // SAFETY: the cell owns this coroutine, so it outlives every run of it; `local` and the
        // start/result slots are touched only by the greenlet while it runs.
        unsafe {
            let cell = &*(cell as *const TaskCell<F, T>);
            (*cell.header.local.get()).yielder = yielder;
            run_body(cell);
        }
    })
}

/// # Safety
/// Only the thread running the task may call this, once.
unsafe fn run_body<F, T>(cell: &TaskCell<F, T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the caller runs the task exactly once, alone.
    let f = unsafe { (*cell.start.get()).take() }.expect("grove: task started twice");
    let r = if cell.header.kill.load(Acquire) && cell.header.kill.swap(false, AcqRel) {
        // Killed before it first ran: it never runs. Its closure is dropped here, on the
        // greenlet's own stack, where a destructor that blocks parks like any greenlet code
        // (on the worker's stack it blocked the worker thread) and one that panics is caught.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
        Err(Box::new(crate::cancel::Killed) as Box<dyn std::any::Any + Send>)
    } else {
        catch_unwind(AssertUnwindSafe(f))
    };
    // Greenlet-local values die with the greenlet, on its own stack, before it reports done. A
    // destructor that panics has had its message printed; the greenlet's own result stands.
    let locals = cell.header.local_ptr();
    // SAFETY: the running greenlet alone touches its own local part, and `drop_all` borrows its
    // `locals` field only between destructors.
    unsafe { crate::local::drop_all(|| std::ptr::addr_of_mut!((*locals).locals)) };
    if cell.header.is_detached() {
        // Nobody will take it: drop it now, here, where a `Drop` that blocks parks like any
        // greenlet code (a handle dropped after this check leaves it to `complete`).
        let _ = catch_unwind(AssertUnwindSafe(move || drop(r)));
        return;
    }
    // SAFETY: as above; nobody reads the result before `complete` publishes it.
    unsafe { *cell.result.get() = Some(r) };
}

/// # Safety
/// `h` is the header of a live `TaskCell<F, T>` not yet started.
unsafe fn run_inline<F, T>(h: NonNull<Header>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the caller's promise.
    unsafe { run_body(h.cast::<TaskCell<F, T>>().as_ref()) }
}

/// # Safety
/// `h` is the header of a live `TaskCell<F, T>` that never started.
unsafe fn cancel_unstarted<F, T>(h: NonNull<Header>, payload: Box<dyn std::any::Any + Send>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the caller's promise; nothing else touches the slots of an unstarted task.
    unsafe {
        let cell = h.cast::<TaskCell<F, T>>().as_ref();
        let f = (*cell.start.get()).take();
        // A closure whose captures panic when dropped: the message is printed, the task still
        // ends (on a worker or pool thread, the panic would have ended the thread).
        let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
        *cell.result.get() = Some(Err(payload));
    }
}

/// # Safety
/// `h` is the header of a live, done `TaskCell<F, T>`; `out` points to `Option<thread::Result<T>>`.
unsafe fn take_result<F, T>(h: NonNull<Header>, out: *mut ())
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the caller's promise; `done` (Acquire) published the slot.
    unsafe {
        let cell = h.cast::<TaskCell<F, T>>().as_ref();
        *(out as *mut Option<thread::Result<T>>) = (*cell.result.get()).take();
    }
}

/// # Safety
/// `h` is the header of a live, done `TaskCell<F, T>` whose result nobody else touches, now or
/// later (its `JoinHandle` is gone, or its last reference).
#[inline(never)]
unsafe fn drop_result<F, T>(h: NonNull<Header>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: the caller's promise.
    let result = unsafe { (*h.cast::<TaskCell<F, T>>().as_ref().result.get()).take() };
    let runs_user_code = match &result {
        None => return, // joined: taken already
        Some(Ok(_)) => std::mem::needs_drop::<T>(),
        Some(Err(_)) => true, // a panic payload, any type
    };
    if runs_user_code && crate::sched::context::on_monitor_thread() {
        // The monitor let go of the last reference (a stale timer token, or a token its poll
        // woke): the result's `Drop` is user code, which may block, and the monitor's timers,
        // polls and blocked-worker checks would stop meanwhile. It runs in a greenlet instead
        // (or here, should no greenlet be had).
        drop_in_a_greenlet(Box::new(result));
        return;
    }
    // A result nobody joined (a detached greenlet's), dropped where its handle or its
    // completion is, or the last reference: often a worker thread, where a panicking `Drop` has
    // its message printed and is contained (std aborts the process here), so the thread is not
    // lost with it.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(result))) {
        // A `Drop` that blocked here and was killed: the kill is not lost with the unwind.
        crate::cancel::rearm_caught(&*payload);
    }
}

/// # Safety
/// `h` is the header of a `TaskCell<F, T>` whose last reference is gone.
unsafe fn dealloc<F, T>(h: NonNull<Header>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cell = h.cast::<TaskCell<F, T>>();
    // A result still here (its handle kept it, unjoined, to the end) goes first, as a detached
    // one does.
    // SAFETY: nobody else refers to the cell any more; the borrow ends with the statement.
    if unsafe { (*(*cell.as_ptr()).result.get()).is_some() } {
        // SAFETY: as above.
        unsafe { drop_result::<F, T>(h) };
    }
    // The rest holds user code too (a closure never run): a panicking `Drop` is contained.
    // SAFETY: the cell was written into a block from `task_alloc::alloc` with this layout in
    // `TaskRef::new`, and nobody refers to it any more; it is dropped once, then freed.
    let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
        std::ptr::drop_in_place(cell.as_ptr())
    }));
    // SAFETY: as above.
    unsafe { crate::task_alloc::dealloc(cell.cast(), Layout::new::<TaskCell<F, T>>()) };
    if let Err(payload) = dropped {
        // A `Drop` that blocked here and was killed: the kill is not lost with the unwind.
        crate::cancel::rearm_caught(&*payload);
    }
}

/// Drops `value` in a greenlet of its own (boxed: one instance of `spawn` for every type, where
/// a generic one would instantiate itself for ever through its own cell's `dealloc`).
#[cold]
#[inline(never)]
fn drop_in_a_greenlet(value: Box<dyn Send>) {
    let _ = crate::greenlet::Builder::new().spawn(move || drop(value));
}

/// What a committed park holds of its greenlet (see `park_state::ParkRef`).
impl crate::park_state::ParkRef for TaskRef {
    type Target = Header;

    #[inline]
    fn into_raw(self) -> *mut Header {
        TaskRef::into_raw(self)
    }

    #[inline]
    unsafe fn from_raw(p: *mut Header) -> TaskRef {
        // SAFETY: the caller passes a pointer from `into_raw` whose count it owns.
        unsafe { TaskRef::from_raw(p) }
    }
}
