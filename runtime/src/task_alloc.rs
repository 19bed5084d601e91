//! Memory for task cells: per-worker free lists by size class, in front of the global allocator.
//!
//! Every spawn allocates one task cell and every finished, joined greenlet frees one. Through
//! glibc's malloc that pair cost about 550 instructions (measured with callgrind on the
//! spawn+join wave bench): with thousands of cells live at once its per-thread cache overflows
//! and every free goes through the general bins. Go keeps per-P caches of goroutine structs for
//! the same reason.
//!
//! Cells up to [`MAX_CACHED`] bytes are rounded up to a multiple of [`CLASS_BYTES`] and kept, once
//! freed, on the freeing worker's list for that class (no lock, no atomics). A list past
//! [`LOCAL_MAX`] spills half to a global list per class; a worker whose list is empty takes a
//! batch from it; the global list past [`GLOBAL_MAX_BYTES`] gives memory back to the allocator.
//! Frees on plain threads go straight to the global list. Larger cells use the global
//! allocator directly.

use crate::sched::context::current_core;
use parking_lot::Mutex;
use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr::NonNull;

/// Size-class granularity of cached cells.
pub(crate) const CLASS_BYTES: usize = 64;
/// Alignment of cached cells: what malloc gives anyway, so no `posix_memalign` slow path.
const CLASS_ALIGN: usize = 16;
/// Largest cell kept in the caches.
pub(crate) const MAX_CACHED: usize = 1024;
const CLASSES: usize = MAX_CACHED / CLASS_BYTES;
/// Cells a worker keeps per class before spilling half.
const LOCAL_MAX: usize = 256;
/// Bytes the global list keeps per class before freeing to the allocator: enough for waves of
/// tens of thousands of short greenlets to reuse their cells.
const GLOBAL_MAX_BYTES: usize = 16 << 20;

/// Free cells, by class.
struct FreeLists([Vec<NonNull<u8>>; CLASSES]);

// SAFETY: the lists hold exclusive ownership of freed blocks; nothing else refers to them.
unsafe impl Send for FreeLists {}

static GLOBAL: Mutex<FreeLists> = Mutex::new(FreeLists([const { Vec::new() }; CLASSES]));

/// A worker's own free lists (lives in its core; only that thread touches it).
pub(crate) struct LocalCells(UnsafeCell<FreeLists>);

impl LocalCells {
    pub(crate) fn new() -> LocalCells {
        LocalCells(UnsafeCell::new(FreeLists([const { Vec::new() }; CLASSES])))
    }

    /// # Safety
    /// Only the owning worker's thread, never re-entrantly.
    #[allow(clippy::mut_from_ref)]
    unsafe fn lists(&self) -> &mut FreeLists {
        // SAFETY: the caller's promise.
        unsafe { &mut *self.0.get() }
    }
}

fn class_of(layout: Layout) -> Option<usize> {
    (layout.size() <= MAX_CACHED && layout.align() <= CLASS_ALIGN && layout.size() > 0)
        .then(|| layout.size().div_ceil(CLASS_BYTES) - 1)
}

fn class_layout(class: usize) -> Layout {
    Layout::from_size_align((class + 1) * CLASS_BYTES, CLASS_ALIGN)
        .expect("grove: bad size-class layout")
}

/// Allocates a block for `layout` (aborts on out-of-memory, like `Box::new`).
pub(crate) fn alloc(layout: Layout) -> NonNull<u8> {
    let Some(class) = class_of(layout) else {
        return system_alloc(layout);
    };
    let core = current_core();
    if !core.is_null() {
        // SAFETY: a non-null current core is this worker's own; nothing else touches its lists.
        let local = unsafe { (*core).cells().lists() };
        if let Some(p) = local.0[class].pop() {
            return p;
        }
        let mut global = GLOBAL.lock();
        let g = &mut global.0[class];
        let take = g.len().min(LOCAL_MAX / 2);
        local.0[class].extend(g.drain(g.len() - take..));
        drop(global);
        if let Some(p) = local.0[class].pop() {
            return p;
        }
    } else if let Some(p) = GLOBAL.lock().0[class].pop() {
        return p;
    }
    system_alloc(class_layout(class))
}

/// Frees a block from [`alloc`] with the same `layout`.
///
/// # Safety
/// `p` came from `alloc(layout)` and is not used again.
pub(crate) unsafe fn dealloc(p: NonNull<u8>, layout: Layout) {
    let Some(class) = class_of(layout) else {
        // SAFETY: allocated by `system_alloc(layout)`.
        return unsafe { std::alloc::dealloc(p.as_ptr(), layout) };
    };
    let core = current_core();
    if !core.is_null() {
        // SAFETY: as in `alloc`.
        let local = unsafe { (*core).cells().lists() };
        let l = &mut local.0[class];
        l.push(p);
        if l.len() <= LOCAL_MAX {
            return;
        }
        let mut global = GLOBAL.lock();
        global.0[class].extend(l.drain(..LOCAL_MAX / 2));
        trim(&mut global.0[class], class);
        return;
    }
    let mut global = GLOBAL.lock();
    global.0[class].push(p);
    trim(&mut global.0[class], class);
}

fn trim(list: &mut Vec<NonNull<u8>>, class: usize) {
    while list.len() * (class + 1) * CLASS_BYTES > GLOBAL_MAX_BYTES {
        let p = list.pop().expect("grove: list shorter than its length");
        // SAFETY: every cached block was allocated with its class layout and is unused.
        unsafe { std::alloc::dealloc(p.as_ptr(), class_layout(class)) };
    }
}

fn system_alloc(layout: Layout) -> NonNull<u8> {
    // SAFETY: task cells are never zero-sized (they hold a header).
    let p = unsafe { std::alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}
