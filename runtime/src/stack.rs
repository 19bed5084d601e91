//! Greenlet stacks: mmap'd, committed page by page, guarded, pooled.
//!
//! # Layout
//!
//! Stacks of the default size are carved out of *slabs*: one large `MAP_NORESERVE` mapping holds
//! hundreds of slots, each `[guard | stack]`, lowest address first. Pages are committed by the
//! kernel as the greenlet touches them, so a greenlet that stays shallow costs one page.
//!
//! # Guards without a mapping each
//!
//! The classic guard page is `mprotect(PROT_NONE)`, which splits the mapping: two mappings per
//! stack, and Linux's default `vm.max_map_count` of 65,530 then caps a process near 32k stacks
//! (this is where may fails). Linux 6.13 added `madvise(MADV_GUARD_INSTALL)`, which marks pages
//! inside a mapping as guard pages in the page tables alone: a touch faults, and the mapping stays
//! whole. We use it where the kernel has it and fall back to `mprotect` (probed once) elsewhere.
//! Guards survive `MADV_DONTNEED`, so a slot keeps its guard for life.
//!
//! # Pooling
//!
//! A finished greenlet's stack goes first to its worker's cache (no lock), then to a global pool
//! of *warm* stacks (pages still committed, reused at no fault cost). Past `WARM_POOL_MAX`
//! warm stacks, the excess has its pages released with `MADV_DONTNEED` and is kept only as an
//! address range, a *cold* slot. Releasing is not done on the worker that returns the stack but
//! by a scavenger ([`StackPool::scavenge`], run by the monitor thread): at most
//! `SCAVENGE_BATCH` stacks per tick while workers are busy, everything once they are idle.
//! After a burst of 100,000 greenlets, releasing and later re-faulting every page on the hot
//! path cost more than the burst itself (each is page-table work, which this kind of VM
//! serialises), and Go's runtime returns memory the same lazy way. Slabs themselves are never
//! unmapped: the address space is cheap, the mappings few.
//!
//! Stacks of any other size (`Builder::stack_size`) get a mapping of their own and are unmapped
//! when their greenlet ends.
//!
//! # Reserving at spawn, taking at first run
//!
//! A greenlet takes its stack only when it first runs, and gives it back when it ends. A wave of
//! 10,000 spawns followed by 10,000 joins then cycles through a handful of warm stacks instead
//! of faulting in 10,000 fresh ones. But running out must still be reported by `spawn`, not by a
//! greenlet that silently cannot start. So `spawn` *reserves* a stack ([`StackPool::reserve`]):
//! the pool keeps `carved >= reserved`, carving (mapping slabs, installing guards) at reservation
//! time, which is where address space or mappings can run out. Workers reserve in batches of
//! `CREDIT_BATCH` and hand credits back as greenlets end, so the shared counter is touched once
//! per batch, not per spawn.

use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Bytes of guard below each stack. With `MADV_GUARD_INSTALL` they cost no memory and no mapping,
/// so we take more than one page: a frame that skips a single page still lands in the guard.
/// (Rust code probes every page of a large frame, so any guard catches it; the slack is for C.)
/// Not more: installing a 64 KiB guard measured 1.24 us against 0.83 us for 16 KiB. Never less
/// than a page, though: on a kernel with 64 KiB pages (some aarch64 distributions) a 16 KiB guard
/// left 3 slots in 4 with a guard that started off a page boundary, which `madvise` and
/// `mprotect` refuse (reported as mappings run out).
fn guard_size() -> usize {
    static GUARD: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *GUARD.get_or_init(|| (16 * 1024).max(crate::config::page_size()))
}

/// Virtual bytes reserved per slab.
const SLAB_BYTES: usize = 256 << 20;

/// Warm stacks the global pool keeps before the scavenger releases their pages.
pub(crate) const WARM_POOL_MAX: usize = 1024;

/// Stacks the scavenger releases per monitor tick while workers are busy.
pub(crate) const SCAVENGE_BATCH: usize = 1024;

/// Stacks a worker keeps to itself before spilling half to the global pool.
pub(crate) const LOCAL_CACHE_MAX: usize = 64;

/// Reservations a worker takes from the pool at a time.
pub(crate) const CREDIT_BATCH: usize = 32;

const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages are made on this kernel: 0 = not probed, 1 = madvise, 2 = mprotect.
static GUARD_METHOD: AtomicU8 = AtomicU8::new(0);

/// One greenlet stack: `[guard_bottom, bottom)` is the guard, `[bottom, top)` the usable stack.
#[derive(Debug)]
pub struct Stack {
    top: usize,
    bottom: usize,
    guard_bottom: usize,
    /// `Some(len)` for a dedicated mapping starting at `guard_bottom`; `None` for a slab slot.
    dedicated: Option<usize>,
    /// False for a slot carved with its guard still to install (see `StackPool::carve`).
    guarded: bool,
}

// SAFETY: `base` is the top of a mapping we own exclusively (slab slot or dedicated mapping),
// page-aligned hence aligned to STACK_ALIGNMENT; `limit` is its lowest address, guard included.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.top).expect("grove: stack top is null")
    }
    fn limit(&self) -> corosensei::stack::StackPointer {
        corosensei::stack::StackPointer::new(self.guard_bottom).expect("grove: stack limit is null")
    }
}

impl Stack {
    /// The guard range `[start, end)`: a fault there is this stack overflowing.
    pub fn guard(&self) -> (usize, usize) {
        (self.guard_bottom, self.bottom)
    }

    /// Installs the guard if the slot was carved without one. Done by the worker that first runs
    /// a greenlet on this slot, so the page-table work spreads over the workers instead of
    /// queueing on the thread that spawns.
    pub fn ensure_guard(&mut self) -> io::Result<()> {
        if !self.guarded {
            install_guard(self.guard_bottom, self.bottom - self.guard_bottom)?;
            self.guarded = true;
        }
        Ok(())
    }

    /// True for a stack in a mapping of its own.
    pub fn is_dedicated(&self) -> bool {
        self.dedicated.is_some()
    }

    /// Gives back the memory of this stack's pages (keeps the range and the guard).
    fn release_pages(&self) {
        // SAFETY: [bottom, top) lies inside a mapping we own and nothing runs on this stack now;
        // MADV_DONTNEED on private anonymous memory just drops the pages (they read back as zero).
        unsafe {
            libc::madvise(
                self.bottom as *mut libc::c_void,
                self.top - self.bottom,
                libc::MADV_DONTNEED,
            );
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(len) = self.dedicated {
            // SAFETY: a dedicated stack owns exactly [guard_bottom, guard_bottom + len), mapped by
            // `map_dedicated`; nothing runs on it once its coroutine has been taken apart.
            unsafe { libc::munmap(self.guard_bottom as *mut libc::c_void, len) };
        }
        // Slab slots are handed back through `StackPool::put`, never dropped while in use; a slot
        // dropped here (pool torn down) just stays reserved in its slab.
    }
}

/// Where default-size stacks come from.
pub struct StackPool {
    stack_size: usize,
    inner: Mutex<PoolInner>,
    /// A worker found no stack to take and could carve none, though every started greenlet
    /// has one reserved: the free ones sit in other workers' caches. Set until a worker gets
    /// one; meanwhile every worker gives its cache back (see `sched::worker`).
    shortage: std::sync::atomic::AtomicBool,
}

struct PoolInner {
    warm: Vec<Stack>,
    cold: Vec<Stack>,
    /// Stacks promised to spawned greenlets that have not ended.
    reserved: usize,
    /// Slots carved so far (guard installed); always >= `reserved`.
    carved: usize,
    /// Unused slots at the end of the newest slab: next slot address, slots left.
    bump: usize,
    bump_left: usize,
}

impl StackPool {
    /// A pool of stacks of `stack_size` usable bytes (page-rounded by the caller).
    pub fn new(stack_size: usize) -> StackPool {
        StackPool {
            stack_size,
            shortage: std::sync::atomic::AtomicBool::new(false),
            inner: Mutex::new(PoolInner {
                warm: Vec::new(),
                cold: Vec::new(),
                reserved: 0,
                carved: 0,
                bump: 0,
                bump_left: 0,
            }),
        }
    }

    /// The usable size of this pool's stacks.
    pub fn stack_size(&self) -> usize {
        self.stack_size
    }

    /// Promises `n` more stacks, carving slots until every promise can be kept. Fails, promising
    /// nothing, with an error saying what ran out.
    pub fn reserve(&self, n: usize) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.reserved += n;
        while inner.carved < inner.reserved {
            if let Err(e) = self.carve(&mut inner) {
                inner.reserved -= n;
                return Err(e);
            }
        }
        Ok(())
    }

    /// True while a worker waits for stacks cached by others (see `shortage`).
    pub fn in_shortage(&self) -> bool {
        self.shortage.load(Relaxed)
    }

    /// Marks the start or the end of a shortage.
    pub fn set_shortage(&self, on: bool) {
        if self.shortage.load(Relaxed) != on {
            self.shortage.store(on, Relaxed);
        }
    }

    /// Takes back `n` promises (their greenlets ended).
    pub fn unreserve(&self, n: usize) {
        let mut inner = self.inner.lock();
        assert!(
            inner.reserved >= n,
            "grove: stack reservations went negative"
        );
        inner.reserved -= n;
    }

    /// Takes up to `want` stacks into `out` (at least one, or an error saying what ran out).
    pub fn take_into(&self, out: &mut Vec<Stack>, want: usize) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let start = out.len();
        while out.len() - start < want {
            match inner.warm.pop().or_else(|| inner.cold.pop()) {
                Some(s) => out.push(s),
                None => break,
            }
        }
        if out.len() == start {
            // Every carved slot is in use or cached by another worker: carve one more.
            self.carve(&mut inner)?;
            out.push(inner.cold.pop().expect("grove: carved slot vanished"));
        }
        Ok(())
    }

    /// Carves one fresh slot (mapping a slab if needed) into the cold list.
    ///
    /// With `MADV_GUARD_INSTALL` the guard is left to [`Stack::ensure_guard`] at first use: it
    /// needs no mapping, so it cannot fail for want of one, and installing it costs ~0.8 us of
    /// page-table work that is better spent on the workers than on the spawning thread. With the
    /// `mprotect` fallback every guard is a mapping, which can run out, so it is installed here,
    /// where running out is reported by `spawn`.
    fn carve(&self, inner: &mut PoolInner) -> io::Result<()> {
        let slot = guard_size() + self.stack_size;
        if inner.bump_left == 0 {
            let (base, count) = map_slab(slot)?;
            inner.bump = base;
            inner.bump_left = count;
        }
        let guard_bottom = inner.bump;
        let lazy = guards_use_madvise();
        if !lazy {
            install_guard(guard_bottom, guard_size())?;
        }
        inner.bump += slot;
        inner.bump_left -= 1;
        inner.carved += 1;
        inner.cold.push(Stack {
            top: guard_bottom + slot,
            bottom: guard_bottom + guard_size(),
            guard_bottom,
            dedicated: None,
            guarded: !lazy,
        });
        Ok(())
    }

    /// Returns stacks to the pool, warm (see [`StackPool::scavenge`] for when pages go).
    pub fn put_all(&self, stacks: impl IntoIterator<Item = Stack>) {
        let mut inner = self.inner.lock();
        for s in stacks {
            debug_assert!(s.dedicated.is_none(), "grove: dedicated stack in the pool");
            inner.warm.push(s);
        }
    }

    /// Releases the pages of up to `max` warm stacks beyond `WARM_POOL_MAX`, outside the
    /// pool's lock. Returns how many it released.
    pub fn scavenge(&self, max: usize) -> usize {
        let excess: Vec<Stack> = {
            let mut inner = self.inner.lock();
            let n = inner.warm.len().saturating_sub(WARM_POOL_MAX).min(max);
            // The oldest returned stacks sit at the front: they are the coldest in cache.
            inner.warm.drain(..n).collect()
        };
        let n = excess.len();
        for s in &excess {
            s.release_pages();
        }
        if n > 0 {
            self.inner.lock().cold.extend(excess);
        }
        n
    }
}

/// A stack of `size` usable bytes in a mapping of its own (for `Builder::stack_size`).
pub fn map_dedicated(size: usize) -> io::Result<Stack> {
    let size = crate::config::round_to_page(size.max(crate::config::MIN_STACK_SIZE));
    let len = guard_size() + size;
    let base = map_region(len)?;
    if let Err(e) = install_guard(base, guard_size()) {
        // SAFETY: we just mapped [base, base + len) and nothing else refers to it.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
        return Err(e);
    }
    Ok(Stack {
        top: base + len,
        bottom: base + guard_size(),
        guard_bottom: base,
        dedicated: Some(len),
        guarded: true,
    })
}

fn map_slab(slot: usize) -> io::Result<(usize, usize)> {
    let count = (SLAB_BYTES / slot).max(16);
    Ok((map_region(slot * count)?, count))
}

fn map_region(len: usize) -> io::Result<usize> {
    // SAFETY: a fresh private anonymous mapping; the kernel picks the address.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        // ENOMEM means either: out of address space, or out of mappings (vm.max_map_count). Say
        // which, so the advice fits (this is the error path only: reading /proc is fine).
        let message = match mappings_near_limit() {
            Some((used, max)) => format!(
                "grove: cannot map {} MiB for greenlet stacks ({e}): the process has {used} \
                 memory mappings of at most {max}; raise vm.max_map_count \
                 (sysctl -w vm.max_map_count=...)",
                len >> 20
            ),
            None => format!(
                "grove: cannot reserve {} MiB of address space for greenlet stacks ({e}); \
                 lower GROVE_STACK_SIZE or Builder::stack_size, or raise `ulimit -v` / \
                 vm.overcommit settings",
                len >> 20
            ),
        };
        return Err(io::Error::new(io::ErrorKind::OutOfMemory, message));
    }
    #[cfg(target_os = "linux")]
    // SAFETY: advice on the mapping we just made; MADV_NOHUGEPAGE keeps a touched stack page from
    // dragging a 2 MiB huge page (and its RSS) in with it.
    unsafe {
        libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
    }
    Ok(p as usize)
}

/// `(mappings in use, vm.max_map_count)` if the process is within 1% of that limit.
fn mappings_near_limit() -> Option<(usize, usize)> {
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let used = std::fs::read("/proc/self/maps")
        .ok()?
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    (used + max / 100 >= max).then_some((used, max))
}

fn install_guard(addr: usize, len: usize) -> io::Result<()> {
    let method = GUARD_METHOD.load(Relaxed);
    if method != 2 && cfg!(target_os = "linux") {
        // SAFETY: [addr, addr + len) is inside a mapping we own and not yet in use.
        let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
        if r == 0 {
            GUARD_METHOD.store(1, Relaxed);
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if method == 1 || e.raw_os_error() != Some(libc::EINVAL) {
            return Err(out_of_mappings(e));
        }
        GUARD_METHOD.store(2, Relaxed); // kernel older than 6.13: fall back for good
    }
    // SAFETY: as above; PROT_NONE makes the range fault on any access.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
    if r != 0 {
        return Err(out_of_mappings(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether [`install_guards`] may batch: cleared for good when the kernel does not support it.
#[cfg(target_os = "linux")]
static BATCH_GUARDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `PIDFD_SELF` (Linux 6.15+): "the calling thread" for pidfd-taking syscalls, with no fd to
/// open, and none inherited by a forked child that would then advise its parent's memory.
#[cfg(target_os = "linux")]
const PIDFD_SELF: libc::c_int = -10000;

/// Installs the guards of the not-yet-guarded slots among `stacks` with one `process_madvise`
/// call, instead of one `madvise` each in [`Stack::ensure_guard`]: page-table changes are costly
/// on a virtual machine and batching saves ~0.4 us per stack here (0.65 against 1.07 us, C
/// loop over 100k stacks). Best effort: a slot it did not do keeps `guarded` false and gets its
/// guard one by one at first use (installing a guard twice is harmless).
pub fn install_guards(stacks: &mut [Stack]) {
    #[cfg(target_os = "linux")]
    {
        if !guards_use_madvise() || !BATCH_GUARDS.load(Relaxed) {
            return;
        }
        let mut iov: smallvec::SmallVec<[libc::iovec; 32]> = smallvec::SmallVec::new();
        for s in stacks.iter().filter(|s| !s.guarded) {
            iov.push(libc::iovec {
                iov_base: s.guard_bottom as *mut libc::c_void,
                iov_len: s.bottom - s.guard_bottom,
            });
        }
        if iov.len() < 2 {
            return;
        }
        // SAFETY: each iovec is the guard range of a slot we own, not in use (the slots were
        // just taken from the pool); the kernel reads the iovec array, which outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF,
                iov.as_ptr(),
                iov.len(),
                MADV_GUARD_INSTALL,
                0,
            )
        };
        if r < 0 {
            let unsupported = matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::ENOSYS | libc::EINVAL | libc::EBADF | libc::EPERM)
            );
            if unsupported {
                BATCH_GUARDS.store(false, Relaxed); // older kernel: one by one from now on
            }
            return; // the guards go in one by one at first use
        }
        // The kernel advises the ranges in order; `r` bytes of them were done.
        let mut done = r as usize;
        for s in stacks.iter_mut().filter(|s| !s.guarded) {
            let len = s.bottom - s.guard_bottom;
            if done < len {
                break;
            }
            done -= len;
            s.guarded = true;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stacks;
}

fn out_of_mappings(e: io::Error) -> io::Error {
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "grove: cannot install a stack guard page ({e}): the process ran out of memory \
             mappings (vm.max_map_count = {max}) or memory; raise vm.max_map_count \
             (sysctl -w vm.max_map_count=N) or run on Linux 6.13+ where guard pages need no mapping"
        ),
    )
}

/// True when guard pages are made with `MADV_GUARD_INSTALL` (after the first stack was made).
pub fn guards_use_madvise() -> bool {
    GUARD_METHOD.load(Relaxed) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_is_whole_pages_so_every_slot_starts_on_a_page() {
        let page = crate::config::page_size();
        assert_eq!(guard_size() % page, 0);
        assert!(guard_size() >= 16 * 1024);
        let stack = crate::config::round_to_page(100_000);
        assert_eq!((guard_size() + stack) % page, 0);
    }
}
