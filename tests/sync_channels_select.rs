//! Channels: `Select`, and cancellation: a waiter cancelled by `kill`, `timeout` or its own
//! deadline never swallows a value and never delivers one it was told it did not deliver.
//!
//! Every loop is bounded in count, and every wait that could hang on a bug is bounded in time.

mod common;

use common::*;

use grove::sync::{
    bounded, unbounded, Receiver, RecvError, RecvTimeoutError, Select, SendTimeoutError,
    TryRecvError, TrySendError,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

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
fn sync_select_send_readiness_follows_room_receivers_and_disconnection() {
    let (tx_unbounded, _rx_unbounded) = unbounded::<u32>();
    let (tx_full, rx_full) = bounded::<u32>(1);
    tx_full.send(1).unwrap();
    let (tx_rendezvous, rx_rendezvous) = bounded::<u32>(0);
    let mut sel = Select::new();
    let u = sel.send(&tx_unbounded);
    assert_eq!(
        sel.try_ready(),
        Ok(u),
        "an unbounded sender is always ready"
    );

    let mut sel = Select::new();
    let f = sel.send(&tx_full);
    let r = sel.send(&tx_rendezvous);
    assert!(
        sel.try_ready().is_err(),
        "a full channel and a rendezvous with nobody waiting"
    );
    assert_eq!(rx_full.try_recv(), Ok(1));
    assert_eq!(sel.try_ready(), Ok(f), "room was made");
    assert_eq!(tx_full.try_send(2), Ok(()));
    assert!(sel.try_ready().is_err());
    drop(rx_rendezvous);
    assert_eq!(
        sel.try_ready(),
        Ok(r),
        "a sender with no receiver left is ready"
    );
    assert_eq!(
        tx_rendezvous.try_send(3),
        Err(TrySendError::Disconnected(3)),
        "and its send fails at once"
    );
}

#[test]
fn sync_select_send_waits_for_room() {
    on_thread_and_greenlet(|| {
        let (tx, rx) = bounded::<u32>(2);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let (_tx_idle, rx_idle) = bounded::<u32>(1);
        let t0 = Instant::now();
        let taker = grove::spawn(move || {
            grove::sleep(ms(30));
            assert_eq!(rx.recv(), Ok(1));
            rx
        });
        let mut sel = Select::new();
        sel.recv(&rx_idle);
        let s = sel.send(&tx);
        assert_eq!(
            sel.ready_timeout(Duration::from_secs(10)),
            Ok(s),
            "no room was seen"
        );
        assert!(
            t0.elapsed() >= ms(30),
            "ready returned before the room was made"
        );
        assert!(
            t0.elapsed() < ms(5_000),
            "the room made did not wake the select"
        );
        assert_eq!(tx.try_send(3), Ok(()));
        let rx = taker.join().unwrap();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![2, 3]);
    });
}

#[test]
fn sync_select_send_on_a_rendezvous_waits_for_a_parked_receiver() {
    on_thread_and_greenlet(|| {
        let (tx, rx) = bounded::<u32>(0);
        let t0 = Instant::now();
        // A plain thread receives, so the selecting side may be either kind.
        let receiver = std::thread::spawn(move || {
            std::thread::sleep(ms(30));
            rx.recv_timeout(Duration::from_secs(10))
        });
        let mut sel = Select::new();
        let s = sel.send(&tx);
        let until = Instant::now() + Duration::from_secs(10);
        // The receiver stays parked until a try_send lands (it may lose a race to none: the
        // loop is only for a send that saw the receiver just before it parked).
        loop {
            let ready = sel.ready_timeout(Duration::from_secs(10));
            assert_eq!(ready, Ok(s), "the parked receiver was not seen");
            assert!(
                t0.elapsed() >= ms(30),
                "ready returned before a receiver waited"
            );
            assert!(
                t0.elapsed() < ms(5_000),
                "the parked receiver did not wake the select"
            );
            if tx.try_send(7).is_ok() {
                break;
            }
            assert!(
                Instant::now() < until,
                "the rendezvous never took the value"
            );
        }
        assert_eq!(receiver.join().unwrap(), Ok(7));
    });
}

#[test]
fn sync_select_send_ready_timeout_and_the_last_receiver_leaving() {
    on_thread_and_greenlet(|| {
        let (tx, rx) = bounded::<u32>(1);
        tx.send(1).unwrap();
        let mut sel = Select::new();
        let s = sel.send(&tx);
        let t0 = Instant::now();
        assert!(
            sel.ready_timeout(ms(20)).is_err(),
            "full, and nobody receives"
        );
        assert!(t0.elapsed() >= ms(20));
        let dropper = grove::spawn(move || {
            grove::sleep(ms(20));
            drop(rx);
        });
        let t1 = Instant::now();
        assert_eq!(sel.ready_timeout(Duration::from_secs(10)), Ok(s));
        assert!(
            t1.elapsed() < ms(5_000),
            "the last receiver's drop did not wake the select"
        );
        assert_eq!(tx.try_send(2), Err(TrySendError::Disconnected(2)));
        dropper.join().unwrap();
    });
}

#[test]
fn sync_select_producers_over_full_channels_deliver_every_value_once() {
    // Producers (greenlets and threads) select over three bounded channels' senders and
    // follow up with try_send; consumers drain them. Every value arrives exactly once.
    const VALUES: u64 = 3_000;
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for cap in [Some(0), Some(1), Some(4)] {
        let (tx, rx) = make::<u64>(cap);
        txs.push(tx);
        rxs.push(rx);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let producers: Vec<_> = (0..4)
        .map(|k| {
            let txs = txs.clone();
            let next = next.clone();
            Worker::spawn(k % 2 == 0, move || {
                let until = Instant::now() + Duration::from_secs(20);
                let mut v = next.fetch_add(1, SeqCst) as u64;
                while v < VALUES {
                    assert!(Instant::now() < until, "select producer stalled");
                    let mut sel = Select::new();
                    for tx in &txs {
                        sel.send(tx);
                    }
                    let Ok(i) = sel.ready_timeout(Duration::from_secs(1)) else {
                        continue;
                    };
                    match txs[i].try_send(v) {
                        Ok(()) => v = next.fetch_add(1, SeqCst) as u64,
                        Err(TrySendError::Full(_)) => {} // someone else took the room
                        Err(TrySendError::Disconnected(_)) => panic!("a receiver left early"),
                    }
                }
            })
        })
        .collect();
    drop(txs);
    let consumers: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(c, rx)| Worker::spawn(c != 1, move || rx.iter().collect::<Vec<u64>>()))
        .collect();
    for p in producers {
        p.join();
    }
    let all: Vec<u64> = consumers.into_iter().flat_map(Worker::join).collect();
    assert_exactly_once(all, VALUES, "select producers");
}

#[test]
fn sync_select_remove_keeps_the_other_indices_and_stops_watching_the_removed() {
    let (tx1, rx1) = unbounded::<u32>();
    let (tx2, rx2) = bounded::<u32>(0);
    let (tx3, rx3) = bounded::<u32>(1);
    let mut sel = Select::new();
    let i1 = sel.recv(&rx1);
    let i2 = sel.recv(&rx2);
    let i3 = sel.recv(&rx3);
    drop(tx1);
    assert_eq!(sel.try_ready(), Ok(i1), "disconnected, so ready");
    sel.remove(i1);
    assert!(
        sel.try_ready().is_err(),
        "the removed receiver no longer counts"
    );
    let sender = grove::spawn(move || {
        grove::sleep(ms(20));
        tx3.send(4).unwrap();
        (tx2, tx3)
    });
    assert_eq!(
        sel.ready_timeout(Duration::from_secs(10)),
        Ok(i3),
        "indices stay as given"
    );
    assert_eq!(rx3.try_recv(), Ok(4));
    sel.remove(i3);
    sel.remove(i2);
    assert!(sel.try_ready().is_err());
    let (tx2, _tx3) = sender.join().unwrap();
    drop(tx2);
    assert!(
        sel.try_ready().is_err(),
        "removed handles are not watched or scanned"
    );
    let i4 = sel.recv(&rx2);
    assert_eq!(i4, 3, "a handle added after removals gets a new index");
    assert_eq!(sel.try_ready(), Ok(i4));
}

#[test]
#[should_panic(expected = "Select::remove of index 0, removed already")]
fn sync_select_remove_twice_panics() {
    let (_tx, rx) = unbounded::<u32>();
    let mut sel = Select::new();
    let i = sel.recv(&rx);
    sel.remove(i);
    sel.remove(i);
}

#[test]
#[should_panic(expected = "Select::ready with nothing to wait on")]
fn sync_select_ready_after_removing_everything_panics() {
    let (_tx, rx) = unbounded::<u32>();
    let mut sel = Select::new();
    let i = sel.recv(&rx);
    sel.remove(i);
    sel.ready();
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

#[test]
fn sync_select_picks_both_always_ready_receivers_with_another_select_in_the_loop() {
    // A process-wide rotating start kept its parity when a second select ran in the same
    // loop: one of two always-ready receivers was never picked (1000 / 0).
    let (ta, ra) = grove::sync::unbounded::<u32>();
    let (tb, rb) = grove::sync::unbounded::<u32>();
    let (tc, rc) = grove::sync::unbounded::<u32>();
    for i in 0..1000 {
        ta.send(i).unwrap();
        tb.send(i).unwrap();
        tc.send(i).unwrap();
    }
    let (mut na, mut nb) = (0, 0);
    for _ in 0..1000 {
        let mut s = Select::new();
        let ia = s.recv(&ra);
        let _ = s.recv(&rb);
        if s.ready() == ia {
            ra.try_recv().unwrap();
            na += 1;
        } else {
            rb.try_recv().unwrap();
            nb += 1;
        }
        let mut other = Select::new();
        other.recv(&rc);
        let _ = other.try_ready();
    }
    assert!(na > 300 && nb > 300, "picked a={na} b={nb}");
}
