//! Session is an actor, one per client connection.
//!
//! It decodes requests with [`RespCodec`] (a `StreamHandler` over the connection's read half:
//! a TCP socket's, or, on the TLS port, a TLS stream's once its handshake is done),
//! parses each into a [`Command`], answers connection-level commands itself and sends the rest
//! to RedisStore. Replies may complete out of order (a read can overtake a write), so each
//! request gets a sequence number and replies are released strictly in request order: that is
//! what makes pipelining work. A writer task owns the socket's write half and flushes every
//! reply that is ready in one write; `HELLO 3` tells it to switch protocol just before the
//! HELLO reply, so every earlier reply still goes out in the protocol it was asked in.
//!
//! Per-connection state lives here: authentication (`--requirepass`), the client name, the
//! protocol, and transactions. Inside MULTI, commands are queued and answered `+QUEUED`; EXEC
//! sends every queued keyspace command as one [`WriteOp::Exec`] proposal, with the versions of
//! the WATCHed keys, so the whole transaction (its reads included) is applied atomically at
//! one point of the log on every node, or aborted there if a watched key changed. While a
//! WATCH waits for the versions it reads, later requests wait in a backlog, so a pipelined
//! `WATCH; MULTI; ...; EXEC` carries the right versions.
//!
//! Reads and writes of one connection are dispatched concurrently only with their own kind:
//! a read waits for the writes sent before it to be acknowledged, and a write for the reads
//! before it to be answered, so a pipelined `SET k v; GET k` sees `v` and `GET k; SET k w`
//! does not see `w`, exactly as with Redis, while runs of reads or of writes still overlap.
//! A blocking command (BLPOP ...) overlaps with nothing: the requests after it wait until it
//! is answered, as a blocked Redis client's do.
//!
//! A protocol error is answered with `-ERR Protocol error: ...` and closes this connection only.
//!
//! # Backpressure
//! Nothing a client does makes its session buffer without bound. The session stops reading
//! from the socket (the kernel's buffers fill and TCP pushes back on the client) while
//! [`MAX_PENDING_REQUESTS`] requests are read and not answered, or while more than
//! [`OUTPUT_SOFT_LIMIT`] bytes of replies wait to be written because the client does not read
//! them; it reads again as soon as both drop below. So a client pipelining 100 k commands
//! without reading gets them all answered, in order, once it reads. Requests already read
//! still get their replies, so a client whose replies are large can exceed the soft limit:
//! beyond [`OUTPUT_HARD_LIMIT`] of unwritten replies (more than one reply: a single large
//! reply is what the client asked for) it is disconnected, like Redis's
//! `client-output-buffer-limit`. The read buffer, one request's size ([`RespLimits`]) and a
//! MULTI queue (at most `max_request_len` bytes of arguments, the size of one Raft entry)
//! are bounded as well, and an idle connection keeps only small buffers.
//!
//! The number of connections is bounded too (`--maxclients`): one more is answered
//! `-ERR max number of clients reached` and closed, as Redis does, and counted in `INFO stats`
//! (`rejected_connections`). Each connection holds a slot until its socket is closed, so a
//! flood of clients cannot take the file descriptors the node keeps for its storage and peers.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use futures::Stream;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Encoder, FramedRead};
use tracing::{debug, warn};

use crate::command::server::valid_client_name;
use crate::command::table::{self, COMMAND_TABLE};
use crate::command::{lookup, Command, KillFilter, LocalCommand, Queued, ReadQuery, TxCommand, WriteOp};
use crate::glob::glob_match;
use crate::pubsub::Deliver;
use crate::redis_store::{Block, ClientEvent, ClientInfo, Disconnect, Execute, ExecuteBatch, RedisStore};
use crate::resp::{Frame, RespCodec, RespError, RespLimits, READ_BUFFER_CAPACITY};

/// The version HELLO and INFO report: the Redis release whose commands raft-kv follows.
pub const REDIS_VERSION: &str = "7.0.0";

/// The session stops reading while this many requests are read and not yet answered.
pub const MAX_PENDING_REQUESTS: usize = 1024;

/// The session stops reading while more than this many bytes of replies wait to be written.
pub const OUTPUT_SOFT_LIMIT: usize = 1024 * 1024;

/// A client with more than this many bytes of replies waiting to be written (in more than one
/// reply) is disconnected.
pub const OUTPUT_HARD_LIMIT: usize = 64 * 1024 * 1024;

/// The writer encodes at most about this much before writing it out, so replies wait as
/// frames (counted against the limits above) rather than as encoded bytes.
const WRITE_BATCH: usize = 64 * 1024;

/// An idle writer gives back an encoding buffer larger than this.
const MAX_IDLE_WRITE_CAPACITY: usize = 64 * 1024;

/// Each command queued in MULTI counts this much on top of its argument bytes.
const QUEUED_COMMAND_OVERHEAD: usize = 128;

/// What the Session tells its writer task.
enum Outbound {
    /// Replies released together, in order, each with its [`Frame::wire_size`].
    Replies(Vec<(Frame, usize)>),
    /// Encode the following replies with this RESP version.
    Protocol(u8),
    /// Flush what was sent and close the connection.
    Close,
}

/// What happens to the connection after a reply is written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum After {
    Continue,
    /// Switch the protocol *before* writing this reply (HELLO answers in the new protocol).
    Protocol(u8),
    Close,
}

/// Settings a session needs and reports through `CONFIG GET`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub bind: String,
    pub port: u16,
    pub limits: RespLimits,
    /// `--requirepass`: clients must AUTH before anything else.
    pub requirepass: Option<String>,
    /// `--maxclients`: connections beyond this many are refused.
    pub maxclients: usize,
    /// The TLS port's settings (its `port` the one bound), if it is on.
    pub tls: Option<crate::tls::TlsSettings>,
}

/// The flow-control state a Session shares with its writer task and its reader (all three run
/// on the session's thread, hence `Rc` and `Cell`).
#[derive(Default)]
struct Flow {
    /// Requests read from the socket and not answered yet (their replies not yet released to
    /// the writer), backlog included.
    pending: Cell<usize>,
    /// Replies released to the writer and not yet written to the socket, and their size.
    unwritten_replies: Cell<usize>,
    unwritten_bytes: Cell<usize>,
    /// The reader, parked while reading is paused.
    reader: Cell<Option<Waker>>,
    /// The connection's place among `--maxclients`: given back once the session, its reader
    /// and its writer have all let go of the socket.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Flow {
    fn may_read(&self) -> bool {
        self.pending.get() < MAX_PENDING_REQUESTS && self.unwritten_bytes.get() <= OUTPUT_SOFT_LIMIT
    }

    /// Wakes a parked reader if reading may go on.
    fn wake_reader(&self) {
        if self.may_read() {
            if let Some(waker) = self.reader.take() {
                waker.wake();
            }
        }
    }

    fn released(&self, bytes: usize) {
        self.unwritten_replies.set(self.unwritten_replies.get() + 1);
        self.unwritten_bytes.set(self.unwritten_bytes.get() + bytes);
    }

    fn written(&self, replies: usize, bytes: usize) {
        self.unwritten_replies.set(self.unwritten_replies.get().saturating_sub(replies));
        self.unwritten_bytes.set(self.unwritten_bytes.get().saturating_sub(bytes));
        self.wake_reader();
    }
}

/// The session's request stream: the socket's decoded requests, paused while [`Flow`] says
/// the session has enough to do. While paused nothing is read, so the read buffer does not
/// grow and the client meets TCP backpressure.
struct GatedRead<S> {
    inner: S,
    flow: Rc<Flow>,
}

impl<S: Stream + Unpin> Stream for GatedRead<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<S::Item>> {
        if !self.flow.may_read() {
            self.flow.reader.set(Some(cx.waker().clone()));
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// A command queued inside MULTI.
enum QueuedItem {
    /// Runs inside the EXEC entry.
    Keyspace(Queued),
    /// Answered by the session when EXEC runs.
    Local(LocalCommand),
    /// INFO and CLIENT LIST: answered by RedisStore when EXEC runs.
    Server(Command),
    /// Refused by its own argument checks: this error is its reply.
    Failed(Frame),
}

pub struct Session {
    id: u64,
    peer: SocketAddr,
    local_addr: String,
    store: Addr<RedisStore>,
    config: SessionConfig,
    out: mpsc::UnboundedSender<Outbound>,
    /// The writer task, aborted when the client is disconnected for its output.
    writer: JoinHandle<()>,
    flow: Rc<Flow>,
    next_request: u64,
    next_reply: u64,
    /// Replies by request, from `next_reply` on: `None` until that request is answered.
    completed: VecDeque<Option<(Frame, After)>>,
    name: Option<Bytes>,
    protocol: u8,
    authenticated: bool,
    connected: Instant,
    /// The name of the last command, as the client sent it (`CLIENT LIST` lowers it).
    last_command: Bytes,
    /// `Some` between MULTI and EXEC/DISCARD.
    multi: Option<Vec<QueuedItem>>,
    /// A command queued in this MULTI was refused: EXEC answers EXECABORT.
    multi_failed: bool,
    /// The size of what this MULTI queued, counted against `max_request_len`.
    multi_bytes: usize,
    /// WATCHed keys and the versions they had.
    watched: Vec<(Bytes, u64)>,
    /// A WATCH is reading versions: requests wait here until it is done.
    watch_pending: bool,
    backlog: VecDeque<Vec<Bytes>>,
    /// Requests sent to RedisStore and not answered yet, all of one access kind.
    in_flight: usize,
    in_flight_access: Access,
    /// Requests waiting for the in-flight ones of the other kind, in request order.
    gated: VecDeque<(Access, Start)>,
    /// Requests started in this turn: they go to RedisStore in one [`ExecuteBatch`].
    outgoing: Vec<(u64, Command)>,
    send_scheduled: bool,
    input_closed: bool,
    /// Where `CLIENT KILL` reaches this session (reported to RedisStore with the client).
    address: Option<Recipient<Disconnect>>,
    /// The channels and patterns this connection is subscribed to (patterns in the order
    /// subscribed, which is the order Redis unsubscribes them in).
    channels: BTreeSet<Bytes>,
    patterns: Vec<Bytes>,
    /// The size of the messages delivered while an earlier request was unanswered (a RESP3
    /// subscriber blocked in BLPOP): they wait behind its reply, and must not wait unbounded.
    held_messages: usize,
}

impl Session {
    /// Starts a session actor for an accepted connection: `read` and `write` are its two halves
    /// (a TCP socket's, or a TLS stream's), `local_addr` the address it reached.
    pub fn start_for<R, W>(
        id: u64,
        (read, write): (R, W),
        peer: SocketAddr,
        local_addr: String,
        slot: OwnedSemaphorePermit,
        store: Addr<RedisStore>,
        config: SessionConfig,
    ) where
        R: AsyncRead + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        // The channel is unbounded in type only: what it holds is bounded by the flow limits.
        let (out, queue) = mpsc::unbounded_channel();
        let flow = Rc::new(Flow { _slot: Some(slot), ..Flow::default() });
        let writer =
            actix_rt::spawn(write_replies(write, queue, RespCodec::new(config.limits), flow.clone()));
        Session::create(move |ctx| {
            let read = FramedRead::with_capacity(read, RespCodec::new(config.limits), READ_BUFFER_CAPACITY);
            ctx.add_stream(GatedRead { inner: read, flow: flow.clone() });
            Session {
                id,
                peer,
                local_addr,
                store,
                authenticated: config.requirepass.is_none(),
                config,
                out,
                writer,
                flow,
                next_request: 0,
                next_reply: 0,
                completed: VecDeque::new(),
                name: None,
                protocol: 2,
                connected: Instant::now(),
                last_command: Bytes::from_static(b"NULL"),
                multi: None,
                multi_failed: false,
                multi_bytes: 0,
                watched: Vec::new(),
                watch_pending: false,
                backlog: VecDeque::new(),
                in_flight: 0,
                in_flight_access: Access::Read,
                gated: VecDeque::new(),
                outgoing: Vec::new(),
                send_scheduled: false,
                input_closed: false,
                address: None,
                channels: BTreeSet::new(),
                patterns: Vec::new(),
                held_messages: 0,
            }
        });
    }

    fn client_info(&self) -> ClientInfo {
        ClientInfo {
            id: self.id,
            addr: self.peer.to_string(),
            laddr: self.local_addr.clone(),
            name: self.name.as_ref().map_or_else(String::new, |n| String::from_utf8_lossy(n).into_owned()),
            protocol: self.protocol,
            connected: self.connected,
            subscriptions: (self.channels.len(), self.patterns.len()),
            session: self.address.clone(),
        }
    }

    fn report(&self) {
        self.store.do_send(ClientEvent::Updated(self.client_info()));
    }

    /// Publishes how many requests wait for an answer, which pauses or resumes reading.
    fn update_pending(&self) {
        let pending = (self.next_request - self.next_reply) as usize + self.backlog.len();
        self.flow.pending.set(pending);
        self.flow.wake_reader();
    }

    /// Records the reply to request `seq` and writes every reply that is now next in order.
    fn complete(&mut self, seq: u64, frame: Frame, after: After, ctx: &mut Context<Self>) {
        self.record(seq, frame, after);
        self.release(ctx);
    }

    /// Records the reply to request `seq`, to be released by [`Session::release`].
    fn record(&mut self, seq: u64, frame: Frame, after: After) {
        let slot = (seq - self.next_reply) as usize;
        if self.completed.len() <= slot {
            self.completed.resize_with(slot + 1, || None);
        }
        self.completed[slot] = Some((frame, after));
    }

    /// Hands every reply that is next in order to the writer, in one message.
    fn release(&mut self, ctx: &mut Context<Self>) {
        let mut replies = Vec::new();
        while let Some(Some(_)) = self.completed.front() {
            let (frame, after) = self.completed.pop_front().flatten().expect("front is answered");
            self.next_reply += 1;
            if let After::Protocol(version) = after {
                if !replies.is_empty() {
                    let _ = self.out.send(Outbound::Replies(std::mem::take(&mut replies)));
                }
                let _ = self.out.send(Outbound::Protocol(version));
            }
            let size = frame.wire_size();
            self.flow.released(size);
            replies.push((frame, size));
            if after == After::Close {
                let _ = self.out.send(Outbound::Replies(replies));
                let _ = self.out.send(Outbound::Close);
                ctx.stop();
                return;
            }
            if self.flow.unwritten_bytes.get() > OUTPUT_HARD_LIMIT && self.flow.unwritten_replies.get() > 1 {
                warn!(
                    client = self.id,
                    peer = %self.peer,
                    unwritten_bytes = self.flow.unwritten_bytes.get(),
                    unwritten_replies = self.flow.unwritten_replies.get(),
                    limit = OUTPUT_HARD_LIMIT,
                    "client does not read its replies: output buffer limit reached; closing the connection"
                );
                // The writer may be stuck on a socket the client does not drain: drop it.
                self.writer.abort();
                ctx.stop();
                return;
            }
        }
        if !replies.is_empty() {
            let _ = self.out.send(Outbound::Replies(replies));
        }
        if self.completed.is_empty() {
            self.held_messages = 0;
        }
        self.update_pending();
        if self.input_closed && self.next_reply == self.next_request && self.backlog.is_empty() {
            ctx.stop();
        }
    }

    /// Starts a request to RedisStore now if only requests of the same kind are in flight,
    /// else once those of the other kind are answered. `start` must call [`Session::ungate`]
    /// when its reply arrives.
    fn gate(&mut self, access: Access, start: Start, ctx: &mut Context<Self>) {
        if self.admit(access) {
            start(self, ctx);
        } else {
            self.gated.push_back((access, start));
        }
    }

    /// Counts a request of this kind as in flight if it may be sent to RedisStore now.
    fn admit(&mut self, access: Access) -> bool {
        let now = self.gated.is_empty() && (self.in_flight == 0 || self.in_flight_access.shares(access));
        if now {
            self.in_flight += 1;
            self.in_flight_access = access;
        }
        now
    }

    /// Adds a request to this turn's [`ExecuteBatch`].
    fn send_in_batch(&mut self, seq: u64, command: Command, ctx: &mut Context<Self>) {
        if let Command::Blocking { op, timeout } = command {
            return self.block(seq, op, timeout, ctx);
        }
        self.outgoing.push((seq, command));
        if !self.send_scheduled {
            self.send_scheduled = true;
            ctx.notify(SendOutgoing);
        }
    }

    /// Sends a blocking command on its own: RedisStore answers it when it has popped something
    /// or timed out, and forgets it if this session stops first (the receiver is dropped).
    fn block(
        &mut self,
        seq: u64,
        op: WriteOp,
        timeout: Option<std::time::Duration>,
        ctx: &mut Context<Self>,
    ) {
        if self.input_closed {
            // Its turn came after the client left: it would wait for no one.
            return ctx.stop();
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.store.do_send(Block { client: self.id, op, timeout, reply });
        let answer =
            async move { answer.await.unwrap_or_else(|_| Frame::error("ERR node is shutting down")) };
        ctx.spawn(answer.into_actor(self).map(move |frame, session, ctx| {
            session.ungate(ctx);
            session.complete(seq, frame, After::Continue, ctx);
        }));
    }

    /// One gated request was answered: start the waiting ones that may go now.
    fn ungate(&mut self, ctx: &mut Context<Self>) {
        self.in_flight -= 1;
        while let Some((access, _)) = self.gated.front() {
            if self.in_flight > 0 && !self.in_flight_access.shares(*access) {
                break;
            }
            let (access, start) = self.gated.pop_front().expect("front exists");
            self.in_flight += 1;
            self.in_flight_access = access;
            start(self, ctx);
        }
    }

    fn handle_request(&mut self, args: Vec<Bytes>, ctx: &mut Context<Self>) {
        if self.watch_pending {
            self.backlog.push_back(args);
            return;
        }
        let seq = self.next_request;
        self.next_request += 1;
        if let Some(name) = args.first() {
            self.last_command = name.clone();
        }
        if !self.authenticated {
            let allowed = args.first().map(|n| crate::command::lower(n));
            if !matches!(allowed.as_deref(), Some("auth" | "hello" | "quit" | "reset")) {
                return self.complete(
                    seq,
                    Frame::error("NOAUTH Authentication required."),
                    After::Continue,
                    ctx,
                );
            }
        }
        let request_bytes =
            args.iter().map(|arg| arg.len()).sum::<usize>() + QUEUED_COMMAND_OVERHEAD * (args.len() + 1);
        let refused_while_subscribed = self.refused_while_subscribed(&args);
        let command = match Command::parse_checked(args) {
            Ok(_) if refused_while_subscribed.is_some() => {
                let reply = refused_while_subscribed.expect("checked");
                return self.complete(seq, reply, After::Continue, ctx);
            }
            Ok(Ok(command)) => command,
            Ok(Err(reply)) => {
                // Inside MULTI, Redis finds a bad option or number when the command runs.
                if let Some(queue) = &mut self.multi {
                    queue.push(QueuedItem::Failed(reply));
                    return self.complete(seq, Frame::Simple("QUEUED".into()), After::Continue, ctx);
                }
                return self.complete(seq, reply, After::Continue, ctx);
            }
            Err(reply) => {
                if self.multi.is_some() {
                    self.multi_failed = true;
                }
                return self.complete(seq, reply, After::Continue, ctx);
            }
        };
        let not_in_multi = matches!(
            command,
            Command::Local(
                LocalCommand::Shutdown { .. }
                    | LocalCommand::Subscribe { .. }
                    | LocalCommand::Unsubscribe { .. }
            )
        );
        if self.multi.is_some() && not_in_multi {
            self.multi_failed = true;
            let reply = Frame::error("ERR Command not allowed inside a transaction");
            return self.complete(seq, reply, After::Continue, ctx);
        }
        let queueable = !matches!(
            command,
            Command::Transaction(
                TxCommand::Multi | TxCommand::Exec | TxCommand::Discard | TxCommand::Watch(_)
            ) | Command::Local(LocalCommand::Quit | LocalCommand::Reset)
        );
        if let (Some(queue), true) = (&mut self.multi, queueable) {
            // The whole transaction becomes one Raft entry, which must stay as small as the
            // largest request.
            self.multi_bytes += request_bytes;
            let limit = self.config.limits.max_request_len.max(self.config.limits.max_bulk_len);
            if self.multi_bytes > limit {
                self.multi_failed = true;
                let reply =
                    Frame::error(format!("ERR transaction too large: its commands exceed {limit} bytes"));
                return self.complete(seq, reply, After::Continue, ctx);
            }
            queue.push(match command {
                Command::Transaction(_) => QueuedItem::Local(LocalCommand::Unwatch),
                Command::Read(q) => QueuedItem::Keyspace(Queued::Read(q)),
                // Inside MULTI a blocking command does not block: it pops what is there.
                Command::Write(op) | Command::Blocking { op, .. } => QueuedItem::Keyspace(Queued::Write(op)),
                Command::Local(local) => QueuedItem::Local(local),
                Command::ClientKill(filter) => {
                    QueuedItem::Server(Command::ClientKill(KillFilter { caller: self.id, ..filter }))
                }
                server @ (Command::Info(_)
                | Command::ClientList
                | Command::ClientUnblock { .. }
                | Command::Raft(_)
                | Command::PubSub(_)
                | Command::ScriptExists(_)) => QueuedItem::Server(server),
            });
            return self.complete(seq, Frame::Simple("QUEUED".into()), After::Continue, ctx);
        }
        match command {
            Command::Local(LocalCommand::Shutdown { abort: false }) => {
                // No reply: the node stops, as on SIGTERM, and closes the connection (what
                // `redis-cli shutdown` expects). Replies to earlier requests still go out.
                warn!(client = self.id, peer = %self.peer, "SHUTDOWN: stopping the node");
                self.store.do_send(ClientEvent::LocalCommand);
                self.store.do_send(ClientEvent::Shutdown);
            }
            Command::Local(LocalCommand::Subscribe { names, pattern }) => {
                self.store.do_send(ClientEvent::LocalCommand);
                let replies = self.subscribe(names, pattern, ctx);
                self.complete_all(seq, replies, ctx);
            }
            Command::Local(LocalCommand::Unsubscribe { names, pattern }) => {
                self.store.do_send(ClientEvent::LocalCommand);
                let replies = self.unsubscribe(names, pattern);
                self.complete_all(seq, replies, ctx);
            }
            Command::Local(local) => {
                self.store.do_send(ClientEvent::LocalCommand);
                let (reply, after) = self.local(local);
                self.complete(seq, reply, after, ctx);
            }
            Command::Transaction(tx) => self.transaction(seq, tx, ctx),
            Command::ClientKill(filter) => {
                let kill = Command::ClientKill(KillFilter { caller: self.id, ..filter });
                let start: Start = Box::new(move |session, ctx| session.send_in_batch(seq, kill, ctx));
                self.gate(Access::Read, start, ctx);
            }
            command => {
                let access = match command {
                    Command::Write(_) => Access::Write,
                    Command::Blocking { .. } => Access::Exclusive,
                    _ => Access::Read,
                };
                if self.admit(access) {
                    // What `gate` does, without boxing the start.
                    return self.send_in_batch(seq, command, ctx);
                }
                let start: Start = Box::new(move |session, ctx| session.send_in_batch(seq, command, ctx));
                self.gate(access, start, ctx);
            }
        }
    }

    /// Whether this connection listens to a channel or a pattern.
    fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }

    /// The error a RESP2 subscriber gets for a command other than the subscription commands,
    /// PING, QUIT and RESET (Redis names a container command with its subcommand).
    fn refused_while_subscribed(&self, args: &[Bytes]) -> Option<Frame> {
        if self.protocol != 2 || !self.subscribed() {
            return None;
        }
        let name = crate::command::lower(args.first()?);
        let allowed = ["subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ping", "quit", "reset"];
        if allowed.contains(&name.as_str()) {
            return None;
        }
        let containers = ["client", "command", "config", "function", "pubsub", "script"];
        let name = match args.get(1) {
            Some(sub) if containers.contains(&name.as_str()) => {
                format!("{name}|{}", crate::command::lower(sub))
            }
            _ => name,
        };
        Some(Frame::error(format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are \
             allowed in this context"
        )))
    }

    /// `SUBSCRIBE` / `PSUBSCRIBE`: one reply per name, each with the number of channels and
    /// patterns this connection then listens to. RedisStore learns of the new ones before any
    /// later request of this connection reaches it.
    fn subscribe(&mut self, names: Vec<Bytes>, pattern: bool, ctx: &mut Context<Self>) -> Vec<Frame> {
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        let (mut replies, mut added) = (Vec::with_capacity(names.len()), Vec::new());
        for name in names {
            let new = match pattern {
                true if self.patterns.contains(&name) => false,
                true => {
                    self.patterns.push(name.clone());
                    true
                }
                false => self.channels.insert(name.clone()),
            };
            if new {
                added.push(name.clone());
            }
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Frame::Push(vec![Frame::bulk(kind), Frame::Bulk(name), Frame::Integer(count)]));
        }
        if !added.is_empty() {
            let deliver = ctx.address().recipient();
            self.store.do_send(ClientEvent::Subscribe { client: self.id, names: added, pattern, deliver });
            self.report();
        }
        replies
    }

    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE`: one reply per name (no names: every channel or pattern
    /// this connection listens to, or one reply with a null name if none).
    fn unsubscribe(&mut self, names: Vec<Bytes>, pattern: bool) -> Vec<Frame> {
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let names = match (names.is_empty(), pattern) {
            (false, _) => names,
            (true, true) => self.patterns.clone(),
            (true, false) => self.channels.iter().cloned().collect(),
        };
        if names.is_empty() {
            let count = (self.channels.len() + self.patterns.len()) as i64;
            return vec![Frame::Push(vec![Frame::bulk(kind), Frame::Null, Frame::Integer(count)])];
        }
        let (mut replies, mut removed) = (Vec::with_capacity(names.len()), Vec::new());
        for name in names {
            let was = match pattern {
                true => {
                    let before = self.patterns.len();
                    self.patterns.retain(|p| *p != name);
                    self.patterns.len() < before
                }
                false => self.channels.remove(&name),
            };
            if was {
                removed.push(name.clone());
            }
            let count = (self.channels.len() + self.patterns.len()) as i64;
            replies.push(Frame::Push(vec![Frame::bulk(kind), Frame::Bulk(name), Frame::Integer(count)]));
        }
        if !removed.is_empty() {
            self.store.do_send(ClientEvent::Unsubscribe { client: self.id, names: removed, pattern });
            self.report();
        }
        replies
    }

    /// Records the several replies of request `seq` (SUBSCRIBE's, one per channel): the first
    /// as its own, the others in places of their own right after it. Only for a request
    /// answered as it is read, so that no later request has a place yet.
    fn complete_all(&mut self, seq: u64, replies: Vec<Frame>, ctx: &mut Context<Self>) {
        debug_assert_eq!(seq + 1, self.next_request, "answered as it is read");
        let mut replies = replies.into_iter();
        let first = replies.next().expect("at least one reply");
        self.record(seq, first, After::Continue);
        for reply in replies {
            let seq = self.next_request;
            self.next_request += 1;
            self.record(seq, reply, After::Continue);
        }
        self.release(ctx);
    }

    fn transaction(&mut self, seq: u64, tx: TxCommand, ctx: &mut Context<Self>) {
        let reply = match tx {
            TxCommand::Multi if self.multi.is_some() => Frame::error("ERR MULTI calls can not be nested"),
            TxCommand::Multi => {
                self.multi = Some(Vec::new());
                self.multi_failed = false;
                self.multi_bytes = 0;
                Frame::ok()
            }
            TxCommand::Discard => match self.multi.take() {
                Some(_) => {
                    self.watched.clear();
                    Frame::ok()
                }
                None => Frame::error("ERR DISCARD without MULTI"),
            },
            TxCommand::Unwatch => {
                self.watched.clear();
                Frame::ok()
            }
            TxCommand::Watch(_) if self.multi.is_some() => {
                Frame::error("ERR WATCH inside MULTI is not allowed")
            }
            TxCommand::Watch(keys) => return self.watch(seq, keys, ctx),
            TxCommand::Exec => return self.exec(seq, ctx),
        };
        self.complete(seq, reply, After::Continue, ctx);
    }

    /// Reads the versions of `keys` (linearizably) and remembers them for EXEC.
    fn watch(&mut self, seq: u64, keys: Vec<Bytes>, ctx: &mut Context<Self>) {
        self.watch_pending = true;
        let start: Start = Box::new(move |session, ctx| session.watch_read(seq, keys, ctx));
        self.gate(Access::Read, start, ctx);
    }

    fn watch_read(&mut self, seq: u64, keys: Vec<Bytes>, ctx: &mut Context<Self>) {
        let read = self.store.send(Execute(Command::Read(ReadQuery::Versions(keys.clone()))));
        ctx.spawn(read.into_actor(self).map(move |result, session, ctx| {
            session.watch_pending = false;
            session.ungate(ctx);
            let reply = match result {
                Ok(Frame::Array(versions)) => {
                    for (key, version) in keys.into_iter().zip(versions) {
                        let Frame::Integer(version) = version else { continue };
                        if !session.watched.iter().any(|(k, _)| *k == key) {
                            session.watched.push((key, version as u64));
                        }
                    }
                    Frame::ok()
                }
                Ok(error) => error,
                Err(_) => Frame::error("ERR node is shutting down"),
            };
            session.complete(seq, reply, After::Continue, ctx);
            while !session.watch_pending {
                let Some(args) = session.backlog.pop_front() else { break };
                session.handle_request(args, ctx);
            }
            if session.input_closed
                && session.next_reply == session.next_request
                && session.backlog.is_empty()
            {
                ctx.stop();
            }
        }));
    }

    fn exec(&mut self, seq: u64, ctx: &mut Context<Self>) {
        let Some(queue) = self.multi.take() else {
            return self.complete(seq, Frame::error("ERR EXEC without MULTI"), After::Continue, ctx);
        };
        let watched = std::mem::take(&mut self.watched);
        if self.multi_failed {
            let reply = Frame::error("EXECABORT Transaction discarded because of previous errors.");
            return self.complete(seq, reply, After::Continue, ctx);
        }
        // Keyspace commands go into one entry; the others are answered around it.
        let mut commands = Vec::new();
        let mut slots = Vec::with_capacity(queue.len());
        let mut server = Vec::new();
        for item in queue {
            slots.push(match item {
                QueuedItem::Keyspace(q) => {
                    commands.push(q);
                    Slot::Keyspace
                }
                QueuedItem::Local(local) => Slot::Ready(self.local(local).0),
                QueuedItem::Failed(error) => Slot::Ready(error),
                QueuedItem::Server(cmd) => {
                    server.push(self.store.send(Execute(cmd)));
                    Slot::Server
                }
            });
        }
        let start: Start =
            Box::new(move |session, ctx| session.exec_send(seq, slots, server, watched, commands, ctx));
        self.gate(Access::Write, start, ctx);
    }

    fn exec_send(
        &mut self,
        seq: u64,
        slots: Vec<Slot>,
        server: Vec<Request<RedisStore, Execute>>,
        watched: Vec<(Bytes, u64)>,
        commands: Vec<Queued>,
        ctx: &mut Context<Self>,
    ) {
        let entry = (!commands.is_empty() || !watched.is_empty())
            .then(|| self.store.send(Execute(Command::Write(WriteOp::Exec { watched, commands }))));
        let work = async move {
            let server: Vec<Frame> = join_all(server)
                .await
                .into_iter()
                .map(|r| r.unwrap_or_else(|_| Frame::error("ERR node is shutting down")))
                .collect();
            let keyspace = match entry {
                Some(entry) => entry.await.unwrap_or_else(|_| Frame::error("ERR node is shutting down")),
                None => Frame::Array(Vec::new()),
            };
            (server, keyspace)
        };
        ctx.spawn(work.into_actor(self).map(move |(server, keyspace), session, ctx| {
            session.ungate(ctx);
            let reply = match keyspace {
                Frame::Array(replies) => {
                    let (mut replies, mut server) = (replies.into_iter(), server.into_iter());
                    let missing = || Frame::error("ERR transaction reply missing");
                    Frame::Array(
                        slots
                            .into_iter()
                            .map(|slot| match slot {
                                Slot::Ready(frame) => frame,
                                Slot::Keyspace => replies.next().unwrap_or_else(missing),
                                Slot::Server => server.next().unwrap_or_else(missing),
                            })
                            .collect(),
                    )
                }
                // Aborted by WATCH (null) or not committed (CLUSTERDOWN, TIMEOUT ...).
                other => other,
            };
            session.complete(seq, reply, After::Continue, ctx);
        }));
    }

    fn check_password(&self, user: Option<&Bytes>, password: &[u8]) -> Result<(), Frame> {
        let wrongpass = || Frame::error("WRONGPASS invalid username-password pair or user is disabled.");
        if user.is_some_and(|u| &u[..] != b"default") {
            return Err(wrongpass());
        }
        match &self.config.requirepass {
            // The default user has no password: any password is accepted with a user name.
            None if user.is_some() => Ok(()),
            None => Err(Frame::error(
                "ERR AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            )),
            Some(expected) if constant_time_eq(expected.as_bytes(), password) => Ok(()),
            Some(_) => Err(wrongpass()),
        }
    }

    /// Answers the commands that only concern this connection or this server.
    fn local(&mut self, command: LocalCommand) -> (Frame, After) {
        let reply = match command {
            // A RESP2 subscriber's replies look like messages.
            LocalCommand::Ping(message) if self.subscribed() && self.protocol == 2 => {
                Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(message.unwrap_or_default())])
            }
            LocalCommand::Ping(None) => Frame::Simple("PONG".into()),
            LocalCommand::Ping(Some(msg)) | LocalCommand::Echo(msg) => Frame::Bulk(msg),
            LocalCommand::Quit => return (Frame::ok(), After::Close),
            // A shutdown, once started, runs to its end.
            LocalCommand::Shutdown { .. } => Frame::error("ERR No shutdown in progress."),
            LocalCommand::Reset => {
                // As if the client had reconnected; requests already sent are still answered.
                self.unsubscribe(Vec::new(), false);
                self.unsubscribe(Vec::new(), true);
                self.multi = None;
                self.multi_failed = false;
                self.multi_bytes = 0;
                self.watched.clear();
                self.name = None;
                self.authenticated = self.config.requirepass.is_none();
                let after = if self.protocol == 2 { After::Continue } else { After::Protocol(2) };
                self.protocol = 2;
                return (Frame::Simple("RESET".into()), after);
            }
            LocalCommand::Select(index) => match crate::command::parse_i64(&index) {
                Some(0) => Frame::ok(),
                Some(_) => Frame::error("ERR DB index is out of range"),
                None => Frame::error(crate::keyspace::NOT_INTEGER),
            },
            LocalCommand::Hello { protocol, auth, name } => return self.hello(protocol, auth, name),
            LocalCommand::Auth { user, password } => match self.check_password(user.as_ref(), &password) {
                Ok(()) => {
                    self.authenticated = true;
                    Frame::ok()
                }
                Err(e) => e,
            },
            LocalCommand::Unwatch => {
                self.watched.clear();
                Frame::ok()
            }
            LocalCommand::Help(lines) => {
                Frame::Array(lines.iter().map(|line| Frame::Simple((*line).into())).collect())
            }
            LocalCommand::Subscribe { .. } | LocalCommand::Unsubscribe { .. } => {
                unreachable!("handled with their several replies")
            }
            LocalCommand::ConfigGet(patterns) => self.config_get(&patterns),
            LocalCommand::ConfigSet(args) => {
                let name = crate::command::lower(&args[0]);
                if self.config_params().iter().any(|(p, _)| *p == name) {
                    Frame::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
                    ))
                } else {
                    Frame::error(format!(
                        "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                        String::from_utf8_lossy(&args[0])
                    ))
                }
            }
            LocalCommand::ConfigResetStat => {
                // Ahead of any later command of this connection in RedisStore's mailbox.
                self.store.do_send(ClientEvent::ResetStats);
                Frame::ok()
            }
            LocalCommand::CommandCount => Frame::Integer(COMMAND_TABLE.len() as i64),
            LocalCommand::CommandList => Frame::Array(COMMAND_TABLE.iter().map(table::info).collect()),
            LocalCommand::CommandInfo(names) if names.is_empty() => {
                Frame::Array(COMMAND_TABLE.iter().map(table::info).collect())
            }
            LocalCommand::CommandInfo(names) => {
                Frame::Array(names.iter().map(|n| lookup(n).map_or(Frame::Null, table::info)).collect())
            }
            LocalCommand::CommandDocs(names) if names.is_empty() => {
                Frame::Map(COMMAND_TABLE.iter().map(table::docs).collect())
            }
            LocalCommand::CommandDocs(names) => {
                Frame::Map(names.iter().filter_map(|n| lookup(n)).map(table::docs).collect())
            }
            LocalCommand::ClientSetName(name) => {
                self.name = (!name.is_empty()).then_some(name);
                self.report();
                Frame::ok()
            }
            LocalCommand::ClientGetName => self.name.clone().map_or(Frame::Null, Frame::Bulk),
            LocalCommand::ClientId => Frame::Integer(self.id as i64),
            LocalCommand::ClientInfo => {
                let line = self.client_info().line(
                    self.multi.as_ref().map(Vec::len),
                    false,
                    &String::from_utf8_lossy(&self.last_command).to_ascii_lowercase(),
                );
                Frame::Verbatim(format!("{line}\n"))
            }
            LocalCommand::ClientSetInfo => Frame::ok(),
            LocalCommand::Time => {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                Frame::Array(vec![
                    Frame::bulk(now.as_secs().to_string()),
                    Frame::bulk(now.subsec_micros().to_string()),
                ])
            }
            LocalCommand::FlushScripts => Frame::ok(),
            LocalCommand::ScriptKill => Frame::error("NOTBUSY No scripts in execution right now."),
        };
        (reply, After::Continue)
    }

    /// `HELLO`: authenticates and names the connection if asked, switches protocol, and
    /// describes the server (in the new protocol).
    fn hello(
        &mut self,
        protocol: Option<u8>,
        auth: Option<(Bytes, Bytes)>,
        name: Option<Bytes>,
    ) -> (Frame, After) {
        if let Some((user, password)) = &auth {
            if let Err(e) = self.check_password(Some(user), password) {
                return (e, After::Continue);
            }
            self.authenticated = true;
        }
        if !self.authenticated {
            return (
                Frame::error(
                    "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                     HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
                     select the RESP protocol version at the same time",
                ),
                After::Continue,
            );
        }
        if let Some(name) = name {
            if !valid_client_name(&name) {
                let e =
                    Frame::error("ERR Client names cannot contain spaces, newlines or special characters.");
                return (e, After::Continue);
            }
            self.name = (!name.is_empty()).then_some(name);
        }
        let after = match protocol {
            Some(version) if version != self.protocol => {
                self.protocol = version;
                After::Protocol(version)
            }
            _ => After::Continue,
        };
        self.report();
        let reply = Frame::Map(vec![
            (Frame::bulk("server"), Frame::bulk("redis")),
            (Frame::bulk("version"), Frame::bulk(REDIS_VERSION)),
            (Frame::bulk("proto"), Frame::Integer(self.protocol as i64)),
            (Frame::bulk("id"), Frame::Integer(self.id as i64)),
            (Frame::bulk("mode"), Frame::bulk("standalone")),
            (Frame::bulk("role"), Frame::bulk("master")),
            (Frame::bulk("modules"), Frame::Array(Vec::new())),
        ]);
        (reply, after)
    }

    fn config_params(&self) -> Vec<(&'static str, String)> {
        let limits = self.config.limits;
        // raft-kv fsyncs every Raft Ready before acknowledging: the closest Redis terms are an
        // always-fsynced append-only file and no RDB snapshots.
        let mut params = vec![
            ("appendfsync", "always".into()),
            ("appendonly", "yes".into()),
            ("bind", self.config.bind.clone()),
            ("databases", "1".into()),
            ("maxclients", self.config.maxclients.to_string()),
            ("maxmemory", "0".into()),
            ("port", self.config.port.to_string()),
            ("proto-max-bulk-len", limits.max_bulk_len.to_string()),
            ("requirepass", self.config.requirepass.clone().unwrap_or_default()),
            ("save", String::new()),
        ];
        let tls = self.config.tls.as_ref();
        let path =
            |path: Option<&std::path::PathBuf>| path.map_or_else(String::new, |p| p.display().to_string());
        params.extend([
            ("tls-auth-clients", tls.map_or("yes", |t| t.client_auth.name()).into()),
            ("tls-ca-cert-file", path(tls.and_then(|t| t.ca_cert_file.as_ref()))),
            ("tls-cert-file", path(tls.map(|t| &t.cert_file))),
            ("tls-key-file", path(tls.map(|t| &t.key_file))),
            ("tls-port", tls.and_then(|t| t.port).unwrap_or(0).to_string()),
        ]);
        params
    }

    fn config_get(&self, patterns: &[Bytes]) -> Frame {
        let mut out = Vec::new();
        for (name, value) in self.config_params() {
            if patterns.iter().any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes())) {
                out.push((Frame::bulk(name), Frame::bulk(value)));
            }
        }
        Frame::Map(out)
    }
}

/// The keyspace access of a request sent to RedisStore (see the ordering rule above).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    Read,
    Write,
    /// A blocking command (BLPOP ...): it waits for every request before it, and every later
    /// one waits for it, as Redis serves nothing else of a blocked client.
    Exclusive,
}

impl Access {
    /// Whether a request of kind `other` may be in flight together with one of this kind.
    fn shares(self, other: Access) -> bool {
        self == other && self != Access::Exclusive
    }
}

/// A request waiting for requests of the other access kind to finish.
type Start = Box<dyn FnOnce(&mut Session, &mut Context<Session>)>;

/// Where a queued command's reply comes from when EXEC assembles its answer.
enum Slot {
    Ready(Frame),
    Keyspace,
    Server,
}

/// Compares without an early exit, so the time taken does not reveal how much of a password
/// matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as usize;
    }
    diff == 0
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        debug!(client = self.id, peer = %self.peer, "client connected");
        self.address = Some(ctx.address().recipient());
        self.report();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        debug!(client = self.id, peer = %self.peer, "client disconnected");
        self.store.do_send(ClientEvent::Gone(self.id));
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    /// A message published to a channel this connection listens to: written after the
    /// replies to the requests read before it. Messages held behind an unanswered request
    /// count against the output limit, like replies the client does not read.
    fn handle(&mut self, Deliver(message): Deliver, ctx: &mut Context<Self>) {
        let seq = self.next_request;
        self.next_request += 1;
        if self.next_reply < seq {
            self.held_messages += message.wire_size();
            if self.held_messages > OUTPUT_HARD_LIMIT {
                warn!(
                    client = self.id,
                    peer = %self.peer,
                    held_bytes = self.held_messages,
                    limit = OUTPUT_HARD_LIMIT,
                    "messages for a subscriber wait behind its unanswered request: output buffer limit \
                     reached; closing the connection"
                );
                self.writer.abort();
                return ctx.stop();
            }
        }
        self.complete(seq, message, After::Continue, ctx);
    }
}

impl Handler<Disconnect> for Session {
    type Result = ();

    /// `CLIENT KILL`: the connection closes now, as Redis closes it.
    fn handle(&mut self, _: Disconnect, ctx: &mut Context<Self>) {
        debug!(client = self.id, peer = %self.peer, "killed by CLIENT KILL");
        self.writer.abort();
        ctx.stop();
    }
}

/// Send the requests started in this turn (a Session to itself). It runs after the requests
/// already read are handled, so a pipelined batch goes to RedisStore as one message.
#[derive(Message)]
#[rtype(result = "()")]
struct SendOutgoing;

impl Handler<SendOutgoing> for Session {
    type Result = ();

    fn handle(&mut self, _: SendOutgoing, ctx: &mut Context<Self>) {
        self.send_scheduled = false;
        let (seqs, commands): (Vec<u64>, Vec<Command>) =
            std::mem::take(&mut self.outgoing).into_iter().unzip();
        if commands.is_empty() {
            return;
        }
        let replies = self.store.send(ExecuteBatch(commands));
        ctx.spawn(replies.into_actor(self).map(move |result, session, ctx| {
            let mut frames = result.unwrap_or_default().into_iter();
            for seq in seqs {
                let frame = frames.next().unwrap_or_else(|| Frame::error("ERR node is shutting down"));
                session.ungate(ctx);
                session.record(seq, frame, After::Continue);
            }
            session.release(ctx);
        }));
    }
}

impl StreamHandler<Result<Vec<Bytes>, RespError>> for Session {
    /// One decoded request, or the error that ends the connection.
    fn handle(&mut self, item: Result<Vec<Bytes>, RespError>, ctx: &mut Context<Self>) {
        self.handle_item(item, ctx);
        self.update_pending();
    }

    /// The client closed its side: finish answering what it sent, then stop. A client blocked
    /// in BLPOP or the like is let go at once, as Redis frees it.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.input_closed = true;
        let blocked = self.in_flight > 0 && self.in_flight_access == Access::Exclusive;
        if blocked || (self.next_reply == self.next_request && self.backlog.is_empty()) {
            ctx.stop();
        }
    }
}

impl Session {
    fn handle_item(&mut self, item: Result<Vec<Bytes>, RespError>, ctx: &mut Context<Self>) {
        match item {
            Ok(args) => self.handle_request(args, ctx),
            Err(RespError::Protocol(msg)) => {
                warn!(client = self.id, peer = %self.peer, %msg, "protocol error; closing the connection");
                let seq = self.next_request;
                self.next_request += 1;
                self.complete(seq, Frame::error(format!("ERR {msg}")), After::Close, ctx);
            }
            Err(RespError::Io(e)) => {
                debug!(client = self.id, error = %e, "read failed");
                ctx.stop();
            }
        }
    }
}

/// Owns the write half: writes replies in the order the Session released them, everything
/// that is ready in one write, and tells [`Flow`] what went out. Idle, it holds no large buffer.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut write: W,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    mut codec: RespCodec,
    flow: Rc<Flow>,
) {
    let mut buf = BytesMut::new();
    // Replies encoded into `buf` and not yet written, and their size.
    let mut unwritten = (0, 0);
    while let Some(mut item) = queue.recv().await {
        loop {
            match item {
                Outbound::Replies(frames) => {
                    for (frame, size) in frames {
                        // Encoding a Frame cannot fail.
                        let _ = codec.encode(frame, &mut buf);
                        unwritten = (unwritten.0 + 1, unwritten.1 + size);
                        if buf.len() >= WRITE_BATCH
                            && !write_out(&mut write, &mut buf, &mut unwritten, &flow).await
                        {
                            return;
                        }
                    }
                }
                Outbound::Protocol(version) => codec.set_protocol(version),
                Outbound::Close => {
                    if write_out(&mut write, &mut buf, &mut unwritten, &flow).await {
                        let _ = write.shutdown().await;
                    }
                    return;
                }
            }
            match queue.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if !write_out(&mut write, &mut buf, &mut unwritten, &flow).await {
            return;
        }
        if buf.capacity() > MAX_IDLE_WRITE_CAPACITY {
            buf = BytesMut::new();
        }
    }
}

/// Writes what `buf` holds and tells [`Flow`] that the `unwritten` replies went out; false if
/// the connection is gone.
async fn write_out<W: AsyncWrite + Unpin>(
    write: &mut W,
    buf: &mut BytesMut,
    unwritten: &mut (usize, usize),
    flow: &Flow,
) -> bool {
    if write.write_all_buf(buf).await.is_err() {
        return false;
    }
    let (replies, bytes) = std::mem::take(unwritten);
    flow.written(replies, bytes);
    true
}

/// Accepts client connections forever, one Session each: on the Redis port, and on the TLS port
/// if there is one (`--tls-port`). Both share the `--maxclients` places and the client ids.
pub async fn serve_clients(
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    store: Addr<RedisStore>,
    config: SessionConfig,
) {
    let slots = Arc::new(Semaphore::new(config.maxclients));
    let mut next_id = 0;
    let mut refusals = crate::RefusalWarnings::default();
    let mut failed_handshakes = crate::RefusalWarnings::default();
    let (tls_listener, acceptor) = tls.unzip();
    // TLS handshakes under way, each holding its connection's place; polled here, on the
    // accept loop's task, so a slow client never holds up the others.
    let mut handshakes = FuturesUnordered::new();
    loop {
        let (accepted, over_tls) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_on(tls_listener.as_ref()) => (accepted, true),
            Some((id, peer, local_addr, slot, done)) = handshakes.next(), if !handshakes.is_empty() => {
                match done {
                    Ok(Ok(stream)) => {
                        let halves = tokio::io::split(stream);
                        Session::start_for(id, halves, peer, local_addr, slot, store.clone(), config.clone());
                    }
                    Ok(Err(e)) => {
                        if failed_handshakes.due() {
                            warn!(%peer, error = %e, "a client's TLS handshake failed (logged once per 10 s)");
                        }
                        debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Once per interval at most: `INFO stats` counts every one.
            if refusals.due() {
                warn!(maxclients = config.maxclients, "max number of clients reached: refusing new clients");
            }
            debug!(%peer, "refused a client");
            store.do_send(ClientEvent::Rejected);
            if !over_tls {
                // Redis's answer, then the connection is closed. What the client has sent
                // already is read first: closing over unread bytes would reset the connection
                // and lose the answer. A fresh socket's send buffer takes the answer at once;
                // if not, the client gets only the close. (A TLS client gets only the close:
                // it is refused before its handshake, which would cost the node more.)
                let _ = stream.try_read(&mut [0u8; 4096]);
                let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
            }
            continue;
        };
        next_id += 1;
        let _ = stream.set_nodelay(true);
        let local_addr = stream.local_addr().map_or_else(|_| String::new(), |a| a.to_string());
        match &acceptor {
            Some(acceptor) if over_tls => {
                let (id, handshake) = (next_id, acceptor.accept(stream));
                handshakes.push(async move {
                    let done = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await;
                    (id, peer, local_addr, slot, done)
                });
            }
            _ => {
                let halves = stream.into_split();
                Session::start_for(next_id, halves, peer, local_addr, slot, store.clone(), config.clone());
            }
        }
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
