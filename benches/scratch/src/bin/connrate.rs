//! Loopback TCP connection set-up and teardown with std alone (docs/benchmarks.md, twelfth
//! session): a server thread answers one request per connection and shuts its side first, as
//! grove's HTTP server does without keep-alive; the client connects, sends, reads to the close
//! and closes, N times, printing µs per connection (and in `connect`) every 10,000.
//! `connrate K N` binds the client to K source addresses in turn (127.0.0.2 on,
//! `IP_BIND_ADDRESS_NO_PORT`), to rule the ephemeral-port search in or out; `K = 0` does not.
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (sources, n) = (arg(1, 0), arg(2, 60_000));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || loop {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        let _ = s.write(b"HTTP/1.0 200 OK\r\n\r\nhi");
        let _ = s.shutdown(Shutdown::Write);
    });
    let (mut in_connect, mut window) = (0u128, Instant::now());
    for i in 0..n {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        if sources > 0 {
            let one: libc::c_int = 1;
            // SAFETY: a valid socket and a c_int option value of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "connrate: IP_BIND_ADDRESS_NO_PORT");
            let src: SocketAddr = format!("127.0.0.{}:0", 2 + i % sources).parse().unwrap();
            s.bind(&src.into()).unwrap();
        }
        let t = Instant::now();
        s.connect(&addr.into()).unwrap();
        in_connect += t.elapsed().as_nanos();
        let mut s: TcpStream = s.into();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        s.read_to_end(&mut Vec::new()).unwrap();
        if (i + 1) % 10_000 == 0 {
            let per = |ns: f64| ns / 10_000e3;
            println!(
                "{:.1} us per connection, {:.1} in connect",
                per(window.elapsed().as_nanos() as f64),
                per(in_connect as f64)
            );
            (in_connect, window) = (0, Instant::now());
        }
    }
}
