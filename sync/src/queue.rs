//! gevent's queues: `Queue`, `LifoQueue`, `PriorityQueue` and `JoinableQueue`, as shared
//! handles (`Clone` shares the queue, like passing a gevent queue object around).
//!
//! All four run on [`crate::queue_core`] with a different buffer: FIFO, LIFO, smallest-first.
//! A queue never disconnects (there are no sender/receiver halves), so `get` waits for as long
//! as it takes. `bounded(n)` makes `put` wait while `n` items are queued; `bounded(0)` is a
//! rendezvous, gevent's `Channel`.

use crate::event::Event;
use crate::queue_core::{Buffer, GetError, Lifo, MinHeap, PutError, QueueCore, Tasks};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

macro_rules! queue_type {
    ($(#[$doc:meta])* $name:ident, $buf:ty, $($bound:tt)*) => {
        $(#[$doc])*
        pub struct $name<T> {
            core: Arc<QueueCore<T, $buf>>,
        }

        impl<T: $($bound)*> $name<T> {
            /// An unbounded queue.
            pub fn new() -> Self {
                $name { core: Arc::new(QueueCore::new(None)) }
            }

            /// A queue whose `put` waits while `maxsize` items are queued.
            pub fn bounded(maxsize: usize) -> Self {
                $name { core: Arc::new(QueueCore::new(Some(maxsize))) }
            }

            /// Adds an item, waiting while the queue is full. A cancellation point.
            pub fn put(&self, item: T) {
                let mut item = item;
                loop {
                    match self.core.put(item, true, None) {
                        Ok(()) => return,
                        // Only during an unwind, once: an enclosing `timeout` reported its
                        // deadline (see grove_runtime's cancel docs). A put cannot fail: retry.
                        Err(PutError::Timeout(v)) => item = v,
                        Err(_) => unreachable!("grove: a queue never disconnects"),
                    }
                }
            }

            /// Adds an item, waiting at most `d`; gives it back if the queue stayed full.
            pub fn put_timeout(&self, item: T, d: Duration) -> Result<(), T> {
                self.core
                    .put(item, true, Instant::now().checked_add(d))
                    .map_err(into_item)
            }

            /// Adds an item if there is room now; gives it back otherwise.
            pub fn try_put(&self, item: T) -> Result<(), T> {
                self.core.put(item, false, None).map_err(into_item)
            }

            /// Removes and returns an item, waiting while the queue is empty.
            pub fn get(&self) -> T {
                loop {
                    match self.core.get(true, None) {
                        Ok(v) => return v,
                        Err(GetError::Timeout) => continue, // as in `put`
                        Err(e) => unreachable!("grove: a queue get without deadline failed: {e:?}"),
                    }
                }
            }

            /// An item, waiting at most `d`.
            pub fn get_timeout(&self, d: Duration) -> Option<T> {
                self.core.get(true, Instant::now().checked_add(d)).ok()
            }

            /// An item if one is queued now.
            pub fn try_get(&self) -> Option<T> {
                self.core.get(false, None).ok()
            }

            /// The item `get` would return next, left in the queue (gevent's `peek`), waiting
            /// while the queue is empty. `T::clone` runs under the queue's internal lock, so it
            /// must not block.
            pub fn peek(&self) -> T
            where
                T: Clone,
            {
                loop {
                    if let Some(v) = self.core.peek(true, None) {
                        return v;
                    }
                }
            }

            /// [`peek`](Self::peek), waiting at most `d`.
            pub fn peek_timeout(&self, d: Duration) -> Option<T>
            where
                T: Clone,
            {
                self.core.peek(true, Instant::now().checked_add(d))
            }

            /// [`peek`](Self::peek) without waiting (gevent's `peek_nowait`).
            pub fn try_peek(&self) -> Option<T>
            where
                T: Clone,
            {
                self.core.peek(false, None)
            }

            /// Items queued.
            pub fn len(&self) -> usize {
                self.core.lock().buf.len()
            }

            /// Parked (putters, getters) right now. For tests that need waiters queued in a
            /// known order; not a stable API.
            #[doc(hidden)]
            pub fn waiting(&self) -> (usize, usize) {
                self.core.waiting()
            }

            /// True if no item is queued.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// True if a bounded queue is at its size.
            pub fn is_full(&self) -> bool {
                let st = self.core.lock();
                st.cap.is_some_and(|c| st.buf.len() >= c)
            }

            /// The bound; `None` if unbounded.
            pub fn capacity(&self) -> Option<usize> {
                self.core.lock().cap
            }
        }

        impl<T: $($bound)*> Default for $name<T> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name { core: self.core.clone() }
            }
        }

        impl<T> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(concat!(stringify!($name), " { .. }"))
            }
        }
    };
}

fn into_item<T>(e: PutError<T>) -> T {
    match e {
        PutError::Full(v) | PutError::Disconnected(v) | PutError::Timeout(v) => v,
    }
}

queue_type!(
    /// gevent's `Queue`: first in, first out.
    Queue, VecDeque<T>, Sized
);
queue_type!(
    /// gevent's `LifoQueue`: last in, first out.
    LifoQueue, Lifo<T>, Sized
);
queue_type!(
    /// gevent's `PriorityQueue`: the smallest item first.
    PriorityQueue, MinHeap<T>, Ord
);

/// gevent's `JoinableQueue`: a FIFO [`Queue`] that also counts unfinished items; each `get`
/// should be matched by a `task_done`, and `join` waits until every item put is done.
///
/// An item counts as a task from the moment it is in the queue, as in gevent (`_put`): a `put`
/// waiting for room adds none until its item goes in, and one that gives up adds none at all.
pub struct JoinableQueue<T> {
    queue: Queue<T>,
    /// Set whenever no task is unfinished; the count itself is in the queue's state, and both
    /// change under the queue's lock.
    all_done: Arc<Event>,
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue.
    pub fn new() -> Self {
        Self::with_queue(Queue::new())
    }

    /// A joinable queue whose `put` waits while `maxsize` items are queued.
    pub fn bounded(maxsize: usize) -> Self {
        Self::with_queue(Queue::bounded(maxsize))
    }

    fn with_queue(queue: Queue<T>) -> Self {
        let all_done = Arc::new(Event::new());
        all_done.set();
        queue.core.lock().tasks = Some(Tasks {
            unfinished: 0,
            all_done: all_done.clone(),
        });
        JoinableQueue { queue, all_done }
    }

    /// Adds an item (one more unfinished task once it is in), waiting while full. A put that
    /// is cancelled while it waits (kill, `timeout`) adds no task.
    pub fn put(&self, item: T) {
        self.queue.put(item)
    }

    /// Adds an item, waiting at most `d` while full; gives it back (adding no task) if the
    /// queue stayed full.
    pub fn put_timeout(&self, item: T, d: Duration) -> Result<(), T> {
        self.queue.put_timeout(item, d)
    }

    /// Adds an item if there is room now.
    pub fn try_put(&self, item: T) -> Result<(), T> {
        self.queue.try_put(item)
    }

    /// True if a bounded queue is at its size.
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// The bound; `None` if unbounded.
    pub fn capacity(&self) -> Option<usize> {
        self.queue.capacity()
    }

    /// Removes and returns an item, waiting while empty.
    pub fn get(&self) -> T {
        self.queue.get()
    }

    /// An item, waiting at most `d`.
    pub fn get_timeout(&self, d: Duration) -> Option<T> {
        self.queue.get_timeout(d)
    }

    /// An item if one is queued now.
    pub fn try_get(&self) -> Option<T> {
        self.queue.try_get()
    }

    /// Marks one item from `get` as processed.
    ///
    /// # Panics
    /// If called more times than items were put (gevent raises `ValueError`).
    pub fn task_done(&self) {
        let mut st = self.queue.core.lock();
        let t = st
            .tasks
            .as_mut()
            .expect("grove: a JoinableQueue without its task count");
        assert!(t.unfinished > 0, "grove: task_done() called too many times");
        t.unfinished -= 1;
        if t.unfinished == 0 {
            t.all_done.set();
        }
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        while self.unfinished_tasks() > 0 {
            self.all_done.wait();
        }
    }

    /// Waits at most `d`; true if every item is done.
    pub fn join_timeout(&self, d: Duration) -> bool {
        let until = Instant::now().checked_add(d);
        loop {
            if self.unfinished_tasks() == 0 {
                return true;
            }
            let left = until.map_or(Duration::MAX, |u| {
                u.saturating_duration_since(Instant::now())
            });
            if left.is_zero() || !self.all_done.wait_timeout(left) {
                return self.unfinished_tasks() == 0;
            }
        }
    }

    /// Parked (putters, getters) right now. For tests that need waiters queued in a known
    /// order; not a stable API.
    #[doc(hidden)]
    pub fn waiting(&self) -> (usize, usize) {
        self.queue.waiting()
    }

    /// Unfinished items.
    pub fn unfinished_tasks(&self) -> usize {
        self.queue
            .core
            .lock()
            .tasks
            .as_ref()
            .map_or(0, |t| t.unfinished)
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True if no item is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl<T> Default for JoinableQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
            all_done: self.all_done.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("unfinished", &self.unfinished_tasks())
            .finish()
    }
}
