//! PeerTransport is an actor. It carries Raft messages between nodes over TCP.
//!
//! Outbound, it keeps one connection per peer, each driven by its own task that owns the
//! socket: messages wait in a bounded queue (a full queue drops messages, which Raft tolerates),
//! the connection is re-established with exponential backoff, and failures are reported to
//! RaftNode as [`PeerUnreachable`] / [`SnapshotReport`]. Inbound, it accepts connections on
//! the node's peer address and steps every valid message into RaftNode.
//!
//! Wire format ([`crate::peer_wire`], in the `protocol` crate so it can be fuzzed):
//! length-delimited frames (4-byte big-endian length). The first frame of a connection is a
//! hello: a 4-byte magic followed by the sender's node id and store id (u64 big-endian each).
//! The receiver answers with a random 16-byte challenge, and the sender must answer with
//! HMAC-SHA256 over the hello and the challenge, keyed with the cluster secret
//! (`--cluster-secret`; empty when none is set): a node that does not know the secret is refused
//! and logged before any of its messages is read. The receiver then sends its verdict, with an
//! HMAC of its own: accepted, or refused because its address book records another store id for
//! the sender, which then stops (it lost its data; see [`crate::membership`]). A connection whose
//! sender's recorded store id changes to another one later is closed.
//! - `RKV1`, a message connection: every following frame is one protobuf `eraftpb::Message`.
//! - `RKVS`, a snapshot connection (one per transfer): a `MsgSnapshot` frame whose metadata
//!   describes the checkpoint being sent, then chunks of key/value pairs of at most about 1 MiB,
//!   then an empty frame. The receiver stages the chunks through Storage, steps the message
//!   into RaftNode and answers one byte, after which the sender reports the snapshot delivered.
//!   The whole keyspace never sits in memory on either side.
//!
//! With `--tls-peers` ([`crate::tls`]), every connection, for messages or a snapshot, starts
//! with a TLS handshake in which both ends show a certificate from the cluster's CA and the
//! connecting end checks that the other's names the host of the peer address it dialled; the
//! handshake above then runs inside TLS, and so does everything after it.
//!
//! A connection from an unknown node, or carrying a garbage, oversized or misaddressed frame,
//! is logged and closed. So is one whose handshakes do not finish within
//! [`HANDSHAKE_TIMEOUT`], and at most [`MAX_HANDSHAKES`] connections are in their handshake at
//! once (one more is closed at once): a stranger cannot take the file descriptors the node needs.
//!
//! For fault tests, a node started with a fault-control file drops the traffic that file names
//! (`drop-out <id>`, `drop-in <id>`, one per line), re-read whenever it changes.

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use protobuf::Message as PbMessage;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Framed, FramedRead, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use crate::membership::{encode_members, Member};
use crate::peer_wire::{
    decode_message, frame_codec, proof, verify_proof, write_frame, ConnectionKind, Hello, Verdict,
    CHALLENGE_BYTES, HANDSHAKE_MAX_FRAME, MAX_FRAME, VERDICT_BYTES,
};
use crate::raft_node::{PeerUnreachable, SnapshotReport, Step};
use crate::storage::{
    fatal, stream_checkpoint, BeginSnapshot, CheckpointInfo, CreateCheckpoint, FinishSnapshot, SnapshotChunk,
    Storage,
};
use crate::telemetry;
use crate::tls::{server_name, PeerTls};

/// Send these messages to their peers. Sent by RaftNode after each Ready step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendMessages(pub Vec<Message>);

/// The cluster's members changed: open links to new peers, close links to removed ones, and
/// accept connections only from members. Sent by RaftNode when it applies a membership change
/// or installs a snapshot.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdatePeers(pub Vec<Member>);

/// How long an inbound connection has to say hello and answer the challenge.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Inbound connections in their handshake at once. Members hold one message connection each,
/// plus one per snapshot transfer, and finish their handshakes in a round trip.
pub const MAX_HANDSHAKES: usize = 32;
const SNAPSHOT_IO_TIMEOUT: Duration = Duration::from_secs(60);
const FAULT_POLL: Duration = Duration::from_millis(100);
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

/// Who this node is to its peers: its id, its store id, and the cluster secret it proves it
/// knows (empty when none is configured); with `--tls-peers`, the certificates it connects
/// and accepts with.
#[derive(Clone)]
pub struct PeerIdentity {
    pub id: u64,
    pub store_id: u64,
    pub secret: Vec<u8>,
    pub tls: Option<PeerTls>,
}

/// A peer connection: a TCP socket, or TLS over one (`--tls-peers`).
trait PeerStream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> PeerStream for S {}
type PeerConnection = Box<dyn PeerStream>;

/// The same for the blocking connection a snapshot is sent on.
trait BlockingStream: std::io::Read + std::io::Write {}
impl<S: std::io::Read + std::io::Write> BlockingStream for S {}

/// The peers allowed to connect, with the store id the address book records for each (0 while
/// unknown): shared with the inbound connection tasks.
type KnownPeers = HashMap<u64, u64>;

/// Traffic a fault test has asked this node to drop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRules {
    pub drop_out: HashSet<u64>,
    pub drop_in: HashSet<u64>,
}

impl FaultRules {
    fn parse(text: &str) -> FaultRules {
        let mut rules = FaultRules::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(what), Some(Ok(id))) = (words.next(), words.next().map(str::parse::<u64>)) else {
                continue;
            };
            match what {
                "drop-out" => drop(rules.drop_out.insert(id)),
                "drop-in" => drop(rules.drop_in.insert(id)),
                _ => {}
            }
        }
        rules
    }
}

pub struct PeerTransport {
    me: PeerIdentity,
    /// The other members: their peer addresses and recorded store ids.
    peers: HashMap<u64, Member>,
    listener: Option<TcpListener>,
    raft: RaftInbox,
    storage: Addr<Storage>,
    links: HashMap<u64, mpsc::Sender<Message>>,
    known: watch::Sender<KnownPeers>,
    fault_file: Option<PathBuf>,
    fault_seen: Option<SystemTime>,
    faults: watch::Sender<FaultRules>,
}

impl PeerTransport {
    /// `members` is the address book (this node's own entry is skipped); `listener` is bound
    /// to our peer address.
    pub fn new(
        me: PeerIdentity,
        members: &[Member],
        listener: TcpListener,
        raft: RaftInbox,
        storage: Addr<Storage>,
        fault_file: Option<PathBuf>,
    ) -> Self {
        PeerTransport {
            peers: members.iter().filter(|m| m.id != me.id).map(|m| (m.id, m.clone())).collect(),
            me,
            listener: Some(listener),
            raft,
            storage,
            links: HashMap::new(),
            known: watch::channel(HashMap::new()).0,
            fault_file,
            fault_seen: None,
            faults: watch::channel(FaultRules::default()).0,
        }
    }

    /// Starts the link to a peer.
    fn open_link(&mut self, peer: u64, addr: String) {
        let (tx, rx) = mpsc::channel(QUEUE_PER_PEER);
        self.links.insert(peer, tx);
        actix_rt::spawn(run_link(self.me.clone(), peer, addr, rx, self.raft.clone()));
    }

    fn publish_known(&self) {
        self.known.send_replace(self.peers.values().map(|m| (m.id, m.store_id)).collect());
    }

    /// Re-reads the fault-control file if it changed.
    fn poll_faults(&mut self) {
        let Some(path) = &self.fault_file else { return };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == self.fault_seen {
            return;
        }
        self.fault_seen = modified;
        let rules = FaultRules::parse(&std::fs::read_to_string(path).unwrap_or_default());
        if *self.faults.borrow() != rules {
            info!(node = self.me.id, drop_out = ?rules.drop_out, drop_in = ?rules.drop_in, "fault rules changed");
            self.faults.send_replace(rules);
        }
    }

    /// Streams a checkpoint of this node's data to a peer that needs a snapshot, on a thread of
    /// its own, and reports the outcome to RaftNode.
    fn send_snapshot(&mut self, msg: Message, ctx: &mut Context<Self>) {
        let (from, to) = (self.me.id, msg.to);
        let addr = self.peers.get(&to).map(|m| m.peer_addr.clone()).unwrap_or_default();
        let report = self.raft.snapshot.clone();
        let me = self.me.clone();
        let checkpoint = self.storage.send(CreateCheckpoint { for_peer: to });
        ctx.spawn(checkpoint.into_actor(self).map(move |result, _, _| {
            let checkpoint = match result {
                Ok(Ok(cp)) => cp,
                Ok(Err(e)) => {
                    warn!(node = from, peer = to, error = %e, "cannot take a snapshot checkpoint");
                    report.do_send(SnapshotReport { to, delivered: false });
                    return;
                }
                Err(_) => return,
            };
            info!(node = from, peer = to, index = checkpoint.index, "sending a snapshot");
            let spawned = std::thread::Builder::new().name(format!("snapshot-to-{to}")).spawn(move || {
                let result = transfer_snapshot(&me, to, &addr, msg, &checkpoint);
                let _ = std::fs::remove_dir_all(&checkpoint.dir);
                match &result {
                    Ok(keys) => {
                        info!(node = from, peer = to, index = checkpoint.index, keys, "snapshot delivered")
                    }
                    Err(e) => warn!(node = from, peer = to, error = %e, "snapshot transfer failed"),
                }
                let outcome = if result.is_ok() { "delivered" } else { "failed" };
                metrics::counter!(telemetry::SNAPSHOTS_SENT, "result" => outcome).increment(1);
                report.do_send(SnapshotReport { to, delivered: result.is_ok() });
            });
            if let Err(e) = spawned {
                warn!(node = from, error = %e, "cannot start a snapshot thread");
            }
        }));
    }
}

/// Sends one snapshot over a blocking connection; returns the number of keys sent.
fn transfer_snapshot(
    me: &PeerIdentity,
    to: u64,
    addr: &str,
    mut msg: Message,
    cp: &CheckpointInfo,
) -> std::io::Result<u64> {
    // The checkpoint, not raft-rs's compaction point, is what the follower installs.
    let meta = msg.mut_snapshot().mut_metadata();
    meta.index = cp.index;
    meta.term = cp.term;
    meta.set_conf_state(cp.conf_state.clone());
    msg.mut_snapshot().data = encode_members(&cp.members).into();
    let target = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("cannot resolve {addr}")))?;
    let stream = std::net::TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(SNAPSHOT_IO_TIMEOUT))?;
    stream.set_read_timeout(Some(SNAPSHOT_IO_TIMEOUT))?;
    let mut stream: Box<dyn BlockingStream> = match &me.tls {
        None => Box::new(stream),
        Some(tls) => {
            let name = server_name(addr).map_err(std::io::Error::other)?;
            let session = tokio_rustls::rustls::ClientConnection::new(tls.client.clone(), name)
                .map_err(std::io::Error::other)?;
            // The handshake happens with the first write, bounded by the socket's timeouts.
            Box::new(tokio_rustls::rustls::StreamOwned::new(session, stream))
        }
    };
    let hello = Hello { kind: ConnectionKind::Snapshot, from: me.id, store: me.store_id }.encode();
    write_frame(&mut stream, &hello)?;
    stream.flush()?;
    let mut challenge = [0u8; CHALLENGE_BYTES];
    read_handshake_frame(&mut stream, &mut challenge, "challenge")?;
    write_frame(&mut stream, &proof(&me.secret, &hello, &challenge))?;
    stream.flush()?;
    let mut verdict = [0u8; VERDICT_BYTES];
    read_handshake_frame(&mut stream, &mut verdict, "verdict")?;
    accept_verdict(me, to, Verdict::decode(&verdict, &me.secret, &hello, &challenge))?;
    let mut out = std::io::BufWriter::new(&mut stream);
    let mut frame = |bytes: &[u8]| write_frame(&mut out, bytes);
    frame(&msg.write_to_bytes().map_err(std::io::Error::other)?)?;
    let keys = stream_checkpoint(&cp.dir, &mut frame).map_err(std::io::Error::other)?;
    frame(&[])?;
    out.flush()?;
    drop(out);
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack)?;
    if ack[0] != 1 {
        return Err(std::io::Error::other("the peer refused the snapshot"));
    }
    Ok(keys)
}

/// Reads a frame of exactly `into.len()` bytes from a blocking stream.
fn read_handshake_frame(stream: &mut dyn BlockingStream, into: &mut [u8], what: &str) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    if u32::from_be_bytes(len) as usize != into.len() {
        return Err(std::io::Error::other(format!("bad {what} from the peer")));
    }
    stream.read_exact(into)
}

/// Acts on the peer's verdict on our hello: goes on if accepted; stops the node if the peer
/// knows this id by another store, since this node then lost the Raft state (log, vote) the
/// cluster counted on it for, and must not take part under this id again.
fn accept_verdict(me: &PeerIdentity, to: u64, verdict: Option<Verdict>) -> std::io::Result<()> {
    match verdict {
        Some(Verdict::Accepted) => Ok(()),
        None => Err(std::io::Error::other("the peer's verdict does not verify")),
        Some(Verdict::WrongStore { known }) => {
            let why = format!(
                "node {to} knows node {} by another data directory (store id {known:016x}; this one is \
                 {:016x}): this node's data directory was emptied or replaced. {}",
                me.id,
                me.store_id,
                crate::raft_node::how_to_replace(me.id)
            );
            fatal("this node lost Raft state the cluster relies on", &why)
        }
    }
}

impl Actor for PeerTransport {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.fault_file.is_some() {
            self.poll_faults();
            ctx.run_interval(FAULT_POLL, |transport, _| transport.poll_faults());
        }
        let peers: Vec<(u64, String)> = self.peers.values().map(|m| (m.id, m.peer_addr.clone())).collect();
        for (peer, addr) in peers {
            self.open_link(peer, addr);
        }
        self.publish_known();
        let listener = self.listener.take().expect("started once");
        let inbound = Inbound {
            me: self.me.id,
            known: self.known.subscribe(),
            step: self.raft.step.clone(),
            storage: self.storage.clone(),
            faults: self.faults.subscribe(),
            secret: self.me.secret.clone(),
            tls: self.me.tls.clone(),
        };
        actix_rt::spawn(accept_peers(listener, inbound));
    }
}

impl Handler<UpdatePeers> for PeerTransport {
    type Result = ();

    /// Reconciles the links with the new member list (a dropped sender ends its link task).
    fn handle(&mut self, msg: UpdatePeers, _: &mut Context<Self>) {
        let wanted: HashMap<u64, Member> =
            msg.0.into_iter().filter(|m| m.id != self.me.id).map(|m| (m.id, m)).collect();
        self.links.retain(|id, _| wanted.contains_key(id));
        for (id, member) in &wanted {
            let addr = &member.peer_addr;
            if self.peers.get(id).map(|m| &m.peer_addr) != Some(addr) || !self.links.contains_key(id) {
                info!(node = self.me.id, peer = id, %addr, "peer address book updated");
                self.open_link(*id, addr.clone());
            }
        }
        self.peers = wanted;
        self.publish_known();
    }
}

impl Handler<SendMessages> for PeerTransport {
    type Result = ();

    /// Queues each message on its peer's link; drops it if the peer is unknown or its queue is
    /// full (Raft retransmits).
    fn handle(&mut self, msg: SendMessages, ctx: &mut Context<Self>) {
        for m in msg.0 {
            let to = m.to;
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            if self.faults.borrow().drop_out.contains(&to) {
                if is_snapshot {
                    self.raft.snapshot.do_send(SnapshotReport { to, delivered: false });
                }
                continue;
            }
            if is_snapshot {
                self.send_snapshot(m, ctx);
                continue;
            }
            let Some(link) = self.links.get(&to) else {
                debug!(node = self.me.id, to, "dropping a message to an unknown peer");
                continue;
            };
            if let Err(mpsc::error::TrySendError::Full(m)) = link.try_send(m) {
                debug!(node = self.me.id, to, "peer queue full; dropping a message");
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    self.raft.snapshot.do_send(SnapshotReport { to, delivered: false });
                }
                self.raft.unreachable.do_send(PeerUnreachable(to));
            }
        }
    }
}

/// The connecting side of the handshake: hello, the answer to the receiver's challenge, then
/// its verdict.
async fn introduce(
    framed: &mut Framed<PeerConnection, LengthDelimitedCodec>,
    me: &PeerIdentity,
    to: u64,
) -> std::io::Result<()> {
    let hello = Hello { kind: ConnectionKind::Messages, from: me.id, store: me.store_id }.encode();
    framed.send(hello.clone()).await?;
    let challenge = next_handshake_frame(framed, "challenge").await?;
    framed.send(Bytes::from(proof(&me.secret, &hello, &challenge))).await?;
    let verdict = next_handshake_frame(framed, "verdict").await?;
    accept_verdict(me, to, Verdict::decode(&verdict, &me.secret, &hello, &challenge))
}

async fn next_handshake_frame(
    framed: &mut Framed<PeerConnection, LengthDelimitedCodec>,
    what: &str,
) -> std::io::Result<bytes::BytesMut> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next())
        .await
        .map_err(|_| std::io::Error::other(format!("no {what} from the peer")))?
        .ok_or_else(|| std::io::Error::other("the peer closed the connection"))?
}

/// A fresh outbound connection to peer `to` at `addr`, made ready for messages: the TLS
/// handshake (with `--tls-peers`), then the peer handshake.
async fn open_link_connection(
    me: &PeerIdentity,
    to: u64,
    addr: &str,
    stream: TcpStream,
) -> std::io::Result<Framed<PeerConnection, LengthDelimitedCodec>> {
    let stream = connect_tls(me, addr, stream).await?;
    let mut sink = Framed::new(stream, frame_codec(HANDSHAKE_MAX_FRAME));
    introduce(&mut sink, me, to).await?;
    sink.codec_mut().set_max_frame_length(MAX_FRAME);
    Ok(sink)
}

/// With `--tls-peers`, the TLS handshake on a fresh outbound connection to the peer at `addr`.
async fn connect_tls(me: &PeerIdentity, addr: &str, stream: TcpStream) -> std::io::Result<PeerConnection> {
    let Some(tls) = &me.tls else { return Ok(Box::new(stream)) };
    let name = server_name(addr).map_err(std::io::Error::other)?;
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connector().connect(name, stream))
        .await
        .map_err(|_| std::io::Error::other("no TLS handshake from the peer"))??;
    Ok(Box::new(stream))
}

/// Owns the connection to one peer for the life of the node.
async fn run_link(
    me: PeerIdentity,
    to: u64,
    addr: String,
    mut queue: mpsc::Receiver<Message>,
    raft: RaftInbox,
) {
    let from = me.id;
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
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut sink = match open_link_connection(&me, to, &addr, stream).await {
            Ok(sink) => sink,
            Err(e) => {
                debug!(node = from, peer = to, error = %e, "peer handshake failed");
                raft.unreachable.do_send(PeerUnreachable(to));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        info!(node = from, peer = to, %addr, "connected to peer");
        let connected = metrics::gauge!(telemetry::PEER_CONNECTED, "peer" => to.to_string());
        connected.set(1.0);
        was_connected = true;
        backoff = BACKOFF_MIN;
        if let Err(e) = pump(&mut sink, &mut queue, to, &raft).await {
            match e {
                LinkEnd::QueueClosed => return,
                LinkEnd::Io(e) => {
                    connected.set(0.0);
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
    sink: &mut Framed<PeerConnection, LengthDelimitedCodec>,
    queue: &mut mpsc::Receiver<Message>,
    _to: u64,
    _raft: &RaftInbox,
) -> Result<(), LinkEnd> {
    loop {
        let Some(first) = queue.recv().await else {
            return Err(LinkEnd::QueueClosed);
        };
        let mut next = Some(first);
        while let Some(m) = next {
            let bytes = m.write_to_bytes().expect("raft messages always serialize");
            sink.feed(Bytes::from(bytes)).await.map_err(LinkEnd::Io)?;
            next = queue.try_recv().ok();
        }
        SinkExt::<Bytes>::flush(sink).await.map_err(LinkEnd::Io)?;
    }
}

/// What inbound connections need: who we are, who may talk to us, and where messages go.
#[derive(Clone)]
struct Inbound {
    me: u64,
    known: watch::Receiver<KnownPeers>,
    step: Recipient<Step>,
    storage: Addr<Storage>,
    faults: watch::Receiver<FaultRules>,
    secret: Vec<u8>,
    tls: Option<PeerTls>,
}

async fn accept_peers(listener: TcpListener, inbound: Inbound) {
    let me = inbound.me;
    let handshakes = std::sync::Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let mut warnings = crate::RefusalWarnings::default();
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                    if warnings.due() {
                        warn!(node = me, %remote, "{MAX_HANDSHAKES} peer handshakes under way: closing new peer connections");
                    }
                    debug!(node = me, %remote, "closed a peer connection: too many handshakes");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let inbound = inbound.clone();
                actix_rt::spawn(async move {
                    if let Err(reason) = serve_peer(stream, handshake, inbound).await {
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

/// Reads one inbound peer connection until it closes or misbehaves. `handshake` is its place
/// among the connections in their handshake, given back once the peer is accepted.
async fn serve_peer(
    stream: TcpStream,
    handshake: OwnedSemaphorePermit,
    inbound: Inbound,
) -> Result<(), String> {
    let me = inbound.me;
    let stream: PeerConnection = match &inbound.tls {
        None => Box::new(stream),
        Some(tls) => Box::new(
            tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream))
                .await
                .map_err(|_| "no TLS handshake within the handshake timeout".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?,
        ),
    };
    // Until the peer has proven it knows the secret, frames are tiny: a stranger announcing a
    // huge frame must not make us reserve memory for it.
    let mut frames = FramedRead::new(stream, frame_codec(HANDSHAKE_MAX_FRAME));
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next())
        .await
        .map_err(|_| "no hello within the handshake timeout".to_string())?;
    let (Hello { kind, from, store }, hello) = match first {
        Some(Ok(h)) => match Hello::decode(&h) {
            Some(parsed) => (parsed, h),
            None => return Err("bad hello frame".into()),
        },
        Some(Err(e)) => return Err(format!("bad hello frame: {e}")),
        None => return Ok(()),
    };
    if !inbound.known.borrow().contains_key(&from) {
        return Err(format!("hello from unknown node {from}"));
    }
    let mut challenge = [0u8; CHALLENGE_BYTES];
    getrandom::getrandom(&mut challenge).map_err(|e| format!("no randomness for a challenge: {e}"))?;
    let mut frame = Vec::with_capacity(4 + CHALLENGE_BYTES);
    frame.extend_from_slice(&(CHALLENGE_BYTES as u32).to_be_bytes());
    frame.extend_from_slice(&challenge);
    write_flushed(frames.get_mut(), &frame).await?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.next())
        .await
        .map_err(|_| format!("node {from} did not answer the challenge"))?
        .ok_or_else(|| format!("node {from} closed the connection during the handshake"))?
        .map_err(|e| format!("bad handshake frame from node {from}: {e}"))?;
    if !verify_proof(&inbound.secret, &hello, &challenge, &answer) {
        return Err(format!("node {from} failed peer authentication (wrong or missing --cluster-secret)"));
    }
    let mut book = inbound.known.clone();
    let verdict = match admit(&book.borrow_and_update(), from, store) {
        Ok(()) => Verdict::Accepted,
        Err(Refusal::WrongStore(known)) => Verdict::WrongStore { known },
        Err(refusal) => return Err(refusal.explain(from, store)),
    };
    let mut frame = (VERDICT_BYTES as u32).to_be_bytes().to_vec();
    frame.extend(verdict.encode(&inbound.secret, &hello, &challenge));
    write_flushed(frames.get_mut(), &frame).await?;
    if let Verdict::WrongStore { known } = verdict {
        return Err(Refusal::WrongStore(known).explain(from, store));
    }
    drop(handshake);
    frames.decoder_mut().set_max_frame_length(MAX_FRAME);
    if kind == ConnectionKind::Snapshot {
        return receive_snapshot(frames, from, inbound).await;
    }
    while let Some(frame) = frames.next().await {
        if book.has_changed().unwrap_or(false) {
            // The sender was removed, or its store id recorded since it connected.
            admit(&book.borrow_and_update(), from, store).map_err(|refusal| refusal.explain(from, store))?;
        }
        let msg = decode_message(frame, from, me)?;
        if inbound.faults.borrow().drop_in.contains(&from) {
            continue;
        }
        if !inbound.step.connected() {
            return Err("raft node stopped".into());
        }
        inbound.step.do_send(Step(msg));
    }
    Ok(())
}

/// Why a peer may not take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotMember,
    /// The address book records this other store id for it.
    WrongStore(u64),
}

impl Refusal {
    fn explain(self, from: u64, store: u64) -> String {
        match self {
            Refusal::NotMember => format!("node {from} is not a member"),
            Refusal::WrongStore(known) => format!(
                "refused node {from}: it connects from store {store:016x}, the cluster knows it by \
                 {known:016x}; it lost its data and must be replaced (RAFT.NODE REMOVE {from})"
            ),
        }
    }
}

/// Whether node `from`, connecting from a data directory with store id `store`, may take part:
/// it must be a member, and the store id the address book records for it, if any, must be this.
fn admit(known: &KnownPeers, from: u64, store: u64) -> Result<(), Refusal> {
    match known.get(&from) {
        Some(&recorded) if recorded == 0 || recorded == store => Ok(()),
        Some(&recorded) => Err(Refusal::WrongStore(recorded)),
        None => Err(Refusal::NotMember),
    }
}

/// Stages an incoming snapshot through Storage, then hands its message to RaftNode.
async fn receive_snapshot(
    mut frames: FramedRead<PeerConnection, LengthDelimitedCodec>,
    from: u64,
    inbound: Inbound,
) -> Result<(), String> {
    let me = inbound.me;
    let header = frames.next().await.ok_or("snapshot connection closed before its header")?;
    let msg = decode_message(header, from, me)?;
    if msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err(format!("expected a snapshot header from node {from}, got {:?}", msg.get_msg_type()));
    }
    if inbound.faults.borrow().drop_in.contains(&from) {
        return Ok(());
    }
    let meta = msg.get_snapshot().get_metadata();
    let (index, term) = (meta.index, meta.term);
    info!(node = me, leader = from, index, term, "receiving a snapshot");
    let storage = inbound.storage;
    let stage = |e: crate::Error| format!("staging snapshot {index} failed: {e}");
    let mailbox = |_| "storage stopped".to_string();
    storage.send(BeginSnapshot { index, term }).await.map_err(mailbox)?.map_err(stage)?;
    loop {
        let frame = frames.next().await.ok_or("snapshot connection closed mid-transfer")?;
        let chunk = frame.map_err(|e| format!("bad snapshot frame from node {from}: {e}"))?;
        if chunk.is_empty() {
            break;
        }
        storage.send(SnapshotChunk(chunk.freeze())).await.map_err(mailbox)?.map_err(stage)?;
    }
    storage.send(FinishSnapshot).await.map_err(mailbox)?.map_err(stage)?;
    inbound.step.do_send(Step(msg));
    write_flushed(frames.get_mut(), &[1]).await
}

/// Writes `bytes` and flushes them (TLS buffers what it encrypts until then).
async fn write_flushed(stream: &mut PeerConnection, bytes: &[u8]) -> Result<(), String> {
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;
    use crate::storage::Storage;
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;

    /// Stands in for RaftNode: records what the transport delivers.
    #[derive(Default)]
    struct Recorder {
        steps: Arc<Mutex<Vec<Message>>>,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl Handler<Step> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: Step, _: &mut Context<Self>) {
            self.steps.lock().unwrap().push(msg.0);
        }
    }

    impl Handler<PeerUnreachable> for Recorder {
        type Result = ();
        fn handle(&mut self, _: PeerUnreachable, _: &mut Context<Self>) {}
    }

    impl Handler<SnapshotReport> for Recorder {
        type Result = ();
        fn handle(&mut self, _: SnapshotReport, _: &mut Context<Self>) {}
    }

    fn heartbeat(from: u64, to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m.term = 7;
        m
    }

    fn hello(from: u64, store: u64) -> Option<Bytes> {
        Some(Hello { kind: ConnectionKind::Messages, from, store }.encode())
    }

    /// Connects, sends `frames` (a hello first, if given, answering the challenge with
    /// `secret`), closes the writing side and waits until the transport closes the connection.
    /// Returns the transport's verdict on the hello, if it sent one that verifies.
    async fn send_frames(
        addr: std::net::SocketAddr,
        hello: Option<Bytes>,
        secret: &[u8],
        frames: &[&[u8]],
    ) -> Option<Verdict> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut challenge = [0u8; 4 + CHALLENGE_BYTES];
        if let Some(hello) = &hello {
            stream.write_all(&frame(hello)).await.unwrap();
            if tokio::io::AsyncReadExt::read_exact(&mut stream, &mut challenge).await.is_ok() {
                let answer = proof(secret, hello, &challenge[4..]);
                let _ = stream.write_all(&frame(&answer)).await;
            }
        }
        for f in frames {
            let _ = stream.write_all(&frame(f)).await;
        }
        let _ = stream.shutdown().await;
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
        let verdict = rest.get(4..4 + VERDICT_BYTES)?;
        Verdict::decode(verdict, secret, &hello?, &challenge[4..])
    }

    fn frame(bytes: &[u8]) -> Vec<u8> {
        [&(bytes.len() as u32).to_be_bytes()[..], bytes].concat()
    }

    /// Nodes 1 and 2, at an address nobody listens on (outbound sends just fail).
    fn nodes_1_and_2() -> Vec<Member> {
        [1, 2].map(|id| Member { id, peer_addr: "127.0.0.1:1".into(), ..Default::default() }).to_vec()
    }

    /// A transport for node 1 whose address book holds `members`, and what it steps into Raft.
    async fn transport_of_node_1(members: &[Member]) -> (std::net::SocketAddr, Arc<Mutex<Vec<Message>>>) {
        let (addr, steps, _, _) = transport_and_recorder(members).await;
        (addr, steps)
    }

    async fn transport_and_recorder(
        members: &[Member],
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Message>>>, Addr<PeerTransport>, Addr<Recorder>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        transport_of(1, members, listener, None).await
    }

    /// A transport for node `id`, listening on `listener`, with `tls` if given.
    async fn transport_of(
        id: u64,
        members: &[Member],
        listener: TcpListener,
        tls: Option<PeerTls>,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Message>>>, Addr<PeerTransport>, Addr<Recorder>) {
        let dir = tempfile::tempdir().unwrap();
        let (storage, recovered) = Storage::open(dir.path(), id, members, true).unwrap();
        let storage = crate::mailbox::start(storage);
        let steps = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder { steps: steps.clone() }.start();
        let inbox = RaftInbox {
            step: recorder.clone().recipient(),
            unreachable: recorder.clone().recipient(),
            snapshot: recorder.clone().recipient(),
        };
        let addr = listener.local_addr().unwrap();
        let me = PeerIdentity { id, store_id: recovered.store_id, secret: b"s3cret".to_vec(), tls };
        let transport =
            crate::mailbox::start(PeerTransport::new(me, members, listener, inbox, storage, None));
        (addr, steps, transport, recorder)
    }

    async fn wait_for_steps(steps: &Mutex<Vec<Message>>, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while steps.lock().unwrap().len() < n {
            assert!(std::time::Instant::now() < deadline, "valid messages were not stepped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A certificate authority for the TLS tests.
    struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl TestCa {
        fn new() -> TestCa {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            TestCa { cert: params.self_signed(&key).unwrap(), key }
        }

        /// Peer TLS for a node whose certificate (for 127.0.0.1) this CA signs, trusting `trusted`.
        fn peer_tls(&self, dir: &std::path::Path, trusted: &TestCa) -> PeerTls {
            use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            params.extended_key_usages = vec![ServerAuth, ClientAuth];
            let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
            let dir = tempfile::tempdir_in(dir).unwrap().keep();
            let write = |name: &str, pem: String| {
                std::fs::write(dir.join(name), pem).unwrap();
                dir.join(name)
            };
            crate::tls::TlsSettings {
                port: None,
                peers: true,
                cert_file: write("node.crt", cert.pem()),
                key_file: write("node.key", key.serialize_pem()),
                ca_cert_file: Some(write("ca.crt", trusted.cert.pem())),
                client_auth: crate::tls::ClientAuth::Required,
            }
            .peer_tls()
            .unwrap()
        }
    }

    #[actix_rt::test]
    async fn peers_with_certificates_from_the_ca_talk_over_tls_and_nobody_else_gets_in() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, other_ca) = (TestCa::new(), TestCa::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr1 = listener.local_addr().unwrap();
        let book = |addr2: &str| {
            [(1, addr1.to_string()), (2, addr2.to_string())]
                .map(|(id, peer_addr)| Member { id, peer_addr, ..Default::default() })
                .to_vec()
        };
        let tls1 = ca.peer_tls(dir.path(), &ca);
        let (_, steps, _t1, _r1) = transport_of(1, &book("127.0.0.1:1"), listener, Some(tls1)).await;

        // Plain TCP, as node 2 with the right secret: refused at the TLS handshake.
        assert_eq!(
            send_frames(addr1, hello(2, 0), b"s3cret", &[&heartbeat(2, 1).write_to_bytes().unwrap()]).await,
            None
        );
        // TLS with a certificate from another CA: refused too.
        let foreign = other_ca.peer_tls(dir.path(), &ca);
        let tcp = TcpStream::connect(addr1).await.unwrap();
        let name = server_name(&addr1.to_string()).unwrap();
        let refused = match foreign.connector().connect(name, tcp).await {
            Err(_) => true,
            Ok(mut stream) => {
                let _ = stream.write_all(&frame(&hello(2, 0).unwrap())).await;
                let _ = stream.flush().await;
                let mut buf = [0u8; 64];
                !matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await, Ok(n) if n > 0)
            }
        };
        assert!(refused, "a certificate from another CA was accepted");
        assert!(steps.lock().unwrap().is_empty(), "a message got in without a valid certificate");

        // Node 2, with its certificate from the CA: its messages arrive.
        let listener2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr2 = listener2.local_addr().unwrap().to_string();
        let tls2 = ca.peer_tls(dir.path(), &ca);
        let (_, _, transport2, _r2) = transport_of(2, &book(&addr2), listener2, Some(tls2)).await;
        transport2.send(SendMessages(vec![heartbeat(2, 1)])).await.unwrap();
        wait_for_steps(&steps, 1).await;
        let stepped = steps.lock().unwrap();
        assert_eq!((stepped[0].from, stepped[0].to, stepped[0].term), (2, 1, 7));
    }

    #[actix_rt::test]
    async fn valid_messages_are_stepped_and_garbage_unknown_senders_and_misaddressed_frames_are_not() {
        // Node 1 knows node 2.
        let (addr, steps) = transport_of_node_1(&nodes_1_and_2()).await;

        let good = heartbeat(2, 1).write_to_bytes().unwrap();
        let secret = b"s3cret".as_slice();
        // Garbage instead of a hello, a hello from a node that is not a member, a member that
        // does not know the cluster secret, a message claiming another sender, an undecodable
        // frame, and an oversized frame header.
        assert_eq!(send_frames(addr, None, secret, &[b"GET / HTTP/1.1"]).await, None);
        let from_9 =
            send_frames(addr, hello(9, 9), secret, &[&heartbeat(9, 1).write_to_bytes().unwrap()]).await;
        assert_eq!(from_9, None);
        assert_eq!(send_frames(addr, hello(2, 2), b"wrong", &[&good]).await, None);
        let misaddressed = heartbeat(3, 1).write_to_bytes().unwrap();
        assert_eq!(send_frames(addr, hello(2, 2), secret, &[&misaddressed]).await, Some(Verdict::Accepted));
        send_frames(addr, hello(2, 2), secret, &[&[0xff, 0xff, 0xff]]).await;
        {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&(u32::MAX).to_be_bytes()).await.unwrap();
            let mut rest = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest).await;
        }
        assert!(steps.lock().unwrap().is_empty(), "nothing invalid reaches raft");
        // The transport still serves a well-behaved peer afterwards.
        send_frames(addr, hello(2, 2), secret, &[&good, &good]).await;
        wait_for_steps(&steps, 2).await;
        assert!(steps.lock().unwrap().iter().all(|m| m.from == 2 && m.to == 1 && m.term == 7));
    }

    #[actix_rt::test]
    async fn a_member_connecting_from_another_store_than_the_recorded_one_is_refused() {
        // The book records node 2's store; node 3's is not known yet.
        let members = vec![
            Member { id: 1, peer_addr: "127.0.0.1:1".into(), ..Default::default() },
            Member { id: 2, peer_addr: "127.0.0.1:1".into(), store_id: 22, ..Default::default() },
            Member { id: 3, peer_addr: "127.0.0.1:1".into(), ..Default::default() },
        ];
        let (addr, steps) = transport_of_node_1(&members).await;
        let secret = b"s3cret".as_slice();
        let from_2 = heartbeat(2, 1).write_to_bytes().unwrap();
        let refused = send_frames(addr, hello(2, 23), secret, &[&from_2]).await;
        assert_eq!(refused, Some(Verdict::WrongStore { known: 22 }));
        assert_eq!(send_frames(addr, hello(2, 22), secret, &[&from_2]).await, Some(Verdict::Accepted));
        wait_for_steps(&steps, 1).await;
        let from_3 = heartbeat(3, 1).write_to_bytes().unwrap();
        assert_eq!(send_frames(addr, hello(3, 33), secret, &[&from_3]).await, Some(Verdict::Accepted));
        wait_for_steps(&steps, 2).await;
        let stepped: Vec<u64> = steps.lock().unwrap().iter().map(|m| m.from).collect();
        assert_eq!(stepped, vec![2, 3], "node 2 from store 23 was not stepped");
    }

    #[actix_rt::test]
    async fn a_connection_is_closed_once_the_book_records_another_store_for_its_sender() {
        let node =
            |id, store_id| Member { id, peer_addr: "127.0.0.1:1".into(), store_id, ..Default::default() };
        let (addr, steps, transport, recorder) = transport_and_recorder(&[node(1, 0), node(2, 0)]).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let hello = hello(2, 23).unwrap();
        stream.write_all(&frame(&hello)).await.unwrap();
        let mut challenge = [0u8; 4 + CHALLENGE_BYTES];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut challenge).await.unwrap();
        stream.write_all(&frame(&proof(b"s3cret", &hello, &challenge[4..]))).await.unwrap();
        let mut verdict = [0u8; 4 + VERDICT_BYTES];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut verdict).await.unwrap();
        let verdict = Verdict::decode(&verdict[4..], b"s3cret", &hello, &challenge[4..]);
        assert_eq!(verdict, Some(Verdict::Accepted), "no store id is recorded for node 2 yet");
        let beat = heartbeat(2, 1).write_to_bytes().unwrap();
        stream.write_all(&frame(&beat)).await.unwrap();
        wait_for_steps(&steps, 1).await;
        // Node 2's own record names another data directory than the one it connected from.
        transport.send(UpdatePeers(vec![node(1, 0), node(2, 22)])).await.unwrap();
        let _ = stream.write_all(&frame(&beat)).await;
        let mut rest = Vec::new();
        let closed = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), closed).await.is_ok(),
            "the connection stayed open"
        );
        // Whatever the transport stepped before closing has reached the recorder by now.
        recorder.send(PeerUnreachable(2)).await.unwrap();
        assert_eq!(steps.lock().unwrap().len(), 1, "nothing was stepped after the store id was recorded");
    }

    #[actix_rt::test]
    async fn silent_connections_hold_at_most_the_handshake_places_and_only_until_the_timeout() {
        let (addr, steps) = transport_of_node_1(&nodes_1_and_2()).await;
        // Strangers that connect and say nothing take every handshake place...
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKES {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        // ... so one more, accepted after them, is closed at once, while they are still open.
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT * 3,
            tokio::io::AsyncReadExt::read_to_end(&mut extra, &mut rest),
        )
        .await
        .expect("the connection past the handshake places was closed")
        .unwrap();
        let mut probe = [0u8; 1];
        assert!(
            matches!(silent[0].try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a silent connection was closed before its handshake timed out"
        );
        // They are closed once the handshake timeout passes...
        for stream in &mut silent {
            let mut rest = Vec::new();
            tokio::time::timeout(
                HANDSHAKE_TIMEOUT * 3,
                tokio::io::AsyncReadExt::read_to_end(stream, &mut rest),
            )
            .await
            .expect("a silent connection outlived the handshake timeout")
            .unwrap();
        }
        // ... and a member gets through.
        let good = heartbeat(2, 1).write_to_bytes().unwrap();
        let verdict = send_frames(addr, hello(2, 2), b"s3cret", &[&good]).await;
        assert_eq!(verdict, Some(Verdict::Accepted));
        wait_for_steps(&steps, 1).await;
    }

    #[test]
    fn fault_rules_parse_directions_and_ignore_junk() {
        let rules = FaultRules::parse("drop-out 2\ndrop-in 3\n# comment\ndrop-out x\nbogus 4\n");
        assert_eq!(rules.drop_out, HashSet::from([2]));
        assert_eq!(rules.drop_in, HashSet::from([3]));
    }
}
