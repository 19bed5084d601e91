//! Channels: the behaviours crossbeam-channel's and std::sync::mpsc's own test suites pin down
//! (smoke, capacity, len, try_*, disconnection, timeouts, rendezvous), with greenlets and plain
//! threads on the same channel. Flow (fairness, MPMC, iterators, drops, stress) is in
//! sync_channels_flow.rs; Select and cancellation in sync_channels_select.rs.
//!
//! Every loop is bounded in count, and every wait that could hang on a bug is bounded in time.

mod common;

use common::*;

use grove::sync::{
    bounded, channel, unbounded, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError,
    Sender, TryRecvError, TrySendError,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
                if sent.is_multiple_of(64) {
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
                // Bounded(1): the 9 takes the 0's place. (Waited for: a sleep here let a
                // stalled sender find the receiver gone.)
                let t = Instant::now();
                while cap == Some(1) && rx.is_empty() && t.elapsed() < Duration::from_secs(10) {
                    grove::sleep(ms(1));
                }
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

/// A receiver whose channel always holds a value never parks; the cooperative budget still
/// makes it give way to the greenlet queued behind it (one worker: nobody could steal it).
#[test]
fn sync_always_ready_receiver_lets_others_run_on_one_worker() {
    if role().is_some() {
        let (tx, rx) = grove::sync::unbounded::<u32>();
        for i in 0..10_000 {
            tx.send(i).unwrap();
        }
        let seen = grove::spawn(move || {
            let got = Arc::new(AtomicUsize::new(0));
            let g = got.clone();
            let receiver = grove::spawn(move || {
                for _ in 0..10_000 {
                    rx.recv().unwrap();
                    g.fetch_add(1, SeqCst);
                }
            });
            let other = grove::spawn(move || got.load(SeqCst)); // queued behind the receiver
            let seen = other.join().unwrap();
            receiver.join().unwrap();
            seen
        })
        .join()
        .unwrap();
        assert!(
            (1..=grove::rt::coop::BUDGET as usize).contains(&seen),
            "the other greenlet ran after {seen} receives"
        );
        return;
    }
    let out = run_child(
        "sync_always_ready_receiver_lets_others_run_on_one_worker",
        "receiver",
        &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn unwind_safe<T: std::panic::RefUnwindSafe + std::panic::UnwindSafe>() {}

#[test]
fn sync_handles_cross_catch_unwind_like_std_ones() {
    // std's `mpsc` and crossbeam's channels are unwind-safe; grove's were not (their internal
    // lock's cell), so `catch_unwind(|| q.get())` needed `AssertUnwindSafe`.
    unwind_safe::<grove::sync::Sender<u8>>();
    unwind_safe::<grove::sync::Receiver<u8>>();
    unwind_safe::<grove::sync::Queue<u8>>();
    unwind_safe::<grove::sync::PriorityQueue<u8>>();
    unwind_safe::<grove::sync::JoinableQueue<u8>>();
    unwind_safe::<grove::sync::Event>();
    unwind_safe::<grove::sync::Semaphore>();
    unwind_safe::<grove::sync::Condvar>();
    unwind_safe::<grove::sync::AsyncResult<u8>>();
    unwind_safe::<grove::sync::Pool>();
    unwind_safe::<grove::JoinHandle<u8>>();
    unwind_safe::<grove::net::TcpStream>();
    unwind_safe::<grove::net::UdpSocket>();
    let q = grove::sync::Queue::new();
    q.put(7);
    assert_eq!(std::panic::catch_unwind(|| q.get()).unwrap(), 7);
}
