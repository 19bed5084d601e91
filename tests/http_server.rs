//! The HTTP/1.1 server, driven by a plain std `TcpStream` over loopback.

use grove::net::http::{Response, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start(server: Server) -> (SocketAddr, grove::net::ServerHandle) {
    let addr = server.local_addr().unwrap();
    (addr, server.start())
}

fn echo_server() -> (SocketAddr, grove::net::ServerHandle) {
    echo_server_with_header_timeout(Duration::from_millis(300))
}

fn echo_server_with_header_timeout(
    header_timeout: Duration,
) -> (SocketAddr, grove::net::ServerHandle) {
    start(
        Server::bind("127.0.0.1:0", |req| {
            if req.path() == "/panic" {
                panic!("handler blew up");
            }
            if req.path() == "/stream" {
                return Response::new(200).stream((0..3).map(|i| format!("part{i};").into_bytes()));
            }
            let body = format!(
                "{} {} q={} len={} body={}",
                req.method(),
                req.path(),
                req.query().unwrap_or("-"),
                req.body().len(),
                String::from_utf8_lossy(req.body())
            );
            Response::text(body).header("X-Test", "yes")
        })
        .unwrap()
        .max_header_bytes(1024)
        .max_body_bytes(1000)
        .header_timeout(header_timeout),
    )
}

/// Polls `cond` until it holds; fails after 10 s (a loaded machine can stall for seconds).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one response (head + Content-Length body, or chunked, or to EOF).
fn read_response(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "connection closed mid-head: {buf:?}"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let mut b = vec![0u8; len.parse().unwrap()];
        s.read_exact(&mut b).unwrap();
        b
    } else if get("transfer-encoding").as_deref() == Some("chunked") {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let n =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
                    .unwrap();
            let mut chunk = vec![0u8; n + 2];
            s.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body
    } else {
        Vec::new()
    };
    (status, headers, body)
}

fn header<'a>(h: &'a [(String, String)], n: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
}

#[test]
fn http_keep_alive_and_standard_headers() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    for i in 0..3 {
        write!(s, "GET /hello/{i}?x=1 HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (status, h, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(body, format!("GET /hello/{i} q=x=1 len=0 body=").as_bytes());
        assert_eq!(header(&h, "server"), Some("grove"));
        assert!(header(&h, "date").unwrap().ends_with("GMT"));
        assert_eq!(header(&h, "x-test"), Some("yes"));
        assert_eq!(header(&h, "connection"), None);
    }
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_pipelined_requests_are_answered_in_order() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    let mut burst = String::new();
    for i in 0..10 {
        burst.push_str(&format!("GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    s.write_all(burst.as_bytes()).unwrap();
    for i in 0..10 {
        let (status, _, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert!(body.starts_with(format!("GET /p{i} ").as_bytes()));
    }
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_bodies_by_length_and_chunked_and_100_continue() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    s.write_all(b"POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    assert!(read_response(&mut s).2.ends_with(b"len=5 body=hello"));
    s.write_all(b"POST /chunk HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n").unwrap();
    assert!(read_response(&mut s).2.ends_with(b"len=7 body=abcdefg"));
    s.write_all(
        b"POST /cont HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let (status, _, _) = read_response(&mut s);
    assert_eq!(status, 100);
    s.write_all(b"ok").unwrap();
    assert!(read_response(&mut s).2.ends_with(b"len=2 body=ok"));
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_streamed_response_is_chunked_and_head_has_no_body() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (status, h, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"));
    assert_eq!(body, b"part0;part1;part2;");
    s.write_all(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("Content-Length: "), "{head}");
    // No body follows: the next response starts right away.
    s.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut s).2.starts_with(b"GET /after"));
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    s.write_all(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
    let (status, h, _) = read_response(&mut s);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "connection"), Some("close"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let mut s = connect(addr);
    s.write_all(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let (_, h, _) = read_response(&mut s);
    assert_eq!(header(&h, "connection"), Some("keep-alive"));
    s.write_all(b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    server.stop(Duration::from_secs(1));
}

/// A closing response goes out whole even when the client sent more than the request: unread
/// input turns the close into a reset, which must not swallow the reply's tail (held back to
/// go with the FIN, so the FIN must go before the close).
#[test]
fn http_closing_response_arrives_whole_despite_unread_input() {
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", |_req| {
            grove::sleep(Duration::from_millis(50)); // let all the extra input arrive first
            Response::text("x".repeat(3000))
        })
        .unwrap(),
    );
    for _ in 0..3 {
        let mut s = connect(addr);
        let mut out = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        out.extend(std::iter::repeat_n(b'\n', 32 * 1024)); // the stray extra input
        s.write_all(&out).unwrap();
        let (status, h, body) = read_response(&mut s);
        assert_eq!(status, 200);
        assert_eq!(header(&h, "connection"), Some("close"));
        assert_eq!(body, "x".repeat(3000).as_bytes());
    }
    server.stop(Duration::from_secs(1));
}

/// A client that uploads a body over the limit, all of it, before reading the reply (as many
/// do) still gets its 413: the server reads the rest away before it closes, instead of
/// resetting the connection under the client's writes.
#[test]
fn http_error_reply_reaches_a_client_that_sends_its_whole_body_first() {
    let (addr, server) = echo_server(); // max_body_bytes(1000)
    let mut s = connect(addr);
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body)
        .expect("the server reset the connection under the upload");
    let (status, h, _) = read_response(&mut s);
    assert_eq!(status, 413);
    assert_eq!(header(&h, "connection"), Some("close"));
    drop(s);
    server.stop(Duration::from_secs(1));
}

fn status_of(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut s = connect(addr);
    s.write_all(raw).unwrap();
    let (status, h, _) = read_response(&mut s);
    assert_eq!(
        header(&h, "connection"),
        Some("close"),
        "bad input must close"
    );
    status
}

#[test]
fn http_bad_input_gets_the_right_status_and_the_server_goes_on() {
    let (addr, server) = echo_server();
    assert_eq!(status_of(addr, b"NOT A REQUEST\r\n\r\n"), 400);
    assert_eq!(
        status_of(addr, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"),
        400
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(status_of(addr, big.as_bytes()), 431);
    assert_eq!(
        status_of(
            addr,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
        ),
        413
    );
    assert_eq!(
        status_of(
            addr,
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"
        ),
        501
    );
    assert_eq!(
        status_of(
            addr,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n"
        ),
        400
    );
    assert_eq!(
        status_of(
            addr,
            b"GET /panic HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ),
        500
    );
    // Still serving.
    let mut s = connect(addr);
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_handler_panic_gets_500_and_keeps_the_connection() {
    let (addr, server) = echo_server();
    let mut s = connect(addr);
    s.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 500);
    s.write_all(b"GET /fine HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_stalled_clients_do_not_delay_others_and_time_out() {
    // A head timeout of 5 s: a server that served the stalled ones first would answer the quick
    // one only after it, far beyond the bound below (which leaves room for a loaded machine).
    let (addr, server) = echo_server_with_header_timeout(Duration::from_secs(5));
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /half HTTP/1.1\r\nHost: ").unwrap();
            s
        })
        .collect();
    let t = Instant::now();
    let mut s = connect(addr);
    s.write_all(b"GET /quick HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        t.elapsed()
    );
    drop(stalled);
    server.stop(Duration::from_secs(1));
    // A stalled one gets 408 once the head timeout (300 ms here) passes.
    let (addr, server) = echo_server();
    let mut first = connect(addr);
    first.write_all(b"GET /half HTTP/1.1\r\nHost: ").unwrap();
    let (status, _, _) = read_response(&mut first);
    assert_eq!(status, 408);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_max_connections_bounds_handlers() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", move |_req| {
            let now = r.fetch_add(1, SeqCst) + 1;
            p.fetch_max(now, SeqCst);
            grove::sleep(Duration::from_millis(10));
            r.fetch_sub(1, SeqCst);
            Response::text("ok")
        })
        .unwrap()
        .max_connections(4),
    );
    let clients: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .unwrap();
                read_response(&mut s).0
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert!(peak.load(SeqCst) <= 4, "peak {}", peak.load(SeqCst));
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_serve_forever_serves_from_a_plain_thread_and_headers_lists_them_in_order() {
    let server = Server::bind("127.0.0.1:0", |req| {
        let listed: Vec<String> = req
            .headers()
            .filter(|(name, _)| name.to_ascii_lowercase().starts_with("x-"))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        Response::text(listed.join(","))
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    // serve_forever blocks its caller for good: a plain thread the test leaves behind.
    std::thread::spawn(move || server.serve_forever());
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-One: 1\r\nX-Two: second\r\nX-One: again\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "X-One=1,X-Two=second,X-One=again"
    );
}

#[test]
fn http_stop_kills_a_busy_handler_instead_of_answering_500() {
    // The handler's panic guard caught the kill `stop` sent (the kill flag is consumed when
    // delivered): the client got a 500, the keep-alive connection went on, and `stop` waited
    // for the idle timeout.
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", |req| {
            if req.path() == "/slow" {
                grove::sleep(Duration::from_secs(3600));
            }
            Response::text("ok")
        })
        .unwrap()
        .idle_timeout(Duration::from_secs(30)),
    );
    let mut s = connect(addr);
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.stop(Duration::from_millis(100));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest); // EOF or a reset: either way, no answer
    assert!(
        !String::from_utf8_lossy(&rest).contains("500"),
        "the killed handler was answered as a panic: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn http_stop_from_a_handler_stops_the_others_and_answers() {
    // A `/shutdown` endpoint: `stop` called from one of the server's own handlers waited out
    // its grace for itself, then killed itself.
    let handle = Arc::new(std::sync::OnceLock::<grove::net::ServerHandle>::new());
    let h = handle.clone();
    let server = Server::bind("127.0.0.1:0", move |req| {
        if req.path() == "/shutdown" {
            let t = Instant::now();
            h.get().unwrap().stop(Duration::from_secs(3));
            return Response::text(format!("stopped in {} ms", t.elapsed().as_millis()));
        }
        Response::text("ok")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    assert!(handle.set(server.start()).is_ok());
    let mut s = connect(addr);
    s.write_all(b"GET /shutdown HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 200);
    let ms: u64 = String::from_utf8_lossy(&body)
        .trim_start_matches("stopped in ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms < 1000, "stop from a handler took {ms} ms");
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
}

#[test]
fn http_two_handlers_stopping_the_server_together_are_both_answered() {
    // Each `stop` left out only its own caller: two `/shutdown` requests at once each waited
    // out the grace for the other, then killed it; neither client got an answer.
    let handle = Arc::new(std::sync::OnceLock::<grove::net::ServerHandle>::new());
    let h = handle.clone();
    let server = Server::bind("127.0.0.1:0", move |req| {
        if req.path() == "/shutdown" {
            h.get().unwrap().stop(Duration::from_secs(5));
            return Response::text("stopped");
        }
        Response::text("ok")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    assert!(handle.set(server.start()).is_ok());
    let (mut a, mut b) = (connect(addr), connect(addr));
    let t = Instant::now();
    for s in [&mut a, &mut b] {
        s.write_all(b"GET /shutdown HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    assert_eq!(read_response(&mut a).0, 200);
    assert_eq!(read_response(&mut b).0, 200);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn http_stop_closes_idle_keep_alive_connections_at_once() {
    // One idle keep-alive connection held `stop` for its whole grace (Go's Shutdown closes
    // idle connections at once); a request in progress is answered, with `Connection: close`.
    let in_handler = Arc::new(AtomicUsize::new(0));
    let h = in_handler.clone();
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", move |req| {
            if req.path() == "/slow" {
                h.fetch_add(1, SeqCst);
                grove::sleep(Duration::from_millis(300));
            }
            Response::text("ok")
        })
        .unwrap(),
    );
    let mut idle = connect(addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200); // now idle, kept alive
    let mut busy = connect(addr);
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    wait_until("the slow request to reach its handler", || {
        in_handler.load(SeqCst) == 1
    });
    let t = Instant::now();
    server.stop(Duration::from_secs(5));
    let took = t.elapsed();
    let (status, headers, _) = read_response(&mut busy);
    assert_eq!(status, 200, "the request in progress was not answered");
    assert_eq!(header(&headers, "connection"), Some("close"));
    // Held for the whole grace, it would take 5 s.
    assert!(took < Duration::from_secs(4), "stop took {took:?}");
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap_or(0), 0, "{rest:?}");
}

#[test]
fn http_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    // No write timeout: a client that never read a large response held its connection (and
    // the response's memory) for ever.
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", |_| {
            Response::new(200).body(vec![b'x'; 32 << 20])
        })
        .unwrap()
        .write_timeout(Duration::from_millis(200)),
    );
    // A small receive window, so the response cannot all sit in the kernel's buffers.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut head = [0u8; 64];
    s.read_exact(&mut head).unwrap(); // the response has begun: the handler is writing
    let t = Instant::now();
    while server.connections() > 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        server.connections(),
        0,
        "the stalled connection is still served"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    drop(s);
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_stop_lets_a_request_in_progress_and_a_fresh_connection_finish() {
    // A connection counted as idle for the whole of reading a request, head and body, and a
    // fresh connection before its first byte: `stop` closed them unanswered, though its grace
    // would have allowed the request.
    for (first, rest) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n"[..], &b"\r\n"[..]),
        (
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"[..],
            &b"67890"[..],
        ),
        (&b""[..], &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
    ] {
        let (addr, server) = start(
            Server::bind("127.0.0.1:0", |req| {
                Response::text(format!("got {}", req.body().len()))
            })
            .unwrap(),
        );
        let mut c = connect(addr);
        c.write_all(first).unwrap();
        wait_until("the connection to be accepted", || {
            server.connections() == 1
        });
        std::thread::sleep(Duration::from_millis(100)); // the server has (most likely) read it
        let stopper = std::thread::spawn(move || server.stop(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(100));
        c.write_all(rest).unwrap();
        let (status, headers, _) = read_response(&mut c);
        assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(first));
        assert_eq!(header(&headers, "connection"), Some("close"));
        stopper.join().unwrap();
    }
}

#[test]
fn http_handler_that_re_raises_a_childs_kill_gets_500() {
    // A `Killed` payload the handler did not get from the runtime (a killed child's, re-raised
    // by `Pool::map` or `resume_unwind`) is the handler's panic: it was taken for a kill of the
    // connection, which closed unanswered.
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", |req| {
            if req.path() == "/rekill" {
                let child = grove::spawn(|| grove::sleep(Duration::from_secs(10)));
                child.kill();
                std::panic::resume_unwind(child.join().unwrap_err());
            }
            Response::text("ok")
        })
        .unwrap(),
    );
    let mut s = connect(addr);
    s.write_all(b"GET /rekill HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 500);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).0, 200, "the connection went on");
    server.stop(Duration::from_secs(1));
}

#[test]
fn http_a_handler_answers_with_text_borrowed_from_its_request() {
    // `Response::text` and `.header` took only `'static` or owned strings, so the obvious
    // echo handler did not compile (the contract's `Response::text(body)` has no such limit).
    let (addr, handle) = start(
        Server::bind("127.0.0.1:0", |req| {
            Response::text(req.path())
                .header("X-Path", req.path())
                .header(String::from("X-Owned"), req.method().to_string().as_str())
        })
        .unwrap(),
    );
    let mut s = connect(addr);
    s.write_all(b"GET /echo/me HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, headers, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert_eq!(body, b"/echo/me");
    assert_eq!(header(&headers, "x-path"), Some("/echo/me"));
    assert_eq!(header(&headers, "x-owned"), Some("GET"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_an_empty_line_after_a_body_leaves_the_connection_idle() {
    // RFC 9112 2.2: a server ignores empty lines before a request line (old clients send a CRLF
    // after a POST body). Left buffered, it made the connection look mid-request: a 408 after
    // the head timeout instead of idling, and `stop` waited out its grace for it.
    let (addr, server) = echo_server(); // 300 ms head timeout
    let mut s = connect(addr);
    s.write_all(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    s.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut more = [0u8; 64];
    match s.read(&mut more) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {} // silence: idle, as it should
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!(
            "an idle connection got {other:?}: {:?}",
            String::from_utf8_lossy(&more)
        ),
    }
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).0, 200);
    // Idle again: `stop` closes it at once rather than wait out the grace.
    let t = Instant::now();
    server.stop(Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn http_1_0_streamed_body_arrives_whole_despite_input_sent_after_its_request() {
    // HTTP/1.0 has no chunked encoding: a streamed body ends with the connection. The close
    // came right after the last write, with the client's later input unread, which made it a
    // reset that threw away the end of the body still in flight (5-6.5 MB of 8 MB arrived).
    let (addr, server) = start(
        Server::bind("127.0.0.1:0", |_req| {
            Response::new(200).stream((0..128).map(|_| vec![b'y'; 64 << 10]))
        })
        .unwrap(),
    );
    let mut s = connect(addr);
    s.write_all(b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap(); // while the body is on its way
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(r.is_ok(), "{r:?} after {} bytes", got.len());
    assert!(got.len() > 128 * (64 << 10), "{} bytes", got.len());
    assert!(got.ends_with(&[b'y'; 16]));
    server.stop(Duration::from_secs(1));
}
