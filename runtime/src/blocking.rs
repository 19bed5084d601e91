//! The blocking pool: OS threads for work that would hold a worker (gevent's threadpool).
//!
//! `spawn_blocking(f)` queues `f`; an idle pool thread takes it, or a new thread is started if
//! none is idle and the pool is below `GROVE_MAX_BLOCKING_THREADS`; past the cap, jobs wait in
//! the queue. A thread idle for `GROVE_BLOCKING_KEEPALIVE_MS` (10 s by default) exits, so a
//! quiet process keeps no pool.
//! The job is the same task cell a greenlet uses, run inline on the pool thread, so its
//! `JoinHandle` is the greenlet one: joining it from a greenlet parks only that greenlet.
//!
//! Hand-off: a submitter that finds an idle thread *claims* it (takes it off the `idle` stack
//! and marks it) before signalling it, so a burst of submissions never counts the same idle
//! thread twice and starts new threads for the rest. The stack gives the next job to the thread
//! that went idle last, each idle thread waiting on a condvar of its own: the threads below,
//! left alone, reach their keep-alive and exit. (One condvar shared by all woke them in turn,
//! restarting each one's keep-alive, so after a burst a light steady load, a little over
//! threads / keep-alive jobs a second, kept every thread of the burst alive for good.)
//!
//! # Killing a running job
//!
//! A job is plain code on a plain thread, so `kill` cannot unwind it anywhere; it does unwind
//! it from its grove blocking calls (`sleep`, a lock, a channel, `join`), as it would a
//! greenlet (the contract's `kill`: "from its current or next blocking call"). While a job
//! runs, its thread records it (`current_job`) and the pool lists the thread's park slot under
//! the job (`running`). A park of that thread answers to the job's kill flag the way a
//! greenlet's park does (the same Dekker pair, `ParkState::commit_unless_killed` against
//! `kill`'s heavy fence and `park_to_kill`, which `tests/loom_park.rs` models): on entry
//! (`cancel::check_interrupts_thread`), and after it prepared, before it sleeps; `kill` then
//! finds the thread's park slot in `running` and wakes the park in progress. The listing and
//! `kill`'s look-up take the same lock: a job listed after `kill` looked finds its flag set
//! before it starts (and never runs); one listed before is found. Code that never blocks still
//! cannot be stopped, as with greenlets.
//!
//! While the job unwinds (killed, timed out, or panicking), a destructor of its that blocks is
//! out of `kill`'s reach, as a greenlet's is (see `park`, "Parking while unwinding"): its park
//! ignores the flag, and the thread's park slot leaves `running` for the length of the park
//! ([`out_of_kills_reach`]), so `kill` finds nothing to wake. A kill meanwhile leaves its flag
//! set, for the first park after the unwind if the job catches it and goes on. (Before, a
//! second kill ended such a park at once, and a cleanup's `recv` failed on a live channel.)

use crate::park::ThreadParker;
use crate::task::{Header, TaskRef};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// The job this pool thread runs now (null between jobs, and on every other thread).
    static JOB: Cell<*const Header> = const { Cell::new(std::ptr::null()) };
}

/// The job this thread runs, or null (not a pool thread, or between jobs). Not inlined, as
/// every runtime thread-local accessor (docs/tls.md).
#[inline(never)]
pub(crate) fn current_job() -> *const Header {
    JOB.try_with(Cell::get).unwrap_or(std::ptr::null())
}

#[inline(never)]
fn set_current_job(h: *const Header) {
    let _ = JOB.try_with(|j| j.set(h));
}

pub(crate) struct BlockingPool {
    state: Mutex<PoolState>,
    max_threads: usize,
    keepalive: Duration,
    /// Jobs running now (their headers' addresses), each with its thread's park slot: where
    /// `kill` finds the park to wake (see "Killing a running job").
    running: parking_lot::Mutex<Vec<(usize, Arc<ThreadParker>)>>,
}

struct PoolState {
    queue: VecDeque<TaskRef>,
    threads: usize,
    /// Idle threads, the one idle the shortest time last.
    idle: Vec<Arc<Idler>>,
}

/// An idle pool thread's wait: its own condvar (on the pool's mutex) and whether a submitter
/// has claimed it. `claimed` is only read and written under the pool's mutex.
#[derive(Default)]
struct Idler {
    cvar: Condvar,
    claimed: AtomicBool,
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, keepalive: Duration) -> BlockingPool {
        BlockingPool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: Vec::new(),
            }),
            max_threads,
            keepalive,
            running: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// `kill`'s reach into a running job `h` (its flag already set and fenced): wakes the park
    /// its thread is in, if any. Nothing for a task that is not a running job.
    pub(crate) fn wake_killed_job(&self, h: &Header) {
        let key = h as *const Header as usize;
        let running = self.running.lock();
        if let Some((_, parker)) = running.iter().find(|(k, _)| *k == key) {
            parker.wake_to_kill();
        }
    }

    /// Queues `task` to run on a pool thread.
    pub(crate) fn submit(&'static self, task: TaskRef) -> std::io::Result<()> {
        let me: *const crate::task::Header = task.header();
        let mut st = self.state.lock().unwrap();
        st.queue.push_back(task);
        if let Some(idler) = st.idle.pop() {
            idler.claimed.store(true, Relaxed); // under the lock, as every access
            drop(st);
            idler.cvar.notify_one();
            return Ok(());
        }
        if st.threads >= self.max_threads {
            return Ok(()); // at the cap: a busy thread will take it
        }
        st.threads += 1;
        drop(st);
        let spawned = std::thread::Builder::new()
            .name("grove-blocking".into())
            .spawn(move || self.thread_main());
        if let Err(e) = spawned {
            let mut st = self.state.lock().unwrap();
            st.threads -= 1;
            if st.threads == 0 {
                // No pool thread is left to run what is queued: ours goes back to the caller
                // with the error (found by identity: other submitters' jobs may be queued
                // behind it), and the others fail with it, so nobody's `join` waits for ever.
                let queued: Vec<TaskRef> = st.queue.drain(..).collect();
                drop(st);
                for job in queued {
                    if !std::ptr::eq(job.header(), me) {
                        job.fail_unstarted(std::io::Error::new(e.kind(), e.to_string()));
                        let _ = job.header().complete(); // on the submitter's own thread
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn thread_main(&self) {
        let me = Arc::new(Idler::default());
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(task) = st.queue.pop_front() {
                drop(st);
                self.run_job(task);
                st = self.state.lock().unwrap();
                continue;
            }
            me.claimed.store(false, Relaxed);
            st.idle.push(me.clone());
            // A keep-alive too long to represent is none: wait until claimed.
            let deadline = Instant::now().checked_add(self.keepalive);
            loop {
                st = match deadline {
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        me.cvar.wait_timeout(st, left).unwrap().0
                    }
                    None => me.cvar.wait(st).unwrap(),
                };
                if me.claimed.load(Relaxed) {
                    break; // a submitter took us off `idle`
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    st.idle.retain(|i| !Arc::ptr_eq(i, &me));
                    st.threads -= 1;
                    return;
                }
            }
        }
    }

    /// Threads in the pool right now (for tests).
    pub(crate) fn threads(&self) -> usize {
        self.state.lock().unwrap().threads
    }

    /// Runs one job on this pool thread (see "Killing a running job" for the listing).
    fn run_job(&self, task: TaskRef) {
        let h = task.header();
        let key = h as *const Header as usize;
        // Listed before the flag is read: see "Killing a running job".
        self.running
            .lock()
            .push((key, crate::park::thread_parker()));
        if h.kill.load(std::sync::atomic::Ordering::Acquire) {
            self.unlist(key);
            task.cancel_unstarted();
        } else {
            set_current_job(h);
            task.run_inline();
            // Unlisted before anything else runs on this thread (the job's greenlet-locals'
            // destructors below, which may park): a `kill` that comes now must not end their
            // parks, outside the job.
            self.unlist(key);
            set_current_job(std::ptr::null());
        }
        // The job's values, or those its closure's captures made as they were dropped unrun,
        // go now, before it reports done: nothing passes to the next job on this thread.
        crate::local::clear_thread_locals();
        h.complete_off_greenlet();
    }

    fn unlist(&self, key: usize) {
        self.running.lock().retain(|(k, _)| *k != key);
    }
}

/// Runs `park`, a park of this pool thread's job made while the job unwinds, with the thread's
/// park slot out of `running` (see "Killing a running job"). Taken out before the park
/// prepares and put back after it ended, both under `running`'s lock: a `kill` that looked
/// before found the slot idle (nothing to wake), one that looks during finds nothing.
pub(crate) fn out_of_kills_reach<R>(park: impl FnOnce() -> R) -> R {
    let key = current_job() as usize;
    let pool = &crate::sched::runtime().blocking;
    pool.unlist(key);
    let r = park();
    pool.running
        .lock()
        .push((key, crate::park::thread_parker()));
    r
}
