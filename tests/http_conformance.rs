//! The HTTP/1.1 server against RFC 9110/9112's rules on framing, hosts, connection tokens and
//! response headers, where a lenient reading lets requests be smuggled or responses be split.
//! Raw bytes over a std `TcpStream`; each exchange reads until the server closes or goes quiet.

use grove::net::http::{Response, Server};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

fn server() -> (SocketAddr, grove::net::ServerHandle) {
    let server = Server::bind("127.0.0.1:0", |req| match req.path() {
        // A handler that copies request input into a header: the classic splitting vector.
        "/echo-header" => Response::text("ok").header(
            "X-Val",
            req.query()
                .unwrap_or("")
                .replace("%0d", "\r")
                .replace("%0a", "\n"),
        ),
        "/bad-name" => Response::text("ok")
            .header("Bad\r\nName", "v")
            .header("X-Good", "yes"),
        "/no-content" => {
            Response::new(204).stream((0..2).map(|i| format!("chunk{i}").into_bytes()))
        }
        "/declared" => Response::new(200).header("Content-Length", "1234"),
        "/x-test" => Response::text(req.header("x-test").unwrap_or("-")),
        "/close" => Response::text("bye").header("Connection", "close"),
        "/nul" => Response::text("ok").header("X-Nul", "a\0b"),
        "/status0" => Response::new(0),
        "/status101" => Response::new(101),
        "/big" => Response::new(200).body(vec![b'x'; 1 << 20]),
        path => Response::text(format!(
            "{} {path} body={}",
            req.method(),
            String::from_utf8_lossy(req.body())
        )),
    })
    .unwrap()
    .max_body_bytes(1000)
    .header_timeout(Duration::from_secs(2));
    let addr = server.local_addr().unwrap();
    (addr, server.start())
}

/// Sends `parts` (pausing between them), then reads until the server closes the connection or
/// stays silent for 2 s (room for a stall of a loaded machine); returns what came back.
fn exchange(addr: SocketAddr, parts: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        if s.write_all(p).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The status codes of the responses in `raw`, in order.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.")
        .filter_map(|(i, _)| raw.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[test]
fn http_chunk_size_near_usize_max_is_refused_not_wrapped() {
    let (addr, h) = server();
    let raw = exchange(
        addr,
        &[b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n"],
    );
    assert_eq!(statuses(&raw), [413], "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_ambiguous_framing_is_refused_and_nothing_behind_it_is_served() {
    let (addr, h) = server();
    // Content-Length and Transfer-Encoding together: a proxy using the length would see the
    // "smuggled" request as body; we must not serve it as a request of its own.
    let raw = exchange(
        addr,
        &[b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [400], "{raw}");
    assert!(!raw.contains("/smuggled"), "{raw}");
    // Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1: faulty framing).
    let raw = exchange(
        addr,
        &[b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /next HTTP/1.0\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [400], "{raw}");
    // Two Transfer-Encoding fields combine into a list of codings: never just `chunked`.
    let raw = exchange(
        addr,
        &[b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [501], "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_lengths_and_chunk_sizes_are_digits_only() {
    let (addr, h) = server();
    for bad in [
        &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc"[..],
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n+a\r\n0123456789\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n a\r\n0123456789\r\n0\r\n\r\n",
    ] {
        let raw = exchange(addr, &[bad]);
        assert_eq!(statuses(&raw), [400], "{}: {raw}", String::from_utf8_lossy(bad));
    }
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_chunked_body_may_arrive_split_anywhere() {
    let (addr, h) = server();
    // CR and LF after a chunk's data in two reads; a chunk-size line ending in a bare LF; an
    // extension; trailers after the last chunk.
    let raw = exchange(
        addr,
        &[
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r",
            b"\n4;ext=1\nd",
            b"efg\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ],
    );
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.ends_with("POST /up body=abcdefg"), "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_trailers_are_bounded_like_a_head() {
    let (addr, h) = server();
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-T{i}: vvvvvvvvvvvvvvvv\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let raw = exchange(addr, &[&req]);
    assert_eq!(statuses(&raw), [431], "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_1_1_needs_exactly_one_host() {
    let (addr, h) = server();
    let raw = exchange(addr, &[b"GET /nohost HTTP/1.1\r\n\r\n"]);
    assert_eq!(statuses(&raw), [400], "{raw}");
    let raw = exchange(addr, &[b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"]);
    assert_eq!(statuses(&raw), [400], "{raw}");
    // HTTP/1.0 may leave it out.
    let raw = exchange(addr, &[b"GET /old HTTP/1.0\r\n\r\n"]);
    assert_eq!(statuses(&raw), [200], "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_close_in_any_connection_field_closes() {
    let (addr, h) = server();
    let raw = exchange(
        addr,
        &[b"GET /1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\nConnection: te\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(!raw.contains("GET /2"), "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_handler_headers_cannot_split_the_response() {
    let (addr, h) = server();
    let raw = exchange(
        addr,
        &[b"GET /echo-header?a%0d%0aSet-Cookie:x=1%0d%0a%0d%0aInjected HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(!raw.contains("\r\nSet-Cookie"), "{raw}");
    assert!(
        raw.contains("X-Val: a  Set-Cookie:x=1    Injected\r\n"),
        "{raw}"
    );
    let raw = exchange(
        addr,
        &[b"GET /bad-name HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    );
    assert!(
        !raw.contains("Bad") && raw.contains("X-Good: yes\r\n"),
        "{raw}"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_bodiless_status_sends_no_framing_even_when_streamed() {
    let (addr, h) = server();
    let raw = exchange(addr, &[b"GET /no-content HTTP/1.1\r\nHost: t\r\n\r\nGET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"]);
    assert_eq!(statuses(&raw), [204, 200], "{raw}");
    let (first, _) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        !first.to_ascii_lowercase().contains("transfer-encoding"),
        "{raw}"
    );
    assert!(
        !first.to_ascii_lowercase().contains("content-length"),
        "{raw}"
    );
    assert!(!raw.contains("chunk0"), "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_head_may_declare_the_length_a_get_would_have() {
    let (addr, h) = server();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"HEAD /declared HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.contains("Content-Length: 1234\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\n"), "a body came: {raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_absolute_form_targets_and_other_versions() {
    let (addr, h) = server();
    let raw = exchange(
        addr,
        &[b"GET http://example.com/a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"],
    );
    assert!(raw.ends_with("GET /a/b body="), "{raw}");
    let raw = exchange(
        addr,
        &[b"GET HTTP://example.com HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"],
    );
    assert!(raw.ends_with("GET / body="), "{raw}");
    let raw = exchange(addr, &[b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"]);
    assert_eq!(statuses(&raw), [505], "{raw}");
    let raw = exchange(addr, &[b"NOT A REQUEST\r\n\r\n"]);
    assert_eq!(statuses(&raw), [400], "{raw}");
    // A space in the target ends the line in a version too: malformed, not another version.
    let raw = exchange(addr, &[b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"]);
    assert_eq!(statuses(&raw), [400], "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_header_values_beyond_ascii_that_are_not_utf8_are_read_as_latin1() {
    // obs-text (RFC 9110 5.5) is allowed in a field value; it was refused with 400.
    let (addr, h) = server();
    let raw = exchange(
        addr,
        &[b"GET /x-test HTTP/1.1\r\nHost: t\r\nX-Test: caf\xe9\r\nConnection: close\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.ends_with("caf\u{e9}"), "{raw}");
    let raw = exchange(
        addr,
        &[
            "GET /x-test HTTP/1.1\r\nHost: t\r\nX-Test: caf\u{e9}\r\nConnection: close\r\n\r\n"
                .as_bytes(),
        ],
    );
    assert!(raw.ends_with("caf\u{e9}"), "{raw}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_a_handlers_connection_close_closes_and_bad_statuses_are_500() {
    let (addr, h) = server();
    // Two requests pipelined: the first answer says close, and the second is not served.
    let raw = exchange(
        addr,
        &[b"GET /close HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"],
    );
    assert_eq!(statuses(&raw), [200], "{raw}");
    assert!(raw.contains("Connection: close\r\n"), "{raw}");
    for path in ["/status0", "/status101"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let raw = exchange(addr, &[req.as_bytes()]);
        assert_eq!(statuses(&raw), [500], "{path}: {raw}");
    }
    // NUL is never sent in a field value (RFC 9110 5.5), as CR and LF are not.
    let raw = exchange(
        addr,
        &[b"GET /nul HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    );
    assert!(raw.contains("X-Nul: a b\r\n"), "{raw:?}");
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_long_targets_get_414_and_lax_chunk_syntax_400() {
    let (addr, h) = server();
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000));
    assert_eq!(statuses(&exchange(addr, &[long.as_bytes()])), [414]);
    for body in [
        &b"3;a\rb\r\nabc\r\n0\r\n\r\n"[..],
        b"0\r\nbogus trailer\r\n\r\n",
    ] {
        let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let raw = exchange(addr, &[&req]);
        assert_eq!(statuses(&raw), [400], "{raw}");
    }
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_a_silent_new_connection_is_closed_at_the_head_deadline() {
    // The wait for a fresh connection's first byte used the idle timeout (60 s by default):
    // a few silent clients held `max_connections` slots for a minute.
    let (addr, h) = server(); // head deadline 500 ms
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = std::time::Instant::now();
    let mut b = [0u8; 64];
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "expected the server to close");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_a_long_closing_response_survives_input_sent_after_its_request() {
    // A client that sends more after a `Connection: close` request: closing with that input
    // unread sent a reset, and the part of a long response still in flight was lost.
    let (addr, h) = server();
    let mut s = TcpStream::connect(addr).unwrap();
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(65536)
        .unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("after {} bytes: {e}", got.len()),
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - head_end, 1 << 20);
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_closing_streams_end_at_once_and_te_matches_ascii_only() {
    // A streamed response on a closing connection sent its FIN only after the 2 s linger.
    let server = Server::bind("127.0.0.1:0", |req| match req.path() {
        "/stream" => Response::new(200).stream((0..2).map(|i| format!("c{i}").into_bytes())),
        _ => Response::text(String::from_utf8_lossy(req.body()).into_owned()),
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let h = server.start();
    let t = std::time::Instant::now();
    let raw = exchange(
        addr,
        &[b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"],
    );
    assert!(raw.ends_with("0\r\n\r\n"), "{raw}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // `chunked` followed by a non-ASCII space is not `chunked` (a proxy would not take it so).
    for te in [&b"chunked\xa0"[..], b"chunked\xc2\xa0", b"chunked\x85"] {
        let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ".to_vec();
        req.extend_from_slice(te);
        req.extend_from_slice(b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(statuses(&exchange(addr, &[&req])), [501], "{te:?}");
    }
    h.stop(Duration::from_secs(1));
}
