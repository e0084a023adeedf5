//! RESP (REdis Serialization Protocol) codec for client connections.
//!
//! The server side of RESP is asymmetric, and so is this module:
//!
//! * **Requests** are decoded into plain argument vectors (`Vec<Bytes>`). Clients send
//!   either a multibulk request (`*<n>\r\n` followed by `n` bulk strings `$<len>\r\n<data>\r\n`)
//!   or an *inline* command: one line of whitespace separated words, quoted like
//!   Redis's `sdssplitargs`, which is what `telnet`/`nc` users type. Parsing follows
//!   the rules of Redis's `processMultibulkBuffer` / `processInlineBuffer`, including the
//!   exact `Protocol error: ...` texts, so clients and test suites written against Redis
//!   see the same answers.
//! * **Replies** are [`Frame`]s encoded for the protocol version the connection negotiated
//!   with `HELLO` (2 or 3). RESP3-only types are downgraded for RESP2 clients the way Redis
//!   does it (maps become flat arrays, booleans become integers, doubles become bulk strings...).
//!
//! The decoder is incremental: input may arrive split at any byte and it keeps its parse
//! state between calls instead of re-parsing the request from its start. Arguments are
//! split off the read buffer without copying (inline arguments that contain escapes are
//! the exception, as their bytes differ from the input). A consequence worth knowing:
//! an argument `Bytes` keeps the read buffer chunk it came from alive, so code that stores
//! small arguments for a long time may prefer `Bytes::copy_from_slice`.
//!
//! A protocol violation is reported as [`RespError::Protocol`]; the connection is expected
//! to answer `-ERR <message>` and close, as Redis does, because the stream can no longer be
//! trusted to be in sync.
//!
//! Where this decoder is deliberately stricter or more predictable than Redis:
//! * the two bytes after bulk data must be CRLF (Redis skips them unchecked), otherwise
//!   `Protocol error: bulk data not terminated by CRLF`, a text of ours;
//! * a `*`/`$` header line must end in CRLF, not CR plus any byte;
//! * overlong lines are judged by the length of the line itself, so the verdict does not
//!   depend on how the network happened to chunk the input;
//! * a NUL byte in an inline request is an ordinary byte (Redis's C-string parsing stops there).

use std::fmt::{self, Write as _};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// A reply frame. RESP3-only variants are downgraded when encoding for a RESP2 client.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`; the string includes the prefix word, e.g. `"ERR syntax error"`.
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// RESP2 `$-1`, RESP3 `_`.
    Null,
    /// RESP2 `*-1`, RESP3 `_`.
    NullArray,
    /// `*N`
    Array(Vec<Frame>),
    /// RESP3 `%N`; RESP2 a flat array of `2N` elements.
    Map(Vec<(Frame, Frame)>),
    /// Pairs that may repeat (`HRANDFIELD ... WITHVALUES`): RESP3 an array of two-element
    /// arrays; RESP2 a flat array of `2N` elements.
    Pairs(Vec<(Frame, Frame)>),
    /// RESP3 `~N`; RESP2 an array.
    Set(Vec<Frame>),
    /// RESP3 `,1.5`; RESP2 a bulk string of the same text.
    Double(f64),
    /// RESP3 `#t` / `#f`; RESP2 the integer 1 / 0.
    Boolean(bool),
    /// RESP3 `=N\r\ntxt:...`; RESP2 a bulk string.
    Verbatim(String),
    /// RESP3 `>N`, out-of-band data (a pub/sub message); RESP2 an array.
    Push(Vec<Frame>),
}

impl Frame {
    /// The `+OK` status reply.
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// An error reply; `msg` should start with the error code, e.g. `"ERR syntax error"`.
    pub fn error(msg: impl Into<String>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A bulk string reply.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// About how many bytes this frame takes once encoded: never much less than the real
    /// size in either protocol, cheap to compute. Sessions use it to bound a client's
    /// unwritten output.
    pub fn wire_size(&self) -> usize {
        // A type byte, up to 20 digits and CRLF.
        const HEADER: usize = 23;
        match self {
            Frame::Simple(s) | Frame::Error(s) => s.len() + 3,
            Frame::Integer(_) => HEADER,
            Frame::Double(_) => HEADER + 10,
            Frame::Null | Frame::NullArray | Frame::Boolean(_) => 5,
            Frame::Bulk(b) => HEADER + b.len() + 2,
            Frame::Verbatim(text) => HEADER + text.len() + 6,
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                HEADER + items.iter().map(Frame::wire_size).sum::<usize>()
            }
            Frame::Map(pairs) => {
                HEADER + pairs.iter().map(|(k, v)| k.wire_size() + v.wire_size()).sum::<usize>()
            }
            Frame::Pairs(pairs) => {
                HEADER + pairs.iter().map(|(k, v)| HEADER + k.wire_size() + v.wire_size()).sum::<usize>()
            }
        }
    }
}

/// Size limits applied while decoding requests. The defaults are Redis's.
#[derive(Debug, Clone, Copy)]
pub struct RespLimits {
    /// Largest accepted bulk string (Redis `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Largest accepted number of arguments in one multibulk request.
    pub max_multibulk_len: usize,
    /// Longest accepted inline request line, and longest `*`/`$` header line.
    pub max_inline_len: usize,
    /// Most argument bytes one request may carry, all its bulk strings together (Redis's
    /// `client-query-buffer-limit` plays this role). A request becomes one Raft entry, and an
    /// entry must fit in one peer frame, so this stays well under the peer transport's frame
    /// limit. Never less than `max_bulk_len` in effect.
    pub max_request_len: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_request_len: 512 * 1024 * 1024 + 64 * 1024,
        }
    }
}

/// Errors of the RESP codec.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The client broke the protocol; the message is Redis's own text after "ERR ", e.g.
    /// "Protocol error: invalid multibulk length". The connection is answered with
    /// `-ERR <message>` and closed.
    #[error("{0}")]
    Protocol(String),
    /// Reading from or writing to the connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn protocol_error<T>(msg: &str) -> Result<T, RespError> {
    Err(RespError::Protocol(format!("Protocol error: {msg}")))
}

/// Redis preallocates at most this many argument slots, so a client announcing a huge
/// multibulk count cannot make us allocate for arguments it never sends.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// Lower bound for buffer growth while a large bulk string arrives (see `await_bulk`).
const MIN_BULK_RESERVE: usize = 64 * 1024;

/// Between requests, a read buffer larger than this (left over from a big request) is
/// replaced by a small one, so an idle connection does not keep a big request's memory.
const MAX_IDLE_READ_CAPACITY: usize = 64 * 1024;

/// The capacity a connection's read buffer starts with, and a replaced one gets. Small, so
/// idle connections are cheap; a burst of pipelined requests is read in several reads.
pub const READ_BUFFER_CAPACITY: usize = 2 * 1024;

/// Decodes client requests (RESP arrays of bulk strings, or inline commands) into argument
/// vectors, and encodes reply Frames for the connection's protocol version (2 or 3).
#[derive(Debug)]
pub struct RespCodec {
    limits: RespLimits,
    protocol: u8,
    /// Arguments still to be read for the multibulk request in progress; 0 between requests.
    args_left: usize,
    /// Arguments of the multibulk request in progress.
    args: Vec<Bytes>,
    /// Length announced by the `$<len>` header whose data has not fully arrived yet.
    bulk_len: Option<usize>,
    /// Bulk bytes announced so far by the multibulk request in progress.
    request_len: usize,
    /// How many bytes of the unterminated line at the start of the buffer have already been
    /// searched for its terminator, so a slowly arriving line is not rescanned every time.
    scanned: usize,
}

impl RespCodec {
    /// A codec speaking RESP2, the protocol every connection starts with.
    pub fn new(limits: RespLimits) -> Self {
        RespCodec {
            limits,
            protocol: 2,
            args_left: 0,
            args: Vec::new(),
            bulk_len: None,
            request_len: 0,
            scanned: 0,
        }
    }

    /// Selects the reply protocol. Versions other than 2 and 3 do not exist; anything
    /// from 3 up is treated as 3 and anything below as 2, rather than panicking.
    pub fn set_protocol(&mut self, version: u8) {
        self.protocol = if version >= 3 { 3 } else { 2 };
    }

    /// The reply protocol version in use: 2 or 3.
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    fn reset_request(&mut self) {
        self.args_left = 0;
        self.args = Vec::new();
        self.bulk_len = None;
        self.request_len = 0;
        self.scanned = 0;
    }

    /// Between requests: gives back the memory of a read buffer that grew for a big request
    /// (or a big pipelined burst) once little of it is in use.
    fn shrink_idle_buffer(src: &mut BytesMut) {
        if src.capacity() > MAX_IDLE_READ_CAPACITY && src.len() <= READ_BUFFER_CAPACITY / 2 {
            let mut small = BytesMut::with_capacity(READ_BUFFER_CAPACITY);
            small.extend_from_slice(src);
            *src = small;
        }
    }

    fn consume(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n);
        self.scanned = 0;
    }

    /// Position of the first `terminator` in `src`, searching only bytes not searched before.
    fn find(&mut self, src: &[u8], terminator: u8) -> Option<usize> {
        // Guarding with `min` keeps a caller that hands us a different buffer from panicking.
        let from = self.scanned.min(src.len());
        match src[from..].iter().position(|&b| b == terminator) {
            Some(i) => {
                self.scanned = from + i;
                Some(from + i)
            }
            None => {
                self.scanned = src.len();
                None
            }
        }
    }

    /// Finds the `\r` ending the `*`/`$` header line at the start of `src`; `Ok(None)` until
    /// the byte after it has arrived too.
    ///
    /// Redis only checks the length of an unterminated line, so whether an overlong line is
    /// rejected there depends on how the input was chunked by the network; measuring the
    /// line itself gives the same verdict for every split of the same input.
    fn header_line(&mut self, src: &[u8], too_big: &str) -> Result<Option<usize>, RespError> {
        match self.find(src, b'\r') {
            Some(cr) if cr > self.limits.max_inline_len => protocol_error(too_big),
            Some(cr) if cr + 1 < src.len() => Ok(Some(cr)),
            Some(_) => Ok(None),
            None if src.len() > self.limits.max_inline_len => protocol_error(too_big),
            None => Ok(None),
        }
    }

    /// Reads a `*<n>\r\n` header. Returns the argument count, 0 for the requests Redis
    /// silently skips (`*0`, `*-1` and any other negative count).
    fn multibulk_header(&mut self, src: &mut BytesMut) -> Result<Option<usize>, RespError> {
        let Some(cr) = self.header_line(src, "too big mbulk count string")? else {
            return Ok(None);
        };
        let count = match parse_redis_int(&src[1..cr]) {
            Some(n) if src[cr + 1] == b'\n' => n,
            _ => return protocol_error("invalid multibulk length"),
        };
        let count = match usize::try_from(count) {
            Ok(n) if n <= self.limits.max_multibulk_len => n,
            Err(_) if count < 0 => 0,
            _ => return protocol_error("invalid multibulk length"),
        };
        self.consume(src, cr + 2);
        Ok(Some(count))
    }

    /// Reads a `$<len>\r\n` header.
    fn bulk_header(&mut self, src: &mut BytesMut) -> Result<Option<usize>, RespError> {
        let Some(cr) = self.header_line(src, "too big bulk count string")? else {
            return Ok(None);
        };
        if src[0] != b'$' {
            // Redis turns CR/LF in error messages into spaces so the reply stays one line.
            let got = match src[0] {
                b'\r' | b'\n' => ' ',
                other => other as char,
            };
            return Err(RespError::Protocol(format!("Protocol error: expected '$', got '{got}'")));
        }
        let len = match parse_redis_int(&src[1..cr]) {
            Some(n) if src[cr + 1] == b'\n' => usize::try_from(n).ok(),
            _ => None,
        };
        match len {
            // The second bound only matters on 32-bit targets, where `len + 2` could overflow.
            Some(len) if len <= self.limits.max_bulk_len && len <= usize::MAX - 2 => {
                let request_limit = self.limits.max_request_len.max(self.limits.max_bulk_len);
                if self.request_len.saturating_add(len) > request_limit {
                    return protocol_error("too big request");
                }
                self.request_len += len;
                self.consume(src, cr + 2);
                Ok(Some(len))
            }
            _ => protocol_error("invalid bulk length"),
        }
    }

    /// Makes room for the rest of a bulk string of `len` bytes whose data starts at `src[0]`.
    ///
    /// Reserving the whole announced size would let a client make us allocate 512 MiB
    /// with a 15 byte header, so growth is tied to the bytes that have really arrived:
    /// at most doubling per step. Large values still need only O(log n) reallocations.
    fn await_bulk(src: &mut BytesMut, len: usize) {
        let missing = (len + 2).saturating_sub(src.len());
        let step = missing.min(src.len().max(MIN_BULK_RESERVE));
        src.reserve(step);
    }

    /// Continues the multibulk request in progress; `Some` once all its arguments are in.
    fn multibulk_args(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        while self.args_left > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => match self.bulk_header(src)? {
                    Some(len) => {
                        self.bulk_len = Some(len);
                        len
                    }
                    None => return Ok(None),
                },
            };
            if src.len() < len + 2 {
                Self::await_bulk(src, len);
                return Ok(None);
            }
            // Redis skips these two bytes unchecked; checking them catches clients whose
            // announced length disagrees with the data before the stream desynchronises.
            if &src[len..len + 2] != b"\r\n" {
                return protocol_error("bulk data not terminated by CRLF");
            }
            let arg = src.split_to(len).freeze();
            self.consume(src, 2);
            self.args.push(arg);
            self.bulk_len = None;
            self.args_left -= 1;
        }
        let args = std::mem::take(&mut self.args);
        self.reset_request();
        Ok(Some(args))
    }

    /// Reads one inline request line. An empty `Vec` means a blank line, which is skipped.
    fn inline(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, RespError> {
        let nl = match self.find(src, b'\n') {
            // Measuring the line, not the buffer, keeps the verdict independent of chunking
            // (see `header_line`).
            Some(nl) if nl > self.limits.max_inline_len => return protocol_error("too big inline request"),
            Some(nl) => nl,
            None if src.len() > self.limits.max_inline_len => {
                return protocol_error("too big inline request")
            }
            None => return Ok(None),
        };
        let mut line = src.split_to(nl).freeze();
        self.consume(src, 1);
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        match split_inline_args(&line) {
            Some(args) => Ok(Some(args)),
            None => protocol_error("unbalanced quotes in request"),
        }
    }
}

impl Decoder for RespCodec {
    type Item = Vec<Bytes>;
    type Error = RespError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        // Each pass either returns or consumes a whole request that yields no command
        // (blank inline line, `*0`, `*-1`), so the loop always makes progress.
        loop {
            if self.args_left == 0 {
                Self::shrink_idle_buffer(src);
                let Some(&first) = src.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.inline(src)? {
                        Some(args) if args.is_empty() => continue,
                        result => return Ok(result),
                    }
                }
                match self.multibulk_header(src)? {
                    None => return Ok(None),
                    Some(0) => continue,
                    Some(n) => {
                        self.args_left = n;
                        self.args = Vec::with_capacity(n.min(MAX_PREALLOCATED_ARGS));
                    }
                }
            }
            return self.multibulk_args(src);
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(args) = self.decode(src)? {
            return Ok(Some(args));
        }
        // A client hanging up in the middle of a request is not a protocol violation:
        // Redis just drops the partial request, where the default impl would report an error.
        src.clear();
        self.reset_request();
        Ok(None)
    }
}

/// Parses a RESP length the way Redis's `string2ll` does: optional `-`, decimal digits,
/// no `+`, no spaces, no leading zeros (`0` itself excepted, `-0` rejected), no overflow.
fn parse_redis_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    // Accumulating negatively lets i64::MIN parse without overflowing.
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Splits an inline request line like Redis's `sdssplitargs`; `None` for unbalanced quotes.
fn split_inline_args(line: &Bytes) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    let at = |i: usize| line.get(i).copied();
    loop {
        while at(i).is_some_and(is_c_space) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut token = TokenBuilder::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let Some(c) = at(i) else {
                if in_double || in_single {
                    return None;
                }
                break;
            };
            if in_double {
                match (c, at(i + 1)) {
                    (b'\\', Some(b'x'))
                        if at(i + 2).is_some_and(|h| h.is_ascii_hexdigit())
                            && at(i + 3).is_some_and(|h| h.is_ascii_hexdigit()) =>
                    {
                        token.push_byte(line, (hex_value(line[i + 2]) << 4) | hex_value(line[i + 3]));
                        i += 3;
                    }
                    (b'\\', Some(escaped)) => {
                        token.push_byte(
                            line,
                            match escaped {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            },
                        );
                        i += 1;
                    }
                    (b'"', next) => {
                        if next.is_some_and(|n| !is_c_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    _ => token.push_source(line, i),
                }
            } else if in_single {
                match (c, at(i + 1)) {
                    (b'\\', Some(b'\'')) => {
                        token.push_byte(line, b'\'');
                        i += 1;
                    }
                    (b'\'', next) => {
                        if next.is_some_and(|n| !is_c_space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    _ => token.push_source(line, i),
                }
            } else {
                match c {
                    // Only these end a bare word; `\v` and `\f` are skipped between words but
                    // belong to a word they appear in, exactly as in sdssplitargs.
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        i += 1;
                        break;
                    }
                    // A quote may open in the middle of a word: `a"b c"` is the word `ab c`.
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => token.push_source(line, i),
                }
            }
            i += 1;
        }
        args.push(token.finish(line));
    }
}

/// C's `isspace` in the "C" locale, which sdssplitargs uses to skip blanks.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(h: u8) -> u8 {
    match h {
        b'0'..=b'9' => h - b'0',
        b'a'..=b'f' => h - b'a' + 10,
        _ => h - b'A' + 10,
    }
}

/// Accumulates one inline argument. As long as the argument is a contiguous run of the
/// input line it stays a range (and becomes a zero-copy slice); the first escape or quote
/// that makes it differ from the input switches it to an owned buffer.
struct TokenBuilder {
    start: usize,
    end: usize,
    owned: Option<Vec<u8>>,
}

impl TokenBuilder {
    fn new() -> Self {
        TokenBuilder { start: 0, end: 0, owned: None }
    }

    /// Appends `line[i]` unchanged.
    fn push_source(&mut self, line: &[u8], i: usize) {
        match &mut self.owned {
            Some(buf) => buf.push(line[i]),
            None if self.start == self.end => {
                self.start = i;
                self.end = i + 1;
            }
            None if self.end == i => self.end += 1,
            None => self.owned_buf(line).push(line[i]),
        }
    }

    /// Appends a byte produced by an escape sequence.
    fn push_byte(&mut self, line: &[u8], b: u8) {
        self.owned_buf(line).push(b);
    }

    fn owned_buf(&mut self, line: &[u8]) -> &mut Vec<u8> {
        let range = self.start..self.end;
        self.owned.get_or_insert_with(|| line[range].to_vec())
    }

    fn finish(self, line: &Bytes) -> Bytes {
        match self.owned {
            Some(buf) => Bytes::from(buf),
            None => line.slice(self.start..self.end),
        }
    }
}

impl Encoder<Frame> for RespCodec {
    type Error = RespError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), RespError> {
        encode_frame(&frame, self.protocol, dst);
        Ok(())
    }
}

impl Encoder<&Frame> for RespCodec {
    type Error = RespError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), RespError> {
        encode_frame(frame, self.protocol, dst);
        Ok(())
    }
}

fn encode_frame(frame: &Frame, protocol: u8, dst: &mut BytesMut) {
    let resp3 = protocol >= 3;
    match frame {
        Frame::Simple(s) => put_line(dst, b'+', s),
        Frame::Error(s) => put_line(dst, b'-', s),
        Frame::Integer(n) => put_number(dst, b':', *n < 0, n.unsigned_abs()),
        Frame::Bulk(b) => put_bulk(dst, b),
        Frame::Null if resp3 => dst.put_slice(b"_\r\n"),
        Frame::Null => dst.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => dst.put_slice(b"_\r\n"),
        Frame::NullArray => dst.put_slice(b"*-1\r\n"),
        Frame::Array(items) => {
            put_len(dst, b'*', items.len());
            for item in items {
                encode_frame(item, protocol, dst);
            }
        }
        Frame::Map(pairs) => {
            if resp3 {
                put_len(dst, b'%', pairs.len());
            } else {
                put_len(dst, b'*', 2 * pairs.len());
            }
            for (key, value) in pairs {
                encode_frame(key, protocol, dst);
                encode_frame(value, protocol, dst);
            }
        }
        Frame::Pairs(pairs) => {
            put_len(dst, b'*', if resp3 { pairs.len() } else { 2 * pairs.len() });
            for (first, second) in pairs {
                if resp3 {
                    put_len(dst, b'*', 2);
                }
                encode_frame(first, protocol, dst);
                encode_frame(second, protocol, dst);
            }
        }
        Frame::Set(items) | Frame::Push(items) => {
            let kind = match frame {
                Frame::Set(_) => b'~',
                _ => b'>',
            };
            put_len(dst, if resp3 { kind } else { b'*' }, items.len());
            for item in items {
                encode_frame(item, protocol, dst);
            }
        }
        Frame::Double(d) => {
            let mut text = StackBuf::new();
            format_double(*d, &mut text);
            if resp3 {
                dst.put_u8(b',');
                dst.put_slice(text.as_bytes());
                dst.put_slice(b"\r\n");
            } else {
                put_bulk(dst, text.as_bytes());
            }
        }
        Frame::Boolean(b) if resp3 => dst.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => dst.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Frame::Verbatim(text) if resp3 => {
            put_len(dst, b'=', text.len() + 4);
            dst.put_slice(b"txt:");
            dst.put_slice(text.as_bytes());
            dst.put_slice(b"\r\n");
        }
        Frame::Verbatim(text) => put_bulk(dst, text.as_bytes()),
    }
}

/// Writes a `+`/`-` line. CR and LF would end the line early and desynchronise the
/// client, so they become spaces, as Redis does for error messages.
fn put_line(dst: &mut BytesMut, prefix: u8, text: &str) {
    dst.reserve(text.len() + 3);
    dst.put_u8(prefix);
    if text.bytes().any(|b| b == b'\r' || b == b'\n') {
        dst.extend(text.bytes().map(|b| match b {
            b'\r' | b'\n' => b' ',
            other => other,
        }));
    } else {
        dst.put_slice(text.as_bytes());
    }
    dst.put_slice(b"\r\n");
}

fn put_bulk(dst: &mut BytesMut, data: &[u8]) {
    dst.reserve(data.len() + 16);
    put_len(dst, b'$', data.len());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

fn put_len(dst: &mut BytesMut, prefix: u8, len: usize) {
    put_number(dst, prefix, false, len as u64);
}

/// Writes `<prefix>[-]<magnitude>\r\n` without going through `fmt`.
fn put_number(dst: &mut BytesMut, prefix: u8, negative: bool, magnitude: u64) {
    let mut digits = [0u8; 20];
    let mut pos = digits.len();
    let mut rest = magnitude;
    loop {
        pos -= 1;
        digits[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    dst.put_u8(prefix);
    if negative {
        dst.put_u8(b'-');
    }
    dst.put_slice(&digits[pos..]);
    dst.put_slice(b"\r\n");
}

/// A small fixed buffer for formatting numbers without a heap allocation.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf { buf: [0; 64], len: 0 }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        // Every caller writes well under 64 bytes (a double needs at most ~25); truncating
        // instead of panicking keeps a mistake here from taking the server down.
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > self.buf.len() - self.len {
            return Err(fmt::Error);
        }
        self.push(s.as_bytes());
        Ok(())
    }
}

/// Redis prints integral doubles as integers while `|d| <= LLONG_MAX/2` (its `double2ll`);
/// that bound, as a double, is exactly 2^62.
const DOUBLE_AS_INTEGER_LIMIT: f64 = 4_611_686_018_427_387_904.0;

/// A double's text as a RESP2 reply carries it (see [`format_double`]).
pub fn double_text(d: f64) -> String {
    let mut text = StackBuf::new();
    format_double(d, &mut text);
    String::from_utf8_lossy(text.as_bytes()).into_owned()
}

/// Formats a double exactly like Redis's `d2string` (Redis 7.2+), which every RESP3 double
/// and RESP2 double-as-bulk reply goes through: `nan`, `inf`, `-inf`, `0`, `-0`; integral
/// values up to 2^62 in magnitude as plain integers; everything else as the shortest
/// digit string that round-trips, laid out by the rules of Redis's `fpconv_dtoa`.
fn format_double(d: f64, out: &mut StackBuf) {
    if d.is_nan() {
        return out.push(b"nan");
    }
    if d.is_infinite() {
        return out.push(if d < 0.0 { b"-inf" } else { b"inf" });
    }
    if d == 0.0 {
        return out.push(if d.is_sign_negative() { b"-0" } else { b"0" });
    }
    if d.trunc() == d && d.abs() <= DOUBLE_AS_INTEGER_LIMIT {
        let _ = write!(out, "{}", d as i64);
        return;
    }

    // Rust's `{:e}` yields the shortest round-tripping digits ("1.2345e-7"); only the
    // layout differs from fpconv, so take the digits and exponent and lay them out anew.
    let mut sci = StackBuf::new();
    let _ = write!(sci, "{:e}", d.abs());
    let sci = sci.as_bytes();
    let e_pos = sci.iter().position(|&b| b == b'e').unwrap_or(sci.len());
    let mut digits = [0u8; 32];
    let mut ndigits = 0;
    for &b in &sci[..e_pos] {
        if b.is_ascii_digit() && ndigits < digits.len() {
            digits[ndigits] = b;
            ndigits += 1;
        }
    }
    let digits = &digits[..ndigits];
    let exp10: i32 = std::str::from_utf8(&sci[(e_pos + 1).min(sci.len())..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let n = ndigits as i32;
    // The value is digits * 10^k.
    let k = exp10 - (n - 1);

    if d < 0.0 {
        out.push(b"-");
    }
    if k >= 0 && exp10 < n + 7 {
        out.push(digits);
        for _ in 0..k {
            out.push(b"0");
        }
    } else if k < 0 && (k > -7 || exp10.abs() < 4) {
        let int_digits = n + k;
        if int_digits <= 0 {
            out.push(b"0.");
            for _ in 0..-int_digits {
                out.push(b"0");
            }
            out.push(digits);
        } else {
            let (int_part, frac_part) = digits.split_at(int_digits as usize);
            out.push(int_part);
            out.push(b".");
            out.push(frac_part);
        }
    } else {
        out.push(&digits[..1]);
        if digits.len() > 1 {
            out.push(b".");
            out.push(&digits[1..]);
        }
        out.push(if exp10 < 0 { b"e-" } else { b"e+" });
        let _ = write!(out, "{}", exp10.abs());
    }
}

/// One request as a client writes it: a RESP array of bulk strings. The codec never sends
/// requests; this is for benchmarks and tests that play the client.
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What decoding a byte stream produced: the commands, then the error that stopped it.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        commands: Vec<Vec<Bytes>>,
        error: Option<String>,
    }

    fn codec_with(limits: RespLimits) -> RespCodec {
        RespCodec::new(limits)
    }

    /// Feeds `chunks` one after another, decoding everything available after each.
    fn decode_chunks(codec: &mut RespCodec, chunks: &[&[u8]]) -> Outcome {
        let mut buf = BytesMut::new();
        let mut commands = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(cmd)) => commands.push(cmd),
                    Ok(None) => break,
                    Err(RespError::Protocol(msg)) => return Outcome { commands, error: Some(msg) },
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        }
        Outcome { commands, error: None }
    }

    fn decode_with(limits: RespLimits, input: &[u8]) -> Outcome {
        decode_chunks(&mut codec_with(limits), &[input])
    }

    fn decode(input: &[u8]) -> Outcome {
        decode_with(RespLimits::default(), input)
    }

    fn decode_split(limits: RespLimits, input: &[u8], cuts: &[usize]) -> Outcome {
        let mut chunks = Vec::new();
        let mut prev = 0;
        for &cut in cuts {
            chunks.push(&input[prev..cut]);
            prev = cut;
        }
        chunks.push(&input[prev..]);
        decode_chunks(&mut codec_with(limits), &chunks)
    }

    fn cmd(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn ok(commands: Vec<Vec<Bytes>>) -> Outcome {
        Outcome { commands, error: None }
    }

    fn protocol_error_of(input: &[u8]) -> String {
        decode(input).error.unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
    }

    fn encode(frame: Frame, protocol: u8) -> String {
        let mut codec = RespCodec::new(RespLimits::default());
        codec.set_protocol(protocol);
        let mut out = BytesMut::new();
        codec.encode(frame, &mut out).unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn double(d: f64) -> String {
        let mut buf = StackBuf::new();
        format_double(d, &mut buf);
        String::from_utf8(buf.as_bytes().to_vec()).unwrap()
    }

    /// How many cases a randomized test runs: `RAFTKV_PROPTEST_CASES` if set, as for the
    /// property tests in `actors/tests/` (a longer soak where the fuzzer is unavailable).
    fn cases(default: usize) -> usize {
        match std::env::var("RAFTKV_PROPTEST_CASES") {
            Ok(n) => {
                n.trim().parse().unwrap_or_else(|_| panic!("RAFTKV_PROPTEST_CASES={n:?} is not a number"))
            }
            Err(_) => default,
        }
    }

    /// Up to five sorted cut points in `0..=len`, where a split test divides its input.
    fn cuts(rng: &mut fastrand::Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.usize(..6)).map(|_| rng.usize(..=len)).collect();
        cuts.sort_unstable();
        cuts
    }

    /// Input mixing every request shape the decoder knows.
    const MIXED: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$8\r\nva\r\nl\0ue\r\n\
        PING\r\n\
        *0\r\n*-1\r\n   \r\n\n\
        ECHO \"a b\\x41\\n\" 'it\\'s'\n\
        *1\r\n$0\r\n\r\n";

    fn mixed_commands() -> Vec<Vec<Bytes>> {
        vec![
            cmd(&["SET", "key", "va\r\nl\0ue"]),
            cmd(&["PING"]),
            cmd(&["ECHO", "a bA\n", "it's"]),
            cmd(&[""]),
        ]
    }

    #[test]
    fn decodes_a_multibulk_command() {
        assert_eq!(decode(b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"), ok(vec![cmd(&["GET", "foo"])]));
    }

    #[test]
    fn decodes_pipelined_commands_in_order() {
        assert_eq!(decode(MIXED), ok(mixed_commands()));
    }

    #[test]
    fn partial_input_at_every_split_point_decodes_identically() {
        let limits = RespLimits::default();
        for cut in 0..=MIXED.len() {
            assert_eq!(decode_split(limits, MIXED, &[cut]), ok(mixed_commands()), "cut at {cut}");
        }
        let bytewise: Vec<usize> = (1..MIXED.len()).collect();
        assert_eq!(decode_split(limits, MIXED, &bytewise), ok(mixed_commands()));
    }

    #[test]
    fn errors_are_reported_identically_at_every_split_point() {
        let limits = RespLimits { max_inline_len: 16, ..RespLimits::default() };
        let inputs: &[&[u8]] = &[
            b"PING\r\n*1\r\n:1\r\n",
            b"*1\r\n$3\r\nabcd\r\n",
            b"*x\r\n",
            b"*1\r\n$99999999999999999999\r\n",
            b"*1\r\n$1234567890123456789\r",
            b"PING\r\nECHO \"unterminated\r\n",
            b"ECHO this-line-is-far-too-long-for-the-limit\r\n",
        ];
        for input in inputs {
            let whole = decode_with(limits, input);
            assert!(whole.error.is_some(), "{:?}", String::from_utf8_lossy(input));
            for cut in 0..=input.len() {
                assert_eq!(decode_split(limits, input, &[cut]), whole, "cut at {cut}");
            }
            let bytewise: Vec<usize> = (1..input.len()).collect();
            assert_eq!(decode_split(limits, input, &bytewise), whole);
        }
    }

    #[test]
    fn incomplete_request_waits_for_more_bytes() {
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$3\r\nfo"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"o\r");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(cmd(&["GET", "foo"])));
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_and_negative_multibulk_counts_are_skipped() {
        assert_eq!(decode(b"*0\r\n*-1\r\n*-20\r\n*1\r\n$4\r\nPING\r\n"), ok(vec![cmd(&["PING"])]));
    }

    #[test]
    fn bulk_payload_is_binary_safe() {
        let payload: Vec<u8> = (0..=255).collect();
        let input = encode_request(&[b"SET", b"k", &payload]);
        let out = decode(&input);
        assert_eq!(out.error, None);
        assert_eq!(&out.commands[0][2][..], &payload[..]);
    }

    #[test]
    fn arguments_are_split_off_the_buffer_without_copying() {
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\nSET plain words\r\n"[..]);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let mut args = codec.decode(&mut buf).unwrap().unwrap();
        args.extend(codec.decode(&mut buf).unwrap().unwrap());
        assert_eq!(args, cmd(&["GET", "hello", "SET", "plain", "words"]));
        for arg in &args {
            assert!(range.contains(&(arg.as_ptr() as usize)), "{arg:?} was copied");
        }
    }

    #[test]
    fn inline_command_splits_on_whitespace() {
        assert_eq!(
            decode(b"SET  key\tvalue \r\nGET key\nEXISTS a\x0bb\x0c c\r\r\n"),
            ok(vec![
                cmd(&["SET", "key", "value"]),
                cmd(&["GET", "key"]),
                // Like sdssplitargs: \v and \f separate nothing inside a word.
                cmd(&["EXISTS", "a\x0bb\x0c", "c"]),
            ])
        );
    }

    #[test]
    fn inline_command_with_quotes() {
        assert_eq!(decode(b"SET \"k e y\" 'v a l'\r\n"), ok(vec![cmd(&["SET", "k e y", "v a l"])]));
        assert_eq!(
            decode(b"ECHO \"\\n\\r\\t\\b\\a\\\\\\\"\\x41\\x7a\\xZZ\\q\"\r\n"),
            ok(vec![cmd(&["ECHO", "\n\r\t\x08\x07\\\"Az\x78ZZq"])])
        );
        assert_eq!(decode(b"ECHO 'it\\'s \\n \"raw\"'\r\n"), ok(vec![cmd(&["ECHO", "it's \\n \"raw\""])]));
        assert_eq!(decode(b"ECHO \"\" ''\r\n"), ok(vec![cmd(&["ECHO", "", ""])]));
    }

    #[test]
    fn inline_quote_may_open_in_the_middle_of_a_word() {
        assert_eq!(decode(b"ECHO a\"b c\" x'y'\r\n"), ok(vec![cmd(&["ECHO", "ab c", "xy"])]));
    }

    #[test]
    fn inline_escape_produces_raw_bytes() {
        let out = decode(b"ECHO \"\\xff\\x00\"\r\n");
        assert_eq!(out.commands[0][1], Bytes::from_static(b"\xff\x00"));
    }

    #[test]
    fn unbalanced_quotes_are_a_protocol_error() {
        for input in [
            &b"ECHO \"abc\r\n"[..],
            b"ECHO 'abc\r\n",
            b"ECHO \"abc\"def\r\n",
            b"ECHO 'abc'def\r\n",
            b"ECHO \"abc\\\"\r\n",
        ] {
            assert_eq!(protocol_error_of(input), "Protocol error: unbalanced quotes in request");
        }
    }

    #[test]
    fn blank_inline_lines_are_skipped() {
        assert_eq!(decode(b"\r\n\n \t \r\nPING\r\n"), ok(vec![cmd(&["PING"])]));
    }

    #[test]
    fn too_big_inline_request_is_rejected() {
        let limits = RespLimits { max_inline_len: 10, ..RespLimits::default() };
        // Everything before the LF counts, CR included: a buffer ending in that CR cannot
        // know yet whether an LF follows, and the verdict must not depend on chunking.
        assert_eq!(decode_with(limits, b"ECHO 1234\r\n"), ok(vec![cmd(&["ECHO", "1234"])]));
        assert_eq!(decode_with(limits, b"ECHO 12345\n"), ok(vec![cmd(&["ECHO", "12345"])]));
        let err = Some("Protocol error: too big inline request".to_owned());
        assert_eq!(decode_with(limits, b"ECHO 123456789").error, err);
        assert_eq!(decode_with(limits, b"ECHO 123456789\r\n").error, err);
        assert_eq!(decode_with(limits, b"ECHO 123").error, None);
    }

    #[test]
    fn invalid_multibulk_length_uses_redis_wording() {
        for input in [
            &b"*abc\r\n"[..],
            b"*\r\n",
            b"*1x\r\n",
            b"*+1\r\n",
            b"*01\r\n",
            b"* 1\r\n",
            b"*-0\r\n",
            b"*99999999999999999999\r\n",
            b"*1\rX",
        ] {
            assert_eq!(
                protocol_error_of(input),
                "Protocol error: invalid multibulk length",
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn multibulk_count_above_the_limit_is_rejected() {
        let limits = RespLimits { max_multibulk_len: 2, ..RespLimits::default() };
        assert_eq!(
            decode_with(limits, b"*3\r\n").error.as_deref(),
            Some("Protocol error: invalid multibulk length")
        );
        assert_eq!(protocol_error_of(b"*1048577\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(decode(b"*1048576\r\n").error, None);
    }

    #[test]
    fn rejects_non_bulk_element_with_redis_wording() {
        assert_eq!(protocol_error_of(b"*1\r\n:1\r\n"), "Protocol error: expected '$', got ':'");
        assert_eq!(protocol_error_of(b"*2\r\n$1\r\na\r\nfoo\r\n"), "Protocol error: expected '$', got 'f'");
        assert_eq!(protocol_error_of(b"*1\r\n\r\n"), "Protocol error: expected '$', got ' '");
    }

    #[test]
    fn invalid_bulk_length_uses_redis_wording() {
        for input in [
            &b"*1\r\n$-1\r\n"[..],
            b"*1\r\n$\r\n",
            b"*1\r\n$abc\r\n",
            b"*1\r\n$+3\r\n",
            b"*1\r\n$03\r\n",
            b"*1\r\n$3\rXabc\r\n",
        ] {
            assert_eq!(
                protocol_error_of(input),
                "Protocol error: invalid bulk length",
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized_bulk_length_is_a_protocol_error() {
        assert_eq!(protocol_error_of(b"*1\r\n$536870913\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(decode(b"*1\r\n$536870912\r\n").error, None);
        let limits = RespLimits { max_bulk_len: 4, ..RespLimits::default() };
        assert_eq!(
            decode_with(limits, b"*1\r\n$5\r\n").error.as_deref(),
            Some("Protocol error: invalid bulk length")
        );
    }

    #[test]
    fn overlong_header_lines_are_rejected() {
        let limits = RespLimits { max_inline_len: 8, ..RespLimits::default() };
        let err = |input: &[u8]| decode_with(limits, input).error;
        assert_eq!(err(b"*000000000"), Some("Protocol error: too big mbulk count string".to_owned()));
        assert_eq!(err(b"*1\r\n$000000000"), Some("Protocol error: too big bulk count string".to_owned()));
        // Same verdict when the terminator is already there.
        assert_eq!(
            err(b"*1\r\n$000000000\r\n"),
            Some("Protocol error: too big bulk count string".to_owned())
        );
        assert_eq!(err(b"*1\r\n$0000000"), None);
    }

    #[test]
    fn bulk_data_must_be_followed_by_crlf() {
        for input in [&b"*1\r\n$3\r\nabcd\r\n"[..], b"*1\r\n$3\r\nabc\n\r"] {
            assert_eq!(protocol_error_of(input), "Protocol error: bulk data not terminated by CRLF");
        }
    }

    #[test]
    fn announced_huge_bulk_is_not_reserved_up_front() {
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\nabc"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 1024 * 1024, "reserved {}", buf.capacity());
    }

    #[test]
    fn small_bulk_reserves_what_is_missing() {
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(&b"*1\r\n$5000\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() >= 5002);
    }

    #[test]
    fn large_bulk_buffer_grows_with_the_data_that_arrived() {
        const LEN: usize = 8 * 1024 * 1024;
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(format!("*1\r\n${LEN}\r\n").as_bytes());
        let chunk = vec![b'x'; 32 * 1024];
        let mut sent = 0;
        while sent < LEN {
            assert!(codec.decode(&mut buf).unwrap().is_none());
            assert!(
                buf.capacity() <= 4 * buf.len().max(MIN_BULK_RESERVE),
                "capacity {} for {} bytes",
                buf.capacity(),
                buf.len()
            );
            buf.extend_from_slice(&chunk);
            sent += chunk.len();
        }
        buf.extend_from_slice(b"\r\n");
        let args = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args[0].len(), LEN);
    }

    #[test]
    fn a_request_whose_arguments_exceed_the_request_limit_is_rejected() {
        let limits = RespLimits { max_bulk_len: 10, max_request_len: 16, ..RespLimits::default() };
        let fits = encode_request(&[b"SET", b"key", b"0123456789"]);
        assert_eq!(decode_with(limits, &fits), ok(vec![cmd(&["SET", "key", "0123456789"])]));
        // Rejected at the header, before the data arrives.
        let outcome = decode_with(limits, b"*3\r\n$3\r\nSET\r\n$4\r\nkey1\r\n$10\r\n");
        assert_eq!(outcome.error.as_deref(), Some("Protocol error: too big request"));
        // The limit is per request: many requests in a row are fine.
        let mut many = Vec::new();
        for _ in 0..10 {
            many.extend(encode_request(&[b"SET", b"key", b"0123456789"]));
        }
        assert_eq!(decode_with(limits, &many).commands.len(), 10);
    }

    #[test]
    fn the_read_buffer_shrinks_after_a_big_request() {
        const LEN: usize = 4 * 1024 * 1024;
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&encode_request(&[b"SET", b"k", &vec![b'x'; LEN]]));
        buf.extend_from_slice(b"PING\r\n");
        let args = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args[2].len(), LEN);
        drop(args);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(cmd(&["PING"])));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= MAX_IDLE_READ_CAPACITY, "an idle buffer keeps {} bytes", buf.capacity());
    }

    #[test]
    fn wire_size_is_never_below_the_encoded_size() {
        let frames = vec![
            Frame::ok(),
            Frame::error("ERR syntax error"),
            Frame::Integer(i64::MIN),
            Frame::bulk(vec![b'x'; 1000]),
            Frame::Null,
            Frame::NullArray,
            Frame::Double(-1.234_567_890_123_456_7e-300),
            Frame::Boolean(true),
            Frame::Verbatim("some text".into()),
            Frame::Array(vec![Frame::Integer(1), Frame::Set(vec![Frame::bulk("a")])]),
            Frame::Map(vec![(Frame::bulk("k"), Frame::Double(f64::MIN))]),
        ];
        for frame in frames {
            for protocol in [2, 3] {
                let encoded = encode(frame.clone(), protocol).len();
                assert!(frame.wire_size() >= encoded, "{frame:?}: {} < {encoded}", frame.wire_size());
                assert!(
                    frame.wire_size() <= 4 * encoded + 64,
                    "{frame:?}: {} far above {encoded}",
                    frame.wire_size()
                );
            }
        }
    }

    #[test]
    fn decode_eof_drops_a_partial_request_without_error() {
        let mut codec = RespCodec::new(RespLimits::default());
        let mut buf = BytesMut::from(&b"PING\r\n*2\r\n$3\r\nGET\r\n"[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(cmd(&["PING"])));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        // The codec is clean for reuse, not stuck half-way through the dropped request.
        buf.extend_from_slice(b"PING\r\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(cmd(&["PING"])));
    }

    #[test]
    fn redis_integer_parsing_is_strict() {
        assert_eq!(parse_redis_int(b"0"), Some(0));
        assert_eq!(parse_redis_int(b"-1"), Some(-1));
        assert_eq!(parse_redis_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"00", b"+1", b" 1", b"1 ", b"1a", b"9223372036854775808"] {
            assert_eq!(parse_redis_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn random_bytes_never_panic_and_decode_identically_however_split() {
        const ALPHABET: &[u8] = b"*$\r\n\r\n0123456789-+ \t\"'\\xAf:abc";
        let limits =
            RespLimits { max_bulk_len: 64, max_multibulk_len: 8, max_inline_len: 32, max_request_len: 100 };
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        for _ in 0..cases(20_000) {
            let len = rng.usize(..80);
            let input: Vec<u8> = (0..len)
                .map(|_| match rng.usize(..4) {
                    0 => rng.u8(..),
                    _ => ALPHABET[rng.usize(..ALPHABET.len())],
                })
                .collect();
            let whole = decode_with(limits, &input);
            let cuts = cuts(&mut rng, input.len());
            assert_eq!(
                decode_split(limits, &input, &cuts),
                whole,
                "input {:?} cuts {cuts:?}",
                String::from_utf8_lossy(&input)
            );
            let mut buf = BytesMut::from(&input[..]);
            let mut codec = codec_with(limits);
            while let Ok(Some(_)) = codec.decode_eof(&mut buf) {}
        }
    }

    #[test]
    fn random_requests_round_trip_across_random_splits() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..cases(2_000) {
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..1 + rng.usize(..4) {
                let args: Vec<Vec<u8>> = (0..1 + rng.usize(..4))
                    .map(|_| (0..rng.usize(..40)).map(|_| rng.u8(..)).collect())
                    .collect();
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                input.extend(encode_request(&refs));
                expected.push(args.into_iter().map(Bytes::from).collect::<Vec<_>>());
            }
            let cuts = cuts(&mut rng, input.len());
            assert_eq!(decode_split(RespLimits::default(), &input, &cuts), ok(expected));
        }
    }

    #[test]
    fn encodes_resp2_frames() {
        assert_eq!(encode(Frame::ok(), 2), "+OK\r\n");
        assert_eq!(encode(Frame::error("ERR syntax error"), 2), "-ERR syntax error\r\n");
        assert_eq!(encode(Frame::Integer(0), 2), ":0\r\n");
        assert_eq!(encode(Frame::Integer(-42), 2), ":-42\r\n");
        assert_eq!(encode(Frame::Integer(i64::MIN), 2), ":-9223372036854775808\r\n");
        assert_eq!(encode(Frame::bulk("foo"), 2), "$3\r\nfoo\r\n");
        assert_eq!(encode(Frame::bulk(""), 2), "$0\r\n\r\n");
        assert_eq!(
            encode(Frame::Array(vec![Frame::Integer(1), Frame::Array(vec![]), Frame::bulk("a")]), 2),
            "*3\r\n:1\r\n*0\r\n$1\r\na\r\n"
        );
    }

    #[test]
    fn encodes_nulls_per_protocol() {
        assert_eq!(encode(Frame::Null, 2), "$-1\r\n");
        assert_eq!(encode(Frame::NullArray, 2), "*-1\r\n");
        assert_eq!(encode(Frame::Null, 3), "_\r\n");
        assert_eq!(encode(Frame::NullArray, 3), "_\r\n");
    }

    #[test]
    fn encodes_map_as_flat_array_for_resp2() {
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1)), (Frame::bulk("b"), Frame::Null)]);
        assert_eq!(encode(map.clone(), 2), "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$-1\r\n");
        assert_eq!(encode(map, 3), "%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n");
    }

    #[test]
    fn downgrades_resp3_types_for_resp2() {
        assert_eq!(encode(Frame::Set(vec![Frame::bulk("x")]), 2), "*1\r\n$1\r\nx\r\n");
        assert_eq!(encode(Frame::Boolean(true), 2), ":1\r\n");
        assert_eq!(encode(Frame::Boolean(false), 2), ":0\r\n");
        assert_eq!(encode(Frame::Double(1.5), 2), "$3\r\n1.5\r\n");
        assert_eq!(encode(Frame::Double(f64::INFINITY), 2), "$3\r\ninf\r\n");
        assert_eq!(encode(Frame::Verbatim("hi".into()), 2), "$2\r\nhi\r\n");
        let pairs =
            Frame::Pairs(vec![(Frame::bulk("f"), Frame::bulk("v")), (Frame::bulk("f"), Frame::bulk("v"))]);
        assert_eq!(encode(pairs, 2), "*4\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\nf\r\n$1\r\nv\r\n");
    }

    #[test]
    fn encodes_resp3_types_natively() {
        assert_eq!(encode(Frame::Set(vec![Frame::bulk("x")]), 3), "~1\r\n$1\r\nx\r\n");
        assert_eq!(encode(Frame::Push(vec![Frame::bulk("x")]), 3), ">1\r\n$1\r\nx\r\n");
        assert_eq!(encode(Frame::Push(vec![Frame::bulk("x")]), 2), "*1\r\n$1\r\nx\r\n");
        assert_eq!(encode(Frame::Boolean(true), 3), "#t\r\n");
        assert_eq!(encode(Frame::Boolean(false), 3), "#f\r\n");
        assert_eq!(encode(Frame::Double(1.5), 3), ",1.5\r\n");
        assert_eq!(encode(Frame::Double(f64::NEG_INFINITY), 3), ",-inf\r\n");
        assert_eq!(encode(Frame::Double(f64::NAN), 3), ",nan\r\n");
        assert_eq!(encode(Frame::Verbatim("Some string".into()), 3), "=15\r\ntxt:Some string\r\n");
        let pairs = Frame::Pairs(vec![(Frame::bulk("f"), Frame::bulk("v"))]);
        assert_eq!(encode(pairs, 3), "*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    }

    #[test]
    fn doubles_are_formatted_like_redis() {
        let cases: &[(f64, &str)] = &[
            (1.5, "1.5"),
            (3.0, "3"),
            (-3.0, "-3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (0.1, "0.1"),
            (-0.1, "-0.1"),
            (123.456, "123.456"),
            (12345678.9, "12345678.9"),
            (std::f64::consts::PI, "3.141592653589793"),
            (0.0001, "0.0001"),
            (0.001234, "0.001234"),
            (0.0001234, "1.234e-4"),
            (1.5e-5, "0.000015"),
            (1e-7, "1e-7"),
            (1e17, "100000000000000000"),
            (4611686018427387904.0, "4611686018427387904"),
            (-4611686018427387904.0, "-4611686018427387904"),
            (4.7e18, "4.7e+18"),
            (9223372036854775808.0, "9223372036854776000"),
            (1e19, "1e+19"),
            (1e21, "1e+21"),
            (1e300, "1e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
        ];
        for &(value, text) in cases {
            assert_eq!(double(value), text, "{value:e}");
        }
    }

    #[test]
    fn formatted_doubles_round_trip() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let value = f64::from_bits(rng.u64(..));
            if value.is_finite() {
                let text = double(value);
                assert_eq!(text.parse::<f64>().unwrap(), value, "{text}");
            }
        }
    }

    #[test]
    fn status_and_error_lines_never_contain_line_breaks() {
        assert_eq!(encode(Frame::error("ERR bad\r\ninput\n"), 2), "-ERR bad  input \r\n");
        assert_eq!(encode(Frame::Simple("a\rb".into()), 3), "+a b\r\n");
    }

    #[test]
    fn protocol_version_is_switchable_and_clamped() {
        let mut codec = RespCodec::new(RespLimits::default());
        assert_eq!(codec.protocol(), 2);
        codec.set_protocol(3);
        assert_eq!(codec.protocol(), 3);
        codec.set_protocol(2);
        assert_eq!(codec.protocol(), 2);
        codec.set_protocol(9);
        assert_eq!(codec.protocol(), 3);
        codec.set_protocol(0);
        assert_eq!(codec.protocol(), 2);
    }

    #[test]
    fn encoding_by_reference_matches_encoding_by_value() {
        let frame = Frame::Array(vec![Frame::Double(2.5), Frame::Boolean(true)]);
        let mut codec = RespCodec::new(RespLimits::default());
        codec.set_protocol(3);
        let (mut by_ref, mut by_value) = (BytesMut::new(), BytesMut::new());
        codec.encode(&frame, &mut by_ref).unwrap();
        codec.encode(frame, &mut by_value).unwrap();
        assert_eq!(by_ref, by_value);
    }
}
