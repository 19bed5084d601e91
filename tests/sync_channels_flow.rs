//! Channels under load: FIFO fairness among waiters, SPSC and MPMC with greenlets and threads
//! mixed, iterators, dropped values, bounded stress loops.
//!
//! Every loop is bounded in count, and every wait that could hang on a bug is bounded in time.

mod common;

use common::*;

use grove::sync::{
    bounded, unbounded, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
};
use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
