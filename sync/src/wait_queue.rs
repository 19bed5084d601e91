//! The FIFO of parked waiters that every primitive in this crate is built on.
//!
//! Each primitive keeps its state and a [`WaitQueue`] under one short internal lock
//! (a `SpinLock`, `spin.rs`). A blocking call registers its park token in the queue *with that lock
//! held* and parks with the lock's release as the unlock step (runtime's `park`, Go's `gopark`),
//! so a waker that pops the token finds the waiter switched out (if its park is not committed
//! yet, the wake only marks it, and its worker resumes it: see runtime's `park`).
//!
//! Waking is a *hand-off*: the waker first gives the waiter what it waited for (ownership of a
//! lock, a permit, a value written into the waiter's slot), then unparks it. If the unpark fails,
//! the waiter's park had already ended (timed out, killed, `timeout` scope): the waker takes the
//! hand-off back and tries the next waiter. So a cancelled waiter never swallows a wake-up meant
//! for another, and a successful wake always comes with what was waited for (no spurious
//! wake-ups).
//!
//! A waiter whose park ends any other way removes its own entry under the lock; if the entry is
//! already gone, a waker popped it and either handed over (then the park ended `Unparked`) or
//! took the hand-off back. [`wait`] does this bookkeeping, also when the park unwinds.

use crate::spin::{SpinGuard as MutexGuard, SpinLock as Mutex};
use grove_runtime::{park_borrowed, Here, ParkId, Unparker, Wake};
use std::collections::VecDeque;
use std::time::Instant;

/// A parked waiter: its token and what the primitive keeps about it (e.g. read or write).
pub(crate) struct Waiter<E> {
    pub(crate) token: Unparker,
    pub(crate) data: E,
}

/// Waiters in arrival order. The first is kept apart from the rest, so that the usual queue of
/// one waiter (a channel's parked receiver, a lock's one contender) is a plain field: a
/// `VecDeque` push and pop cost ~70 instructions per channel round trip, most of them the
/// ring's index arithmetic (callgrind, ping-pong).
pub(crate) struct WaitQueue<E> {
    /// The oldest waiter; `None` only if `rest` is empty too.
    first: Option<Waiter<E>>,
    rest: VecDeque<Waiter<E>>,
}

impl<E> Default for WaitQueue<E> {
    fn default() -> Self {
        WaitQueue::new_const()
    }
}

impl<E> WaitQueue<E> {
    /// An empty queue, in a `const` context (for `Mutex::new`).
    pub(crate) const fn new_const() -> WaitQueue<E> {
        WaitQueue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The data of the first waiter, if any.
    pub(crate) fn front(&self) -> Option<&E> {
        self.first.as_ref().map(|w| &w.data)
    }

    #[inline(always)]
    fn push(&mut self, token: Unparker, data: E) {
        let w = Waiter { token, data };
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push_back(w);
        }
    }

    /// Removes the entry of park `id`; false if a waker already popped it.
    pub(crate) fn remove(&mut self, id: ParkId) -> bool {
        // Newest first: a waiter cleaning up after a timeout is usually near the back.
        if let Some(i) = self.rest.iter().rposition(|w| w.token.park_id() == id) {
            self.rest.remove(i);
            return true;
        }
        if self.first.as_ref().is_some_and(|w| w.token.park_id() == id) {
            self.first = self.rest.pop_front();
            return true;
        }
        false
    }

    /// Queues a bare token (a `Select` watcher).
    pub(crate) fn push_token(&mut self, token: Unparker)
    where
        E: Default,
    {
        self.push(token, E::default());
    }

    /// Takes the first waiter out (the caller unparks it, and handles a failed unpark).
    /// Always inline: out of line (LLVM's choice once `put` grew), it and its 32-byte move cost
    /// a channel round trip ~130 instructions (callgrind).
    #[inline(always)]
    pub(crate) fn pop_front(&mut self) -> Option<Waiter<E>> {
        let w = self.first.take()?;
        if !self.rest.is_empty() {
            self.first = self.rest.pop_front();
        }
        Some(w)
    }

    /// Wakes the first waiter that is still waiting. `give` hands it what it waited for (before
    /// the unpark); `take_back` undoes that if its park had already ended. Returns the woken
    /// waiter's data, or `None` if nobody was left.
    pub(crate) fn wake_one(
        &mut self,
        mut give: impl FnMut(&E),
        mut take_back: impl FnMut(&E),
    ) -> Option<E> {
        while let Some(w) = self.pop_front() {
            give(&w.data);
            if w.token.unpark() {
                return Some(w.data);
            }
            take_back(&w.data);
        }
        None
    }

    /// Wakes every waiter (no hand-off: an event, a disconnection). Returns how many woke.
    pub(crate) fn wake_all(&mut self) -> usize {
        let first = self.first.take();
        first
            .into_iter()
            .chain(self.rest.drain(..))
            .filter(|w| w.token.clone().unpark())
            .count()
    }
}

/// What a [`wait`] came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// A waker handed over what we waited for.
    HandedOver,
    /// The deadline passed first (our entry is gone from the queue).
    TimedOut,
}

/// Parks the caller in the queue that `queue` picks out of the state behind `guard`, until a
/// waker hands over (see the module docs) or `deadline` passes. `then` runs once the caller is
/// queued, before the switch (a condvar releases the user's mutex there). The internal lock is
/// released after the switch. On return, and on an unwind through it (kill, `timeout`), the
/// caller's entry is no longer queued.
///
/// Inlined, as is [`wait_leaving`], to keep frames off the path to the switch (runtime's `park`
/// module docs: "Why the switch paths are inlined").
#[inline(always)]
pub(crate) fn wait<S, E>(
    guard: MutexGuard<'_, S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    data: E,
    deadline: Option<Instant>,
    then: impl FnOnce(),
) -> Waited {
    wait_leaving(Here::now(), guard, queue, data, deadline, then, |_| {})
}

/// [`wait`] by the greenlet (or thread) `here`, looked up by the caller already (to charge its
/// cooperative budget first, say), where a waiter that leaves the queue without a hand-off
/// (timed out, killed) may have been what held back the waiters behind it: `on_leave` runs
/// under the lock once its entry is gone, to let them in. (A cancelled `RwLock` writer, queued
/// ahead of readers while only readers held the lock, kept those readers out until every holder
/// had left.) Callers with nothing to let in pass `|_| {}`.
#[inline(always)]
pub(crate) fn wait_leaving<S, E>(
    here: Here,
    guard: MutexGuard<'_, S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    data: E,
    deadline: Option<Instant>,
    then: impl FnOnce(),
    on_leave: fn(&mut S),
) -> Waited {
    let mut guard = guard;
    let mut tidy = Tidy {
        lock: MutexGuard::lock_of(&guard),
        queue,
        token: None,
        on_leave,
    };
    // SAFETY: `park_borrowed`'s rules hold: the token goes into `queue` with the lock held, every
    // waker reaches it (to wake, clone or drop it) only under that lock, the unlock step releases
    // the lock after the switch, and a park that ends other than by that token leaves `tidy` set,
    // whose drop (on return or unwind, before the caller goes on) takes the lock and removes the
    // token. `here` is the caller, as `park_borrowed` requires.
    let woke = unsafe {
        park_borrowed(
            here,
            |token| {
                tidy.token = Some(token.park_id());
                queue(&mut guard).push(token, data);
                then();
                Some(move || drop(guard))
            },
            deadline,
        )
    };
    match woke {
        Wake::Unparked => {
            tidy.token = None; // the waker popped our entry
            Waited::HandedOver
        }
        Wake::TimedOut | Wake::Killed => Waited::TimedOut, // `tidy` removes our entry
    }
}

/// Removes a waiter's entry when its park ends without a hand-off, unwinding included.
struct Tidy<'a, S, E> {
    lock: &'a Mutex<S>,
    queue: fn(&mut S) -> &mut WaitQueue<E>,
    token: Option<ParkId>,
    on_leave: fn(&mut S),
}

impl<S, E> Drop for Tidy<'_, S, E> {
    // The common case (a waker popped the entry) inline: an out-of-line drop that found nothing
    // to do cost ~20 instructions per wait (callgrind, channel ping-pong).
    #[inline]
    fn drop(&mut self) {
        if let Some(id) = self.token.take() {
            self.remove(id);
        }
    }
}

impl<S, E> Tidy<'_, S, E> {
    #[cold]
    #[inline(never)]
    fn remove(&self, id: ParkId) {
        let mut state = self.lock.lock();
        (self.queue)(&mut state).remove(id);
        (self.on_leave)(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::WaitQueue;
    use grove_runtime::{park, ParkId, Unparker};
    use std::collections::VecDeque;

    /// A token of a park that ended at once (nothing to wait for): enough for queue order,
    /// removal by id and failed unparks.
    fn token() -> Unparker {
        let mut out = None;
        park(
            |t| {
                out = Some(t);
                None::<fn()>
            },
            None,
        );
        out.unwrap()
    }

    /// Random pushes, pops and removals against a `VecDeque` of ids: the first waiter kept
    /// apart from the rest must not change the order, the length or what `remove` finds.
    #[test]
    fn sync_wait_queue_keeps_fifo_order_with_its_first_waiter_apart() {
        let mut q = WaitQueue::<u32>::new_const();
        let mut model: VecDeque<(ParkId, u32)> = VecDeque::new();
        let mut live: Vec<ParkId> = Vec::new();
        let mut x = 0x2545_f491_u32;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match x % 8 {
                0..=3 => {
                    let t = token();
                    let id = t.park_id();
                    q.push(t, step);
                    model.push_back((id, step));
                    live.push(id);
                }
                4 | 5 => {
                    let got = q.pop_front().map(|w| (w.token.park_id(), w.data));
                    assert_eq!(got, model.pop_front(), "pop at step {step}");
                }
                _ if !live.is_empty() => {
                    let id = live.swap_remove(x as usize / 8 % live.len());
                    let in_model = model.iter().position(|(i, _)| *i == id);
                    if let Some(p) = in_model {
                        model.remove(p);
                    }
                    assert_eq!(q.remove(id), in_model.is_some(), "remove at step {step}");
                }
                _ => {}
            }
            assert_eq!(q.len(), model.len());
            assert_eq!(q.is_empty(), model.is_empty());
            assert_eq!(q.front(), model.front().map(|(_, d)| d));
        }
        // Every token's park has ended: none wakes.
        assert_eq!(q.wake_all(), 0);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }
}
