//! The peer port's wire format: what PeerTransport (in `actors`) writes and what it accepts from
//! whoever connects. Kept apart from the transport so that the decoding of untrusted peer
//! bytes can be fuzzed without the actors around it.
//!
//! A connection is a sequence of length-delimited frames (4-byte big-endian length). The first
//! frame is a [`Hello`]: a 4-byte magic naming the kind of connection, then the sender's node id
//! and store id (u64 big-endian each). The receiver answers with a random challenge of
//! [`CHALLENGE_BYTES`], the sender proves it knows the cluster secret with [`proof`] over the
//! hello and the challenge, and the receiver answers with its [`Verdict`], authenticated the same
//! way. Until then frames are at most [`HANDSHAKE_MAX_FRAME`] bytes, so a stranger cannot make
//! the receiver reserve memory; afterwards up to [`MAX_FRAME`]. On a message connection every
//! following frame is one protobuf `eraftpb::Message` ([`decode_message`]).

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use protobuf::Message as PbMessage;
use raft_proto::eraftpb::Message;
use sha2::Sha256;
use tokio_util::codec::LengthDelimitedCodec;

/// The magic of a message connection.
pub const HELLO_MAGIC: &[u8; 4] = b"RKV1";
/// The magic of a snapshot connection (one per transfer).
pub const SNAPSHOT_MAGIC: &[u8; 4] = b"RKVS";
/// The size of the receiver's challenge.
pub const CHALLENGE_BYTES: usize = 16;
/// The largest frame before authentication: a hello or a proof.
pub const HANDSHAKE_MAX_FRAME: usize = 64;
/// The largest frame accepted or sent. raft-rs keeps appends under `max_size_per_msg` (1 MiB),
/// but one entry may be as large as a client's value.
pub const MAX_FRAME: usize = 600 << 20;

/// Length-delimited frames of at most `max` bytes.
pub fn frame_codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(max).new_codec()
}

/// Writes one frame to a blocking writer (the snapshot sender's side).
pub fn write_frame(out: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u32).to_be_bytes())?;
    out.write_all(bytes)
}

/// What a connection carries, named by its hello's magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    /// Raft messages, one per frame, for the life of the connection.
    Messages,
    /// One snapshot: its message, chunks of key/value pairs, an empty frame.
    Snapshot,
}

/// The first frame of a peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub kind: ConnectionKind,
    /// The connecting node's id.
    pub from: u64,
    /// The connecting node's store id: chosen at random when its data directory was created, so
    /// a node that lost its data comes back under its old id with another one.
    pub store: u64,
}

impl Hello {
    /// The frame payload: magic, then the node id and the store id.
    pub fn encode(&self) -> Bytes {
        let magic = match self.kind {
            ConnectionKind::Messages => HELLO_MAGIC,
            ConnectionKind::Snapshot => SNAPSHOT_MAGIC,
        };
        let mut b = BytesMut::with_capacity(20);
        b.put_slice(magic);
        b.put_u64(self.from);
        b.put_u64(self.store);
        b.freeze()
    }

    /// `None` for anything but exactly a known magic and two ids.
    pub fn decode(frame: &[u8]) -> Option<Hello> {
        let (magic, ids) = frame.split_first_chunk::<4>()?;
        let kind = match magic {
            HELLO_MAGIC => ConnectionKind::Messages,
            SNAPSHOT_MAGIC => ConnectionKind::Snapshot,
            _ => return None,
        };
        let ids: &[u8; 16] = ids.try_into().ok()?;
        let (from, store) = ids.split_at(8);
        let id = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        Some(Hello { kind, from: id(from), store: id(store) })
    }
}

/// The receiver's answer to a hello whose proof it verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Raft messages (or the snapshot) may follow.
    Accepted,
    /// The receiver's address book records another store for the sender's id (`known`): the
    /// sender lost the data the cluster knew it by and must not take part under that id.
    WrongStore { known: u64 },
}

/// The size of a verdict frame: a tag, a store id and the HMAC.
pub const VERDICT_BYTES: usize = 1 + 8 + 32;

impl Verdict {
    fn body(&self) -> [u8; 9] {
        let (tag, known) = match *self {
            Verdict::Accepted => (1, 0),
            Verdict::WrongStore { known } => (2, known),
        };
        let mut body = [tag; 9];
        body[1..].copy_from_slice(&u64::to_be_bytes(known));
        body
    }

    /// The frame payload: the verdict and an HMAC over it, the hello and the challenge, so a
    /// stranger in the middle cannot make a node believe it was refused.
    pub fn encode(&self, secret: &[u8], hello: &[u8], challenge: &[u8]) -> Vec<u8> {
        let body = self.body();
        let mac = handshake_mac(b"raft-kv verdict v1", secret, hello, challenge, &body);
        [&body[..], &mac.finalize().into_bytes()].concat()
    }

    /// The verdict in `frame`, if it is one and is authentic for this hello and challenge.
    pub fn decode(frame: &[u8], secret: &[u8], hello: &[u8], challenge: &[u8]) -> Option<Verdict> {
        let (body, tag) = frame.split_first_chunk::<9>()?;
        let verdict = match body[0] {
            1 if body[1..] == [0; 8] => Verdict::Accepted,
            2 => Verdict::WrongStore { known: u64::from_be_bytes(body[1..].try_into().ok()?) },
            _ => return None,
        };
        let mac = handshake_mac(b"raft-kv verdict v1", secret, hello, challenge, body);
        mac.verify_slice(tag).is_ok().then_some(verdict)
    }
}

fn handshake_mac(label: &[u8], secret: &[u8], hello: &[u8], challenge: &[u8], answer: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(hello);
    mac.update(challenge);
    mac.update(answer);
    mac
}

/// The handshake answer: HMAC-SHA256 keyed with the cluster secret over the hello and the
/// receiver's challenge, so it cannot be replayed on another connection.
pub fn proof(secret: &[u8], hello: &[u8], challenge: &[u8]) -> Vec<u8> {
    handshake_mac(b"raft-kv peer v1", secret, hello, challenge, b"").finalize().into_bytes().to_vec()
}

/// Whether `answer` is the [`proof`] for this hello and challenge; compares in constant time.
pub fn verify_proof(secret: &[u8], hello: &[u8], challenge: &[u8], answer: &[u8]) -> bool {
    handshake_mac(b"raft-kv peer v1", secret, hello, challenge, b"").verify_slice(answer).is_ok()
}

/// One frame of an authenticated message connection from node `from` to us (`me`): a Raft
/// message addressed exactly so, or why the connection must be closed.
pub fn decode_message(frame: std::io::Result<BytesMut>, from: u64, me: u64) -> Result<Message, String> {
    let frame = frame.map_err(|e| format!("bad frame from node {from}: {e}"))?;
    let msg = Message::parse_from_bytes(&frame)
        .map_err(|e| format!("undecodable message from node {from}: {e}"))?;
    if msg.from != from || msg.to != me {
        return Err(format!("misaddressed message {}→{} on node {from}'s connection", msg.from, msg.to));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_proto::eraftpb::MessageType;
    use tokio_util::codec::Decoder;

    fn heartbeat(from: u64, to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m.term = 7;
        m
    }

    #[test]
    fn hellos_round_trip_and_anything_else_is_refused() {
        for hello in [
            Hello { kind: ConnectionKind::Messages, from: 2, store: 0x0102_0304_0506_0708 },
            Hello { kind: ConnectionKind::Snapshot, from: u64::MAX, store: 0 },
        ] {
            assert_eq!(Hello::decode(&hello.encode()), Some(hello));
        }
        let good = Hello { kind: ConnectionKind::Messages, from: 2, store: 9 }.encode();
        assert_eq!(&good[..], b"RKV1\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x09");
        for bad in
            [&good[..19], &good[..12], &[&good[..], b"x"].concat(), b"RKV2\0\0\0\0\0\0\0\x02", b"", b"RKV1"]
        {
            assert_eq!(Hello::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_proof_verifies_only_for_its_secret_hello_and_challenge() {
        let hello = Hello { kind: ConnectionKind::Messages, from: 3, store: 4 }.encode();
        let answer = proof(b"secret", &hello, &[7; CHALLENGE_BYTES]);
        assert!(verify_proof(b"secret", &hello, &[7; CHALLENGE_BYTES], &answer));
        assert!(!verify_proof(b"other", &hello, &[7; CHALLENGE_BYTES], &answer));
        assert!(!verify_proof(b"secret", &hello, &[8; CHALLENGE_BYTES], &answer));
        assert!(!verify_proof(b"secret", b"RKV1", &[7; CHALLENGE_BYTES], &answer));
        assert!(!verify_proof(b"secret", &hello, &[7; CHALLENGE_BYTES], &answer[..31]));
        assert!(!verify_proof(b"secret", &hello, &[7; CHALLENGE_BYTES], b""));
    }

    #[test]
    fn a_verdict_is_read_back_only_for_its_secret_hello_and_challenge() {
        let hello = Hello { kind: ConnectionKind::Messages, from: 3, store: 4 }.encode();
        let challenge = [7; CHALLENGE_BYTES];
        for verdict in [Verdict::Accepted, Verdict::WrongStore { known: 5 }] {
            let frame = verdict.encode(b"secret", &hello, &challenge);
            assert_eq!(frame.len(), VERDICT_BYTES);
            assert!(frame.len() <= HANDSHAKE_MAX_FRAME);
            assert_eq!(Verdict::decode(&frame, b"secret", &hello, &challenge), Some(verdict));
            assert_eq!(Verdict::decode(&frame, b"other", &hello, &challenge), None);
            assert_eq!(Verdict::decode(&frame, b"secret", &hello, &[8; CHALLENGE_BYTES]), None);
            assert_eq!(Verdict::decode(&frame[..VERDICT_BYTES - 1], b"secret", &hello, &challenge), None);
            // The proof of the same hello and challenge is not a verdict.
            assert_eq!(
                Verdict::decode(&proof(b"secret", &hello, &challenge), b"secret", &hello, &challenge),
                None
            );
        }
        // Another store id under the tag of a refusal does not verify.
        let mut forged = Verdict::WrongStore { known: 5 }.encode(b"secret", &hello, &challenge);
        forged[8] ^= 1;
        assert_eq!(Verdict::decode(&forged, b"secret", &hello, &challenge), None);
    }

    #[test]
    fn messages_must_decode_and_be_addressed_to_this_link() {
        let frame = |m: &Message| Ok(BytesMut::from(&m.write_to_bytes().unwrap()[..]));
        assert_eq!(decode_message(frame(&heartbeat(2, 1)), 2, 1), Ok(heartbeat(2, 1)));
        let misaddressed = decode_message(frame(&heartbeat(3, 1)), 2, 1).unwrap_err();
        assert!(misaddressed.starts_with("misaddressed message 3→1"), "{misaddressed}");
        assert!(decode_message(frame(&heartbeat(2, 4)), 2, 1).is_err());
        let garbage = decode_message(Ok(BytesMut::from(&[0xff, 0xff, 0xff][..])), 2, 1).unwrap_err();
        assert!(garbage.starts_with("undecodable message from node 2"), "{garbage}");
        assert!(decode_message(Err(std::io::Error::other("reset")), 2, 1).is_err());
    }

    /// Found by the `peer_frames` fuzz target: protobuf 2 decodes a nested message whose length
    /// runs past the end of the frame (here the last `snapshot` field) as if it ended there, and
    /// leaves it with an empty rather than an absent set of unknown fields. Such a message is
    /// still judged by its addressing, and what was decoded survives re-encoding.
    #[test]
    fn a_nested_message_cut_short_by_the_frame_end_decodes_as_far_as_it_goes() {
        let frame: &[u8] = &[
            0x08, 0x05, 0x10, 0x01, 0x4a, 0x02, 0x20, 0x05, 0x10, 0x01, 0x4a, 0x02, 0x20, 0x08, 0x28, 0x07,
            0x30, 0x01, 0x4a, 0xfc, 0xa3, 0x0e,
        ];
        let msg = decode_message(Ok(BytesMut::from(frame)), 0, 1).unwrap();
        assert_eq!(
            (msg.get_msg_type(), msg.to, msg.log_term, msg.index),
            (MessageType::MsgRequestVote, 1, 7, 1)
        );
        assert!(decode_message(Ok(BytesMut::from(frame)), 2, 1).is_err(), "not from node 2");
        let again = Message::parse_from_bytes(&msg.write_to_bytes().unwrap()).unwrap();
        assert_eq!(format!("{again:?}"), format!("{msg:?}"));
    }

    #[test]
    fn the_frame_codec_refuses_a_length_above_its_limit_before_the_data() {
        let mut written = Vec::new();
        write_frame(&mut written, &[1; HANDSHAKE_MAX_FRAME]).unwrap();
        let mut codec = frame_codec(HANDSHAKE_MAX_FRAME);
        let mut buf = BytesMut::from(&written[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), HANDSHAKE_MAX_FRAME);
        let mut too_big = BytesMut::from(&(HANDSHAKE_MAX_FRAME as u32 + 1).to_be_bytes()[..]);
        assert!(codec.decode(&mut too_big).is_err());
    }
}
