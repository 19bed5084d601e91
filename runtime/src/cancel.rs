//! Cancellation: `kill` and `timeout`, delivered as unwinds out of blocking calls.
//!
//! gevent cancels a greenlet by raising an exception inside it at its current (or next) switch;
//! grove does the same with a Rust unwind started by [`std::panic::resume_unwind`], which runs
//! every destructor on the way (locks released, wait-list entries removed, sockets closed) and,
//! unlike `panic!`, does not call the panic hook, so nothing is printed.
//!
//! * `kill` sets the greenlet's kill flag and wakes its current park, if any (see
//!   [`crate::park_state`] for how this races with the other wakers). The next park (or
//!   `yield_now`) the greenlet reaches, including the one it is in, unwinds with a [`Killed`]
//!   payload, which `join` returns as its `Err`.
//! * `timeout(d, f)` pushes a *scope* (deadline, id) on the current greenlet's (or thread's) scope
//!   stack and runs `f`. Every park arms its timer for the earliest of its own deadline and the
//!   scopes'; when a scope's deadline is what ended the park, the park unwinds with that scope's
//!   id, and only the `timeout` that pushed that id turns it into `Err(Elapsed)`; any other
//!   `timeout` on the way re-raises it. So with nested timeouts the earliest deadline fires and
//!   only its own `timeout` catches it.
//!
//! A thread that is already unwinding is never made to unwind again (that would abort): its
//! parks report [`crate::Wake::Killed`] / [`crate::Wake::TimedOut`] and return instead. An
//! enclosing `timeout` still bounds such a park (a destructor that receives with a `timeout`
//! around it gets a timeout error, not a wait for ever, and `timeout` then returns
//! `Err(Elapsed)`), but only once per unwind: the scope is marked *reported*, so a wait that
//! cannot fail (a mutex's `lock`, which retries) is not made to spin on an expired deadline.
//! Likewise a scope whose own unwind is under way (*fired*) bounds nothing in that unwind's
//! cleanup. Both marks count only while the thread unwinds: code that catches the unwind and
//! blocks again meets the expired scope again, as it did before any mark.
//!
//! # Shielded sections
//!
//! A few waits must not be cut short, because the code around them has already given something
//! up that it must take back first: a condvar waiter has released the user's mutex and must hold
//! it again before it returns *or* unwinds (its caller's guard says it does). Unwinding out of
//! that re-lock left the caller with a guard for a mutex someone else held; relocking *during*
//! the unwind blocked the worker thread (see "Parking while unwinding" in `park`).
//! [`shielded`] runs such a step with cancellation held back, as Trio's shielded cancel scopes
//! do: its parks ignore the `timeout` scopes (they still honour their own deadlines), and a kill
//! that arrives meanwhile, whether found at a park's entry or waking the park, is taken off the
//! kill flag and noted; the park reports it as [`crate::Wake::Killed`] (the wait queues retry),
//! and when the outermost shielded section ends the note goes back on the flag, so the
//! greenlet's next blocking call unwinds. An expired scope needs no note: it stays on the scope
//! stack and fires at the next park.

use crate::park::try_with_thread_ctx as try_thread_ctx;
use crate::park_state::Wake;
use crate::sched::context::current_task;
use crate::task::Header;
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::{Duration, Instant};

/// The panic payload of a greenlet that was killed: `join` gives `Err(payload)`, and
/// `payload.downcast_ref::<Killed>()` is `Some`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed;

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("greenlet killed")
    }
}

impl std::error::Error for Killed {}

/// `timeout`'s error: the deadline passed while the closure was blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// The unwind payload of an expired `timeout` scope.
struct ScopeExpired(u64);

/// Set in a scope's id once a park has reported its deadline during an unwind (module docs).
const REPORTED: u64 = 1 << 63;
/// Set in a scope's id once its `ScopeExpired` unwind has been started (module docs).
const FIRED: u64 = 1 << 62;
/// The marks; ids count up from 1 and never reach them.
const MARKS: u64 = REPORTED | FIRED;

static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

/// Runs `f`; if `d` passes while `f` is parked in a grove blocking call, that call unwinds back
/// here (destructors run) and `timeout` returns `Err(Elapsed)` (gevent's `with_timeout`).
///
/// Code that never blocks cannot be interrupted: the deadline is noticed at the next blocking
/// call (or `yield_now`). Works in greenlets and on plain threads.
pub fn timeout<T>(d: Duration, f: impl FnOnce() -> T) -> Result<T, Elapsed> {
    let Some(deadline) = Instant::now().checked_add(d) else {
        return Ok(f()); // beyond any representable instant: no deadline
    };
    let id = NEXT_SCOPE.fetch_add(1, Relaxed);
    if with_scopes(|s| s.push((deadline, id))).is_none() {
        // A plain thread's thread-local destructor, after grove's own context was destroyed:
        // no scope stack to bound `f` with.
        return Ok(f());
    }
    let popped = PopScope(id);
    let r = catch_unwind(AssertUnwindSafe(f));
    let marks = popped.pop();
    match r {
        // During an unwind the deadline cut a wait short without unwinding (see the module
        // docs): what `f` made of that error is dropped, as an unwind would have.
        Ok(_) if marks & REPORTED != 0 => Err(Elapsed(())),
        Ok(v) => Ok(v),
        Err(p) if p.downcast_ref::<ScopeExpired>().is_some_and(|s| s.0 == id) => Err(Elapsed(())),
        Err(p) => resume_unwind(p),
    }
}

/// Pops scope `id` however `timeout`'s closure ends.
struct PopScope(u64);

impl PopScope {
    /// Pops the scope now; returns its marks.
    fn pop(self) -> u64 {
        let marks = pop_scope(self.0);
        std::mem::forget(self);
        marks
    }
}

impl Drop for PopScope {
    fn drop(&mut self) {
        pop_scope(self.0);
    }
}

fn pop_scope(id: u64) -> u64 {
    with_scopes(|s| {
        let top = s.pop();
        assert!(
            top.is_some_and(|t| t.1 & !MARKS == id),
            "grove: timeout scopes popped out of order"
        );
        top.map_or(0, |t| t.1 & MARKS)
    })
    .unwrap_or(0)
}

/// Runs `f` on the current greenlet's (or thread's) scope stack; `None` on a plain thread whose
/// grove context is already destroyed (in a thread-local destructor).
fn with_scopes<R>(f: impl FnOnce(&mut Vec<(Instant, u64)>) -> R) -> Option<R> {
    let h = current_task();
    if h.is_null() {
        try_thread_ctx(|c| f(&mut c.scopes.borrow_mut()))
    } else {
        // SAFETY: the running greenlet alone touches its own local part, and `f` (this module's
        // push, pop, look and mark) does nothing that touches the scopes again.
        Some(f(unsafe { &mut (*(*h).local_ptr()).scopes }))
    }
}

/// Sets `mark` on scope `id`.
fn mark_scope(id: u64, mark: u64) {
    let _ = with_scopes(|s| {
        s.iter_mut()
            .filter(|s| s.1 & !MARKS == id)
            .for_each(|s| s.1 |= mark)
    });
}

/// The scope whose deadline a park must honour: the earliest of those at or above `floor` (a
/// shielded section's: the scopes opened inside it), leaving out, during an unwind, those
/// already reported or fired.
fn live_scope(scopes: &[(Instant, u64)], floor: usize) -> Option<(Instant, u64)> {
    let unwinding = std::thread::panicking();
    scopes
        .get(floor..)
        .unwrap_or(&[])
        .iter()
        .copied()
        .filter(|s| !unwinding || s.1 & MARKS == 0)
        .min_by_key(|s| s.0)
        .map(|(d, id)| (d, id & !MARKS))
}

/// The deadline of the `timeout` scope that bounds the next park of the running greenlet (or
/// thread), if any. For a caller that parks with a deadline of its own and must tell, when the
/// park says `TimedOut` during an unwind, whose limit that was: the scope's if its deadline came
/// strictly first (as `resolve_wake` decides, marking the scope reported), else its own. The
/// clock cannot tell: the park wakes late, often after both deadlines.
#[doc(hidden)]
pub fn scope_deadline() -> Option<Instant> {
    live_scope_now().map(|s| s.0)
}

/// The running greenlet's (or thread's) live scope, as its next park would honour it.
fn live_scope_now() -> Option<(Instant, u64)> {
    let (_, floor) = shield_state();
    with_scopes(|s| live_scope(s, floor)).flatten()
}

/// For a caller that timed out without parking, during an unwind, because the `timeout` scope's
/// deadline passed (its own, `own`, came later or not at all): marks that scope reported, as
/// a park ended by it would have (`resolve_wake`), so the unwind's next wait does not report
/// it again. True if it did.
#[doc(hidden)]
pub fn report_expired_scope(own: Option<Instant>) -> bool {
    if !std::thread::panicking() {
        return false;
    }
    match live_scope_now() {
        Some((sd, id)) if sd <= Instant::now() && own.is_none_or(|d| sd < d) => {
            mark_scope(id, REPORTED);
            true
        }
        _ => false,
    }
}

/// Whether the current greenlet (or thread) is in a shielded section, and the index of the
/// first scope its parks honour (the outermost section's floor; 0 when not shielded).
fn shield_state() -> (bool, usize) {
    let h = current_task();
    let (depth, floor) = if h.is_null() {
        try_thread_ctx(|c| (c.shield.get(), c.shield_floor.get())).unwrap_or((0, 0))
    } else {
        // SAFETY: the running greenlet alone touches its own local part, one field at a time.
        unsafe { ((*(*h).local_ptr()).shield, (*(*h).local_ptr()).shield_floor) }
    };
    (depth > 0, if depth > 0 { floor } else { 0 })
}

/// Entry check of every greenlet park: unwinds if killed or if a scope has expired; otherwise
/// returns the earliest scope, whose deadline the park must also honour.
#[inline]
pub(crate) fn check_interrupts_greenlet(h: &Header) -> Option<(Instant, u64)> {
    // SAFETY: the running greenlet alone touches its own local part.
    let no_scopes = unsafe { (*h.local_ptr()).scopes.is_empty() };
    if no_scopes && !h.kill.load(Relaxed) {
        return None; // the common case, inline: nothing pending, nothing to honour
    }
    check_interrupts_greenlet_slow(h)
}

#[cold]
#[inline(never)]
fn check_interrupts_greenlet_slow(h: &Header) -> Option<(Instant, u64)> {
    let (shielded, floor) = shield_state();
    if shielded && h.kill.load(Acquire) && h.kill.swap(false, AcqRel) {
        defer_kill(h);
    }
    // SAFETY: the running greenlet alone touches its own local part, one field at a time.
    let scope = live_scope(unsafe { &(*h.local_ptr()).scopes }, floor);
    if std::thread::panicking() {
        // (`park` sends an unwinding greenlet to `park_thread`; this is for completeness.)
        return scope;
    }
    if h.kill.load(Acquire) && h.kill.swap(false, AcqRel) {
        raise_kill();
    }
    expire_if_due(scope)
}

/// Entry check of every thread park, and of a greenlet's park during an unwind (which blocks
/// its worker thread: see `park`), whose scopes are the greenlet's own.
pub(crate) fn check_interrupts_thread() -> Option<(Instant, u64)> {
    let (shielded, floor) = shield_state();
    let scope = with_scopes(|s| live_scope(s, floor)).flatten();
    if std::thread::panicking() {
        return scope; // a deadline for the park, never a second unwind
    }
    if !shielded {
        raise_if_job_killed();
    }
    expire_if_due(scope)
}

/// True inside a shielded section of the running greenlet or thread.
pub(crate) fn shielded_now() -> bool {
    shield_state().0
}

/// On a blocking-pool thread: unwinds if its job was killed (see `blocking`, "Killing a
/// running job"); the flag is consumed, as a greenlet's is.
fn raise_if_job_killed() {
    let job = crate::blocking::current_job();
    if job.is_null() {
        return;
    }
    // SAFETY: the job this thread runs is alive while it runs (`run_job` holds its task).
    let kill = unsafe { &(*job).kill };
    if kill.load(Acquire) && kill.swap(false, AcqRel) {
        raise_kill();
    }
}

fn expire_if_due(scope: Option<(Instant, u64)>) -> Option<(Instant, u64)> {
    if let Some((d, id)) = scope {
        if Instant::now() >= d {
            fire(id);
        }
    }
    scope
}

/// Starts scope `id`'s unwind.
fn fire(id: u64) -> ! {
    mark_scope(id, FIRED);
    resume_unwind(Box::new(ScopeExpired(id)))
}

/// Turns how a park ended into its result, unwinding for kills and expired scopes. The common
/// case, an ordinary wake-up, is decided inline after every park; the rest out of line.
#[inline(always)]
pub(crate) fn resolve_wake(
    why: Wake,
    deadline: Option<Instant>,
    scope: Option<(Instant, u64)>,
) -> Wake {
    if why == Wake::Unparked {
        return why;
    }
    resolve_interrupted_wake(why, deadline, scope)
}

#[inline(never)]
fn resolve_interrupted_wake(
    why: Wake,
    deadline: Option<Instant>,
    scope: Option<(Instant, u64)>,
) -> Wake {
    match why {
        Wake::Unparked => Wake::Unparked,
        Wake::Killed => {
            let h = current_task();
            if !h.is_null() {
                // SAFETY: the running greenlet's header is alive while it runs.
                let h = unsafe { &*h };
                h.kill.store(false, Relaxed);
                // SAFETY: the running greenlet alone touches its own local part.
                if unsafe { (*h.local_ptr()).shield } > 0 {
                    defer_kill(h);
                    return Wake::Killed;
                }
            } else {
                let job = crate::blocking::current_job();
                // Only a job's park is ended by `kill` on a plain thread; in a shielded section
                // its flag stays set for the first park after it, else it is consumed here.
                if job.is_null() || shielded_now() {
                    return Wake::Killed;
                }
                // SAFETY: as in `raise_if_job_killed`.
                unsafe { (*job).kill.store(false, Relaxed) };
            }
            if std::thread::panicking() {
                Wake::Killed
            } else {
                raise_kill()
            }
        }
        Wake::TimedOut => match scope {
            Some((sd, id)) if deadline.is_none_or(|d| sd < d) => {
                if !std::thread::panicking() {
                    fire(id);
                }
                // Reported once; the scope bounds no more parks of this unwind.
                mark_scope(id, REPORTED);
                Wake::TimedOut
            }
            _ => Wake::TimedOut,
        },
    }
}

/// Runs `f` with cancellation held back (see "Shielded sections" in the module docs): a kill or
/// an expired `timeout` scope takes effect at the first blocking call after `f`, not inside it.
/// For steps that must finish once begun, such as a condvar waiter re-taking its mutex.
#[doc(hidden)]
pub fn shielded<R>(f: impl FnOnce() -> R) -> R {
    let h = current_task();
    let entered = if h.is_null() {
        try_thread_ctx(|c| {
            if c.shield.get() == 0 {
                c.shield_floor.set(c.scopes.borrow().len());
            }
            c.shield.set(c.shield.get() + 1);
        })
        .is_some()
    } else {
        // SAFETY: the running greenlet alone touches its own local part, one field at a time.
        unsafe {
            let local = (*h).local_ptr();
            if (*local).shield == 0 {
                (*local).shield_floor = (*local).scopes.len();
            }
            (*local).shield += 1;
        }
        true
    };
    let _leave = entered.then_some(LeaveShield(h));
    f()
}

/// Ends a shielded section, on return or unwind; the outermost re-arms a deferred kill.
struct LeaveShield(*const Header);

impl Drop for LeaveShield {
    fn drop(&mut self) {
        if self.0.is_null() {
            let _ = try_thread_ctx(|c| c.shield.set(c.shield.get() - 1));
            return;
        }
        // SAFETY: the greenlet that entered the section is the one running it, and alive; it
        // alone touches its own local part, one field at a time.
        unsafe {
            let h = &*self.0;
            let local = h.local_ptr();
            (*local).shield -= 1;
            if (*local).shield == 0 && std::mem::take(&mut (*local).kill_deferred) {
                // Our own flag, read by our own next park (on this thread, or after a move
                // that the park protocol orders).
                h.kill.store(true, Relaxed);
            }
        }
    }
}

/// Notes a kill that arrived inside a shielded section (its flag already taken down).
/// A cancellation of the running greenlet unwound out of a destructor that grove runs under a
/// `catch_unwind` of its own (a finished greenlet's result, dropped with its last reference,
/// which may be deep inside the runtime: the unwind cannot go on from there). Swallowed, a kill
/// was lost: its flag had been taken. It goes back on the flag, so the greenlet's next blocking
/// call delivers it. An expired scope needs nothing: it stays on the scope stack and fires
/// again at the next park.
pub(crate) fn rearm_caught(payload: &(dyn std::any::Any + Send)) {
    if payload.is::<Killed>() && is_cancellation(payload) {
        let h = current_killable();
        // Relaxed: read back by this same greenlet or job (as when a shielded section ends).
        // SAFETY: `is_cancellation` is true for a kill only in a running greenlet or job
        // (non-null `h`), whose header is alive while it runs.
        unsafe { &*h }.kill.store(true, Relaxed);
    }
}

/// Whose kills this thread raises: the greenlet running here, or else the `spawn_blocking` job
/// this pool thread runs (its header's local part is its thread's alone while it runs, as a
/// greenlet's is the greenlet's), or null.
fn current_killable() -> *const Header {
    let h = current_task();
    if h.is_null() {
        crate::blocking::current_job()
    } else {
        h
    }
}

fn defer_kill(h: &Header) {
    // SAFETY: the running greenlet alone touches its own local part, one field at a time.
    unsafe { (*h.local_ptr()).kill_deferred = true };
}

/// True if `payload` is one of grove's own cancellations of the *current* greenlet (a kill the
/// runtime raised here, an expired `timeout`) rather than a panic. Code that turns caught
/// panics into errors (an HTTP 500) must re-raise these, or a `kill` (a server's `stop`) would
/// be swallowed. A `Killed` payload this greenlet did not get from the runtime (a child's,
/// re-raised by `Pool::map` or `resume_unwind`) is an ordinary panic here.
#[doc(hidden)]
pub fn is_cancellation(payload: &(dyn std::any::Any + Send)) -> bool {
    if payload.is::<ScopeExpired>() {
        return true;
    }
    let h = current_killable();
    // SAFETY: the running greenlet (or job) alone touches its own local part, one field at a
    // time.
    payload.is::<Killed>() && !h.is_null() && unsafe { (*(*h).local_ptr()).kill_raised }
}

/// Starts the unwind of a kill delivered to the running greenlet, noting that it was delivered
/// here (see [`is_cancellation`]).
fn raise_kill() -> ! {
    let h = current_killable();
    if !h.is_null() {
        // SAFETY: the running greenlet (or job) alone touches its own local part, one field at
        // a time.
        unsafe { (*(*h).local_ptr()).kill_raised = true };
    }
    resume_unwind(Box::new(Killed))
}
