//! The network examples (`echo`, `chat`, `portforward`) driven end to end over loopback.
//!
//! Each test runs the compiled example as a child process on `127.0.0.1:0`, reads the address it
//! printed as its first stdout line, and talks to it with plain std sockets (so a grove bug shows
//! up in the example, not in the test's own I/O). The examples are built once per test process
//! with `cargo build --example ...` (a no-op when they are fresh; `cargo test --test
//! net_examples` alone does not build examples). Children inherit the environment, so
//! `GROVE_WORKERS` applies to them too. Every child is killed by its pid when its guard drops,
//! also when an assertion fails; every wait has a time bound.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bound on any single wait for data from an example.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Running the examples

/// Bound on building the examples (the build waits for other cargo processes' locks).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// Builds the examples (once per process) and returns the directory holding them.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This binary is TARGET/[TRIPLE/]PROFILE/deps/net_examples-HASH; the examples are built
        // into TARGET/[TRIPLE/]PROFILE/examples. TARGET is the directory with cargo's
        // CACHEDIR.TAG.
        let exe = std::env::current_exe().expect("test binary path");
        let deps = exe.parent().expect("deps dir");
        let profile_dir = deps.parent().expect("profile dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(p) => p.to_owned(),
        };
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--profile", &profile])
            .args(["--example", "echo", "--example", "chat"])
            .args(["--example", "portforward"]);
        let above = profile_dir.parent().expect("target dir");
        if above.join("CACHEDIR.TAG").exists() {
            cmd.arg("--target-dir").arg(above);
        } else if let Some(target) = above.parent().filter(|t| t.join("CACHEDIR.TAG").exists()) {
            let triple = above.file_name().and_then(|n| n.to_str()).expect("triple");
            cmd.args(["--target", triple])
                .arg("--target-dir")
                .arg(target);
        }
        let mut child = cmd.spawn().expect("run cargo build for the examples");
        let until = Instant::now() + BUILD_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for cargo build") {
                break status;
            }
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cargo build of the examples took over {BUILD_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "cargo build of the examples failed");
        let dir = profile_dir.join("examples");
        for name in ["echo", "chat", "portforward"] {
            assert!(
                dir.join(name).exists(),
                "example {name} not found in {} after building it",
                dir.display()
            );
        }
        dir
    })
}

/// A running example: killed (by pid) and reaped when dropped. Its stderr is collected and
/// shown if the test is failing.
struct Example {
    name: &'static str,
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(t) = self.stderr_reader.take() {
            let _ = t.join(); // ends: the child's stderr closed with it
        }
        if std::thread::panicking() {
            let err = self.stderr.lock().unwrap();
            eprintln!("--- stderr of example {} ---\n{err}--- end ---", self.name);
        }
    }
}

/// Starts example `name` with `args` and waits (bounded) for its first stdout line, which must
/// start with `banner` and end with the address it listens on.
fn start_example(name: &'static str, args: &[&str], banner: &str) -> (Example, SocketAddr) {
    let exe = examples_dir().join(name);
    let mut child = Command::new(&exe)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let stdout = child.stdout.take().expect("child stdout");
    let stderr = child.stderr.take().expect("child stderr");
    let collected = Arc::new(Mutex::new(String::new()));
    let sink = collected.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let example = Example {
        name,
        child,
        stderr: collected,
        stderr_reader: Some(stderr_reader),
    };
    // The first line comes from a reader thread so the wait is bounded; the thread then drains
    // the rest of stdout until the child dies.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines.map_while(Result::ok) {}
    });
    let line = match rx.recv_timeout(IO_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        other => panic!("example {name} printed no first line within {IO_TIMEOUT:?}: {other:?}"),
    };
    assert!(
        line.starts_with(banner),
        "example {name}: first line {line:?} does not start with {banner:?}"
    );
    let addr = line[banner.len()..]
        .split_whitespace()
        .next()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("example {name}: no address in {line:?}"));
    assert_ne!(addr.port(), 0, "example {name} printed port 0: {line:?}");
    (example, addr)
}

// ---------------------------------------------------------------------------------------------
// A line-oriented client

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to the example");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("send {line:?}: {e}"));
    }

    /// The next line without its `\r\n`; fails on EOF or after [`IO_TIMEOUT`].
    fn line(&mut self) -> String {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) => panic!("EOF while waiting for a line"),
            Ok(_) => s.trim_end_matches(['\r', '\n']).to_owned(),
            Err(e) => panic!("no line within {IO_TIMEOUT:?}: {e} (partial {s:?})"),
        }
    }

    fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want);
    }

    /// Asserts that nothing arrives within `d` (data already buffered counts as arriving).
    fn expect_quiet(&mut self, d: Duration) {
        assert!(
            self.reader.buffer().is_empty(),
            "unexpected data {:?}",
            String::from_utf8_lossy(self.reader.buffer())
        );
        self.reader.get_ref().set_read_timeout(Some(d)).unwrap();
        let mut b = [0u8; 256];
        match self.reader.get_mut().read(&mut b) {
            Ok(0) => panic!("unexpected EOF"),
            Ok(n) => panic!("unexpected data {:?}", String::from_utf8_lossy(&b[..n])),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            ),
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(IO_TIMEOUT))
            .unwrap();
    }

    /// Asserts that the server closes the connection (bounded by [`IO_TIMEOUT`]).
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "data before EOF: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("no EOF within {IO_TIMEOUT:?}: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// echo

#[test]
fn net_example_echo_welcome_echo_quit() {
    let (_echo, addr) = start_example("echo", &["127.0.0.1:0"], "echo server listening on ");
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    a.expect("Welcome to the echo server! Type quit to exit.");
    b.expect("Welcome to the echo server! Type quit to exit.");
    for i in 0..50 {
        a.send(&format!("hello {i}"));
        b.send(&format!("world {i}"));
        a.expect(&format!("hello {i}"));
        b.expect(&format!("world {i}"));
    }
    a.send("quit");
    a.expect_eof();
    // The other client is unaffected.
    b.send("still here");
    b.expect("still here");
    b.send("  quit  ");
    b.expect_eof();
}

#[test]
fn net_example_echo_echoes_bytes_that_are_not_text_and_any_case_of_quit() {
    // As gevent's: the server echoes bytes; a line that was not UTF-8 ended the session.
    let (_echo, addr) = start_example("echo", &["127.0.0.1:0"], "echo server listening on ");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap(); // the welcome
    s.write_all(b"caf\xe9\n").unwrap();
    line.clear();
    r.read_until(b'\n', &mut line).unwrap();
    assert_eq!(line, b"caf\xe9\r\n");
    s.write_all(b"QUIT\n").unwrap();
    line.clear();
    assert_eq!(r.read_until(b'\n', &mut line).unwrap(), 0, "{line:?}");
}

#[test]
fn net_example_echo_echoes_a_line_longer_than_it_buffers_in_pieces() {
    // A 1 MiB line, then a short one: the long one comes back whole (in 64 KiB pieces as it
    // arrives, not buffered whole: a client that never sends a newline cannot grow the
    // server's memory without bound), and a "quit" inside it ends nothing.
    let (_echo, addr) = start_example("echo", &["127.0.0.1:0"], "echo server listening on ");
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap(); // the welcome
    let mut long: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    long[(64 << 10) - 4..64 << 10].copy_from_slice(b"quit"); // a piece that ends in "quit"
    let (echoed, got_it) = std::sync::mpsc::channel::<()>();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let long = long.clone();
        std::thread::spawn(move || {
            s.write_all(&long).unwrap();
            // The newline only once the line has come back: a server that buffered whole
            // lines would never have sent it (the read below would time out).
            got_it.recv_timeout(Duration::from_secs(20)).unwrap();
            s.write_all(b"\nshort\n").unwrap();
        })
    };
    let mut back = vec![0u8; long.len()];
    r.read_exact(&mut back)
        .expect("the long line was not echoed before its newline");
    assert!(back == long, "the long line came back altered");
    echoed.send(()).unwrap();
    line.clear();
    r.read_until(b'\n', &mut line).unwrap();
    assert_eq!(line, b"\r\n", "the long line's end");
    line.clear();
    r.read_until(b'\n', &mut line).unwrap();
    assert_eq!(line, b"short\r\n");
    writer.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// chat

/// Connects and joins the chat as `name`, checking the welcome and who else is online.
fn chat_join(addr: SocketAddr, name: &str, online: &str) -> Client {
    let mut c = Client::connect(addr);
    c.expect("Welcome to the chat server! What is your name?");
    c.send(name);
    c.expect(&format!("*** Welcome, {name}! Online: {online}"));
    c
}

#[test]
fn net_example_chat_sends_what_was_queued_before_a_client_that_left() {
    // A client that sends its name and a line, then closes its sending side: the writer was
    // killed at once, and the client's own welcome, still queued, was lost (10 runs in 20).
    let (_chat, addr) = start_example("chat", &["127.0.0.1:0"], "chat server listening on ");
    for i in 0..10 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("quitter{i}\nhi\n").as_bytes()).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut all = String::new();
        let _ = s.read_to_string(&mut all);
        assert!(
            all.contains(&format!("*** Welcome, quitter{i}!")),
            "round {i}: {all:?}"
        );
    }
}

#[test]
fn net_example_chat_three_users_broadcast_and_disconnect() {
    let (_chat, addr) = start_example("chat", &["127.0.0.1:0"], "chat server listening on ");

    let mut alice = chat_join(addr, "alice", "nobody else");
    let mut bob = chat_join(addr, "bob", "alice");
    alice.expect("*** bob joined");
    let mut carol = chat_join(addr, "carol", "alice, bob");
    alice.expect("*** carol joined");
    bob.expect("*** carol joined");

    // A line reaches every other user, and not its sender: alice's next line is bob's message,
    // which the chat sent after hers (bob answers only once he has hers).
    alice.send("hello everyone");
    bob.expect("alice: hello everyone");
    carol.expect("alice: hello everyone");
    bob.send("hi alice");
    alice.expect("bob: hi alice");
    carol.expect("bob: hi alice");
    bob.expect_quiet(Duration::from_millis(100));

    // A burst keeps its order.
    for i in 0..100 {
        carol.send(&format!("line {i}"));
    }
    for i in 0..100 {
        alice.expect(&format!("carol: line {i}"));
        bob.expect(&format!("carol: line {i}"));
    }

    // carol disconnects by closing her socket: the others hear of it and no longer reach her.
    drop(carol);
    alice.expect("*** carol left");
    bob.expect("*** carol left");
    alice.send("is carol gone?");
    bob.expect("alice: is carol gone?");

    // Her name is free again; a taken name is refused and asked for again.
    let mut carol2 = Client::connect(addr);
    carol2.expect("Welcome to the chat server! What is your name?");
    carol2.send("bob");
    carol2.expect("Sorry, bob is taken. Try another:");
    carol2.send("carol");
    carol2.expect("*** Welcome, carol! Online: alice, bob");
    alice.expect("*** carol joined");
    bob.expect("*** carol joined");

    // /quit leaves cleanly: the server closes the connection.
    bob.send("/quit");
    bob.expect_eof();
    alice.expect("*** bob left");
    carol2.expect("*** bob left");
    carol2.send("bye");
    alice.expect("carol: bye");
    alice.expect_quiet(Duration::from_millis(100));
    carol2.expect_quiet(Duration::from_millis(100));
}

#[test]
fn net_example_chat_many_users_and_abrupt_disconnects() {
    let (_chat, addr) = start_example("chat", &["127.0.0.1:0"], "chat server listening on ");
    let mut host = chat_join(addr, "host", "nobody else");
    // A client that leaves before naming itself changes nothing.
    drop(Client::connect(addr));
    let mut guests: Vec<Client> = Vec::new();
    for i in 0..20 {
        let mut online: Vec<String> = (0..i).map(|j| format!("guest{j:02}")).collect();
        online.push("host".into());
        online.sort();
        guests.push(chat_join(addr, &format!("guest{i:02}"), &online.join(", ")));
        host.expect(&format!("*** guest{i:02} joined"));
    }
    for (i, g) in guests.iter_mut().enumerate() {
        for j in i + 1..20 {
            g.expect(&format!("*** guest{j:02} joined"));
        }
    }
    // Every guest sends; everyone else hears it (in each sender's order).
    for (i, g) in guests.iter_mut().enumerate() {
        g.send(&format!("from {i}"));
    }
    let mut heard = vec![0usize; 20];
    for _ in 0..20 {
        let l = host.line();
        let i: usize = l
            .strip_prefix("guest")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {l:?}"));
        assert_eq!(l, format!("guest{i:02}: from {i}"));
        heard[i] += 1;
    }
    assert!(heard.iter().all(|&n| n == 1), "{heard:?}");
    // Half of the guests vanish at once, some with unread data (their sockets are reset).
    let leaving: Vec<Client> = guests.drain(10..).collect();
    drop(leaving);
    // The host has read the whole burst, so the leaves are all it gets next (in any order).
    let mut left: Vec<String> = (0..10).map(|_| host.line()).collect();
    left.sort();
    let want: Vec<String> = (10..20).map(|i| format!("*** guest{i:02} left")).collect();
    assert_eq!(left, want);
    host.send("who is still here?");
    for g in guests.iter_mut() {
        // Skip what the guest has not read yet (others' messages, the leaves), bounded.
        let mut found = false;
        for _ in 0..100 {
            if g.line() == "host: who is still here?" {
                found = true;
                break;
            }
        }
        assert!(found);
    }
    host.expect_quiet(Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------------
// portforward

/// A std echo server on its own threads, for the forwarder to reach: echoes until EOF, then
/// writes `done <count>\n` and closes. Stops accepting when dropped.
struct EchoBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoBackend {
    fn start() -> EchoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(120);
            while !flag.load(SeqCst) && Instant::now() < until {
                match listener.accept() {
                    Ok((s, _)) => {
                        std::thread::spawn(move || echo_until_eof(s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("backend accept: {e}"),
                }
            }
        });
        EchoBackend {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn echo_until_eof(mut s: TcpStream) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
                total += n;
            }
            Err(_) => return,
        }
    }
    let _ = s.write_all(format!("done {total}\n").as_bytes());
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

/// Sends `data` through `addr` from a writer thread, then half-closes; returns everything read
/// back until EOF.
fn round_trip(addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for chunk in data.chunks(7919) {
            w.write_all(chunk).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    let r = (&s).read_to_end(&mut back);
    writer.join().expect("writer thread");
    r.unwrap_or_else(|e| panic!("read back ({} bytes so far): {e}", back.len()));
    back
}

#[test]
fn net_example_portforward_1mib_round_trip_and_half_close() {
    let backend = EchoBackend::start();
    let remote = backend.addr.to_string();
    let (_fwd, addr) = start_example(
        "portforward",
        &["127.0.0.1:0", &remote],
        "portforward listening on ",
    );
    let data = pattern(1 << 20, 0x5a);
    let back = round_trip(addr, data.clone());
    // The echo comes back whole, and `done` proves the backend saw our half-close as EOF while
    // the way back stayed open.
    let trailer = format!("done {}\n", data.len());
    assert_eq!(back.len(), data.len() + trailer.len());
    assert!(back[..data.len()] == data[..], "echoed bytes differ");
    assert_eq!(&back[data.len()..], trailer.as_bytes());
}

#[test]
fn net_example_portforward_half_close_keeps_the_way_back_open() {
    let backend = EchoBackend::start();
    let remote = backend.addr.to_string();
    let (_fwd, addr) = start_example(
        "portforward",
        &["127.0.0.1:0", &remote],
        "portforward listening on ",
    );
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(b"ping\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "ping\n");
    // Half-close: the backend sees EOF only now, and answers over the still-open way back.
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "done 5\n");
}

#[test]
fn net_example_portforward_concurrent_clients() {
    let backend = EchoBackend::start();
    let remote = backend.addr.to_string();
    let (_fwd, addr) = start_example(
        "portforward",
        &["127.0.0.1:0", &remote],
        "portforward listening on ",
    );
    let clients: Vec<_> = (0..16u8)
        .map(|i| {
            std::thread::spawn(move || {
                let data = pattern(64 * 1024 + usize::from(i) * 1000, i);
                let back = round_trip(addr, data.clone());
                let trailer = format!("done {}\n", data.len());
                assert_eq!(back.len(), data.len() + trailer.len(), "client {i}");
                assert!(back[..data.len()] == data[..], "client {i}: bytes differ");
                assert_eq!(&back[data.len()..], trailer.as_bytes(), "client {i}");
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
}

#[test]
fn net_example_portforward_unreachable_remote_closes_the_client() {
    // A port nobody listens on: bind, note it, close.
    let remote = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (_fwd, addr) = start_example(
        "portforward",
        &["127.0.0.1:0", &remote],
        "portforward listening on ",
    );
    let mut c = Client::connect(addr);
    c.expect_eof();
    // The server is still serving afterwards.
    let mut c = Client::connect(addr);
    c.expect_eof();
}
