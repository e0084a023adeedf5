//! The actors of a raft-kv node and everything they own.
//!
//! # Layout
//! - [`session`]: **Session**, one actor per client connection: RESP in, replies out in request
//!   order; answers connection commands (PING, CLIENT, CONFIG GET ...) itself.
//! - [`redis_store`]: **RedisStore**, Redis semantics on top of Raft: writes become proposals
//!   that wait for their own entry to be applied; reads wait for a ReadIndex and for the node to
//!   have applied that far.
//! - [`raft_node`]: **RaftNode**, owns raft-rs's `RawNode`: ticks, steps peer messages, batches
//!   proposals and reads, and runs every `Ready` (persist, send, apply, advance).
//! - [`storage`]: **Storage**, owns RocksDB: the Raft log and hard state (made durable before
//!   raft-rs hears they are; its own `wal-sync` thread syncs the write-ahead log, one sync for
//!   every Ready written meanwhile), the keyspace and the applied index (written together,
//!   atomically).
//! - [`peer_transport`]: **PeerTransport**, TCP between nodes: length-delimited protobuf
//!   `eraftpb::Message` frames, one reconnecting link per peer.
//! - [`keyspace`] (value layout and the apply/read logic Storage runs), [`glob`] (KEYS
//!   patterns), [`raft_log`] (RaftNode's view of the log, given to raft-rs), [`membership`]
//!   (members and their addresses), [`telemetry`] (metric names), [`tls`] (TLS settings of
//!   the client port and the peers), [`error`].
//! - From the `protocol` crate, re-exported here: [`resp`] (the RESP codec), [`command`]
//!   (typed commands and the log payload), [`peer_wire`] (the peer port's frames and
//!   handshake). They decode untrusted bytes and live in a crate without RocksDB or actix so
//!   that they can be fuzzed.
//!
//! # Snapshots and membership
//! Once the applied log passes a threshold, RaftNode compacts it (and Storage's copy). A peer
//! that needs compacted entries gets a snapshot: PeerTransport asks Storage for a RocksDB
//! checkpoint and streams it in chunks on a connection of its own; the receiving PeerTransport
//! stages the chunks through Storage and then steps the snapshot message into RaftNode, whose
//! Ready has Storage install it. Membership changes (`RAFT.NODE`) are Raft configuration
//! changes carrying the new member's addresses; RaftNode applies them and tells PeerTransport.
//!
//! # The path of a command
//! A client's `SET k v` is decoded by its Session and sent to RedisStore (`ExecuteBatch`, with
//! whatever else the client pipelined), which wraps it in a `Proposal` with a unique request id
//! and sends it to RaftNode (`Propose`), packed into one log entry with every write of that
//! turn. RaftNode appends the entry to raft-rs; the next Ready hands the new entries to Storage
//! (`PersistReady`) while PeerTransport carries them to the followers, and RaftNode goes on
//! without waiting for the fsync (raft-rs's asynchronous Ready: a follower's acknowledgement
//! leaves only once its entries, and every earlier Ready's, are durable; Storage's sync thread
//! tells RaftNode directly).
//! When a quorum has them, the entry is committed, RaftNode sends it to Storage
//! (`ApplyCommitted`, ahead of the next persist), Storage applies it to the keyspace and tells
//! RedisStore (`Applied`) the reply it computed, and RedisStore answers the Session, which
//! writes the reply in its turn. A write whose reply cannot depend on the keyspace (`SET`,
//! `MSET`: always `+OK`) is answered earlier, when RaftNode says its batch is committed
//! (`Committed`, named by the entry's context): any later read waits for the apply anyway. A `GET` instead waits for a read index (one `ReadIndex` round
//! serves every read that arrived while the previous round was out), then until `Applied`
//! reaches it, and reads from Storage (`Read`, all reads released together in one message).
//!
//! Actors share no mutable state: each owns its part and the others reach it only through its
//! mailbox. Storage runs on its own thread (and syncs on another) so fsyncs never block
//! client I/O.

// The docs are for the people who work on these actors: they link to private items, and are
// read with `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod error;
pub mod glob;
pub mod keyspace;
pub mod peer_transport;
pub mod pubsub;
pub mod raft_log;
pub mod raft_node;
pub mod redis_store;
pub mod session;
pub mod storage;
pub mod telemetry;
pub mod tls;

pub use protocol::{command, peer_wire, resp};

/// Cluster membership as the nodes record it. The types live in the `protocol` crate (the
/// `RAFT.NODE` command names members); this adds the actors' error type.
pub mod membership {
    pub use protocol::membership::{
        address_record, apply_address_record, encode_address, encode_members, is_membership_record,
        refused_change, upsert, ConfChangeContext, Member, ADDRESS_CONTEXT, REFUSED_CHANGE_CONTEXT,
    };

    /// The member list a snapshot or the raft state carries; an undecodable one is corrupt.
    pub fn decode_members(data: &[u8]) -> crate::Result<Vec<Member>> {
        Ok(protocol::membership::decode_members(data)?)
    }
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use actix::prelude::*;
use tokio::net::TcpListener;
use tracing::info;

pub use error::{Error, Result};

use membership::Member;
use peer_transport::{PeerIdentity, PeerTransport, RaftInbox};
use raft_node::{RaftNode, RaftTiming};
use redis_store::{NodeInfo, RedisStore, StoreTiming};
use resp::RespLimits;
use session::SessionConfig;
use storage::Storage;

/// Mailboxes that keep every sender's messages in the order it sent them.
///
/// An actix mailbox holds 16 messages by default. Past that, `Addr::send` does not enqueue:
/// it keeps the message in the future it returns and enqueues it when that future is first
/// polled, while a later `send` (once the mailbox has drained a little) or any `do_send` goes
/// in at once. Two sends from one actor can then arrive in the other order: a later Ready's
/// `PersistReady` ahead of an earlier one (whose write would then cut the later entries off
/// the log, and whose durability raft-rs would hear of too soon), an `ApplyCommitted` ahead of
/// the one before it. Every actor that hears from another (RaftNode, RedisStore, Storage,
/// PeerTransport) therefore gets an unbounded mailbox, where a send enqueues at the call, in
/// call order. The load stays bounded by the senders: a Session has one batch in flight,
/// RedisStore one read-index round, and RaftNode's messages follow the Readies raft-rs hands
/// it.
pub mod mailbox {
    use actix::dev::channel;
    use actix::prelude::*;

    /// actix's capacity for "never full".
    const UNBOUNDED: usize = 0;

    /// A context, for an actor whose address must exist before it starts.
    pub fn context<A: Actor<Context = Context<A>>>() -> Context<A> {
        let mut ctx = Context::new();
        ctx.set_mailbox_capacity(UNBOUNDED);
        ctx
    }

    /// Starts `actor` on the current arbiter.
    pub fn start<A: Actor<Context = Context<A>>>(actor: A) -> Addr<A> {
        context().run(actor)
    }

    /// Starts the actor `make` builds on `arbiter`'s thread. The address is usable at once,
    /// and already unbounded: no message sent before the actor starts can be held back.
    pub fn start_in<A, F>(arbiter: &ArbiterHandle, make: F) -> Addr<A>
    where
        A: Actor<Context = Context<A>>,
        F: FnOnce() -> A + Send + 'static,
    {
        let (sender, receiver) = channel::channel(UNBOUNDED);
        arbiter.spawn_fn(move || {
            Context::with_receiver(receiver).run(make());
        });
        Addr::new(sender)
    }
}

/// File descriptors a node keeps for everything but client connections: RocksDB's files (at
/// most [`storage::MAX_OPEN_TABLE_FILES`] tables open at once, plus its logs, the manifest and a
/// snapshot being sent or received), peer connections and handshakes
/// ([`peer_transport::MAX_HANDSHAKES`]), the metrics port's few connections (the binary's
/// `metrics_http`), and the runtime's own. The binary sizes the open-file
/// limit to `--maxclients` plus these, or fits `--maxclients` to the limit.
pub const RESERVED_FDS: u64 = 512;

/// How often, at most, a node logs that it is refusing connections (clients past
/// `--maxclients`, peer connections past the handshake places, scrapes past the metrics port's
/// places); `INFO stats` counts every refused client.
const REFUSAL_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Lets a refusal warning through at most once per [`REFUSAL_WARNING_INTERVAL`], so that a flood
/// of connections does not become a flood of log lines.
#[derive(Debug, Default)]
pub struct RefusalWarnings {
    last: Option<Instant>,
}

impl RefusalWarnings {
    /// Whether to log this refusal (and, if so, the interval starts again now).
    pub fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_INTERVAL);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id, 1-based: its peer address is `cluster[id - 1]`.
    pub id: u64,
    /// The peer (Raft) address of every node of the initial cluster.
    pub cluster: Vec<String>,
    /// Address the Redis port binds to.
    pub bind: String,
    /// The Redis port (0 picks a free one).
    pub port: u16,
    pub data_dir: PathBuf,
    pub raft: RaftTiming,
    pub store: StoreTiming,
    pub limits: RespLimits,
    /// Clients must `AUTH` with this password first (`--requirepass`).
    pub requirepass: Option<String>,
    /// At most this many client connections at once (`--maxclients`); one more is answered
    /// `-ERR max number of clients reached` and closed, as Redis does.
    pub maxclients: usize,
    /// Start with no membership and wait to be added (`RAFT.NODE ADD`) by the cluster.
    pub join: bool,
    /// The secret peers prove they share when they connect (empty: none).
    pub cluster_secret: Vec<u8>,
    /// Fault tests only: a file naming peer traffic to drop (see [`peer_transport`]).
    pub fault_control: Option<PathBuf>,
    /// When Raft log writes are synced (`--fsync`; anything but the default is not Raft-safe).
    pub fsync: storage::Fsync,
    /// TLS on a second client port (`--tls-port`) and between peers (`--tls-peers`), if set.
    pub tls: Option<tls::TlsSettings>,
}

/// A started node: where it listens, and the handles the binary needs to shut it down in order.
pub struct RunningNode {
    pub redis_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub raft: Addr<RaftNode>,
    pub storage: Addr<Storage>,
    pub store: Addr<RedisStore>,
    /// The task accepting client connections; aborting it closes the Redis port.
    pub clients: actix_rt::task::JoinHandle<()>,
    /// The thread Storage runs on.
    pub storage_thread: Arbiter,
    /// A message for each client's `SHUTDOWN`: the binary then stops the node as on SIGTERM.
    pub shutdown_requests: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl RunningNode {
    /// Stops the node in order: no new connections or commands; what is under way is answered
    /// (or fails after its bounded wait); a leader hands leadership over, so clients see a new
    /// leader at once instead of after an election timeout; then RocksDB is closed on its own
    /// thread, so the process never exits while RocksDB's threads still work. Every step is
    /// bounded.
    pub async fn shutdown(self) {
        use std::time::Duration;
        self.clients.abort();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.store.send(redis_store::Drain)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.raft.send(raft_node::Shutdown)).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.storage.send(storage::Close)).await;
        // Stopping the arbiter drops Storage and with it the database; joining waits for that.
        self.storage_thread.stop();
        let _ = self.storage_thread.join();
    }
}

/// The Redis address this node gives the address book: the one it listens on, or, listening
/// on every interface, its peer address's host (where the other nodes reach it) with the
/// Redis port.
fn advertised_redis_addr(listening: SocketAddr, own_peer_addr: &str) -> String {
    if !listening.ip().is_unspecified() {
        return listening.to_string();
    }
    let host = own_peer_addr.rsplit_once(':').map_or(own_peer_addr, |(host, _)| host);
    format!("{host}:{}", listening.port())
}

/// Opens the data directory, binds both ports and starts the five actors. Must run inside an
/// actix `System`.
pub async fn start_node(config: NodeConfig) -> std::result::Result<RunningNode, String> {
    let id = config.id;
    let index = usize::try_from(id).ok().filter(|&i| i >= 1 && i <= config.cluster.len());
    let Some(index) = index else {
        return Err(format!("--id {id} is not a position in --cluster (1..={})", config.cluster.len()));
    };
    let own_peer_addr = config.cluster[index - 1].clone();
    let initial: Vec<Member> = config
        .cluster
        .iter()
        .enumerate()
        .map(|(i, addr)| Member { id: i as u64 + 1, peer_addr: addr.clone(), ..Default::default() })
        .collect();

    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let (storage, recovered) = Storage::open(&config.data_dir, id, &initial, !config.join)
        .map_err(|e| format!("cannot open storage in {}: {e}", config.data_dir.display()))?;
    let peer_listener = TcpListener::bind(&own_peer_addr)
        .await
        .map_err(|e| format!("cannot listen for peers on {own_peer_addr}: {e}"))?;
    let redis_listener = TcpListener::bind((config.bind.as_str(), config.port))
        .await
        .map_err(|e| format!("cannot listen for clients on {}:{}: {e}", config.bind, config.port))?;
    let mut tls = config.tls.clone();
    let peer_tls = tls.as_ref().filter(|t| t.peers).map(|t| t.peer_tls()).transpose()?;
    let tls_listener = match tls.as_mut().and_then(|settings| Some((settings.port?, settings))) {
        Some((port, settings)) => {
            let acceptor = settings.acceptor()?;
            let listener = TcpListener::bind((config.bind.as_str(), port))
                .await
                .map_err(|e| format!("cannot listen for TLS clients on {}:{port}: {e}", config.bind))?;
            settings.port = Some(listener.local_addr().map_err(|e| e.to_string())?.port());
            Some((listener, acceptor))
        }
        None => None,
    };
    let tls_addr = tls_listener.as_ref().and_then(|(listener, _)| listener.local_addr().ok());
    let raft_ctx = mailbox::context::<RaftNode>();
    let redis_addr = redis_listener.local_addr().map_err(|e| e.to_string())?;
    let peer_addr = peer_listener.local_addr().map_err(|e| e.to_string())?;
    info!(
        node = id,
        incarnation = recovered.incarnation,
        store = format_args!("{:016x}", recovered.store_id),
        applied = recovered.applied,
        log_entries = recovered.entries.len(),
        redis = %redis_addr,
        tls = tls_addr.map_or_else(|| "off".into(), |a| a.to_string()),
        tls_peers = peer_tls.is_some(),
        peer = %peer_addr,
        "starting raft-kv node"
    );

    // The actors name each other, so the addresses of RaftNode and RedisStore exist before
    // the actors themselves start.
    let store_ctx = mailbox::context::<RedisStore>();
    let raft_addr = raft_ctx.address();
    let store_addr = store_ctx.address();

    let applied_sink = store_addr.clone().recipient();
    let fsync = config.fsync;
    let storage_arbiter = Arbiter::new();
    let storage_addr = mailbox::start_in(&storage_arbiter.handle(), move || {
        storage.with_applied_sink(applied_sink).with_fsync(fsync)
    });

    let inbox = RaftInbox {
        step: raft_addr.clone().recipient(),
        unreachable: raft_addr.clone().recipient(),
        snapshot: raft_addr.clone().recipient(),
    };
    // The recorded address book wins over --cluster: membership may have changed since.
    let book = if recovered.members.is_empty() { &initial } else { &recovered.members };
    let me = PeerIdentity {
        id,
        store_id: recovered.store_id,
        secret: config.cluster_secret.clone(),
        tls: peer_tls,
    };
    let transport = PeerTransport::new(
        me,
        book,
        peer_listener,
        inbox,
        storage_addr.clone(),
        config.fault_control.clone(),
    );
    let transport = mailbox::start(transport);

    let incarnation = recovered.incarnation;
    let applied = recovered.applied;
    let node = RaftNode::new(
        id,
        recovered,
        config.raft.clone(),
        storage_addr.clone(),
        transport.clone().recipient(),
        transport.recipient(),
    )
    .map_err(|e| format!("cannot start raft: {e}"))?
    .with_committed_sink(store_addr.clone().recipient())
    .with_redis_addr(advertised_redis_addr(redis_addr, &own_peer_addr));
    raft_ctx.run(node);

    let info = NodeInfo {
        node_id: id,
        redis_port: redis_addr.port(),
        peer_addrs: config.cluster.clone(),
        started: Instant::now(),
        maxclients: config.maxclients,
    };
    let (raft_addr_for_caller, storage_for_caller) = (raft_addr.clone(), storage_addr.clone());
    let (shutdown_sink, shutdown_requests) = tokio::sync::mpsc::unbounded_channel();
    store_ctx.run(
        RedisStore::new(info, incarnation, applied, raft_addr, storage_addr, config.store.clone())
            .with_shutdown_sink(shutdown_sink),
    );

    let session_config = SessionConfig {
        bind: config.bind.clone(),
        port: redis_addr.port(),
        limits: config.limits,
        requirepass: config.requirepass.clone(),
        maxclients: config.maxclients,
        tls,
    };
    let clients = actix_rt::spawn(session::serve_clients(
        redis_listener,
        tls_listener,
        store_addr.clone(),
        session_config,
    ));
    Ok(RunningNode {
        redis_addr,
        peer_addr,
        raft: raft_addr_for_caller,
        storage: storage_for_caller,
        store: store_addr,
        clients,
        storage_thread: storage_arbiter,
        shutdown_requests,
    })
}

/// raft-rs logs through `slog`; this logger hands its records to the `log` crate, which the
/// binary's `tracing` subscriber picks up, so there is one logging system.
pub fn raft_logger() -> slog::Logger {
    use slog::Drain;
    slog::Logger::root(slog_stdlog::StdLog.fuse(), slog::o!())
}

#[cfg(test)]
mod tests {
    use super::advertised_redis_addr;

    #[test]
    fn the_advertised_redis_address_is_one_clients_can_reach() {
        let listening = |addr: &str| addr.parse().unwrap();
        assert_eq!(advertised_redis_addr(listening("127.0.0.1:6379"), "127.0.0.1:12379"), "127.0.0.1:6379");
        assert_eq!(advertised_redis_addr(listening("10.0.0.5:6379"), "node1.local:12379"), "10.0.0.5:6379");
        // Listening everywhere: where the other nodes reach this one.
        assert_eq!(advertised_redis_addr(listening("0.0.0.0:6379"), "node1.local:12379"), "node1.local:6379");
        assert_eq!(advertised_redis_addr(listening("[::]:6379"), "[fd00::1]:12379"), "[fd00::1]:6379");
    }
}
