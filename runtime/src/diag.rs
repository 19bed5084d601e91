//! Panic reports that name the greenlet, as std's name the thread.
//!
//! std's hook prints `thread '<worker>' panicked at ...`, which names the worker thread, not the
//! greenlet that panicked. The runtime wraps the hook in place when it starts. If that is std's
//! default hook, a panic inside a greenlet gets the same report with `greenlet '<name>'`
//! (`<unnamed>` without a name) and the greenlet id; on any other thread the default hook
//! reports it. If the program had set a hook of its own (an error reporter, a logger), every
//! panic goes to that hook, greenlets' included, as std would send them there (it can call
//! `grove::current()` for the greenlet's name): replacing it inside greenlets silently kept
//! their panics from the program's reporter (found by a review). A hook the program sets later
//! replaces ours, as with std.
//!
//! Telling std's default hook from the program's: `take_hook` gives the hook in place and puts
//! the default back, so a second `take_hook` gives the default for certain; the first was the
//! default if both are the same function (same data and vtable pointers: std boxes its default
//! hook in one place, so no two copies of its vtable can differ).

use crate::sched::context::current_task;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static FIRST_NOTE: AtomicBool = AtomicBool::new(true);

/// Installs the greenlet-aware panic hook in front of the current one.
pub(crate) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    let default = std::panic::take_hook();
    let prev_is_default = std::ptr::eq(&*prev, &*default);
    drop(default);
    std::panic::set_hook(Box::new(move |info| {
        let h = current_task();
        if h.is_null() || !prev_is_default {
            return prev(info);
        }
        // SAFETY: the running greenlet's header is alive while it runs (and panics).
        let h = unsafe { &*h };
        report(h.name.as_deref().unwrap_or("<unnamed>"), h.id.0, info);
    }));
}

fn report(name: &str, id: u64, info: &PanicHookInfo<'_>) {
    let msg = match info.payload().downcast_ref::<&str>() {
        Some(s) => *s,
        None => match info.payload().downcast_ref::<String>() {
            Some(s) => s.as_str(),
            None => "Box<dyn Any>",
        },
    };
    let location = info
        .location()
        .map(|l| l.to_string())
        .unwrap_or_else(|| "<unknown>".into());
    let bt = Backtrace::capture();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\ngreenlet '{name}' (id {id}) panicked at {location}:\n{msg}"
    );
    if bt.status() == BacktraceStatus::Captured {
        let _ = writeln!(err, "stack backtrace:\n{bt}");
    } else if FIRST_NOTE.swap(false, Relaxed) {
        let _ = writeln!(
            err,
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
        );
    }
}
