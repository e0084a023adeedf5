//! Property test of the peer port's decoding, through the same public pieces the transport
//! uses: the frame codec with [`MAX_FRAME`], then protobuf's `Message::parse_from_bytes` on
//! each frame. Random byte streams (valid frames, mutated frames, absurd length headers,
//! garbage), fed in random chunks, never panic; valid messages come back exactly; a length
//! above `MAX_FRAME` is an error, not an allocation.
//!
//! Seeded, so a failure is reproducible; `RAFTKV_PROPTEST_CASES` sets the cases per seed.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use actors::peer_wire::MAX_FRAME;
use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as PbMessage;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use support::{cases, Rng, SEEDS};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// The transport's frame codec after the handshake.
fn frame_codec() -> LengthDelimitedCodec {
    actors::peer_wire::frame_codec(MAX_FRAME)
}

const TYPES: &[MessageType] = &[
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestPreVote,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgSnapshot,
    MessageType::MsgTimeoutNow,
];

fn random_message(rng: &mut Rng) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(*rng.pick(TYPES));
    msg.from = rng.next() % 5;
    msg.to = rng.next() % 5;
    msg.term = rng.next() % 100;
    msg.log_term = rng.next() % 100;
    msg.index = rng.next();
    msg.commit = rng.next() % 1000;
    msg.reject = rng.one_in(2);
    msg.context = Bytes::from(rng.bytes(8));
    for _ in 0..rng.below(4) {
        let mut entry = Entry::default();
        entry.set_entry_type(if rng.one_in(5) {
            EntryType::EntryConfChangeV2
        } else {
            EntryType::EntryNormal
        });
        entry.term = rng.next() % 100;
        entry.index = rng.next() % 1000;
        entry.data = Bytes::from(rng.bytes(64));
        entry.context = Bytes::from(rng.bytes(4));
        msg.mut_entries().push(entry);
    }
    msg
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.put_u32(payload.len() as u32);
    out.extend_from_slice(payload);
    out
}

/// What decoding a stream yields: each frame parsed (or why not), then the error that ended
/// the stream, if any.
#[derive(Debug, PartialEq)]
struct Decoded {
    frames: Vec<Result<Message, String>>,
    error: Option<String>,
}

fn decode_in_chunks(input: &[u8], cuts: &[usize]) -> Decoded {
    let mut codec = frame_codec();
    let mut buf = BytesMut::new();
    let mut decoded = Decoded { frames: Vec::new(), error: None };
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[prev..cut]);
        prev = cut;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    decoded.frames.push(Message::parse_from_bytes(&frame).map_err(|e| e.to_string()))
                }
                Ok(None) => break,
                Err(e) => {
                    decoded.error = Some(e.to_string());
                    return decoded;
                }
            }
        }
        // The codec never reserves more than a legal frame needs.
        assert!(buf.capacity() <= MAX_FRAME + 64 * 1024, "reserved {} bytes", buf.capacity());
    }
    decoded
}

#[test]
fn random_peer_streams_never_panic_and_decode_alike_however_split() {
    let per_seed = cases(3_000);
    let mut valid_frames = 0;
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        for case in 0..per_seed {
            // A stream of pieces; the valid messages in it are remembered.
            let mut input = Vec::new();
            let mut expected = Vec::new();
            let mut clean = true;
            for _ in 0..1 + rng.below(5) {
                match rng.below(6) {
                    0 | 1 => {
                        let msg = random_message(&mut rng);
                        input.extend(framed(&msg.write_to_bytes().expect("a message encodes")));
                        if clean {
                            expected.push(msg);
                        }
                    }
                    2 => {
                        // A real message with a few bytes flipped, in a correct frame.
                        let mut payload = random_message(&mut rng).write_to_bytes().unwrap();
                        for _ in 0..1 + rng.below(3) {
                            if !payload.is_empty() {
                                let i = rng.below(payload.len());
                                payload[i] ^= 1 << rng.below(8);
                            }
                        }
                        input.extend(framed(&payload));
                        clean = false;
                    }
                    3 => {
                        // Garbage in a correct frame.
                        input.extend(framed(&rng.bytes(40)));
                        clean = false;
                    }
                    4 => {
                        // A length header out of all proportion, maybe followed by a little data.
                        let len = match rng.below(3) {
                            0 => u32::MAX,
                            1 => MAX_FRAME as u32 + 1,
                            _ => rng.next() as u32,
                        };
                        input.put_u32(len);
                        input.extend(rng.bytes(16));
                        clean = false;
                    }
                    _ => {
                        input.extend(rng.bytes(24));
                        clean = false;
                    }
                }
            }
            let mut cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(input.len() + 1)).collect();
            cuts.sort_unstable();
            let (whole, split) = catch_unwind(AssertUnwindSafe(|| {
                (decode_in_chunks(&input, &[]), decode_in_chunks(&input, &cuts))
            }))
            .unwrap_or_else(|_| panic!("seed {seed} case {case}: decoding {input:?} panicked"));
            assert_eq!(whole, split, "seed {seed} case {case}: cuts {cuts:?} change the outcome");
            // The valid messages before the first damaged piece come back exactly.
            for (i, msg) in expected.iter().enumerate() {
                assert_eq!(whole.frames.get(i), Some(&Ok(msg.clone())), "seed {seed} case {case}: frame {i}");
                valid_frames += 1;
            }
        }
    }
    assert!(valid_frames > 1_000, "only {valid_frames} valid frames were checked");
}

#[test]
fn a_length_above_the_frame_limit_is_an_error_before_any_data() {
    let mut input = Vec::new();
    input.put_u32(MAX_FRAME as u32 + 1);
    let decoded = decode_in_chunks(&input, &[]);
    assert!(decoded.frames.is_empty());
    assert!(decoded.error.is_some(), "a {}-byte frame was accepted", MAX_FRAME + 1);
}
