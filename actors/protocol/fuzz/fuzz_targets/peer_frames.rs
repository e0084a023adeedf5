//! The peer port's decoding, on any bytes a connecting stranger or peer can send: the frame
//! codec, the hello, the handshake proof and the Raft messages, in the order PeerTransport reads
//! them. The first input byte chooses where the stream starts (bit 0: at the hello, as a new
//! connection; otherwise after an accepted handshake, at the messages) and seeds how the rest
//! is split into reads.
//!
//! Checked: no panic; the same frames, verdicts and error whether the stream arrives whole,
//! byte by byte or in uneven reads; a hello that decodes encodes back to the same bytes; a
//! proof is accepted exactly when it is the right HMAC; a frame is a message exactly when
//! protobuf decodes it and it is addressed from the peer to us, and such a message survives
//! being encoded and decoded again; the read buffer stays within the frame limit.

#![no_main]

mod chunks;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protobuf::Message as PbMessage;
use protocol::peer_wire::{
    decode_message, frame_codec, proof, verify_proof, ConnectionKind, Hello, CHALLENGE_BYTES,
    HANDSHAKE_MAX_FRAME, MAX_FRAME,
};
use raft_proto::eraftpb::{Message, MessageType};
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

/// This node's id, and the peer assumed on a connection that starts after the handshake.
const ME: u64 = 1;
const PEER: u64 = 2;
/// The cluster secret, and the challenge this node sent (fixed, so seeds can carry a proof).
const SECRET: &[u8] = b"fuzz";
const CHALLENGE: [u8; CHALLENGE_BYTES] = [0x5a; CHALLENGE_BYTES];

fn reencode(msg: &Message) -> Message {
    let bytes = msg.write_to_bytes().expect("a decoded message encodes");
    Message::parse_from_bytes(&bytes).expect("an encoded message decodes")
}

/// What the connection has read so far: what the next frame must be.
#[derive(Debug)]
enum Stage {
    Hello,
    Proof { hello: Hello, frame: BytesMut },
    Messages { from: u64 },
    SnapshotHeader { from: u64 },
    SnapshotChunks,
    Closed,
}

/// What the receiving side made of each frame, and how the connection ended.
#[derive(Debug, PartialEq)]
enum Event {
    Hello(Hello),
    Proof(bool),
    Message(Result<Message, String>),
    Chunk(usize),
    Closed(String),
}

struct Connection {
    codec: LengthDelimitedCodec,
    stage: Stage,
    events: Vec<Event>,
}

impl Connection {
    fn new(handshake: bool) -> Self {
        let (codec, stage) = if handshake {
            (frame_codec(HANDSHAKE_MAX_FRAME), Stage::Hello)
        } else {
            (frame_codec(MAX_FRAME), Stage::Messages { from: PEER })
        };
        Connection { codec, stage, events: Vec::new() }
    }

    fn close(&mut self, why: impl Into<String>) {
        self.events.push(Event::Closed(why.into()));
        self.stage = Stage::Closed;
    }

    /// A message frame as PeerTransport decodes it, cross-checked against protobuf directly.
    fn message(&mut self, frame: &BytesMut, from: u64) -> Option<Message> {
        let decoded = decode_message(Ok(frame.clone()), from, ME);
        match Message::parse_from_bytes(frame) {
            Ok(parsed) => {
                // protobuf 2's equality tells an empty set of unknown fields from none (which a
                // nested message cut short by the frame's end leaves), so the decoded message is
                // compared by its fields, and its re-encoding, by everything.
                let again = reencode(&parsed);
                assert_eq!(format!("{again:?}"), format!("{parsed:?}"), "a message changed through encoding");
                assert_eq!(reencode(&again), again, "a re-encoded message changed through encoding");
                let addressed = parsed.from == from && parsed.to == ME;
                assert_eq!(decoded.as_ref().ok(), addressed.then_some(&parsed), "{decoded:?}");
            }
            Err(_) => assert!(decoded.is_err(), "decode_message accepted what protobuf refuses"),
        }
        let accepted = decoded.as_ref().ok().cloned();
        self.events.push(Event::Message(decoded));
        if accepted.is_none() {
            self.close("bad message");
        }
        accepted
    }

    fn frame(&mut self, frame: BytesMut) {
        match std::mem::replace(&mut self.stage, Stage::Closed) {
            Stage::Hello => match Hello::decode(&frame) {
                Some(hello) => {
                    assert_eq!(&hello.encode()[..], &frame[..], "a hello that decodes re-encodes alike");
                    self.events.push(Event::Hello(hello));
                    self.stage = Stage::Proof { hello, frame };
                }
                None => self.close("bad hello"),
            },
            Stage::Proof { hello, frame: hello_frame } => {
                let verified = verify_proof(SECRET, &hello_frame, &CHALLENGE, &frame);
                let expected = proof(SECRET, &hello_frame, &CHALLENGE);
                assert_eq!(verified, frame[..] == expected[..], "proof verdict");
                self.events.push(Event::Proof(verified));
                if !verified {
                    return self.close("not authenticated");
                }
                self.codec.set_max_frame_length(MAX_FRAME);
                self.stage = match hello.kind {
                    ConnectionKind::Messages => Stage::Messages { from: hello.from },
                    ConnectionKind::Snapshot => Stage::SnapshotHeader { from: hello.from },
                };
            }
            Stage::Messages { from } => {
                if self.message(&frame, from).is_some() {
                    self.stage = Stage::Messages { from };
                }
            }
            Stage::SnapshotHeader { from } => match self.message(&frame, from) {
                Some(msg) if msg.get_msg_type() == MessageType::MsgSnapshot => {
                    self.stage = Stage::SnapshotChunks
                }
                Some(_) => self.close("not a snapshot header"),
                None => {}
            },
            Stage::SnapshotChunks if frame.is_empty() => self.close("snapshot complete"),
            Stage::SnapshotChunks => {
                self.events.push(Event::Chunk(frame.len()));
                self.stage = Stage::SnapshotChunks;
            }
            Stage::Closed => unreachable!("no frame is read after the connection closed"),
        }
    }

    /// Reads the stream in `pieces`, then its end, the way a `FramedRead` does.
    fn read(mut self, pieces: &[&[u8]]) -> Vec<Event> {
        let mut buf = BytesMut::new();
        for piece in pieces.iter().map(Some).chain([None]) {
            match piece {
                Some(piece) => buf.extend_from_slice(piece),
                None if matches!(self.stage, Stage::Closed) => break,
                None => {}
            }
            while !matches!(self.stage, Stage::Closed) {
                let decoded = match piece {
                    Some(_) => self.codec.decode(&mut buf),
                    None => self.codec.decode_eof(&mut buf),
                };
                assert!(buf.capacity() <= MAX_FRAME + 64 * 1024, "reserved {} bytes", buf.capacity());
                match decoded {
                    Ok(Some(frame)) => self.frame(frame),
                    Ok(None) if piece.is_none() => self.close("end of stream"),
                    Ok(None) => break,
                    Err(e) => self.close(e.to_string()),
                }
            }
        }
        self.events
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else { return };
    let handshake = control & 1 == 1;
    let whole = Connection::new(handshake).read(&[stream]);
    assert_eq!(Connection::new(handshake).read(&chunks::bytewise(stream)), whole, "byte by byte");
    assert_eq!(Connection::new(handshake).read(&chunks::uneven(stream, control >> 1)), whole, "uneven reads");
});
