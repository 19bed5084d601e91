//! grove: gevent for Rust. Greenlets (stackful coroutines) run M:N across worker threads with
//! work stealing, so plain synchronous code (`read`, `lock`, `recv`, `sleep`) scales across
//! cores with no `async` and no callbacks.
//!
//! ```
//! use std::time::Duration;
//!
//! let handles: Vec<_> = (0..10)
//!     .map(|i| grove::spawn(move || {
//!         grove::sleep(Duration::from_millis(10));
//!         i * 2
//!     }))
//!     .collect();
//! let total: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(total, 90);
//! ```
//!
//! Every blocking call works both in a greenlet (it parks only that greenlet) and on a plain
//! OS thread (it blocks the thread). The runtime starts on first use; `GROVE_WORKERS`,
//! `GROVE_STACK_SIZE` and `GROVE_MAX_BLOCKING_MS` configure it (see the README).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use grove_runtime::{
    current, greenlet_local, kill_all, sleep, sleep_until, spawn, spawn_blocking, timeout, workers,
    yield_now, AccessError, Builder, Current, Elapsed, Greenlet, GreenletId, JoinHandle, Killed,
    LocalKey,
};

/// Locks, events, channels, queues, groups and pools (gevent's toolkit), for greenlets and
/// threads alike.
pub mod sync {
    pub use grove_sync::*;
}

/// Sockets on the shared poller (std's names and signatures) and gevent's `StreamServer`.
pub mod net {
    pub use grove_net::*;
}

/// Readiness of raw fds on the runtime's shared poller: the way in for other libraries'
/// sockets (`wait_readable`, `wait_writable`), and [`io::Registration`] for fds that stay
/// registered.
pub mod io {
    pub use grove_runtime::io::{wait_readable, wait_writable, Direction, Registration};
}

/// The runtime's building blocks, for libraries that add their own blocking calls: the park
/// primitive every blocking call goes through, and its wake-up token.
pub mod rt {
    pub use grove_runtime::{coop, park, Config, ConfigError, Unparker, Wake};
}

#[doc(hidden)]
pub use grove_runtime::debug;

pub mod ab;
