//! Loom models of the per-socket waiter protocol (`src/io_readiness.rs` + `src/io.rs`).
//!
//! The lock-free half, the readiness word (`Readiness::{set, ready, clear}`, `Direction::wants`),
//! is the production file `src/io_readiness.rs` included verbatim with `#[path]`, and every
//! waiter's park word is the production `src/park_state.rs`; the `sync` module below makes
//! their `crate::sync::AtomicU64` loom's. The other half, `IoSource::dispatch` /
//! `IoSource::poll_ready` / `Registration::io` in `src/io.rs`, needs the whole runtime (the
//! poller, `park`, the scheduler), so its few lines are mirrored below, each step naming the
//! production function it stands for. The waiter list is a loom `Mutex` (production: a
//! `parking_lot::Mutex`); "scheduling" a greenlet whose park a waker won is a per-greenlet loom
//! flag plus a loom `Notify` its thread blocks on.
//!
//! A parked greenlet's thread blocks on a loom `Notify` until a waker schedules it, so a lost
//! wake-up shows as loom's "deadlock" failure; the assertions check the rest.
//!
//! Broken variants these models were checked to catch (each in a scratch copy): `clear` without
//! the tick check (a plain `fetch_and`), `set` not bumping the tick, `clear` taking both
//! directions' bits, `Direction::Read` wanting `WRITABLE`, `dispatch` draining the list before
//! setting the word, `poll_ready` not re-checking under the lock, `dispatch` draining the read
//! list on a write event, and, in `park_state.rs`, `wake` losing to `PREPARED` and `commit`
//! ignoring an early wake.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-runtime --release --test loom_io
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

#[path = "loom_support/sync.rs"]
mod sync;

#[path = "loom_support/asym_fence.rs"]
mod asym_fence;

#[allow(dead_code)]
#[path = "../src/io_readiness.rs"]
mod io_readiness;

#[allow(dead_code)]
#[path = "../src/park_state.rs"]
mod park_state;

use io_readiness::{Direction, Readiness, ReadyEvent, READABLE, WRITABLE};
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex, Notify};
use loom::thread;
use park_state::{ParkState, Wake, WakeOutcome};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Runs `f` under loom with at most `preemptions` preemptions, unless `LOOM_MAX_PREEMPTIONS`
/// says otherwise (`None`: unbounded, loom's default).
fn model<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemptions;
    }
    b.check(f);
}

/// Test bookkeeping, deliberately a *std* atomic: not part of the protocol (as a loom atomic it
/// would multiply the interleavings explored), and exact because loom runs every model thread on
/// one OS thread.
type Flag = Arc<std::sync::atomic::AtomicBool>;

fn flag() -> Flag {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}

/// One greenlet: its park word (production code) and its "run queue entry".
struct Green {
    park: ParkState,
    /// Set by the waker that won against `PARKED` (`runtime().schedule(task, ..)`); the
    /// greenlet's thread waits for it on `run` while parked.
    scheduled: AtomicBool,
    run: Notify,
}

impl Green {
    fn new() -> Green {
        Green {
            park: ParkState::new(),
            scheduled: AtomicBool::new(false),
            run: Notify::new(),
        }
    }

    /// `Unparker::wake_with` for a greenlet. True if this call ended the park.
    fn wake(&self, gen: u64, why: Wake) -> bool {
        match self.park.wake(gen, why) {
            WakeOutcome::Lost => false,
            WakeOutcome::WonEarly => true,
            WakeOutcome::WonParked => {
                // `runtime().schedule(task, hint)`: a run-queue push (Release).
                self.scheduled.store(true, Release);
                self.run.notify();
                true
            }
        }
    }

    /// `park_greenlet` with no deadline and no kill, and the worker's side of
    /// the switch. `register` gets the generation (the token) and
    /// returns the object's lock guard, whose drop is the unlock step, or `None` if there is
    /// nothing to wait for after all.
    fn park<G>(&self, register: impl FnOnce(u64) -> Option<G>) -> Wake {
        let gen = self.park.prepare();
        let Some(unlock) = register(gen) else {
            // end the park ourselves.
            let _ = self.park.wake(gen, Wake::Unparked);
            let _ = self.park.take_wake(gen);
            return Wake::Unparked;
        };
        // suspend; the worker runs the unlock step, then commits
        //. A failed commit means "run it again at once".
        drop(unlock);
        if self.park.commit(gen) {
            // parked, the worker lets go. It runs again once scheduled.
            // (loom's `Notify` may wake spuriously: hence the flag.)
            while !self.scheduled.load(Acquire) {
                self.run.wait();
            }
            self.scheduled.store(false, Relaxed);
        }
        // .
        self.park
            .take_wake(gen)
            .expect("grove: greenlet resumed from a park nobody ended")
    }
}

/// `Waiters`; a token is (greenlet index, park generation).
#[derive(Default)]
struct Waiters {
    read: Vec<(usize, u64)>,
    write: Vec<(usize, u64)>,
}

/// The syscall said `WouldBlock`.
struct WouldBlock;

/// One registered socket: the `IoSource`, the kernel's side of the socket, and the
/// greenlets that use it.
struct Socket {
    readiness: Readiness,
    waiters: Mutex<Waiters>,
    /// Bytes in the kernel's receive buffer (the kernel locks its socket: AcqRel).
    rx: AtomicUsize,
    /// Room in the kernel's send buffer.
    tx_room: AtomicBool,
    greens: [Green; 2],
}

impl Socket {
    /// `IoSource::new(optimistic)`, nothing in either kernel buffer.
    fn new(optimistic: bool) -> Socket {
        Socket {
            readiness: Readiness::new(optimistic),
            waiters: Mutex::new(Waiters::default()),
            rx: AtomicUsize::new(0),
            tx_room: AtomicBool::new(false),
            greens: [Green::new(), Green::new()],
        }
    }

    /// `IoSource::dispatch`: the poller saw `bits`.
    fn dispatch(&self, bits: u8) {
        self.readiness.set(bits); // before taking the lock
        let mut woken = Vec::new();
        {
            let mut w = self.waiters.lock().unwrap();
            if Direction::Read.wants(bits) {
                woken.append(&mut w.read);
            }
            if Direction::Write.wants(bits) {
                woken.append(&mut w.write);
            }
        } // unlock
        for (i, gen) in woken {
            self.greens[i].wake(gen, Wake::Unparked);
        }
    }

    /// `IoSource::poll_ready` for greenlet `me`, no deadline. `progress` is called
    /// whenever the waiter gets past a wait: `ready` said yes, or a waker ended its park.
    fn poll_ready(&self, me: usize, dir: Direction, progress: &dyn Fn()) -> ReadyEvent {
        let g = &self.greens[me];
        loop {
            if let Some(ev) = self.readiness.ready(dir) {
                progress();
                return ev;
            }
            let mut woken_by_waker = true;
            let woke = g.park(|gen| {
                let mut w = self.waiters.lock().unwrap();
                if self.readiness.ready(dir).is_some() {
                    woken_by_waker = false;
                    return None; // an event got in first
                }
                match dir {
                    Direction::Read => w.read.push((me, gen)),
                    Direction::Write => w.write.push((me, gen)),
                }
                Some(w) // the lock is released after the switch
            });
            assert_eq!(woke, Wake::Unparked, "no deadline, no kill here");
            if woken_by_waker {
                progress();
            }
            // is for `TimedOut` only: loop and re-check.
        }
    }

    /// `Registration::io`: `op` until it does not block.
    fn io<R>(
        &self,
        me: usize,
        dir: Direction,
        progress: &dyn Fn(),
        mut op: impl FnMut() -> Result<R, WouldBlock>,
    ) -> R {
        loop {
            let ev = self.poll_ready(me, dir, progress);
            match op() {
                Err(WouldBlock) => self.readiness.clear_would_block(ev),
                Ok(r) => return r,
            }
        }
    }

    /// A non-blocking `read(2)`: takes everything in the receive buffer.
    fn sys_read(&self) -> Result<usize, WouldBlock> {
        match self.rx.swap(0, AcqRel) {
            0 => Err(WouldBlock),
            n => Ok(n),
        }
    }

    /// A non-blocking `write(2)` that fills the send buffer.
    fn sys_write(&self) -> Result<(), WouldBlock> {
        if self.tx_room.swap(false, AcqRel) {
            Ok(())
        } else {
            Err(WouldBlock)
        }
    }

    /// The peer sends a byte: it lands in the receive buffer, and the edge-triggered poller
    /// reports the event and dispatches it.
    fn peer_sends(&self) {
        self.rx.fetch_add(1, AcqRel);
        self.dispatch(READABLE);
    }

    /// The peer drains our data: room in the send buffer, a writable edge.
    fn peer_makes_room(&self) {
        self.tx_room.store(true, Release);
        self.dispatch(WRITABLE);
    }

    /// No token left behind in either list.
    fn assert_lists_empty(&self) {
        let w = self.waiters.lock().unwrap();
        assert!(w.read.is_empty(), "stale read waiters: {:?}", w.read);
        assert!(w.write.is_empty(), "stale write waiters: {:?}", w.write);
    }
}

/// (a) No lost wake-up. The socket starts not ready (a bare `wait_fd` source); a reader finds no
/// readiness and parks, while the peer's data arrives and the poller sets `READABLE` and drains
/// the read list. Either the reader's re-check under the lock sees the event, or the
/// poller's drain, which takes the lock after the reader pushed its token, finds it. Loom fails
/// the model if any interleaving leaves the reader parked (spinning forever); the reader must
/// then read the byte, and leave no token behind.
#[test]
fn reader_parks_poller_sets_readable_no_lost_wakeup() {
    model(None, || {
        let s = Arc::new(Socket::new(false));

        let poller = {
            let s = s.clone();
            thread::spawn(move || s.peer_sends())
        };

        let n = s.io(0, Direction::Read, &|| {}, || s.sys_read());
        assert_eq!(n, 1);

        poller.join().unwrap();
        s.assert_lists_empty();
    });
}

/// (b) The tick rule. The source starts optimistic (ready both ways), so the reader tries its
/// syscall at once and gets `WouldBlock`, while the peer's data arrives and the poller sets
/// `READABLE` again (and finds no waiter to wake). The reader's `clear` must not erase that new
/// event: its compare-exchange on the word it observed fails because the tick moved on, the
/// bits stay, and the reader retries and reads instead of parking on an edge that has passed.
/// An interleaving where the clear erased the event leaves the reader parked forever.
#[test]
fn clear_after_wouldblock_keeps_new_event() {
    model(None, || {
        let s = Arc::new(Socket::new(true));

        let poller = {
            let s = s.clone();
            thread::spawn(move || s.peer_sends())
        };

        let n = s.io(0, Direction::Read, &|| {}, || s.sys_read());
        assert_eq!(n, 1);

        poller.join().unwrap();
        s.assert_lists_empty();
    });
}

/// (b') The tick rule on its own, as a sequence: each step is what one interleaving of (b) does.
/// A stale event's clear is a no-op; a current one's clears only its own direction's bit.
#[test]
fn clear_is_conditional_on_the_tick() {
    model(None, || {
        let r = Readiness::new(true);
        let ev = r.ready(Direction::Read).expect("optimistic: ready");
        r.set(READABLE); // a new event between the observation and the WouldBlock
        r.clear(ev);
        assert!(
            r.ready(Direction::Read).is_some(),
            "clear erased an event that arrived after the observation"
        );
        let ev2 = r.ready(Direction::Read).unwrap();
        r.clear(ev2); // nothing came in since: cleared
        assert!(r.ready(Direction::Read).is_none());
        assert!(
            r.ready(Direction::Write).is_some(),
            "a read clear took the write bit"
        );
    });
}

/// (c') A clear takes only its own direction's readiness. The source starts optimistic and the
/// send buffer has room (the optimistic guess is right for writing), the receive buffer is
/// empty. A reader tries, gets `WouldBlock` and clears what it observed, while a writer relies
/// on the initial write readiness: no `WRITABLE` edge will ever come (the kernel reports edges,
/// and the send buffer never filled), so if the reader's clear took the write bit, the writer
/// parks forever. Afterwards the peer's data lets the reader finish.
#[test]
fn read_clear_keeps_write_readiness() {
    model(None, || {
        let s = Arc::new(Socket::new(true));
        s.tx_room.store(true, Relaxed);

        let reader = {
            let s = s.clone();
            thread::spawn(move || assert_eq!(s.io(0, Direction::Read, &|| {}, || s.sys_read()), 1))
        };
        let writer = {
            let s = s.clone();
            thread::spawn(move || s.io(1, Direction::Write, &|| {}, || s.sys_write()))
        };

        writer.join().unwrap();
        s.peer_sends();
        reader.join().unwrap();
        s.assert_lists_empty();
    });
}

/// (c) Directions are independent. A reader (greenlet 0) and a writer (greenlet 1) both wait on
/// a socket that starts not ready. The poller first reports only the `first` direction's event;
/// the other waiter must not be woken by it, nor see its direction as ready (checked at every
/// point where it gets past a wait), while the `first` direction's waiter must complete. Only
/// then (the main thread joins both) does the other direction's event come, and its waiter must
/// complete too, which also checks that the first dispatch left its token in its list.
fn directions_independent(first: Direction) {
    // Bounded to 3 preemptions (~17 s; 4 takes ~2 min, unbounded >15 min): four threads, two
    // of them looping through park/re-check.
    model(Some(3), move || {
        let s = Arc::new(Socket::new(false));
        let read_sent = flag();
        let write_sent = flag();

        let reader = {
            let (s, read_sent) = (s.clone(), read_sent.clone());
            thread::spawn(move || {
                let progress = || {
                    assert!(
                        read_sent.load(Relaxed),
                        "a write event woke a read waiter or made the read side ready"
                    )
                };
                assert_eq!(s.io(0, Direction::Read, &progress, || s.sys_read()), 1);
            })
        };
        let writer = {
            let (s, write_sent) = (s.clone(), write_sent.clone());
            thread::spawn(move || {
                let progress = || {
                    assert!(
                        write_sent.load(Relaxed),
                        "a read event woke a write waiter or made the write side ready"
                    )
                };
                s.io(1, Direction::Write, &progress, || s.sys_write());
            })
        };

        // The poller reporting one direction's event (the flag is set first, so a waiter that
        // gets past its wait because of this event finds it set).
        let send = move |s: &Socket, dir: Direction| match dir {
            Direction::Read => {
                read_sent.store(true, Relaxed);
                s.peer_sends();
            }
            Direction::Write => {
                write_sent.store(true, Relaxed);
                s.peer_makes_room();
            }
        };
        let (first_waiter, second_waiter, second) = match first {
            Direction::Read => (reader, writer, Direction::Write),
            Direction::Write => (writer, reader, Direction::Read),
        };
        let poller = {
            let (s, send) = (s.clone(), send.clone());
            thread::spawn(move || send(&s, first))
        };

        first_waiter.join().unwrap();
        poller.join().unwrap();
        // The other waiter is still waiting (its `progress` would have failed otherwise).
        send(&s, second);
        second_waiter.join().unwrap();
        s.assert_lists_empty();
    });
}

#[test]
fn write_event_does_not_wake_reader() {
    directions_independent(Direction::Write);
}

#[test]
fn read_event_does_not_wake_writer() {
    directions_independent(Direction::Read);
}
