//! grove's sockets against std's API, beside `net_std_parity_unix.rs` (the Unix sockets):
//! conversions to and from std types and raw fds, `peek`, `TcpListener::incoming`, socket
//! options, write timeouts, the settings `try_clone` shares, and name resolution off the
//! workers. Each case runs in a greenlet and on a plain thread where both make sense. Loopback
//! only; every wait is bounded.

mod common;

use common::parity::{
    assert_times_out, assert_would_block, fd_local_addr, fd_nonblocking, spawn_alike, TempPath,
    LIMIT,
};
use common::{ms, on_thread_and_greenlet};
use grove::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Conversions.

#[test]
fn net_std_and_raw_fd_conversions_keep_sockets_working() {
    on_thread_and_greenlet(|| {
        // TcpListener: from std, through a raw fd and back.
        let l = TcpListener::from(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let fd = l.into_raw_fd();
        assert_eq!(
            fd_local_addr(fd).unwrap(),
            addr,
            "into_raw_fd closed the fd"
        );
        assert!(
            !fd_nonblocking(fd),
            "into_raw_fd gives the fd in blocking mode"
        );
        // SAFETY: `fd` is the open listener just given up, owned here.
        let l = unsafe { TcpListener::from_raw_fd(fd) };
        assert_eq!(l.local_addr().unwrap(), addr);

        // TcpStream: from std; grove waits on it (a timeout gives TimedOut, not WouldBlock).
        let c = TcpStream::from(std::net::TcpStream::connect(addr).unwrap());
        let (s, _) = l.accept().unwrap();
        c.set_read_timeout(Some(ms(30))).unwrap();
        assert_times_out(ms(30), || (&c).read(&mut [0u8; 4]));
        let c_addr = c.local_addr().unwrap();
        let fd = c.into_raw_fd();
        assert_eq!(
            fd_local_addr(fd).unwrap(),
            c_addr,
            "into_raw_fd closed the fd"
        );
        // SAFETY: `fd` is the open stream just given up, owned here.
        let mut c = unsafe { TcpStream::from_raw_fd(fd) };
        (&s).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        // Through OwnedFd, then back to std: blocking again (std's timeout, after waiting).
        let c = TcpStream::from(OwnedFd::from(c));
        (&c).write_all(b"pong").unwrap();
        (&s).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        let c: std::net::TcpStream = c.into();
        c.set_read_timeout(Some(ms(40))).unwrap();
        let t = Instant::now();
        let e = (&c).read(&mut buf).unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        assert!(
            t.elapsed() >= ms(30),
            "the std socket was left non-blocking"
        );

        // UdpSocket: from std, through a raw fd and back.
        let u = UdpSocket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let u_addr = u.local_addr().unwrap();
        let fd = u.into_raw_fd();
        assert_eq!(
            fd_local_addr(fd).unwrap(),
            u_addr,
            "into_raw_fd closed the fd"
        );
        // SAFETY: `fd` is the open UDP socket just given up, owned here.
        let u = unsafe { UdpSocket::from_raw_fd(fd) };
        u.set_read_timeout(Some(LIMIT)).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"dgram", u_addr).unwrap();
        let (n, from) = u.recv_from(&mut [0u8; 16]).unwrap();
        assert_eq!((n, from), (5, peer.local_addr().unwrap()));
        let u: std::net::UdpSocket = u.into();
        // The timeout set in grove stays on the socket, where std keeps it.
        assert_eq!(u.read_timeout().unwrap(), Some(LIMIT));
        assert_eq!(u.local_addr().unwrap(), u_addr);

        // A Unix stream, the same way.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = UnixStream::from(a);
        let fd = a.into_raw_fd();
        assert!(!fd_nonblocking(fd));
        // SAFETY: `fd` is the open Unix stream just given up, owned here.
        let mut a = unsafe { UnixStream::from_raw_fd(fd) };
        (&b).write_all(b"unix").unwrap();
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"unix");
    });
}

#[test]
fn net_conversions_keep_the_mode_each_handle_shows() {
    on_thread_and_greenlet(|| {
        let mut buf = [0u8; 4];
        // A std socket the user made non-blocking stays so in grove: WouldBlock, no wait.
        let (c, _s) = tcp_pair();
        let std_c: std::net::TcpStream = c.into();
        assert!(!fd_nonblocking(std_c.as_raw_fd()), "handed back blocking");
        std_c.set_nonblocking(true).unwrap();
        let c = TcpStream::from(std_c);
        c.set_read_timeout(Some(ms(200))).unwrap(); // bounds the test if it would wait
        assert_would_block(|| (&c).read(&mut buf));
        // ... and a grove socket set non-blocking goes back to std non-blocking.
        let std_c: std::net::TcpStream = c.into();
        assert!(
            fd_nonblocking(std_c.as_raw_fd()),
            "lost its non-blocking mode"
        );
        assert_would_block(|| (&std_c).read(&mut buf));

        // Giving one clone back to std must not turn the socket blocking under the clone still
        // in grove: its read keeps its timeout (before, it blocked its thread or worker for good).
        let (a, _peer) = tcp_pair();
        a.set_read_timeout(Some(ms(50))).unwrap();
        let b = a.try_clone().unwrap();
        let b_fd: OwnedFd = b.into();
        assert!(
            fd_nonblocking(a.as_raw_fd()),
            "the clone still in grove was made blocking"
        );
        assert_times_out(ms(50), || (&a).read(&mut buf));
        drop(b_fd);
        // The last grove handle goes back blocking, as usual.
        let std_a: std::net::TcpStream = a.into();
        assert!(!fd_nonblocking(std_a.as_raw_fd()));
    });
}

#[test]
fn net_conversions_keep_the_timeouts_std_keeps_in_the_socket() {
    on_thread_and_greenlet(|| {
        let mut buf = [0u8; 4];
        // std's timeouts live in the socket (SO_RCVTIMEO / SO_SNDTIMEO): a read std would have
        // ended after 100 ms must end after 100 ms in grove too (it waited for good).
        let (c, _s) = tcp_pair();
        let std_c: std::net::TcpStream = c.into();
        std_c.set_read_timeout(Some(ms(100))).unwrap();
        std_c.set_write_timeout(Some(ms(300))).unwrap();
        let c = TcpStream::from(std_c);
        assert_eq!(c.read_timeout().unwrap(), Some(ms(100)));
        assert_eq!(c.write_timeout().unwrap(), Some(ms(300)));
        assert_times_out(ms(100), || (&c).read(&mut buf));
        // And back: grove's timeouts go into the std socket.
        c.set_read_timeout(Some(ms(60))).unwrap();
        let std_c: std::net::TcpStream = c.into();
        assert_eq!(std_c.read_timeout().unwrap(), Some(ms(60)));
        let t0 = Instant::now();
        let e = (&std_c).read(&mut buf).unwrap_err();
        assert!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        assert!(t0.elapsed() < LIMIT);
        // The same for a datagram socket.
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(ms(80))).unwrap();
        let u = UdpSocket::from(u);
        assert_eq!(u.read_timeout().unwrap(), Some(ms(80)));
        assert_times_out(ms(80), || u.recv(&mut buf));
    });
}

#[test]
fn net_killed_readers_leave_no_waiter_behind() {
    // Greenlets killed (or timed out by `grove::timeout`) while parked in a read of an idle
    // socket: their wake-up tokens, each holding its greenlet's memory, stayed on the socket's
    // list until the socket next became ready (~420 bytes each, 12 MB for 30,000).
    if common::role().as_deref() == Some("leak") {
        let rss_kb = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let u = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let round = |n: usize| {
            for i in 0..n {
                let u = u.clone();
                let h = grove::spawn(move || {
                    let mut buf = [0u8; 16];
                    if i % 2 == 0 {
                        let _ = u.recv_from(&mut buf);
                    } else {
                        let _ = grove::timeout(Duration::from_micros(50), || u.recv_from(&mut buf));
                    }
                });
                grove::sleep(Duration::from_micros(100));
                h.kill();
                let _ = h.join();
            }
        };
        round(2_000); // warm the caches
        let before = rss_kb();
        round(20_000);
        println!("growth_kb={}", rss_kb().saturating_sub(before));
        return;
    }
    if cfg!(not(target_os = "linux")) {
        return; // reads /proc
    }
    let out = common::run_child("net_killed_readers_leave_no_waiter_behind", "leak", &[]);
    let text = common::stdout(&out);
    let growth: u64 = text
        .lines()
        .find_map(|l| Some(l.split_once("growth_kb=")?.1))
        .unwrap_or_else(|| panic!("child said: {text}{}", common::stderr(&out)))
        .parse()
        .unwrap();
    // 20,000 leaked tokens were ~8 MB; allow a few MB of allocator noise.
    assert!(
        growth < 3_000,
        "RSS grew by {growth} kB over 20,000 killed readers"
    );
}

// ---------------------------------------------------------------------------------------------
// TCP and UDP methods.

/// A connected pair over a grove listener on loopback.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn net_peek_does_not_consume() {
    on_thread_and_greenlet(|| {
        let (c, s) = tcp_pair();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let writer = spawn_alike(move || {
            grove::sleep(ms(20));
            (&s).write_all(b"hello").unwrap();
            s
        });
        let mut buf = [0u8; 16];
        let t0 = Instant::now();
        let mut n = c.peek(&mut buf).unwrap(); // waits for the data
        while n < 5 {
            assert!(t0.elapsed() < LIMIT, "peek saw {n} bytes");
            grove::sleep(ms(1));
            n = c.peek(&mut buf).unwrap();
        }
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(c.peek(&mut buf).unwrap(), 5);
        let mut got = [0u8; 5];
        (&c).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        c.set_read_timeout(Some(ms(30))).unwrap();
        assert_times_out(ms(30), || c.peek(&mut buf));
        drop(writer.join());

        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(LIMIT)).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        a.send_to(b"first", b_addr).unwrap();
        a.send_to(b"second", b_addr).unwrap();
        for _ in 0..2 {
            let (n, from) = b.peek_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&b"first"[..], a_addr));
        }
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"first");
        b.connect(a_addr).unwrap();
        for _ in 0..2 {
            let n = b.peek(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"second");
        }
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second");
        b.set_read_timeout(Some(ms(30))).unwrap();
        assert_times_out(ms(30), || b.peek(&mut buf));
    });
}

#[test]
fn net_tcp_listener_incoming_yields_each_connection() {
    on_thread_and_greenlet(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let clients = spawn_alike(move || {
            (0..3u8)
                .map(|i| {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(&[i]).unwrap();
                    s
                })
                .collect::<Vec<_>>()
        });
        let mut got: Vec<u8> = l
            .incoming()
            .take(3)
            .map(|s| {
                let mut b = [0u8; 1];
                s.unwrap().read_exact(&mut b).unwrap();
                b[0]
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        drop(clients.join());
    });
}

#[test]
fn net_tcp_options_round_trip() {
    on_thread_and_greenlet(|| {
        let (c, _s) = tcp_pair();
        for on in [true, false, true] {
            c.set_nodelay(on).unwrap();
            assert_eq!(c.nodelay().unwrap(), on);
        }
        for ttl in [17, 64] {
            c.set_ttl(ttl).unwrap();
            assert_eq!(c.ttl().unwrap(), ttl);
        }
        assert!(c.take_error().unwrap().is_none());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_ttl(33).unwrap();
        assert_eq!(l.ttl().unwrap(), 33);
        assert!(l.take_error().unwrap().is_none());
    });
}

#[test]
fn net_write_to_a_peer_that_never_reads_times_out() {
    on_thread_and_greenlet(|| {
        let (c, s) = tcp_pair();
        // Small buffers fill sooner (the kernel may round them up).
        socket2::SockRef::from(&c)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(4096)
            .unwrap();
        let timeout = ms(100);
        c.set_write_timeout(Some(timeout)).unwrap();
        assert_eq!(c.write_timeout().unwrap(), Some(timeout));
        let chunk = vec![7u8; 16 * 1024];
        let started = Instant::now();
        let mut written = 0usize;
        for _ in 0..4096 {
            let t = Instant::now();
            match (&c).write(&chunk) {
                Ok(n) => written += n,
                Err(e) => {
                    let took = t.elapsed();
                    assert_eq!(e.kind(), ErrorKind::TimedOut, "after {written} bytes");
                    assert!(took >= timeout * 3 / 4, "timed out after {took:?}");
                    assert!(started.elapsed() < LIMIT, "{:?}", started.elapsed());
                    return;
                }
            }
        }
        panic!("{written} bytes written to a peer that never reads, and no timeout");
    });
}

#[test]
fn net_udp_options_and_multicast_settings_round_trip() {
    on_thread_and_greenlet(|| {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        for on in [false, true, false] {
            u.set_multicast_loop_v4(on).unwrap();
            assert_eq!(u.multicast_loop_v4().unwrap(), on);
        }
        for ttl in [7, 1, 32] {
            u.set_multicast_ttl_v4(ttl).unwrap();
            assert_eq!(u.multicast_ttl_v4().unwrap(), ttl);
        }
        for on in [true, false] {
            u.set_broadcast(on).unwrap();
            assert_eq!(u.broadcast().unwrap(), on);
        }
        u.set_ttl(17).unwrap();
        assert_eq!(u.ttl().unwrap(), 17);
        assert!(u.take_error().unwrap().is_none());
        // Leaving a group never joined: whatever std says on its own socket, grove says too.
        let group = Ipv4Addr::new(239, 255, 70, 1);
        let std_u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            u.leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
                .map_err(|e| e.kind()),
            std_u
                .leave_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
                .map_err(|e| e.kind())
        );
        // IPv6, where the host has it.
        if let Ok(u6) = UdpSocket::bind("[::1]:0") {
            for on in [false, true, false] {
                u6.set_multicast_loop_v6(on).unwrap();
                assert_eq!(u6.multicast_loop_v6().unwrap(), on);
            }
            let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0x7a, 1);
            let std_u6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
            assert_eq!(
                u6.leave_multicast_v6(&group, 0).map_err(|e| e.kind()),
                std_u6.leave_multicast_v6(&group, 0).map_err(|e| e.kind())
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// try_clone shares the settings.

/// `clone` (made from `orig` before any setting) shares `orig`'s timeouts and non-blocking
/// mode both ways; `wait` is an operation with nothing to do (a read with no data).
fn check_shared_settings<T>(
    orig: &T,
    clone: &T,
    set_timeout: impl Fn(&T, Option<Duration>) -> io::Result<()>,
    timeout: impl Fn(&T) -> io::Result<Option<Duration>>,
    set_nonblocking: impl Fn(&T, bool) -> io::Result<()>,
    wait: impl Fn(&T) -> io::Result<usize>,
) {
    set_timeout(orig, Some(ms(40))).unwrap();
    assert_eq!(timeout(clone).unwrap(), Some(ms(40)), "the clone's timeout");
    assert_times_out(ms(40), || wait(clone));
    set_timeout(clone, Some(Duration::from_secs(2))).unwrap();
    assert_eq!(timeout(orig).unwrap(), Some(Duration::from_secs(2)));
    set_nonblocking(orig, true).unwrap();
    assert_would_block(|| wait(clone));
    set_nonblocking(clone, false).unwrap();
    set_timeout(clone, Some(ms(30))).unwrap();
    assert_times_out(ms(30), || wait(orig));
    set_timeout(orig, None).unwrap();
    assert_eq!(timeout(clone).unwrap(), None);
}

/// A listener's clone shares its non-blocking mode: with it set on `orig`, `accept` on `clone`
/// says `WouldBlock` (a connection `connect` makes after 2 s bounds a failing case); cleared
/// on `clone`, `accept` on `orig` waits for a connection `connect` makes after 20 ms.
fn check_shared_nonblocking_accept<T>(
    orig: &T,
    clone: &T,
    set_nonblocking: impl Fn(&T, bool) -> io::Result<()>,
    accept: impl Fn(&T) -> io::Result<()>,
    connect: impl Fn() + Send + Clone + 'static,
) {
    set_nonblocking(orig, true).unwrap();
    let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
    let c = connect.clone();
    let watchdog = std::thread::spawn(move || {
        if cancelled.recv_timeout(Duration::from_secs(2)).is_err() {
            c();
        }
    });
    let r = accept(clone);
    cancel.send(()).unwrap();
    watchdog.join().unwrap();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::WouldBlock);
    set_nonblocking(clone, false).unwrap();
    let late = std::thread::spawn(move || {
        std::thread::sleep(ms(20));
        connect();
    });
    accept(orig).unwrap();
    late.join().unwrap();
}

#[test]
fn net_try_clone_shares_timeouts_and_nonblocking_mode() {
    on_thread_and_greenlet(|| {
        let mut buf = [0u8; 8];
        let (c, s) = tcp_pair();
        let c2 = c.try_clone().unwrap();
        check_shared_settings(
            &c,
            &c2,
            TcpStream::set_read_timeout,
            TcpStream::read_timeout,
            TcpStream::set_nonblocking,
            |s| (&*s).read(&mut [0u8; 8]),
        );
        // Write timeouts too.
        c2.set_write_timeout(Some(ms(70))).unwrap();
        assert_eq!(c.write_timeout().unwrap(), Some(ms(70)));
        drop(c2);
        (&s).write_all(b"x").unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        assert_eq!(
            (&c).read(&mut buf).unwrap(),
            1,
            "the original after the clone's drop"
        );

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u2 = u.try_clone().unwrap();
        check_shared_settings(
            &u,
            &u2,
            UdpSocket::set_read_timeout,
            UdpSocket::read_timeout,
            UdpSocket::set_nonblocking,
            |s| s.recv(&mut [0u8; 8]),
        );

        let (a, _b) = UnixStream::pair().unwrap();
        let a2 = a.try_clone().unwrap();
        check_shared_settings(
            &a,
            &a2,
            UnixStream::set_read_timeout,
            UnixStream::read_timeout,
            UnixStream::set_nonblocking,
            |s| (&*s).read(&mut [0u8; 8]),
        );

        let (d, _e) = UnixDatagram::pair().unwrap();
        let d2 = d.try_clone().unwrap();
        check_shared_settings(
            &d,
            &d2,
            UnixDatagram::set_read_timeout,
            UnixDatagram::read_timeout,
            UnixDatagram::set_nonblocking,
            |s| s.recv(&mut [0u8; 8]),
        );

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let l2 = l.try_clone().unwrap();
        check_shared_nonblocking_accept(
            &l,
            &l2,
            TcpListener::set_nonblocking,
            |l| l.accept().map(drop),
            move || drop(std::net::TcpStream::connect(addr)),
        );

        let path = TempPath::new("clone");
        let ul = UnixListener::bind(path.path()).unwrap();
        let ul2 = ul.try_clone().unwrap();
        let p = path.path().to_path_buf();
        check_shared_nonblocking_accept(
            &ul,
            &ul2,
            UnixListener::set_nonblocking,
            |l| l.accept().map(drop),
            move || drop(std::os::unix::net::UnixStream::connect(&p)),
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Name resolution.

#[test]
fn net_names_resolve_from_greenlets_and_threads() {
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let port = l.local_addr().unwrap().port();
    on_thread_and_greenlet(move || {
        let by_tuple = TcpStream::connect(("localhost", port)).unwrap();
        let by_text = TcpStream::connect(format!("localhost:{port}")).unwrap();
        for c in [by_tuple, by_text] {
            assert_eq!(c.peer_addr().unwrap(), l.local_addr().unwrap());
            let (s, from) = l.accept().unwrap();
            assert_eq!(from, c.local_addr().unwrap());
            assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
        }
        let u = UdpSocket::bind("localhost:0").unwrap();
        u.set_read_timeout(Some(LIMIT)).unwrap();
        let u_port = u.local_addr().unwrap().port();
        let v = UdpSocket::bind(("localhost", 0)).unwrap();
        v.send_to(b"named", ("localhost", u_port)).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"named"[..], v.local_addr().unwrap()));
    });
}

/// An address whose resolution blocks its thread until another greenlet opens the gate.
struct GatedAddr {
    target: SocketAddr,
    started: Arc<AtomicBool>,
    go: Arc<AtomicBool>,
}

impl ToSocketAddrs for GatedAddr {
    type Iter = std::option::IntoIter<SocketAddr>;
    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        self.started.store(true, SeqCst);
        let t = Instant::now();
        while !self.go.load(SeqCst) {
            if t.elapsed() > LIMIT {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    "the gate never opened: the resolution held the only worker",
                ));
            }
            std::thread::sleep(ms(1));
        }
        Ok(Some(self.target).into_iter())
    }
}

#[test]
fn net_name_resolution_does_not_hold_the_worker() {
    const NAME: &str = "net_name_resolution_does_not_hold_the_worker";
    if common::role().is_none() {
        let out = common::run_child(
            NAME,
            "resolver",
            &[("GROVE_WORKERS", "1"), ("GROVE_MAX_BLOCKING_MS", "0")],
        );
        assert!(out.status.success(), "{}", common::stderr(&out));
        return;
    }
    // One worker: the greenlet opening the gate runs only if the resolving one let it go.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    let addr = GatedAddr {
        target,
        started: started.clone(),
        go: go.clone(),
    };
    let resolving = grove::spawn(move || TcpStream::connect(addr).map(|s| s.peer_addr()));
    let opener = grove::spawn(move || {
        let t = Instant::now();
        while !started.load(SeqCst) && t.elapsed() < LIMIT {
            grove::sleep(ms(1));
        }
        go.store(true, SeqCst);
    });
    let peer = resolving.join().unwrap().unwrap().unwrap();
    assert_eq!(peer, target);
    opener.join().unwrap();
    l.accept().unwrap();
}

#[test]
fn net_udp_recv_after_a_refused_send_waits_out_its_timeout_without_spinning() {
    if !common::in_a_process_of_its_own(
        "net_udp_recv_after_a_refused_send_waits_out_its_timeout_without_spinning",
    ) {
        return;
    }
    // After one ICMP "port unreachable" (returned once as ConnectionRefused, as std does), the
    // error bit stayed set: every later recv with nothing queued spun at 100% CPU and never
    // saw its timeout.
    on_thread_and_greenlet(|| {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(closed).unwrap();
        s.set_read_timeout(Some(ms(50))).unwrap();
        let mut buf = [0u8; 16];
        let _ = s.recv(&mut buf); // registers with the poller (times out)
        s.send(b"x").unwrap();
        grove::sleep(ms(20));
        assert_eq!(
            s.recv(&mut buf).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
        s.set_read_timeout(Some(ms(150))).unwrap();
        let cpu = common::cpu_time();
        let t = std::time::Instant::now();
        let r = s.recv(&mut buf);
        assert!(t.elapsed() < LIMIT, "recv never returned: {r:?}");
        assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
        let spent = common::cpu_time() - cpu;
        assert!(
            spent < ms(100),
            "{spent:?} of CPU to wait {:?}",
            t.elapsed()
        );
    });
}

#[test]
fn net_udp_recv_on_a_socket_shut_for_reading_answers_as_std_does() {
    // A connected UDP socket shut for reading (through socket2: std has no UDP shutdown):
    // std's recv and peek give `Ok(0)` at once; grove's parked until the timeout (for ever
    // without one).
    on_thread_and_greenlet(|| {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std_sock.connect(peer.local_addr().unwrap()).unwrap();
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(peer.local_addr().unwrap()).unwrap();
        for fd in [std_sock.as_raw_fd(), s.as_raw_fd()] {
            // SAFETY: `fd` is open for the call; the borrowed view does not close it.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            socket2::SockRef::from(&fd)
                .shutdown(std::net::Shutdown::Read)
                .unwrap();
        }
        let t = Instant::now();
        let mut buf = [0u8; 8];
        assert_eq!(std_sock.recv(&mut buf).unwrap(), 0, "std changed");
        assert_eq!(s.recv(&mut buf).unwrap(), 0);
        assert_eq!(s.peek(&mut buf).unwrap(), 0);
        // (std's own recv_from there fails on the empty sender address the kernel gives:
        // `InvalidInput`, or, in some runs, an assertion inside std.)
        assert_eq!(
            s.recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            s.peek_from(&mut buf).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert!(t.elapsed() < LIMIT, "{:?}", t.elapsed());
    });
}
