//! One connection: read requests (pipelined ones in order), call the handler, write responses.
//!
//! The read buffer and the write buffer live for the whole connection and are reused for every
//! request, so a small keep-alive request costs no allocation for its framing; each response is
//! assembled in the write buffer and sent with one `write` where it fits.
//!
//! Slow or idle clients: a kept-alive connection waits for the first byte of its next request
//! for the idle timeout, a new one for the head timeout (then the connection closes quietly);
//! from the first byte on, the whole head must arrive within the head timeout (else `408` and
//! close), so a client that sends half a request and stalls only
//! costs its own greenlet, never anyone else's time. Bad input gets its status (`400`, `413`,
//! `431`, `501`) and the connection closes.

use super::date::write_date_header;
use super::framing::{framing, parse_chunk_size, parse_content_length, Framing};
use super::message::{reason, Body, Request, Response};

use super::head::{parse_head, too_large};
use super::Limits;
use crate::server::ConnState;
use crate::tcp::TcpStream;
use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// How long a connection closed by an error response keeps reading what the client still
/// sends (see `Conn::linger`).
const LINGER_TIME: Duration = Duration::from_secs(2);
/// How much of it, at most (a client uploading a body too large for `max_body_bytes` sends
/// on until it sees the error: reading it away is cheaper than the reset that would lose the
/// reply).
const LINGER_BYTES: usize = 64 << 20;

/// Buffers grown past this by one large request or response go back to their starting size
/// once it is done: an idle keep-alive connection must not keep a past upload's memory.
const SHRINK_ABOVE: usize = 64 << 10;
/// In-memory bodies shorter than this are copied behind the head and sent with it in one
/// write; longer ones are written from where they are (see `write_bytes`).
const COPY_BODY_BELOW: usize = 64 << 10;

/// Why reading a request stopped.
pub(super) enum Stop {
    /// The client closed, or idled out, between requests: just close.
    Quiet,
    /// Answer with this status, then close.
    Status(u16, &'static str),
}

impl From<io::Error> for Stop {
    fn from(_: io::Error) -> Stop {
        Stop::Quiet
    }
}

struct Conn<'a> {
    stream: &'a TcpStream,
    /// Read buffer, zeroed once and grown by doubling; valid bytes are `buf[pos..end]`.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    out: Vec<u8>,
}

/// Serves `stream` until the client is done, the connection must close, or an error.
pub(crate) fn serve<H>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: &H,
    limits: &Limits,
    state: &ConnState,
) where
    H: Fn(&Request) -> Response + ?Sized,
{
    let _ = stream.set_write_timeout(Some(limits.write_timeout)); // an atomic store, no syscall
    let mut conn = Conn {
        stream: &stream,
        // Small to start (it grows by doubling): an idle keep-alive connection's memory is
        // mostly this buffer and its greenlet's one stack page.
        buf: vec![0; 512],
        pos: 0,
        end: 0,
        out: Vec::with_capacity(256),
    };
    let mut req = Request {
        peer: Some(peer),
        ..Request::default()
    };
    let mut answered = false;
    loop {
        // Between requests of a keep-alive connection, while no byte of the next one has come,
        // `stop` may close the connection at once (see `server`'s "Idle connections at stop").
        // From the first byte on, and on a fresh connection, the request is in progress and
        // gets the grace. A pipelined request already buffered is no wait at all.
        // Empty lines before a request line are ignored (RFC 9112 2.2; old clients send a CRLF
        // after a POST body): left buffered, they made the connection look busy, so it got a
        // 408 after the head timeout instead of idling, and `stop` waited out its grace.
        if answered {
            conn.skip_empty_lines();
        }
        if answered && conn.pos == conn.end {
            if !state.enter_idle() {
                return;
            }
            let first = conn.fill(limits.idle_timeout);
            if !state.leave_idle() {
                return; // `stop` claimed it first, and is killing it
            }
            if !matches!(first, Ok(n) if n > 0) {
                return; // closed, idle too long, or an error: quietly
            }
            conn.skip_empty_lines();
            if conn.pos == conn.end {
                continue; // empty lines alone: still idle
            }
        }
        answered = true;
        match conn.read_request(&mut req, limits) {
            Ok(()) => {}
            Err(Stop::Quiet) => return,
            Err(Stop::Status(status, why)) => {
                if conn.write_error(status, why).is_ok() {
                    conn.linger();
                }
                return;
            }
        }
        let head = req.method() == "HEAD";
        let resp = match catch_unwind(AssertUnwindSafe(|| handler(&req))) {
            Ok(r) if valid_final_status(r.status) => r,
            // A status that cannot end a request (`0`, `1xx`, four digits) is the handler's bug.
            Ok(_) => Response::text("internal server error").status_code(500),
            // A kill (the server's `stop`) is not the handler's panic: it ends the connection.
            Err(p) if grove_runtime::is_cancellation(&*p) => resume_unwind(p),
            Err(_) => Response::text("internal server error").status_code(500),
        };
        // Asked after the handler: a server that began stopping meanwhile closes after this.
        // A handler's own `Connection: close` closes too (RFC 9110 7.6.1), as in Go.
        let keep_alive = wants_keep_alive(&req) && !state.stopping() && !says_close(&resp);
        let long = resp.is_long() && !head;
        match conn.write_response(resp, &req, keep_alive, head) {
            Err(_) => return,
            Ok(()) if !keep_alive => {
                // Input the client sent meanwhile (a pipelined request it should not have
                // sent) would make the close a reset, and a long response still on its way
                // would be lost with it: read it away first, as after an error. Not for a
                // short response with nothing read ahead (the usual closing response), where
                // the wait would only cost.
                if long || conn.buffered() > 0 {
                    conn.linger();
                }
                return;
            }
            Ok(()) => {}
        }
        conn.shrink(&mut req);
    }
}

/// True if the handler's headers include `Connection: close`.
fn says_close(resp: &Response) -> bool {
    resp.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("connection")
            && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

/// A status a handler may end a request with: three digits, not an interim `1xx` (RFC 9110
/// 15; this server does not switch protocols, so not `101` either).
fn valid_final_status(status: u16) -> bool {
    (200..=999).contains(&status)
}

/// What every `Connection` field of the request says, with the version's default.
fn wants_keep_alive(req: &Request) -> bool {
    if req.minor_version == 0 {
        req.known.keep_alive && !req.known.close
    } else {
        !req.known.close
    }
}

impl Response {
    fn status_code(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// A body written on its own after the head (long, or streamed): one whose sending takes
    /// long enough for the client to send more meanwhile.
    fn is_long(&self) -> bool {
        match &self.body {
            Body::Bytes(b) => b.len() >= COPY_BODY_BELOW,
            Body::Static(b) => b.len() >= COPY_BODY_BELOW,
            Body::Stream(_) => true,
        }
    }
}

impl Conn<'_> {
    /// Reads more bytes into the buffer, waiting at most `wait`. `Ok(0)` at end of stream.
    fn fill(&mut self, wait: Duration) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let n = (&mut self.stream).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Consumes the CR and LF bytes buffered before a request line.
    fn skip_empty_lines(&mut self) {
        while self.pos < self.end && matches!(self.buf[self.pos], b'\r' | b'\n') {
            self.pos += 1;
        }
    }

    /// Bytes read but not yet consumed.
    fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// Gives back what a large request or response grew (see [`SHRINK_ABOVE`]), keeping any
    /// pipelined bytes already read.
    fn shrink(&mut self, req: &mut Request) {
        if self.buf.len() > SHRINK_ABOVE && self.buffered() <= 512 {
            let mut small = vec![0; 512];
            small[..self.buffered()].copy_from_slice(&self.buf[self.pos..self.end]);
            (self.buf, self.end, self.pos) = (small, self.buffered(), 0);
        }
        if self.out.capacity() > SHRINK_ABOVE {
            self.out = Vec::with_capacity(256);
        }
        if req.body.capacity() > SHRINK_ABOVE {
            req.body = Vec::new();
        }
    }

    #[inline(always)]
    fn read_request(&mut self, req: &mut Request, limits: &Limits) -> Result<(), Stop> {
        // The first byte of a fresh connection (a keep-alive one waited in `serve`) must come
        // within the head timeout of the accept, as nginx's `client_header_timeout` and Go's
        // `ReadHeaderTimeout` bound it (a silent client held its slot for the idle timeout,
        // 60 s); the rest of the head then has the head timeout from that first byte.
        if self.pos == self.end && self.fill(limits.head_timeout)? == 0 {
            return Err(Stop::Quiet);
        }
        // Taken when the head turns out to be incomplete: a head that arrived whole (the usual
        // case) costs no clock read.
        let mut deadline = None;
        let head_len = loop {
            match parse_head(&self.buf[self.pos..self.end], req) {
                Ok(Some(n)) => break n,
                Ok(None) => {}
                Err(stop) => return Err(stop),
            }
            if self.buffered() > limits.max_head_bytes {
                return Err(too_large(
                    &self.buf[self.pos..self.end],
                    limits.max_head_bytes,
                ));
            }
            let deadline = *deadline.get_or_insert_with(|| {
                Instant::now()
                    .checked_add(limits.head_timeout)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
            });
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::Status(408, "request head took too long"));
            }
            match self.fill(left) {
                Ok(0) => return Err(Stop::Quiet),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(Stop::Status(408, "request head took too long"))
                }
                Err(_) => return Err(Stop::Quiet),
            }
        };
        if head_len > limits.max_head_bytes {
            return Err(too_large(
                &self.buf[self.pos..self.pos + head_len],
                limits.max_head_bytes,
            ));
        }
        self.pos += head_len;
        self.read_body(req, limits)?;
        Ok(())
    }

    fn read_body(&mut self, req: &mut Request, limits: &Limits) -> Result<(), Stop> {
        let len = match framing(req).map_err(|(status, why)| Stop::Status(status, why))? {
            Framing::Chunked => {
                self.continue_if_expected(req)?;
                return self.read_chunked(&mut req.body, limits);
            }
            Framing::Length(len) => len,
        };
        if len > limits.max_body_bytes {
            return Err(Stop::Status(413, "request body too large"));
        }
        if len > 0 {
            if self.buffered() < len {
                self.continue_if_expected(req)?;
            }
            self.take_exact_into(len, &mut req.body, limits)?;
        }
        Ok(())
    }

    fn continue_if_expected(&mut self, req: &Request) -> Result<(), Stop> {
        if req.minor_version == 1
            && req
                .known
                .expect
                .map(|s| req.text(s))
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            (&mut self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }

    /// Appends `n` bytes to `out`, reading more as needed (each read waits at most the head
    /// timeout).
    fn take_exact_into(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<(), Stop> {
        while self.buffered() < n {
            self.fill_body(limits)?;
        }
        out.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(())
    }

    /// Reads more of a body (each read waits at most the head timeout).
    fn fill_body(&mut self, limits: &Limits) -> Result<(), Stop> {
        match self.fill(limits.head_timeout) {
            Ok(0) => Err(Stop::Quiet),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Err(Stop::Status(408, "request body took too long"))
            }
            Err(_) => Err(Stop::Quiet),
        }
    }

    /// Takes one line, reading more as needed; at most `max` bytes. A line ends with CRLF, or a
    /// bare LF (RFC 9112 section 2.2 lets a recipient accept one; Go's chunked reader does);
    /// the ending is not part of the line.
    fn take_line(&mut self, max: usize, limits: &Limits) -> Result<Vec<u8>, Stop> {
        loop {
            if let Some(i) = self.buf[self.pos..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = &self.buf[self.pos..self.pos + i];
                let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
                self.pos += i + 1;
                return Ok(line);
            }
            if self.buffered() > max {
                return Err(Stop::Status(400, "malformed chunked body"));
            }
            self.fill_body(limits)?;
        }
    }

    /// Takes the CRLF that ends a chunk's data, which may arrive in two reads.
    fn take_crlf(&mut self, limits: &Limits) -> Result<(), Stop> {
        while self.buffered() < 2 {
            self.fill_body(limits)?;
        }
        if self.buf[self.pos..self.pos + 2] != *b"\r\n" {
            return Err(Stop::Status(400, "malformed chunked body"));
        }
        self.pos += 2;
        Ok(())
    }

    fn read_chunked(&mut self, body: &mut Vec<u8>, limits: &Limits) -> Result<(), Stop> {
        loop {
            let line = self.take_line(1024, limits)?;
            let size = parse_chunk_size(&line).ok_or(Stop::Status(400, "malformed chunk size"))?;
            if size == 0 {
                return self.skip_trailers(limits);
            }
            // `body.len() <= max` here, so this cannot underflow; a size near `usize::MAX` must
            // not wrap a sum past the check (it did: `ffffffffffffffff` then read without end).
            if size > limits.max_body_bytes - body.len() {
                return Err(Stop::Status(413, "request body too large"));
            }
            self.take_exact_into(size, body, limits)?;
            self.take_crlf(limits)?;
        }
    }

    /// Reads the trailer fields after the last chunk, up to the empty line, and ignores them;
    /// together they may take no more than the head limit.
    fn skip_trailers(&mut self, limits: &Limits) -> Result<(), Stop> {
        let mut budget = limits.max_head_bytes;
        loop {
            let line = self.take_line(budget, limits)?;
            if line.is_empty() {
                return Ok(());
            }
            // A trailer field is `name: value` (RFC 9112 7.1.2); anything else is malformed.
            match line.iter().position(|&b| b == b':') {
                Some(colon) if colon > 0 && line[..colon].iter().all(|&b| is_token_byte(b)) => {}
                _ => return Err(Stop::Status(400, "malformed chunked trailer")),
            }
            budget = budget
                .checked_sub(line.len() + 2)
                .ok_or(Stop::Status(431, "request trailers too large"))?;
        }
    }

    fn write_error(&mut self, status: u16, why: &str) -> io::Result<()> {
        self.out.clear();
        let body = format!("{status} {}: {why}\n", reason(status));
        self.status_line(status, 1);
        write_date_header(&mut self.out);
        self.out
            .extend_from_slice(b"Server: grove\r\nConnection: close\r\n");
        self.out
            .extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        self.content_length(body.len());
        self.out.extend_from_slice(body.as_bytes());
        self.stream.write_all_then_shutdown(&self.out)
    }

    /// After an error response, whose request may not have been read to its end (a body too
    /// large, a malformed head): reads and discards what the client still sends, until it
    /// closes, for at most [`LINGER_TIME`] and [`LINGER_BYTES`], before the connection closes.
    /// Closing with unread input sends a reset, and a client still sending could then lose the
    /// response before reading it (nginx's `lingering_close`, Apache's lingering close).
    fn linger(&mut self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match (&mut self.stream).read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    fn status_line(&mut self, status: u16, minor: u8) {
        self.out.extend_from_slice(if minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        push_decimal(&mut self.out, u64::from(status));
        self.out.push(b' ');
        self.out.extend_from_slice(reason(status).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn content_length(&mut self, n: usize) {
        self.out.extend_from_slice(b"Content-Length: ");
        push_decimal(&mut self.out, n as u64);
        self.out.extend_from_slice(b"\r\n\r\n");
    }

    fn write_response(
        &mut self,
        resp: Response,
        req: &Request,
        keep_alive: bool,
        head: bool,
    ) -> io::Result<()> {
        self.out.clear();
        let minor = req.minor_version;
        self.status_line(resp.status, minor);
        let declared = self.handler_headers(&resp.headers);
        // No body, and no framing headers either (RFC 9110 8.6, RFC 9112 6.1).
        let bodiless = resp.status < 200 || resp.status == 204 || resp.status == 304;
        // An in-memory body's `Content-Length`: the handler's own on an empty answer to HEAD.
        let length = |b: &[u8]| match () {
            _ if bodiless => None,
            _ if head && b.is_empty() => Some(declared.unwrap_or(0)),
            _ => Some(b.len() as u64),
        };
        let no_body = head || bodiless;
        match resp.body {
            Body::Static(b) => self.write_bytes(b, length(b), keep_alive, minor, no_body),
            Body::Bytes(b) => self.write_bytes(&b, length(&b), keep_alive, minor, no_body),
            // A stream that must not have a body is not run at all.
            Body::Stream(_) if bodiless => self.write_bytes(&[], None, keep_alive, minor, true),
            Body::Stream(chunks) => self.write_stream(chunks, keep_alive, minor, no_body),
        }
    }

    /// Writes the handler's headers but the framing ones, then `Date` and `Server` unless the
    /// handler set them. A CR or LF in a value goes out as a space, and a header whose name is
    /// not a token is left out: a value taken from the request must not be able to end the
    /// head and start a header or a response of its own (Go's `net/http` does the same).
    /// Returns the `Content-Length` the handler declared, if a valid one.
    fn handler_headers(
        &mut self,
        headers: &[(Cow<'static, str>, Cow<'static, str>)],
    ) -> Option<u64> {
        let (mut has_date, mut has_server, mut declared) = (false, false, None);
        for (n, v) in headers {
            if n.eq_ignore_ascii_case("content-length") {
                declared = parse_content_length(v.trim().as_bytes()).map(|l| l as u64);
                continue; // framing is ours
            }
            if n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("connection")
                || n.is_empty()
                || !n.bytes().all(is_token_byte)
            {
                continue;
            }
            has_date |= n.eq_ignore_ascii_case("date");
            has_server |= n.eq_ignore_ascii_case("server");
            self.out.extend_from_slice(n.as_bytes());
            self.out.extend_from_slice(b": ");
            let start = self.out.len();
            self.out.extend_from_slice(v.as_bytes());
            if has_control_byte(v.as_bytes()) {
                for b in &mut self.out[start..] {
                    if matches!(*b, b'\r' | b'\n' | 0) {
                        *b = b' ';
                    }
                }
            }
            self.out.extend_from_slice(b"\r\n");
        }
        if !has_date {
            write_date_header(&mut self.out);
        }
        if !has_server {
            self.out.extend_from_slice(b"Server: grove\r\n");
        }
        declared
    }

    /// Writes a response whose body is in memory: `length` is its `Content-Length` (`None`: a
    /// status that has no body, so no framing header either).
    fn write_bytes(
        &mut self,
        bytes: &[u8],
        length: Option<u64>,
        keep_alive: bool,
        minor: u8,
        no_body: bool,
    ) -> io::Result<()> {
        self.connection_header(keep_alive, minor);
        match length {
            None => self.out.extend_from_slice(b"\r\n"),
            Some(n) => self.content_length(n as usize),
        }
        let rest: &[u8] = if no_body {
            &self.out
        } else if bytes.len() < COPY_BODY_BELOW {
            self.out.extend_from_slice(bytes);
            &self.out
        } else {
            // A large body goes out from where it is, after the head: copying it would hold
            // it twice for as long as the client takes to read it.
            (&mut self.stream).write_all(&self.out)?;
            bytes
        };
        if keep_alive {
            (&mut self.stream).write_all(rest)
        } else {
            self.stream.write_all_then_shutdown(rest)
        }
    }

    fn connection_header(&mut self, keep_alive: bool, minor: u8) {
        if !keep_alive {
            self.out.extend_from_slice(b"Connection: close\r\n");
        } else if minor == 0 {
            self.out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }

    fn write_stream(
        &mut self,
        chunks: Box<dyn Iterator<Item = Vec<u8>> + Send>,
        keep_alive: bool,
        minor: u8,
        no_body: bool,
    ) -> io::Result<()> {
        let mut w = self.stream;
        if minor == 0 {
            // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
            self.out.extend_from_slice(b"Connection: close\r\n\r\n");
            w.write_all(&self.out)?;
            if !no_body {
                for c in chunks {
                    w.write_all(&c)?;
                }
            }
            // The FIN ends the body; sent before the close, as in `write_bytes`.
            w.shutdown(std::net::Shutdown::Write)?;
            // Then read away what the client sent meanwhile, as a closing HTTP/1.1 response
            // does (`serve`): unread input makes the close a reset, which can throw away the
            // end of the body still on its way (5-6.5 MB of an 8 MB one arrived).
            if !no_body {
                self.linger();
            }
            return Err(io::ErrorKind::ConnectionAborted.into()); // close after it
        }
        self.connection_header(keep_alive, minor);
        self.out
            .extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if no_body {
            return if keep_alive {
                w.write_all(&self.out)
            } else {
                self.stream.write_all_then_shutdown(&self.out)
            };
        }
        for c in chunks.filter(|c| !c.is_empty()) {
            self.out
                .extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            self.out.extend_from_slice(&c);
            self.out.extend_from_slice(b"\r\n");
            w.write_all(&self.out)?;
            self.out.clear();
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        if keep_alive {
            w.write_all(&self.out)
        } else {
            // The FIN right behind the last chunk, as for a body in memory: a client reading
            // to the close must not wait for the linger that follows.
            self.stream.write_all_then_shutdown(&self.out)
        }
    }
}

/// The `tchar`s of RFC 9110 section 5.6.2, what a header name is made of, as a table (this runs
/// for every byte of every response header name).
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Whether `v` holds a byte below 0x20 (a CR or LF among them), eight bytes at a time: the
/// usual header value has none, and is checked in a few instructions per word.
fn has_control_byte(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = v.chunks_exact(8);
    // A byte `b` < 0x20 makes `b - 0x20` borrow into its high bit while `b` itself has it clear.
    let below = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
    if words
        .by_ref()
        .any(|w| below(u64::from_ne_bytes(w.try_into().expect("8 bytes"))))
    {
        return true;
    }
    words.remainder().iter().any(|&b| b < 0x20)
}

/// Appends `n` in decimal, without going through `fmt` (this is on every response).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::{has_control_byte, is_token_byte};

    #[test]
    fn http_control_bytes_are_found_at_every_offset() {
        assert!(!has_control_byte(b""));
        assert!(!has_control_byte(
            b"text/plain; charset=utf-8 ~\x7f\x80\xff"
        ));
        for len in 1..20 {
            for at in 0..len {
                for bad in [b'\r', b'\n', b'\0', b'\t', 0x1f] {
                    let mut v = vec![b'a'; len];
                    v[at] = bad;
                    assert!(has_control_byte(&v), "{bad:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn http_token_bytes() {
        assert!(b"X-Custom_1.a~".iter().all(|&b| is_token_byte(b)));
        assert!(b" :\r\n\"(),/;<=>?@[]{}\x7f"
            .iter()
            .all(|&b| !is_token_byte(b)));
    }
}
