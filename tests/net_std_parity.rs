//! grove's sockets against std's API: Unix sockets over temp paths (accept, `incoming`, the
//! `*_addr` methods, datagrams, a connect to a full backlog), conversions to and from std types
//! and raw fds, `peek`, `TcpListener::incoming`, socket options, write timeouts, the settings
//! `try_clone` shares, and name resolution off the workers. Each case runs in a greenlet and on
//! a plain thread where both make sense. Loopback only; every wait is bounded.

mod common;

use common::{ms, on_thread_and_greenlet, Worker};
use grove::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bound on every wait that should end.
const LIMIT: Duration = Duration::from_secs(5);

/// A socket path under the temp dir, unique to this process and call; removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "grove-parity-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        );
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `f` in a new greenlet when called from one, else on a new thread.
fn spawn_alike<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Worker<T> {
    Worker::spawn(grove::current().is_some(), f)
}

/// Asserts that `op` fails with `kind` after waiting about `timeout` (and not much longer).
fn assert_times_out<T: std::fmt::Debug>(timeout: Duration, op: impl FnOnce() -> io::Result<T>) {
    let t = Instant::now();
    let r = op();
    let took = t.elapsed();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(
        took >= timeout * 3 / 4,
        "timed out after {took:?}, before {timeout:?}"
    );
    assert!(took < LIMIT, "timed out after {took:?}");
}

/// Asserts that `op` fails at once with `WouldBlock` (non-blocking mode).
fn assert_would_block<T: std::fmt::Debug>(op: impl FnOnce() -> io::Result<T>) {
    let t = Instant::now();
    let r = op();
    assert_eq!(r.unwrap_err().kind(), ErrorKind::WouldBlock);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

/// The address `fd` is bound to, read without taking the fd over.
fn fd_local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: `fd` is an open socket the caller owns; ManuallyDrop never closes it.
    let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    s.local_addr()
}

/// True if `fd` is in non-blocking mode.
fn fd_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL reads the flags of `fd`; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    assert!(flags >= 0, "fd {fd} is not open");
    flags & libc::O_NONBLOCK != 0
}

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
        assert!(u.read_timeout().unwrap().is_none());
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
