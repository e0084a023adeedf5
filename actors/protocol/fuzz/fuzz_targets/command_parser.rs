//! The command parser, on the requests the RESP decoder makes of any bytes (real limits), the
//! way a Session hands them over.
//!
//! Checked: no panic; `Command::parse` and `Command::parse_checked` agree; every refusal is a
//! Redis error reply (an upper-case code, then text that stays on one line on the wire); every
//! write it accepts comes back unchanged from the Raft log's encoding, as every replica
//! decodes it.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use protocol::command::{Command, Proposal, ReadQuery, RequestId, BATCH_CONTEXT};
use protocol::resp::{Frame, RespCodec, RespLimits};
use tokio_util::codec::{Decoder, Encoder};

fn assert_redis_error(reply: &Frame, request: &[Bytes]) {
    let Frame::Error(text) = reply else { panic!("{request:?} was refused with {reply:?}") };
    let code = text.split(' ').next().unwrap_or_default();
    assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
        "{request:?} was refused with {text:?}: no error code"
    );
    for protocol in [2, 3] {
        let mut codec = RespCodec::new(RespLimits::default());
        codec.set_protocol(protocol);
        let mut wire = BytesMut::new();
        codec.encode(reply, &mut wire).expect("encoding a frame cannot fail");
        assert!(wire.starts_with(b"-") && wire.ends_with(b"\r\n"), "{wire:?}");
        assert_eq!(wire.iter().position(|&b| b == b'\r' || b == b'\n'), Some(wire.len() - 2), "{wire:?}");
    }
}

fn check(request: Vec<Bytes>) {
    let checked = Command::parse_checked(request.clone());
    let flat = Command::parse(request.clone());
    let both = checked.clone().and_then(|inner| inner);
    // RANDOMKEY draws a fresh seed each time it is parsed.
    let random = |c: &Result<Command, Frame>| matches!(c, Ok(Command::Read(ReadQuery::RandomKey { .. })));
    if !(random(&flat) && random(&both)) {
        assert_eq!(flat, both, "{request:?}: parse and parse_checked disagree");
    }
    match checked {
        Ok(Ok(Command::Write(op) | Command::Blocking { op, .. })) => {
            let proposal = Proposal { origin: RequestId { node: 1, incarnation: 2, seq: 3 }, now_ms: 4, op };
            let decoded = Proposal::decode(&proposal.encode())
                .unwrap_or_else(|e| panic!("{request:?}: its log entry does not decode: {e}"));
            assert_eq!(decoded, proposal, "{request:?}: the log entry changed it");
            let encoded = proposal.encode();
            let batch = Proposal::encode_batch([encoded.as_slice(), encoded.as_slice()].into_iter());
            let decoded = Proposal::decode_entry(BATCH_CONTEXT, &batch)
                .unwrap_or_else(|e| panic!("{request:?}: its batch entry does not decode: {e}"));
            assert_eq!(decoded, vec![proposal.clone(), proposal], "{request:?}: the batch entry changed it");
        }
        Ok(Ok(_)) => {}
        Ok(Err(reply)) | Err(reply) => assert_redis_error(&reply, &request),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut codec = RespCodec::new(RespLimits::default());
    let mut buf = BytesMut::from(data);
    while let Ok(Some(request)) = codec.decode_eof(&mut buf) {
        check(request);
    }
});
