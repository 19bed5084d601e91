//! grove's Unix sockets against std's API, over temp paths: accept and `incoming`, the `*_addr`
//! methods (abstract names included), datagrams, and a connect to a full backlog. Each case runs
//! in a greenlet and on a plain thread where both make sense; every wait is bounded.

mod common;

use common::parity::{assert_times_out, spawn_alike, TempPath, LIMIT};
use common::{ms, on_thread_and_greenlet, Worker};
use grove::net::{UnixDatagram, UnixListener, UnixStream};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Unix sockets.

#[test]
fn net_unix_listener_accepts_and_iterates_incoming_over_a_temp_path() {
    on_thread_and_greenlet(|| {
        let path = TempPath::new("stream");
        let listener = UnixListener::bind(path.path()).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.path())
        );
        let p = path.path().to_path_buf();
        let client = spawn_alike(move || {
            let mut replies = Vec::new();
            for i in 0..3u8 {
                let mut s = UnixStream::connect(&p).unwrap();
                assert_eq!(s.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
                let n = s
                    .write_vectored(&[IoSlice::new(&[b'a' + i]), IoSlice::new(b"-msg")])
                    .unwrap();
                assert_eq!(n, 5);
                s.shutdown(Shutdown::Write).unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).unwrap();
                replies.push(reply);
            }
            replies
        });
        let echo = |mut s: UnixStream| {
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(b"echo:").unwrap();
            s.write_all(&got).unwrap();
        };
        let (s, from) = listener.accept().unwrap();
        assert!(from.is_unnamed(), "{from:?}");
        echo(s);
        echo(listener.incoming().next().unwrap().unwrap());
        let mut via_into_iter = (&listener).into_iter();
        echo(via_into_iter.next().unwrap().unwrap());
        assert_eq!(
            client.join(),
            ["echo:a-msg", "echo:b-msg", "echo:c-msg"].map(String::from)
        );
    });
}

#[test]
fn net_unix_datagram_send_to_recv_from_and_connected() {
    on_thread_and_greenlet(|| {
        let pa = TempPath::new("dg-a");
        let pb = TempPath::new("dg-b");
        let a = UnixDatagram::bind(pa.path()).unwrap();
        let b = UnixDatagram::bind(pb.path()).unwrap();
        b.set_read_timeout(Some(LIMIT)).unwrap();
        // recv_from waits for a datagram sent later.
        let to = pb.path().to_path_buf();
        let sender = spawn_alike(move || {
            grove::sleep(ms(20));
            assert_eq!(a.send_to(b"one", &to).unwrap(), 3);
            a
        });
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        assert_eq!(from.as_pathname(), Some(pa.path()));
        let a = sender.join();

        a.connect(pb.path()).unwrap();
        b.connect(pa.path()).unwrap();
        assert_eq!(a.peer_addr().unwrap().as_pathname(), Some(pb.path()));
        assert_eq!(a.send(b"two").unwrap(), 3);
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        assert_eq!(b.send(b"three").unwrap(), 5);
        a.set_read_timeout(Some(LIMIT)).unwrap();
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");

        b.set_read_timeout(Some(ms(30))).unwrap();
        assert_times_out(ms(30), || b.recv(&mut buf));
    });
}

#[test]
fn net_unix_addr_methods_bind_connect_and_send() {
    on_thread_and_greenlet(|| {
        let p = TempPath::new("addr");
        let addr = UnixAddr::from_pathname(p.path()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let bound = listener.local_addr().unwrap();
        assert_eq!(bound.as_pathname(), Some(p.path()));
        let client = spawn_alike(move || {
            let mut s = UnixStream::connect_addr(&bound).unwrap();
            s.write_all(b"via addr").unwrap();
        });
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "via addr");
        client.join();

        let pd = TempPath::new("addr-dg");
        let d_addr = UnixAddr::from_pathname(pd.path()).unwrap();
        let d = UnixDatagram::bind_addr(&d_addr).unwrap();
        d.set_read_timeout(Some(LIMIT)).unwrap();
        let u = UnixDatagram::unbound().unwrap();
        assert_eq!(u.send_to_addr(b"to addr", &d_addr).unwrap(), 7);
        let mut buf = [0u8; 16];
        let (n, from) = d.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to addr");
        assert!(from.is_unnamed());
        u.connect_addr(&d_addr).unwrap();
        assert_eq!(u.peer_addr().unwrap().as_pathname(), Some(pd.path()));
        assert_eq!(u.send(b"connected").unwrap(), 9);
        let n = d.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"connected");

        // Errors as std's: an unnamed address, a path nobody listens on.
        let unnamed = u.local_addr().unwrap();
        assert!(unnamed.is_unnamed());
        let std_e = std::os::unix::net::UnixStream::connect_addr(&unnamed).unwrap_err();
        let e = UnixStream::connect_addr(&unnamed).unwrap_err();
        assert_eq!(
            (e.kind(), e.raw_os_error()),
            (std_e.kind(), std_e.raw_os_error())
        );
        drop(listener);
        drop(p);
        let gone = TempPath::new("gone");
        let std_e = std::os::unix::net::UnixStream::connect(gone.path()).unwrap_err();
        let e = UnixStream::connect(gone.path()).unwrap_err();
        assert_eq!(e.kind(), std_e.kind());
        assert_eq!(e.kind(), ErrorKind::NotFound);
    });
}

#[cfg(target_os = "linux")]
#[test]
fn net_unix_addr_methods_take_abstract_names() {
    use std::os::linux::net::SocketAddrExt;
    on_thread_and_greenlet(|| {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "grove-parity-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        let mut c = UnixStream::connect_addr(&addr).unwrap();
        assert_eq!(
            c.peer_addr().unwrap().as_abstract_name(),
            Some(name.as_bytes())
        );
        let (mut s, _) = listener.accept().unwrap();
        c.write_all(b"abstract").unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abstract");
    });
}

#[test]
fn net_unix_connect_to_a_full_backlog_parks_only_its_greenlet() {
    const NAME: &str = "net_unix_connect_to_a_full_backlog_parks_only_its_greenlet";
    if common::role().is_some() {
        unix_connect_to_a_full_backlog();
        return;
    }
    let out = common::run_child(
        NAME,
        "full-backlog",
        &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    eprint!("{}", common::stderr(&out));
}

/// In a child with one worker: a connect to a listener whose backlog is full waits for room
/// without holding the worker, in a greenlet; on a thread it waits too; both then connect.
fn unix_connect_to_a_full_backlog() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let path = TempPath::new("backlog");
    let raw = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    let addr = SockAddr::unix(path.path()).unwrap();
    raw.bind(&addr).unwrap();
    raw.listen(0).unwrap();
    let listener = std::os::unix::net::UnixListener::from(OwnedFd::from(raw));
    let mut fillers = Vec::new();
    let full = loop {
        if fillers.len() == 64 {
            break false;
        }
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&addr) {
            Ok(()) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(e) => panic!("filling the backlog: {e}"),
        }
    };
    if !full {
        eprintln!("skipped: this kernel never reports a full Unix backlog");
        return;
    }

    let connected = Arc::new(AtomicBool::new(false));
    let p = path.path().to_path_buf();
    let c = connected.clone();
    let connecting = grove::spawn(move || {
        let s = UnixStream::connect(&p);
        c.store(true, SeqCst);
        s
    });
    let ticks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (t, st) = (ticks.clone(), stop.clone());
    let ticker = grove::spawn(move || {
        while !st.load(SeqCst) {
            t.fetch_add(1, SeqCst);
            grove::sleep(ms(1));
        }
    });
    let t0 = Instant::now();
    while ticks.load(SeqCst) < 20 && t0.elapsed() < LIMIT {
        std::thread::sleep(ms(1));
    }
    let ticked = ticks.load(SeqCst);
    let early = connected.load(SeqCst);
    let _first = listener.accept().unwrap(); // room for one more
    let t0 = Instant::now();
    while !connecting.is_finished() && t0.elapsed() < LIMIT {
        std::thread::sleep(ms(1));
    }
    stop.store(true, SeqCst);
    assert!(
        ticked >= 20,
        "another greenlet ran {ticked} times while the connect waited: it held the worker"
    );
    assert!(!early, "the connect ended while the backlog was full");
    assert!(
        connecting.is_finished(),
        "the connect never ended after room was made"
    );
    let s = connecting.join().unwrap().unwrap();
    assert!(s.peer_addr().unwrap().as_pathname().is_some());
    ticker.join().unwrap();

    // The backlog is full again (the greenlet's connection is queued): a thread waits too.
    let p = path.path().to_path_buf();
    let thread = std::thread::spawn(move || UnixStream::connect(&p));
    std::thread::sleep(ms(50));
    assert!(
        !thread.is_finished(),
        "a thread's connect ended while the backlog was full"
    );
    let _second = listener.accept().unwrap();
    let t0 = Instant::now();
    while !thread.is_finished() && t0.elapsed() < LIMIT {
        std::thread::sleep(ms(1));
    }
    assert!(thread.is_finished(), "a thread's connect never ended");
    thread.join().unwrap().unwrap();
}

#[test]
#[ignore = "stress: 6 s in a child process with four workers"]
fn net_reused_poller_slots_never_get_a_closed_sockets_events() {
    // Sockets closed and made again as fast as possible, on several workers: an event the
    // poller returned for a closed socket (its "read closed") reached the socket that reused its
    // poller slot, whose 3 ms-timeout read then spun on `WouldBlock` and never timed out.
    if common::role().as_deref() == Some("churn") {
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<std::os::unix::net::UnixStream>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..2 {
            // Peers on plain threads: write a little, then close.
            let rx = rx.clone();
            std::thread::spawn(move || {
                while let Ok(s) = rx.lock().unwrap().recv() {
                    let _ = (&s).write_all(b"hello");
                }
            });
        }
        for _ in 0..200 {
            let (tx, stop) = (tx.clone(), stop.clone());
            grove::spawn(move || {
                while !stop.load(SeqCst) {
                    let (mut a, b) = UnixStream::pair().unwrap();
                    a.set_read_timeout(Some(ms(500))).unwrap();
                    if tx.send(b.into()).is_err() {
                        return;
                    }
                    while let Ok(1..) = a.read(&mut [0u8; 1]) {}
                }
            });
        }
        let last: Arc<Vec<AtomicUsize>> = Arc::new((0..20).map(|_| AtomicUsize::new(0)).collect());
        for v in 0..20 {
            let (last, stop) = (last.clone(), stop.clone());
            grove::spawn(move || {
                while !stop.load(SeqCst) {
                    last[v].store(t0.elapsed().as_millis() as usize, SeqCst);
                    let (s, _peer) = UnixStream::pair().unwrap();
                    s.set_read_timeout(Some(ms(3))).unwrap();
                    let _ = (&s).read(&mut [0u8; 4]);
                }
            });
        }
        std::thread::sleep(ms(6_000));
        let now = t0.elapsed().as_millis() as usize;
        let stuck: Vec<usize> = (0..20)
            .filter(|&v| now - last[v].load(SeqCst) > 2_000)
            .collect();
        println!("stuck={stuck:?}");
        stop.store(true, SeqCst);
        std::process::exit(0); // stuck readers would never end
    }
    let out = common::run_child(
        "net_reused_poller_slots_never_get_a_closed_sockets_events",
        "churn",
        &[("GROVE_WORKERS", "4")],
    );
    let text = common::stdout(&out);
    assert!(text.contains("stuck=[]"), "{text}{}", common::stderr(&out));
}

#[test]
fn net_unix_datagram_shut_for_reading_answers_at_once_as_std_does() {
    if !common::in_a_process_of_its_own(
        "net_unix_datagram_shut_for_reading_answers_at_once_as_std_does",
    ) {
        return;
    }
    // std's blocking recv on a datagram socket shut for reading returns `Ok(0)` at once (and
    // recv_from an unnamed address). grove's non-blocking recv says `WouldBlock` there: it
    // waited out the timeout (for ever without one), and before that spun at 100% CPU on the
    // read-closed bit that kept sending it back to the kernel.
    on_thread_and_greenlet(|| {
        for timeout in [None, Some(ms(10_000))] {
            let (a, _b) = UnixDatagram::pair().unwrap();
            a.set_read_timeout(timeout).unwrap();
            a.shutdown(Shutdown::Read).unwrap();
            let cpu = common::cpu_time();
            let t = std::time::Instant::now();
            let mut buf = [0u8; 16];
            assert_eq!(a.recv(&mut buf).unwrap(), 0);
            let (n, from) = a.recv_from(&mut buf).unwrap();
            assert_eq!(n, 0);
            assert!(from.is_unnamed(), "{from:?}");
            assert!(t.elapsed() < ms(3_000), "{:?}", t.elapsed());
            assert!(common::cpu_time() - cpu < ms(100));
        }
        let std_pair = std::os::unix::net::UnixDatagram::pair().unwrap();
        std_pair.0.shutdown(Shutdown::Read).unwrap();
        assert_eq!(std_pair.0.recv(&mut [0u8; 4]).unwrap(), 0, "std changed");
    });
}

#[test]
fn net_unix_datagram_recv_waiting_when_another_greenlet_shuts_reading_returns_0() {
    // The kernel's read-closed event reaches a recv already parked.
    let (a, _b) = UnixDatagram::pair().unwrap();
    let a = std::sync::Arc::new(a);
    let reader = {
        let a = a.clone();
        grove::spawn(move || a.recv(&mut [0u8; 8]))
    };
    grove::sleep(ms(50));
    a.shutdown(Shutdown::Read).unwrap();
    let got = grove::timeout(LIMIT, || reader.join().unwrap()).expect("recv stayed parked");
    assert_eq!(got.unwrap(), 0);
}

/// A greenlet (or thread) writing to `a` until a write fails: it fills the buffer, then parks.
fn write_until_it_fails(green: bool, a: Arc<UnixStream>) -> Worker<ErrorKind> {
    Worker::spawn(green, move || loop {
        if let Err(e) = (&*a).write(&[0u8; 65536]) {
            return e.kind();
        }
    })
}

#[test]
fn net_unix_writer_blocked_on_a_full_buffer_fails_when_its_socket_is_shut_for_writing() {
    // std's blocked writer gets `BrokenPipe` when another thread shuts the socket for
    // writing. A Unix socket shut for writing with a full send buffer reports no event, so
    // grove's parked writer waited out its timeout (for ever without one).
    for green in [true, false] {
        let (a, _b) = UnixStream::pair().unwrap();
        let a = Arc::new(a);
        let writer = write_until_it_fails(green, a.clone());
        grove::sleep(ms(200)); // the buffer fills; the writer parks
        let t = std::time::Instant::now();
        a.shutdown(Shutdown::Write).unwrap();
        let kind = grove::timeout(LIMIT, || writer.join()).expect("the writer stayed parked");
        assert_eq!(kind, std::io::ErrorKind::BrokenPipe);
        assert!(t.elapsed() < ms(3_000), "{:?}", t.elapsed());
    }
    // The same for a datagram pair whose peer does not read.
    let (a, _b) = UnixDatagram::pair().unwrap();
    let a = std::sync::Arc::new(a);
    let writer = {
        let a = a.clone();
        grove::spawn(move || loop {
            if let Err(e) = a.send(&[0u8; 1024]) {
                return e.kind();
            }
        })
    };
    grove::sleep(ms(200));
    a.shutdown(Shutdown::Write).unwrap();
    let kind = grove::timeout(LIMIT, || writer.join().unwrap()).expect("the sender stayed parked");
    assert_eq!(kind, std::io::ErrorKind::BrokenPipe);
}

#[test]
fn net_unix_writer_blocked_on_a_full_buffer_fails_when_the_peer_shuts_its_read_half() {
    // The peer's `shutdown(Read)` marks our side shut for sending, which Linux reports with no
    // poller event while our buffer is full; std's blocked writer gets `BrokenPipe` at once.
    // grove's parked writer waited out its timeout (for ever without one). Also a writer on a
    // `try_clone` whose sibling shuts the socket for writing (the sibling's shutdown wakes
    // only its own handle's waiters).
    for green in [true, false] {
        for sibling_shuts in [false, true] {
            let (a, b) = UnixStream::pair().unwrap();
            let a = Arc::new(a);
            let clone = a.try_clone().unwrap();
            // A write timeout far above the bound below: reaching it is the bug.
            a.set_write_timeout(Some(ms(6_000))).unwrap();
            let writer = write_until_it_fails(green, a.clone());
            grove::sleep(ms(200)); // the buffer fills; the writer parks
            let t = Instant::now();
            if sibling_shuts {
                clone.shutdown(Shutdown::Write).unwrap();
            } else {
                b.shutdown(Shutdown::Read).unwrap();
            }
            let kind = grove::timeout(LIMIT, || writer.join()).expect("the writer stayed parked");
            assert_eq!(
                kind,
                ErrorKind::BrokenPipe,
                "green {green}, sibling {sibling_shuts}"
            );
            assert!(
                t.elapsed() < ms(3_000),
                "green {green}, sibling {sibling_shuts}: {:?}",
                t.elapsed()
            );
        }
    }
}

/// Runs `op` in a `Drop` while a greenlet (`green`) or a plain thread unwinds out of
/// `grove::timeout(scope, ..)`; `op` gets the instant the scope was entered. The unwind starts
/// with `panic!` (its hook runs first) if `with_hook`, else with `resume_unwind` (no hook, so the
/// Drop's timing is the caller's). Returns what `op` returned, checked outside (a failed
/// assertion in a `Drop` mid-unwind would abort), or `None` if it had not ended within `LIMIT`:
/// then it may still be stuck, and the caller frees it before failing.
fn in_an_unwinding_drop<T: Send + 'static>(
    green: bool,
    scope: std::time::Duration,
    with_hook: bool,
    op: impl FnOnce(Instant) -> T + Send + 'static,
) -> Option<T> {
    struct OnDrop<F: FnOnce() -> T, T>(Option<F>, Arc<std::sync::Mutex<Option<T>>>);
    impl<F: FnOnce() -> T, T> Drop for OnDrop<F, T> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                *self.1.lock().unwrap() = Some(f());
            }
        }
    }
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let body = {
        let outcome = outcome.clone();
        move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let began = Instant::now();
                grove::timeout(scope, || {
                    let _d = OnDrop(Some(move || op(began)), outcome);
                    if with_hook {
                        panic!("grove test: unwind on purpose");
                    }
                    std::panic::resume_unwind(Box::new("grove test: unwind on purpose"));
                })
            }));
        }
    };
    let worker = Worker::spawn(green, body);
    grove::timeout(LIMIT, || worker.join()).ok()?;
    let got = outcome.lock().unwrap().take();
    got
}

/// A Unix stream whose send buffer is full, so a blocking write waits for room.
fn full_unix_stream() -> (Arc<UnixStream>, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    while (&a).write(&[0u8; 65536]).is_ok() {}
    a.set_nonblocking(false).unwrap();
    (Arc::new(a), b)
}

fn spin_until(t: Instant) {
    while Instant::now() < t {
        std::hint::spin_loop();
    }
}

#[test]
fn net_unix_write_in_an_unwinding_drop_is_bounded_by_its_timeout_scope() {
    // Mid-unwind an expired `timeout` scope is reported once, as `TimedOut`; the sliced wait of
    // a Unix stream write took that for the end of its own slice and waited on, past the
    // scope, for ever without a write timeout (found by a review).
    for green in [true, false] {
        let (a, _b) = full_unix_stream();
        let writer = a.clone();
        let got = in_an_unwinding_drop(green, ms(100), true, move |_| {
            let t = Instant::now();
            let r = (&*writer).write(&[0u8; 1024]).map_err(|e| e.kind());
            (r, t.elapsed())
        });
        let _ = a.shutdown(Shutdown::Both); // frees a writer still stuck, if the test failed
        assert!(
            got.is_some(),
            "green {green}: the write in the Drop never ended"
        );
        assert!(
            matches!(got, Some((Err(ErrorKind::TimedOut), d)) if d < ms(2_000)),
            "green {green}: {got:?}"
        );
    }
}

#[test]
fn net_unix_write_in_an_unwinding_drop_whose_slice_ends_just_after_the_scope_is_bounded() {
    // As above, with the write's first slice (20 ms) made to end a few µs after the scope's
    // deadline: the park wakes after both, the runtime reports the scope (its deadline came
    // first) and marks it reported, and the sliced wait, judging by the clock that its slice had
    // ended, took the `TimedOut` for its own and waited on with no scope to bound it (here up to
    // the write timeout; for ever without one). Swept over gaps below the park's wake-up latency
    // (~50-200 µs); the unwind is started with `resume_unwind` so no panic hook delays the Drop.
    for green in [true, false] {
        for gap_us in (0..=160).step_by(20) {
            let (a, _b) = full_unix_stream();
            a.set_write_timeout(Some(ms(1_000))).unwrap(); // reaching it is the bug
            let writer = a.clone();
            let got = in_an_unwinding_drop(green, ms(100), false, move |began| {
                // The scope's deadline is a hair after `began + 100 ms`: the slice ends `gap`
                // after it.
                spin_until(began + ms(80) + std::time::Duration::from_micros(gap_us));
                let t = Instant::now();
                let r = (&*writer).write(&[0u8; 1024]).map_err(|e| e.kind());
                (r, t.elapsed())
            });
            let _ = a.shutdown(Shutdown::Both);
            assert!(got.is_some(), "green {green}, gap {gap_us} µs: never ended");
            assert!(
                matches!(got, Some((Err(ErrorKind::TimedOut), d)) if d < ms(500)),
                "green {green}, gap {gap_us} µs: {got:?}"
            );
        }
    }
}

#[test]
fn net_unix_datagram_send_to_a_full_receiver_in_an_unwinding_drop_is_bounded_by_its_timeout_scope()
{
    // The paced retry of an unconnected send_to naps between attempts; mid-unwind an expiring
    // `timeout` scope cannot unwind a nap, it only ends it and is marked reported, and the retry
    // then went on with nothing to bound it (no write timeout here): for ever.
    for (green, late) in [(true, 0), (false, 0), (true, 80), (false, 80)] {
        let dir = TempPath::new("full_unwind");
        let rx = std::os::unix::net::UnixDatagram::bind(dir.path()).unwrap();
        let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        while filler.send_to(b"x", dir.path()).is_ok() {}
        let path = dir.path().to_owned();
        // The send's result and time, then how long a later wait in the same Drop took.
        let got = in_an_unwinding_drop(green, ms(60), false, move |began| {
            // Once with the scope expiring during the send's naps, once with it expired before
            // the send begins (then the send finds the deadline passed without parking). (Spun
            // past the scope's 60 ms, under the blocking monitor's 100.)
            spin_until(began + ms(late));
            let tx = UnixDatagram::unbound().unwrap();
            let t = Instant::now();
            let r = tx.send_to(b"y", &path).map_err(|e| e.kind());
            let sent = t.elapsed();
            // The scope was reported once, by the send: this wait has its own timeout only (a
            // send that timed out on the scope without marking it reported left it to cut this
            // one short too).
            let (quiet, _other) = UnixDatagram::pair().unwrap();
            quiet.set_read_timeout(Some(ms(300))).unwrap();
            let t = Instant::now();
            let _ = quiet.recv(&mut [0u8; 8]);
            (r, sent, t.elapsed())
        });
        drop(rx); // frees a sender still stuck, if the test failed
        assert!(
            got.is_some(),
            "green {green}, late {late}: the send never ended"
        );
        assert!(
            matches!(got, Some((Err(ErrorKind::TimedOut), d, w)) if d < ms(2_000) && w >= ms(250)),
            "green {green}, late {late}: {got:?}"
        );
    }
}

#[test]
fn net_unix_datagram_send_to_a_full_receiver_waits_without_spinning() {
    if !common::in_a_process_of_its_own(
        "net_unix_datagram_send_to_a_full_receiver_waits_without_spinning",
    ) {
        return;
    }
    // An unconnected send_to waits for room in the receiver's queue, which no poller event
    // reports, while the sender's own socket reports writable after each failed attempt: it
    // spun a core until the receiver drained (or its write timeout passed).
    on_thread_and_greenlet(|| {
        let dir = TempPath::new("full");
        let rx = std::os::unix::net::UnixDatagram::bind(dir.path()).unwrap();
        let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        while filler.send_to(b"x", dir.path()).is_ok() {}
        let tx = UnixDatagram::unbound().unwrap();
        tx.set_write_timeout(Some(ms(300))).unwrap();
        let cpu = common::cpu_time();
        let t = std::time::Instant::now();
        let r = tx.send_to(b"y", dir.path());
        let spent = common::cpu_time() - cpu;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(t.elapsed() >= ms(250), "gave up after {:?}", t.elapsed());
        assert!(
            spent < ms(150),
            "{spent:?} of CPU to wait {:?}",
            t.elapsed()
        );
        drop(rx);
    });
}
