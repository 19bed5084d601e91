//! The shared poller: readiness waits on raw fds, from greenlets and plain threads.

mod common;

use grove::io::{wait_readable, wait_writable, Direction, Registration};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Reads into `buf` through the registration: parks until data arrives.
fn read_registered(
    reg: &Registration,
    mut s: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    reg.io(Direction::Read, None, || s.read(buf))
}

#[test]
fn rt_io_greenlet_parks_until_data_arrives() {
    let (a, b) = pair();
    let reader = grove::spawn(move || {
        let reg = Registration::new(a.as_raw_fd()).unwrap();
        let mut buf = [0u8; 16];
        let n = read_registered(&reg, &a, &mut buf).unwrap();
        (n, buf[..n].to_vec())
    });
    grove::sleep(Duration::from_millis(20));
    assert!(!reader.is_finished(), "read returned before any data");
    (&b).write_all(b"hello").unwrap();
    let (n, data) = reader.join().unwrap();
    assert_eq!((n, data.as_slice()), (5, &b"hello"[..]));
}

#[test]
fn rt_io_plain_thread_blocks_until_data_arrives() {
    let (a, b) = pair();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        (&b).write_all(b"x").unwrap();
        b
    });
    let reg = Registration::new(a.as_raw_fd()).unwrap();
    let mut buf = [0u8; 4];
    let n = read_registered(&reg, &a, &mut buf).unwrap();
    assert_eq!(n, 1);
    drop(writer.join().unwrap());
}

#[test]
fn rt_io_registration_wait_parks_on_an_idle_fd_until_the_kernel_says_ready() {
    // A registration starts out ready, and its own operations correct that on `WouldBlock`;
    // a bare `wait` cannot, so a loop of `wait` and a non-blocking read returned at once each
    // time and spun a core.
    common::on_thread_and_greenlet(|| {
        let (a, b) = pair();
        let reg = Registration::new(a.as_raw_fd()).unwrap();
        for _ in 0..3 {
            let t = Instant::now();
            let r = reg.wait(
                Direction::Read,
                Some(Instant::now() + Duration::from_millis(50)),
            );
            assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
            assert!(
                t.elapsed() >= Duration::from_millis(40),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(
                (&a).read(&mut [0u8; 4]).unwrap_err().kind(),
                ErrorKind::WouldBlock
            );
        }
        // Ready for real: the wait returns, and the read finds the data.
        (&b).write_all(b"go").unwrap();
        reg.wait(
            Direction::Read,
            Some(Instant::now() + Duration::from_secs(10)),
        )
        .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!((&a).read(&mut buf).unwrap(), 2);
    });
}

#[test]
fn rt_io_registration_wait_is_woken_by_its_own_shutdown_on_a_full_unix_stream() {
    // `on_shutdown` wakes the handle's waiters; `poll(2)` does not call a full Unix stream
    // shut for sending writable, so a wait that asked the kernel wiped the closed bit and
    // went back to sleep until its deadline (found by a review of the fix above).
    for green in [true, false] {
        let (a, _b) = pair();
        while (&a).write(&[0u8; 65536]).is_ok() {}
        let reg = Arc::new(Registration::new(a.as_raw_fd()).unwrap());
        // Once through the registration, so its readiness is the kernel's (not writable).
        let r = reg.io(
            Direction::Write,
            Some(Instant::now() + Duration::from_millis(50)),
            || (&a).write(&[0u8; 65536]),
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
        let waiter = {
            let reg = reg.clone();
            common::Worker::spawn(green, move || {
                let t = Instant::now();
                let r = reg.wait(
                    Direction::Write,
                    Some(Instant::now() + Duration::from_secs(8)),
                );
                (r.map_err(|e| e.kind()), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        a.shutdown(std::net::Shutdown::Write).unwrap();
        reg.on_shutdown(false, true);
        let (r, took) = waiter.join();
        assert_eq!(r, Ok(()), "green {green}, after {took:?}");
        assert!(took < Duration::from_secs(4), "green {green}: {took:?}");
    }
}

#[test]
fn rt_io_wait_readable_times_out_and_then_succeeds() {
    let (a, b) = pair();
    let t = Instant::now();
    let e = wait_readable(a.as_raw_fd(), Some(Duration::from_millis(30))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(30));
    (&b).write_all(b"y").unwrap();
    wait_readable(a.as_raw_fd(), Some(Duration::from_secs(5))).unwrap();
    wait_writable(a.as_raw_fd(), Some(Duration::from_secs(5))).unwrap();
}

/// A zero or tiny timeout on a ready fd is ready, as `poll(2)` with that timeout says; it was
/// `TimedOut` whenever the deadline passed before the poller's first event (always for zero
/// on a plain thread, most of the time in a greenlet). An fd that is not ready still times out.
#[test]
fn rt_io_wait_with_a_zero_timeout_sees_a_ready_fd() {
    let check = || {
        let (a, b) = pair();
        for t in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(10),
        ] {
            let e = wait_readable(a.as_raw_fd(), Some(t)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut, "{t:?}");
        }
        (&b).write_all(b"y").unwrap();
        for _ in 0..20 {
            for t in [
                Duration::ZERO,
                Duration::from_nanos(1),
                Duration::from_micros(10),
            ] {
                wait_readable(a.as_raw_fd(), Some(t)).unwrap();
                wait_writable(a.as_raw_fd(), Some(t)).unwrap();
            }
        }
    };
    check();
    grove::spawn(check).join().unwrap();
}

#[test]
fn rt_io_thousand_parked_readers_all_wake() {
    let pairs: Vec<_> = (0..1000).map(|_| pair()).collect();
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (a, b) in pairs {
        readers.push(grove::spawn(move || {
            let reg = Registration::new(a.as_raw_fd()).unwrap();
            let mut buf = [0u8; 8];
            read_registered(&reg, &a, &mut buf).unwrap()
        }));
        writers.push(b);
    }
    grove::sleep(Duration::from_millis(20));
    for b in &writers {
        (&*b).write_all(b"abc").unwrap();
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), 3);
    }
}

#[test]
fn rt_io_kill_interrupts_a_readiness_wait() {
    let (a, _b) = pair();
    let a = Arc::new(a);
    let a2 = a.clone();
    let h = grove::spawn(move || {
        let reg = Registration::new(a2.as_raw_fd()).unwrap();
        let mut buf = [0u8; 1];
        let _ = read_registered(&reg, &a2, &mut buf);
    });
    grove::sleep(Duration::from_millis(20));
    h.kill();
    assert!(h
        .join()
        .unwrap_err()
        .downcast_ref::<grove::Killed>()
        .is_some());
}

#[test]
fn rt_io_registration_deadline_gives_timed_out() {
    let (a, _b) = pair();
    let reg = Registration::new(a.as_raw_fd()).unwrap();
    let mut buf = [0u8; 1];
    let r = reg.io(
        Direction::Read,
        Some(Instant::now() + Duration::from_millis(20)),
        || (&a).read(&mut buf),
    );
    assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
}

#[test]
fn rt_two_greenlets_may_wait_for_the_same_fd() {
    // Each wait registered the caller's fd with the poller, which refuses a second
    // registration: the second waiter failed at once with EEXIST (poll(2) allows any number).
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let waiters: Vec<_> = (0..2)
        .map(|_| grove::spawn(move || wait_readable(fd, Some(Duration::from_secs(5)))))
        .collect();
    grove::sleep(Duration::from_millis(20));
    b.write_all(b"x").unwrap();
    for w in waiters {
        w.join().unwrap().unwrap();
    }
    drop(a);
}

#[test]
fn rt_a_wait_on_a_closed_fd_leaves_a_socket_that_reuses_its_number_alone() {
    // The wait unregistered by fd number when it ended: if the caller had closed the fd and a
    // new socket got its number, the new socket's registration went, and its reads never saw
    // data again.
    let (r, _w) = UnixStream::pair().unwrap();
    let fd = r.as_raw_fd();
    let waiter = grove::spawn(move || wait_readable(fd, Some(Duration::from_millis(150))));
    grove::sleep(Duration::from_millis(30));
    drop(r); // frees the number the waiter waits on
    drop(_w);
    let (x, y) = grove::net::UnixStream::pair().unwrap();
    x.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 4];
    let _ = (&x).read(&mut buf); // registers (likely under the freed number) and times out
    let _ = waiter.join().unwrap(); // the wait ends, unregistering
    x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        (&y).write_all(b"data").unwrap();
        y
    });
    assert_eq!((&x).read(&mut buf).unwrap(), 4, "the data never arrived");
    drop(writer.join().unwrap());
}
