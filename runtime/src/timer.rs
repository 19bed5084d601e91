//! Timers: one ordered map of deadlines for the whole runtime.
//!
//! A timer is a deadline and the [`Unparker`] of the park it ends. Inserting and cancelling are
//! O(log n) under one short lock; firing pops every due entry and wakes it with
//! [`Wake::TimedOut`] outside the lock. The earliest deadline is mirrored in an atomic so that
//! the hot paths (a busy worker's maintenance tick, an idle worker choosing its poll timeout) can
//! skip the lock when nothing is due.
//!
//! Who fires them: the worker asleep in the poller uses the earliest deadline as its
//! `epoll_wait` timeout; busy workers check every 61 ticks; and the monitor thread checks while
//! workers are busy, so a timer fires on time even when the worker that armed it is blocked.
//!
//! Rejected for now: a hierarchical timing wheel (O(1) insert/cancel) per worker, as tokio has.
//! It is faster at millions of timers, but per-worker wheels strand the timers of a blocked
//! worker, and at the scale measured in docs/benchmarks.md (100k sleepers) the map is not what
//! bounds the figures.

use crate::park::Unparker;
use crate::park_state::Wake;
use crate::sched::Hint;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

/// Identifies an armed timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(u64, u64);

const NONE: u64 = u64::MAX;

/// The runtime's timers.
pub(crate) struct Timers {
    epoch: Instant,
    map: Mutex<(BTreeMap<TimerKey, Unparker>, u64)>,
    /// Earliest armed deadline in ns since `epoch`, or `NONE`.
    next: AtomicU64,
}

impl Timers {
    pub(crate) fn new(epoch: Instant) -> Timers {
        Timers {
            epoch,
            map: Mutex::new((BTreeMap::new(), 0)),
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
        let ns = self.nanos(deadline);
        let mut g = self.map.lock();
        g.1 += 1;
        let key = TimerKey(ns, g.1);
        g.0.insert(key, u);
        let earliest = ns < self.next.load(Relaxed);
        if earliest {
            // SeqCst: pairs with the driver's SeqCst store of its sleep deadline (see driver.rs).
            self.next.store(ns, SeqCst);
        }
        (key, earliest)
    }

    /// Disarms a timer (no effect if it already fired).
    pub(crate) fn cancel(&self, key: TimerKey) {
        let mut g = self.map.lock();
        if g.0.remove(&key).is_some() && key.0 <= self.next.load(Relaxed) {
            let next = g.0.first_key_value().map_or(NONE, |(k, _)| k.0);
            self.next.store(next, SeqCst);
        }
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
        {
            let mut g = self.map.lock();
            while let Some(entry) = g.0.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = g.0.first_key_value().map_or(NONE, |(k, _)| k.0);
            self.next.store(next, SeqCst);
        }
        due.into_iter()
            .filter(|u| u.clone().wake_with(Wake::TimedOut, Hint::Back))
            .count()
    }

    /// Armed timers (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().0.len()
    }
}
