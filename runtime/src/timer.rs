//! Timers: one binary heap of deadlines for the whole runtime.
//!
//! A timer is a deadline and the [`Unparker`] of the park it ends. Inserting is O(log n) into a
//! contiguous heap under one short lock, with no allocation; firing pops every due entry and wakes
//! it with [`Wake::TimedOut`] outside the lock. The earliest deadline is mirrored in an atomic so
//! that the hot paths (a busy worker's maintenance tick, an idle worker choosing its poll
//! timeout) skip the lock when nothing is due.
//!
//! Cancelling is lazy: a token whose park has ended is *stale* (its generation no longer
//! matches), so firing it is a harmless no-op and `cancel` only counts it. When stale entries
//! outnumber live ones the heap is rebuilt without them, so a program that arms and cancels
//! millions of socket timeouts keeps the heap near its live size at O(1) amortised cost.
//!
//! Who fires them: the worker asleep in the poller uses the earliest deadline as its
//! `epoll_wait` timeout; busy workers check every 8 ticks; and the monitor thread checks while
//! workers are busy, so a timer fires on time even when the worker that armed it is blocked.
//!
//! Rejected: a `BTreeMap` (what this was first: ~800 instructions per insert+remove at 100k
//! timers, with node allocations and memmoves, measured with callgrind), and per-worker
//! hierarchical timing wheels as tokio has (O(1), but a blocked worker strands its timers, and
//! at the scales in docs/benchmarks.md the heap is not what bounds the figures).

use crate::park::Unparker;
use crate::park_state::Wake;
use crate::sched::Hint;
use parking_lot::Mutex;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

thread_local! {
    /// The empty list of this thread's last compaction, kept for its capacity.
    static GRAVE: Cell<Vec<Entry>> = const { Cell::new(Vec::new()) };
}

/// This thread's spare list (see `Timers::compact`), taken.
#[inline(never)]
fn take_grave() -> Vec<Entry> {
    GRAVE.try_with(Cell::take).unwrap_or_default()
}

/// Gives this thread its spare list back (on the thread running now, which may not be the one
/// `take_grave` ran on).
#[inline(never)]
fn put_grave(dead: Vec<Entry>) {
    let _ = GRAVE.try_with(|g| g.set(dead));
}

/// Identifies an armed timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey(u64);

const NONE: u64 = u64::MAX;

struct Entry {
    at: u64,
    token: Unparker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at) // min-heap on the deadline
    }
}

struct Heap {
    entries: BinaryHeap<Entry>,
    /// Entries cancelled but still in the heap.
    stale: usize,
}

/// The runtime's timers.
pub(crate) struct Timers {
    epoch: Instant,
    heap: Mutex<Heap>,
    /// Earliest armed deadline in ns since `epoch`, or `NONE`.
    next: AtomicU64,
}

impl Timers {
    pub(crate) fn new(epoch: Instant) -> Timers {
        Timers {
            epoch,
            heap: Mutex::new(Heap {
                entries: BinaryHeap::new(),
                stale: 0,
            }),
            next: AtomicU64::new(NONE),
        }
    }

    /// Nanoseconds from the epoch to `t` (0 before it).
    pub(crate) fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(NONE as u128 - 1) as u64
    }

    /// Arms a timer that wakes `u` with `TimedOut` at `deadline`. Returns its key and whether it
    /// became the earliest (then whoever sleeps until the old earliest must be woken).
    pub(crate) fn insert(&self, deadline: Instant, u: Unparker) -> (TimerKey, bool) {
        let at = self.nanos(deadline);
        let mut h = self.heap.lock();
        h.entries.push(Entry { at, token: u });
        let earliest = at < self.next.load(Relaxed);
        if earliest {
            // SeqCst: pairs with the driver's SeqCst store of its sleep deadline (see driver.rs).
            self.next.store(at, SeqCst);
        }
        (TimerKey(at), earliest)
    }

    /// Disarms a timer whose park ended another way. Its entry is stale from that moment (the
    /// park generation moved on); this only counts it, and compacts the heap when stale entries
    /// are the majority.
    pub(crate) fn cancel(&self, _key: TimerKey) {
        let mut h = self.heap.lock();
        h.stale += 1;
        if h.stale > 64 && h.stale * 2 > h.entries.len() {
            self.compact(h);
        }
    }

    /// Rebuilds the heap without its stale entries, which are dropped after the lock is
    /// released: a stale token may hold the last reference to a finished greenlet, whose
    /// result's `Drop` (user code) then runs there and may arm a timer itself. They go through
    /// a list this thread keeps, so a compaction allocates nothing once warm (partitioning into
    /// fresh vectors cost ~60 instructions per HTTP request, amortised, in callgrind).
    /// The list is taken from and put back into the thread-local `GRAVE` through accessors of
    /// their own that are never inlined: the drops between the two may park (a result's `Drop`
    /// that sleeps or locks) and resume on another thread, and one function holding both
    /// accesses kept the first thread's `GRAVE` address across that switch and wrote there
    /// (a SIGSEGV once that thread, a stand-in, had exited; found by a review; docs/tls.md).
    #[cold]
    #[inline(never)]
    fn compact(&self, mut h: parking_lot::MutexGuard<'_, Heap>) {
        let mut dead = take_grave();
        let mut entries = std::mem::take(&mut h.entries).into_vec();
        // Order does not matter (the heap is rebuilt), so a stale entry is swapped out.
        let mut i = 0;
        while i < entries.len() {
            if entries[i].token.is_waiting() {
                i += 1;
            } else {
                dead.push(entries.swap_remove(i));
            }
        }
        h.entries = entries.into();
        h.stale = 0;
        let next = h.entries.peek().map_or(NONE, |e| e.at);
        self.next.store(next, SeqCst);
        drop(h);
        dead.clear(); // may park: see above
        put_grave(dead);
    }

    /// True if any timer is armed.
    pub(crate) fn has_timers(&self) -> bool {
        self.next.load(Relaxed) != NONE
    }

    /// The earliest deadline, in ns since the epoch.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let n = self.next.load(SeqCst);
        (n != NONE).then_some(n)
    }

    /// Wakes every timer due at `now` (ns since epoch); returns how many parks it ended.
    pub(crate) fn fire_due(&self, now: u64) -> usize {
        if self.next.load(Relaxed) > now {
            return 0;
        }
        let mut due = Vec::new();
        let mut stale = Vec::new();
        {
            let mut h = self.heap.lock();
            while h.entries.peek().is_some_and(|e| e.at <= now) {
                let token = h.entries.pop().expect("grove: peeked timer vanished").token;
                if token.is_waiting() {
                    due.push(token);
                } else {
                    h.stale = h.stale.saturating_sub(1);
                    stale.push(token);
                }
            }
            let next = h.entries.peek().map_or(NONE, |e| e.at);
            self.next.store(next, SeqCst);
        }
        // Outside the lock, as in `cancel`.
        drop(stale);
        due.into_iter()
            .map(|u| u.wake_with(Wake::TimedOut, Hint::Back))
            .filter(|&won| won)
            .count()
    }

    /// Entries in the heap, stale ones included (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.heap.lock().entries.len()
    }
}
