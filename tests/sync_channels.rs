//! Channels and `Select`: the behaviours crossbeam-channel's and std::sync::mpsc's own test
//! suites pin down (smoke, capacity, len, disconnection, timeouts, rendezvous, MPMC, iterators,
//! drops, stress), run with greenlets and plain threads on the same channel, plus grove's own
//! concern: a waiter cancelled by `kill`, `timeout` or its own deadline never swallows a value
//! and never delivers one it was told it did not deliver.
//!
//! Every loop is bounded in count, and every wait that could hang on a bug is bounded in time.

mod common;

use common::{in_greenlet, is_killed, ms, on_thread_and_greenlet, us, Rng, Worker};

use grove::sync::{
    bounded, channel, unbounded, Receiver, RecvError, RecvTimeoutError, Select, SendError,
    SendTimeoutError, Sender, TryRecvError, TrySendError,
};
use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// helpers

/// The channel flavours: unbounded, rendezvous, and two buffered sizes.
const FLAVOURS: [Option<usize>; 4] = [None, Some(0), Some(1), Some(8)];

fn make<T>(cap: Option<usize>) -> (Sender<T>, Receiver<T>) {
    match cap {
        None => unbounded(),
        Some(n) => bounded(n),
    }
}

/// A short random pause: a few yields or a few microseconds of sleep (works in a greenlet and on
/// a thread alike).
fn jitter(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 => grove::yield_now(),
        2 => {
            for _ in 0..rng.below(5) {
                grove::yield_now();
            }
        }
        _ => grove::sleep(us(rng.below(60))),
    }
}

/// A value that counts its drops.
#[derive(Debug)]
struct Tracked {
    id: u64,
    drops: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(id: u64, drops: &Arc<AtomicUsize>) -> Tracked {
        Tracked {
            id,
            drops: drops.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// Asserts every value in `0..n` was seen exactly once.
fn assert_exactly_once(mut got: Vec<u64>, n: u64, what: &str) {
    got.sort_unstable();
    let mut dup = None;
    for w in got.windows(2) {
        if w[0] == w[1] {
            dup = Some(w[0]);
            break;
        }
    }
    assert!(dup.is_none(), "{what}: value {dup:?} delivered twice");
    assert_eq!(
        got.len() as u64,
        n,
        "{what}: {} of {n} values delivered (lost some)",
        got.len()
    );
    assert!(
        got.iter().copied().eq(0..n),
        "{what}: delivered values are not exactly 0..{n}"
    );
}

/// Waits (bounded) for `cond`; panics with `what` after 5 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        grove::sleep(ms(1));
    }
}

// ---------------------------------------------------------------------------------------------
// smoke, capacity, len

#[test]
fn sync_channel_smoke_every_flavour() {
    for cap in FLAVOURS {
        let (tx, rx) = make::<i32>(cap);
        if cap == Some(0) {
            // Nobody is receiving: a rendezvous cannot take a value without waiting.
            assert_eq!(tx.try_send(7), Err(TrySendError::Full(7)));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            continue;
        }
        tx.try_send(7).unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
        tx.send(8).unwrap();
        assert_eq!(rx.recv(), Ok(8));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(ms(1)), Err(RecvTimeoutError::Timeout));
    }
    // `channel()` is the unbounded flavour too.
    let (tx, rx) = channel();
    for i in 0..1000 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.capacity(), None);
    assert_eq!(rx.try_iter().count(), 1000);
}

#[test]
fn sync_channel_smoke_across_greenlets_and_threads() {
    // greenlet -> thread
    let (tx, rx) = bounded(0);
    let g = grove::spawn(move || tx.send(String::from("from greenlet")).unwrap());
    assert_eq!(rx.recv().unwrap(), "from greenlet");
    g.join().unwrap();
    // thread -> greenlet
    let (tx, rx) = bounded(0);
    let g = grove::spawn(move || rx.recv().unwrap());
    let t = std::thread::spawn(move || tx.send(String::from("from thread")).unwrap());
    assert_eq!(g.join().unwrap(), "from thread");
    t.join().unwrap();
    // a greenlet talking to itself over an unbounded channel
    let v = in_greenlet(|| {
        let (tx, rx) = channel();
        tx.send(5).unwrap();
        tx.send(6).unwrap();
        rx.recv().unwrap() * 10 + rx.recv().unwrap()
    });
    assert_eq!(v, 56);
}

#[test]
fn sync_channel_capacity_on_both_ends() {
    for n in [0usize, 1, 2, 3, 100] {
        let (tx, rx) = bounded::<()>(n);
        assert_eq!(tx.capacity(), Some(n));
        assert_eq!(rx.capacity(), Some(n));
        assert_eq!(tx.clone().capacity(), Some(n));
    }
    let (tx, rx) = unbounded::<()>();
    assert_eq!(tx.capacity(), None);
    assert_eq!(rx.capacity(), None);
}

#[test]
fn sync_channel_len_is_empty_is_full_bounded() {
    let (tx, rx) = bounded(2);
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_empty() && rx.is_empty());
    assert!(!tx.is_full() && !rx.is_full());

    tx.send(1).unwrap();
    assert_eq!((tx.len(), rx.len()), (1, 1));
    assert!(!tx.is_empty() && !rx.is_empty());
    assert!(!tx.is_full() && !rx.is_full());

    tx.send(2).unwrap();
    assert_eq!((tx.len(), rx.len()), (2, 2));
    assert!(tx.is_full() && rx.is_full());

    rx.recv().unwrap();
    assert_eq!((tx.len(), rx.len()), (1, 1));
    assert!(!tx.is_full() && !rx.is_full());
    rx.recv().unwrap();
    assert!(tx.is_empty() && rx.is_empty());
}

#[test]
fn sync_channel_len_is_empty_is_full_unbounded() {
    let (tx, rx) = unbounded();
    for i in 0..50 {
        assert_eq!(tx.len(), i);
        assert!(!tx.is_full(), "an unbounded channel is never full");
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 50);
    assert!(!rx.is_empty());
    for i in 0..50 {
        assert_eq!(rx.recv(), Ok(i));
        assert_eq!(rx.len(), 49 - i);
    }
    assert!(rx.is_empty());
}

#[test]
fn sync_channel_len_is_empty_is_full_rendezvous() {
    let (tx, rx) = bounded::<u32>(0);
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_empty() && rx.is_empty());
    assert!(tx.is_full() && rx.is_full(), "a rendezvous is always full");
    // A sender parked with its value: still nothing buffered.
    let tx2 = tx.clone();
    let g = grove::spawn(move || tx2.send(9).unwrap());
    grove::sleep(ms(20));
    assert_eq!(rx.len(), 0);
    assert!(rx.is_empty() && rx.is_full());
    assert_eq!(rx.recv(), Ok(9));
    g.join().unwrap();
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_full());
}

#[test]
fn sync_channel_len_stays_within_capacity_under_load() {
    const COUNT: usize = 3000;
    let (tx, rx) = bounded::<usize>(4);
    let rx2 = rx.clone();
    let consumer = grove::spawn(move || {
        for i in 0..COUNT {
            assert_eq!(rx2.recv(), Ok(i));
            assert!(rx2.len() <= 4, "len {} above capacity", rx2.len());
        }
    });
    let producer = std::thread::spawn(move || {
        for i in 0..COUNT {
            tx.send(i).unwrap();
            assert!(tx.len() <= 4, "len {} above capacity", tx.len());
        }
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    assert_eq!(rx.len(), 0);
}

#[test]
fn sync_channel_handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>(_: &T) {}
    let (tx, rx) = bounded::<String>(1);
    check(&tx);
    check(&rx);
    assert_eq!(format!("{tx:?}"), "Sender { .. }");
    assert_eq!(format!("{rx:?}"), "Receiver { .. }");
    // Handles move into greenlets and threads and work there.
    let t = std::thread::spawn(move || tx.send(String::from("x")).unwrap());
    assert_eq!(in_greenlet(move || rx.recv().unwrap()), "x");
    t.join().unwrap();
}

#[test]
fn sync_channel_same_channel() {
    let (tx1, rx1) = bounded::<()>(1);
    let (tx2, rx2) = bounded::<()>(1);
    assert!(tx1.same_channel(&tx1.clone()));
    assert!(!tx1.same_channel(&tx2));
    assert!(rx1.same_channel(&rx1.clone()));
    assert!(!rx1.same_channel(&rx2));
}

// ---------------------------------------------------------------------------------------------
// try_send / try_recv

#[test]
fn sync_channel_try_send_full_then_disconnected() {
    let (tx, rx) = bounded(1);
    assert_eq!(tx.try_send(String::from("a")), Ok(()));
    assert_eq!(
        tx.try_send(String::from("b")),
        Err(TrySendError::Full(String::from("b"))),
        "a full channel gives the value back"
    );
    assert_eq!(rx.try_recv().as_deref(), Ok("a"));
    assert_eq!(tx.try_send(String::from("c")), Ok(()));
    drop(rx);
    assert_eq!(
        tx.try_send(String::from("d")),
        Err(TrySendError::Disconnected(String::from("d")))
    );

    // Unbounded: never Full, but Disconnected once every receiver is gone.
    let (tx, rx) = unbounded();
    let rx2 = rx.clone();
    assert_eq!(tx.try_send(1), Ok(()));
    drop(rx);
    assert_eq!(tx.try_send(2), Ok(()), "one receiver is still alive");
    drop(rx2);
    assert_eq!(tx.try_send(3), Err(TrySendError::Disconnected(3)));

    // Rendezvous: Full without a receiver, Disconnected without receivers.
    let (tx, rx) = bounded(0);
    assert_eq!(tx.try_send(1), Err(TrySendError::Full(1)));
    drop(rx);
    assert_eq!(tx.try_send(1), Err(TrySendError::Disconnected(1)));
}

#[test]
fn sync_channel_try_send_pairs_with_a_parked_receiver_on_rendezvous() {
    for green_receiver in [true, false] {
        let (tx, rx) = bounded::<u32>(0);
        let r = Worker::spawn(green_receiver, move || rx.recv());
        // Only a parked receiver can take a value from try_send: retry until it has parked.
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match tx.try_send(42) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) => {
                    assert!(Instant::now() < until, "receiver never took the value");
                    grove::sleep(ms(1));
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(r.join(), Ok(42));
    }
}

#[test]
fn sync_channel_try_recv_empty_value_disconnected() {
    for cap in [None, Some(1), Some(8)] {
        let (tx, rx) = make::<i32>(cap);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(7).unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(tx);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }
    // Rendezvous: try_recv takes a parked sender's value.
    let (tx, rx) = bounded::<i32>(0);
    let g = grove::spawn(move || tx.send(7));
    wait_for("a parked sender on the rendezvous", || {
        let mut sel = Select::new();
        sel.recv(&rx);
        sel.try_ready().is_ok()
    });
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(g.join().unwrap(), Ok(()));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
}

// ---------------------------------------------------------------------------------------------
// disconnection

#[test]
fn sync_channel_send_after_receivers_dropped_returns_the_value() {
    for cap in FLAVOURS {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = make::<Tracked>(cap);
        let rx2 = rx.clone();
        drop(rx);
        if cap != Some(0) {
            tx.send(Tracked::new(0, &drops))
                .expect("one receiver is still alive");
        }
        drop(rx2);
        let SendError(v) = tx.send(Tracked::new(1, &drops)).unwrap_err();
        assert_eq!(v.id, 1, "send gives back the very value");
        let Err(SendTimeoutError::Disconnected(v2)) =
            tx.send_timeout(Tracked::new(2, &drops), ms(50))
        else {
            panic!("send_timeout to a channel without receivers must be Disconnected");
        };
        assert_eq!(v2.id, 2);
        let Err(SendTimeoutError::Disconnected(v3)) =
            tx.send_deadline(Tracked::new(3, &drops), Instant::now() + ms(50))
        else {
            panic!("send_deadline to a channel without receivers must be Disconnected");
        };
        assert_eq!(v3.id, 3);
        let before = drops.load(SeqCst);
        drop((v, v2, v3));
        assert_eq!(
            drops.load(SeqCst),
            before + 3,
            "returned values are live, owned values"
        );
    }
}

#[test]
fn sync_channel_recv_after_senders_dropped_drains_then_errors() {
    for cap in [None, Some(3), Some(8)] {
        let (tx, rx) = make::<u32>(cap);
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        tx.send(3).unwrap();
        drop(tx);
        let _ = tx2.try_send(4); // Full for cap 3: then only three are queued
        drop(tx2);
        let mut got = Vec::new();
        while let Ok(v) = rx.recv() {
            got.push(v);
        }
        let expected: Vec<u32> = if cap == Some(3) {
            vec![1, 2, 3]
        } else {
            vec![1, 2, 3, 4]
        };
        assert_eq!(
            got, expected,
            "buffered values survive the senders ({cap:?})"
        );
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.recv_timeout(ms(50)), Err(RecvTimeoutError::Disconnected));
        assert_eq!(
            rx.recv_deadline(Instant::now() + ms(50)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}

#[test]
fn sync_channel_disconnect_wakes_blocked_receivers() {
    for cap in FLAVOURS {
        for green in [true, false] {
            let (tx, rx) = make::<u32>(cap);
            let waiters: Vec<_> = (0..3)
                .map(|k| {
                    let rx = rx.clone();
                    // Mix: the first waiter is always of the other kind.
                    Worker::spawn(if k == 0 { !green } else { green }, move || {
                        (rx.recv(), rx.recv_timeout(Duration::from_secs(30)))
                    })
                })
                .collect();
            grove::sleep(ms(20));
            let t0 = Instant::now();
            drop(tx);
            for w in waiters {
                assert_eq!(
                    w.join(),
                    (Err(RecvError), Err(RecvTimeoutError::Disconnected))
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "disconnect did not wake"
            );
        }
    }
}

#[test]
fn sync_channel_disconnect_wakes_blocked_senders_with_their_values() {
    for cap in [Some(0), Some(1)] {
        for green in [true, false] {
            let (tx, rx) = make::<u32>(cap);
            if cap == Some(1) {
                tx.send(100).unwrap();
            }
            let senders: Vec<_> = (0..3u32)
                .map(|k| {
                    let tx = tx.clone();
                    Worker::spawn(if k == 0 { !green } else { green }, move || tx.send(k))
                })
                .collect();
            grove::sleep(ms(20));
            drop(rx);
            let mut back: Vec<u32> = senders
                .into_iter()
                .map(|s| s.join().expect_err("no receiver took it").0)
                .collect();
            back.sort_unstable();
            assert_eq!(
                back,
                vec![0, 1, 2],
                "each blocked sender gets its own value back"
            );
        }
    }
}

#[test]
fn sync_channel_killing_the_only_receiver_disconnects_blocked_senders() {
    for cap in [Some(0), Some(1)] {
        let (tx, rx) = make::<u32>(cap);
        if cap == Some(1) {
            tx.send(0).unwrap();
        }
        // The only receiver lives in a greenlet that sleeps; its unwind drops it.
        let r = grove::spawn(move || {
            grove::sleep(Duration::from_secs(30));
            drop(rx);
        });
        let s = std::thread::spawn(move || tx.send(1));
        grove::sleep(ms(20));
        r.kill();
        assert!(is_killed(&r.join().unwrap_err()));
        assert_eq!(s.join().unwrap(), Err(SendError(1)), "{cap:?}");
    }
}

#[test]
fn sync_channel_dropping_the_last_receiver_drops_queued_values() {
    // crossbeam's unbounded flavour (and std::sync::mpsc, built on it) discards queued values
    // as soon as the last receiver goes, while senders live on. Programs rely on it for the
    // request/reply pattern: a reply sender queued to a dead server is dropped, so the client's
    // reply receiver sees Disconnected instead of waiting forever.
    let (req_tx, req_rx) = unbounded::<Sender<u32>>();
    let server = grove::spawn(move || {
        grove::sleep(Duration::from_secs(30)); // never gets to serve
        drop(req_rx);
    });
    let (reply_tx, reply_rx) = bounded::<u32>(1);
    req_tx.send(reply_tx).unwrap();
    grove::sleep(ms(10));
    server.kill();
    assert!(is_killed(&server.join().unwrap_err()));
    assert_eq!(
        reply_rx.recv_timeout(ms(500)),
        Err(RecvTimeoutError::Disconnected),
        "the queued reply sender outlived the last receiver"
    );
    drop(req_tx);

    // The same, counted, for every buffering flavour (grove drops them for bounded channels
    // too, as std's bounded channel does).
    for cap in [None, Some(5), Some(8)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = make(cap);
        let rx2 = rx.clone();
        for i in 0..5 {
            tx.send(Tracked::new(i, &drops)).unwrap();
        }
        drop(rx);
        assert_eq!(drops.load(SeqCst), 0, "a receiver is still alive ({cap:?})");
        drop(rx2);
        assert_eq!(
            drops.load(SeqCst),
            5,
            "queued values live on after the last receiver is gone ({cap:?})"
        );
        let SendError(v) = tx.send(Tracked::new(9, &drops)).unwrap_err();
        drop(v);
        drop(tx);
        assert_eq!(
            drops.load(SeqCst),
            6,
            "each value dropped exactly once ({cap:?})"
        );
    }
}

#[test]
fn sync_channel_receiver_dropped_while_sender_loops() {
    // std mpsc's port_gone_concurrent: a sender loops until the receiver goes away.
    for cap in FLAVOURS {
        let (tx, rx) = make::<u32>(cap);
        let s = grove::spawn(move || {
            let mut sent = 0u32;
            while tx.send(sent).is_ok() {
                sent += 1;
                if sent % 64 == 0 {
                    grove::yield_now();
                }
                assert!(sent < 10_000_000, "sender never saw the disconnection");
            }
            sent
        });
        let t = std::thread::spawn(move || {
            for _ in 0..10 {
                rx.recv().unwrap();
            }
            drop(rx);
        });
        t.join().unwrap();
        assert!(s.join().unwrap() >= 10);
    }
}

// ---------------------------------------------------------------------------------------------
// timeouts

#[test]
fn sync_channel_recv_timeout_times_out_gets_value_and_sees_disconnect() {
    on_thread_and_greenlet(|| {
        for cap in FLAVOURS {
            let (tx, rx) = make::<u32>(cap);
            let t0 = Instant::now();
            assert_eq!(rx.recv_timeout(ms(30)), Err(RecvTimeoutError::Timeout));
            assert!(
                t0.elapsed() >= ms(30),
                "timed out early: {:?}",
                t0.elapsed()
            );

            // A value arriving in the middle of the wait ends it.
            let s = grove::spawn(move || {
                grove::sleep(ms(20));
                tx.send(7).unwrap();
                grove::sleep(ms(20));
                drop(tx); // disconnects in the middle of the next wait
            });
            let t0 = Instant::now();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)),
                Err(RecvTimeoutError::Disconnected)
            );
            assert!(t0.elapsed() < Duration::from_secs(5));
            s.join().unwrap();
        }
    });
}

#[test]
fn sync_channel_recv_deadline_in_the_past() {
    let (tx, rx) = unbounded();
    let past = Instant::now();
    assert_eq!(rx.recv_deadline(past), Err(RecvTimeoutError::Timeout));
    tx.send(1).unwrap();
    // crossbeam's recv_timeout_nonempty_expired: a ready value is taken even past the deadline.
    assert_eq!(rx.recv_deadline(past), Ok(1));
    tx.send(2).unwrap();
    assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2));
    assert_eq!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    // A huge timeout does not overflow.
    tx.send(3).unwrap();
    assert_eq!(rx.recv_timeout(Duration::MAX), Ok(3));
}

#[test]
fn sync_channel_send_timeout_times_out_succeeds_and_sees_disconnect() {
    on_thread_and_greenlet(|| {
        for cap in [Some(0), Some(1)] {
            let (tx, rx) = make::<u32>(cap);
            if cap == Some(1) {
                tx.send(0).unwrap();
            }
            let t0 = Instant::now();
            assert_eq!(
                tx.send_timeout(7, ms(30)),
                Err(SendTimeoutError::Timeout(7))
            );
            assert!(
                t0.elapsed() >= ms(30),
                "timed out early: {:?}",
                t0.elapsed()
            );
            assert_eq!(
                tx.send_deadline(8, Instant::now()),
                Err(SendTimeoutError::Timeout(8))
            );

            // A receiver making room in the middle of the wait lets it through.
            let r = grove::spawn(move || {
                grove::sleep(ms(30));
                let got = rx.recv().unwrap();
                grove::sleep(ms(30));
                let left = rx.len();
                drop(rx); // disconnects in the middle of the next wait
                (got, left)
            });
            let t0 = Instant::now();
            assert_eq!(tx.send_timeout(9, Duration::from_secs(10)), Ok(()));
            assert_eq!(
                tx.send_timeout(10, Duration::from_secs(10)),
                Err(SendTimeoutError::Disconnected(10))
            );
            assert!(t0.elapsed() < Duration::from_secs(5));
            // Rendezvous: the receiver got 9 (not the timed-out 7 or 8). Bounded(1): it got
            // the 0, and the 9 took its place in the buffer.
            let expected = if cap == Some(1) { (0, 1) } else { (9, 0) };
            assert_eq!(
                r.join().unwrap(),
                expected,
                "timed-out values must not be delivered"
            );
        }
    });
}

#[test]
fn sync_channel_send_timeout_on_room_never_waits() {
    // crossbeam's send_timeout_nonfull_expired.
    let (tx, rx) = bounded(1);
    assert_eq!(tx.send_timeout(1, Duration::ZERO), Ok(()));
    assert_eq!(
        tx.send_timeout(2, Duration::ZERO),
        Err(SendTimeoutError::Timeout(2))
    );
    assert_eq!(rx.recv(), Ok(1));
    let (tx, rx) = unbounded();
    assert_eq!(tx.send_deadline(1, Instant::now() - ms(1)), Ok(()));
    assert_eq!(rx.recv(), Ok(1));
}

// ---------------------------------------------------------------------------------------------
// rendezvous

#[test]
fn sync_rendezvous_send_waits_for_a_receiver() {
    for green in [true, false] {
        let (tx, rx) = bounded::<u32>(0);
        let sent = Arc::new(AtomicBool::new(false));
        let s = {
            let sent = sent.clone();
            Worker::spawn(green, move || {
                tx.send(1).unwrap();
                sent.store(true, SeqCst);
                tx.send(2).unwrap();
                tx.send(3).unwrap();
            })
        };
        grove::sleep(ms(40));
        assert!(!sent.load(SeqCst), "send returned with nobody receiving");
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(3));
        s.join();
        assert!(sent.load(SeqCst));
        assert_eq!(rx.recv(), Err(RecvError));
    }
}

#[test]
fn sync_rendezvous_recv_waits_for_a_sender() {
    for green in [true, false] {
        let (tx, rx) = bounded::<u32>(0);
        let got = Arc::new(AtomicBool::new(false));
        let r = {
            let got = got.clone();
            Worker::spawn(green, move || {
                let v = rx.recv().unwrap();
                got.store(true, SeqCst);
                v
            })
        };
        grove::sleep(ms(40));
        assert!(!got.load(SeqCst), "recv returned with nobody sending");
        tx.send(5).unwrap();
        assert_eq!(r.join(), 5);
    }
}

#[test]
fn sync_rendezvous_send_returns_only_after_the_value_is_taken() {
    // Each send completes a hand-off: once it returns, the value has left the sender and the
    // channel holds nothing (the receiver's count can lag by at most one).
    const COUNT: usize = 2000;
    let (tx, rx) = bounded::<usize>(0);
    let taken = Arc::new(AtomicUsize::new(0));
    let r = {
        let taken = taken.clone();
        std::thread::spawn(move || {
            for i in 0..COUNT {
                assert_eq!(rx.recv(), Ok(i));
                taken.store(i + 1, SeqCst);
            }
        })
    };
    in_greenlet(move || {
        for i in 0..COUNT {
            tx.send(i).unwrap();
            assert_eq!(tx.len(), 0);
            // i + 1 values are taken; the receiver may not have counted value i yet.
            assert!(
                taken.load(SeqCst) >= i,
                "send {i} returned before value {} was taken",
                i - 1
            );
        }
    });
    r.join().unwrap();
}

#[test]
fn sync_rendezvous_pairs_every_sender_with_one_receiver() {
    // Several parked senders and several parked receivers of both kinds: each value is paired
    // with exactly one receiver.
    const SENDERS: u64 = 6;
    let (tx, rx) = bounded::<u64>(0);
    let senders: Vec<_> = (0..SENDERS)
        .map(|k| {
            let tx = tx.clone();
            Worker::spawn(k % 3 != 0, move || tx.send(k).unwrap())
        })
        .collect();
    drop(tx);
    grove::sleep(ms(20)); // let them park
    let receivers: Vec<_> = (0..SENDERS)
        .map(|k| {
            let rx = rx.clone();
            Worker::spawn(k % 2 == 0, move || rx.recv().unwrap())
        })
        .collect();
    for s in senders {
        s.join();
    }
    let got: Vec<u64> = receivers.into_iter().map(Worker::join).collect();
    assert_exactly_once(got, SENDERS, "rendezvous pairing");
    assert_eq!(rx.recv(), Err(RecvError));
}

// ---------------------------------------------------------------------------------------------
// fairness among waiters (docs/sync.md: FIFO among waiting senders and among waiting receivers)

#[test]
fn sync_channel_waiting_receivers_are_served_in_arrival_order() {
    for cap in FLAVOURS {
        served_in_order(&format!("receivers {cap:?}"), || {
            let (tx, rx) = make::<usize>(cap);
            let receivers: Vec<_> = (0..5)
                .map(|k| {
                    let rx = rx.clone();
                    let w = Worker::spawn(k % 2 == 0, move || rx.recv().unwrap());
                    wait_for_parked(|| tx.waiting().1 == k + 1); // park in this order
                    w
                })
                .collect();
            for v in 0..5 {
                tx.send(v).unwrap();
            }
            receivers.into_iter().map(Worker::join).collect()
        });
    }
}

/// Waiters are queued by sleeping between their starts, which a loaded machine can upset, so an
/// attempt that comes out of order is retried; a real ordering bug fails every attempt.
/// Waits (bounded) until `parked` holds: the waiter just started is queued behind the others.
fn wait_for_parked(parked: impl Fn() -> bool) {
    let t = Instant::now();
    while !parked() {
        assert!(t.elapsed() < Duration::from_secs(10), "waiter never parked");
        grove::sleep(ms(1));
    }
}

fn served_in_order(what: &str, mut attempt: impl FnMut() -> Vec<usize>) {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let got = attempt();
        if got == [0, 1, 2, 3, 4] {
            return;
        }
        seen.push(got);
    }
    panic!("{what}: waiters served out of arrival order in every attempt: {seen:?}");
}

#[test]
fn sync_channel_waiting_senders_are_served_in_arrival_order() {
    for cap in [Some(0), Some(1)] {
        served_in_order(&format!("senders {cap:?}"), || {
            let (tx, rx) = make::<usize>(cap);
            if cap == Some(1) {
                tx.send(100).unwrap();
            }
            let senders: Vec<_> = (0..5)
                .map(|k| {
                    let tx = tx.clone();
                    let w = Worker::spawn(k % 2 == 1, move || tx.send(k).unwrap());
                    wait_for_parked(|| rx.waiting().0 == k + 1); // park in this order
                    w
                })
                .collect();
            let mut got: Vec<usize> = (0..5 + cap.unwrap()).map(|_| rx.recv().unwrap()).collect();
            if cap == Some(1) {
                assert_eq!(got.remove(0), 100);
            }
            for s in senders {
                s.join();
            }
            got
        });
    }
}

// ---------------------------------------------------------------------------------------------
// SPSC / MPMC

#[test]
fn sync_channel_spsc_in_order_every_flavour_and_pairing() {
    const COUNT: u64 = 3000;
    for cap in FLAVOURS {
        for (green_tx, green_rx) in [(true, true), (true, false), (false, true)] {
            let (tx, rx) = make::<u64>(cap);
            let r = Worker::spawn(green_rx, move || {
                for i in 0..COUNT {
                    assert_eq!(rx.recv(), Ok(i), "out of order ({cap:?})");
                }
                assert_eq!(rx.recv(), Err(RecvError));
            });
            let s = Worker::spawn(green_tx, move || {
                for i in 0..COUNT {
                    tx.send(i).unwrap();
                }
            });
            s.join();
            r.join();
        }
    }
}

/// `P` producers and `C` consumers, half greenlets and half plain threads, on one channel. Each
/// value is `producer << 32 | seq`. Checks: every value delivered exactly once, each consumer
/// sees each producer's values in increasing order (FIFO per producer), and the checksum.
fn mpmc_mixed(cap: Option<usize>, producers: u64, consumers: usize, per_producer: u64) {
    let (tx, rx) = make::<u64>(cap);
    let cons: Vec<_> = (0..consumers)
        .map(|k| {
            let rx = rx.clone();
            Worker::spawn(k % 2 == 0, move || {
                let mut got = Vec::new();
                let mut last: HashMap<u64, u64> = HashMap::new();
                for v in rx.iter() {
                    let (p, seq) = (v >> 32, v & 0xffff_ffff);
                    if let Some(&prev) = last.get(&p) {
                        assert!(seq > prev, "producer {p}: {seq} after {prev} ({cap:?})");
                    }
                    last.insert(p, seq);
                    got.push(v);
                }
                got
            })
        })
        .collect();
    drop(rx);
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let tx = tx.clone();
            Worker::spawn(p % 2 == 1, move || {
                for seq in 0..per_producer {
                    tx.send(p << 32 | seq).unwrap();
                    if seq % 97 == 0 {
                        grove::yield_now();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for p in prods {
        p.join();
    }
    let all: Vec<u64> = cons.into_iter().flat_map(Worker::join).collect();
    let sum: u64 = all
        .iter()
        .map(|v| (v >> 32) * per_producer + (v & 0xffff_ffff))
        .sum();
    let n = producers * per_producer;
    assert_eq!(sum, n * (n - 1) / 2, "checksum ({cap:?})");
    let dense: Vec<u64> = all
        .iter()
        .map(|v| (v >> 32) * per_producer + (v & 0xffff_ffff))
        .collect();
    assert_exactly_once(dense, n, &format!("mpmc {cap:?}"));
}

#[test]
fn sync_channel_mpmc_mixed_unbounded() {
    mpmc_mixed(None, 6, 6, 1500);
}

#[test]
fn sync_channel_mpmc_mixed_bounded() {
    mpmc_mixed(Some(1), 6, 6, 800);
    mpmc_mixed(Some(4), 6, 6, 800);
}

#[test]
fn sync_channel_mpmc_mixed_rendezvous() {
    mpmc_mixed(Some(0), 6, 6, 500);
}

#[test]
fn sync_channel_many_greenlets_one_channel() {
    // std mpsc's shared_chan_stress, scaled for greenlets: many producers, one consumer.
    const GREENLETS: u64 = 200;
    const EACH: u64 = 20;
    for cap in FLAVOURS {
        let (tx, rx) = make::<u64>(cap);
        let hs: Vec<_> = (0..GREENLETS)
            .map(|g| {
                let tx = tx.clone();
                grove::spawn(move || {
                    for k in 0..EACH {
                        tx.send(g * EACH + k).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let got: Vec<u64> = rx.iter().collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_exactly_once(got, GREENLETS * EACH, &format!("many greenlets {cap:?}"));
    }
}

#[test]
fn sync_channel_linearizable_send_then_try_recv() {
    // crossbeam's linearizable: with capacity = workers, a send followed by try_recv always
    // finds a value (its own or another's).
    const WORKERS: usize = 4;
    const COUNT: usize = 2000;
    let (tx, rx) = bounded::<u8>(WORKERS);
    let ws: Vec<_> = (0..WORKERS)
        .map(|k| {
            let (tx, rx) = (tx.clone(), rx.clone());
            Worker::spawn(k % 2 == 0, move || {
                for i in 0..COUNT {
                    tx.send(0).unwrap();
                    rx.try_recv().expect("a value sent before must be there");
                    if i % 64 == 0 {
                        grove::yield_now();
                    }
                }
            })
        })
        .collect();
    for w in ws {
        w.join();
    }
    assert!(rx.is_empty());
}

#[test]
fn sync_channel_recv_a_lot_without_a_receiver_running() {
    // std mpsc's recv_a_lot: values pile up, then all come out in order.
    let (tx, rx) = unbounded();
    for i in 0..20_000u32 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.len(), 20_000);
    for i in 0..20_000u32 {
        assert_eq!(rx.recv(), Ok(i));
    }
}

// ---------------------------------------------------------------------------------------------
// iterators

#[test]
fn sync_channel_iter_ends_at_disconnect() {
    for cap in FLAVOURS {
        let (tx, rx) = make::<u32>(cap);
        let s = grove::spawn(move || {
            for i in 0..10 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = rx.iter().collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        s.join().unwrap();
    }
}

#[test]
fn sync_channel_iter_can_stop_early_and_resume() {
    // std mpsc's test_recv_iter_break.
    let (tx, rx) = unbounded();
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    let first: Vec<i32> = rx.iter().take(3).collect();
    assert_eq!(first, vec![0, 1, 2]);
    let mut sum = 0;
    for v in &rx {
        sum += v;
        if v == 6 {
            break;
        }
    }
    assert_eq!(sum, 3 + 4 + 5 + 6);
    drop(tx);
    assert_eq!(rx.iter().collect::<Vec<_>>(), vec![7, 8, 9]);
}

#[test]
fn sync_channel_try_iter_takes_only_what_is_there() {
    let (tx, rx) = bounded(10);
    assert_eq!(rx.try_iter().next(), None);
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(rx.try_iter().count(), 0, "try_iter never waits");
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![5]);
    assert_eq!(rx.try_iter().count(), 0);

    // crossbeam's stress_iter: requests over one rendezvous, answers drained with try_iter.
    const COUNT: usize = 300;
    let (req_tx, req_rx) = bounded::<()>(0);
    let (resp_tx, resp_rx) = bounded::<usize>(0);
    let answerer = grove::spawn(move || {
        for _ in req_rx.iter() {
            if resp_tx.send(1).is_err() {
                break;
            }
        }
    });
    let asker = std::thread::spawn(move || {
        let mut count = 0;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            for x in resp_rx.try_iter() {
                count += x;
                if count == COUNT {
                    return count;
                }
            }
            let _ = req_tx.try_send(());
            assert!(Instant::now() < until, "stress_iter stalled at {count}");
            std::thread::yield_now();
        }
    });
    assert_eq!(asker.join().unwrap(), COUNT);
    answerer.join().unwrap();
}

#[test]
fn sync_channel_into_iter_owns_the_receiver() {
    let (tx, rx) = bounded(0);
    let s = std::thread::spawn(move || {
        for i in 1..=5 {
            tx.send(i).unwrap();
        }
    });
    let mut total = 0;
    for v in rx {
        total += v;
    }
    assert_eq!(total, 15);
    s.join().unwrap();

    // The owning iterator holds the channel's receiving side alive until it is dropped.
    let (tx, rx) = unbounded::<u8>();
    let mut it = rx.into_iter();
    tx.send(1).unwrap();
    assert_eq!(it.next(), Some(1));
    drop(it);
    assert_eq!(
        tx.send(2),
        Err(SendError(2)),
        "dropping IntoIter drops the receiver"
    );
}

// ---------------------------------------------------------------------------------------------
// drops

#[test]
fn sync_channel_drops_values_left_in_the_channel() {
    for cap in [None, Some(50)] {
        for (steps, additional) in [(0u64, 0u64), (0, 7), (100, 0), (513, 49), (1000, 50)] {
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = make::<Tracked>(cap);
            let r = {
                let rx = rx.clone();
                grove::spawn(move || {
                    for _ in 0..steps {
                        drop(rx.recv().unwrap());
                    }
                })
            };
            let s = {
                let (tx, drops) = (tx.clone(), drops.clone());
                std::thread::spawn(move || {
                    for i in 0..steps {
                        tx.send(Tracked::new(i, &drops)).unwrap();
                    }
                })
            };
            s.join().unwrap();
            r.join().unwrap();
            for i in 0..additional {
                tx.send(Tracked::new(i, &drops)).unwrap();
            }
            assert_eq!(
                drops.load(SeqCst) as u64,
                steps,
                "received values were dropped"
            );
            drop(tx);
            drop(rx);
            assert_eq!(
                drops.load(SeqCst) as u64,
                steps + additional,
                "values left in a dropped channel must be dropped ({cap:?})"
            );
        }
    }
}

#[test]
fn sync_channel_drops_each_value_exactly_once_under_churn() {
    // Values through every flavour with timeouts, failed sends and disconnection: every value
    // made is dropped exactly once (no leak, no double drop).
    for cap in FLAVOURS {
        let drops = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = make::<Tracked>(cap);
        // The receiver owns the only Receiver and quits after 200 values (later sends then
        // fail with Disconnected) or at disconnection, whichever comes first.
        let r = grove::spawn(move || {
            let mut n = 0;
            let until = Instant::now() + Duration::from_secs(20);
            while n < 200 {
                match rx.recv_timeout(us(200)) {
                    Ok(v) => {
                        drop(v);
                        n += 1;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                assert!(Instant::now() < until, "receiver stalled");
            }
        });
        // The sender thread owns the only Sender.
        let s = {
            let (drops, made) = (drops.clone(), made.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    made.fetch_add(1, SeqCst);
                    // Failed sends give the value back; dropping it here counts too.
                    let _ = tx.send_timeout(Tracked::new(i, &drops), us(300));
                }
            })
        };
        s.join().unwrap();
        r.join().unwrap();
        assert_eq!(made.load(SeqCst), 400);
        assert_eq!(
            drops.load(SeqCst),
            400,
            "every value dropped exactly once ({cap:?})"
        );
    }
}

#[test]
fn sync_channel_dropping_a_value_that_panics() {
    // crossbeam's panic_on_drop: a panicking Drop of a buffered value propagates from the
    // channel's drop; the values before it were dropped.
    struct Bomb(Arc<AtomicUsize>, bool);
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
            if self.1 {
                panic!("first drop");
            }
        }
    }
    let n = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = bounded(3);
    tx.send(Bomb(n.clone(), false)).unwrap();
    tx.send(Bomb(n.clone(), true)).unwrap();
    drop(tx);
    let r = catch_unwind(AssertUnwindSafe(move || drop(rx)));
    let p = r.expect_err("the value's panic propagates");
    assert_eq!(p.downcast_ref::<&str>(), Some(&"first drop"));
    assert!(
        n.load(SeqCst) >= 2,
        "values before the panicking one were dropped"
    );
}

// ---------------------------------------------------------------------------------------------
// stress

#[test]
fn sync_channel_stress_oneshot() {
    // A fresh channel per message, the two ends on different kinds of context.
    for cap in FLAVOURS {
        for i in 0..150u32 {
            let (tx, rx) = make::<u32>(cap);
            let green_rx = i % 2 == 0;
            let r = Worker::spawn(green_rx, move || rx.recv().unwrap());
            let s = Worker::spawn(!green_rx || i % 3 == 0, move || tx.send(i).unwrap());
            s.join();
            assert_eq!(r.join(), i);
        }
    }
}

#[test]
fn sync_channel_stress_timeout_two_sides() {
    // crossbeam's stress_timeout_two_threads: both sides use timeouts and retry.
    const COUNT: u64 = 300;
    for cap in [Some(0), Some(2), None] {
        let (tx, rx) = make::<u64>(cap);
        let s = grove::spawn(move || {
            for i in 0..COUNT {
                if i % 2 == 0 {
                    grove::sleep(us(50));
                }
                let mut v = i;
                loop {
                    match tx.send_timeout(v, us(100)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Timeout(back)) => v = back,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        });
        let r = std::thread::spawn(move || {
            let mut got = Vec::new();
            let until = Instant::now() + Duration::from_secs(20);
            loop {
                if got.len() % 2 == 1 {
                    std::thread::sleep(us(50));
                }
                match rx.recv_timeout(us(100)) {
                    Ok(v) => got.push(v),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                assert!(Instant::now() < until, "stalled at {}", got.len());
            }
            got
        });
        s.join().unwrap();
        let got = r.join().unwrap();
        assert_eq!(
            got,
            (0..COUNT).collect::<Vec<_>>(),
            "in order, each once ({cap:?})"
        );
    }
}

#[test]
fn sync_channel_through_channel() {
    // crossbeam's channel_through_channel: receivers passed along a chain of channels.
    const COUNT: usize = 300;
    type Msg = Box<dyn Any + Send>;
    for cap in [Some(0), Some(1), None] {
        let (tx, rx) = make::<Msg>(cap);
        let s = grove::spawn(move || {
            let mut tx = tx;
            for _ in 0..COUNT {
                let (new_tx, new_rx) = make::<Msg>(cap);
                tx.send(Box::new(Some(new_rx))).unwrap();
                tx = new_tx;
            }
        });
        let r = std::thread::spawn(move || {
            let mut rx = rx;
            for _ in 0..COUNT {
                rx = rx
                    .recv()
                    .unwrap()
                    .downcast_mut::<Option<Receiver<Msg>>>()
                    .unwrap()
                    .take()
                    .unwrap();
            }
            // The last sender is gone with the sender greenlet.
            rx.recv().is_err()
        });
        s.join().unwrap();
        assert!(r.join().unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Select

#[test]
fn sync_select_try_ready() {
    let (tx1, rx1) = unbounded::<u32>();
    let (tx2, rx2) = bounded::<u32>(1);
    let (_tx3, rx3) = bounded::<u32>(0);
    let mut sel = Select::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    let i3 = sel.recv(&rx3);
    assert_eq!((i1, i2, i3), (0, 1, 2), "indices in the order added");
    assert!(sel.try_ready().is_err(), "nothing is ready");
    tx2.send(5).unwrap();
    assert_eq!(sel.try_ready(), Ok(i2));
    assert_eq!(rx2.try_recv(), Ok(5));
    assert!(sel.try_ready().is_err());
    drop(tx1);
    assert_eq!(sel.try_ready(), Ok(i1), "a disconnected receiver is ready");
    assert_eq!(rx1.try_recv(), Err(TryRecvError::Disconnected));
    drop(tx2);
    let mut seen = [false; 3];
    for _ in 0..20 {
        seen[sel.try_ready().unwrap()] = true;
    }
    assert_eq!(
        seen,
        [true, true, false],
        "only the disconnected ones are ready"
    );
}

#[test]
fn sync_select_ready_waits_for_a_send() {
    on_thread_and_greenlet(|| {
        let (_tx1, rx1) = bounded::<u32>(1);
        let (tx2, rx2) = unbounded::<u32>();
        let (_tx3, rx3) = bounded::<u32>(0);
        let t0 = Instant::now();
        let s = grove::spawn(move || {
            grove::sleep(ms(30));
            tx2.send(9).unwrap();
            tx2
        });
        let mut sel = Select::new();
        sel.recv(&rx1);
        let i2 = sel.recv(&rx2);
        sel.recv(&rx3);
        assert_eq!(sel.ready(), i2);
        assert!(t0.elapsed() >= ms(30), "ready returned before the send");
        assert_eq!(rx2.try_recv(), Ok(9));
        drop(s.join().unwrap());
    });
}

#[test]
fn sync_select_ready_sees_a_parked_rendezvous_sender() {
    let (tx, rx) = bounded::<u32>(0);
    let (_tx_other, rx_other) = bounded::<u32>(0);
    let s = grove::spawn(move || tx.send(3).unwrap());
    let mut sel = Select::new();
    sel.recv(&rx_other);
    let i = sel.recv(&rx);
    assert_eq!(sel.ready_timeout(Duration::from_secs(5)), Ok(i));
    assert_eq!(rx.try_recv(), Ok(3));
    s.join().unwrap();
}

#[test]
fn sync_select_ready_timeout() {
    on_thread_and_greenlet(|| {
        let (tx1, rx1) = bounded::<u32>(0);
        let (tx2, rx2) = unbounded::<u32>();
        let mut sel = Select::new();
        let i1 = sel.recv(&rx1);
        let i2 = sel.recv(&rx2);
        let t0 = Instant::now();
        assert!(sel.ready_timeout(ms(30)).is_err(), "nothing was ready");
        assert!(
            t0.elapsed() >= ms(30),
            "timed out early: {:?}",
            t0.elapsed()
        );
        assert!(sel.ready_deadline(Instant::now()).is_err());

        // A send during the wait.
        let taken = Arc::new(grove::sync::Event::new());
        let s = {
            let taken = taken.clone();
            grove::spawn(move || {
                grove::sleep(ms(20));
                tx2.send(1).unwrap();
                taken.wait();
                grove::sleep(ms(20));
                drop(tx1); // a disconnection during the next wait
                tx2 // kept alive: rx2 must not turn ready by disconnection
            })
        };
        assert_eq!(sel.ready_timeout(Duration::from_secs(5)), Ok(i2));
        assert_eq!(rx2.try_recv(), Ok(1));
        taken.set();
        let t0 = Instant::now();
        assert_eq!(sel.ready_timeout(Duration::from_secs(5)), Ok(i1));
        assert!(t0.elapsed() < Duration::from_secs(4));
        assert_eq!(rx1.try_recv(), Err(TryRecvError::Disconnected));
        drop(s.join().unwrap());
    });
}

#[test]
fn sync_select_disconnected_receivers_are_ready() {
    let (tx1, rx1) = bounded::<u32>(0);
    let (tx2, rx2) = bounded::<u32>(3);
    tx2.send(1).unwrap();
    drop(tx2);
    let mut sel = Select::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    // rx2 has a value and is disconnected; rx1 is neither.
    assert_eq!(sel.ready(), i2);
    assert_eq!(rx2.try_recv(), Ok(1));
    assert_eq!(sel.ready(), i2, "disconnected and empty is still ready");
    assert_eq!(rx2.recv(), Err(RecvError));
    // A disconnection wakes a blocked ready().
    let d = std::thread::spawn(move || {
        std::thread::sleep(ms(20));
        drop(tx1);
    });
    let mut sel = Select::new();
    let j1 = sel.recv(&rx1);
    assert_eq!(sel.ready_timeout(Duration::from_secs(5)), Ok(j1));
    d.join().unwrap();
    let _ = i1;
}

#[test]
fn sync_select_same_receiver_twice() {
    let (tx, rx) = unbounded::<u32>();
    let mut sel = Select::new();
    let a = sel.recv(&rx);
    let b = sel.recv(&rx);
    assert_ne!(a, b);
    assert!(sel.try_ready().is_err());
    tx.send(1).unwrap();
    let mut hits = [0usize; 2];
    for _ in 0..200 {
        hits[sel.ready()] += 1;
    }
    assert!(
        hits[0] > 0 && hits[1] > 0,
        "both duplicates get picked: {hits:?}"
    );
}

#[test]
fn sync_select_is_fair_between_ready_receivers() {
    // crossbeam's fairness: with every receiver ready, each gets a fair share.
    const COUNT: usize = 2000;
    let (tx1, rx1) = bounded::<()>(COUNT);
    let (tx2, rx2) = unbounded::<()>();
    let (tx3, rx3) = bounded::<()>(COUNT);
    for _ in 0..COUNT {
        tx1.send(()).unwrap();
        tx2.send(()).unwrap();
        tx3.send(()).unwrap();
    }
    let rxs = [&rx1, &rx2, &rx3];
    let mut hits = [0usize; 3];
    for _ in 0..COUNT {
        let mut sel = Select::new();
        for r in rxs {
            sel.recv(r);
        }
        let i = sel.ready();
        rxs[i].try_recv().unwrap();
        hits[i] += 1;
    }
    assert!(
        hits.iter().all(|&h| h >= COUNT / 3 / 2),
        "unfair selection: {hits:?}"
    );
}

#[test]
#[should_panic(expected = "Select::ready with nothing to wait on")]
fn sync_select_ready_with_nothing_panics() {
    Select::new().ready();
}

#[test]
fn sync_select_consumers_compete_and_each_value_is_taken_once() {
    // Readiness is a hint: several consumers (greenlets and threads) select over three
    // channels and follow up with try_recv; every value ends up with exactly one of them.
    const PER_CHANNEL: u64 = 700;
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for cap in [None, Some(0), Some(2)] {
        let (tx, rx) = make::<u64>(cap);
        txs.push(tx);
        rxs.push(rx);
    }
    let consumers: Vec<_> = (0..4)
        .map(|k| {
            let rxs: Vec<Receiver<u64>> = rxs.to_vec();
            Worker::spawn(k % 2 == 0, move || {
                let mut got = Vec::new();
                let mut open = [true; 3];
                let until = Instant::now() + Duration::from_secs(20);
                while open.iter().any(|&o| o) {
                    assert!(Instant::now() < until, "select consumer stalled");
                    let mut sel = Select::new();
                    let mut map = Vec::new();
                    for (c, rx) in rxs.iter().enumerate() {
                        if open[c] {
                            sel.recv(rx);
                            map.push(c);
                        }
                    }
                    let c = map[sel.ready()];
                    match rxs[c].try_recv() {
                        Ok(v) => got.push(v),
                        Err(TryRecvError::Empty) => {} // someone else took it
                        Err(TryRecvError::Disconnected) => open[c] = false,
                    }
                }
                got
            })
        })
        .collect();
    drop(rxs);
    let producers: Vec<_> = txs
        .into_iter()
        .enumerate()
        .map(|(c, tx)| {
            Worker::spawn(c != 1, move || {
                for i in 0..PER_CHANNEL {
                    tx.send(c as u64 * PER_CHANNEL + i).unwrap();
                }
            })
        })
        .collect();
    for p in producers {
        p.join();
    }
    let all: Vec<u64> = consumers.into_iter().flat_map(Worker::join).collect();
    assert_exactly_once(all, 3 * PER_CHANNEL, "select consumers");
}

#[test]
fn sync_select_killed_or_timed_out_while_waiting_leaves_channels_usable() {
    let (tx1, rx1) = bounded::<u32>(0);
    let (tx2, rx2) = unbounded::<u32>();
    let (rx1b, rx2b) = (rx1.clone(), rx2.clone());
    let g = grove::spawn(move || {
        let mut sel = Select::new();
        sel.recv(&rx1b);
        sel.recv(&rx2b);
        sel.ready()
    });
    grove::sleep(ms(20));
    g.kill();
    assert!(is_killed(&g.join().unwrap_err()));

    let r = grove::timeout(ms(20), || {
        let mut sel = Select::new();
        sel.recv(&rx1);
        sel.recv(&rx2);
        sel.ready()
    });
    assert!(r.is_err(), "nothing was ready: the timeout fires");

    // Both channels still work, and a new Select still wakes.
    let s = grove::spawn(move || {
        grove::sleep(ms(20));
        tx2.send(2).unwrap();
        tx1.send(1).unwrap();
    });
    let mut sel = Select::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    let (mut got1, mut got2) = (false, false);
    while !(got1 && got2) {
        let i = sel
            .ready_timeout(Duration::from_secs(5))
            .expect("a sender is coming");
        if i == i1 {
            assert_eq!(rx1.try_recv(), Ok(1));
            got1 = true;
        } else {
            assert_eq!(i, i2);
            assert_eq!(rx2.try_recv(), Ok(2));
            got2 = true;
        }
    }
    s.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// cancellation: kill

#[test]
fn sync_channel_killed_receiver_never_swallows_a_value() {
    for cap in FLAVOURS {
        let (tx, rx) = make::<u32>(cap);
        let rx2 = rx.clone();
        let started = Arc::new(AtomicBool::new(false));
        let a = {
            let started = started.clone();
            grove::spawn(move || {
                started.store(true, SeqCst);
                rx2.recv()
            })
        };
        wait_for("the receiver to start", || started.load(SeqCst));
        grove::sleep(ms(20)); // parked in recv
        a.kill();
        assert!(is_killed(&a.join().unwrap_err()));
        // The next value goes to the next receiver, not to the dead one.
        let s = grove::spawn(move || tx.send(11).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(11), "{cap:?}");
        s.join().unwrap();
    }
}

#[test]
fn sync_channel_kill_racing_send_never_loses_a_value() {
    // A receiver is killed while a sender hands it a value: either it got the value (and its
    // join says so) or the value is still there for the next receiver. Never both, never none.
    for cap in FLAVOURS {
        let mut rng = Rng::new(cap.map_or(99, |c| c as u64 + 1));
        for i in 0..150u32 {
            let (tx, rx) = make::<u32>(cap);
            let rx2 = rx.clone();
            let a = grove::spawn(move || rx2.recv());
            for _ in 0..rng.below(3) {
                grove::yield_now();
            }
            let s = grove::spawn(move || tx.send(i));
            jitter(&mut rng);
            a.kill();
            let a_got = match a.join() {
                Ok(r) => Some(r.expect("not disconnected")),
                Err(e) => {
                    assert!(is_killed(&e));
                    None
                }
            };
            match a_got {
                Some(v) => {
                    assert_eq!(v, i);
                    assert_eq!(s.join().unwrap(), Ok(()));
                    assert_eq!(
                        rx.try_recv(),
                        Err(TryRecvError::Disconnected),
                        "value delivered twice ({cap:?})"
                    );
                }
                None => {
                    assert_eq!(
                        rx.recv_timeout(Duration::from_secs(5)),
                        Ok(i),
                        "value swallowed by a killed receiver ({cap:?}, iteration {i})"
                    );
                    assert_eq!(s.join().unwrap(), Ok(()));
                }
            }
        }
    }
}

#[test]
fn sync_channel_killed_sender_does_not_deliver_or_block_others() {
    for cap in [Some(0), Some(1)] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = make::<Tracked>(cap);
        if cap == Some(1) {
            tx.send(Tracked::new(0, &drops)).unwrap();
        }
        let tx2 = tx.clone();
        let v = Tracked::new(1, &drops);
        let started = Arc::new(AtomicBool::new(false));
        let s = {
            let started = started.clone();
            grove::spawn(move || {
                started.store(true, SeqCst);
                tx2.send(v)
            })
        };
        wait_for("the sender to start", || started.load(SeqCst));
        grove::sleep(ms(20)); // parked in send
        s.kill();
        assert!(is_killed(&s.join().unwrap_err()));
        let dropped_by_kill = drops.load(SeqCst);
        assert_eq!(
            dropped_by_kill, 1,
            "the killed sender's value is dropped as it unwinds"
        );
        if cap == Some(1) {
            assert_eq!(rx.recv().unwrap().id, 0);
        }
        assert!(
            matches!(rx.recv_timeout(ms(30)), Err(RecvTimeoutError::Timeout)),
            "a killed sender's value must not be delivered ({cap:?})"
        );
        // Others are not blocked behind the dead sender.
        let t = std::thread::spawn(move || tx.send_timeout(Tracked::new(2, &drops), ms(2000)));
        let v = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("next sender gets through");
        assert_eq!(v.id, 2);
        assert!(t.join().unwrap().is_ok());
    }
}

#[test]
fn sync_channel_kill_racing_recv_on_blocked_sender() {
    // A sender parked on a full channel (or a rendezvous) is killed while a receiver takes from
    // it: its value is delivered exactly when its send returned Ok.
    const SENTINEL: u32 = u32::MAX;
    for cap in [Some(0), Some(1)] {
        let mut rng = Rng::new(7 + cap.unwrap() as u64);
        for i in 0..150u32 {
            let (tx, rx) = make::<u32>(cap);
            if cap == Some(1) {
                tx.send(SENTINEL - 1).unwrap();
            }
            let tx2 = tx.clone();
            let s = grove::spawn(move || tx2.send(i));
            for _ in 0..rng.below(3) {
                grove::yield_now();
            }
            let victim = s.greenlet();
            let delay = rng.below(4);
            let killer = grove::spawn(move || {
                for _ in 0..delay {
                    grove::yield_now();
                }
                victim.kill();
            });
            let r = grove::spawn(move || {
                let mut got = Vec::new();
                while let Ok(v) = rx.recv() {
                    got.push(v);
                    if v == i || v == SENTINEL {
                        break;
                    }
                }
                got
            });
            killer.join().unwrap();
            let delivered = match s.join() {
                Ok(res) => {
                    assert_eq!(res, Ok(()));
                    true
                }
                Err(e) => {
                    assert!(is_killed(&e));
                    false
                }
            };
            if !delivered {
                tx.send(SENTINEL).unwrap();
            }
            drop(tx);
            let got = r.join().unwrap();
            let mut expected = Vec::new();
            if cap == Some(1) {
                expected.push(SENTINEL - 1);
            }
            expected.push(if delivered { i } else { SENTINEL });
            assert_eq!(
                got, expected,
                "{cap:?} iteration {i}, delivered = {delivered}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cancellation: timeout scopes and deadlines

#[test]
fn sync_channel_timeout_around_recv_leaves_the_channel_usable() {
    on_thread_and_greenlet(|| {
        for cap in FLAVOURS {
            let (tx, rx) = make::<u32>(cap);
            let t0 = Instant::now();
            let r = grove::timeout(ms(20), || rx.recv());
            assert!(r.is_err(), "timeout around a blocked recv must fire");
            assert!(t0.elapsed() >= ms(20));
            // The channel works and no stale waiter takes the next value.
            let s = grove::spawn(move || {
                tx.send(1).unwrap();
                tx.send(2).unwrap();
            });
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
            s.join().unwrap();
            assert_eq!(rx.recv(), Err(RecvError));
            // A timeout that does not fire returns the value.
            let (tx, rx) = make::<u32>(cap);
            let s = grove::spawn(move || tx.send(3).unwrap());
            assert_eq!(
                grove::timeout(Duration::from_secs(5), || rx.recv()),
                Ok(Ok(3))
            );
            s.join().unwrap();
        }
    });
}

#[test]
fn sync_channel_timeout_around_send_does_not_deliver() {
    on_thread_and_greenlet(|| {
        for cap in [Some(0), Some(1)] {
            let (tx, rx) = make::<u32>(cap);
            if cap == Some(1) {
                tx.send(0).unwrap();
            }
            let r = grove::timeout(ms(20), || tx.send(1));
            assert!(r.is_err(), "timeout around a blocked send must fire");
            if cap == Some(1) {
                assert_eq!(rx.try_recv(), Ok(0));
            }
            assert_eq!(
                rx.try_recv(),
                Err(TryRecvError::Empty),
                "the value was not sent"
            );
            let s = grove::spawn(move || tx.send(2).unwrap());
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));
            s.join().unwrap();
        }
    });
}

/// Receivers loop on `recv_timeout` with tiny timeouts while senders send: every value counted
/// exactly once (a value handed to a receiver whose timer fired at that moment is not lost).
fn recv_timeout_race(cap: Option<usize>, count: u64) {
    let (tx, rx) = make::<u64>(cap);
    let receivers: Vec<_> = (0..4u64)
        .map(|k| {
            let rx = rx.clone();
            Worker::spawn(k != 3, move || {
                let mut got = Vec::new();
                let mut rng = Rng::new(k + 100);
                let mut timeouts = 0u64;
                let until = Instant::now() + Duration::from_secs(20);
                loop {
                    match rx.recv_timeout(us(rng.below(40))) {
                        Ok(v) => got.push(v),
                        Err(RecvTimeoutError::Timeout) => timeouts += 1,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                    assert!(Instant::now() < until, "receiver stalled");
                }
                (got, timeouts)
            })
        })
        .collect();
    drop(rx);
    let senders: Vec<_> = (0..2u64)
        .map(|k| {
            let tx = tx.clone();
            Worker::spawn(k == 0, move || {
                let mut rng = Rng::new(k + 1);
                let mut i = k;
                while i < count {
                    tx.send(i).unwrap();
                    if rng.below(3) == 0 {
                        grove::sleep(us(rng.below(30)));
                    }
                    i += 2;
                }
            })
        })
        .collect();
    drop(tx);
    for s in senders {
        s.join();
    }
    let mut all = Vec::new();
    let mut timeouts = 0;
    for r in receivers {
        let (got, t) = r.join();
        all.extend(got);
        timeouts += t;
    }
    assert!(timeouts > 0, "the race never happened (no timeout fired)");
    assert_exactly_once(all, count, &format!("recv_timeout race {cap:?}"));
}

#[test]
fn sync_channel_recv_timeout_racing_send_never_loses_a_value() {
    recv_timeout_race(None, 3000);
    recv_timeout_race(Some(1), 2000);
    recv_timeout_race(Some(0), 1500);
}

#[test]
fn sync_channel_send_timeout_racing_recv_never_duplicates_or_loses() {
    // Senders retry a value after Timeout; if a timed-out send had in fact delivered it, the
    // retry would deliver it twice. Receivers use tiny timeouts too.
    const COUNT: u64 = 1200;
    for cap in [Some(0), Some(1)] {
        let (tx, rx) = make::<u64>(cap);
        let receivers: Vec<_> = (0..3u64)
            .map(|k| {
                let rx = rx.clone();
                Worker::spawn(k != 2, move || {
                    let mut rng = Rng::new(k + 50);
                    let mut got = Vec::new();
                    loop {
                        match rx.recv_timeout(us(rng.below(30))) {
                            Ok(v) => got.push(v),
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        let senders: Vec<_> = (0..3u64)
            .map(|k| {
                let tx = tx.clone();
                Worker::spawn(k != 1, move || {
                    let mut rng = Rng::new(k + 9);
                    let mut timeouts = 0u64;
                    let mut i = k;
                    let until = Instant::now() + Duration::from_secs(20);
                    while i < COUNT {
                        let mut v = i;
                        loop {
                            match tx.send_timeout(v, us(rng.below(30))) {
                                Ok(()) => break,
                                Err(SendTimeoutError::Timeout(back)) => {
                                    assert_eq!(back, i, "Timeout gives back the same value");
                                    timeouts += 1;
                                    v = back;
                                }
                                Err(e) => panic!("{e:?}"),
                            }
                            assert!(Instant::now() < until, "sender stalled");
                        }
                        i += 3;
                    }
                    timeouts
                })
            })
            .collect();
        drop(tx);
        let timeouts: u64 = senders.into_iter().map(Worker::join).sum();
        let all: Vec<u64> = receivers.into_iter().flat_map(Worker::join).collect();
        assert!(timeouts > 0, "the race never happened (no send timed out)");
        assert_exactly_once(all, COUNT, &format!("send_timeout race {cap:?}"));
    }
}

#[test]
fn sync_channel_timeout_scope_racing_send_never_loses_a_value() {
    // As above, but the receivers' waits are cut by `grove::timeout` scopes (an unwind out of
    // the park), not by recv_timeout's own deadline.
    const COUNT: u64 = 1200;
    for cap in [None, Some(0), Some(1)] {
        let (tx, rx) = make::<u64>(cap);
        let receivers: Vec<_> = (0..3u64)
            .map(|k| {
                let rx = rx.clone();
                Worker::spawn(k != 2, move || {
                    let mut rng = Rng::new(k + 77);
                    let mut got = Vec::new();
                    let mut fired = 0u64;
                    loop {
                        match grove::timeout(us(rng.below(40)), || rx.recv()) {
                            Ok(Ok(v)) => got.push(v),
                            Ok(Err(RecvError)) => break,
                            Err(_elapsed) => fired += 1,
                        }
                    }
                    (got, fired)
                })
            })
            .collect();
        drop(rx);
        let s = grove::spawn(move || {
            let mut rng = Rng::new(3);
            for i in 0..COUNT {
                tx.send(i).unwrap();
                if rng.below(4) == 0 {
                    grove::sleep(us(rng.below(30)));
                }
            }
        });
        s.join().unwrap();
        let mut all = Vec::new();
        let mut fired = 0;
        for r in receivers {
            let (got, f) = r.join();
            all.extend(got);
            fired += f;
        }
        assert!(
            fired > 0,
            "the race never happened (no timeout scope fired)"
        );
        assert_exactly_once(all, COUNT, &format!("timeout scope race {cap:?}"));
    }
}

#[test]
fn sync_channel_mixed_cancellation_storm_accounts_for_every_value() {
    // Receivers that get killed at random points while values flow; whatever a killed receiver
    // had received before it died is reported through a side channel, and what is left in the
    // channel is drained at the end. Every value is accounted for exactly once.
    const COUNT: u64 = 1500;
    let (tx, rx) = bounded::<u64>(2);
    let reported = Arc::new(StdMutex::new(Vec::new()));
    let s = std::thread::spawn(move || {
        for i in 0..COUNT {
            tx.send(i).unwrap();
        }
    });
    let mut rng = Rng::new(5);
    let until = Instant::now() + Duration::from_secs(20);
    let mut kills = 0;
    while !s.is_finished() {
        assert!(Instant::now() < until, "storm stalled");
        let (rx2, rep) = (rx.clone(), reported.clone());
        let g = grove::spawn(move || {
            // Report each value before blocking again, so a kill loses nothing we hold.
            while let Ok(v) = rx2.recv() {
                rep.lock().unwrap().push(v);
            }
        });
        grove::sleep(us(rng.below(300)));
        g.kill();
        if let Err(e) = g.join() {
            assert!(is_killed(&e));
            kills += 1;
        }
    }
    s.join().unwrap();
    let mut all = reported.lock().unwrap().clone();
    all.extend(rx.try_iter());
    assert!(kills > 0);
    assert_exactly_once(all, COUNT, "kill storm");
}
