//! gevent's echo server: a `StreamServer` that echoes each line back, one greenlet per client.
//!
//! Run with `cargo run --example echo [ADDR]` (default 127.0.0.1:16000), then
//! `nc 127.0.0.1 16000`. Prints the address it listens on.

use grove::net::{StreamServer, TcpStream};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

/// Most bytes of a line held at once: a longer line is echoed in pieces of this size as it
/// comes, so a client that never sends a newline cannot make the server buffer without bound
/// (gevent's `readline()` would).
const MAX_PIECE: u64 = 64 * 1024;

fn echo(stream: TcpStream, peer: SocketAddr) {
    let mut out = &stream;
    let _ = out.write_all(b"Welcome to the echo server! Type quit to exit.\r\n");
    let mut reader = BufReader::new(&stream);
    let mut line = Vec::new();
    let mut mid_line = false; // pieces of a long line went out already
    loop {
        // Bytes, not text: like gevent's, the server echoes whatever it is sent.
        line.clear();
        match std::io::Read::take(&mut reader, MAX_PIECE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") && line.len() as u64 == MAX_PIECE {
            // A piece of a long line: out as it is, the rest to follow.
            mid_line = true;
            if out.write_all(&line).is_err() {
                break;
            }
            continue;
        }
        if !std::mem::take(&mut mid_line) && line.trim_ascii().eq_ignore_ascii_case(b"quit") {
            break;
        }
        let len = line.trim_ascii_end().len();
        line.truncate(len);
        line.extend_from_slice(b"\r\n");
        if out.write_all(&line).is_err() {
            break;
        }
    }
    eprintln!("{peer} disconnected");
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:16000".into());
    let server = StreamServer::bind(addr.as_str(), echo)?;
    println!("echo server listening on {}", server.local_addr()?);
    server.serve_forever()
}
