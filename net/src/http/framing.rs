//! How a request's body is delimited, decided from its head, and the strict parse of the numbers
//! that delimit it.
//!
//! Framing is where request smuggling lives: a proxy in front and this server must never
//! disagree on where one request ends. So the rules are RFC 9112's strictest reading, as Go's
//! `net/http` applies them:
//!
//! * `Transfer-Encoding` with `Content-Length`, or in an HTTP/1.0 request, is refused (`400`,
//!   then the connection closes) rather than guessed at (RFC 9112 section 6.1 allows either
//!   refusing or using the transfer coding and closing; refusing is simpler to get right).
//! * `chunked` is the only transfer coding; more than one `Transfer-Encoding` field, or any other
//!   coding in it, gets `501`.
//! * `Content-Length` is `1*DIGIT`: no sign, no inner spaces, no list; two fields must agree.
//! * A chunk size is `1*HEXDIG`, optionally followed by extensions after `;` (ignored); no sign,
//!   no leading space, and at most 16 digits (more would overflow).
//!
//! Rejected: trimming and `str::parse`, which accept `+3` (Rust's integer parsers take a leading
//! plus sign): `Content-Length: +3` then framed a body that a stricter proxy would have seen as
//! the start of the next request.

use super::message::Request;

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` bytes (zero without the header).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that cannot be served: its status and why.
pub(crate) type Refusal = (u16, &'static str);

/// Decides the framing of `req`'s body from its head.
pub(crate) fn framing(req: &Request) -> Result<Framing, Refusal> {
    let k = &req.known;
    let Some(te) = k.transfer_encoding else {
        if k.content_length_repeated {
            return Err((400, "conflicting content-length"));
        }
        return match k.content_length {
            None => Ok(Framing::Length(0)),
            Some(s) => parse_content_length(req.text(s).as_bytes())
                .map(Framing::Length)
                .ok_or((400, "invalid content-length")),
        };
    };
    if req.minor_version == 0 {
        return Err((400, "transfer-encoding in an HTTP/1.0 request"));
    }
    if k.content_length.is_some() {
        return Err((400, "both content-length and transfer-encoding"));
    }
    // ASCII whitespace only: `str::trim` also strips U+00A0 and U+0085, which a head read as
    // ISO-8859-1 (or sent as UTF-8) can carry, and a proxy in front would not take
    // `chunked\xa0` for `chunked` (a smuggling gap).
    if k.transfer_encoding_repeated
        || !req
            .text(te)
            .trim_matches(|c| c == ' ' || c == '\t')
            .eq_ignore_ascii_case("chunked")
    {
        return Err((501, "unsupported transfer-encoding"));
    }
    Ok(Framing::Chunked)
}

/// A `Content-Length` value: `1*DIGIT` (after the field's surrounding whitespace, which the
/// head parser has already removed), without overflow.
pub fn parse_content_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |n, &b| {
        let d = b.wrapping_sub(b'0');
        (d < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(usize::from(d))
    })
}

/// The size on a chunk-size line (its line ending already removed): `1*HEXDIG`, then nothing,
/// or whitespace and `;` extensions, which are ignored. `None` if malformed or over 16 digits.
pub(crate) fn parse_chunk_size(line: &[u8]) -> Option<usize> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    // Extensions are ignored, but a bare CR or any other control byte in them is malformed
    // (RFC 9112 2.2: a bare CR must not be taken as a line break or passed along).
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    usize::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::{parse_chunk_size, parse_content_length};

    #[test]
    fn http_content_length_is_digits_only() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"+3",
            b"-3",
            b"3 3",
            b"0x3",
            b"3,3",
            b" 3",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_content_length(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn http_chunk_size_is_hex_digits_then_extensions() {
        assert_eq!(parse_chunk_size(b"a"), Some(10));
        assert_eq!(parse_chunk_size(b"FF"), Some(255));
        assert_eq!(parse_chunk_size(b"3;name=value"), Some(3));
        assert_eq!(parse_chunk_size(b"3 ;ext"), Some(3));
        assert_eq!(parse_chunk_size(b"3;a\rb"), None);
        assert_eq!(parse_chunk_size(b"3;a\0"), None);
        assert_eq!(parse_chunk_size(b"0"), Some(0));
        assert_eq!(parse_chunk_size(b"ffffffffffffffff"), Some(usize::MAX));
        for bad in [
            &b""[..],
            b"+a",
            b" a",
            b"a b",
            b"0xa",
            b"g",
            b"1ffffffffffffffff",
            b";x",
        ] {
            assert_eq!(
                parse_chunk_size(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
