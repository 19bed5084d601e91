//! A worker that ran out of work lingers before it sleeps: for up to `GROVE_IDLE_SPIN_US`
//! (50 µs by default) it keeps looking at its queues, the poller (when no other worker holds
//! it) and the timers, and gives its CPU away with `sched_yield` between looks.
//!
//! # Why not sleep at once
//!
//! A sleep is paid for by whoever ends it, and with the load generator on the same two cores
//! it was paid twice. Measured with wrk on the 256-connection HTTP hello world, two workers
//! (`docs/benchmarks.md`, fourteenth session): a worker slept ~1,500-3,700 times a second, and
//! each time a client's write woke it from `epoll_wait`; wrk was preempted about as often
//! (its involuntary context switches followed the workers' sleeps), and 9-11% of the machine
//! sat idle while wrk, which sets the pace, had less than its core. The kernel places a thread
//! woken through a socket's "sync" wake-up (`sock_def_readable`) next to its waker when it
//! can, here on wrk's CPU, and a CPU left idle beside a busy one does not pull a thread that
//! ran a moment ago. With the linger, the workers stop sleeping under load (a few hundred
//! sleeps a second), wrk keeps its core (about 150 preemptions a second) and the idle share
//! falls to ~2%: 131-138k req/s against 100-120k in the same runs. hyper on tokio, which sleeps
//! at once, shows the same 9-11% idle and the same preemptions of wrk.
//!
//! # Why yield between looks
//!
//! A plain spin was tried first (sixth session) and rejected: a spinning worker took the
//! core wrk needed. `sched_yield` lets the other threads on this CPU's run queue go first (the
//! kernel's EEVDF pushes the yielder's deadline back a slice), so the linger uses mostly time
//! that would otherwise be idle. Sharing a CPU with the other worker, it defers to that one,
//! which has the work.
//!
//! A look comes before each yield, not after: a worker that just ran out of work under load
//! usually finds new readiness on its first poll (the clients never stop writing), and a yield
//! first handed its CPU to a worker sharing it, a context switch for every batch of events.
//! Looking first cut the workers' involuntary switches under the two-worker HTTP load by about
//! two thirds (0.07-0.18 per request to 0.05-0.06; docs/benchmarks.md, fifteenth session).
//!
//! # Bounded
//!
//! After the spin the worker parks as before (`worker::park`), so a runtime with nothing to
//! do uses no CPU (`rt_idle_runtime_uses_no_cpu`); a runtime woken now and then spends one
//! spin per wake-up on each worker that ran out of work. Go's scheduler likewise has a bounded
//! spinning phase that polls the network without blocking before it stops an M
//! (`findrunnable`). `GROVE_IDLE_SPIN_US=0` turns it off.
//!
//! While it lingers a worker stays counted awake but stops counting as searching: after its
//! first look, each look waits behind a yield, and a yield on a CPU shared with a busy thread
//! can last a scheduler slice (milliseconds), too long for producers to leave the sleepers
//! alone on its account. So a producer that finds nobody searching wakes a sleeper as before;
//! with no sleepers (every worker busy or lingering, as under the two-worker HTTP load) that
//! costs nothing.
//!
//! # What it costs
//!
//! The spin is CPU time, taken mostly from idle: the yield lets threads on the same run queue
//! go first, but not threads of another cgroup, and the time still counts against a CPU quota
//! and costs power. A runtime that goes idle many times a second pays up to one spin (plus one
//! yield) per worker each time; `GROVE_IDLE_SPIN_US=0` turns it off for machines where that
//! matters more than latency.

use super::worker::{has_own_work, has_work, Core};
use super::Shared;
use std::time::{Duration, Instant};

/// Lingers as the module docs say; true if work turned up (then the caller looks for it
/// again), false if the spin ran out (then the caller parks).
pub(super) fn linger(shared: &Shared, core: &Core) -> bool {
    let spin = shared.config.idle_spin_us;
    // A stand-in thread with a lent core (see `lend`) goes back to its lender's greenlet as
    // soon as it is asked, and is not kept spinning.
    if spin == 0 || core.lent() {
        return false;
    }
    if core.searching.replace(false) {
        // Not notifying if we were the last searcher: we go on looking ourselves.
        let _ = shared.idle.end_searching();
    }
    let until = Instant::now() + Duration::from_micros(spin);
    loop {
        // A poll that found events woke their greenlets into this core's own queues
        // (`runnext`, the deque; a greenlet pinned elsewhere goes to its home's inbox). Other
        // workers' queues are looked at only after a yield: a worker not allowed to search
        // would otherwise come back here at once, without yielding, for work it cannot take.
        if shared.driver.poll_if_free() && has_own_work(shared, core) {
            return true;
        }
        if shared.fire_due_timers() > 0 {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
        if has_work(shared, core) {
            return true;
        }
    }
}
