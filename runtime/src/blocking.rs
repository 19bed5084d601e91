//! The blocking pool: OS threads for work that would hold a worker (gevent's threadpool).
//!
//! `spawn_blocking(f)` queues `f`; an idle pool thread takes it, or a new thread is started if
//! none is idle and the pool is below `GROVE_MAX_BLOCKING_THREADS`; past the cap, jobs wait in
//! the queue. A thread idle for `GROVE_BLOCKING_KEEPALIVE_MS` (10 s by default) exits, so a
//! quiet process keeps no pool.
//! The job is the same task cell a greenlet uses, run inline on the pool thread, so its
//! `JoinHandle` is the greenlet one: joining it from a greenlet parks only that greenlet.
//!
//! Hand-off: a submitter that finds an idle thread *claims* it (moves it from `idle` to
//! `wakeups`) before signalling, so a burst of submissions never counts the same idle thread
//! twice and starts new threads for the rest.

use crate::task::TaskRef;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub(crate) struct BlockingPool {
    state: Mutex<PoolState>,
    cvar: Condvar,
    max_threads: usize,
    keepalive: Duration,
}

struct PoolState {
    queue: VecDeque<TaskRef>,
    threads: usize,
    idle: usize,
    wakeups: usize,
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, keepalive: Duration) -> BlockingPool {
        BlockingPool {
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                threads: 0,
                idle: 0,
                wakeups: 0,
            }),
            cvar: Condvar::new(),
            max_threads,
            keepalive,
        }
    }

    /// Queues `task` to run on a pool thread.
    pub(crate) fn submit(&'static self, task: TaskRef) -> std::io::Result<()> {
        let me: *const crate::task::Header = task.header();
        let mut st = self.state.lock().unwrap();
        st.queue.push_back(task);
        if st.idle > 0 {
            st.idle -= 1;
            st.wakeups += 1;
            drop(st);
            self.cvar.notify_one();
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
                        job.header().complete();
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn thread_main(&self) {
        let mut st = self.state.lock().unwrap();
        loop {
            if let Some(task) = st.queue.pop_front() {
                drop(st);
                run_job(task);
                st = self.state.lock().unwrap();
                continue;
            }
            st.idle += 1;
            loop {
                let (g, res) = self.cvar.wait_timeout(st, self.keepalive).unwrap();
                st = g;
                if st.wakeups > 0 {
                    st.wakeups -= 1; // claimed by a submitter, which took us off `idle`
                    break;
                }
                if res.timed_out() {
                    st.idle -= 1;
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
}

fn run_job(task: TaskRef) {
    let h = task.header();
    if h.kill.load(std::sync::atomic::Ordering::Acquire) {
        task.cancel_unstarted();
    } else {
        task.run_inline();
        crate::local::clear_thread_locals();
    }
    h.complete();
}
