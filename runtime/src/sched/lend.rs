//! Lending a worker's core to a stand-in thread while one of its greenlets blocks the worker's
//! thread in the middle of an unwind (Go's `handoffp` when a goroutine enters a syscall).
//!
//! # Why
//!
//! A greenlet whose destructor blocks while it unwinds (a `recv`, a `lock`, a `join` in a
//! `Drop`) cannot switch away: "this thread is panicking" is the OS thread's state, and the next
//! greenlet on that thread would inherit it (see "Parking while unwinding" in `park`). So it
//! blocks its worker thread, as a plain thread would. Before this module, the worker's core (its
//! run queue, its `runnext`, the right to run greenlets) stayed with that blocked thread: other
//! workers stole its queue once the monitor saw it blocked, but with `GROVE_WORKERS=1` nobody
//! could, and a destructor waiting for a greenlet of the same worker deadlocked.
//!
//! # What happens
//!
//! Just before it blocks, the greenlet lends its thread's core to a fresh *stand-in* thread,
//! which runs the worker loop with it meanwhile. The blocked thread keeps running the greenlet
//! without a core: the greenlet is *adopted* (`context::set_adopted`), so `current()`, its
//! locals, `timeout` and `kill` still see it, while everything that needs a core (a spawn, a
//! wake-up) takes a plain thread's path through the global queue. When the greenlet next
//! switches out (its unwind over; or it finished), the thread handles that switch without a core
//! too (the global queue, the global stack pool), asks for the core back and waits until the
//! stand-in gives it back between two greenlets. The stand-in thread then ends.
//!
//! The scheduler loop itself lends its core the same way when it blocks: a finished, detached
//! greenlet's result is dropped wherever its last reference goes, often in the worker loop
//! between two greenlets (or a stale timer token holds that reference), and its `Drop` is user
//! code that may block (join a greenlet, receive). The loop's thread then blocks as a plain
//! thread does, and without a stand-in the greenlets of its core, its `runnext` included (which
//! only the monitor's "blocked" mark lets others take, and the monitor marks only a running
//! greenlet), waited for it: for ever, if the `Drop` waited for one of them. No greenlet is
//! adopted there, and the thread asks for the core back as soon as its wait is over, before it
//! returns into the loop ([`take_back`]).
//!
//! A stand-in can lend the core on in turn (its own greenlet blocks mid-unwind): lenders form a
//! stack by *depth* (the worker thread is depth 0, its stand-in 1, ...). The holder at depth
//! `d + 1` gives the core back only when the lender at depth `d` asks (bit `d` of `want_back`),
//! so a core always goes back to the thread it came from, and an outer lender that wants it back
//! first waits until the inner lends have unwound.
//!
//! # Pinned greenlets
//!
//! A greenlet pinned to a worker was promised one OS thread for its whole life (its
//! `thread_local!` references stay valid). A stand-in therefore leaves the core's pinned inbox
//! alone, and a greenlet that would pin itself to the core on its first run goes to that inbox
//! unrun: they run when the core is back on its own thread. (So a destructor that waits for a
//! greenlet pinned to its own worker still waits for ever; the docs say so.)
//!
//! Rejected: giving the core to the stand-in for good and letting the old thread go (simpler,
//! but a pinned greenlet would then move threads); keeping spare threads around (a lend is rare,
//! and a thread start is cheap next to an unwind whose destructor blocks).

use super::context::{current_core, set_adopted, set_current_core};
use super::worker::{self, Core};
use super::{runtime, Shared};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};

/// Deepest lend: the stand-in at this depth keeps the core however its greenlets block.
const MAX_DEPTH: u32 = 63;

/// A core's lending state (one per worker, in its `Remote`).
pub(crate) struct Lending {
    /// Depth of the thread that holds the core now (0: its own worker thread).
    holder: Mutex<u32>,
    /// Signalled when a stand-in gives the core back.
    given_back: Condvar,
    /// Bit `d`: the lender at depth `d` wants its core back. Read by the holder at depth `d + 1`
    /// on every turn of its loop, without the lock.
    want_back: AtomicU64,
    /// A stand-in holds the core (a hint for other stand-ins, see [`a_core_not_lent`]).
    lent: AtomicBool,
}

impl Lending {
    pub(crate) fn new() -> Lending {
        Lending {
            holder: Mutex::new(0),
            given_back: Condvar::new(),
            want_back: AtomicU64::new(0),
            lent: AtomicBool::new(false),
        }
    }

    /// True if the lender of the holder at `depth` (> 0) wants the core back.
    #[inline]
    pub(crate) fn asked_back(&self, depth: u32) -> bool {
        // Acquire: pairs with the Release `fetch_or` in `reclaim`.
        self.want_back.load(Acquire) & (1 << (depth - 1)) != 0
    }
}

/// A core the scheduler loop lent while it blocked, to take back once the wait is over.
#[must_use = "the core must be taken back (`take_back`) before the loop goes on"]
pub(crate) struct LentFromLoop {
    core: *const Core,
    depth: u32,
}

/// Called by a thread about to block while it holds a worker's core: a greenlet mid-unwind, or
/// the scheduler loop itself (a result's `Drop`, see the module docs). Lends the thread's core to
/// a stand-in thread. For the loop, returns what [`take_back`] needs once the wait is over; a
/// greenlet takes its core back when it switches out. Nothing on a plain thread, on a thread
/// whose core is already lent, or if no thread can be started (the thread then holds the core
/// while it blocks, as before).
pub(crate) fn lend_core_while_blocked() -> Option<LentFromLoop> {
    let core = current_core();
    if core.is_null() {
        return None;
    }
    // SAFETY: a non-null current core is this worker's own, and this thread holds it.
    let core = unsafe { &*core };
    let h = core.current();
    let depth = core.lend_depth();
    if depth >= MAX_DEPTH {
        return None;
    }
    let shared = runtime();
    let remote = core.remote(shared);
    if !h.is_null() {
        // Stop being the core's runner before anyone else may be; this thread runs the
        // greenlet without a core from here (also for the overflow handler, should the spawn
        // overflow).
        core.set_current(std::ptr::null());
        remote.run.end();
        set_adopted(h);
    }
    set_current_core(std::ptr::null());
    *remote.lending.holder.lock() = depth + 1;
    remote.lending.lent.store(true, Relaxed);
    let addr = CoreAddr(core as *const Core);
    let started = std::thread::Builder::new()
        .name(format!("grove-worker-{}.{}", core.index(), depth + 1))
        .spawn(move || stand_in(shared, addr, depth + 1));
    if started.is_err() {
        // No stand-in exists: the core is still ours alone.
        remote.lending.lent.store(depth > 0, Relaxed);
        *remote.lending.holder.lock() = depth;
        set_current_core(core);
        if !h.is_null() {
            set_adopted(std::ptr::null());
            core.set_current(h);
            // SAFETY: `h` is the greenlet running this code, alive while it runs.
            remote.run.begin(unsafe { &*h });
        }
        return None;
    }
    // From here on the stand-in holds the core: this thread touches it again only in `reclaim`.
    if h.is_null() {
        return Some(LentFromLoop { core, depth });
    }
    // SAFETY: `h` is the greenlet running this code, which alone touches its own local part.
    unsafe { (*(*h).local_ptr()).lent_at = depth + 1 };
    None
}

/// The scheduler loop's wait is over: takes its lent core back (waiting for the stand-in to
/// give it back between two greenlets) before the loop goes on with it.
#[cold]
pub(crate) fn take_back(lent: LentFromLoop) {
    // SAFETY: the core lives in this thread's worker frame (or, on a stand-in, in its lender's,
    // which waits for this one), suspended in this very call: it outlives the lend.
    let core = unsafe { &*lent.core };
    reclaim(runtime(), core, lent.depth);
}

/// A core's address, moved to its stand-in thread.
struct CoreAddr(*const Core);

// SAFETY: the lender stops touching the core before the stand-in starts (thread start is the
// hand-over), and takes it back only after the stand-in is done with it (`holder`'s lock).
unsafe impl Send for CoreAddr {}

/// A stand-in thread's body: run the worker loop with a lent core until its lender asks for it
/// back, then give it back.
fn stand_in(shared: &'static Shared, addr: CoreAddr, depth: u32) {
    // SAFETY: the core lives in its worker thread's `run` frame, which cannot end while the core
    // is lent (that thread waits in `reclaim` for it); this thread alone uses it until then.
    let core = unsafe { &*addr.0 };
    core.set_lend_depth(depth);
    set_current_core(core);
    let altstack = crate::overflow::ensure_altstack();
    worker::run_lent(shared, core);
    drop(altstack);
    set_current_core(std::ptr::null());
    let lending = &core.remote(shared).lending;
    let mut holder = lending.holder.lock();
    // Clear the request before giving back: the next lend from that depth starts clean.
    lending.want_back.fetch_and(!(1 << (depth - 1)), Release);
    lending.lent.store(depth > 1, Relaxed);
    *holder = depth - 1;
    lending.given_back.notify_all();
}

/// The lender at `depth`, once the greenlet that lent its core has switched out: asks for the
/// core back and waits until its stand-in gives it back, then runs with it again.
#[cold]
pub(crate) fn reclaim(shared: &Shared, core: &Core, depth: u32) {
    let lending = &core.remote(shared).lending;
    // Release: pairs with the holder's Acquire load in `asked_back`.
    lending.want_back.fetch_or(1 << depth, Release);
    // Plain-thread spawns made meanwhile took a batch of stack reservations: give back the rest.
    crate::greenlet::release_plain_credits(shared);
    // The holder may be asleep: wake it to see the request (a spurious wake-up if it is awake).
    shared.unpark_worker(core.index());
    let mut holder = lending.holder.lock();
    while *holder != depth {
        lending.given_back.wait(&mut holder);
    }
    drop(holder);
    set_adopted(std::ptr::null());
    core.set_lend_depth(depth);
    set_current_core(core);
}

/// A core other than `index` held by its own thread, if any: where a greenlet that pins itself
/// on its first run should go rather than wait for a lent core (see `worker::start_task`).
pub(crate) fn a_core_not_lent(shared: &Shared, index: usize) -> Option<usize> {
    (0..shared.remotes.len()).find(|&i| i != index && !shared.remotes[i].lending.lent.load(Relaxed))
}
