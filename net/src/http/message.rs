//! `Request` and `Response`: what a handler sees and returns.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::fmt;

/// A parsed request: method, target, headers, and the whole body (read before the handler runs;
/// chunked bodies arrive decoded).
///
/// One `Request` lives as long as its connection and is refilled for every request on it: the
/// head's bytes are copied into a reused buffer and the accessors hand out slices of it, so a
/// keep-alive request costs no allocation once the buffers have grown.
#[derive(Debug, Default)]
pub struct Request {
    /// The request head's bytes (request line and headers), validated UTF-8 (a head that is
    /// not is kept as read as ISO-8859-1, see `conn::parse_latin1`).
    pub(crate) head: Vec<u8>,
    pub(crate) method: Span,
    pub(crate) path: Span,
    pub(crate) query: Option<Span>,
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(Span, Span)>,
    /// The headers the server itself needs, found while parsing (no second scan).
    pub(crate) known: Known,
    pub(crate) body: Vec<u8>,
    pub(crate) peer: Option<std::net::SocketAddr>,
}

/// What the server itself needs from the headers, found while parsing (no second scan): where
/// the framing headers are (the last occurrence of each), and what every `Connection` field and
/// `Host` field together say.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) transfer_encoding: Option<Span>,
    pub(crate) expect: Option<Span>,
    pub(crate) content_length: Option<Span>,
    /// More than one `Content-Length` field, with different values.
    pub(crate) content_length_repeated: bool,
    /// More than one `Transfer-Encoding` field (their codings would combine: never supported).
    pub(crate) transfer_encoding_repeated: bool,
    /// `Host` fields seen (saturating at 2: "more than one" is all that matters).
    pub(crate) hosts: u8,
    /// A `close` / `keep-alive` token in any `Connection` field.
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
}

/// A byte range of `Request::head`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Request {
    pub(crate) fn text(&self, s: Span) -> &str {
        let bytes = &self.head[s.start as usize..s.end as usize];
        // SAFETY: `conn::parse_head` fills `head` with bytes it has checked are UTF-8 in every
        // span it records (httparse's method, path and names are ASCII; values are checked).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The path, without the query string. For an absolute-form target
    /// (`GET http://host/a/b HTTP/1.1`, as sent to proxies) the path part of it (`/a/b`, or `/`).
    pub fn path(&self) -> &str {
        match self.text(self.path) {
            "" => "/",
            p => p,
        }
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.query.map(|q| self.text(q))
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| self.text(*n).eq_ignore_ascii_case(name))
            .map(|(_, v)| self.text(*v))
    }

    /// Every header, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (self.text(*n), self.text(*v)))
    }

    /// The body (empty if none).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// `HTTP/1.x`: 0 or 1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The client's address.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer
    }
}

/// A response body.
pub(crate) enum Body {
    Bytes(Vec<u8>),
    Static(&'static [u8]),
    /// Sent chunked: the length is not known up front.
    Stream(Box<dyn Iterator<Item = Vec<u8>> + Send>),
}

/// Text for a response body or header: owned, or borrowed for ever (what
/// [`Response::static_text`] makes). Anything string-like converts into it; a borrowed `&str`
/// is copied, so a handler can answer with text taken from its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub(crate) Cow<'static, str>);

impl Text {
    /// Text that is not copied.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Cow::Borrowed(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Cow::Owned(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Cow::Owned(s.to_owned()))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text(Cow::Owned(s.clone()))
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        Text(Cow::Owned(s.into()))
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(s: Cow<'static, str>) -> Text {
        Text(s)
    }
}

impl From<std::sync::Arc<str>> for Text {
    fn from(s: std::sync::Arc<str>) -> Text {
        Text(Cow::Owned(s.to_string()))
    }
}

/// What a handler returns.
pub struct Response {
    pub(crate) status: u16,
    /// Inline up to two (the common `Content-Type` and one more): a response allocates nothing
    /// for its headers.
    pub(crate) headers: SmallVec<[(Cow<'static, str>, Cow<'static, str>); 2]>,
    pub(crate) body: Body,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: SmallVec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }

    /// `200 OK` with a `text/plain` body: a `String`, or any `&str` (copied; a handler may
    /// answer with text borrowed from its request). [`Response::static_text`] sends a
    /// `&'static str` without copying it.
    pub fn text(body: impl Into<Text>) -> Response {
        Response::text_body(match body.into().0 {
            Cow::Borrowed(s) => Body::Static(s.as_bytes()),
            Cow::Owned(s) => Body::Bytes(s.into_bytes()),
        })
    }

    /// [`Response::text`] for a body that lives for ever (a literal): sent without a copy.
    pub fn static_text(body: &'static str) -> Response {
        Response::text_body(Body::Static(body.as_bytes()))
    }

    fn text_body(body: Body) -> Response {
        let mut r = Response {
            status: 200,
            headers: SmallVec::new(),
            body,
        };
        r.headers.push((
            Cow::Borrowed("Content-Type"),
            Cow::Borrowed("text/plain; charset=utf-8"),
        ));
        r
    }

    /// Adds a header. `Content-Length`, `Transfer-Encoding`, `Date`, `Server` and `Connection`
    /// are written by the server; setting them here overrides `Date`/`Server` only, and
    /// `Content-Length` on an empty answer to `HEAD` (the length a `GET` would have had). A CR or LF in a value is sent as a space and a header
    /// whose name is not a valid token is left out, so a value taken from a request cannot
    /// split the response (as Go's `net/http` does). Names and values are `String`s or any
    /// `&str` (copied; [`Text::from_static`] is not).
    pub fn header(mut self, name: impl Into<Text>, value: impl Into<Text>) -> Response {
        self.headers.push((name.into().0, value.into().0));
        self
    }

    /// Sets the body (sent with `Content-Length`).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Response {
        self.body = Body::Bytes(bytes.into());
        self
    }

    /// Streams the body chunk by chunk (sent with `Transfer-Encoding: chunked`), for bodies whose
    /// length is not known up front. The iterator runs in the connection's greenlet and may
    /// block (it is a greenlet).
    pub fn stream(mut self, chunks: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Response {
        self.body = Body::Stream(Box::new(chunks));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish()
    }
}

/// The reason phrase for `status`.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
