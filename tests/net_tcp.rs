//! TCP sockets and StreamServer over loopback, in greenlets and on plain threads.

mod common;

use grove::net::{StreamServer, TcpListener, TcpStream, UdpSocket, UnixStream};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn echo_server() -> (std::net::SocketAddr, grove::net::ServerHandle) {
    let server = StreamServer::bind("127.0.0.1:0", |s: TcpStream, _| {
        let mut buf = [0u8; 4096];
        loop {
            match (&s).read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if (&s).write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    (addr, server.start())
}

/// A StreamServer on a listener in non-blocking mode (a std listener set up for mio or tokio)
/// still waits for connections: its accept loop took the `WouldBlock` for an accept error,
/// printed "accept failed ... backing off" and slept up to 1 s between polls.
#[test]
fn net_stream_server_waits_on_a_non_blocking_listener() {
    // In a child, whose stderr tells whether the accept loop ever took `WouldBlock` for an error
    // (a check no stall of a loaded machine can fail; the latency below is a looser one).
    const NAME: &str = "net_stream_server_waits_on_a_non_blocking_listener";
    if common::role().is_none() {
        let out = common::run_child(NAME, "nonblocking", &[]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let err = common::stderr(&out);
        assert!(!err.contains("backing off"), "{err}");
        assert!(!err.contains("accept failed"), "{err}");
        return;
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let handle = StreamServer::from_listener(TcpListener::from(l), |mut s: TcpStream, _| {
        let _ = s.write_all(b"hi");
    })
    .start();
    // Let the accept loop go idle long enough to back off to its longest pause.
    std::thread::sleep(Duration::from_millis(1_500));
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let mut got = [0u8; 2];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    assert!(
        t.elapsed() < Duration::from_millis(3_000),
        "{:?}",
        t.elapsed()
    );
    handle.stop(Duration::from_secs(1));
}

#[test]
fn net_echo_roundtrip_from_greenlets_and_threads() {
    let (addr, server) = echo_server();
    let gs: Vec<_> = (0..20)
        .map(|i| {
            grove::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let msg = format!("hello {i}");
                s.write_all(msg.as_bytes()).unwrap();
                let mut buf = vec![0u8; msg.len()];
                s.read_exact(&mut buf).unwrap();
                assert_eq!(buf, msg.as_bytes());
            })
        })
        .collect();
    let t = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"from a thread").unwrap();
        let mut buf = [0u8; 13];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from a thread");
    });
    for g in gs {
        g.join().unwrap();
    }
    t.join().unwrap();
    server.stop(Duration::from_secs(1));
}

#[test]
fn net_connect_refused_is_an_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let e = grove::spawn(move || TcpStream::connect(addr).unwrap_err())
        .join()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn net_read_timeout_gives_timed_out() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = grove::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(30)));
        let t = Instant::now();
        let e = (&s).read(&mut [0u8; 4]).unwrap_err();
        (e.kind(), t.elapsed())
    });
    let (_conn, _) = l.accept().unwrap();
    let (kind, took) = h.join().unwrap();
    assert_eq!(kind, ErrorKind::TimedOut);
    assert!(took >= Duration::from_millis(30));
    assert!(TcpStream::connect(addr)
        .unwrap()
        .set_read_timeout(Some(Duration::ZERO))
        .is_err());
}

#[test]
fn net_half_close_and_peer_reset() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let client = grove::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"bye").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        rest
    });
    let (mut srv, _) = l.accept().unwrap();
    let mut got = Vec::new();
    srv.read_to_end(&mut got).unwrap(); // EOF after the client's half-close
    assert_eq!(got, b"bye");
    srv.write_all(b"ok").unwrap();
    drop(srv);
    assert_eq!(client.join().unwrap(), b"ok");
}

#[test]
fn net_thousands_of_simultaneous_connections() {
    let (addr, server) = echo_server();
    let done = Arc::new(AtomicUsize::new(0));
    let gs: Vec<_> = (0..2000)
        .map(|_| {
            let done = done.clone();
            grove::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                grove::sleep(Duration::from_millis(50)); // all open at once
                s.write_all(b"ping").unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).unwrap();
                done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    for g in gs {
        g.join().unwrap();
    }
    assert_eq!(done.load(SeqCst), 2000);
    server.stop(Duration::from_secs(1));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn net_fd_count_returns_after_connect_close_cycles() {
    if common::role().is_some() {
        let (addr, server) = echo_server();
        let before = open_fds();
        grove::spawn(move || {
            for _ in 0..10_000 {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
            }
        })
        .join()
        .unwrap();
        server.stop(Duration::from_secs(2));
        grove::sleep(Duration::from_millis(100));
        let after = open_fds();
        assert!(after <= before + 2, "fds before {before}, after {after}");
        return;
    }
    let out = common::run_child(
        "net_fd_count_returns_after_connect_close_cycles",
        "fds",
        &[],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn net_stream_server_max_connections_and_stop() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let server = StreamServer::bind("127.0.0.1:0", move |s: TcpStream, _| {
        let now = r.fetch_add(1, SeqCst) + 1;
        p.fetch_max(now, SeqCst);
        grove::sleep(Duration::from_millis(20));
        let _ = (&s).write_all(b"k");
        r.fetch_sub(1, SeqCst);
    })
    .unwrap()
    .max_connections(3);
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let clients: Vec<_> = (0..12)
        .map(|_| {
            grove::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(peak.load(SeqCst), 3);
    // A handler that never ends is killed after the grace period.
    let stuck = grove::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    });
    stuck.join().unwrap();
    let slow = StreamServer::bind("127.0.0.1:0", |_s: TcpStream, _| {
        grove::sleep(Duration::from_secs(3600))
    })
    .unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let slow = slow.start();
    let _c = TcpStream::connect(slow_addr).unwrap();
    common::wait_for("the connection to be accepted", || slow.connections() == 1);
    let t = Instant::now();
    slow.stop(Duration::from_millis(50));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(slow.connections(), 0);
    assert!(
        TcpStream::connect_timeout(&slow_addr, Duration::from_millis(200)).is_err(),
        "still accepting after stop"
    );
    handle.stop(Duration::from_secs(1));
}

#[test]
fn net_udp_and_unix_sockets() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let h = grove::spawn(move || {
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    });
    grove::sleep(Duration::from_millis(10));
    a.send_to(b"dgram", b_addr).unwrap();
    let (data, from) = h.join().unwrap();
    assert_eq!(data, b"dgram");
    assert_eq!(from, a.local_addr().unwrap());

    let (x, y) = UnixStream::pair().unwrap();
    let h = grove::spawn(move || {
        let mut s = String::new();
        (&y).read_to_string(&mut s).unwrap();
        s
    });
    (&x).write_all(b"over unix").unwrap();
    drop(x);
    assert_eq!(h.join().unwrap(), "over unix");
}

#[test]
fn net_std_conversions_round_trip() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let g: TcpListener = l.into();
    let c = std::thread::spawn(move || std::net::TcpStream::connect(addr).unwrap());
    let (s, _) = g.accept().unwrap();
    let _c = c.join().unwrap();
    let back: std::net::TcpStream = s.into();
    back.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    assert!(back.peer_addr().is_ok());
}

#[test]
fn net_stream_server_gives_every_connection_nodelay() {
    // The option comes from the listener where the kernel copies it (Linux), else per connection.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = StreamServer::bind("127.0.0.1:0", move |s: TcpStream, _| {
        let _ = tx.lock().unwrap().send(s.nodelay().unwrap());
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let clients: Vec<_> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for _ in 0..5 {
        let on = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(on, "an accepted connection without TCP_NODELAY");
    }
    drop(clients);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn net_closed_duplicate_does_not_leak_events_into_a_new_socket() {
    // A socket registered with the poller and duplicated (`try_clone`): dropping the original
    // while the copy lives must take it out of the poller, or the copy's events (its peer
    // closing) would reach whichever socket gets the freed token next and make that one's reads
    // spin instead of waiting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    grove::spawn(move || {
        let a_peer = TcpStream::connect(addr).unwrap();
        let (a, _) = listener.accept().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 16];
        let e = (&a).read(&mut buf).unwrap_err(); // registers `a` with the poller
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let a_copy = a.try_clone().unwrap();
        drop(a);
        let _c_peer = TcpStream::connect(addr).unwrap();
        let (c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let e = (&c).read(&mut buf).unwrap_err(); // registers `c`
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        drop(a_peer); // the copy's peer closes: an event for the copy's socket
        let started = Instant::now();
        let r = (&c).read(&mut buf);
        let _ = done_tx.send((r.map_err(|e| e.kind()), started.elapsed()));
        drop(a_copy);
    });
    let (r, took) = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the read on the new socket never returned (spinning on stale events?)");
    assert_eq!(r, Err(std::io::ErrorKind::TimedOut));
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

/// A connected pair over `listener`, the accepted side registered with the poller (a read that
/// timed out), and a raw `dup` of that side's fd.
#[cfg(unix)]
fn registered_with_a_raw_duplicate(listener: &TcpListener) -> (TcpStream, TcpStream, i32) {
    use std::os::fd::AsRawFd;
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let e = (&s).read(&mut [0u8; 16]).unwrap_err(); // registers `s` with the poller
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    // SAFETY: the fd is open; `dup` makes a new descriptor of its file, the caller's to close.
    let raw = unsafe { libc::dup(s.as_raw_fd()) };
    assert!(raw >= 0);
    (peer, s, raw)
}

#[cfg(unix)]
#[test]
fn net_socket_closed_while_a_raw_duplicate_lives_is_neither_heard_nor_in_the_way() {
    // A grove socket with no `try_clone` leaves its removal from the poller to its close (no
    // `EPOLL_CTL_DEL`). If the user made a raw duplicate (`dup`) first, the file stays open and
    // its poller entry with it. A descriptor of that file given the same number again must
    // register (`EPOLL_CTL_ADD` says the entry exists: it is taken over), and the entry's events
    // must not reach the socket that gets the freed token next (a datagram socket: a stale
    // "read closed" would end its wait with an error). In a process of its own: the fd numbers
    // below must not be taken by other tests.
    if !common::in_a_process_of_its_own(
        "net_socket_closed_while_a_raw_duplicate_lives_is_neither_heard_nor_in_the_way",
    ) {
        return;
    }
    use std::os::fd::{AsRawFd, FromRawFd};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let h = grove::spawn(move || {
        let mut buf = [0u8; 16];
        // 1. The same file under the same number registers again.
        let (mut b_peer, b, raw) = registered_with_a_raw_duplicate(&listener);
        let n = b.as_raw_fd();
        // Its entry stays: `raw` keeps the file open.
        drop(b);
        // SAFETY: `raw` is open; the new descriptor (the lowest free number) is ours.
        let again = unsafe { libc::dup(raw) };
        assert_eq!(again, n, "the freed number was not given again");
        // SAFETY: `again` is an open, connected TCP socket descriptor that nothing else owns.
        let b2 = TcpStream::from(unsafe { std::net::TcpStream::from_raw_fd(again) });
        // The file is non-blocking (grove made it so), which adopting keeps: ask for waits.
        b2.set_nonblocking(false).unwrap();
        b2.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let e = (&b2).read(&mut buf).unwrap_err(); // registers `b2`, or fails to
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        b2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reader = grove::spawn(move || {
            let mut buf = [0u8; 16];
            (&b2).read(&mut buf).map_err(|e| e.kind())
        });
        grove::sleep(Duration::from_millis(20));
        b_peer.write_all(b"hi").unwrap();
        assert_eq!(
            reader.join().unwrap(),
            Ok(2),
            "the entry taken over stayed deaf"
        );
        // SAFETY: `raw` is ours and open.
        unsafe { libc::close(raw) };

        // 2. The leftover entry's events carry the slot's old generation, and the socket that
        // takes the slot next does not hear them.
        let (mut a_peer, a, raw) = registered_with_a_raw_duplicate(&listener);
        drop(a);
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = c.recv_from(&mut buf).unwrap_err(); // registers `c`
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let waiter = grove::spawn(move || {
            let mut buf = [0u8; 16];
            let started = Instant::now();
            let r = c.recv_from(&mut buf).map(|_| ()).map_err(|e| e.kind());
            (r, started.elapsed())
        });
        grove::sleep(Duration::from_millis(20));
        a_peer.write_all(b"!").unwrap();
        a_peer.shutdown(Shutdown::Write).unwrap(); // "read closed" for the duplicate's file
        let got = waiter.join().unwrap();
        // SAFETY: `raw` is ours and open.
        unsafe { libc::close(raw) };
        got
    });
    let (r, took) = h.join().unwrap();
    assert_eq!(
        r,
        Err(ErrorKind::TimedOut),
        "a stale event reached the new socket"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
}

/// This process's epoll sets (by inode: one set may have several fds) that hold an entry
/// registered under `fd` (`/proc/self/fdinfo`: an `ino:` line, then one `tfd:` line per entry).
#[cfg(target_os = "linux")]
fn epoll_sets_holding(fd: i32) -> Vec<String> {
    let mut sets = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy() == "anon_inode:[eventpoll]");
        let name = entry.file_name().to_string_lossy().into_owned();
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{name}")).unwrap_or_default();
        let ino = info
            .lines()
            .find(|l| l.starts_with("ino:"))
            .unwrap_or("")
            .to_string();
        if is_epoll
            && info
                .lines()
                .any(|l| l.starts_with(&format!("tfd: {fd:>8} ")))
            && !sets.contains(&ino)
        {
            sets.push(ino);
        }
    }
    sets
}

#[cfg(target_os = "linux")]
#[test]
fn net_socket_whose_raw_fd_was_handed_out_leaves_no_poller_entry_when_dropped() {
    // A grove socket leaves its removal from the poller to its close, which takes the entry out
    // only if no other descriptor holds the file. Once its raw fd has been handed out (`as_raw_fd`,
    // `as_fd`), a `dup` may hold it: the drop then removes the entry itself, and the file's
    // later events wake nobody. In a process of its own: the fd number must not be reused by
    // other tests meanwhile.
    if !common::in_a_process_of_its_own(
        "net_socket_whose_raw_fd_was_handed_out_leaves_no_poller_entry_when_dropped",
    ) {
        return;
    }
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let left = grove::spawn(move || {
        let (mut peer, s, raw) = registered_with_a_raw_duplicate(&listener);
        let n = s.as_raw_fd();
        assert!(
            !epoll_sets_holding(n).is_empty(),
            "the socket was not registered"
        );
        drop(s);
        let left = epoll_sets_holding(n);
        peer.write_all(b"to nobody").unwrap();
        // SAFETY: `raw` is ours and open.
        unsafe { libc::close(raw) };
        left
    })
    .join()
    .unwrap();
    assert!(
        left.is_empty(),
        "the dropped socket's entry stayed in the epoll set(s) {left:?}"
    );
}

/// An fd registered twice (a second `Registration` of a grove socket's fd, from another
/// library, say) is refused, as it always was: taking the entry over would leave the first
/// registration deaf.
#[cfg(unix)]
#[test]
fn net_second_registration_of_a_live_sockets_fd_is_refused_and_steals_nothing() {
    use grove::io::{Direction, Registration};
    use std::os::fd::AsRawFd;
    let h = grove::spawn(|| {
        let (x, mut y) = UnixStream::pair().unwrap();
        x.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = (&x).read(&mut [0u8; 8]).unwrap_err(); // registers `x`
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let second = Registration::new(x.as_raw_fd()).unwrap();
        let r = second.wait(
            Direction::Read,
            Some(Instant::now() + Duration::from_millis(20)),
        );
        assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::AlreadyExists));
        drop(second);
        x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let reader = grove::spawn(move || (&x).read(&mut [0u8; 8]).map_err(|e| e.kind()));
        grove::sleep(Duration::from_millis(20));
        y.write_all(b"hi").unwrap();
        reader.join().unwrap()
    });
    assert_eq!(h.join().unwrap(), Ok(2));
}

#[cfg(any(target_os = "linux", target_os = "android"))] // the guard needs EPOLLPRI
#[test]
fn net_read_after_urgent_data_does_not_stall() {
    // TCP urgent data: a read stops short at the urgent mark with in-band data behind it. That
    // short read must not make the next read wait for an event that will not come.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (ready_tx, ready_rx) = grove::sync::bounded::<()>(1);
    let (go_tx, go_rx) = grove::sync::bounded::<()>(1);
    let h = grove::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        // Register with the poller first (a read that times out), so that the reads below go
        // through the readiness word.
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let e = (&s).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap(); // everything is queued by now
        let mut got = Vec::new();
        while got.len() < 6 {
            match (&s).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read failed after {got:?}: {e}"),
            }
        }
        got
    });
    let c = std::net::TcpStream::connect(addr).unwrap();
    ready_rx.recv().unwrap();
    let sock = socket2::SockRef::from(&c);
    sock.send(b"abc").unwrap();
    sock.send_out_of_band(b"!").unwrap();
    sock.send(b"def").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    go_tx.send(()).unwrap();
    let got = h.join().unwrap();
    assert_eq!(got, b"abcdef");
}

/// 64 KiB already queued on one end of a Unix stream pair: every one-byte read of it is ready at
/// once, so a greenlet reading it never parks.
fn always_ready_stream() -> UnixStream {
    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(&[7u8; 64 * 1024]).unwrap();
    std::mem::forget(b); // keep the writing end open (and the data queued) for the test's life
    a
}

/// Writes `bye` to its stream when dropped: a destructor that does I/O.
struct ByeOnDrop(UnixStream);

impl Drop for ByeOnDrop {
    fn drop(&mut self) {
        let _ = self.0.write_all(b"bye");
    }
}

/// Reads the 64 KiB of [`always_ready_stream`] one byte at a time, counting into `reads`.
fn spawn_one_byte_reader(mut s: UnixStream, reads: Arc<AtomicUsize>) -> grove::JoinHandle<()> {
    grove::spawn(move || {
        let mut b = [0u8; 1];
        for _ in 0..64 * 1024 {
            s.read_exact(&mut b).unwrap();
            reads.fetch_add(1, SeqCst);
        }
    })
}

#[test]
fn net_always_ready_reader_lets_others_run_on_one_worker() {
    if common::role().is_some() {
        let s = always_ready_stream();
        // Spawned from a greenlet, both go to the back of the one worker's queue, in order.
        let seen = grove::spawn(move || {
            let reads = Arc::new(AtomicUsize::new(0));
            let reader = spawn_one_byte_reader(s, reads.clone());
            let other = grove::spawn(move || reads.load(SeqCst)); // queued behind the reader
            let seen = other.join().unwrap();
            reader.join().unwrap();
            seen
        })
        .join()
        .unwrap();
        assert!(
            (1..=grove::rt::coop::BUDGET as usize).contains(&seen),
            "the other greenlet ran after {seen} reads"
        );
        return;
    }
    let out = common::run_child(
        "net_always_ready_reader_lets_others_run_on_one_worker",
        "reader",
        &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}

#[test]
fn net_kill_reaches_a_greenlet_whose_reads_never_block() {
    if common::role().is_some() {
        let reads = Arc::new(AtomicUsize::new(0));
        let (bye, mut heard) = UnixStream::pair().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&[7u8; 4096]).unwrap();
        let r = reads.clone();
        // Reads a byte and writes it back in, for ever: every read and write is ready at once,
        // so only the kill can end it.
        let reader = grove::spawn(move || {
            let _bye = ByeOnDrop(bye);
            let mut byte = [0u8; 1];
            loop {
                a.read_exact(&mut byte).unwrap();
                b.write_all(&byte).unwrap();
                r.fetch_add(1, SeqCst);
            }
        });
        while reads.load(SeqCst) < 10 {
            std::thread::yield_now();
        }
        reader.kill();
        let e = reader
            .join()
            .expect_err("the reader should have been killed");
        assert!(common::is_killed(&e));
        // The kill unwound from the budget's yield, and the destructor's write (which spends
        // budget too) went through.
        let mut got = [0u8; 3];
        heard.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye");
        return;
    }
    let out = common::run_child(
        "net_kill_reaches_a_greenlet_whose_reads_never_block",
        "reader",
        &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
}
