//! The `crate::sync` of the loom models: loom's primitives under the names the protocol files
//! (`park_state.rs`, `io_readiness.rs`, `sched/idle.rs`, `sched/parker.rs`, `sched/runnext.rs`) import from
//! `crate::sync` (in the library, `src/sync.rs` gives std's). Each model includes this file with
//! `#[path]` as its own `mod sync`, and the protocol files the same way, so what loom explores is
//! the production code.

#![allow(unused_imports)]

pub(crate) use loom::hint::spin_loop;
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
pub(crate) use loom::sync::{Condvar, Mutex};
