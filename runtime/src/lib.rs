//! grove's runtime: greenlets (stackful coroutines) run M:N on a work-stealing scheduler.
//!
//! This crate holds everything below the sockets and the synchronisation toolkit: stacks
//! ([`stack`]), the greenlet task (`task`), the scheduler (`sched`: workers, deques, stealing,
//! idle and wake-up), timers, the driver (the shared poller), the one park primitive
//! ([`park()`]), cancellation (`kill`, [`timeout()`]), the blocking pool, the blocking monitor,
//! and the crash reports. `docs/design.md` in the repository tells the whole story; each module
//! opens with its part of it.
//!
//! Users reach all of this through the `grove` facade crate. The net and sync crates build on
//! [`park()`], [`Unparker`] and the timers.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod asym_fence;
mod blocking;
mod cancel;
pub mod config;
pub mod coop;
mod diag;
mod driver;
mod greenlet;
pub mod io;
mod io_readiness;
mod lazy_vec;
mod local;
mod monitor;
mod overflow;
mod park;
pub mod park_state;
mod sched;
pub mod stack;
mod sync;
mod task;
mod task_alloc;
mod timer;

pub use cancel::{
    is_cancellation, report_expired_scope, scope_deadline, shielded, timeout, Elapsed, Killed,
};
pub use config::{Config, ConfigError};
pub use greenlet::{
    block_in_pool, current, kill_all, spawn, spawn_blocking, workers, workers_if_started, Builder,
    Current, Greenlet, JoinHandle,
};
pub use local::{AccessError, LocalKey};
pub use park::{park, park_borrowed, sleep, sleep_until, yield_now, Here, ParkId, Unparker};
pub use park_state::Wake;
pub use task::GreenletId;

/// Introspection for tests and diagnostics; not a stable API.
#[doc(hidden)]
pub mod debug {
    use crate::sched::{runtime, try_runtime};

    /// Armed timers.
    pub fn armed_timers() -> usize {
        runtime().timers.len()
    }

    /// Threads in the blocking pool.
    pub fn blocking_threads() -> usize {
        runtime().blocking.threads()
    }

    /// Greenlets other workers have taken from a blocked worker's `runnext` slot so far.
    pub fn runnext_steals() -> u64 {
        runtime()
            .runnext_steals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Workers awake right now (0 when the whole runtime sleeps).
    pub fn awake_workers() -> Option<usize> {
        try_runtime().map(|rt| rt.idle.num_unparked())
    }

    /// True if guard pages are installed with `MADV_GUARD_INSTALL` (no mapping per stack).
    pub fn guards_use_madvise() -> bool {
        crate::stack::guards_use_madvise()
    }
}
