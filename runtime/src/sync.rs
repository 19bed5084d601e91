//! Synchronisation primitives the runtime's park/wake protocols are written against.
//!
//! The protocol files (`park_state.rs`, `sched/idle.rs`, `sched/runnext.rs`) name their atomics through
//! `crate::sync`. The loom models in `tests/loom_*.rs` include those same files with `#[path]`
//! inside a crate whose `sync` module is loom's (`tests/loom_support/sync.rs`, this file's
//! twin), so what loom explores is the production code.

pub(crate) use std::hint::spin_loop;
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
pub(crate) use std::sync::{Condvar, Mutex};
