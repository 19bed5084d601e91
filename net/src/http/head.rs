//! Parsing a request head: `httparse` into the connection's reused `Request`, the framing and
//! connection headers noted on the way, and the refusals a head can earn (`400`, `414`, `431`,
//! `505`).

use super::conn::Stop;
use super::message::{Known, Request, Span};

/// Most headers a request may have.
const MAX_HEADERS: usize = 100;

/// Headers parsed with a stack array; more take the heap path. Kept small on purpose: the array
/// is 32 bytes a header, and a 100-header array alone (3.2 KiB) pushed every connection's
/// greenlet onto a second stack page, doubling the memory of an idle keep-alive connection.
const STACK_HEADERS: usize = 24;

/// The refusal of a head over the size limit: 414 if its request line alone is (RFC 9110
/// 15.5.15), 431 otherwise.
pub(super) fn too_large(head: &[u8], limit: usize) -> Stop {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(usize::MAX);
    if line_end >= limit {
        Stop::Status(414, "request target too long")
    } else {
        Stop::Status(431, "request header block too large")
    }
}

/// Parses a request head into `req` (reusing its buffers); `Ok(None)` if incomplete.
pub(super) fn parse_head(bytes: &[u8], req: &mut Request) -> Result<Option<usize>, Stop> {
    let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match parse_with(bytes, &mut headers, req) {
        Err(Stop::Status(431, _)) => {
            // Rare: many headers. Parse again with room for the limit, on the heap.
            let mut many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            parse_with(bytes, &mut many, req)
        }
        r => r,
    }
}

fn parse_with<'b>(
    bytes: &'b [u8],
    headers: &mut [httparse::Header<'b>],
    req: &mut Request,
) -> Result<Option<usize>, Stop> {
    let mut parsed = httparse::Request::new(headers);
    let n = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Stop::Status(431, "too many request headers"))
        }
        Err(httparse::Error::Version) if names_other_http_version(bytes) => {
            return Err(Stop::Status(505, "only HTTP/1.0 and HTTP/1.1 are served"))
        }
        Err(_) => return Err(Stop::Status(400, "malformed request")),
    };
    // Spans are offsets into `bytes`, which `req.head` copies below.
    let base = bytes.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        Span {
            start,
            end: start + s.len() as u32,
        }
    };
    let target = origin_form(parsed.path.unwrap_or("/"));
    // (A byte search: `split_once('?')` went through an out-of-line char searcher, ~45
    // instructions per request in callgrind.)
    let (path, query) = match target.bytes().position(|b| b == b'?') {
        Some(i) => (
            span(&target.as_bytes()[..i]),
            Some(span(&target.as_bytes()[i + 1..])),
        ),
        None => (span(target.as_bytes()), None),
    };
    // One check of the whole head (its fast path is for ASCII), instead of one per value.
    if std::str::from_utf8(&bytes[..n]).is_err() {
        return parse_latin1(&bytes[..n], req).map(|_| Some(n));
    }
    req.headers.clear();
    req.known = Known::default();
    for h in parsed.headers.iter() {
        let (name, value) = (span(h.name.as_bytes()), span(h.value));
        note_known(&mut req.known, h, value, bytes);
        req.headers.push((name, value));
    }
    if req.known.hosts > 1 || (req.known.hosts == 0 && parsed.version == Some(1)) {
        // RFC 9112 section 3.2: exactly one `Host` in HTTP/1.1, at most one in HTTP/1.0.
        return Err(Stop::Status(400, "missing or repeated host header"));
    }
    req.method = span(parsed.method.unwrap_or("GET").as_bytes());
    req.path = path;
    req.query = query;
    req.minor_version = parsed.version.unwrap_or(1);
    req.head.clear();
    req.head.extend_from_slice(&bytes[..n]);
    req.body.clear();
    Ok(Some(n))
}

/// A complete head that is not UTF-8: field values may carry any byte from 0x80 up (RFC 9110
/// 5.5, "obs-text", opaque to HTTP). It is read as ISO-8859-1, each byte one character, as
/// WSGI servers (gevent's pywsgi among them) and Python's `http.client` read headers, and
/// parsed again: handlers see text, and nothing is refused that RFC 9110 allows.
#[cold]
fn parse_latin1(head: &[u8], req: &mut Request) -> Result<(), Stop> {
    let text: String = head.iter().map(|&b| char::from(b)).collect();
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_with(text.as_bytes(), &mut headers, req)? {
        Some(_) => Ok(()),
        None => Err(Stop::Status(400, "malformed request")),
    }
}

/// Records what the server needs of header `h` (whose value is at `value` in `bytes`).
fn note_known(k: &mut Known, h: &httparse::Header<'_>, value: Span, bytes: &[u8]) {
    match h.name.len() {
        4 if h.name.eq_ignore_ascii_case("host") => k.hosts = k.hosts.saturating_add(1),
        10 if h.name.eq_ignore_ascii_case("connection") => {
            // Every `Connection` field counts: `close` in any of them closes (RFC 9110 7.6.1).
            // One token is the usual case, and needs no split.
            match h.value {
                b"keep-alive" => k.keep_alive = true,
                b"close" => k.close = true,
                list => list
                    .split(|&b| b == b',')
                    .for_each(|t| note_connection_token(k, t)),
            }
        }
        6 if h.name.eq_ignore_ascii_case("expect") => k.expect = Some(value),
        17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
            k.transfer_encoding_repeated |= k.transfer_encoding.is_some();
            k.transfer_encoding = Some(value);
        }
        14 if h.name.eq_ignore_ascii_case("content-length") => {
            k.content_length_repeated |= k
                .content_length
                .is_some_and(|old| bytes[old.start as usize..old.end as usize] != *h.value);
            k.content_length = Some(value);
        }
        _ => {}
    }
}

fn note_connection_token(k: &mut Known, token: &[u8]) {
    let token = token.trim_ascii();
    match token.len() {
        5 => k.close |= token.eq_ignore_ascii_case(b"close"),
        10 => k.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive"),
        _ => {}
    }
}

/// The origin-form part of a request target: an absolute-form target (`http://host/a?b`, as
/// sent to proxies) loses its scheme and authority (`/a?b`, or `` for `/`, which
/// `Request::path` reports as `/`).
fn origin_form(target: &str) -> &str {
    let has_scheme = |scheme: &[u8]| {
        target
            .as_bytes()
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    };
    let rest = if target.starts_with('/') {
        return target; // the usual case
    } else if has_scheme(b"http://") {
        &target[7..]
    } else if has_scheme(b"https://") {
        &target[8..]
    } else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) => &rest[i..],
        None => &rest[rest.len()..],
    }
}

/// The request line is well formed (method, target and version, one space between each) and
/// its version is one other than 1.0 and 1.1 (`HTTP/2.0`): `505` rather than the `400` of a
/// line that is not HTTP at all, or of a target with a space in it (`GET /a b HTTP/1.1`, whose
/// last word alone looked like a version).
fn names_other_http_version(bytes: &[u8]) -> bool {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n');
    let bytes = &bytes[start.unwrap_or(bytes.len())..];
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !method.is_empty()
        && !target.is_empty()
        && matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::{names_other_http_version, origin_form};

    #[test]
    fn http_only_a_well_formed_request_line_with_another_version_is_505() {
        assert!(names_other_http_version(
            b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"
        ));
        assert!(names_other_http_version(b"\r\nGET / HTTP/3.0\r\n\r\n"));
        // A space in the target, or two before the version: malformed (400), not 505.
        assert!(!names_other_http_version(b"GET /a b HTTP/1.1\r\n\r\n"));
        assert!(!names_other_http_version(b"GET /  HTTP/2.0\r\n\r\n"));
        assert!(!names_other_http_version(b"GET / HTTP/2\r\n\r\n"));
        assert!(!names_other_http_version(b"hello\r\n\r\n"));
    }

    #[test]
    fn http_origin_form_of_request_targets() {
        assert_eq!(origin_form("/a?b"), "/a?b");
        assert_eq!(origin_form("http://h:80/a?b"), "/a?b");
        assert_eq!(origin_form("HTTPS://h?q"), "?q");
        assert_eq!(origin_form("http://h"), "");
        assert_eq!(origin_form("*"), "*");
    }
}
