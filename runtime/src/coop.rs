//! The cooperative budget: how a greenlet whose blocking calls never block still lets others run.
//!
//! # The problem
//!
//! Greenlets switch only when they park. A greenlet whose socket always has data (a fast peer, a
//! deep receive buffer, a client whose server answers before it asks again) finds every read
//! ready, never parks, and keeps its worker: the greenlets queued behind it wait, on a single
//! worker they wait forever, and a `kill` or an expired `timeout` never reaches it, because
//! cancellation is delivered when a blocking call parks. gevent has the same hole: a greenlet that
//! never waits starves the hub.
//!
//! # What grove does
//!
//! Each greenlet carries a budget of [`BUDGET`] units. Every socket operation that finds its
//! socket ready, and so does not park, spends one ([`charge`]); every park refills it. When it
//! runs out, the operation first calls [`crate::yield_now`]: the greenlet goes behind its
//! worker's other runnable greenlets, and, since `yield_now` is a cancellation point, a pending
//! `kill` or `timeout` is delivered there. This is tokio's cooperative budget (128 operations per
//! task poll) carried over to stackful code.
//!
//! Rejected: preemption by signal, as Go does since 1.14. A greenlet may be anywhere in native
//! code, holding a libc lock or half-way through a `malloc`; Go can do it because its compiler
//! records where a goroutine may safely stop, and Rust gives us no such map. The blocking monitor
//! (`GROVE_MAX_BLOCKING_MS`) still reports pure computation that never calls into grove.
//!
//! The cost: one call to read the current greenlet and a decrement per ready operation; a
//! greenlet that parks on every request (the usual server) never reaches the end of its budget.

use crate::sched::context::current_task;
use crate::task::Header;

/// Ready operations a greenlet may make in a row before it yields.
pub const BUDGET: u32 = 128;

/// Spends one unit of the running greenlet's budget, yielding first if it is spent. Nothing on
/// a plain thread (the OS preempts threads). A cancellation point when it yields.
#[inline]
pub fn charge() {
    charge_task(current_task());
}

/// [`charge`] for the greenlet `h` (null: a plain thread), already looked up by the caller.
#[inline]
pub(crate) fn charge_task(h: *const Header) {
    if h.is_null() {
        return;
    }
    // SAFETY: a non-null current task is the greenlet running this code, which alone touches
    // its own local part; this borrows the `budget` field only, and ends before anything else
    // runs.
    let budget = unsafe { &mut (*(*h).local_ptr()).budget };
    if *budget > 1 {
        *budget -= 1;
        return;
    }
    // Refilled before the yield, not only after it: the yield may unwind (a pending `kill`),
    // and the destructors that run then may do I/O and charge again.
    *budget = BUDGET;
    spent();
}

#[cold]
#[inline(never)]
fn spent() {
    // Never switch away in the middle of an unwind: "this thread is panicking" is the worker
    // thread's state, and the greenlet resumed next would inherit it (and with it, skip its
    // own cancellation checks).
    if !std::thread::panicking() {
        crate::yield_now();
    }
}

/// The greenlet `h` gave way (parked or yielded): a full budget again.
#[inline]
pub(crate) fn refill(h: &Header) {
    // SAFETY: called by the running greenlet `h` itself, which alone touches its local part;
    // this writes the `budget` field only.
    unsafe { (*h.local_ptr()).budget = BUDGET };
}
