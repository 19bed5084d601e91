//! Panic reports that name the greenlet, as std's name the thread.
//!
//! std's hook prints `thread '<worker>' panicked at ...`, which names the worker thread, not the
//! greenlet that panicked. The runtime wraps the hook installed when it starts: inside a
//! greenlet it prints the same report with `greenlet '<name>'` (`<unnamed>` without a name) and
//! the greenlet id; on any other thread it defers to the previous hook. A hook the program sets
//! later replaces ours, as with std.

use crate::sched::context::current_task;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static FIRST_NOTE: AtomicBool = AtomicBool::new(true);

/// Installs the greenlet-aware panic hook in front of the current one.
pub(crate) fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let h = current_task();
        if h.is_null() {
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
