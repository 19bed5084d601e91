//! gevent's portforward example: a `StreamServer` that connects each client to a remote address
//! and pumps bytes both ways, one greenlet per direction.
//!
//! Half-close aware: when one side ends its stream (EOF), the forwarder shuts down the write
//! half of the other side and keeps pumping the opposite direction, so a client that sends a
//! request and then `shutdown(Write)`s still gets the whole reply. An error on either side
//! (reset, broken pipe) shuts both sockets down, which ends the other pump too.
//!
//! Run with `cargo run --example portforward LISTEN_ADDR REMOTE_ADDR`, e.g.
//! `cargo run --example portforward 127.0.0.1:8080 example.com:80` (port 0 picks a free port).
//! The first line on stdout is `portforward listening on ADDR -> REMOTE`, with the port
//! actually bound.

use grove::net::{StreamServer, TcpStream};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

/// Copies `from` to `to` until EOF, then shuts down `to`'s write half (the half-close passed
/// on). On an error both sockets are shut down, so the pump going the other way ends as well.
/// Returns the bytes copied.
fn pump(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let result = loop {
        let n = match (&*from).read(&mut buf) {
            Ok(0) => break Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if let Err(e) = (&*to).write_all(&buf[..n]) {
            break Err(e);
        }
        total += n as u64;
    };
    match &result {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
    result
}

/// The handler: connects to `remote`, pumps client -> remote in a new greenlet and
/// remote -> client in this one, and returns when both directions have ended.
fn forward(client: TcpStream, peer: SocketAddr, remote: &str) {
    let server = match TcpStream::connect(remote) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{peer}: cannot connect to {remote}: {e}");
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    eprintln!("{peer} -> {remote}: connected");
    let client = Arc::new(client);
    let server = Arc::new(server);
    let (c, s) = (client.clone(), server.clone());
    let upstream = grove::Builder::new()
        .name(format!("portforward-{peer}-up"))
        .spawn(move || pump(&c, &s));
    let upstream = match upstream {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{peer}: cannot spawn: {e}");
            return;
        }
    };
    // If this greenlet is killed (the server stopping), the upstream pump must not outlive it.
    struct KillOnDrop(grove::Greenlet);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            self.0.kill();
        }
    }
    let guard = KillOnDrop(upstream.greenlet());
    let down = pump(&server, &client);
    let up = upstream.join();
    drop(guard);
    match (up, down) {
        (Ok(Ok(up)), Ok(down)) => eprintln!("{peer}: closed, {up} bytes up, {down} bytes down"),
        (up, down) => eprintln!("{peer}: closed, up {up:?}, down {down:?}"),
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(remote), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: portforward LISTEN_ADDR REMOTE_ADDR");
        std::process::exit(2);
    };
    let remote: Arc<str> = remote.into();
    let r = remote.clone();
    let server = StreamServer::bind(listen.as_str(), move |client, peer| {
        forward(client, peer, &r)
    })?;
    println!(
        "portforward listening on {} -> {remote}",
        server.local_addr()?
    );
    server.serve_forever()
}
