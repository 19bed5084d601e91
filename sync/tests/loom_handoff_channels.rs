//! Loom models of the hand-off protocol of `src/wait_queue.rs` and `src/queue_core.rs` for
//! channels, `Select` and `Event` (the lock models are in `loom_handoff_locks.rs`).
//!
//! How the models are built, and the broken variants they were checked to catch: the notes at
//! the top of `loom_handoff/common.rs`.
//!
//! Run with:
//!
//! ```text
//! CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" \
//!     cargo test -p grove-sync --release --test loom_handoff_channels
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]
// Shared model code (loom_handoff/common.rs): not every model here uses every helper.
#![allow(dead_code)]

#[path = "../../runtime/tests/loom_support/sync.rs"]
mod sync;

#[path = "../../runtime/tests/loom_support/asym_fence.rs"]
mod asym_fence;

#[allow(dead_code)]
#[path = "../../runtime/src/park_state.rs"]
mod park_state;

include!("loom_handoff/common.rs");

// ------------------------------------------------------------------------------------------------
// queue_core.rs
// ------------------------------------------------------------------------------------------------

/// What lives in a waiter's `Option<T>` slot in its stack frame, and whether the frame is alive.
struct SlotCell {
    live: bool,
    v: Option<u32>,
}

/// `Slot<T>`: a pointer into the waiter's frame. The frame is a loom cell, so
/// loom reports any access by a waker not ordered with the owner's; `live` catches an access
/// after the frame is gone (use after free) that happens to be ordered.
#[derive(Clone)]
struct Slot(Arc<UnsafeCell<SlotCell>>);

impl Slot {
    /// The frame's `let mut slot = v;`.
    fn new(v: Option<u32>) -> Slot {
        Slot(Arc::new(UnsafeCell::new(SlotCell { live: true, v })))
    }

    /// `*slot.0 = v` by a waker.
    fn put(&self, v: Option<u32>) {
        // SAFETY: loom checks the access; the cell lives while the `Arc` does.
        self.0.with_mut(|p| unsafe {
            assert!((*p).live, "waker wrote a slot whose frame is gone");
            (*p).v = v;
        })
    }

    /// `(*slot.0).take()` by a waker, or the owner reading its own slot.
    fn take(&self) -> Option<u32> {
        // SAFETY: as in `put`.
        self.0.with_mut(|p| unsafe {
            assert!((*p).live, "slot read after its frame is gone");
            (*p).v.take()
        })
    }

    /// The owner's frame ends.
    fn free(&self) {
        // SAFETY: as in `put`.
        self.0.with_mut(|p| unsafe { (*p).live = false })
    }
}

/// `queue_core::State`, FIFO buffer; no `Select` watchers (every
/// `recv_watchers.wake_all()` below is on an empty queue, a no-op).
struct ChanState {
    buf: VecDeque<u32>,
    cap: Option<usize>,
    senders: usize,
    receivers: usize,
    getters: WaitQueue<Slot>,
    putters: WaitQueue<Slot>,
}

/// `PutError`.
#[derive(Debug, PartialEq, Eq)]
enum PutError {
    Full(u32),
    Disconnected(u32),
    Timeout(u32),
}

/// `GetError`.
#[derive(Debug, PartialEq, Eq)]
enum GetError {
    Empty,
    Disconnected,
    Timeout,
}

/// `QueueCore<u32, VecDeque<u32>>`.
struct Chan {
    state: Mutex<ChanState>,
}

impl Chan {
    fn new(cap: Option<usize>) -> Chan {
        Chan {
            state: Mutex::new(ChanState {
                buf: VecDeque::new(),
                cap,
                senders: 1,
                receivers: 1,
                getters: WaitQueue::new(),
                putters: WaitQueue::new(),
            }),
        }
    }

    /// `put`.
    fn put(&self, me: &Arc<Green>, v: u32, block: bool, timed: bool) -> Result<(), PutError> {
        let mut st = self.state.lock().unwrap();
        if st.receivers == 0 {
            return Err(PutError::Disconnected(v));
        }
        let v = match hand_to_getter(&mut st, v) {
            None => return Ok(()),
            Some(v) => v,
        };
        if st.cap.is_none_or(|c| st.buf.len() < c) {
            st.buf.push_back(v);
            return Ok(());
        }
        if !block {
            return Err(PutError::Full(v));
        }
        let slot = Slot::new(Some(v));
        let waited = wait(&self.state, st, |s| &mut s.putters, slot.clone(), me, timed);
        let r = match (waited, slot.take()) {
            (_, None) => Ok(()),
            (Waited::HandedOver, Some(v)) => Err(PutError::Disconnected(v)),
            (Waited::TimedOut, Some(v)) => Err(PutError::Timeout(v)),
        };
        slot.free(); // `put` returns: its frame, and the slot, are gone
        r
    }

    /// `get`.
    fn get(&self, me: &Arc<Green>, block: bool, timed: bool) -> Result<u32, GetError> {
        loop {
            let mut st = self.state.lock().unwrap();
            if let Some(v) = take_available(&mut st) {
                return Ok(v);
            }
            if st.senders == 0 {
                return Err(GetError::Disconnected);
            }
            if !block {
                return Err(GetError::Empty);
            }
            let slot = Slot::new(None);
            let waited = wait(&self.state, st, |s| &mut s.getters, slot.clone(), me, timed);
            let r = match (waited, slot.take()) {
                (_, Some(v)) => Some(Ok(v)),
                (Waited::TimedOut, None) => Some(Err(GetError::Timeout)),
                (Waited::HandedOver, None) => None,
            };
            slot.free(); // end of the loop body: the slot's frame is gone
            if let Some(r) = r {
                return r;
            }
        }
    }

    fn buffered(&self) -> Vec<u32> {
        self.state.lock().unwrap().buf.iter().copied().collect()
    }

    fn assert_no_waiters(&self) {
        let st = self.state.lock().unwrap();
        assert!(st.getters.is_empty(), "a getter's entry stayed queued");
        assert!(st.putters.is_empty(), "a putter's entry stayed queued");
    }
}

/// `hand_to_getter`.
fn hand_to_getter(st: &mut ChanState, v: u32) -> Option<u32> {
    let mut v = Some(v);
    while let Some(w) = st.getters.pop_front() {
        w.data.put(v.take());
        if w.token.unpark() {
            return None;
        }
        v = w.data.take(); // take it back
    }
    v
}

/// `take_available`.
fn take_available(st: &mut ChanState) -> Option<u32> {
    let got = st.buf.pop_front();
    while let Some(w) = st.putters.pop_front() {
        let offered = w.data.take();
        let Some(offered) = offered else {
            continue;
        };
        if !w.token.unpark() {
            w.data.put(Some(offered)); // it stays the putter's
            continue;
        }
        match got {
            Some(g) => {
                st.buf.push_back(offered);
                return Some(g);
            }
            None => return Some(offered),
        }
    }
    got
}

const VALUE: u32 = 42;

/// (c) A send into a waiting receiver's slot races the receiver's timeout. A greenlet receives
/// with a deadline and parks; the main thread sends (`send`, or `try_send` on a rendezvous
/// channel). The value ends up exactly once: received, or (its park had ended, so the sender
/// took it back out of the slot) buffered by `send` / returned by `try_send` as `Full`. The
/// sender touches the slot only while the receiver's frame is alive, in an order loom accepts.
fn send_vs_recv_timeout(cap: Option<usize>, block: bool) {
    model(Some(5), move || {
        let ch = Arc::new(Chan::new(cap));
        let rx = Green::new();
        let tx = Green::new();

        let receiver = {
            let (ch, rx) = (ch.clone(), rx.clone());
            thread::spawn(move || ch.get(&rx, true, true))
        };

        let sent = ch.put(&tx, VALUE, block, false);

        let got = receiver.join().unwrap();
        rx.join_timers();
        let buffered = ch.buffered();
        let mut copies = buffered.iter().filter(|&&v| v == VALUE).count();
        match &got {
            Ok(v) => {
                assert_eq!(*v, VALUE);
                copies += 1;
            }
            Err(e) => assert_eq!(*e, GetError::Timeout),
        }
        match &sent {
            Ok(()) => {}
            Err(PutError::Full(v)) => {
                assert_eq!(*v, VALUE);
                copies += 1;
            }
            Err(e) => panic!("send failed with {e:?}"),
        }
        assert_eq!(
            copies, 1,
            "value lost or duplicated: got {got:?}, sent {sent:?}"
        );
        ch.assert_no_waiters();
    });
}

#[test]
fn send_vs_recv_timeout_buffered() {
    send_vs_recv_timeout(None, true);
}

#[test]
fn try_send_vs_recv_timeout_rendezvous() {
    send_vs_recv_timeout(Some(0), false);
}

/// (c') The other direction: a greenlet sends on a rendezvous channel with a deadline and parks
/// with its value in its slot; the main thread `try_recv`s, taking the value out of the slot
/// and unparking the sender, which may be timing out. The value ends up exactly once: received,
/// or put back into the slot and returned by the sender's `Timeout`.
#[test]
fn try_recv_vs_send_timeout_rendezvous() {
    model(Some(5), || {
        let ch = Arc::new(Chan::new(Some(0)));
        let rx = Green::new();
        let tx = Green::new();

        let sender = {
            let (ch, tx) = (ch.clone(), tx.clone());
            thread::spawn(move || ch.put(&tx, VALUE, true, true))
        };

        let got = ch.get(&rx, false, false);

        let sent = sender.join().unwrap();
        tx.join_timers();
        let received = match &got {
            Ok(v) => {
                assert_eq!(*v, VALUE);
                true
            }
            Err(e) => {
                assert_eq!(*e, GetError::Empty);
                false
            }
        };
        let returned = match &sent {
            Ok(()) => false,
            Err(PutError::Timeout(v)) => {
                assert_eq!(*v, VALUE);
                true
            }
            Err(e) => panic!("send failed with {e:?}"),
        };
        assert!(ch.buffered().is_empty());
        assert!(
            received ^ returned,
            "value lost or duplicated: got {got:?}, sent {sent:?}"
        );
        ch.assert_no_waiters();
    });
}

// ------------------------------------------------------------------------------------------------
// event.rs
// ------------------------------------------------------------------------------------------------

/// `Event`, plus data written before `set`.
struct Event {
    flag: AtomicBool,
    waiters: Mutex<WaitQueue<()>>,
    data: UnsafeCell<u32>,
}

impl Event {
    fn new() -> Event {
        Event {
            flag: AtomicBool::new(false),
            waiters: Mutex::new(WaitQueue::new()),
            data: UnsafeCell::new(0),
        }
    }

    /// `set`.
    fn set(&self) {
        let mut q = self.waiters.lock().unwrap();
        self.flag.store(true, Release);
        q.wake_all();
    }

    /// `is_set`.
    fn is_set(&self) -> bool {
        self.flag.load(Acquire)
    }

    /// `wait_until`.
    fn wait_until(&self, me: &Arc<Green>, timed: bool) -> bool {
        if self.is_set() {
            return true;
        }
        let q = self.waiters.lock().unwrap();
        if self.is_set() {
            return true;
        }
        match wait(&self.waiters, q, |q| q, (), me, timed) {
            Waited::HandedOver => true,
            Waited::TimedOut => self.is_set(),
        }
    }
}

/// (d) `Event::set` races waiters registering. Two greenlets wait (no deadline) while the main
/// thread writes some data and sets the event. No wake-up is lost (a waiter left parked is a
/// loom deadlock), each waiter returns true and sees the data, and nobody stays queued.
#[test]
fn event_set_vs_registration() {
    model(Some(4), || {
        let ev = Arc::new(Event::new());
        let waiter = |ev: &Arc<Event>| {
            let (ev, g) = (ev.clone(), Green::new());
            thread::spawn(move || {
                assert!(ev.wait_until(&g, false));
                assert_eq!(
                    get(&ev.data),
                    1,
                    "set's prior write not visible to a waiter"
                );
            })
        };
        let w1 = waiter(&ev);
        let w2 = waiter(&ev);

        set(&ev.data, 1);
        ev.set();

        w1.join().unwrap();
        w2.join().unwrap();
        assert!(ev.waiters.lock().unwrap().is_empty());
    });
}

/// (d') As (d) with one waiter that has a deadline, racing `set`: whichever of the timer and
/// `set` wins, nobody stays queued, and a waiter that says the event is set sees the data.
#[test]
fn event_set_vs_timeout() {
    model(Some(5), || {
        let ev = Arc::new(Event::new());
        let g = Green::new();

        let waiter = {
            let (ev, g) = (ev.clone(), g.clone());
            thread::spawn(move || {
                if ev.wait_until(&g, true) {
                    assert_eq!(
                        get(&ev.data),
                        1,
                        "set's prior write not visible to a waiter"
                    );
                }
            })
        };

        set(&ev.data, 1);
        ev.set();

        waiter.join().unwrap();
        g.join_timers();
        assert!(ev.waiters.lock().unwrap().is_empty());
    });
}

// ------------------------------------------------------------------------------------------------
// channel.rs: `Select`
// ------------------------------------------------------------------------------------------------

/// One side of a channel as a `Select` sees it: `queue_core::State`'s buffer and that side's
/// watchers (a watcher's entry is a bare token: `push_token`). The receiving side is ready
/// when the buffer holds a value; the sending side, of a `bounded(1)` channel, when it has
/// room (`State::put_would_not_wait`, no parked getters or disconnection here).
struct Watched {
    state: Mutex<(VecDeque<u32>, WaitQueue<()>)>,
    send_side: bool,
}

impl Watched {
    fn new() -> Arc<Watched> {
        Arc::new(Watched {
            state: Mutex::new((VecDeque::new(), WaitQueue::new())),
            send_side: false,
        })
    }

    /// The sending side of a `bounded(1)` channel holding one value (full).
    fn new_full_sender() -> Arc<Watched> {
        Arc::new(Watched {
            state: Mutex::new((VecDeque::from([VALUE]), WaitQueue::new())),
            send_side: true,
        })
    }

    fn ready_in(&self, buf: &VecDeque<u32>) -> bool {
        if self.send_side {
            buf.is_empty() // room, with a capacity of one
        } else {
            !buf.is_empty()
        }
    }

    /// `Receiver::is_ready` (`available() > 0`; no disconnection here), or the sender's
    /// `put_would_not_wait`.
    fn ready(&self) -> bool {
        self.ready_in(&self.state.lock().unwrap().0)
    }

    /// `QueueCore::watch`: registers `token` unless ready now (then false).
    fn watch(&self, token: Token) -> bool {
        let mut st = self.state.lock().unwrap();
        if self.ready_in(&st.0) {
            return false;
        }
        st.1.push(token, ());
        true
    }

    /// `QueueCore::unwatch`.
    fn unwatch(&self, id: ParkId) {
        self.state.lock().unwrap().1.remove(id);
    }

    /// `QueueCore::put` into a buffer with room, no parked getter: buffer it, then
    /// `recv_watchers.wake_all()`, under the lock.
    fn put(&self, v: u32) {
        let mut st = self.state.lock().unwrap();
        st.0.push_back(v);
        st.1.wake_all();
    }

    /// `QueueCore::get` taking a buffered value: `wake_send_watchers`, under the lock.
    fn take(&self) -> Option<u32> {
        let mut st = self.state.lock().unwrap();
        let v = st.0.pop_front();
        if v.is_some() {
            st.1.wake_all();
        }
        v
    }
}

/// `Select::ready_until(None)`: scan; if nothing is ready, park with a token registered on
/// every receiver (a counted token, `park`, with an empty unlock step: no lock is held across
/// the switch); on any wake, take the tokens off (`Unwatch`) and scan again.
fn select_ready(chans: &[Arc<Watched>], me: &Arc<Green>) -> usize {
    loop {
        if let Some(i) = chans.iter().position(|c| c.ready()) {
            return i;
        }
        let mut registered = 0;
        let mut id = None;
        let begun = Green::begin(me, false, |token| {
            id = Some(token.park_id());
            for c in chans {
                let copy = Token {
                    g: token.g.clone(),
                    gen: token.gen,
                };
                if !c.watch(copy) {
                    return None; // became ready while we registered
                }
                registered += 1;
            }
            Some(())
        });
        let gen = match begun {
            Ok(p) => {
                let run_now = me.commit(p);
                me.resume(p, run_now);
                p.gen
            }
            Err(Wake::Unparked) => id.unwrap().1,
            Err(w) => panic!("select's park ended with {w:?}"),
        };
        // `Unwatch::drop`.
        for c in &chans[..registered] {
            c.unwatch(id.unwrap());
        }
        me.left_wait.store(gen, Release);
    }
}

/// (e) `Select` over two receivers races a send into the second: the send may come before the
/// scan, between the scan and the registrations, between the two registrations, or after the
/// park. The selector always wakes (a lost wake-up is a loom deadlock), picks the receiver
/// that has the value, and leaves no token behind on either.
#[test]
fn select_vs_send() {
    model(Some(4), || {
        let chans = [Watched::new(), Watched::new()];
        let selector = {
            let chans = chans.clone();
            thread::spawn(move || select_ready(&chans, &Green::new()))
        };
        chans[1].put(VALUE);
        assert_eq!(selector.join().unwrap(), 1);
        for c in &chans {
            assert!(
                c.state.lock().unwrap().1.is_empty(),
                "a select token stayed"
            );
        }
    });
}

/// (f) `Select` over the sending side of a full channel (and an idle receiver) races a receive
/// that makes room: the selector always wakes and picks the sender, and leaves no token.
#[test]
fn select_send_vs_recv() {
    model(Some(4), || {
        let chans = [Watched::new(), Watched::new_full_sender()];
        let selector = {
            let chans = chans.clone();
            thread::spawn(move || select_ready(&chans, &Green::new()))
        };
        assert_eq!(chans[1].take(), Some(VALUE));
        assert_eq!(selector.join().unwrap(), 1);
        for c in &chans {
            assert!(
                c.state.lock().unwrap().1.is_empty(),
                "a select token stayed"
            );
        }
    });
}
