//! Channels shaped like crossbeam-channel: `channel()` (unbounded), `bounded(n)` (`0` is a
//! rendezvous), MPMC, disconnection, `try_*`, `*_timeout`, iterators, and a readiness [`Select`].
//! The error types are crossbeam's own, so a crossbeam user needs no new words.
//!
//! Built on [`crate::queue_core`]: a value meets a waiting receiver in that receiver's own stack
//! slot (no buffer round trip), and a cancelled waiter never swallows a value.

use crate::queue_core::{GetError, PutError, QueueCore, Side};
pub use crossbeam_channel::{
    ReadyTimeoutError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryReadyError,
    TryRecvError, TrySendError,
};
use grove_runtime::{park, Unparker, Wake};
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Core<T> = QueueCore<T, VecDeque<T>>;

/// The sending half; `Clone` for more producers.
pub struct Sender<T> {
    core: Arc<Core<T>>,
}

/// The receiving half; `Clone` for more consumers.
pub struct Receiver<T> {
    core: Arc<Core<T>>,
}

/// An unbounded channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    pair(None)
}

/// A channel holding at most `cap` values; `send` waits while it is full. `bounded(0)` is a
/// rendezvous: each `send` waits for a `recv`.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    pair(Some(cap))
}

/// An unbounded channel (crossbeam's name for [`channel`]).
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    pair(None)
}

fn pair<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    let core = Arc::new(Core::new(cap));
    (Sender { core: core.clone() }, Receiver { core })
}

fn deadline(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

impl<T> Sender<T> {
    /// Sends, waiting while the channel is full. Errors (giving the value back) once every
    /// receiver is gone.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        self.core.put(v, true, None).map_err(|e| match e {
            PutError::Disconnected(v) | PutError::Full(v) | PutError::Timeout(v) => SendError(v),
        })
    }

    /// Sends without waiting.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        self.core.put(v, false, None).map_err(|e| match e {
            PutError::Full(v) | PutError::Timeout(v) => TrySendError::Full(v),
            PutError::Disconnected(v) => TrySendError::Disconnected(v),
        })
    }

    /// Sends, waiting at most `d` while full.
    pub fn send_timeout(&self, v: T, d: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline_inner(v, deadline(d))
    }

    /// Sends, waiting until `at` while full.
    pub fn send_deadline(&self, v: T, at: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline_inner(v, Some(at))
    }

    fn send_deadline_inner(&self, v: T, at: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        self.core.put(v, true, at).map_err(|e| match e {
            PutError::Timeout(v) | PutError::Full(v) => SendTimeoutError::Timeout(v),
            PutError::Disconnected(v) => SendTimeoutError::Disconnected(v),
        })
    }

    /// True if both handles belong to the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }
}

impl<T> Receiver<T> {
    /// Receives, waiting while the channel is empty. Errors once every sender is gone and the
    /// channel is empty.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.core.get(true, None).map_err(|_| RecvError)
    }

    /// Receives without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.core.get(false, None).map_err(|e| match e {
            GetError::Disconnected => TryRecvError::Disconnected,
            GetError::Empty | GetError::Timeout => TryRecvError::Empty,
        })
    }

    /// Receives, waiting at most `d`.
    pub fn recv_timeout(&self, d: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(deadline(d))
    }

    /// Receives, waiting until `at`.
    pub fn recv_deadline(&self, at: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_deadline_inner(Some(at))
    }

    fn recv_deadline_inner(&self, at: Option<Instant>) -> Result<T, RecvTimeoutError> {
        self.core.get(true, at).map_err(|e| match e {
            GetError::Disconnected => RecvTimeoutError::Disconnected,
            GetError::Empty | GetError::Timeout => RecvTimeoutError::Timeout,
        })
    }

    /// A blocking iterator that ends when the channel is disconnected and empty.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the values available now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// True if both handles belong to the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }

    fn is_ready(&self) -> bool {
        self.core.lock().get_would_not_wait()
    }
}

macro_rules! common_methods {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// Parked (senders, receivers) right now. For tests that need waiters queued in a
            /// known order; not a stable API.
            #[doc(hidden)]
            pub fn waiting(&self) -> (usize, usize) {
                self.core.waiting()
            }

            /// Values in the channel.
            pub fn len(&self) -> usize {
                self.core.lock().buf.len()
            }

            /// True if no value is buffered.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// True if a bounded channel is at capacity (always, for a rendezvous).
            pub fn is_full(&self) -> bool {
                let st = self.core.lock();
                st.cap.is_some_and(|c| st.buf.len() >= c)
            }

            /// The capacity; `None` if unbounded.
            pub fn capacity(&self) -> Option<usize> {
                self.core.lock().cap
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(concat!(stringify!($ty), " { .. }"))
            }
        }
    };
}

common_methods!(Sender);
common_methods!(Receiver);

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.core.add_handles(1, 0);
        Sender {
            core: self.core.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.core.add_handles(0, 1);
        Receiver {
            core: self.core.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.core.drop_sender();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.core.drop_receiver();
    }
}

/// Blocking iterator from [`Receiver::iter`].
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator from [`Receiver::try_iter`].
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator (`for x in rx`).
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

/// Something a [`Select`] can wait on.
trait Watchable {
    fn ready(&self) -> bool;
    /// Registers `token` unless ready now (false).
    fn watch(&self, token: Unparker) -> bool;
    fn unwatch(&self, token: &Unparker);
}

impl<T> Watchable for Receiver<T> {
    fn ready(&self) -> bool {
        self.is_ready()
    }
    fn watch(&self, token: Unparker) -> bool {
        self.core.watch(Side::Recv, token)
    }
    fn unwatch(&self, token: &Unparker) {
        self.core.unwatch(Side::Recv, token);
    }
}

impl<T> Watchable for Sender<T> {
    fn ready(&self) -> bool {
        self.core.lock().put_would_not_wait()
    }
    fn watch(&self, token: Unparker) -> bool {
        self.core.watch(Side::Send, token)
    }
    fn unwatch(&self, token: &Unparker) {
        self.core.unwatch(Side::Send, token);
    }
}

/// Waits until one of several receivers or senders is ready (crossbeam's `Select::ready*`). A
/// receiver is ready when a `recv` would not wait: it has a value, or is disconnected. A sender
/// is ready when a `send` would not wait: the channel has room, a receiver is parked for the
/// value (a rendezvous), or every receiver is gone (the send fails at once). Readiness is a
/// hint, as in crossbeam: another consumer may take the value (or another producer the room)
/// first, so follow up with `try_recv` or `try_send` and select again if it failed.
///
/// ```
/// use grove_sync::{bounded, Select};
/// let (tx1, rx1) = bounded::<u32>(1);
/// let (_tx2, rx2) = bounded::<u32>(1);
/// tx1.send(7).unwrap();
/// let mut sel = Select::new();
/// let a = sel.recv(&rx1);
/// let _b = sel.recv(&rx2);
/// let i = sel.ready();
/// assert_eq!(i, a);
/// assert_eq!(rx1.try_recv(), Ok(7));
/// ```
#[derive(Default)]
pub struct Select<'a> {
    /// By index; `None` once removed (indices stay as they were given, as crossbeam's do).
    handles: Vec<Option<&'a dyn Watchable>>,
}

thread_local! {
    /// xorshift32 state for `Select`'s random start, per OS thread (seeded from its address).
    static SELECT_RNG: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A random start for a scan over `n` handles (`n > 0`). Not inlined: its thread-local must be
/// looked up afresh on each call, not kept across the caller's park (the greenlet may resume on
/// another worker; see docs/tls.md).
#[inline(never)]
fn random_start(n: usize) -> usize {
    SELECT_RNG.with(|c| {
        let mut x = c.get();
        if x == 0 {
            x = (c as *const _ as usize as u32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c.set(x);
        x as usize % n
    })
}

impl<'a> Select<'a> {
    /// An empty selection.
    pub fn new() -> Select<'a> {
        Select {
            handles: Vec::new(),
        }
    }

    fn add(&mut self, h: &'a dyn Watchable) -> usize {
        self.handles.push(Some(h));
        self.handles.len() - 1
    }

    /// Adds a receiver; returns its index.
    pub fn recv<T>(&mut self, rx: &'a Receiver<T>) -> usize {
        self.add(rx)
    }

    /// Adds a sender; returns its index.
    ///
    /// ```
    /// use grove_sync::{bounded, Select};
    /// let (tx, rx) = bounded::<u32>(1);
    /// tx.send(1).unwrap(); // full
    /// let mut sel = Select::new();
    /// let s = sel.send(&tx);
    /// assert!(sel.try_ready().is_err());
    /// assert_eq!(rx.recv(), Ok(1)); // room again
    /// assert_eq!(sel.ready(), s);
    /// assert_eq!(tx.try_send(2), Ok(()));
    /// ```
    pub fn send<T>(&mut self, tx: &'a Sender<T>) -> usize {
        self.add(tx)
    }

    /// Removes the handle added as `index`; the other indices stay as they are (crossbeam's
    /// `Select::remove`). Useful once a receiver is found disconnected, to select among the
    /// rest.
    ///
    /// # Panics
    /// If `index` was never given out, or was removed already.
    pub fn remove(&mut self, index: usize) {
        let slot = self
            .handles
            .get_mut(index)
            .unwrap_or_else(|| panic!("grove: Select::remove of index {index}, never added"));
        assert!(
            slot.take().is_some(),
            "grove: Select::remove of index {index}, removed already"
        );
    }

    /// The index of a ready receiver or sender, if one is ready now.
    pub fn try_ready(&mut self) -> Result<usize, TryReadyError> {
        self.first_ready().ok_or(TryReadyError)
    }

    /// Waits until a receiver or sender is ready; returns its index.
    ///
    /// # Panics
    /// With nothing added (it would wait forever).
    pub fn ready(&mut self) -> usize {
        assert!(
            self.handles.iter().any(Option::is_some),
            "grove: Select::ready with nothing to wait on"
        );
        loop {
            if let Ok(i) = self.ready_until(None) {
                return i;
            }
        }
    }

    /// Waits at most `d` for a ready receiver or sender.
    pub fn ready_timeout(&mut self, d: Duration) -> Result<usize, ReadyTimeoutError> {
        self.ready_until(deadline(d))
    }

    /// Waits until `at` for a ready receiver or sender.
    pub fn ready_deadline(&mut self, at: Instant) -> Result<usize, ReadyTimeoutError> {
        self.ready_until(Some(at))
    }

    /// Scans from a random start (as crossbeam-channel's select does), so one busy receiver
    /// cannot starve the others. (A process-wide rotating counter did not: any other select in
    /// the same loop, or a greenlet selecting in lockstep, kept its parity, and one of two
    /// always-ready receivers was never picked.)
    fn first_ready(&self) -> Option<usize> {
        let n = self.handles.len();
        if n == 0 {
            return None;
        }
        let start = random_start(n);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.handles[i].is_some_and(|h| h.ready()))
    }

    fn ready_until(&mut self, at: Option<Instant>) -> Result<usize, ReadyTimeoutError> {
        // A select over channels that are always ready never parks: spend the budget, as `recv`.
        grove_runtime::coop::charge();
        loop {
            if let Some(i) = self.first_ready() {
                return Ok(i);
            }
            let mut watching = Unwatch {
                handles: &self.handles,
                token: None,
                count: 0,
            };
            let woke = park(
                |token| {
                    watching.token = Some(token.clone());
                    for h in watching.handles.iter().flatten() {
                        if !h.watch(token.clone()) {
                            return None; // became ready while we registered
                        }
                        watching.count += 1;
                    }
                    Some(|| ())
                },
                at,
            );
            drop(watching);
            if woke == Wake::TimedOut {
                return self.first_ready().ok_or(ReadyTimeoutError);
            }
        }
    }
}

/// Takes a `Select`'s token off every handle it was registered with, however the wait ends.
struct Unwatch<'s, 'a> {
    handles: &'s [Option<&'a dyn Watchable>],
    token: Option<Unparker>,
    /// How many of the handles not removed (in order) hold the token.
    count: usize,
}

impl Drop for Unwatch<'_, '_> {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            for h in self.handles.iter().flatten().take(self.count) {
                h.unwatch(token);
            }
        }
    }
}
