//! Session is an actor, one per client connection.
//!
//! It decodes requests with [`RespCodec`] (a `StreamHandler` over the socket's read half),
//! parses each into a [`Command`], answers connection-level commands itself and sends the rest
//! to RedisStore. Replies may complete out of order (a read can overtake a write), so each
//! request gets a sequence number and replies are released strictly in request order: that is
//! what makes pipelining work. A writer task owns the socket's write half and flushes every
//! reply that is ready in one write.
//!
//! A protocol error is answered with `-ERR Protocol error: ...` and closes this connection only.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use actix::prelude::*;
use bytes::Bytes;
use futures::SinkExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, warn};

use crate::command::{Command, LocalCommand, COMMAND_TABLE};
use crate::glob::glob_match;
use crate::redis_store::{Execute, RedisStore};
use crate::resp::{Frame, RespCodec, RespError, RespLimits};

/// What the Session tells its writer task.
enum Outbound {
    Reply(Frame),
    /// Flush what was sent and close the connection.
    Close,
}

/// Settings a session reports through `CONFIG GET`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub bind: String,
    pub port: u16,
    pub limits: RespLimits,
}

pub struct Session {
    id: u64,
    peer: SocketAddr,
    store: Addr<RedisStore>,
    config: SessionConfig,
    out: mpsc::UnboundedSender<Outbound>,
    next_request: u64,
    next_reply: u64,
    /// Replies that completed before an earlier request's reply.
    completed: BTreeMap<u64, (Frame, bool)>,
    name: Option<Bytes>,
    input_closed: bool,
}

impl Session {
    /// Starts a session actor for an accepted connection.
    pub fn start_for(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        store: Addr<RedisStore>,
        config: SessionConfig,
    ) {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (out, queue) = mpsc::unbounded_channel();
        actix_rt::spawn(write_replies(write, queue, RespCodec::new(config.limits)));
        Session::create(move |ctx| {
            ctx.add_stream(FramedRead::new(read, RespCodec::new(config.limits)));
            Session {
                id,
                peer,
                store,
                config,
                out,
                next_request: 0,
                next_reply: 0,
                completed: BTreeMap::new(),
                name: None,
                input_closed: false,
            }
        });
    }

    /// Records the reply to request `seq` and writes every reply that is now next in order.
    fn complete(&mut self, seq: u64, frame: Frame, close: bool, ctx: &mut Context<Self>) {
        self.completed.insert(seq, (frame, close));
        while let Some((frame, close)) = self.completed.remove(&self.next_reply) {
            self.next_reply += 1;
            let _ = self.out.send(Outbound::Reply(frame));
            if close {
                let _ = self.out.send(Outbound::Close);
                ctx.stop();
                return;
            }
        }
        if self.input_closed && self.next_reply == self.next_request {
            ctx.stop();
        }
    }

    fn handle_request(&mut self, args: Vec<Bytes>, ctx: &mut Context<Self>) {
        let seq = self.next_request;
        self.next_request += 1;
        let command = match Command::parse(args) {
            Ok(command) => command,
            Err(reply) => return self.complete(seq, reply, false, ctx),
        };
        match command {
            Command::Local(local) => {
                let close = local == LocalCommand::Quit;
                let reply = self.local(local);
                self.complete(seq, reply, close, ctx);
            }
            command => {
                let reply = self.store.send(Execute(command));
                ctx.spawn(reply.into_actor(self).map(move |result, session, ctx| {
                    let frame = result.unwrap_or_else(|_| Frame::error("ERR node is shutting down"));
                    session.complete(seq, frame, false, ctx);
                }));
            }
        }
    }

    /// Answers the commands that only concern this connection or this server.
    fn local(&mut self, command: LocalCommand) -> Frame {
        match command {
            LocalCommand::Ping(None) => Frame::Simple("PONG".into()),
            LocalCommand::Ping(Some(msg)) | LocalCommand::Echo(msg) => Frame::Bulk(msg),
            LocalCommand::Quit => Frame::ok(),
            LocalCommand::Select(index) => {
                match std::str::from_utf8(&index).ok().and_then(|s| s.parse::<i64>().ok()) {
                    Some(0) => Frame::ok(),
                    Some(_) => Frame::error("ERR DB index is out of range"),
                    None => Frame::error("ERR value is not an integer or out of range"),
                }
            }
            LocalCommand::ConfigGet(patterns) => self.config_get(&patterns),
            LocalCommand::ConfigSet(args) => Frame::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(&args[0])
            )),
            LocalCommand::ConfigResetStat => Frame::ok(),
            LocalCommand::CommandCount => Frame::Integer(COMMAND_TABLE.len() as i64),
            LocalCommand::CommandList => Frame::Array(COMMAND_TABLE.iter().map(command_info).collect()),
            LocalCommand::CommandInfo(names) if names.is_empty() => {
                Frame::Array(COMMAND_TABLE.iter().map(command_info).collect())
            }
            LocalCommand::CommandInfo(names) => Frame::Array(
                names
                    .iter()
                    .map(|n| match crate::command::lookup(&String::from_utf8_lossy(n).to_ascii_lowercase()) {
                        Some(spec) => command_info(spec),
                        None => Frame::NullArray,
                    })
                    .collect(),
            ),
            // No command documentation is served; clients fall back to their built-in help.
            LocalCommand::CommandDocs(_) => Frame::Map(Vec::new()),
            LocalCommand::ClientSetName(name) => {
                self.name = (!name.is_empty()).then_some(name);
                Frame::ok()
            }
            LocalCommand::ClientGetName => self.name.clone().map_or(Frame::Null, Frame::Bulk),
            LocalCommand::ClientId => Frame::Integer(self.id as i64),
            LocalCommand::ClientSetInfo => Frame::ok(),
        }
    }

    fn config_get(&self, patterns: &[Bytes]) -> Frame {
        let limits = self.config.limits;
        // raft-kv fsyncs every Raft Ready before acknowledging: the closest Redis terms are an
        // always-fsynced append-only file and no RDB snapshots.
        let params: [(&str, String); 8] = [
            ("appendfsync", "always".into()),
            ("appendonly", "yes".into()),
            ("bind", self.config.bind.clone()),
            ("databases", "1".into()),
            ("port", self.config.port.to_string()),
            ("proto-max-bulk-len", limits.max_bulk_len.to_string()),
            ("save", String::new()),
            ("maxmemory", "0".into()),
        ];
        let mut out = Vec::new();
        for (name, value) in params {
            if patterns.iter().any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes())) {
                out.push((Frame::bulk(name), Frame::bulk(value)));
            }
        }
        Frame::Map(out)
    }
}

/// One `COMMAND INFO` entry: name, arity, flags, first key, last key, step.
fn command_info(spec: &crate::command::CommandSpec) -> Frame {
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity),
        Frame::Set(spec.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Integer(spec.first_key),
        Frame::Integer(spec.last_key),
        Frame::Integer(spec.step),
    ])
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        debug!(client = self.id, peer = %self.peer, "client connected");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        debug!(client = self.id, peer = %self.peer, "client disconnected");
    }
}

impl StreamHandler<Result<Vec<Bytes>, RespError>> for Session {
    /// One decoded request, or the error that ends the connection.
    fn handle(&mut self, item: Result<Vec<Bytes>, RespError>, ctx: &mut Context<Self>) {
        match item {
            Ok(args) => self.handle_request(args, ctx),
            Err(RespError::Protocol(msg)) => {
                warn!(client = self.id, peer = %self.peer, %msg, "protocol error; closing the connection");
                let seq = self.next_request;
                self.next_request += 1;
                self.complete(seq, Frame::error(format!("ERR {msg}")), true, ctx);
            }
            Err(RespError::Io(e)) => {
                debug!(client = self.id, error = %e, "read failed");
                ctx.stop();
            }
        }
    }

    /// The client closed its side: finish answering what it sent, then stop.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.input_closed = true;
        if self.next_reply == self.next_request {
            ctx.stop();
        }
    }
}

/// Owns the write half: writes replies in the order the Session released them, flushing
/// everything that is ready at once.
async fn write_replies(
    write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    codec: RespCodec,
) {
    let mut sink = FramedWrite::new(write, codec);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                Outbound::Reply(frame) => {
                    if sink.feed(frame).await.is_err() {
                        return;
                    }
                }
                Outbound::Close => {
                    let _ = SinkExt::<Frame>::flush(&mut sink).await;
                    return;
                }
            }
            next = queue.try_recv().ok();
        }
        if SinkExt::<Frame>::flush(&mut sink).await.is_err() {
            return;
        }
    }
}

/// Accepts client connections forever, one Session each.
pub async fn serve_clients(listener: TcpListener, store: Addr<RedisStore>, config: SessionConfig) {
    let mut next_id = 0;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                next_id += 1;
                Session::start_for(next_id, stream, peer, store.clone(), config.clone());
            }
            Err(e) => {
                warn!(error = %e, "accepting a client failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
