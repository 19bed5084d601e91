//! The engine under channels and gevent's queues: a buffer, its capacity, and two wait queues.
//!
//! # Hand-off through the waiter's own slot
//!
//! A blocked receiver queues a pointer to an `Option<T>` slot in its own stack frame (Go's
//! `sudog.elem`); a sender that finds it writes the value straight into that slot and unparks
//! it, so the value never touches the buffer and the receiver never re-takes the lock. A blocked
//! sender queues its slot holding the value; a receiver takes the value out, then unparks it.
//! If the unpark fails (the waiter's park already ended: timeout, kill), the waker puts the value
//! back where it came from and tries the next waiter, so nothing is lost or swallowed.
//!
//! Why the slot pointer stays valid: the waiter's frame lives until its park has ended *and* its
//! entry is out of the queue. A waker touches the slot only while holding the lock, between
//! popping the entry and the end of its unpark attempt; a waiter whose park ended another way
//! removes its entry under the same lock before its frame can go (see `wait_queue::wait`).
//!
//! The buffer is a [`Buffer`]: FIFO (`VecDeque`) for channels and `Queue`, LIFO for
//! `LifoQueue`, a min-heap for `PriorityQueue`. Only a FIFO buffer hands a new value straight to
//! a parked getter: in the other two, values put after the wake-up may come before it, so the
//! value goes into the buffer and the getter, woken without one, takes the best when it runs.
//! Capacity `Some(0)` is a rendezvous: every send waits for a receiver.

use crate::wait_queue::{wait, wait_leaving, WaitQueue, Waited};
use grove_runtime::Here;
use grove_runtime::Unparker;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// Where queued values wait.
pub(crate) trait Buffer<T>: Default {
    /// True if a new value is always the last one out (FIFO): only then may `put` hand it
    /// straight to a parked getter. In a LIFO or priority buffer the getter must take what is
    /// best when it runs (gevent's getter calls `_get()` once it runs), which values put after
    /// the wake-up can change.
    const LAST_OUT: bool;
    fn put(&mut self, v: T);
    fn take(&mut self) -> Option<T>;
    /// The value `take` would give, left in place.
    fn peek(&self) -> Option<&T>;
    fn len(&self) -> usize;
}

impl<T> Buffer<T> for VecDeque<T> {
    const LAST_OUT: bool = true;
    fn put(&mut self, v: T) {
        self.push_back(v)
    }
    fn take(&mut self) -> Option<T> {
        self.pop_front()
    }
    fn peek(&self) -> Option<&T> {
        self.front()
    }
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
}

/// Last in, first out.
pub(crate) struct Lifo<T>(Vec<T>);

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T> Buffer<T> for Lifo<T> {
    const LAST_OUT: bool = false;
    fn put(&mut self, v: T) {
        self.0.push(v)
    }
    fn take(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn peek(&self) -> Option<&T> {
        self.0.last()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Smallest first (Python's `heapq`, gevent's `PriorityQueue`).
pub(crate) struct MinHeap<T>(BinaryHeap<std::cmp::Reverse<T>>);

impl<T: Ord> Default for MinHeap<T> {
    fn default() -> Self {
        MinHeap(BinaryHeap::new())
    }
}

impl<T: Ord> Buffer<T> for MinHeap<T> {
    const LAST_OUT: bool = false;
    fn put(&mut self, v: T) {
        self.0.push(std::cmp::Reverse(v))
    }
    fn take(&mut self) -> Option<T> {
        self.0.pop().map(|r| r.0)
    }
    fn peek(&self) -> Option<&T> {
        self.0.peek().map(|r| &r.0)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A waiter's slot in its own stack frame.
pub(crate) struct Slot<T>(*mut Option<T>);

// SAFETY: the slot is only touched under the queue's lock by a waker, or by its owner; moving the
// pointer between threads moves access to a `T`, so `T: Send`.
unsafe impl<T: Send> Send for Slot<T> {}

/// State under the lock.
pub(crate) struct State<T, B> {
    pub(crate) buf: B,
    pub(crate) cap: Option<usize>,
    /// Sender and receiver handles alive (channels only; queues never disconnect).
    pub(crate) senders: usize,
    pub(crate) receivers: usize,
    getters: WaitQueue<Slot<T>>,
    putters: WaitQueue<Slot<T>>,
    /// `Select` watchers of the receiving side: woken (no hand-off) when a value may have
    /// become available, or the last sender left.
    recv_watchers: WaitQueue<()>,
    /// `Select` watchers of the sending side: woken when room may have been made, a getter
    /// parked (what a rendezvous send waits for), or the last receiver left.
    send_watchers: WaitQueue<()>,
    /// `JoinableQueue`'s unfinished tasks, counted under this lock at the moment an item
    /// enters the queue (gevent's `_put`): not when a `put` starts waiting for room.
    pub(crate) tasks: Option<Tasks>,
}

/// An unfinished-task count and the event set whenever it is zero (changed together, under the
/// queue's lock, so `join` never sees them disagree).
pub(crate) struct Tasks {
    pub(crate) unfinished: usize,
    pub(crate) all_done: std::sync::Arc<crate::Event>,
}

impl<T, B> State<T, B> {
    /// An item entered the queue: one more unfinished task, if this queue counts them.
    #[inline]
    fn count_put(&mut self) {
        if let Some(t) = &mut self.tasks {
            if t.unfinished == 0 {
                t.all_done.clear();
            }
            t.unfinished += 1;
        }
    }
}

/// Why a put did not happen.
pub(crate) enum PutError<T> {
    Full(T),
    Disconnected(T),
    Timeout(T),
}

/// Why a get did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GetError {
    Empty,
    Disconnected,
    Timeout,
}

/// A buffer with blocking put and get.
pub(crate) struct QueueCore<T, B> {
    state: crate::spin::SpinLock<State<T, B>>,
    /// `State::cap.is_some()`, readable without the lock (the capacity never changes).
    bounded: bool,
}

impl<T, B: Buffer<T>> QueueCore<T, B> {
    pub(crate) fn new(cap: Option<usize>) -> Self {
        QueueCore {
            bounded: cap.is_some(),
            state: crate::spin::SpinLock::new(State {
                buf: B::default(),
                cap,
                senders: 1,
                receivers: 1,
                getters: WaitQueue::default(),
                putters: WaitQueue::default(),
                recv_watchers: WaitQueue::default(),
                send_watchers: WaitQueue::default(),
                tasks: None,
            }),
        }
    }

    pub(crate) fn lock(&self) -> crate::spin::SpinGuard<'_, State<T, B>> {
        self.state.lock()
    }

    /// Puts `v`, waiting while full until `deadline` (`block` false: not at all).
    pub(crate) fn put(
        &self,
        v: T,
        block: bool,
        deadline: Option<Instant>,
    ) -> Result<(), PutError<T>> {
        // As in `get`. Not for an unbounded queue: there a send never waits, and std,
        // crossbeam and gevent users count on it never switching (or being cancelled). (Looked
        // up only here: an unbounded send must not pay for it.)
        let here = (block && self.bounded).then(|| {
            let here = Here::now();
            // SAFETY: looked up just above, by this call of this greenlet (or thread).
            unsafe { here.charge() };
            here
        });
        let mut st = self.state.lock();
        if st.receivers == 0 {
            return Err(PutError::Disconnected(v));
        }
        // A rendezvous has no buffer to order values in: its values always go hand to hand.
        let v = if B::LAST_OUT || st.cap == Some(0) {
            match hand_to_getter(&mut st, v) {
                None => {
                    st.count_put();
                    return Ok(());
                }
                Some(v) => v,
            }
        } else {
            v
        };
        if st.cap.is_none_or(|c| st.buf.len() < c) {
            st.buf.put(v);
            st.count_put();
            if !B::LAST_OUT {
                wake_getter(&mut st); // it takes the best value when it runs
            }
            st.recv_watchers.wake_all();
            return Ok(());
        }
        if !block {
            return Err(PutError::Full(v));
        }
        st.recv_watchers.wake_all(); // a parked putter makes the receiving side ready
        let mut slot = Some(v);
        let waited = wait_leaving(
            here.unwrap_or_else(Here::now),
            st,
            |s| &mut s.putters,
            Slot(&mut slot),
            deadline,
            || (),
            |_| {},
        );
        match (waited, slot) {
            (_, None) => Ok(()), // a getter took it
            (Waited::HandedOver, Some(v)) => Err(PutError::Disconnected(v)),
            (Waited::TimedOut, Some(v)) => Err(PutError::Timeout(v)),
        }
    }

    /// Gets a value, waiting while empty until `deadline` (`block` false: not at all).
    /// Inlined into `recv` and the queues' `get`: no frame between the caller and the switch
    /// (runtime's `park` module docs: "Why the switch paths are inlined").
    #[inline(always)]
    pub(crate) fn get(&self, block: bool, deadline: Option<Instant>) -> Result<T, GetError> {
        // A receiver that always finds a value never parks: it yields now and then instead.
        let here = block.then(|| {
            let here = Here::now();
            // SAFETY: looked up just above, by this call of this greenlet (or thread).
            unsafe { here.charge() };
            here
        });
        loop {
            let mut st = self.state.lock();
            if let Some(v) = take_available(&mut st) {
                // Room was made: a `Select` on the sending side may go on.
                wake_send_watchers(&mut st);
                if !B::LAST_OUT && st.buf.len() > 0 {
                    // Values stay buffered and getters may be parked: a LIFO or priority put
                    // wakes one getter per value it buffers, but a value that entered from a
                    // parked putter (the refill above) woke nobody, and a bounded queue could
                    // leave a getter parked beside it for good. Pass the turn on.
                    wake_getter(&mut st);
                }
                return Ok(v);
            }
            if st.senders == 0 {
                return Err(GetError::Disconnected);
            }
            if !block {
                return Err(GetError::Empty);
            }
            // A parked getter is what a rendezvous send waits for.
            wake_send_watchers(&mut st);
            let mut slot: Option<T> = None;
            let waited = wait_leaving(
                here.unwrap_or_else(Here::now),
                st,
                |s| &mut s.getters,
                Slot(&mut slot),
                deadline,
                || (),
                |_| {},
            );
            match (waited, slot) {
                (_, Some(v)) => return Ok(v),
                (Waited::TimedOut, None) => return Err(GetError::Timeout),
                // Woken by a disconnection, or by a put into a LIFO or priority buffer: re-check.
                (Waited::HandedOver, None) => continue,
            }
        }
    }

    /// A copy of the value a get would take next, waiting for one until `deadline` (`block`
    /// false: not at all); the value stays queued. Waits as a watcher: woken by every put that
    /// queues a value. (A value handed straight to a parked getter is never seen.) `clone`
    /// runs under the queue's lock.
    pub(crate) fn peek(&self, block: bool, deadline: Option<Instant>) -> Option<T>
    where
        T: Clone,
    {
        loop {
            let st = self.state.lock();
            if let Some(v) = st.buf.peek() {
                return Some(v.clone());
            }
            // A rendezvous (or full) queue: the value of the first parked putter is next.
            if let Some(slot) = st.putters.front() {
                // SAFETY: a parked putter's slot is valid while its entry is queued and we hold
                // the lock (module docs); this only reads it.
                if let Some(v) = unsafe { (*slot.0).as_ref() } {
                    return Some(v.clone());
                }
            }
            if !block {
                return None;
            }
            if wait(st, |s| &mut s.recv_watchers, (), deadline, || ()) == Waited::TimedOut {
                return None;
            }
        }
    }

    /// Registers a `Select` watcher on `side` unless that side is ready now (then returns
    /// false). The readiness check and the registration happen under one lock, and every
    /// change that can make the side ready wakes its watchers under that lock, so no readiness
    /// is missed between them.
    pub(crate) fn watch(&self, side: Side, token: Unparker) -> bool {
        let mut st = self.state.lock();
        if st.would_not_wait(side) {
            return false;
        }
        st.watchers_of(side).push_token(token);
        true
    }

    /// Removes a `Select` watcher from `side`.
    pub(crate) fn unwatch(&self, side: Side, token: &Unparker) {
        self.state.lock().watchers_of(side).remove(token.park_id());
    }

    /// Parked (putters, getters), for tests that need waiters queued in a known order.
    pub(crate) fn waiting(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.putters.len(), st.getters.len())
    }

    /// Counts one more handle on each side that `senders`/`receivers` says.
    pub(crate) fn add_handles(&self, senders: usize, receivers: usize) {
        let mut st = self.state.lock();
        st.senders += senders;
        st.receivers += receivers;
    }

    /// One sender handle fewer; the last one wakes every getter and watcher.
    pub(crate) fn drop_sender(&self) {
        let mut st = self.state.lock();
        st.senders -= 1;
        if st.senders == 0 {
            st.getters.wake_all();
            st.recv_watchers.wake_all();
        }
    }

    /// One receiver handle fewer; the last one wakes every putter (their values stay theirs)
    /// and drops the buffered values, which nobody can receive any more (as crossbeam and std
    /// do). They are dropped after the lock is released: a value's `Drop` may use the channel.
    pub(crate) fn drop_receiver(&self) {
        let mut orphans = Vec::new();
        {
            let mut st = self.state.lock();
            st.receivers -= 1;
            if st.receivers == 0 {
                st.putters.wake_all();
                st.recv_watchers.wake_all();
                st.send_watchers.wake_all();
                while let Some(v) = st.buf.take() {
                    orphans.push(v);
                }
            }
        }
        drop(orphans);
    }
}

impl<T, B: Buffer<T>> State<T, B> {
    /// Values a getter could have now: buffered, or offered by a parked putter.
    pub(crate) fn available(&self) -> usize {
        self.buf.len() + self.putters.len()
    }

    /// A get need not wait now: a value is buffered or offered by a parked putter, or no
    /// sender is left (it fails at once).
    pub(crate) fn get_would_not_wait(&self) -> bool {
        self.available() > 0 || self.senders == 0
    }

    /// A put need not wait now: there is room, or a getter is parked for the value (a
    /// rendezvous), or no receiver is left (it fails at once).
    pub(crate) fn put_would_not_wait(&self) -> bool {
        self.receivers == 0
            || self.cap.is_none_or(|c| self.buf.len() < c)
            || !self.getters.is_empty()
    }

    /// An operation on `side` need not wait now.
    pub(crate) fn would_not_wait(&self, side: Side) -> bool {
        match side {
            Side::Recv => self.get_would_not_wait(),
            Side::Send => self.put_would_not_wait(),
        }
    }

    fn watchers_of(&mut self, side: Side) -> &mut WaitQueue<()> {
        match side {
            Side::Recv => &mut self.recv_watchers,
            Side::Send => &mut self.send_watchers,
        }
    }
}

/// The side of a channel a `Select` watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Ready when a get need not wait.
    Recv,
    /// Ready when a put need not wait.
    Send,
}

/// Wakes the sending side's `Select` watchers, if any (an unbounded channel never has one: its
/// sending side is always ready, so `watch` never registers there).
#[inline(always)]
fn wake_send_watchers<T, B>(st: &mut State<T, B>) {
    if !st.send_watchers.is_empty() {
        st.send_watchers.wake_all();
    }
}

/// Gives `v` to the first parked getter still waiting; returns it if there was none.
fn hand_to_getter<T, B>(st: &mut State<T, B>, v: T) -> Option<T> {
    let mut v = Some(v);
    while let Some(w) = st.getters.pop_front() {
        // SAFETY: the getter's slot is valid while its entry was queued and we hold the lock
        // (module docs); nobody else touches it now.
        unsafe { *w.data.0 = v.take() };
        if w.token.unpark() {
            return None;
        }
        // SAFETY: as above; its park had already ended, so take the value back.
        v = unsafe { (*w.data.0).take() };
    }
    v
}

/// Wakes the first parked getter still waiting, with no value: it takes one from the buffer
/// when it runs (or parks again if a getter that never parked took it first).
fn wake_getter<T, B>(st: &mut State<T, B>) {
    st.getters.wake_one(|_| (), |_| ());
}

/// Takes a buffered value (refilling the buffer from a parked putter), or a parked putter's value
/// directly (rendezvous).
#[inline(always)] // only `get` calls it, and `get` is inline (see there)
fn take_available<T, B: Buffer<T>>(st: &mut State<T, B>) -> Option<T> {
    let got = st.buf.take();
    // Room was made (or, for a rendezvous, a putter's value is what we want): take from putters.
    while let Some(w) = st.putters.pop_front() {
        // SAFETY: as in `hand_to_getter`: a putter's slot, valid under the lock.
        let offered = unsafe { (*w.data.0).take() };
        let Some(offered) = offered else {
            continue;
        };
        if !w.token.unpark() {
            // Its park had ended: the value stays the putter's.
            // SAFETY: as above.
            unsafe { *w.data.0 = Some(offered) };
            continue;
        }
        st.count_put(); // the parked put has happened
        match got {
            Some(g) => {
                st.buf.put(offered);
                return Some(g);
            }
            None => return Some(offered),
        }
    }
    got
}
