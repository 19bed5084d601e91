//! gevent's echo server: a `StreamServer` that echoes each line back, one greenlet per client.
//!
//! Run with `cargo run --example echo [ADDR]` (default 127.0.0.1:16000), then
//! `nc 127.0.0.1 16000`. Prints the address it listens on.

use grove::net::{StreamServer, TcpStream};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;

fn echo(stream: TcpStream, peer: SocketAddr) {
    let mut out = &stream;
    let _ = out.write_all(b"Welcome to the echo server! Type quit to exit.\r\n");
    for line in BufReader::new(&stream).lines() {
        let Ok(line) = line else { break };
        if line.trim() == "quit" {
            break;
        }
        if out.write_all(format!("{line}\r\n").as_bytes()).is_err() {
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
