//! Stack-overflow reports for greenlets.
//!
//! A greenlet that overflows its stack touches the guard below it and gets `SIGSEGV`. Without
//! help the process dies with a bare "Segmentation fault", or std's handler (which only knows
//! OS threads' guard pages) says nothing useful. We install a `SIGSEGV`/`SIGBUS` handler, running
//! on the worker's alternate signal stack, that checks whether the faulting address lies in the
//! guard of the greenlet running on this thread; if so it writes
//! `greenlet '<name>' has overflowed its stack` and aborts, like std does for threads. Any other
//! fault is passed to the handler that was installed before ours (std's), or to the default
//! action, unchanged.
//!
//! Everything the handler does is async-signal-safe: it reads a `const` thread-local pointer,
//! fields of the running greenlet's header (alive, since the greenlet is running), formats into
//! a stack buffer and calls `write(2)` and `abort(3)`.

use crate::sched::context::current_task_for_signal;
use std::mem::MaybeUninit;
use std::sync::Once;

static INSTALL: Once = Once::new();
static mut PREV_SEGV: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();
static mut PREV_BUS: MaybeUninit<libc::sigaction> = MaybeUninit::uninit();

/// Size of the alternate signal stack we give a worker that has none.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Installs the handler once per process.
pub(crate) fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: runs once, before any worker exists, so nothing reads PREV_* concurrently; the
        // sigaction structs are fully initialised by zeroing and the fields we set.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(
                libc::SIGSEGV,
                &act,
                (&raw mut PREV_SEGV).cast::<libc::sigaction>(),
            );
            libc::sigaction(
                libc::SIGBUS,
                &act,
                (&raw mut PREV_BUS).cast::<libc::sigaction>(),
            );
        }
    });
}

/// An alternate signal stack this module mapped; dropping it unmaps it.
pub(crate) struct AltStack(*mut libc::c_void);

impl Drop for AltStack {
    fn drop(&mut self) {
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: the thread runs on its own stack here, not on the alternate one, which it
        // stops using before the mapping (ours, `ALTSTACK_SIZE` long) goes.
        unsafe {
            libc::sigaltstack(&off, std::ptr::null_mut());
            libc::munmap(self.0, ALTSTACK_SIZE);
        }
    }
}

/// Gives the calling thread an alternate signal stack if it has none (std gives its threads one
/// only when its own handler is installed). The stack lives as long as what this returns.
pub(crate) fn ensure_altstack() -> Option<AltStack> {
    // SAFETY: sigaltstack with a null new stack only reads the current setting into `old`.
    unsafe {
        let mut old: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut old);
        if old.ss_flags & libc::SS_DISABLE == 0 {
            return None;
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            ALTSTACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return None; // no report on overflow then, but nothing breaks
        }
        let st = libc::stack_t {
            ss_sp: p,
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        libc::sigaltstack(&st, std::ptr::null_mut());
        Some(AltStack(p))
    }
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { fault_address(info) };
    let h = current_task_for_signal();
    if !h.is_null() {
        // A non-null current task is the greenlet running on this thread (the one that faulted,
        // or the worker between switches, when the slot still names a live greenlet); its
        // scheduler slot's guard range is written before it first runs and never after.
        // SAFETY: so the header and slot are alive and their fields stable while we read them.
        let (lo, hi, name) = unsafe {
            let hdr = &*h;
            let slot = &*hdr.sched_slot();
            (slot.guard.0, slot.guard.1, hdr.name.as_deref())
        };
        if addr >= lo && addr < hi {
            report_overflow_and_abort(name.unwrap_or("<unnamed>"));
        }
    }
    // Not ours: hand it to whoever was there before.
    // SAFETY: PREV_* were written once in `install_handler`, before this handler could run.
    unsafe {
        let prev = if sig == libc::SIGBUS {
            (&raw const PREV_BUS).cast::<libc::sigaction>()
        } else {
            (&raw const PREV_SEGV).cast::<libc::sigaction>()
        };
        chain(sig, info, ctx, &*prev);
    }
}

/// # Safety
/// `info` is the siginfo the kernel passed to an SA_SIGINFO handler.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
    // SAFETY: the caller's promise.
    unsafe { (*info).si_addr() as usize }
}

/// # Safety
/// `info` is the siginfo the kernel passed to an SA_SIGINFO handler.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
    // SAFETY: the caller's promise.
    unsafe { (*info).si_addr as usize }
}

/// # Safety
/// Called from the signal handler with the arguments it got.
unsafe fn chain(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
    prev: &libc::sigaction,
) {
    let action = prev.sa_sigaction;
    if action == libc::SIG_DFL || action == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction runs again and the
        // kernel applies it (a core dump with the original signal).
        // SAFETY: a zeroed sigaction with SIG_DFL is valid.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
    } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it has this signature.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(action);
            f(sig, info, ctx);
        }
    } else {
        // SAFETY: without SA_SIGINFO the previous handler takes just the signal number.
        unsafe {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(action);
            f(sig);
        }
    }
}

fn report_overflow_and_abort(name: &str) -> ! {
    const HEAD: &[u8] = b"\ngreenlet '";
    const TAIL: &[u8] =
        b"' has overflowed its stack\nfatal runtime error: stack overflow, aborting\n";
    let mut buf = [0u8; 256];
    // A long name is cut (at a character boundary, marked with "..."), never the message.
    let room = buf.len() - HEAD.len() - TAIL.len();
    let (name, cut) = if name.len() <= room {
        (name, "")
    } else {
        let mut end = room - 3;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        (&name[..end], "...")
    };
    let mut n = 0;
    for part in [HEAD, name.as_bytes(), cut.as_bytes(), TAIL] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    // SAFETY: write(2) and abort(3) are async-signal-safe; `buf[..n]` is initialised.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n);
        libc::abort();
    }
}
