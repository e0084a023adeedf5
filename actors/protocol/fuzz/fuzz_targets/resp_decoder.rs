//! The RESP request decoder, on any bytes a client can send. The first input byte seeds how the
//! rest is split into reads; the rest is the stream.
//!
//! Checked for both the real limits and tight ones (which make the limit checks reachable with
//! small inputs): no panic; the same requests and the same protocol error whether the stream
//! arrives whole, byte by byte or in uneven reads; no request beyond the limits; the read
//! buffer never grows far beyond the bytes received (an announced length is not reserved up
//! front); and every decoded request, encoded again as a client would, decodes to itself.

#![no_main]

mod chunks;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use protocol::resp::{encode_request, RespCodec, RespError, RespLimits, READ_BUFFER_CAPACITY};
use tokio_util::codec::Decoder;

/// Small enough that inputs of a few hundred bytes cross every limit.
const TIGHT: RespLimits =
    RespLimits { max_bulk_len: 64, max_multibulk_len: 8, max_inline_len: 32, max_request_len: 100 };

#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<Vec<Bytes>>,
    error: Option<String>,
}

/// Feeds the pieces one after another as a Session reads them, decoding all it can after each,
/// then ends the stream.
fn decode(limits: RespLimits, pieces: &[&[u8]]) -> Outcome {
    let mut codec = RespCodec::new(limits);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_CAPACITY);
    let mut received = 0;
    let mut requests = Vec::new();
    let protocol_error = |e| match e {
        RespError::Protocol(msg) => msg,
        RespError::Io(e) => panic!("the decoder invented an I/O error: {e}"),
    };
    for piece in pieces {
        buf.extend_from_slice(piece);
        received += piece.len();
        loop {
            let decoded = codec.decode(&mut buf);
            // Capacity is bounded by what arrived, whatever length a header announced.
            let bound = 8 * (received + 64 * 1024);
            assert!(buf.capacity() <= bound, "{} bytes reserved after {received} received", buf.capacity());
            match decoded {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(e) => return Outcome { requests, error: Some(protocol_error(e)) },
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(None) => {}
        Ok(Some(request)) => panic!("decode_eof found a request decode missed: {request:?}"),
        Err(e) => return Outcome { requests, error: Some(protocol_error(e)) },
    }
    assert!(buf.is_empty(), "decode_eof left {} bytes", buf.len());
    Outcome { requests, error: None }
}

fn check(limits: RespLimits, seed: u8, stream: &[u8]) {
    let whole = decode(limits, &[stream]);
    assert_eq!(decode(limits, &chunks::bytewise(stream)), whole, "byte by byte");
    assert_eq!(decode(limits, &chunks::uneven(stream, seed)), whole, "uneven reads");
    if let Some(error) = &whole.error {
        assert!(error.starts_with("Protocol error: "), "{error:?}");
    }
    for request in &whole.requests {
        assert!(!request.is_empty(), "an empty request was decoded");
        // Inline requests are bounded by the line, multibulk ones by the other limits.
        let largest = limits.max_bulk_len.max(limits.max_inline_len);
        assert!(request.iter().all(|arg| arg.len() <= largest), "an argument beyond the limits");
        let total: usize = request.iter().map(Bytes::len).sum();
        let request_limit = limits.max_request_len.max(limits.max_bulk_len).max(limits.max_inline_len);
        assert!(total <= request_limit, "a request of {total} bytes");
        assert!(request.len() <= limits.max_multibulk_len.max(limits.max_inline_len), "too many arguments");

        let args: Vec<&[u8]> = request.iter().map(|a| &a[..]).collect();
        let again = decode(RespLimits::default(), &[&encode_request(&args)]);
        assert_eq!(again, Outcome { requests: vec![request.clone()], error: None }, "re-encoded");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    check(RespLimits::default(), seed, stream);
    check(TIGHT, seed, stream);
});
