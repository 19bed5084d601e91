//! The readiness word of one registered fd: the lock-free half of the per-socket waiter
//! protocol (the other half, the waiter lists, is in `io.rs`; both are explained there).
//!
//! Written against `crate::sync` so that `tests/loom_io.rs` can include this very file.

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire};

/// Readable (or read half closed, or error).
pub const READABLE: u8 = 1;
/// Writable (or write half closed, or error).
pub const WRITABLE: u8 = 2;
pub(crate) const READ_CLOSED: u8 = 4;
pub(crate) const WRITE_CLOSED: u8 = 8;
pub(crate) const ERROR: u8 = 16;
/// TCP urgent data arrived (`EPOLLPRI`): a read may stop short at its mark with in-band data
/// behind it, so a short read proves nothing until a read says `WouldBlock` (which clears this
/// with `READABLE`). See `Registration::io_stream`.
pub(crate) const PRIORITY: u8 = 32;

/// Which way an operation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Reading, accepting.
    Read,
    /// Writing, connecting.
    Write,
}

impl Direction {
    /// True if readiness `bits` let an operation in this direction proceed.
    pub fn wants(self, bits: u8) -> bool {
        let mask = match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        };
        bits & mask != 0
    }
}

/// A readiness observation, to clear if the operation it allowed would block.
#[derive(Clone, Copy, Debug)]
pub struct ReadyEvent {
    word: u64,
    dir: Direction,
}

/// `tick << 8 | bits`: the bits the poller reported, and how many events it reported.
impl ReadyEvent {
    /// Urgent data was pending when this readiness was read (see `PRIORITY`).
    pub fn urgent(&self) -> bool {
        self.word as u8 & PRIORITY != 0
    }

    /// The read half was reported closed when this readiness was read.
    pub fn read_closed(&self) -> bool {
        self.word as u8 & READ_CLOSED != 0
    }

    /// The readiness says more than "data or room": its direction's half closed, or an
    /// error, which stay true once seen (and which `poll(2)` may not report: a Unix stream
    /// shut for sending with its buffer full is not writable to it).
    pub fn closed_or_error(&self) -> bool {
        let closed = match self.dir {
            Direction::Read => READ_CLOSED,
            Direction::Write => WRITE_CLOSED,
        };
        self.word as u8 & (closed | ERROR) != 0
    }
}

pub struct Readiness(AtomicU64);

impl Readiness {
    /// Ready in both directions (`optimistic`: try the syscall first) or in neither.
    pub fn new(optimistic: bool) -> Readiness {
        let bits = if optimistic { READABLE | WRITABLE } else { 0 };
        Readiness(AtomicU64::new(u64::from(bits)))
    }

    /// The poller reported `bits`: OR them in and count the event.
    pub fn set(&self, bits: u8) {
        let mut cur = self.0.load(Acquire);
        loop {
            let next = ((cur >> 8) + 1) << 8 | u64::from(cur as u8 | bits);
            // AcqRel: pairs with the Acquire load in `ready` (an event's bits are seen by a
            // waiter that re-checks), and orders this before the waker drains the waiter list.
            match self.0.compare_exchange(cur, next, AcqRel, Acquire) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The current word, if it lets an operation in `dir` proceed.
    pub fn ready(&self, dir: Direction) -> Option<ReadyEvent> {
        let word = self.0.load(Acquire);
        dir.wants(word as u8).then_some(ReadyEvent { word, dir })
    }

    /// Clears the data readiness `ev` observed (a short transfer drained the buffer), unless an
    /// event came in since (then the caller retries). A hang-up or error bit stays: the kernel
    /// reports those once, and the next operation must see them (a read after the peer's FIN
    /// returns 0 at once; clearing that bit here left it parked for ever).
    pub fn clear(&self, ev: ReadyEvent) {
        self.clear_bits(
            ev,
            match ev.dir {
                Direction::Read => READABLE | PRIORITY,
                Direction::Write => WRITABLE,
            },
        );
    }

    /// Clears everything that let the operation of `ev` in, unless an event came in since: the
    /// operation said `WouldBlock`, so a hang-up or error bit too has been consumed (a UDP
    /// socket's ICMP error was returned once; a datagram receive on a socket shut for reading
    /// is answered before this, see `Registration::io_recv`), and left set it would send every later operation straight back into
    /// `WouldBlock`, a spin that ignored the socket's timeout. A condition that comes back
    /// brings a new event.
    pub fn clear_would_block(&self, ev: ReadyEvent) {
        self.clear_bits(
            ev,
            match ev.dir {
                Direction::Read => READABLE | PRIORITY | READ_CLOSED | ERROR,
                Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
            },
        );
    }

    fn clear_bits(&self, ev: ReadyEvent, bits: u8) {
        // Failure means a newer event arrived: keep its bits.
        let _ = self
            .0
            .compare_exchange(ev.word, ev.word & !u64::from(bits), AcqRel, Acquire);
    }
}
