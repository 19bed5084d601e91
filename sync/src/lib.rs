//! grove's synchronisation toolkit (gevent's `gevent.lock`, `gevent.event`, `gevent.queue`,
//! `gevent.pool`, plus crossbeam-shaped channels), for greenlets and plain threads alike.
//!
//! Every blocking call here parks a greenlet or blocks a plain thread, and waiters of both kinds
//! can wait on the same object at once. Every blocking call is a cancellation point: `kill` and
//! `timeout` unwind out of the wait and leave the object consistent (a cancelled waiter never
//! swallows a wake-up meant for another; a killed holder's guard is released by its
//! destructor). All of it is built on one internal `wait_queue` over the runtime's `park`.
//! `docs/sync.md` lists each primitive with its fairness and its gevent name.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod channel;
mod condvar;
mod event;
mod group;
mod mutex;
mod queue;
mod queue_core;
mod rwlock;
mod semaphore;
mod spin;
mod wait_queue;

pub use channel::{
    bounded, channel, unbounded, IntoIter, Iter, ReadyTimeoutError, Receiver, RecvError,
    RecvTimeoutError, Select, SendError, SendTimeoutError, Sender, TryIter, TryReadyError,
    TryRecvError, TrySendError,
};
pub use condvar::Condvar;
pub use event::{AsyncResult, Event};
pub use group::{Group, Imap, ImapUnordered, Pool, MAP_KILLED};
pub use mutex::{Mutex, MutexGuard};
pub use queue::{JoinableQueue, LifoQueue, PriorityQueue, Queue};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Permit, Semaphore};

/// Greenlet-local storage (gevent's `local`): see [`grove_runtime::greenlet_local!`].
pub use grove_runtime::{greenlet_local, LocalKey};
