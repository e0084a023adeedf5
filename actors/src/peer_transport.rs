//! PeerTransport is an actor. It carries Raft messages between nodes over TCP.
//!
//! Outbound, it keeps one connection per peer, each driven by its own task that owns the
//! socket: messages wait in a bounded queue (a full queue drops messages, which Raft tolerates),
//! the connection is re-established with exponential backoff, and failures are reported to
//! RaftNode as [`PeerUnreachable`] / [`SnapshotReport`]. Inbound, it accepts connections on
//! the node's peer address and steps every valid message into RaftNode.
//!
//! Wire format: length-delimited frames (4-byte big-endian length). The first frame of a
//! connection is a hello, `RKV1` followed by the sender's node id (u64 big-endian); every
//! following frame is one protobuf `eraftpb::Message`. A connection from an unknown node, or
//! carrying a garbage, oversized or misaddressed frame, is logged and closed.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use crate::raft_node::{PeerUnreachable, SnapshotReport, Step};

/// Send these messages to their peers. Sent by RaftNode after each Ready step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendMessages(pub Vec<Message>);

const HELLO_MAGIC: &[u8; 4] = b"RKV1";
/// The largest frame accepted or sent. raft-rs keeps appends under `max_size_per_msg` (1 MiB),
/// but one entry may be as large as a client's value.
pub const MAX_FRAME: usize = 600 << 20;
const QUEUE_PER_PEER: usize = 8192;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The RaftNode mailboxes the transport reports to.
#[derive(Clone)]
pub struct RaftInbox {
    pub step: Recipient<Step>,
    pub unreachable: Recipient<PeerUnreachable>,
    pub snapshot: Recipient<SnapshotReport>,
}

pub struct PeerTransport {
    id: u64,
    peers: HashMap<u64, String>,
    listener: Option<TcpListener>,
    raft: RaftInbox,
    links: HashMap<u64, mpsc::Sender<Message>>,
}

impl PeerTransport {
    /// `peers` maps every other node's id to its peer address; `listener` is bound to ours.
    pub fn new(id: u64, peers: HashMap<u64, String>, listener: TcpListener, raft: RaftInbox) -> Self {
        PeerTransport { id, peers, listener: Some(listener), raft, links: HashMap::new() }
    }
}

impl Actor for PeerTransport {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        for (&peer, addr) in &self.peers {
            let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
            self.links.insert(peer, tx);
            actix_rt::spawn(run_link(self.id, peer, addr.clone(), rx, self.raft.clone()));
        }
        let listener = self.listener.take().expect("started once");
        let known: Vec<u64> = self.peers.keys().copied().collect();
        actix_rt::spawn(accept_peers(listener, self.id, known, self.raft.step.clone()));
    }
}

impl Handler<SendMessages> for PeerTransport {
    type Result = ();

    /// Queues each message on its peer's link; drops it if the peer is unknown or its queue is
    /// full (Raft retransmits).
    fn handle(&mut self, msg: SendMessages, _: &mut Context<Self>) {
        for m in msg.0 {
            let to = m.to;
            let Some(link) = self.links.get(&to) else {
                debug!(node = self.id, to, "dropping a message to an unknown peer");
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(m)) = link.try_send(m) {
                debug!(node = self.id, to, "peer queue full; dropping a message");
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    self.raft.snapshot.do_send(SnapshotReport { to, delivered: false });
                }
                self.raft.unreachable.do_send(PeerUnreachable(to));
            }
        }
    }
}

fn frame_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_codec()
}

fn hello(from: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.put_slice(HELLO_MAGIC);
    b.put_u64(from);
    b.freeze()
}

/// Owns the connection to one peer for the life of the node.
async fn run_link(from: u64, to: u64, addr: String, mut queue: mpsc::Receiver<Message>, raft: RaftInbox) {
    let mut backoff = BACKOFF_MIN;
    let mut was_connected = true;
    loop {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                if was_connected {
                    info!(node = from, peer = to, %addr, "peer unreachable; retrying with backoff");
                    was_connected = false;
                }
                raft.unreachable.do_send(PeerUnreachable(to));
                // Whatever was queued is stale by the time the peer is back: Raft resends.
                while let Ok(m) = queue.try_recv() {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        raft.snapshot.do_send(SnapshotReport { to, delivered: false });
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut sink = FramedWrite::new(stream, frame_codec());
        if sink.send(hello(from)).await.is_err() {
            continue;
        }
        info!(node = from, peer = to, %addr, "connected to peer");
        was_connected = true;
        backoff = BACKOFF_MIN;
        if let Err(e) = pump(&mut sink, &mut queue, to, &raft).await {
            match e {
                LinkEnd::QueueClosed => return,
                LinkEnd::Io(e) => {
                    info!(node = from, peer = to, error = %e, "peer connection lost");
                    raft.unreachable.do_send(PeerUnreachable(to));
                }
            }
        }
    }
}

enum LinkEnd {
    QueueClosed,
    Io(std::io::Error),
}

/// Writes queued messages, everything already waiting in one flush.
async fn pump(
    sink: &mut FramedWrite<TcpStream, LengthDelimitedCodec>,
    queue: &mut mpsc::Receiver<Message>,
    to: u64,
    raft: &RaftInbox,
) -> Result<(), LinkEnd> {
    let mut snapshots = 0;
    loop {
        let Some(first) = queue.recv().await else {
            return Err(LinkEnd::QueueClosed);
        };
        let mut next = Some(first);
        while let Some(m) = next {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                snapshots += 1;
            }
            let bytes = m.write_to_bytes().expect("raft messages always serialize");
            if let Err(e) = sink.feed(Bytes::from(bytes)).await {
                report_snapshots(raft, to, snapshots, false);
                return Err(LinkEnd::Io(e));
            }
            next = queue.try_recv().ok();
        }
        if let Err(e) = SinkExt::<Bytes>::flush(sink).await {
            report_snapshots(raft, to, snapshots, false);
            return Err(LinkEnd::Io(e));
        }
        report_snapshots(raft, to, snapshots, true);
        snapshots = 0;
    }
}

fn report_snapshots(raft: &RaftInbox, to: u64, count: usize, delivered: bool) {
    for _ in 0..count {
        raft.snapshot.do_send(SnapshotReport { to, delivered });
    }
}

async fn accept_peers(listener: TcpListener, me: u64, known: Vec<u64>, step: Recipient<Step>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let known = known.clone();
                let step = step.clone();
                actix_rt::spawn(async move {
                    if let Err(reason) = serve_peer(stream, me, &known, step).await {
                        warn!(node = me, %remote, %reason, "closed a peer connection");
                    }
                });
            }
            Err(e) => {
                warn!(node = me, error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one inbound peer connection until it closes or misbehaves.
async fn serve_peer(stream: TcpStream, me: u64, known: &[u64], step: Recipient<Step>) -> Result<(), String> {
    let mut frames = FramedRead::new(stream, frame_codec());
    let from = match frames.next().await {
        Some(Ok(h)) if h.len() == 12 && &h[..4] == HELLO_MAGIC => {
            u64::from_be_bytes(h[4..].try_into().expect("8 bytes"))
        }
        Some(Ok(_)) => return Err("bad hello frame".into()),
        Some(Err(e)) => return Err(format!("bad hello frame: {e}")),
        None => return Ok(()),
    };
    if !known.contains(&from) {
        return Err(format!("hello from unknown node {from}"));
    }
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| format!("bad frame from node {from}: {e}"))?;
        let msg = Message::parse_from_bytes(&frame)
            .map_err(|e| format!("undecodable message from node {from}: {e}"))?;
        if msg.from != from || msg.to != me {
            return Err(format!("misaddressed message {}→{} on node {from}'s connection", msg.from, msg.to));
        }
        if !step.connected() {
            return Err("raft node stopped".into());
        }
        step.do_send(Step(msg));
    }
    Ok(())
}
