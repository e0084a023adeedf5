//! Typed commands parsed from a client's argument vector.
//!
//! Parsing happens once, in the Session, into one of three families that decide where a command
//! goes: [`Command::Local`] is answered by the Session itself (connection state, server
//! introspection), [`Command::Read`] needs a linearizable read of the keyspace, and
//! [`Command::Write`] becomes a Raft proposal whose [`WriteOp`] is what the log stores and every
//! replica applies. Arity and syntax errors use Redis's exact wording, because clients and their
//! test suites match on it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::resp::Frame;

/// What one client request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answered by the Session without touching the keyspace.
    Local(LocalCommand),
    /// A read of the replicated keyspace (linearizable, through ReadIndex).
    Read(ReadQuery),
    /// A mutation, replicated through the Raft log.
    Write(WriteOp),
    /// `INFO [section ...]`: server, keyspace and raft state.
    Info(Vec<String>),
}

/// Commands about the connection or the server, answered by the Session.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalCommand {
    /// `PING [message]`
    Ping(Option<Bytes>),
    /// `ECHO message`
    Echo(Bytes),
    /// `QUIT`: reply OK, then close the connection.
    Quit,
    /// `SELECT index`: only database 0 exists.
    Select(Bytes),
    /// `CONFIG GET parameter [parameter ...]` (glob patterns)
    ConfigGet(Vec<Bytes>),
    /// `CONFIG SET ...`: nothing is settable at run time yet.
    ConfigSet(Vec<Bytes>),
    /// `CONFIG RESETSTAT`
    ConfigResetStat,
    /// `COMMAND` with no subcommand: the command table.
    CommandList,
    /// `COMMAND COUNT`
    CommandCount,
    /// `COMMAND DOCS [name ...]`
    CommandDocs(Vec<Bytes>),
    /// `COMMAND INFO [name ...]`
    CommandInfo(Vec<Bytes>),
    /// `CLIENT SETNAME name`
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`
    ClientId,
    /// `CLIENT SETINFO attr value` (sent by client libraries on connect)
    ClientSetInfo,
}

/// A read of the keyspace. Executed by Storage once the node has applied the log up to a read
/// index confirmed by the leader.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadQuery {
    /// `GET key`
    Get(Bytes),
    /// `EXISTS key [key ...]`: counts repeated keys repeatedly, like Redis.
    Exists(Vec<Bytes>),
    /// `KEYS pattern`
    Keys(Bytes),
    /// `DBSIZE`
    DbSize,
}

/// A replicated mutation: the payload of a Raft log entry. Applying one must be deterministic on
/// every replica, so it carries everything it needs (no clocks, no randomness at apply time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `SET key value`
    Set { key: Bytes, value: Bytes },
    /// `DEL key [key ...]`: replies with how many existed.
    Del { keys: Vec<Bytes> },
}

/// Who proposed a write: the node, its boot incarnation (so ids never repeat across restarts)
/// and a per-boot counter. Only the proposing node has a client waiting for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub node: u64,
    pub incarnation: u64,
    pub seq: u64,
}

/// The payload of a normal Raft log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub origin: RequestId,
    pub op: WriteOp,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a proposal always serializes")
    }

    pub fn decode(data: &[u8]) -> crate::Result<Self> {
        postcard::from_bytes(data).map_err(|e| crate::Error::Corrupt(e.to_string()))
    }
}

/// One row of the command table: Redis's arity convention (positive: exact count including the
/// name; negative: at least that many) and the key positions clients read from `COMMAND`.
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    first_key: i64,
    last_key: i64,
    step: i64,
) -> CommandSpec {
    CommandSpec { name, arity, flags, first_key, last_key, step }
}

/// Every command raft-kv understands.
pub const COMMAND_TABLE: &[CommandSpec] = &[
    spec("client", -2, &["admin", "noscript", "loading", "stale"], 0, 0, 0),
    spec("command", -1, &["loading", "stale"], 0, 0, 0),
    spec("config", -2, &["admin", "noscript", "loading", "stale"], 0, 0, 0),
    spec("dbsize", 1, &["readonly", "fast"], 0, 0, 0),
    spec("del", -2, &["write"], 1, -1, 1),
    spec("echo", 2, &["fast"], 0, 0, 0),
    spec("exists", -2, &["readonly", "fast"], 1, -1, 1),
    spec("get", 2, &["readonly", "fast"], 1, 1, 1),
    spec("info", -1, &["loading", "stale"], 0, 0, 0),
    spec("keys", 2, &["readonly"], 0, 0, 0),
    spec("ping", -1, &["fast", "stale"], 0, 0, 0),
    spec("quit", -1, &["fast", "loading", "stale"], 0, 0, 0),
    spec("select", 2, &["loading", "stale", "fast"], 0, 0, 0),
    spec("set", -3, &["write", "denyoom"], 1, 1, 1),
];

/// Looks a command up by its lower-case name.
pub fn lookup(name: &str) -> Option<&'static CommandSpec> {
    COMMAND_TABLE.iter().find(|c| c.name == name)
}

impl Command {
    /// Parses a request's arguments (`args[0]` is the command name, any case).
    /// An `Err` is the complete error reply for the client.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, Frame> {
        let Some(first) = args.first() else {
            return Err(Frame::error("ERR empty command"));
        };
        let name = String::from_utf8_lossy(first).to_ascii_lowercase();
        let Some(spec) = lookup(&name) else {
            return Err(unknown_command(&args));
        };
        let argc = args.len() as i64;
        if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
            return Err(wrong_arity(spec.name));
        }
        let mut args = args.into_iter().skip(1);
        let mut next = || args.next().expect("arity was checked");
        let rest = |it: std::iter::Skip<std::vec::IntoIter<Bytes>>| it.collect::<Vec<_>>();
        let cmd = match spec.name {
            "ping" => match argc {
                1 => Command::Local(LocalCommand::Ping(None)),
                2 => Command::Local(LocalCommand::Ping(Some(next()))),
                _ => return Err(wrong_arity("ping")),
            },
            "echo" => Command::Local(LocalCommand::Echo(next())),
            "quit" => Command::Local(LocalCommand::Quit),
            "select" => Command::Local(LocalCommand::Select(next())),
            "get" => Command::Read(ReadQuery::Get(next())),
            "set" => {
                let key = next();
                let value = next();
                if argc > 3 {
                    return Err(syntax_error());
                }
                Command::Write(WriteOp::Set { key, value })
            }
            "del" => Command::Write(WriteOp::Del { keys: rest(args) }),
            "exists" => Command::Read(ReadQuery::Exists(rest(args))),
            "keys" => Command::Read(ReadQuery::Keys(next())),
            "dbsize" => Command::Read(ReadQuery::DbSize),
            "info" => Command::Info(
                rest(args).iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect(),
            ),
            "config" => parse_config(rest(args))?,
            "command" => parse_command(rest(args))?,
            "client" => parse_client(rest(args))?,
            _ => unreachable!("every table entry has a parser"),
        };
        Ok(cmd)
    }
}

fn parse_config(args: Vec<Bytes>) -> Result<Command, Frame> {
    let sub = subcommand(&args);
    let cmd = match (sub.as_str(), args.len()) {
        ("get", n) if n >= 2 => LocalCommand::ConfigGet(args[1..].to_vec()),
        ("set", n) if n >= 3 && n % 2 == 1 => LocalCommand::ConfigSet(args[1..].to_vec()),
        ("resetstat", 1) => LocalCommand::ConfigResetStat,
        ("get" | "set" | "resetstat", _) => return Err(wrong_arity(&format!("config|{sub}"))),
        _ => return Err(unknown_subcommand(&args[0], "CONFIG")),
    };
    Ok(Command::Local(cmd))
}

fn parse_command(args: Vec<Bytes>) -> Result<Command, Frame> {
    if args.is_empty() {
        return Ok(Command::Local(LocalCommand::CommandList));
    }
    let sub = subcommand(&args);
    let cmd = match (sub.as_str(), args.len()) {
        ("count", 1) => LocalCommand::CommandCount,
        ("docs", _) => LocalCommand::CommandDocs(args[1..].to_vec()),
        ("info", _) => LocalCommand::CommandInfo(args[1..].to_vec()),
        ("count", _) => return Err(wrong_arity("command|count")),
        _ => return Err(unknown_subcommand(&args[0], "COMMAND")),
    };
    Ok(Command::Local(cmd))
}

fn parse_client(args: Vec<Bytes>) -> Result<Command, Frame> {
    let sub = subcommand(&args);
    let cmd = match (sub.as_str(), args.len()) {
        ("setname", 2) => {
            if args[1].iter().any(|&b| b <= b' ' || b > b'~') {
                return Err(Frame::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            LocalCommand::ClientSetName(args[1].clone())
        }
        ("getname", 1) => LocalCommand::ClientGetName,
        ("id", 1) => LocalCommand::ClientId,
        ("setinfo", 3) => LocalCommand::ClientSetInfo,
        ("setname" | "getname" | "id" | "setinfo", _) => return Err(wrong_arity(&format!("client|{sub}"))),
        _ => return Err(unknown_subcommand(&args[0], "CLIENT")),
    };
    Ok(Command::Local(cmd))
}

fn subcommand(args: &[Bytes]) -> String {
    String::from_utf8_lossy(&args[0]).to_ascii_lowercase()
}

/// `-ERR wrong number of arguments for 'get' command`
pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// `-ERR syntax error`
pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

/// Redis 7's reply to an unknown command: the name and the first arguments, quoted, each
/// followed by a space, at most 128 bytes of arguments.
fn unknown_command(args: &[Bytes]) -> Frame {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        let text = String::from_utf8_lossy(arg);
        let shown: String = text.chars().take(room).collect();
        quoted.push_str(&format!("'{shown}' "));
    }
    let name: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
    let msg = format!("ERR unknown command '{name}', with args beginning with: {quoted}");
    // Redis keeps error replies on one line.
    Frame::Error(msg.replace(['\r', '\n'], " "))
}

fn unknown_subcommand(sub: &Bytes, command: &str) -> Frame {
    let sub = String::from_utf8_lossy(sub).replace(['\r', '\n'], " ");
    Frame::Error(format!("ERR unknown subcommand '{sub}'. Try {command} HELP."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    #[test]
    fn command_names_are_case_insensitive() {
        assert_eq!(
            Command::parse(args(&["sEt", "k", "v"])).unwrap(),
            Command::Write(WriteOp::Set { key: "k".into(), value: "v".into() })
        );
    }

    #[test]
    fn wrong_arity_uses_redis_wording() {
        assert_eq!(
            Command::parse(args(&["GET"])).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            Command::parse(args(&["ping", "a", "b"])).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'ping' command".into())
        );
    }

    #[test]
    fn unknown_command_quotes_its_first_arguments() {
        assert_eq!(
            Command::parse(args(&["FOO", "a", "b"])).unwrap_err(),
            Frame::Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into())
        );
        assert_eq!(
            Command::parse(args(&["nope"])).unwrap_err(),
            Frame::Error("ERR unknown command 'nope', with args beginning with: ".into())
        );
    }

    #[test]
    fn set_with_unsupported_options_is_a_syntax_error() {
        assert_eq!(Command::parse(args(&["set", "k", "v", "bogus"])).unwrap_err(), syntax_error());
    }

    #[test]
    fn del_and_exists_take_every_key() {
        assert_eq!(
            Command::parse(args(&["del", "a", "b"])).unwrap(),
            Command::Write(WriteOp::Del { keys: vec!["a".into(), "b".into()] })
        );
        assert_eq!(
            Command::parse(args(&["exists", "a", "a"])).unwrap(),
            Command::Read(ReadQuery::Exists(vec!["a".into(), "a".into()]))
        );
    }

    #[test]
    fn config_and_command_subcommands() {
        assert_eq!(
            Command::parse(args(&["CONFIG", "GET", "save"])).unwrap(),
            Command::Local(LocalCommand::ConfigGet(vec!["save".into()]))
        );
        assert_eq!(
            Command::parse(args(&["command", "docs"])).unwrap(),
            Command::Local(LocalCommand::CommandDocs(vec![]))
        );
        assert_eq!(
            Command::parse(args(&["config", "bogus"])).unwrap_err(),
            Frame::Error("ERR unknown subcommand 'bogus'. Try CONFIG HELP.".into())
        );
    }

    #[test]
    fn write_ops_round_trip_through_the_log_encoding() {
        let op = WriteOp::Set { key: Bytes::from_static(b"\0k\r\n"), value: Bytes::from_static(&[0xff, 0]) };
        let bytes = postcard::to_allocvec(&op).unwrap();
        assert_eq!(postcard::from_bytes::<WriteOp>(&bytes).unwrap(), op);
    }
}
