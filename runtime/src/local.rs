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
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The values of one greenlet (or thread). During a teardown ([`drop_all`]) a dropped value's
/// entry holds a [`Dropped`] marker instead: using that key again panics, as a `thread_local!`
/// does after its destructor has run. (A destructor that used its own key used to make the
/// value again, for ever.) The marker is a zero-sized box: no allocation, and no field beside
/// the vector (a list of dropped keys cost every greenlet 24 bytes, a size class of its cell).
#[derive(Default)]
pub(crate) struct LocalMap {
    values: crate::lazy_vec::LazyVec<(usize, Box<dyn Any + Send>)>,
}

/// The value of a key the teardown in progress has dropped.
struct Dropped;

/// The panic of a key used after its value was dropped.
const USED_AFTER_DROP: &str = "grove: a greenlet-local was used after its value was dropped \
                               (by a destructor of the greenlet's or thread's locals)";

impl LocalMap {
    fn get(&self, key: usize) -> Option<*const (dyn Any + Send)> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v as *const (dyn Any + Send))
    }

    /// True if `key`'s value was dropped by the teardown in progress.
    fn is_dropped(&self, key: usize) -> bool {
        // SAFETY: `get` points into a live entry of this map, borrowed for the call.
        self.get(key)
            .is_some_and(|v| unsafe { &*v }.is::<Dropped>())
    }

    /// Swaps the newest value still alive for a [`Dropped`] marker, and gives it out.
    fn take_newest_alive(&mut self) -> Option<Box<dyn Any + Send>> {
        let (_, v) = self
            .values
            .iter_mut()
            .rev()
            .find(|(_, v)| !v.is::<Dropped>())?;
        Some(std::mem::replace(v, Box::new(Dropped)))
    }

    /// Stores `value` for `key`, unless an initialiser that ran meanwhile (re-entrantly, for the
    /// same key) stored one first: then that one stays, and `value` is handed back for the
    /// caller to drop once it no longer borrows the map (its `Drop` may use locals).
    fn insert(&mut self, key: usize, value: Box<dyn Any + Send>) -> Inserted {
        if let Some(v) = self.get(key) {
            return (v, Some(value));
        }
        self.values.push((key, value));
        (
            &*self.values.last().expect("grove: local just pushed").1,
            None,
        )
    }
}

/// The value stored for a key, and the value that lost the race to be it, if any.
type Inserted = (*const (dyn Any + Send), Option<Box<dyn Any + Send>>);

/// Drops every value of the map that `map` reaches, newest first, one at a time with no borrow
/// held (a destructor may use other locals, or make new ones: those go in a later round). A key
/// whose value is gone cannot be made again, so this ends. A destructor that panics has its
/// message printed and the rest are still dropped (one `catch_unwind` around all of them let a
/// second panic, during the first one's unwind, abort the process). The map is left empty and
/// its keys usable again.
///
/// # Safety
///
/// `map` gives a pointer to a map only this thread uses, valid for the whole call, and nothing
/// else borrows the map while the function holds it (it never does across a destructor).
pub(crate) unsafe fn drop_all(map: impl Fn() -> *mut LocalMap) {
    // SAFETY: the caller's promise; the borrow ends with the statement. (Most greenlets have
    // no locals: nothing to walk or clear.)
    if unsafe { (*map()).values.is_empty() } {
        return;
    }
    // SAFETY: the caller's promise; each borrow ends with its statement.
    while let Some(value) = unsafe { (*map()).take_newest_alive() } {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(value)));
    }
    // SAFETY: as above (the markers own nothing).
    unsafe { (*map()).values.clear() };
}

thread_local! {
    /// This plain thread's map: null until first used, then a leaked box, freed (and set to
    /// [`TORN_DOWN`]) by [`ThreadTeardown`]'s destructor. A raw pointer in a `const` cell has no
    /// destructor of its own, so the map stays reachable while std runs the thread's other
    /// destructors, in an order it does not promise. (A `RefCell<LocalMap>` here was dropped by
    /// std as a plain vector: oldest value first, and a value whose `Drop` used any grove local
    /// panicked inside a thread-local destructor, which aborts the process.)
    static THREAD_MAP: Cell<*mut LocalMap> = const { Cell::new(std::ptr::null_mut()) };
    static TEARDOWN: ThreadTeardown = const { ThreadTeardown };
}

/// [`THREAD_MAP`] once its thread's values are gone for good.
const TORN_DOWN: *mut LocalMap = std::ptr::dangling_mut();

/// Drops a plain thread's values when it exits, as a greenlet's are dropped when it ends.
struct ThreadTeardown;

impl Drop for ThreadTeardown {
    fn drop(&mut self) {
        clear_thread_locals();
        let state = thread_map_state();
        THREAD_MAP.with(|m| m.set(TORN_DOWN));
        if let ThreadMap::Live(map) = state {
            // SAFETY: a box leaked by `thread_map`, which nobody uses any more: the cell now
            // says `TORN_DOWN`.
            drop(unsafe { Box::from_raw(map) });
        }
    }
}

/// Where this plain thread's map stands.
enum ThreadMap {
    NotMade,
    Live(*mut LocalMap),
    TornDown,
}

/// Where this plain thread's map stands (through a non-inlined accessor, like every runtime
/// thread-local: see docs/tls.md).
#[inline(never)]
fn thread_map_state() -> ThreadMap {
    match THREAD_MAP.with(Cell::get) {
        map if map.is_null() => ThreadMap::NotMade,
        TORN_DOWN => ThreadMap::TornDown,
        map => ThreadMap::Live(map),
    }
}

/// This plain thread's map, made on first use; `None` once the thread's teardown has run.
fn thread_map() -> Option<*mut LocalMap> {
    match thread_map_state() {
        ThreadMap::Live(map) => Some(map),
        ThreadMap::TornDown => None,
        ThreadMap::NotMade => {
            // The teardown must run at exit: touching it registers its destructor. If it has
            // already run (a later thread-local destructor), the values are gone for good.
            TEARDOWN.try_with(|_| ()).ok()?;
            let map = Box::into_raw(Box::<LocalMap>::default());
            THREAD_MAP.with(|m| m.set(map));
            Some(map)
        }
    }
}

/// Drops this plain thread's values, newest first, until none is left (a destructor may make
/// new ones): a `spawn_blocking` job's values die with the job, as a greenlet's do, instead of
/// passing to the next job on the same pool thread. A destructor that panics has its message
/// printed; the rest are still dropped.
pub(crate) fn clear_thread_locals() {
    if let ThreadMap::Live(map) = thread_map_state() {
        // SAFETY: the map is this thread's, alive until the teardown frees it after this call;
        // nothing here borrows it across a destructor.
        unsafe { drop_all(|| map) }
    }
}

/// A plain thread's value for `key` (through a non-inlined accessor, like every runtime
/// thread-local: see docs/tls.md). The initialiser runs with no borrow of the map held, so it
/// may use other locals.
#[inline(never)]
fn thread_value(key: usize, make: impl FnOnce() -> Box<dyn Any + Send>) -> *const (dyn Any + Send) {
    let map = thread_map().unwrap_or_else(|| panic!("{USED_AFTER_DROP}"));
    // SAFETY: this thread's live map; the borrow ends with the statement.
    if let Some(v) = unsafe { (*map).get(key) } {
        return v;
    }
    let value = make();
    // SAFETY: as above (`make` has returned, so nothing else borrows the map).
    let (v, lost) = unsafe { (*map).insert(key, value) };
    drop(lost); // with no borrow of the map held
    v
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
    let (v, lost) = unsafe { (*map).locals.insert(key, value) };
    drop(lost); // with no borrow of the map held
    v
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
        self.with_made_by(self.init, f)
    }

    /// [`LocalKey::with`], with `init` making the value if there is none yet (the key's own
    /// initialiser is not run then).
    fn with_made_by<R>(&'static self, init: impl FnOnce() -> T, f: impl FnOnce(&T) -> R) -> R {
        let key = self.key();
        let make = || Box::new(init()) as Box<dyn Any + Send>;
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
        match value.downcast_ref::<T>() {
            Some(v) => f(v),
            None if value.is::<Dropped>() => panic!("{USED_AFTER_DROP}"),
            None => panic!("grove: greenlet-local key holds a value of another type"),
        }
    }

    /// `set` of the cell types: `put`s `value` into the existing cell, or `make`s the cell from
    /// it if there is none yet (the initialiser is not run).
    fn set_or_make<V>(&'static self, value: V, make: fn(V) -> T, put: fn(&T, V)) {
        let value = std::cell::Cell::new(Some(value));
        self.with_made_by(
            || make(value.take().expect("grove: local value set twice")),
            |c| {
                if let Some(v) = value.take() {
                    put(c, v)
                }
            },
        )
    }

    /// [`LocalKey::with`], or an error instead of a panic where `with` would panic (the
    /// value was dropped by the teardown in progress), as `std::thread::LocalKey::try_with`.
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, AccessError> {
        let key = self.key();
        let h = current_task();
        let dropped = if h.is_null() {
            match thread_map_state() {
                ThreadMap::TornDown => true,
                ThreadMap::NotMade => false, // no value yet: `with` makes one
                // SAFETY: this thread's live map; the borrow ends with the statement.
                ThreadMap::Live(map) => unsafe { (*map).is_dropped(key) },
            }
        } else {
            // SAFETY: the running greenlet alone touches its own local part; the borrow ends
            // with the statement.
            unsafe { (*(*h).local_ptr()).locals.is_dropped(key) }
        };
        if dropped {
            return Err(AccessError);
        }
        Ok(self.with(f))
    }
}

/// The error of [`LocalKey::try_with`]: the value is gone (std's `AccessError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError;

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already destroyed")
    }
}

impl std::error::Error for AccessError {}

/// `std::thread::LocalKey`'s conveniences for a `Cell`.
impl<T: Copy + Send + 'static> LocalKey<std::cell::Cell<T>> {
    /// The value.
    pub fn get(&'static self) -> T {
        self.with(|c| c.get())
    }
}

/// `std::thread::LocalKey`'s conveniences for a `Cell` (any value).
impl<T: Send + 'static> LocalKey<std::cell::Cell<T>> {
    /// Sets the value; the initialiser is not run if there was none yet (as std's `set`).
    pub fn set(&'static self, value: T) {
        self.set_or_make(value, std::cell::Cell::new, std::cell::Cell::set)
    }

    /// Takes the value, leaving `T::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(|c| c.take())
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
    }
}

/// `std::thread::LocalKey`'s conveniences for a `RefCell`.
impl<T: Send + 'static> LocalKey<RefCell<T>> {
    /// Runs `f` with a shared borrow of the value.
    pub fn with_borrow<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        self.with(|c| f(&c.borrow()))
    }

    /// Runs `f` with a mutable borrow of the value.
    pub fn with_borrow_mut<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> R {
        self.with(|c| f(&mut c.borrow_mut()))
    }

    /// Sets the value; the initialiser is not run if there was none yet (as std's `set`).
    pub fn set(&'static self, value: T) {
        self.set_or_make(value, RefCell::new, |c, v| *c.borrow_mut() = v)
    }

    /// Takes the value, leaving `T::default()`.
    pub fn take(&'static self) -> T
    where
        T: Default,
    {
        self.with(|c| c.take())
    }

    /// Replaces the value, returning the old one.
    pub fn replace(&'static self, value: T) -> T {
        self.with(|c| c.replace(value))
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
    // The last declaration may leave out its `;`, as in `thread_local!`.
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr);+ $(;)?) => {
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
