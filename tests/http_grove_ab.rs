//! grove-ab: against its embedded server, against a URL, and its errors.

use grove::net::http::{Response, Server};
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn grove_ab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_grove-ab"))
        .args(args)
        .env("GROVE_WORKERS", "2")
        .output()
        .expect("run grove-ab")
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))[name.len()..]
        .trim()
}

#[test]
fn http_grove_ab_benchmarks_its_embedded_server() {
    let out = grove_ab(&["-n", "2000", "-c", "20", "-k"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&text, "Complete requests:"), "2000");
    assert_eq!(field(&text, "Failed requests:"), "0");
    assert_eq!(field(&text, "Concurrency Level:"), "20");
    assert_eq!(field(&text, "Document Length:"), "12 bytes");
    assert!(field(&text, "Requests per second:").ends_with("[#/sec] (mean)"));
    // As ab counts them: every response after which the connection stayed open.
    assert_eq!(field(&text, "Keep-Alive requests:"), "2000");
    assert!(text.contains("Percentage of the requests served within a certain time (ms)"));
    assert!(text.contains("100%"));
    assert!(text.contains("Connection Times (ms)"));
    for row in ["Connect:", "Processing:", "Waiting:", "Total:"] {
        assert_eq!(times(&text, row).len(), 5, "{row} in:\n{text}");
    }
    assert!(field(&text, "Time taken for tests:").ends_with("seconds"));
    assert!(field(&text, "Transfer rate:").ends_with("[Kbytes/sec] received"));
}

#[test]
fn http_grove_ab_against_a_url_counts_non_2xx() {
    let server = Server::bind("127.0.0.1:0", |req| {
        if req.path() == "/missing" {
            Response::new(404).body("nope")
        } else {
            Response::text("here")
        }
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let url = format!("http://{addr}/missing");
    let out = grove_ab(&["-n", "300", "-c", "3", "-q", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(field(&text, "Complete requests:"), "300");
    assert_eq!(field(&text, "Non-2xx responses:"), "300");
    assert_eq!(field(&text, "Document Path:"), "/missing");
    // Without keep-alive every request is a new connection; with -t it stops on time.
    let url = format!("http://{addr}/");
    let out = grove_ab(&["-t", "1", "-c", "4", "-q", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(field(&text, "Complete requests:").parse::<u64>().unwrap() > 10);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_grove_ab_errors_are_one_line_and_non_zero() {
    for args in [
        vec!["-x"],
        vec!["-n", "lots"],
        vec!["-c", "10", "-n", "5"],
        vec!["https://127.0.0.1:1/"],
        vec!["http://"],
        vec!["-n", "1", "http://127.0.0.1:1/"],
        vec!["-s", "0", "http://127.0.0.1:1/"],
        vec!["-n", "1", "http://[::1]:1/"],
        vec!["-n", "1", "http://[::1/"],
        // A concurrency beyond ab's limit: it overflowed the client list's capacity (a panic)
        // or spawned clients until memory ran out.
        vec!["-n", "18446744073709551615", "-c", "18446744073709551615"],
        vec![
            "-n",
            "3000000000",
            "-c",
            "3000000000",
            "http://127.0.0.1:1/",
        ],
        vec!["-n", "30000", "-c", "20001", "http://127.0.0.1:1/"],
    ] {
        let out = grove_ab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.starts_with("grove-ab: ") || err.starts_with("usage:"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    }
    // The message names the flag at fault, not what it later broke.
    let out = grove_ab(&["-s", "0", "http://127.0.0.1:1/"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-s"));
}

/// A row of the "Connection Times (ms)" table: min, mean, sd, median, max.
fn times(out: &str, row: &str) -> Vec<f64> {
    field(out, row)
        .split_whitespace()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{row} {v:?} in:\n{out}"))
        })
        .collect()
}

#[test]
fn http_grove_ab_connection_times_show_where_a_slow_handler_spends() {
    // 400 ms: far above what a connect over loopback takes, even on a loaded machine that
    // preempts the client between a connect and its timestamp.
    let server = Server::bind("127.0.0.1:0", |_req| {
        grove::sleep(Duration::from_millis(400));
        Response::text("slow")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let text = report(&["-n", "8", "-c", "2", "-k", &format!("http://{addr}/")]);
    let (connect, waiting) = (times(&text, "Connect:"), times(&text, "Waiting:"));
    let (processing, total) = (times(&text, "Processing:"), times(&text, "Total:"));
    // The handler's 400 ms are all waiting for the first byte; connecting over loopback is not.
    // (The median, not the minimum: a client preempted between its write and the timestamp
    // after it, with four workers on two cores, measures a shorter wait: 38 of 40 ms once in
    // CI.)
    assert!(waiting[3] >= 390.0, "{text}");
    assert!(
        processing[0] >= waiting[0] && total[0] >= processing[0],
        "{text}"
    );
    assert!(connect[4] < 300.0 && connect[0] == 0.0, "{text}");
    assert!(total[4] >= 390.0, "{text}");
    handle.stop(Duration::from_secs(1));
}

/// Runs grove-ab, which must succeed, and returns its report.
fn report(args: &[&str]) -> String {
    let out = grove_ab(args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A loopback listener on a plain thread that hands each connection it accepts, in blocking
/// mode, to `on_conn`, for at most `hold` (then the thread ends, dropping what it kept).
fn accept_for(
    hold: Duration,
    mut on_conn: impl FnMut(std::net::TcpStream) + Send + 'static,
) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + hold;
        while std::time::Instant::now() < end {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    on_conn(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    addr
}

/// A loopback listener that accepts and holds connections without ever answering, for at most
/// `hold` (then the thread ends and drops them).
fn stalled_server(hold: Duration) -> std::net::SocketAddr {
    let mut held = Vec::new();
    accept_for(hold, move |s| held.push(s))
}

#[test]
fn http_grove_ab_sends_the_method_headers_and_body_it_is_given() {
    type Seen = (String, Option<String>, Option<String>, Vec<u8>, Vec<String>);
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>> = Default::default();
    let record = seen.clone();
    let server = Server::bind("127.0.0.1:0", move |req| {
        record.lock().unwrap().push((
            req.method().to_string(),
            req.header("x-grove-test").map(str::to_string),
            req.header("content-type").map(str::to_string),
            req.body().to_vec(),
            req.headers()
                .filter(|(n, _)| {
                    n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case("user-agent")
                })
                .map(|(n, v)| format!("{}={v}", n.to_ascii_lowercase()))
                .collect(),
        ));
        Response::text("ok")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let body_file = std::env::temp_dir().join(format!("grove-ab-body-{}", std::process::id()));
    std::fs::write(&body_file, b"{\"answer\": 42}").unwrap();
    let url = format!("http://{addr}/submit");
    let text = report(&[
        "-n",
        "5",
        "-c",
        "1",
        "-q",
        "-m",
        "PUT",
        "-H",
        "X-Grove-Test: yes",
        "-H",
        "host: example.test",
        "-p",
        body_file.to_str().unwrap(),
        "-T",
        "application/json",
        &url,
    ]);
    let _ = std::fs::remove_file(&body_file);
    assert_eq!(field(&text, "Complete requests:"), "5");
    // ab reports what a run with a body sent: all its requests' bytes.
    let sent: u64 = field(&text, "Total body sent:").parse().unwrap();
    assert!(sent > 5 * 14 && sent.is_multiple_of(5), "{text}");
    assert!(
        text.contains(" kb/s sent\n") && text.contains(" kb/s total\n"),
        "{text}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    for (method, test_header, content_type, body, named) in seen.iter() {
        // A -H of a default header's name replaces it (one Host, the given one).
        let mut named = named.clone();
        named.sort();
        assert_eq!(
            named,
            ["host=example.test", "user-agent=grove-ab"],
            "{text}"
        );
        assert_eq!(method, "PUT");
        assert_eq!(test_header.as_deref(), Some("yes"));
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(body, b"{\"answer\": 42}");
    }
    handle.stop(Duration::from_secs(1));
}

/// Runs grove-ab with `flags` against a server that never answers; it must end within `limit`.
fn against_a_stalled_server(flags: &str, limit: Duration) -> String {
    let addr = stalled_server(limit + Duration::from_secs(30));
    let url = format!("http://{addr}/");
    let mut args: Vec<&str> = flags.split(' ').collect();
    args.push(&url);
    let t = std::time::Instant::now();
    let text = report(&args);
    assert!(t.elapsed() < limit, "{flags} took {:?}", t.elapsed());
    text
}

#[test]
fn http_grove_ab_timeout_fails_requests_to_a_stalled_server() {
    // With -r, as ab -r: each timed-out request is a failure and the run goes on.
    let text = against_a_stalled_server("-n 2 -c 2 -s 1 -q -r", Duration::from_secs(15));
    assert_eq!(field(&text, "Complete requests:"), "0");
    assert_eq!(field(&text, "Failed requests:"), "2");
}

#[test]
fn http_grove_ab_stops_at_the_first_receive_error_without_r_as_ab_does() {
    // A server that answers one request and then resets every connection: ab exits at the
    // first apr_socket_recv error (unless given -r) with the count of completed requests.
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    let addr = accept_for(Duration::from_secs(20), move |s| {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(std::thread::spawn(move || {
            if n == 0 {
                answer_heads(s, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
            } else {
                // Read the request, then close with data unread: a reset.
                let mut s = s;
                let mut b = [0u8; 8];
                let _ = std::io::Read::read(&mut s, &mut b);
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
        }))
    });
    let url = format!("http://{addr}/");
    let t = std::time::Instant::now();
    let out = grove_ab(&["-q", "-n", "50", "-c", "1", &url]);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        !out.status.success(),
        "a receive error must end the run non-zero"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("receive error"), "{err}");
    assert!(err.contains("total of 1 requests completed"), "{err}");
    assert!(
        served.load(std::sync::atomic::Ordering::SeqCst) < 50,
        "it went on"
    );

    // The same with -r: every request is made, the resets counted as receive failures.
    let out = grove_ab(&["-q", "-r", "-n", "5", "-c", "1", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Receive: "), "{text}");
    assert!(!text.contains("Receive: 0,"), "{text}");

    // A server that closes without answering, or answers in a form grove-ab does not read
    // (chunked): failed requests, as before, but no receive errors: ab goes on there.
    let closer = accept_for(Duration::from_secs(20), move |s| {
        drop(std::thread::spawn(move || {
            let mut s = s;
            let mut b = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut b); // then a plain close
        }))
    });
    let chunked = canned_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          2\r\nhi\r\n0\r\n\r\n",
    );
    for addr in [closer, chunked] {
        let out = grove_ab(&["-q", "-n", "5", "-c", "1", &format!("http://{addr}/")]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(field(&text, "Failed requests:"), "5", "{text}");
    }

    // And a stalled server, without -r: the -s timeout is a receive error too.
    let addr = stalled_server(Duration::from_secs(30));
    let out = grove_ab(&[
        "-q",
        "-s",
        "1",
        "-n",
        "3",
        "-c",
        "1",
        &format!("http://{addr}/"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("total of 0 requests completed"), "{err}");
}

#[test]
fn http_grove_ab_time_limit_ends_the_run_even_while_requests_stall() {
    // -s 30 would hold a stalled request for 30 s: -t 1 must end the run near 1 s anyway, and
    // the requests it cuts off are neither complete nor failed (as ab).
    let text = against_a_stalled_server("-t 1 -s 30 -c 2 -q", Duration::from_secs(10));
    assert_eq!(field(&text, "Complete requests:"), "0");
    assert_eq!(field(&text, "Failed requests:"), "0");
    // A limit too large to represent is no limit, not a panic.
    let text = report(&["-t", "18446744073709551615", "-n", "50", "-c", "2", "-q"]);
    assert_eq!(field(&text, "Complete requests:"), "50");
}

#[test]
fn http_grove_ab_compares_every_length_with_the_runs_first_response() {
    // The first connection the server sees gets a 1-byte body, every other one 2 bytes: with
    // keep-alive and two clients, one client's responses all differ from the run's first
    // response, though each client's own responses agree with each other.
    let first_peer = std::sync::Mutex::new(None);
    let counts: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]> = Default::default();
    let c = counts.clone();
    let server = Server::bind("127.0.0.1:0", move |req| {
        let mut f = first_peer.lock().unwrap();
        let peer = req.peer_addr();
        let short = *f.get_or_insert(peer) == peer;
        c[usize::from(!short)].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Response::text(if short { "a" } else { "bb" })
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let text = report(&[
        "-n",
        "40",
        "-c",
        "2",
        "-k",
        "-q",
        &format!("http://{addr}/"),
    ]);
    assert_eq!(field(&text, "Complete requests:"), "40");
    let failed: u64 = field(&text, "Failed requests:").parse().unwrap();
    let (short, long) = (
        counts[0].load(std::sync::atomic::Ordering::SeqCst),
        counts[1].load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        long > 0 && short > 0,
        "one connection served everything: {short}/{long}"
    );
    // The run's first response was one of the two lengths; every response of the other counts.
    assert!(
        failed == short || failed == long,
        "failed {failed}, lengths {short}/{long}\n{text}"
    );
    assert!(text.contains(&format!("Length: {failed}")), "{text}");
    handle.stop(Duration::from_secs(1));
    // With -l (dynamic pages) a different length is not a failure, as in ab, and the report
    // says the length is variable. A page whose length changes with every request:
    let served = std::sync::atomic::AtomicU64::new(0);
    let server = Server::bind("127.0.0.1:0", move |_| {
        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Response::text("x".repeat(1 + (n % 3) as usize))
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    for (flags, failed_none) in [(&["-k", "-q"][..], false), (&["-k", "-q", "-l"][..], true)] {
        let url = format!("http://{addr}/");
        let mut args = vec!["-n", "40", "-c", "2"];
        args.extend_from_slice(flags);
        args.push(&url);
        let text = report(&args);
        assert_eq!(field(&text, "Complete requests:"), "40");
        let failed: u64 = field(&text, "Failed requests:").parse().unwrap();
        assert_eq!(failed == 0, failed_none, "{flags:?}: {text}");
        assert_eq!(
            field(&text, "Document Length:") == "Variable",
            failed_none,
            "{text}"
        );
    }
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_grove_ab_head_requests_read_no_body() {
    // The server says `Content-Length: 12` to a HEAD and sends no body: a client waiting for
    // those 12 bytes times out (each request failed after -s before this was handled).
    for flags in [&["-i"][..], &["-m", "HEAD"][..]] {
        let mut args = vec!["-n", "20", "-c", "2", "-k", "-s", "5", "-q"];
        args.extend_from_slice(flags);
        let started = std::time::Instant::now();
        let text = report(&args);
        assert_eq!(
            field(&text, "Complete requests:"),
            "20",
            "{flags:?}: {text}"
        );
        assert_eq!(field(&text, "Failed requests:"), "0", "{flags:?}: {text}");
        assert_eq!(
            field(&text, "Document Length:"),
            "0 bytes",
            "{flags:?}: {text}"
        );
        assert!(field(&text, "Keep-Alive requests:").parse::<u64>().unwrap() >= 18);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{flags:?}: waited for a body"
        );
    }
}

/// A keep-alive server on plain threads (one per connection) that answers every request head
/// with `reply`, for at most 20 s.
fn canned_server(reply: &'static [u8]) -> std::net::SocketAddr {
    accept_for(Duration::from_secs(20), move |s| {
        drop(std::thread::spawn(move || answer_heads(s, reply, false)))
    })
}

/// Answers each request head read from `s` with `reply`; after the first one if `once`.
fn answer_heads(mut s: std::net::TcpStream, reply: &[u8], once: bool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut pending = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..i + 4);
            if s.write_all(reply).is_err() || once {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn http_grove_ab_bodiless_statuses_and_interim_responses_end_at_their_head() {
    // A 100 Continue nobody asked for, then a 204 whose Content-Length must be ignored, then a
    // 304 the same: all three end at their head (RFC 9112, section 6.3), on one connection.
    let cases: [(&'static [u8], bool); 2] = [
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
            true,
        ),
    ];
    for (reply, non_2xx) in cases {
        let url = format!("http://{}/", canned_server(reply));
        let text = report(&["-n", "10", "-c", "1", "-k", "-s", "5", "-q", &url]);
        assert_eq!(field(&text, "Complete requests:"), "10", "{text}");
        assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
        assert_eq!(
            text.contains("Non-2xx responses:      10"),
            non_2xx,
            "{text}"
        );
        assert_eq!(field(&text, "Keep-Alive requests:"), "10", "{text}");
    }
}

#[test]
fn http_grove_ab_time_limit_ends_a_response_that_trickles_in() {
    // A server that answers with a head promising 100 bytes, then sends one byte every 300 ms:
    // every read succeeds, so only the deadline applied to each read can end a `-t 1` run.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_secs(40);
        l.set_nonblocking(true).unwrap();
        let mut conns = Vec::new();
        while std::time::Instant::now() < end {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.set_nonblocking(false);
                let mut req = [0u8; 1024];
                let _ = std::io::Read::read(&mut s, &mut req);
                let _ = std::io::Write::write_all(
                    &mut s,
                    b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n",
                );
                conns.push(s);
            }
            for s in &mut conns {
                let _ = std::io::Write::write_all(s, b"x");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let t = std::time::Instant::now();
    let text = report(&[
        "-t",
        "1",
        "-s",
        "30",
        "-c",
        "1",
        "-q",
        &format!("http://{addr}/"),
    ]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "-t 1 took {:?}",
        t.elapsed()
    );
    assert_eq!(field(&text, "Complete requests:"), "0");
}

#[test]
fn http_grove_ab_urls_name_ipv6_hosts_with_and_without_a_port() {
    let parsed = grove::ab::parse_url("http://[::1]/x").unwrap();
    assert_eq!(
        (parsed.host.as_str(), parsed.port, parsed.path.as_str()),
        ("[::1]", 80, "/x")
    );
    let parsed = grove::ab::parse_url("http://[::1]:8080").unwrap();
    assert_eq!((parsed.port, parsed.path.as_str()), (8080, "/"));
    assert_eq!(parsed.addr, "[::1]:8080".parse().unwrap());
    let parsed = grove::ab::parse_url("http://127.0.0.1:9/a?b=c").unwrap();
    assert_eq!((parsed.port, parsed.path.as_str()), (9, "/a?b=c"));
    for bad in [
        "http://[::1]:x/",
        "http://host:99999/",
        "http://[::1",
        "http://:80/",
    ] {
        assert!(grove::ab::parse_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn http_grove_ab_keeps_every_client_busy_when_requests_are_few() {
    // 100 requests over 50 clients against a slow handler: ab has all 50 in flight at once;
    // claiming request numbers 8 at a time kept 13 busy and took 2.5 times as long. (One
    // second per request: ample time for all 50 to arrive on a loaded machine.)
    let (now, peak) = (
        std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    let (n, p) = (now.clone(), peak.clone());
    let server = Server::bind("127.0.0.1:0", move |_req| {
        let in_flight = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        p.fetch_max(in_flight, std::sync::atomic::Ordering::SeqCst);
        grove::sleep(Duration::from_secs(1));
        n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Response::text("ok")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let text = report(&["-n", "100", "-c", "50", "-q", &format!("http://{addr}/")]);
    assert_eq!(field(&text, "Complete requests:"), "100");
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak >= 45, "at most {peak} requests in flight\n{text}");
    handle.stop(Duration::from_secs(1));
}

/// A loopback server on plain threads that counts the connections it accepts and answers one
/// request on each with an HTTP/1.1 response that says nothing of closing, then closes.
fn close_after_one_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let accepted: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
    let count = accepted.clone();
    let addr = accept_for(Duration::from_secs(20), move |s| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        drop(std::thread::spawn(move || answer_heads(s, reply, true)));
    });
    (addr, accepted)
}

#[test]
fn http_grove_ab_retries_on_a_kept_connection_the_server_closed() {
    let (addr, accepted) = close_after_one_server();
    // With -k, each response leaves the connection looking reusable; the next request on it
    // finds it closed before any byte of an answer: a retry on a new connection, not a failure.
    let text = report(&[
        "-n",
        "20",
        "-c",
        "2",
        "-k",
        "-s",
        "5",
        "-q",
        &format!("http://{addr}/"),
    ]);
    assert_eq!(field(&text, "Complete requests:"), "20", "{text}");
    assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
    // One connection a request: the check that the server is up is the first client's.
    let text = report(&["-n", "5", "-c", "1", "-q", &format!("http://{addr}/")]);
    assert_eq!(field(&text, "Complete requests:"), "5", "{text}");
    let total = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(total <= 20 + 2 + 5, "{total} connections for 25 requests");
    assert!(
        text.starts_with("Benchmarking 127.0.0.1 (be patient).....done\n"),
        "{text}"
    );
}

#[test]
fn http_grove_ab_progress_and_time_limits_follow_ab() {
    let out = grove_ab(&["-n", "1000", "-c", "4", "-k"]);
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        text.starts_with("Benchmarking 127.0.0.1 (be patient)\n"),
        "{text}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("Completed")).collect();
    assert_eq!(lines.len(), 10, "{err}");
    assert_eq!(lines[0], "Completed 100 requests");
    assert!(err.ends_with("Finished 1000 requests\n"), "{err}");
    // -t 0 is no limit, and raises -n to ab's 50,000.
    let text = report(&["-t", "0", "-c", "8", "-k", "-q"]);
    assert_eq!(field(&text, "Complete requests:"), "50000");
}

#[test]
fn http_grove_ab_reads_flags_as_abs_getopt_does() {
    // ab (apr_getopt) takes a value joined to its flag and grouped switches: `-n300 -kqc10`.
    // grove-ab said "unknown option -n300". A URL without a scheme is http, as in ab.
    let server = Server::bind("127.0.0.1:0", |_req| Response::static_text("ok")).unwrap();
    let url = format!("{}/", server.local_addr().unwrap());
    let handle = server.start();
    for args in [
        vec!["-n300", "-kqc10", url.as_str()],
        vec!["-kq", "-n", "300", "-c10", url.as_str()],
        // `-r` (ab: go on after a receive error) is what grove-ab always does; `--` ends the
        // options. grove-ab said "unknown option -r", and read what followed `--` as flags.
        vec!["-rkq", "-n", "300", "-c10", "--", url.as_str()],
    ] {
        let out = grove_ab(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(field(&text, "Complete requests:"), "300", "{args:?}");
        assert_eq!(field(&text, "Concurrency Level:"), "10", "{args:?}");
        assert_eq!(field(&text, "Keep-Alive requests:"), "300", "{args:?}");
    }
    let out = grove_ab(&["-n10", "https://127.0.0.1:1/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http://"));
    // After `--`, `-k` is a (bad) URL, not a flag.
    let out = grove_ab(&["-n10", "--", "-k"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("option"), "{err}");
    assert!(err.contains("-k"), "{err}");
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_grove_ab_does_not_resend_a_request_that_timed_out_on_a_kept_connection() {
    // A server that answers the first request of each connection and then stalls. The
    // timed-out request was sent again on a new connection and counted complete: the stall
    // never showed (ab aborts there), and a POST would have gone twice.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    let addr = accept_for(Duration::from_secs(20), move |mut s| {
        let count = count.clone();
        drop(std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 1024];
            let mut answered = false;
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            loop {
                while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..i + 4);
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !answered {
                        answered = true;
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if s.write_all(ok).is_err() {
                            return;
                        }
                    }
                }
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
            }
        }))
    });
    let url = format!("http://{addr}/");
    let text = report(&["-k", "-r", "-s", "1", "-n", "3", "-c", "1", &url]);
    assert_eq!(field(&text, "Complete requests:"), "2", "{text}");
    assert!(field(&text, "Failed requests:").starts_with('1'), "{text}");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3, "{text}");
}

#[test]
fn http_grove_ab_counts_cut_responses_and_many_headers_as_ab_does() {
    // A body cut short by the close is a complete request with a Length failure in ab (it was
    // a receive failure here, and its bytes uncounted); a response with more than 64 header
    // fields is a response (every one failed to parse).
    let reply: &'static [u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n12345";
    let cut = accept_for(Duration::from_secs(20), move |s| {
        drop(std::thread::spawn(move || answer_heads(s, reply, true)))
    });
    let text = report(&["-n", "4", "-c", "1", &format!("http://{cut}/")]);
    assert_eq!(field(&text, "Complete requests:"), "4", "{text}");
    assert_eq!(field(&text, "Total transferred:"), "176 bytes", "{text}");
    let mut many = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..70 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\nok");
    let many: &'static [u8] = Box::leak(many.into_boxed_slice());
    let addr = canned_server(many);
    let text = report(&["-k", "-n", "5", "-c", "1", &format!("http://{addr}/")]);
    assert_eq!(field(&text, "Complete requests:"), "5", "{text}");
    assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
}

#[test]
fn http_grove_ab_reports_what_it_has_on_sigint() {
    // ab prints its report when interrupted; grove-ab died by the signal with nothing.
    // Interrupted once it has completed some requests (counted by this server), however long
    // a loaded machine takes to start it.
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = served.clone();
    let server = Server::bind("127.0.0.1:0", move |_req| {
        s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Response::text("ok")
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let child = Command::new(env!("CARGO_BIN_EXE_grove-ab"))
        .args(["-q", "-k", "-n", "100000000", "-c", "4"])
        .arg(format!("http://{addr}/"))
        .env("GROVE_WORKERS", "2")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while served.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        assert!(std::time::Instant::now() < until, "grove-ab sent nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    // (Its SIGINT handler is installed before its first request.)
    // SAFETY: the pid is our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let done: u64 = field(&text, "Complete requests:").parse().unwrap();
    assert!(done > 0, "{text}");
    assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_grove_ab_interrupt_ends_only_the_run_in_progress() {
    // `interrupt` was sticky: called once, it ended every later run of the process at once
    // (with 0 requests and no error).
    assert!(!grove::ab::interrupt(), "no run is at work");
    let cfg = grove::ab::Config {
        requests: 50,
        concurrency: 2,
        quiet: true,
        ..Default::default()
    };
    let report = grove::ab::run(cfg).unwrap();
    assert!(!grove::ab::interrupted());
    assert_eq!(report.complete(), 50);
}

#[test]
fn http_grove_ab_counts_no_keep_alive_for_a_server_that_closes_after_each_response() {
    // An HTTP/1.1 response that does not say `close`, and then the server closes. grove-ab
    // counted all 20 as keep-alive (the retry on a fresh connection took nothing back); ab says
    // 0. grove-ab now takes a count back when the connection turns out closed: on the next
    // request, or when the client ends (which may race the server's FIN, so at most one per
    // client remains).
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = accept_for(Duration::from_secs(20), move |s| {
        let tx = tx.clone();
        drop(std::thread::spawn(move || {
            answer_heads(s, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
            let _ = tx.send(());
        }))
    });
    let text = report(&[
        "-q",
        "-k",
        "-n",
        "20",
        "-c",
        "2",
        &format!("http://{addr}/"),
    ]);
    assert_eq!(field(&text, "Complete requests:"), "20", "{text}");
    assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
    let kept: u64 = field(&text, "Keep-Alive requests:").parse().unwrap();
    assert!(kept <= 2, "{text}");
    drop(rx);
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which also gives its peak memory
fn http_grove_ab_memory_does_not_grow_with_the_response_body() {
    // Each client kept its whole response in its buffer: 8 clients x 32 MB peaked at 259 MB.
    // The body is counted and let go as it comes now, as ab does.
    let body: &'static [u8] = Box::leak(vec![b'x'; 32 << 20].into_boxed_slice());
    let server = Server::bind("127.0.0.1:0", move |_req| Response::new(200).body(body)).unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let child = Command::new(env!("CARGO_BIN_EXE_grove-ab"))
        .args(["-q", "-n", "8", "-c", "8", &format!("http://{addr}/")])
        .env("GROVE_WORKERS", "2")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut text = String::new();
    child.stdout.unwrap().read_to_string(&mut text).unwrap();
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our own child, not yet
    // reaped (its `Child` handle was consumed above without a wait).
    let (status, peak_kib) = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let mut status = 0;
        assert!(libc::wait4(pid, &mut status, 0, &mut ru) > 0);
        (status, ru.ru_maxrss)
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{text}"
    );
    assert_eq!(field(&text, "Complete requests:"), "8", "{text}");
    assert_eq!(field(&text, "Failed requests:"), "0", "{text}");
    assert!(
        peak_kib < 64 * 1024,
        "grove-ab peaked at {peak_kib} KiB for 8 x 32 MiB responses"
    );
    handle.stop(Duration::from_secs(1));
}
