//! A worker's `runnext` slot: exchanged by its owner without a read-modify-write, stolen rarely.
//!
//! # Why
//!
//! Every wake-up by a greenlet goes through this slot twice: the waker's `schedule` puts the
//! woken greenlet in (displacing whatever was there), and the worker takes it out when the waker
//! switches away. As an `AtomicPtr::swap` each of those is a locked instruction, ~5.6 ns here,
//! which is a tenth of a channel round trip between two greenlets. Yet the owner is almost always
//! alone with its slot: other workers take from it only when the blocking monitor has seen the
//! owner hold one greenlet for long (`Remote::blocked`), so that what it queued does not wait for
//! it.
//!
//! # The protocol (an asymmetric Dekker pair)
//!
//! The owner brackets each exchange with a flag, `owner_busy`, and checks for a thief in between;
//! a thief announces itself in `thief`, then waits until the owner is outside an exchange:
//!
//! ```text
//!   owner (replace)                          thief (steal)
//!   owner_busy = true                        thief = true       (swap: one thief at a time)
//!   light fence  ------- pairs with ------>  heavy fence
//!   if thief: owner_busy = false, swap       while owner_busy: spin
//!   else: old = load; store(new)             p = swap(null)
//!   owner_busy = false (Release)  -------->  (Acquire load of owner_busy above)
//!                                            thief = false (Release)
//! ```
//!
//! The light fence is a compiler fence: no instruction at all. The heavy fence is
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which makes every other running thread of the
//! process execute a full memory barrier before it returns (see `asym_fence`). That barrier lands
//! somewhere in the owner's instruction stream: if it lands after the owner's `owner_busy = true`,
//! that store is visible to the thief once the fence returns, and the thief waits for the
//! exchange to end (the Release store of `false` then hands it the owner's slot write); if it
//! lands before, the owner's later load of `thief` sees `true` (the thief's store preceded the
//! fence) and the owner uses a real swap, which is safe against the thief's swap. Either way the
//! two never exchange the slot with plain accesses at the same time, and no greenlet is taken
//! twice or lost. Where the kernel has no `membarrier` (or a sandbox forbids it), both fences are
//! `fence(SeqCst)`: a symmetric Dekker pair, where the owner's fence costs about what the swap did.
//!
//! The monitor and the idle checks only look at the slot (`looks_empty`, an Acquire load) to
//! decide whether to look further; taking from it always goes through the swaps above.
//!
//! `tests/loom_runnext.rs` model-checks this file with both fences as `SeqCst` fences (what
//! `membarrier` guarantees each side, in effect).
//!
//! Rejected: a plain `Cell` the monitor cannot reach (a blocked worker would strand the greenlet
//! it had queued to run next: the blocked-worker tests catch that), and a compare-exchange on
//! each side (Go's `runnext`): as costly as the swap.

use crate::asym_fence;
use crate::sync::{spin_loop, AtomicBool, AtomicPtr};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// One greenlet pointer (`TaskRef::into_raw`), or null.
pub(crate) struct RunNext<T> {
    slot: AtomicPtr<T>,
    /// The owner is inside [`RunNext::replace`].
    owner_busy: AtomicBool,
    /// A thief is inside [`RunNext::steal`].
    thief: AtomicBool,
}

impl<T> RunNext<T> {
    pub(crate) fn new() -> RunNext<T> {
        RunNext {
            slot: AtomicPtr::new(std::ptr::null_mut()),
            owner_busy: AtomicBool::new(false),
            thief: AtomicBool::new(false),
        }
    }

    /// Owner only: puts `new` (may be null) in the slot and returns what was there.
    #[inline]
    pub(crate) fn replace(&self, new: *mut T) -> *mut T {
        self.owner_busy.store(true, Relaxed);
        // Pairs with the thief's heavy fence (module docs).
        asym_fence::light();
        // Acquire: pairs with the thief's Release store of `false`, so a steal that ended is
        // seen whole (the slot it emptied included).
        if self.thief.load(Acquire) {
            self.owner_busy.store(false, Release);
            // AcqRel: pairs with the thief's swap.
            return self.slot.swap(new, AcqRel);
        }
        // Only the owner stores non-null values, and no thief is exchanging now: plain accesses.
        let old = self.slot.load(Relaxed);
        self.slot.store(new, Relaxed);
        // Release: pairs with the thief's Acquire load of `owner_busy`, handing it this store.
        self.owner_busy.store(false, Release);
        old
    }

    /// Owner only: takes the slot's content.
    #[inline]
    pub(crate) fn take(&self) -> *mut T {
        self.replace(std::ptr::null_mut())
    }

    /// True if the slot looks empty (a hint: it may change at once).
    #[inline]
    pub(crate) fn looks_empty(&self) -> bool {
        self.slot.load(Acquire).is_null()
    }

    /// Another thread: takes the slot's content, or null (empty, or another thief is at it).
    pub(crate) fn steal(&self) -> *mut T {
        // Acquire: pairs with the previous thief's Release store of `false`.
        if self.thief.swap(true, Acquire) {
            return std::ptr::null_mut();
        }
        // Pairs with the owner's light fence (module docs).
        asym_fence::heavy();
        // Acquire: pairs with the owner's Release store of `false` in `replace`.
        while self.owner_busy.load(Acquire) {
            spin_loop();
        }
        let p = self.slot.swap(std::ptr::null_mut(), AcqRel);
        // Release: pairs with the owner's Acquire load of `thief` in `replace`.
        self.thief.store(false, Release);
        p
    }
}
