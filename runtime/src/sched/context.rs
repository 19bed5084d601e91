//! The runtime's own thread-locals, read only through accessors the optimiser cannot cache.
//!
//! A greenlet may park on one worker and resume on another. LLVM is allowed to compute a
//! thread-local's address once and keep it across a call (llvm-project#98479), and a context
//! switch looks like an ordinary call to it: code that read `CURRENT` before parking could, after
//! resuming elsewhere, read the *old* worker's slot. Every access therefore goes through a
//! function marked `#[inline(never)]`: each call computes the address afresh on whichever thread
//! it runs on, and nothing in a caller's frame holds a thread-local address across a switch.
//! See docs/tls.md for what this means for users' own thread-locals.

use super::worker::Core;
use crate::task::Header;
use std::cell::Cell;
use std::ptr;

thread_local! {
    /// This thread's worker core, when the thread is a grove worker. The greenlet running on
    /// the worker is recorded in the core itself (`Core::current`), so the worker loop sets it
    /// with a plain store and only greenlet code pays for the thread-local lookup.
    static CURRENT_CORE: Cell<*const Core> = const { Cell::new(ptr::null()) };
    /// The greenlet this thread runs without a core: one that blocked the worker thread in the
    /// middle of an unwind and had the thread's core lent out meanwhile (see `super::lend`).
    /// Null otherwise.
    static ADOPTED: Cell<*const Header> = const { Cell::new(ptr::null()) };
    /// True on the monitor thread.
    static ON_MONITOR: Cell<bool> = const { Cell::new(false) };
}

/// True on the monitor thread, which must not run users' code (see `task::dealloc`).
#[cold]
#[inline(never)]
pub(crate) fn on_monitor_thread() -> bool {
    ON_MONITOR.with(|c| c.get())
}

/// Marks this thread as the monitor.
pub(crate) fn mark_monitor_thread() {
    ON_MONITOR.with(|c| c.set(true))
}

/// The greenlet running on this thread, or null (a plain thread, or the scheduler loop).
#[inline(never)]
pub(crate) fn current_task() -> *const Header {
    let core = CURRENT_CORE.with(|c| c.get());
    if core.is_null() {
        return adopted();
    }
    // SAFETY: a non-null current core is the one this thread holds; cores live as long as the
    // process (a lent one in its worker's frame, which waits for it).
    unsafe { (*core).current() }
}

/// The greenlet this thread runs without a core, or null (off the greenlets' hot path).
#[cold]
#[inline(never)]
fn adopted() -> *const Header {
    ADOPTED.with(|c| c.get())
}

/// Records the greenlet this thread runs without a core (null: none).
#[inline(never)]
pub(crate) fn set_adopted(h: *const Header) {
    ADOPTED.with(|c| c.set(h))
}

/// This worker's core, or null on a thread that is not a grove worker.
#[inline(never)]
pub(crate) fn current_core() -> *const Core {
    CURRENT_CORE.with(|c| c.get())
}

/// Records the core this worker thread runs with.
#[inline(never)]
pub(crate) fn set_current_core(c: *const Core) {
    CURRENT_CORE.with(|cell| cell.set(c))
}

/// Signal-handler read of the current greenlet: plain loads of `const`-initialised
/// thread-locals with no destructor and of the core it points to, which is async-signal-safe.
pub(crate) fn current_task_for_signal() -> *const Header {
    let core = CURRENT_CORE.try_with(|c| c.get()).unwrap_or(ptr::null());
    if core.is_null() {
        return ADOPTED.try_with(|c| c.get()).unwrap_or(ptr::null());
    }
    // SAFETY: as in `current_task`.
    unsafe { (*core).current() }
}
