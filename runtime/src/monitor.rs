//! The blocking monitor: a thread that watches for greenlets holding a worker too long.
//!
//! Green threads share workers cooperatively, so a greenlet that computes for a second, or calls
//! a blocking C function, stalls every greenlet queued behind it on that worker. The monitor
//! samples what each worker runs; when a worker has run the same greenlet for
//! `GROVE_MAX_BLOCKING_MS` it prints one report naming the greenlet (once per incident), and
//! as soon as it sees a worker stuck at all it marks it *blocked* and wakes an idle worker, which
//! steals the blocked worker's queue, its `runnext` slot included. It also fires due timers while
//! every worker is busy, and scavenges: it gives back the pages of stacks the pool holds beyond
//! its warm limit, a batch per tick, and all of them before it sleeps.
//!
//! It costs nothing when the process is idle: when every worker sleeps it waits on a condvar
//! with no timeout, and the first worker to wake wakes it (no periodic wake-ups at all, unlike
//! may's 10 ms tick).
//!
//! # Reading what another worker runs, without locks
//!
//! Each worker publishes its current greenlet's id and (up to 32 bytes of) name through a
//! seqlock in [`RunInfo`]: before a resume it writes the data and then an odd sequence number
//! (`Release`); after the switch back it writes the next even number, then a `Release` fence
//! before any later data writes. The monitor reads the number (`Acquire`), the data, an
//! `Acquire` fence and the number again; equal odd numbers mean the data belong to the run still
//! in progress. The monitor never dereferences the worker's greenlet, which may be freed at any
//! moment.

use crate::sched::Shared;
use crate::task::Header;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicBool, AtomicU64};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const NAME_WORDS: usize = 4;

/// What one worker is running, published for the monitor.
#[derive(Default)]
pub(crate) struct RunInfo {
    seq: AtomicU64,
    id: AtomicU64,
    name_len: AtomicU64,
    name: [AtomicU64; NAME_WORDS],
}

impl RunInfo {
    /// The worker is about to resume `h`.
    pub(crate) fn begin(&self, h: &Header) {
        self.id.store(h.id.0, Relaxed);
        match &h.name {
            None => self.name_len.store(0, Relaxed),
            Some(name) => {
                // At most 32 bytes, cut at a character boundary (a report must not show a
                // split character).
                let mut cut = name.len().min(NAME_WORDS * 8);
                while !name.is_char_boundary(cut) {
                    cut -= 1;
                }
                let bytes = &name.as_bytes()[..cut];
                for (i, chunk) in bytes.chunks(8).enumerate() {
                    let mut w = [0u8; 8];
                    w[..chunk.len()].copy_from_slice(chunk);
                    self.name[i].store(u64::from_le_bytes(w), Relaxed);
                }
                self.name_len.store(bytes.len() as u64, Relaxed);
            }
        }
        let seq = self.seq.load(Relaxed);
        // Release: the data above are visible to a monitor that reads this odd number.
        self.seq.store(seq | 1, Release);
    }

    /// The greenlet switched back.
    pub(crate) fn end(&self) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq + 1, Relaxed);
        // Release fence: orders this even number before the next run's data writes.
        fence(Release);
    }

    /// `(seq, id, name)` if a greenlet is running and the read was consistent.
    fn read(&self) -> Option<(u64, u64, String)> {
        let s1 = self.seq.load(Acquire);
        if s1 & 1 == 0 {
            return None;
        }
        let id = self.id.load(Relaxed);
        let len = (self.name_len.load(Relaxed) as usize).min(NAME_WORDS * 8);
        let mut bytes = Vec::with_capacity(len);
        for w in &self.name {
            bytes.extend_from_slice(&w.load(Relaxed).to_le_bytes());
        }
        bytes.truncate(len);
        fence(Acquire);
        if self.seq.load(Relaxed) != s1 {
            return None;
        }
        let name = if len == 0 {
            "<unnamed>".to_string()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Some((s1, id, name))
    }
}

/// The monitor's side of the runtime's shared state.
pub(crate) struct MonitorShared {
    sleeping: AtomicBool,
    lock: Mutex<bool>,
    cvar: Condvar,
}

impl MonitorShared {
    pub(crate) fn new() -> MonitorShared {
        MonitorShared {
            sleeping: AtomicBool::new(false),
            lock: Mutex::new(false),
            cvar: Condvar::new(),
        }
    }

    /// Called by a worker after it wakes: ends the monitor's deep sleep.
    pub(crate) fn on_worker_woke(&self) {
        // SeqCst: pairs with the monitor's store of `sleeping` before it re-checks the idle
        // counters, which this worker changed (SeqCst) before getting here.
        if self.sleeping.load(SeqCst) {
            let mut asleep = self.lock.lock().unwrap();
            if *asleep {
                *asleep = false;
                self.sleeping.store(false, SeqCst);
                self.cvar.notify_one();
            }
        }
    }
}

struct Watch {
    seq: u64,
    since: Instant,
    reported: bool,
}

/// Starts the monitor thread.
pub(crate) fn start(shared: &'static Shared) {
    std::thread::Builder::new()
        .name("grove-monitor".into())
        .spawn(move || run(shared))
        .unwrap_or_else(|e| {
            eprintln!("grove: cannot start the monitor thread: {e}");
            std::process::exit(2);
        });
}

fn run(shared: &'static Shared) {
    crate::sched::context::mark_monitor_thread();
    let threshold = shared.config.max_blocking_ms;
    let interval = if threshold == 0 {
        Duration::from_millis(10)
    } else {
        Duration::from_millis((threshold / 5).clamp(1, 10))
    };
    let now = Instant::now();
    let mut watch: Vec<Watch> = (0..shared.remotes.len())
        .map(|_| Watch {
            seq: 0,
            since: now,
            reported: false,
        })
        .collect();
    loop {
        deep_sleep_while_idle(shared);
        std::thread::sleep(interval);
        shared.fire_timers_due_before(interval);
        // Every worker may be busy: look at the poller so ready sockets are not left waiting
        // for a worker to come by (Go's sysmon does the same).
        // SeqCst fence between releasing the driver (in `poll_if_free`) and reading the idle
        // count: pairs with the fence a worker makes between counting itself out and trying
        // the driver (`idle::transition_to_parked`, then `has_work`), so either that worker
        // finds the driver free and sleeps in it, or we see it parked and wake one.
        if shared.driver.poll_if_free() && {
            fence(SeqCst);
            shared.idle.num_unparked() < shared.remotes.len()
        } {
            // Nobody sleeps in the poller (we just held it), and some worker sleeps on its
            // condvar: it went to sleep while we, or a worker since gone to run work, held the
            // driver. Wake one to sleep in the poller instead, or timers and sockets would wait
            // for our next round while the awake workers are held by their greenlets.
            if let Some(i) = shared.idle.claim_any_sleeper() {
                shared.unpark_worker(i);
            }
        }
        shared.stacks.scavenge(crate::stack::SCAVENGE_BATCH);
        let now = Instant::now();
        for (i, w) in watch.iter_mut().enumerate() {
            check_worker(shared, i, w, now, interval, threshold);
        }
    }
}

fn deep_sleep_while_idle(shared: &Shared) {
    let m = &shared.monitor;
    if shared.idle.all_parked() {
        // Idle: give back every excess stack page before sleeping (off everyone's hot path).
        shared.stacks.scavenge(usize::MAX);
    }
    let mut asleep = m.lock.lock().unwrap();
    m.sleeping.store(true, SeqCst);
    if !shared.idle.all_parked() {
        m.sleeping.store(false, SeqCst);
        return;
    }
    *asleep = true;
    while *asleep {
        asleep = m.cvar.wait(asleep).unwrap();
    }
}

fn check_worker(
    shared: &Shared,
    i: usize,
    w: &mut Watch,
    now: Instant,
    interval: Duration,
    threshold: u64,
) {
    let remote = &shared.remotes[i];
    let Some((seq, id, name)) = remote.run.read() else {
        remote.blocked.store(false, Relaxed);
        w.seq = 0;
        return;
    };
    if seq != w.seq {
        remote.blocked.store(false, Relaxed);
        *w = Watch {
            seq,
            since: now,
            reported: false,
        };
        return;
    }
    let held = now - w.since;
    if held >= interval {
        remote.blocked.store(true, Relaxed);
        // Every tick while it stays blocked, not only when first seen: a searcher may have
        // looked just before `blocked` was set (and found the `runnext` it may not take yet),
        // or the blocked greenlet may have woken another since.
        // The global queue too: a greenlet that yields while its worker's pinned inbox holds
        // work goes there without waking anyone, counting on that worker to come by.
        let queued = !remote.stealer.is_empty()
            || !remote.runnext.looks_empty()
            || !shared.injector.is_empty();
        if queued {
            shared.notify_work();
        }
    }
    if threshold > 0 && !w.reported && held >= Duration::from_millis(threshold) {
        w.reported = true;
        eprintln!(
            "grove: greenlet '{name}' (id {id}) has held worker {i} for {} ms without parking \
             (GROVE_MAX_BLOCKING_MS={threshold}){}",
            held.as_millis(),
            if shared.remotes.len() > 1 {
                "; other workers take over its queue meanwhile"
            } else {
                "; with one worker (GROVE_WORKERS=1) nothing else runs meanwhile"
            }
        );
    }
}
