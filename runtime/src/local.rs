//! Greenlet-local storage: gevent's `local`, a value per greenlet.
//!
//! `thread_local!` is the wrong tool inside greenlets: many greenlets share one worker thread,
//! and one greenlet may run on several threads over its life (docs/tls.md). A
//! [`greenlet_local!`](crate::greenlet_local) static gives each greenlet its own value instead,
//! made by the initialiser on first use and dropped when the greenlet ends, on the greenlet's
//! own stack, before `join` returns. On a plain thread the value is per thread, dropped when the
//! thread exits; a `spawn_blocking` job, which runs on a pool thread, gets values of its own,
//! dropped when the job ends.
//!
//! Storage is a short vector of (key, boxed value) in the greenlet's header: greenlets use a
//! handful of locals at most, and a linear scan of a few entries beats hashing.

use crate::sched::context::current_task;
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The values of one greenlet (or thread).
#[derive(Default)]
pub(crate) struct LocalMap(Vec<(usize, Box<dyn Any + Send>)>);

impl LocalMap {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops every value, newest first.
    pub(crate) fn clear(&mut self) {
        while let Some(entry) = self.0.pop() {
            drop(entry);
        }
    }

    fn get(&self, key: usize) -> Option<*const (dyn Any + Send)> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v as *const (dyn Any + Send))
    }

    /// Stores `value` for `key`, unless an initialiser that ran meanwhile (re-entrantly, for the
    /// same key) stored one first: then that one stays and `value` is dropped.
    fn insert(&mut self, key: usize, value: Box<dyn Any + Send>) -> *const (dyn Any + Send) {
        if let Some(v) = self.get(key) {
            return v;
        }
        self.0.push((key, value));
        &*self.0.last().expect("grove: local just pushed").1
    }
}

thread_local! {
    static THREAD_LOCALS: RefCell<LocalMap> = RefCell::new(LocalMap::default());
}

/// Drops this plain thread's values, newest first, until none is left (a destructor may make
/// new ones): a `spawn_blocking` job's values die with the job, as a greenlet's do, instead of
/// passing to the next job on the same pool thread. A destructor that panics has its message
/// printed; the rest are still dropped.
pub(crate) fn clear_thread_locals() {
    loop {
        let map = THREAD_LOCALS.with(|m| std::mem::take(&mut *m.borrow_mut()));
        if map.is_empty() {
            return;
        }
        let mut map = map;
        while !map.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| map.clear()));
        }
    }
}

/// A plain thread's value for `key` (through a non-inlined accessor, like every runtime
/// thread-local: see docs/tls.md). The initialiser runs with no borrow of the map held, so it
/// may use other locals.
#[inline(never)]
fn thread_value(key: usize, make: impl FnOnce() -> Box<dyn Any + Send>) -> *const (dyn Any + Send) {
    if let Some(v) = THREAD_LOCALS.with(|m| m.borrow().get(key)) {
        return v;
    }
    let value = make();
    THREAD_LOCALS.with(|m| m.borrow_mut().insert(key, value))
}

/// The running greenlet `h`'s value for `key`; the initialiser runs with no borrow of the map
/// held (it may use other locals, do I/O, park).
fn greenlet_value(
    h: &crate::task::Header,
    key: usize,
    make: impl FnOnce() -> Box<dyn Any + Send>,
) -> *const (dyn Any + Send) {
    let map = h.local_ptr();
    // SAFETY: the running greenlet alone touches its own local part; this borrows the `locals`
    // field only, and the borrow ends before `make` runs.
    if let Some(v) = unsafe { (*map).locals.get(key) } {
        return v;
    }
    let value = make();
    // SAFETY: as above; `make` has returned, so nothing else borrows the field.
    unsafe { (*map).locals.insert(key, value) }
}

static NEXT_KEY: AtomicUsize = AtomicUsize::new(1);

/// A greenlet-local variable; declare one with [`greenlet_local!`](crate::greenlet_local).
pub struct LocalKey<T: Send + 'static> {
    init: fn() -> T,
    key: AtomicUsize,
}

impl<T: Send + 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            key: AtomicUsize::new(0),
        }
    }

    fn key(&self) -> usize {
        let k = self.key.load(Relaxed);
        if k != 0 {
            return k;
        }
        let fresh = NEXT_KEY.fetch_add(1, Relaxed);
        match self.key.compare_exchange(0, fresh, Relaxed, Relaxed) {
            Ok(_) => fresh,
            Err(won) => won,
        }
    }

    /// Runs `f` with the current greenlet's value (the current thread's on a plain thread),
    /// making it with the initialiser on first use.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self.key();
        let make = || Box::new((self.init)()) as Box<dyn Any + Send>;
        let h = current_task();
        let ptr = if h.is_null() {
            thread_value(key, make)
        } else {
            // SAFETY: a non-null current task is the greenlet running this code, alive while it
            // runs.
            greenlet_value(unsafe { &*h }, key, make)
        };
        // SAFETY: values are boxed, so they stay put when the map grows, and are dropped only
        // when the greenlet (thread) ends, which cannot happen while `f` runs in it.
        let value = unsafe { &*ptr };
        f(value
            .downcast_ref::<T>()
            .expect("grove: greenlet-local key holds a value of another type"))
    }
}

/// Declares greenlet-local statics, like `thread_local!`:
///
/// ```
/// grove_runtime::greenlet_local! {
///     static REQUESTS: std::cell::Cell<u32> = std::cell::Cell::new(0);
/// }
/// REQUESTS.with(|r| r.set(r.get() + 1));
/// ```
#[macro_export]
macro_rules! greenlet_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr;)+) => {
        $(
            $(#[$attr])*
            $vis static $name: $crate::LocalKey<$t> = $crate::LocalKey::new({
                fn __grove_local_init() -> $t {
                    $init
                }
                __grove_local_init
            });
        )+
    };
}
