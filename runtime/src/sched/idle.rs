//! Which workers sleep, and who wakes one when work appears.
//!
//! # Design
//!
//! One word counts the workers that are *unparked* (not asleep) and, of those, the ones
//! *searching* (awake with no work, looking through the other queues). A list under a mutex
//! names the sleepers. The rules follow Go's `wakep`/`resetspinning` and tokio's `Idle`:
//!
//! * A producer that made work stealable (pushed to its deque, the injector, a pinned inbox)
//!   calls [`Idle::worker_to_notify`]: if some worker is searching, that one will find it, so
//!   nobody is woken; otherwise one sleeper is woken and *counted as searching before it even
//!   runs*, which stops a burst of pushes from waking every worker at once (the thundering herd).
//! * A searching worker that finds work stops searching; if it was the last searcher it wakes
//!   another ([`Idle::end_searching`] returns true), so work that arrived while it was busy
//!   stealing still has someone looking for it.
//! * At most half the workers search at once ([`Idle::try_begin_searching`]): beyond that,
//!   spinning workers only burn CPU that the runnable greenlets could use.
//! * A worker with nothing to do registers as a sleeper ([`Idle::transition_to_parked`]) and then
//!   *re-checks every queue* before it really sleeps.
//!
//! # Why no wake-up is lost
//!
//! Producer: push work; `fence(SeqCst)`; read the count. Sleeper: count itself out (a `SeqCst`
//! read-modify-write, under the sleepers lock); read the queues. Both sides run a `SeqCst`
//! operation between their write and their read, so at least one sees the other: either the
//! producer sees the sleeper gone and wakes someone, or the sleeper's re-check sees the work.
//! The re-check covers every queue a searcher may take from, a blocked worker's `runnext`
//! included (the monitor's notify for it is the producer here; `tests/loom_monitor.rs`).
//! A sleeper chosen to be woken may already be on its way to sleep: its [`super::parker`]
//! keeps the notification as a token, so the sleep that follows returns at once.

use crate::sync::{fence, AtomicUsize, Mutex};
use std::sync::atomic::Ordering::SeqCst;

const SEARCH_SHIFT: u32 = 16;
const UNPARKED_MASK: usize = (1 << SEARCH_SHIFT) - 1;

/// Counts of awake and searching workers, and the list of sleepers.
pub struct Idle {
    state: AtomicUsize,
    sleepers: Mutex<Vec<usize>>,
    num_workers: usize,
}

impl Idle {
    /// All `num_workers` start awake and not searching.
    pub fn new(num_workers: usize) -> Idle {
        assert!(
            num_workers < UNPARKED_MASK,
            "grove: too many workers for the idle counters"
        );
        Idle {
            state: AtomicUsize::new(num_workers),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    fn searching(state: usize) -> usize {
        state >> SEARCH_SHIFT
    }

    fn unparked(state: usize) -> usize {
        state & UNPARKED_MASK
    }

    /// Producer side, after pushing stealable work: the index of a sleeper to wake, if one
    /// should be woken. The caller must then unpark that worker.
    pub fn worker_to_notify(&self) -> Option<usize> {
        // SeqCst fence: pairs with the RMW in `transition_to_parked` (see module docs).
        fence(SeqCst);
        if !self.should_notify(self.state.load(SeqCst)) {
            return None;
        }
        let mut sleepers = self.sleepers.lock().unwrap();
        if !self.should_notify(self.state.load(SeqCst)) {
            return None;
        }
        let idx = sleepers.pop()?;
        // The woken worker starts out searching, counted before it runs.
        self.state.fetch_add(1 << SEARCH_SHIFT | 1, SeqCst);
        Some(idx)
    }

    fn should_notify(&self, state: usize) -> bool {
        Self::searching(state) == 0 && Self::unparked(state) < self.num_workers
    }

    /// Wakes worker `idx` in particular (its pinned inbox got work). True if it was asleep and
    /// the caller must unpark it; false if it is awake (it will see the work by itself).
    pub fn claim_sleeper(&self, idx: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        match sleepers.iter().position(|&i| i == idx) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.state.fetch_add(1 << SEARCH_SHIFT | 1, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Wakes some sleeper whatever the counts say (the monitor, after it held the driver while
    /// every worker went to sleep: one of them must take the driver back). The index to unpark.
    pub fn claim_any_sleeper(&self) -> Option<usize> {
        let mut sleepers = self.sleepers.lock().unwrap();
        let idx = sleepers.pop()?;
        self.state.fetch_add(1 << SEARCH_SHIFT | 1, SeqCst);
        Some(idx)
    }

    /// A worker out of work asks to search the other queues. False when enough already do.
    pub fn try_begin_searching(&self) -> bool {
        let state = self.state.load(SeqCst);
        if 2 * Self::searching(state) >= self.num_workers {
            return false;
        }
        self.state.fetch_add(1 << SEARCH_SHIFT, SeqCst);
        true
    }

    /// A searching worker found work. True if it was the last searcher: the caller must then
    /// notify another worker (work may have arrived that nobody is looking for).
    pub fn end_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1 << SEARCH_SHIFT, SeqCst);
        assert!(
            Self::searching(prev) > 0,
            "grove: end_searching without a searcher"
        );
        Self::searching(prev) == 1
    }

    /// Worker `idx` is about to sleep. The caller must re-check every queue afterwards.
    pub fn transition_to_parked(&self, idx: usize, searching: bool) {
        let mut sleepers = self.sleepers.lock().unwrap();
        let dec = 1 | if searching { 1 << SEARCH_SHIFT } else { 0 };
        let prev = self.state.fetch_sub(dec, SeqCst);
        assert!(
            Self::unparked(prev) > 0,
            "grove: worker parked twice in the idle counters"
        );
        sleepers.push(idx);
    }

    /// Worker `idx` woke (or decided not to sleep). Returns true if it is still registered as a
    /// sleeper, i.e. nobody chose it: it is now counted awake and not searching. False if a
    /// producer chose it: it is already counted awake *and searching*.
    pub fn transition_from_parked(&self, idx: usize) -> bool {
        let mut sleepers = self.sleepers.lock().unwrap();
        match sleepers.iter().position(|&i| i == idx) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.state.fetch_add(1, SeqCst);
                true
            }
            None => false,
        }
    }

    /// True if every worker is asleep.
    pub fn all_parked(&self) -> bool {
        Self::unparked(self.state.load(SeqCst)) == 0
    }

    /// Workers awake right now.
    pub fn num_unparked(&self) -> usize {
        Self::unparked(self.state.load(SeqCst))
    }
}
