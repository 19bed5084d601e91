//! Reading responses: a client connection's reusable buffer and the parse of one response.

use crate::net::http::parse_content_length;
use crate::net::TcpStream;
use std::io::{self, ErrorKind, Read};
use std::time::{Duration, Instant};

/// What one response looked like.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body_len: usize,
    pub(super) total_len: usize,
    pub(super) keep_alive: bool,
    pub(super) server: Option<String>,
}

/// A client connection's read buffer: zeroed once, refilled in place (valid bytes are
/// `data[start..end]`), so a response costs no allocation and no memset.
pub(super) struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// With `-t`: the run's deadline and `-s`. Each read then waits at most `-s` and never past
    /// the deadline, however many reads a response takes (a server that trickles its bytes must
    /// not keep a timed run going).
    pub(super) cap: Option<(Instant, Duration)>,
    /// When the first and the last read since the client cleared them returned bytes: the end
    /// of `ab`'s "waiting", and the end of the request (one clock read per read, and one read
    /// is all a small response takes).
    pub(super) first_byte: Option<Instant>,
    pub(super) last_byte: Option<Instant>,
}

impl ReadBuf {
    pub(super) fn new() -> ReadBuf {
        ReadBuf {
            data: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            cap: None,
            first_byte: None,
            last_byte: None,
        }
    }

    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
    }

    /// Reads more; an error at end of stream.
    fn fill(&mut self, s: &TcpStream) -> io::Result<()> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.data.resize(self.data.len() * 2, 0);
            }
        }
        if let Some((deadline, per_read)) = self.cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            // A plain store for grove's sockets, no syscall.
            s.set_read_timeout(Some(per_read.min(left)))?;
        }
        let n = (&*s).read(&mut self.data[self.end..])?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        let now = Instant::now();
        self.first_byte.get_or_insert(now);
        self.last_byte = Some(now);
        Ok(())
    }
}

/// Most header fields a response may have.
const MAX_RESPONSE_HEADERS: usize = 4096;

/// What the head of a response says about its body and connection.
struct Head {
    /// Bytes of the head, up to and including the blank line.
    len: usize,
    status: u16,
    content_length: Option<usize>,
    close: bool,
    server: Option<String>,
}

fn bad_response(m: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, m.to_string())
}

/// Reads one response from `s` into `buf` (which may already hold its start). The `Server`
/// header is copied out only when `want_server` (the first response of each client). An answer
/// to a `HEAD` request (`head_request`), and a `204`, `304` or `1xx`, has no body whatever its
/// `Content-Length` says (RFC 9112, section 6.3); an interim `1xx` is skipped for the final
/// response behind it.
pub(super) fn read_reply(
    s: &TcpStream,
    buf: &mut ReadBuf,
    want_server: bool,
    head_request: bool,
) -> io::Result<Reply> {
    let mut interim = 0;
    let head = loop {
        match parse_head(buf.bytes(), want_server)? {
            Some(h) if (100..200).contains(&h.status) && h.status != 101 => {
                buf.consume(h.len);
                interim += h.len;
            }
            Some(h) => break h,
            None => buf.fill(s)?,
        }
    };
    let bodiless = head_request || head.status == 204 || head.status == 304 || head.status < 200;
    buf.consume(head.len);
    // The body is counted and let go as it comes, as ab does: kept whole, a large response
    // held concurrency x its size in memory (8 x 32 MB: 259 MB at the peak).
    let expected = match head.content_length {
        _ if bodiless => 0,
        Some(l) => l,
        None => usize::MAX, // no length: the body runs until the connection closes
    };
    let mut body_len = 0;
    let mut cut = false;
    loop {
        let take = buf.bytes().len().min(expected - body_len);
        buf.consume(take);
        body_len += take;
        if body_len == expected {
            break;
        }
        match buf.fill(s) {
            Ok(()) => {}
            // The end of a body without a length. Closed mid-body otherwise: ab counts the
            // response with what came of it (a complete request whose length differs, a
            // "Length" failure), not as a receive error.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                cut = head.content_length.is_some();
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Reply {
        status: head.status,
        body_len,
        total_len: interim + head.len + body_len,
        keep_alive: !cut && !head.close && (bodiless || head.content_length.is_some()),
        server: head.server,
    })
}

/// Parses a response head from `bytes`: `None` if it is not all there yet.
fn parse_head(bytes: &[u8], want_server: bool) -> io::Result<Option<Head>> {
    // Uninitialised: filling 64 empty headers before every parse cost ~400 instructions per
    // response (callgrind).
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
    let mut many = Vec::new();
    let mut resp = httparse::Response::new(&mut []);
    let mut parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        bytes,
        &mut headers,
    );
    if parsed == Err(httparse::Error::TooManyHeaders) {
        // Rare: a response with more fields than that (ab takes any number); on the heap.
        many.resize_with(MAX_RESPONSE_HEADERS, std::mem::MaybeUninit::uninit);
        resp = httparse::Response::new(&mut []);
        parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, bytes, &mut many);
    }
    let parsed = parsed.map_err(|e| bad_response(&e.to_string()))?;
    let httparse::Status::Complete(len) = parsed else {
        return Ok(None);
    };
    let mut head = Head {
        len,
        status: resp.code.unwrap_or(0),
        content_length: None,
        close: false,
        server: None,
    };
    // `Connection` is a list of tokens, over any number of fields (RFC 9110 7.6.1): `close`
    // anywhere closes; HTTP/1.0 closes unless `keep-alive` is there. (Reading each field's
    // whole value as one token, the last field winning, took `close, foo` for keep-alive.)
    let (mut says_close, mut says_keep_alive) = (false, false);
    for h in resp.headers.iter() {
        let v = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = parse_content_length(v);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                says_close |= token.eq_ignore_ascii_case(b"close");
                says_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if v.eq_ignore_ascii_case(b"chunked") {
                return Err(bad_response("chunked responses are not supported"));
            }
        } else if want_server && h.name.eq_ignore_ascii_case("server") {
            head.server = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    head.close = says_close || (resp.version == Some(0) && !says_keep_alive);
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::parse_head;

    #[test]
    fn http_ab_head_parse_reads_length_connection_and_server() {
        let r = b"HTTP/1.1 404 Not Found\r\nServer: x/1\r\nContent-Length: 3\r\n\r\nabc";
        let h = parse_head(r, true).unwrap().expect("complete head");
        assert_eq!(
            (h.len, h.status, h.content_length),
            (r.len() - 3, 404, Some(3))
        );
        assert!(!h.close);
        assert_eq!(h.server.as_deref(), Some("x/1"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le", true)
            .unwrap()
            .is_none());
        let h = parse_head(b"HTTP/1.0 200 OK\r\nServer: y\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(h.close && h.server.is_none() && h.content_length.is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked, true).is_err());
        // `Connection` is a token list over any number of fields.
        for (r, close) in [
            (
                &b"HTTP/1.1 200 OK\r\nConnection: close, foo\r\n\r\n"[..],
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: x\r\n\r\n",
                true,
            ),
            (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\n\r\n", false),
            (b"HTTP/1.0 200 OK\r\nConnection: foo\r\n\r\n", true),
            (
                b"HTTP/1.0 200 OK\r\nConnection: foo, keep-alive\r\n\r\n",
                false,
            ),
        ] {
            let h = parse_head(r, false).unwrap().unwrap();
            assert_eq!(h.close, close, "{:?}", String::from_utf8_lossy(r));
        }
    }
}
