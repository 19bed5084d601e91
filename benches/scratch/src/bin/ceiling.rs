//! The ceiling of the HTTP hello-world bench on this machine: the least a keep-alive server can
//! do per request, with no runtime, no parsing and no library. One thread, one epoll set, the
//! listener and every connection registered level-triggered, and a fixed 125-byte response
//! (the shape of the bench's, with a frozen `Date`) sent once per `\r\n\r\n` read.
//!
//!     target/release/ceiling PORT spin     # epoll_wait(0), sched_yield when nothing is ready
//!     target/release/ceiling PORT block    # epoll_wait(-1): sleeps when nothing is ready
//!
//! Against it, `wrk -t1 -c256 -d5s http://127.0.0.1:PORT/` measures what wrk itself can ask
//! for at the time: `spin` keeps wrk's core to wrk (the server never sleeps, so a wake-up never
//! lands on wrk's CPU), `block` shows the cost of sleeping. Loopback only; stop it by its PID.

use std::io;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 07 Dec 2026 \
21:55:10 GMT\r\nServer: x\r\nContent-Length: 12\r\n\r\nHello World!";

fn check(r: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(r)
}

/// A non-blocking listener on 127.0.0.1:`port`, backlog 1024.
fn listen(port: u16) -> io::Result<libc::c_int> {
    // SAFETY: plain socket calls on a descriptor this function owns; `addr` and `one` outlive
    // the calls that read them.
    unsafe {
        let fd = check(
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
            "socket",
        )?;
        let one: libc::c_int = 1;
        let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        let one_ptr = &one as *const libc::c_int as *const libc::c_void;
        check(
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, one_ptr, size),
            "SO_REUSEADDR",
        )?;
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        check(
            libc::bind(fd, &addr as *const libc::sockaddr_in as *const libc::sockaddr, len),
            "bind",
        )?;
        check(libc::listen(fd, 1024), "listen")?;
        Ok(fd)
    }
}

/// Registers `fd` for readability (level-triggered), its descriptor as the token.
fn watch(ep: libc::c_int, fd: libc::c_int) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid event for the call's duration.
    check(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) },
        "epoll_ctl",
    )?;
    Ok(())
}

/// Accepts every pending connection, with TCP_NODELAY, and watches it.
fn accept_all(ep: libc::c_int, listener: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: a null address is allowed (the peer's address is not wanted).
        let c = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK,
            )
        };
        if c < 0 {
            return Ok(()); // EAGAIN: none left (or a transient error: the next event retries)
        }
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call; `c` is the descriptor just accepted.
        unsafe {
            libc::setsockopt(
                c,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        watch(ep, c)?;
    }
}

/// Reads what `fd` has and answers each complete request head in it; closes it at EOF or error.
fn serve(fd: libc::c_int, buf: &mut [u8]) {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n <= 0 {
        // SAFETY: the connection is ours; closing drops its epoll registration too.
        unsafe { libc::close(fd) };
        return;
    }
    let heads = buf[..n as usize].windows(4).filter(|w| w == b"\r\n\r\n").count();
    for _ in 0..heads {
        // SAFETY: RESPONSE is readable for its length.
        unsafe {
            libc::send(
                fd,
                RESPONSE.as_ptr() as *const libc::c_void,
                RESPONSE.len(),
                0,
            )
        };
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (port, spin) = match args.as_slice() {
        [_, port, mode] if mode == "spin" || mode == "block" => (
            port.parse::<u16>()
                .map_err(|e| io::Error::other(format!("bad port {port:?}: {e}")))?,
            mode == "spin",
        ),
        _ => return Err(io::Error::other("usage: ceiling PORT spin|block")),
    };
    let listener = listen(port)?;
    // SAFETY: no pointer arguments.
    let ep = check(unsafe { libc::epoll_create1(0) }, "epoll_create1")?;
    watch(ep, listener)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 4096];
    loop {
        let timeout = if spin { 0 } else { -1 };
        // SAFETY: `events` is writable for the count passed.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, timeout) };
        if n <= 0 {
            if spin {
                std::thread::yield_now();
            }
            continue; // nothing ready, or EINTR
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as libc::c_int;
            if fd == listener {
                accept_all(ep, listener)?;
            } else {
                serve(fd, &mut buf);
            }
        }
    }
}
