//! The park/wake state machine shared by greenlets and plain threads.
//!
//! # The problem
//!
//! A greenlet that blocks hands a wake-up token ([`crate::Unparker`]) to whoever may wake it (a
//! lock's wait list, a timer, a socket's waiter slot, `kill`), then switches away. Several of
//! those may try to wake the same park at once (the lock is released just as the timeout fires
//! and `kill` is called); exactly one must win, the others must learn that they lost (so a lock
//! hands its wake-up to the next waiter instead of swallowing it), and a token from an earlier
//! park must never wake a later one.
//!
//! # The states
//!
//! One `AtomicU64` holds `gen << 3 | st`. `gen` counts parks: [`ParkState::prepare`] bumps it,
//! and every token carries the generation it was made for, so a stale token's compare-exchange
//! fails. `st` is one of:
//!
//! * `IDLE`: not waiting (running, or queued to run).
//! * `PREPARED`: tokens for this `gen` are out; the owner is about to switch away (or, on a plain
//!   thread, about to block) but has not finished doing so.
//! * `PARKED`: switched away; a winning waker must put it back on a run queue.
//! * `WOKE_*`: a waker won; the low bits say why (unparked, timed out, killed).
//!
//! # The steps
//!
//! ```text
//!   owner:  IDLE --prepare--> PREPARED --commit (after the switch)--> PARKED
//!   waker:  PREPARED --wake--> WOKE_x   (owner's commit then fails: it runs again at once)
//!   waker:  PARKED   --wake--> WOKE_x   (the waker schedules it)
//!   owner:  WOKE_x --take_wake (on resume)--> IDLE
//! ```
//!
//! Every transition out of `PREPARED`/`PARKED` is a compare-exchange on the full word, so of
//! all the wakers and the owner's own commit exactly one succeeds from each state, and no wake-up
//! is lost: either the waker's CAS lands before the commit (then the commit fails and the owner
//! sees `WOKE_x` and is rescheduled by the committing side), or after it (then the waker sees
//! `PARKED` and schedules the greenlet itself).
//!
//! # Orderings
//!
//! A waker's successful CAS is `AcqRel`: its release half publishes whatever the waker wrote
//! before waking (a value handed over through a channel slot, say), and the owner's `Acquire`
//! load in [`ParkState::take_wake`] pairs with it. The commit CAS is `AcqRel` too: its release
//! half orders the owner's unlock step (run just before it) before any waker that later sees
//! `PARKED` goes on to resume the greenlet on another worker, so that worker sees the stack as
//! the switch left it.
//!
//! # `kill`
//!
//! `kill` is the one waker that does not hold a token: it sets the greenlet's kill flag and then
//! wakes whatever park is current. The flag and this word form a Dekker pair:
//!
//! ```text
//!   owner                                   kill
//!   prepare: store PREPARED                 store flag
//!   ... switch, unlock step ...
//!   light fence  ------ pairs with ------>  heavy fence (`asym_fence`)
//!   load flag: set? wake own park           load word: PREPARED/PARKED? wake that park
//!   commit
//! ```
//!
//! Each side stores, fences, then loads what the other stored, so at least one sees the other:
//! either `kill` finds the park and wakes it, or the owner finds the flag and wakes its own park
//! before committing (its commit then fails and the greenlet runs again at once, to unwind). The
//! owner's fence is free where `membarrier` exists: `kill` pays for both with one
//! `membarrier` call ([`ParkState::commit_unless_killed`], [`ParkState::park_to_kill`]). The
//! owner checks *before* it commits because after a successful commit the greenlet belongs to
//! its park: a waker may resume it elsewhere, and it may finish and be freed, at once.

use crate::asym_fence;
use crate::sync::{AtomicBool, AtomicU64};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

const ST_BITS: u32 = 3;
const ST_MASK: u64 = (1 << ST_BITS) - 1;

const IDLE: u64 = 0;
const PREPARED: u64 = 1;
const PARKED: u64 = 2;
const WOKE_UNPARKED: u64 = 3;
const WOKE_TIMED_OUT: u64 = 4;
const WOKE_KILLED: u64 = 5;

/// Why a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A token's [`crate::Unparker::unpark`] woke it.
    Unparked,
    /// The park's own deadline passed.
    TimedOut,
    /// `kill` woke it (the park primitive turns this into an unwind).
    Killed,
}

impl Wake {
    fn bits(self) -> u64 {
        match self {
            Wake::Unparked => WOKE_UNPARKED,
            Wake::TimedOut => WOKE_TIMED_OUT,
            Wake::Killed => WOKE_KILLED,
        }
    }
}

/// What a successful [`ParkState::wake`] obliges the waker to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeOutcome {
    /// The token was stale or another waker won: nothing was woken.
    Lost,
    /// Won before the owner finished parking; the owner will notice by itself.
    WonEarly,
    /// Won against a parked owner: the waker must make it runnable.
    WonParked,
}

/// A counted reference to a greenlet: what keeps it alive while it is queued or running. A
/// committed park holds one in raw form: the worker that commits gives its reference up to the
/// park ([`ParkState::commit_handing_over`]), and the waker that ends the park takes it back
/// ([`ParkState::wake_reclaiming`]), so tokens need not count. The runtime's is its `TaskRef`;
/// `tests/loom_park.rs` has a counting stand-in that checks each park's reference is given up and
/// taken back exactly once.
pub(crate) trait ParkRef: Sized {
    /// What the raw form points to.
    type Target;
    /// Gives up this reference's count without dropping it; the raw form can take it back.
    fn into_raw(self) -> *mut Self::Target;
    /// Takes back a count given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `p` came from `into_raw` and its count has not been taken back since.
    unsafe fn from_raw(p: *mut Self::Target) -> Self;
}

/// What [`ParkState::wake_reclaiming`] did.
pub(crate) enum Woken<R> {
    /// The token was stale or another waker won.
    Lost,
    /// Won before the owner finished parking; the owner keeps its reference and runs again.
    Early,
    /// Won against a committed park: here is the park's reference, to make the greenlet
    /// runnable with.
    Parked(R),
}

/// The park word of one greenlet or plain thread. See the module docs.
pub struct ParkState(AtomicU64);

impl Default for ParkState {
    fn default() -> Self {
        Self::new()
    }
}

impl ParkState {
    /// A state with no park in progress.
    pub fn new() -> Self {
        ParkState(AtomicU64::new(IDLE))
    }

    /// Owner: start a new park, returning the generation its tokens must carry.
    pub fn prepare(&self) -> u64 {
        // Only the owner changes the generation, so a relaxed read of our own last write is exact.
        let gen = (self.0.load(Relaxed) >> ST_BITS) + 1;
        // Release: with the Acquire load in `wake`, a waker that *read this store* also sees what
        // the owner wrote before preparing. A waker must get the token itself through a channel
        // that synchronises (a lock, the timer heap's mutex, an AcqRel atomic): a Release store
        // only pairs with a load that reads it, so a token smuggled through a Relaxed slot could
        // meet the previous generation here and lose the wake (loom_park's ignored model
        // `token_through_relaxed_channel` shows it). Safe Rust cannot move an `Unparker` to
        // another thread any other way, and every runtime channel (object locks, timers,
        // joiners) synchronises; `kill` reads this word itself.
        self.0.store(gen << ST_BITS | PREPARED, Release);
        gen
    }

    /// Owner, after it has switched away (or, on a plain thread, before it blocks): move
    /// `PREPARED` to `PARKED`. False if a waker got in first; then the owner must run again.
    pub fn commit(&self, gen: u64) -> bool {
        // AcqRel: see the module docs ("Orderings").
        self.0
            .compare_exchange(
                gen << ST_BITS | PREPARED,
                gen << ST_BITS | PARKED,
                AcqRel,
                Acquire,
            )
            .is_ok()
    }

    /// Owner of a greenlet, after the unlock step: the owner's half of the Dekker pair with
    /// `kill` (module docs), then [`commit`](Self::commit). A pending kill ends the park here, so
    /// the commit fails and the greenlet runs again. `kill_flag` is the greenlet's kill flag.
    pub fn commit_unless_killed(&self, gen: u64, kill_flag: &AtomicBool) -> bool {
        // Pairs with the heavy fence in `kill`: the PREPARED store (in `prepare`) is ordered
        // before the flag load below.
        asym_fence::light();
        if kill_flag.load(Relaxed) {
            let _ = self.wake(gen, Wake::Killed);
        }
        self.commit(gen)
    }

    /// The worker's end of a greenlet's park: [`commit_unless_killed`](Self::commit_unless_killed),
    /// and if the greenlet is now parked, `owner` (the worker's reference) goes to the park. From
    /// then on a waker may resume the greenlet elsewhere, and it may finish at once: the caller
    /// must not touch it again. `Err(owner)` if a waker or a kill got in first: the greenlet
    /// runs again at once.
    #[inline]
    pub(crate) fn commit_handing_over<R: ParkRef>(
        &self,
        gen: u64,
        kill_flag: &AtomicBool,
        owner: R,
    ) -> Result<(), R> {
        if self.commit_unless_killed(gen, kill_flag) {
            let _ = owner.into_raw(); // the park holds the count now
            Ok(())
        } else {
            Err(owner)
        }
    }

    /// A waker's end of a greenlet's park: [`wake`](Self::wake), and on a win against a
    /// committed park the reference the worker gave up ([`commit_handing_over`]), taken back from
    /// `greenlet`.
    ///
    /// [`commit_handing_over`]: Self::commit_handing_over
    ///
    /// # Safety
    ///
    /// `greenlet` is the raw form of a reference to the greenlet this word belongs to, and that
    /// greenlet is alive until this call's compare-exchange (the caller's token or handle sees
    /// to it).
    #[inline]
    pub(crate) unsafe fn wake_reclaiming<R: ParkRef>(
        &self,
        gen: u64,
        why: Wake,
        greenlet: *mut R::Target,
    ) -> Woken<R> {
        match self.wake(gen, why) {
            WakeOutcome::Lost => Woken::Lost,
            WakeOutcome::WonEarly => Woken::Early,
            // SAFETY: only a committed park is `PARKED`, its committer gave its count up
            // (`commit_handing_over`), and only the one waker whose CAS ends the park (this one)
            // gets here for it.
            WakeOutcome::WonParked => Woken::Parked(unsafe { R::from_raw(greenlet) }),
        }
    }

    /// Waker: try to end park `gen` for `why`.
    pub fn wake(&self, gen: u64, why: Wake) -> WakeOutcome {
        // The usual case first, with no load before it: the owner is parked. (A failed
        // exchange reads the word as the load would.) AcqRel: as in the loop below.
        let mut cur = match self.0.compare_exchange(
            gen << ST_BITS | PARKED,
            gen << ST_BITS | why.bits(),
            AcqRel,
            Acquire,
        ) {
            Ok(_) => return WakeOutcome::WonParked,
            Err(seen) => seen,
        };
        loop {
            if cur >> ST_BITS != gen {
                return WakeOutcome::Lost;
            }
            let outcome = match cur & ST_MASK {
                PREPARED => WakeOutcome::WonEarly,
                PARKED => WakeOutcome::WonParked,
                _ => return WakeOutcome::Lost,
            };
            // AcqRel: the release half publishes the waker's hand-off to the owner's Acquire in
            // `take_wake`; the acquire half pairs with `commit`'s release (see module docs).
            match self
                .0
                .compare_exchange(cur, gen << ST_BITS | why.bits(), AcqRel, Acquire)
            {
                Ok(_) => return outcome,
                Err(seen) => cur = seen,
            }
        }
    }

    /// `kill`'s side of the Dekker pair: the generation of the park in progress, if any. The
    /// caller stored the kill flag and then called `asym_fence::heavy()` (once for a batch of
    /// kills), which pairs with the owner's light fence in
    /// [`commit_unless_killed`](Self::commit_unless_killed).
    pub fn park_to_kill(&self) -> Option<u64> {
        let cur = self.0.load(Acquire);
        matches!(cur & ST_MASK, PREPARED | PARKED).then_some(cur >> ST_BITS)
    }

    /// Owner, on resuming: why the park ended, and back to `IDLE`. `None` if nobody woke it
    /// (only possible on a plain thread that times out by itself: it then claims the timeout).
    pub fn take_wake(&self, gen: u64) -> Option<Wake> {
        // Acquire: pairs with the winning waker's AcqRel CAS in `wake`.
        let cur = self.0.load(Acquire);
        assert_eq!(
            cur >> ST_BITS,
            gen,
            "grove: park generation changed under a parked owner"
        );
        let why = match cur & ST_MASK {
            WOKE_UNPARKED => Wake::Unparked,
            WOKE_TIMED_OUT => Wake::TimedOut,
            WOKE_KILLED => Wake::Killed,
            _ => return None,
        };
        self.0.store(gen << ST_BITS | IDLE, Relaxed);
        Some(why)
    }

    /// True while a park of generation `gen` is still waiting (not yet woken).
    pub fn is_waiting(&self, gen: u64) -> bool {
        let cur = self.0.load(Acquire);
        cur >> ST_BITS == gen && matches!(cur & ST_MASK, PREPARED | PARKED)
    }
}
