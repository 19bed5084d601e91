//! The public face of greenlets: `spawn`, `Builder`, `JoinHandle`, `current`.
//!
//! Shaped like `std::thread`, so a program moves between the two by changing an import; `kill`
//! and `spawn_blocking` come from gevent.

use crate::park::park;
use crate::park_state::Wake;
use crate::sched::context::{current_core, current_task};
use crate::sched::{runtime, Hint, Shared};
use crate::stack::{self, Stack};
use crate::task::{GreenletId, TaskOpts, TaskRef};
use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Release;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs `f` in a new greenlet and returns its handle. Works from greenlets and plain threads;
/// the runtime starts on first use.
///
/// # Panics
/// If no stack can be had (memory or mappings exhausted), with the message
/// [`Builder::spawn`] would return.
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .unwrap_or_else(|e| panic!("grove: failed to spawn a greenlet: {e}"))
}

/// Greenlet factory, like `std::thread::Builder`.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
    pinned: bool,
}

impl Builder {
    /// A builder with the defaults: no name, `GROVE_STACK_SIZE`, free to move between workers.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the greenlet (shown in panic, overflow and blocking reports).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Stack size in bytes (rounded up to pages, at least 16 KiB). Virtual: pages are committed
    /// as they are touched.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Keeps the greenlet on the worker that first runs it: it is never stolen and always
    /// resumes there. For code that keeps thread-local state across blocking calls (see
    /// docs/tls.md); it gives up load balancing, so use it only where needed.
    pub fn pinned(mut self, pinned: bool) -> Builder {
        self.pinned = pinned;
        self
    }

    /// Spawns the greenlet. Fails with an `io::Error` saying what ran out (address space,
    /// memory mappings) and what to raise, if no stack can be had.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let rt = runtime();
        let size = match self.stack_size {
            None => 0,
            Some(s) if s > crate::config::MAX_STACK_SIZE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "grove: a stack of {s} bytes is more than the largest a greenlet may \
                         have (1 TiB)"
                    ),
                ))
            }
            Some(s) => crate::config::round_to_page(s.max(crate::config::MIN_STACK_SIZE)),
        };
        let stack = reserve_stack(rt, size)?;
        let task = TaskRef::new(
            f,
            rt.next_id(),
            self.name.map(Arc::from),
            TaskOpts {
                pinned: self.pinned,
                stack,
                blocking_job: false,
            },
        );
        let handle = JoinHandle::new(task.clone());
        rt.schedule(task, Hint::Back);
        Ok(handle)
    }
}

/// A dedicated stack for a non-default size; otherwise a reservation of a pool stack, which the
/// greenlet takes when it first runs (see `stack`).
fn reserve_stack(rt: &Shared, size: usize) -> io::Result<Option<Stack>> {
    if size != 0 && size != rt.stacks.stack_size() {
        return stack::map_dedicated(size).map(Some);
    }
    let core = current_core();
    if core.is_null() {
        take_plain_thread_credit(rt)?;
    } else {
        // SAFETY: a non-null current core is the one this thread holds; cores live as long as the
        // process (a lent one in its worker's frame, which waits for it).
        unsafe { &*core }.take_credit(rt)?;
    }
    Ok(None)
}

/// Stack reservations held by a plain thread that spawns (the workers keep theirs in their
/// cores): taken from the pool in batches, so a thread spawning 100,000 greenlets takes the pool's
/// lock once per batch. Whatever is left goes back when the thread exits.
struct PlainCredits(std::cell::Cell<usize>);

impl Drop for PlainCredits {
    fn drop(&mut self) {
        let left = self.0.get();
        if left > 0 {
            if let Some(rt) = crate::sched::try_runtime() {
                rt.stacks.unreserve(left);
            }
        }
    }
}

thread_local! {
    static PLAIN_CREDITS: PlainCredits = const { PlainCredits(std::cell::Cell::new(0)) };
}

/// Gives back the reservations this thread holds for plain-thread spawns: a worker thread that
/// spawned while its core was lent out (see `sched::lend`) keeps no batch for ever.
pub(crate) fn release_plain_credits(rt: &Shared) {
    let left = PLAIN_CREDITS.try_with(|c| c.0.replace(0)).unwrap_or(0);
    if left > 0 {
        rt.stacks.unreserve(left);
    }
}

/// Takes one reservation for a spawn from a plain thread.
#[inline(never)]
fn take_plain_thread_credit(rt: &Shared) -> io::Result<()> {
    let batch = crate::stack::CREDIT_BATCH;
    let have = PLAIN_CREDITS.try_with(|c| c.0.get()).unwrap_or(0);
    if have > 0 {
        PLAIN_CREDITS.with(|c| c.0.set(have - 1));
        return Ok(());
    }
    // A thread being torn down cannot keep credits: reserve just this one.
    let Ok(()) = PLAIN_CREDITS.try_with(|_| ()) else {
        return rt.stacks.reserve(1);
    };
    rt.stacks.reserve(batch)?;
    PLAIN_CREDITS.with(|c| c.0.set(batch - 1));
    Ok(())
}

/// Runs `f` on the blocking pool's OS threads (gevent's threadpool). Joining the handle from a
/// greenlet parks only that greenlet. `kill` works as for a greenlet: a job killed before it
/// starts never runs, and a running one unwinds from its current or next grove blocking call
/// (`sleep`, a lock, a channel, a `join`); code that never blocks runs on to its end.
///
/// # Panics
/// If the pool has no thread and cannot start one.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime();
    let opts = TaskOpts {
        blocking_job: true,
        ..TaskOpts::default()
    };
    let task = TaskRef::new(f, rt.next_id(), None, opts);
    let handle = JoinHandle::new(task.clone());
    rt.blocking
        .submit(task)
        .unwrap_or_else(|e| panic!("grove: cannot start a blocking-pool thread: {e}"));
    handle
}

/// Runs `f` on the blocking pool and waits for it, borrowing from the caller like
/// `std::thread::scope` (for name resolution and other calls that would hold a worker). Parks a
/// greenlet, blocks a thread. If the wait is interrupted (kill, `timeout`), the unwind waits for
/// `f` to finish first (it cannot be stopped), so nothing it borrows dies under it.
pub fn block_in_pool<'a, F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'a,
    T: Send + 'static,
{
    let f: Box<dyn FnOnce() -> T + Send + 'a> = Box::new(f);
    // SAFETY: only the lifetime is extended. The job borrows from our caller's frame; `Scoped`
    // below does not let this function return or unwind before the job has finished.
    let f: Box<dyn FnOnce() -> T + Send + 'static> = unsafe { std::mem::transmute(f) };
    let handle = spawn_blocking_boxed(f);
    struct Scoped(Greenlet);
    impl Drop for Scoped {
        fn drop(&mut self) {
            while !self.0.is_finished() {
                self.0.wait(); // during an unwind, park ignores further cancellation
            }
        }
    }
    let guard = Scoped(handle.greenlet());
    let r = handle.join();
    drop(guard);
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn spawn_blocking_boxed<T: Send + 'static>(
    f: Box<dyn FnOnce() -> T + Send + 'static>,
) -> JoinHandle<T> {
    spawn_blocking(f)
}

/// Owns the right to join a greenlet (or blocking job), like `std::thread::JoinHandle`.
/// Dropping it detaches the greenlet, which runs on; its result is dropped as soon as it
/// finishes (or at once, if it has), as `std::thread`'s is.
pub struct JoinHandle<T> {
    greenlet: Greenlet,
    _result: PhantomData<fn() -> T>,
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        self.greenlet.task.header().detach_result();
    }
}

impl<T> JoinHandle<T> {
    fn new(task: TaskRef) -> JoinHandle<T> {
        JoinHandle {
            greenlet: Greenlet { task },
            _result: PhantomData,
        }
    }

    /// Waits for the greenlet to finish. `Err` holds its panic payload, like std; a killed
    /// greenlet's payload downcasts to [`crate::Killed`].
    pub fn join(self) -> thread::Result<T> {
        // Not detached by our `Drop`: the result is ours to take. Only a wait that unwinds
        // (killed, or a `timeout` around the join) leaves the result to nobody: it detaches.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; the field is moved out once.
        let greenlet = unsafe { std::ptr::read(&this.greenlet) };
        let task = &greenlet.task;
        struct DetachOnUnwind<'a>(&'a crate::task::Header);
        impl Drop for DetachOnUnwind<'_> {
            fn drop(&mut self) {
                self.0.detach_result();
            }
        }
        let unwinding = DetachOnUnwind(task.header());
        let done = wait_done(task, None);
        std::mem::forget(unwinding);
        assert!(done, "grove: join's wait ended before the greenlet did");
        // SAFETY: T is this task's result type (JoinHandle<T> is only made for a task of F -> T)
        // and `wait_done` said the task is done.
        unsafe { task.take_result::<T>() }.expect("grove: greenlet result already taken")
    }

    /// A clonable handle to the same greenlet, for watching or killing it without the result
    /// (what a `Group` keeps of its members).
    pub fn greenlet(&self) -> Greenlet {
        self.greenlet.clone()
    }

    /// True once the greenlet has finished (as [`Greenlet::is_finished`]).
    pub fn is_finished(&self) -> bool {
        self.greenlet.is_finished()
    }

    /// Kills the greenlet (gevent's `kill`; see [`Greenlet::kill`]).
    pub fn kill(&self) {
        self.greenlet.kill();
    }

    /// The greenlet's id.
    pub fn id(&self) -> GreenletId {
        self.greenlet.id()
    }

    /// The greenlet's name, if any.
    pub fn name(&self) -> Option<&str> {
        self.greenlet.name()
    }
}

/// A `JoinHandle` is a [`Greenlet`] reference plus the right to its result: `wait` and
/// `wait_timeout` come from there (and `kill`, `is_finished`, `id` and `name` are also inherent
/// methods, so the contract's path forms such as `JoinHandle::kill(&h)` resolve).
impl<T> std::ops::Deref for JoinHandle<T> {
    type Target = Greenlet;
    fn deref(&self) -> &Greenlet {
        &self.greenlet
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// A clonable reference to a greenlet (or blocking job): wait for it, kill it, ask about it. Its
/// result stays with the [`JoinHandle`].
#[derive(Clone)]
pub struct Greenlet {
    task: TaskRef,
}

impl Greenlet {
    /// Waits until it has finished (parks a greenlet, blocks a thread).
    pub fn wait(&self) {
        wait_done(&self.task, None);
    }

    /// Waits at most `d`; true if it has finished (gevent's `join(timeout)`).
    pub fn wait_timeout(&self, d: Duration) -> bool {
        wait_done(&self.task, Instant::now().checked_add(d))
    }

    /// True once it has finished.
    pub fn is_finished(&self) -> bool {
        self.task.header().is_done()
    }

    /// gevent's `kill`: the greenlet unwinds from its current or next blocking call, running
    /// its destructors, and `join` then gives `Err` with a [`crate::Killed`] payload. A greenlet
    /// killed before it first runs never runs. No effect on a finished greenlet. Does not wait:
    /// `join` (or `wait`) afterwards to wait for it to die.
    pub fn kill(&self) {
        kill_task(&self.task);
    }

    /// Its id.
    pub fn id(&self) -> GreenletId {
        self.task.header().id
    }

    /// Its name, if any.
    pub fn name(&self) -> Option<&str> {
        self.task.header().name.as_deref()
    }
}

impl std::fmt::Debug for Greenlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Greenlet")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("finished", &self.is_finished())
            .finish()
    }
}

fn kill_task(task: &TaskRef) {
    kill_tasks(&[task]);
}

/// Kills every greenlet of `greenlets`, as [`Greenlet::kill`] on each, with one process-wide
/// fence for all of them instead of one each (see `park_state`, "kill": a fence costs 10-20 µs
/// while other threads run). Does not wait for them to die.
pub fn kill_all<'a>(greenlets: impl IntoIterator<Item = &'a Greenlet>) {
    let tasks: Vec<&TaskRef> = greenlets.into_iter().map(|g| &g.task).collect();
    kill_tasks(&tasks);
}

/// Sets each kill flag, fences once, then wakes each greenlet's park in progress (the Dekker
/// pair of `park_state`'s module docs).
fn kill_tasks(tasks: &[&TaskRef]) {
    let mut any = false;
    for t in tasks {
        let h = t.header();
        if !h.is_done() {
            h.kill.store(true, Release);
            any = true;
        }
    }
    if !any {
        return;
    }
    // Pairs with the owner's light fence in `ParkState::commit_unless_killed`.
    crate::asym_fence::heavy();
    for t in tasks {
        let h = t.header();
        if let Some(gen) = h.park.park_to_kill() {
            // SAFETY: `h` stays alive: the caller's handle holds a reference.
            unsafe { crate::park::wake_greenlet(NonNull::from(h), gen, Wake::Killed, Hint::Back) };
        } else if h.is_blocking_job() && !h.is_done() {
            // A `spawn_blocking` job parks through its thread's own slot (see `blocking`); the
            // pool knows which. (A greenlet not parked is running or queued: its flag is enough.)
            crate::sched::runtime().blocking.wake_killed_job(h);
        }
    }
}

/// Parks until `task` is done or `deadline` passes; true if done.
fn wait_done(task: &TaskRef, deadline: Option<Instant>) -> bool {
    let h = task.header();
    // If this wait unwinds (killed, outer timeout), our token must not linger in the list.
    struct Tidy<'a>(&'a crate::task::Header);
    impl Drop for Tidy<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.remove_stale_joiners();
            }
        }
    }
    let _tidy = Tidy(h);
    while !h.is_done() {
        let woke = park(|u| h.add_joiner(u).map(|g| move || drop(g)), deadline);
        if woke == Wake::TimedOut && deadline.is_some() {
            h.remove_stale_joiners();
            return h.is_done();
        }
        // Without a deadline of our own, a `TimedOut` or `Killed` that did not unwind (during
        // an unwind, or shielded: an enclosing `timeout` reported once, a kill deferred) does
        // not mean the greenlet finished: wait on.
        if woke != Wake::Unparked {
            h.remove_stale_joiners();
        }
    }
    true
}

/// A handle to the running greenlet.
#[derive(Clone, Debug)]
pub struct Current {
    id: GreenletId,
    name: Option<Arc<str>>,
}

impl Current {
    /// Its id.
    pub fn id(&self) -> GreenletId {
        self.id
    }

    /// Its name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// The running greenlet; `None` on a plain thread.
pub fn current() -> Option<Current> {
    let h = current_task();
    if h.is_null() {
        return None;
    }
    // SAFETY: the running greenlet's header is alive while it runs.
    let h = unsafe { &*h };
    Some(Current {
        id: h.id,
        name: h.name.clone(),
    })
}

/// Worker threads of the running runtime (starting it if needed).
pub fn workers() -> usize {
    runtime().config.workers
}

/// Worker threads of the runtime if it has started, without starting it (`None` before any
/// greenlet was spawned): for code that plain threads may run too, which must not start
/// worker threads as a side effect.
#[doc(hidden)]
pub fn workers_if_started() -> Option<usize> {
    crate::sched::try_runtime().map(|rt| rt.config.workers)
}
