//! Asymmetric memory fences: a free fence for a hot path, paired with a costly one for a rare path.
//!
//! A Dekker pair (each side stores a flag, fences, then reads the other's flag) needs a full
//! fence on both sides, and on x86 that is a locked instruction on the hot side every time. Linux
//! can move the whole cost to the rare side: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` makes
//! every thread of the process that is running at that moment execute a full memory barrier (the
//! kernel interrupts their CPUs), and a thread that is not running passes through the scheduler,
//! which is a full barrier too. So the hot side needs only a compiler fence, which keeps the
//! compiler from moving its accesses across that point; [`light`] and [`heavy`] are the two halves.
//! (folly's `asymmetricLightBarrier`/`asymmetricHeavyBarrier` and liburcu are built the same way.)
//!
//! The process registers once, when the runtime starts ([`init`]). Where `membarrier` is missing
//! (other systems, kernels before 4.14) or forbidden (a seccomp sandbox), [`available`] is false
//! and both halves are `fence(SeqCst)`: the pair stays correct, and the hot side pays what it
//! paid before (a full fence costs about as much as the locked instruction it would replace).

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(not(target_os = "linux"))]
#[path = "other.rs"]
mod imp;

use std::sync::atomic::{compiler_fence, fence, AtomicBool, Ordering};

/// Set once by [`init`], before any worker starts (the worker threads' spawn publishes it).
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Registers the process for expedited membarriers, if the system offers them. Call before any
/// thread that uses [`available`] starts, and only then: the answer must not change under them.
pub(crate) fn init() {
    if imp::register() {
        AVAILABLE.store(true, Ordering::Relaxed);
    }
}

/// True if [`heavy`] is a real asymmetric fence (and [`light`] costs nothing).
#[inline]
pub(crate) fn available() -> bool {
    AVAILABLE.load(Ordering::Relaxed)
}

/// The hot side's fence: only a barrier to the compiler where [`available`], else a full fence.
#[inline]
pub(crate) fn light() {
    if available() {
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The rare side's fence: returns once every other running thread of the process has executed a
/// full memory barrier (where [`available`]; else a full fence of this thread, which pairs with
/// [`light`]'s).
pub(crate) fn heavy() {
    if available() {
        imp::heavy();
    } else {
        fence(Ordering::SeqCst);
    }
}
