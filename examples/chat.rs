//! gevent's chat server: a `StreamServer` where every client gets a reader greenlet (the
//! handler itself) and a writer greenlet, and users meet in a shared map of outgoing queues.
//!
//! The first line a client sends is its name (a taken or empty name is asked for again). Every
//! later line goes to every *other* user as `name: line`; joins and leaves are announced as
//! `*** name joined` / `*** name left`. `/quit` (or closing the connection) leaves. Each user's
//! writer greenlet drains its `Queue<String>` to its socket, so a slow client never holds up the
//! sender: the broadcast only puts into queues (which are unbounded, as in gevent's tutorial: a
//! client that never reads makes its queue grow).
//!
//! Run with `cargo run --example chat [ADDR]` (default 127.0.0.1:16001; port 0 picks a free
//! port), then `nc 127.0.0.1 16001` from a few terminals. The first line on stdout is
//! `chat server listening on ADDR`, with the port actually bound.

use grove::net::{StreamServer, TcpStream};
use grove::sync::{Mutex, Queue};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest line accepted from a client; a longer one ends its session.
const MAX_LINE: usize = 4096;

/// What a writer greenlet is given: a line to send, or `None`: send nothing more, and end.
type Outbox = Queue<Option<String>>;

/// Every user online: name -> the queue its writer greenlet drains.
type Users = Arc<Mutex<HashMap<String, Outbox>>>;

/// Puts `msg` into the queue of every user but `except`. Called with the map locked, so joins,
/// leaves and messages reach every queue in one order.
fn broadcast(users: &HashMap<String, Outbox>, except: &str, msg: &str) {
    for (name, queue) in users {
        if name != except {
            queue.put(Some(msg.to_owned()));
        }
    }
}

/// Reads one line (without its `\r\n`); `None` at end of stream, on an error or an overlong
/// line.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut buf = Vec::new();
    let n = Read::take(reader, MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .ok()?;
    if n == 0 || (n > MAX_LINE && !buf.ends_with(b"\n")) {
        return None;
    }
    let line = String::from_utf8_lossy(&buf);
    Some(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The writer greenlet: sends every queued line until it gets `None` (or is killed). If the
/// client stops taking data, it shuts the socket down, which ends the reader's wait as well.
fn writer(stream: Arc<TcpStream>, queue: Outbox) {
    while let Some(line) = queue.get() {
        if (&*stream)
            .write_all(format!("{line}\r\n").as_bytes())
            .is_err()
        {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A user who has joined. Dropping it (at the end of the session, or while the handler unwinds
/// because it was killed) takes the user out of the map, tells the others, and ends the writer:
/// after it has sent what was queued (up to a second) when the client left, at once when the
/// handler was killed.
struct Session {
    users: Users,
    name: String,
    queue: Outbox,
    writer: grove::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        {
            let mut users = self.users.lock();
            users.remove(&self.name);
            broadcast(&users, &self.name, &format!("*** {} left", self.name));
        }
        // Nothing more is queued for us now. Unless we are being killed, the writer sends what
        // is queued, our welcome included, then ends; if it takes too long it is killed, which
        // unwinds it out of `queue.get()` (or a pending write), and joined.
        self.queue.put(None);
        if std::thread::panicking() {
            // Killed: no waiting here (it would hold the worker; with one worker the writer
            // could never run). The writer dies at its next blocking call; the socket, shared
            // through an `Arc`, closes when the last of the two lets go.
            self.writer.kill();
            return;
        }
        if !self.writer.wait_timeout(Duration::from_secs(1)) {
            self.writer.kill();
        }
        self.writer.greenlet().wait();
    }
}

/// Asks for a name until the client gives a free one, then joins: the welcome goes to the
/// user's own queue (so it precedes everything else the writer sends) and the others hear of
/// the join, all under the lock.
fn join(users: &Users, stream: &Arc<TcpStream>, reader: &mut impl BufRead) -> Option<Session> {
    let mut out = &**stream;
    out.write_all(b"Welcome to the chat server! What is your name?\r\n")
        .ok()?;
    loop {
        let name = read_line(reader)?.trim().to_owned();
        let mut map = users.lock();
        if name.is_empty() || name.starts_with('*') || map.contains_key(&name) {
            drop(map);
            let why = if name.is_empty() || name.starts_with('*') {
                format!("Sorry, {name:?} is not a valid name. Try another:\r\n")
            } else {
                format!("Sorry, {name} is taken. Try another:\r\n")
            };
            out.write_all(why.as_bytes()).ok()?;
            continue;
        }
        let queue = Queue::new();
        let mut others: Vec<&str> = map.keys().map(String::as_str).collect();
        others.sort_unstable();
        queue.put(Some(format!(
            "*** Welcome, {name}! Online: {}",
            if others.is_empty() {
                "nobody else".to_owned()
            } else {
                others.join(", ")
            }
        )));
        broadcast(&map, &name, &format!("*** {name} joined"));
        map.insert(name.clone(), queue.clone());
        drop(map);
        let (s, q) = (stream.clone(), queue.clone());
        let writer = grove::Builder::new()
            .name(format!("chat-writer-{name}"))
            .spawn(move || writer(s, q))
            .ok()?;
        return Some(Session {
            users: users.clone(),
            name,
            queue,
            writer,
        });
    }
}

/// The handler: one per connection, in its own greenlet. It is the user's reader.
fn client(users: &Users, stream: TcpStream, peer: SocketAddr) {
    let stream = Arc::new(stream);
    let mut reader = BufReader::new(&*stream);
    let Some(session) = join(users, &stream, &mut reader) else {
        eprintln!("{peer} left before joining");
        return;
    };
    eprintln!("{peer} joined as {}", session.name);
    while let Some(line) = read_line(&mut reader) {
        if line.trim() == "/quit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let msg = format!("{}: {line}", session.name);
        broadcast(&users.lock(), &session.name, &msg);
    }
    eprintln!("{peer} ({}) disconnected", session.name);
    drop(session);
    let _ = stream.shutdown(Shutdown::Both);
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:16001".into());
    let users: Users = Arc::new(Mutex::new(HashMap::new()));
    let server = StreamServer::bind(addr.as_str(), move |stream, peer| {
        client(&users, stream, peer)
    })?;
    println!("chat server listening on {}", server.local_addr()?);
    server.serve_forever()
}
