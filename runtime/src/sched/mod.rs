//! The scheduler: the shared state of the running runtime, and where runnable greenlets go.
//!
//! # Shape
//!
//! `GROVE_WORKERS` OS threads each own a [`worker::Core`] (Go's P: the right to run greenlets,
//! moved by value into the worker's loop). A core holds a FIFO crossbeam deque; its other end,
//! the stealer, sits in the worker's [`Remote`] with a one-greenlet `runnext` slot (Go's
//! `runnext`, tokio's LIFO slot) and a small inbox for greenlets pinned to that worker. One
//! global injector takes greenlets made runnable by threads that are not workers.
//!
//! # Where a runnable greenlet goes ([`schedule`])
//!
//! * Woken by a greenlet (a lock released, a value sent): into the waker's `runnext`, so it runs
//!   next on the same worker, warm in cache, without waking anyone; the greenlet it displaces
//!   goes to the back of the deque, where idle workers can steal it (and are woken to).
//! * Spawned, or woken by a timer or `kill`, on a worker: the back of that worker's deque.
//! * From a plain thread (or the monitor): the injector.
//! * Pinned: its home worker's inbox, waking that worker in particular.
//!
//! Rejected: one global queue (every switch would contend on it), and binding each greenlet
//! to the worker that spawned it (a blocked worker would strand them).

pub(crate) mod context;
pub mod idle;
pub(crate) mod lend;
mod linger;
pub mod parker;
pub(crate) mod runnext;
pub(crate) mod worker;

use crate::blocking::BlockingPool;
use crate::config::Config;
use crate::driver::Driver;
use crate::monitor::{MonitorShared, RunInfo};
use crate::stack::StackPool;
use crate::task::{GreenletId, Header, TaskRef, NOT_PINNED, PIN_ON_FIRST_RUN};
use crate::timer::{TimerKey, Timers};
use crossbeam_deque::{Injector, Stealer};
use crossbeam_utils::CachePadded;
use idle::Idle;
use parker::{Parker, Unpark};
use runnext::RunNext;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What other threads may touch of a worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<TaskRef>,
    /// The greenlet to run next (a `TaskRef::into_raw`, or null).
    pub(crate) runnext: RunNext<Header>,
    /// Greenlets pinned to this worker.
    pub(crate) pinned: Injector<TaskRef>,
    pub(crate) parker: Parker,
    /// What the worker is running, for the blocking monitor.
    pub(crate) run: RunInfo,
    /// Set by the monitor while the worker has held one greenlet for long: others may then
    /// steal its `runnext` too.
    pub(crate) blocked: AtomicBool,
    /// Which thread holds the core: its own, or a stand-in it was lent to (see [`lend`]).
    pub(crate) lending: lend::Lending,
}

/// The running runtime.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) injector: Injector<TaskRef>,
    pub(crate) remotes: Box<[CachePadded<Remote>]>,
    pub(crate) idle: Idle,
    pub(crate) timers: Timers,
    pub(crate) driver: Driver,
    pub(crate) stacks: StackPool,
    pub(crate) blocking: BlockingPool,
    pub(crate) monitor: MonitorShared,
    next_id: AtomicU64,
    /// Greenlets taken from a blocked worker's `runnext` (a test counter; rare path).
    pub(crate) runnext_steals: AtomicU64,
}

static RUNTIME: OnceLock<&'static Shared> = OnceLock::new();

/// The runtime, started on first use.
#[inline]
pub(crate) fn runtime() -> &'static Shared {
    match RUNTIME.get() {
        Some(rt) => rt,
        None => RUNTIME.get_or_init(start),
    }
}

/// The runtime if it has started.
pub(crate) fn try_runtime() -> Option<&'static Shared> {
    RUNTIME.get().copied()
}

fn start() -> &'static Shared {
    let config = Config::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    crate::diag::install_panic_hook();
    // Before any worker exists: the workers' `runnext` protocol reads the answer.
    crate::asym_fence::init();
    crate::overflow::install_handler();
    let n = config.workers;
    let cores: Vec<_> = (0..n).map(worker::Core::new).collect();
    let remotes = cores
        .iter()
        .map(|c| {
            CachePadded::new(Remote {
                stealer: c.stealer(),
                runnext: RunNext::new(),
                pinned: Injector::new(),
                parker: Parker::new(),
                run: RunInfo::default(),
                blocked: AtomicBool::new(false),
                lending: lend::Lending::new(),
            })
        })
        .collect();
    let driver = Driver::new().unwrap_or_else(|e| {
        eprintln!("grove: cannot create the poller: {e}");
        std::process::exit(2);
    });
    let epoch = Instant::now();
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        stacks: StackPool::new(config.stack_size),
        blocking: BlockingPool::new(
            config.max_blocking_threads,
            std::time::Duration::from_millis(config.blocking_keepalive_ms),
        ),
        config,
        injector: Injector::new(),
        remotes,
        idle: Idle::new(n),
        timers: Timers::new(epoch),
        driver,
        monitor: MonitorShared::new(),
        next_id: AtomicU64::new(1),
        runnext_steals: AtomicU64::new(0),
    }));
    for core in cores {
        let name = format!("grove-worker-{}", core.index());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || worker::run(shared, core))
            .unwrap_or_else(|e| {
                eprintln!("grove: cannot start a worker thread: {e}");
                std::process::exit(2);
            });
    }
    crate::monitor::start(shared);
    shared
}

/// How a woken greenlet should be queued.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hint {
    /// Run it next on this worker (woken by a greenlet).
    Next,
    /// Behind the work already queued (spawned, timer, kill).
    Back,
}

impl Shared {
    /// A fresh greenlet id.
    pub(crate) fn next_id(&self) -> GreenletId {
        GreenletId(self.next_id.fetch_add(1, Relaxed))
    }

    /// Wakes one sleeping worker if work became stealable and nobody is looking.
    pub(crate) fn notify_work(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.unpark_worker(i);
        }
    }

    pub(crate) fn unpark_worker(&self, i: usize) {
        if self.remotes[i].parker.unpark() == Unpark::WakeDriver {
            self.driver.wake();
        }
    }

    /// Puts a runnable greenlet where it will run (see the module docs).
    ///
    /// Inline, with the rare cases out of line: the common one (an unpinned greenlet woken on a
    /// worker into its `runnext`, every channel hand-off and socket wake-up) cost ~15 of its ~30
    /// instructions in the call itself (callgrind, channel ping-pong).
    #[inline]
    pub(crate) fn schedule(&self, task: TaskRef, hint: Hint) {
        let home = task.header().home.load(Relaxed);
        if home != NOT_PINNED && home != PIN_ON_FIRST_RUN {
            return self.schedule_pinned(task, home);
        }
        let core = context::current_core();
        if core.is_null() {
            return self.schedule_global(task);
        }
        // SAFETY: a non-null current core is the live core of this worker thread, only used by
        // shared reference while greenlets run.
        let core = unsafe { &*core };
        match hint {
            Hint::Next => {
                let prev = core.remote(self).runnext.replace(task.into_raw());
                if !prev.is_null() {
                    // SAFETY: the slot held a pointer from `into_raw`, now ours.
                    self.push_local(core, unsafe { TaskRef::from_raw(prev) });
                }
            }
            Hint::Back => self.push_local(core, task),
        }
    }

    /// Into this worker's deque, where others may steal it (a yielder, or a greenlet pushed out
    /// of `runnext`).
    #[inline(never)]
    fn push_local(&self, core: &worker::Core, task: TaskRef) {
        core.push(task);
        self.notify_work();
    }

    /// Into the pinned inbox of worker `home`, which only that worker takes from.
    #[inline(never)]
    fn schedule_pinned(&self, task: TaskRef, home: usize) {
        self.remotes[home].pinned.push(task);
        if self.idle.claim_sleeper(home) {
            self.unpark_worker(home);
        }
    }

    /// Into the global queue: woken from a plain thread (or a thread without its core).
    #[inline(never)]
    fn schedule_global(&self, task: TaskRef) {
        self.injector.push(task);
        self.notify_work();
    }

    /// Arms a timer waking `u` with `TimedOut` at `deadline`.
    pub(crate) fn arm_timer(&self, deadline: Instant, u: crate::park::Unparker) -> TimerKey {
        let (key, earliest) = self.timers.insert(deadline, u);
        if earliest && !self.driver.on_earlier_timer(self.timers.nanos(deadline)) {
            self.want_the_poller_watched();
        }
        key
    }

    /// Nobody sleeps in the poller and a timer was armed. On a worker, decided once the
    /// greenlet that armed it has parked (`worker::after_commit`): a worker that then has
    /// nothing queued sleeps in the free poller itself, and waking another to sleep there
    /// would cost a context switch for nothing (one per `sleep` of a lone greenlet, with four
    /// workers). Not sooner: the park's own unlock step may queue work here (a mutex handed to
    /// a waiter through `runnext`), and work that blocks the thread is what strands a timer.
    /// Elsewhere (a plain thread, a thread without a core), at once.
    fn want_the_poller_watched(&self) {
        let core = context::current_core();
        if core.is_null() {
            self.hand_the_poller_to_a_sleeper();
        } else {
            // SAFETY: non-null, it is the core this thread holds (set by its worker loop or a
            // stand-in it was lent to); only this thread uses it meanwhile.
            unsafe { &*core }.want_the_poller_watched();
        }
    }

    /// Nobody sleeps in the poller, and it may be needed (a timer was armed, or the monitor
    /// found sockets or timers with nobody watching): if the driver is free and a worker sleeps
    /// on its condvar, wake that worker, which finds no work and sleeps in the poller instead.
    ///
    /// The gap this closes: the worker that slept in the poller woke with work and left it,
    /// while the others had gone to sleep on their condvars because it held the driver. Until
    /// a worker parks again nobody polls; a busy worker fires timers and polls every few
    /// ticks, but one held by a greenlet that blocks its thread does neither, and a timer then
    /// waited for the monitor (Go hands the netpoller on the same way, `wakep`). A wake-up is
    /// spent only when the gap is open, and the woken worker closes it.
    pub(crate) fn hand_the_poller_to_a_sleeper(&self) {
        if self.driver.is_free() && self.idle.num_unparked() < self.remotes.len() {
            if let Some(i) = self.idle.claim_any_sleeper() {
                self.unpark_worker(i);
            }
        }
    }

    /// Makes greenlets runnable whose timers are due; returns how many.
    pub(crate) fn fire_due_timers(&self) -> usize {
        self.fire_timers_due_before(Duration::ZERO)
    }

    /// As [`fire_due_timers`](Self::fire_due_timers), for timers due at least `late` ago: the
    /// monitor's share, the timers no worker came by to fire (every worker busy in one greenlet,
    /// or blocked). Busy workers fire the rest within a few ticks; a timer the monitor fires goes
    /// to the injector, behind whatever waits there (a burst of spawns from a plain thread,
    /// say), so the monitor leaves the punctual ones alone.
    pub(crate) fn fire_timers_due_before(&self, late: Duration) -> usize {
        if !self.timers.has_timers() {
            return 0;
        }
        let now = self.timers.nanos(Instant::now());
        let late = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        self.timers.fire_due(now.saturating_sub(late))
    }
}
