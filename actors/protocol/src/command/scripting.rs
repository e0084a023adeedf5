//! Lua scripts: `EVAL`, `EVALSHA` and their read-only forms, and `SCRIPT`.
//!
//! # Formats
//! - `EVAL script numkeys [key ...] [arg ...]`, `EVALSHA sha1 numkeys [key ...] [arg ...]`
//! - `EVAL_RO` and `EVALSHA_RO`, the same
//! - `SCRIPT LOAD script | EXISTS sha1 [sha1 ...] | FLUSH [ASYNC|SYNC] | KILL | HELP`
//!
//! A script that may write is a log entry ([`WriteOp::Eval`]) that every node runs when it
//! applies it, so it must carry its body: the node that proposes an EVALSHA looks its digest up
//! in its script cache first ([`Script::Sha`] is what it did not find, and is answered
//! NOSCRIPT). A read-only one is a read ([`ReadQuery::Eval`]).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    lower, parse_i64, unknown_subcommand, wrong_arity, Args, Command, LocalCommand, ReadQuery, WriteOp,
    NOT_INTEGER,
};
use crate::resp::Frame;

/// A script run, with what it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub script: Script,
    /// `KEYS` and `ARGV`.
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// The most Lua instructions it may run, set by the proposing node (`--script-budget`):
    /// carried in the entry, so every replica stops a runaway script at the same point.
    pub budget: u64,
}

/// A script's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Script {
    Body(Bytes),
    /// An EVALSHA digest (lowercase) the proposing node has no script for.
    Sha(Bytes),
}

/// The reply to an EVALSHA of a script no node has loaded.
pub const NO_SCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

const HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// Parses the scripting commands; `None` for other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let (read_only, by_sha) = match name {
        "eval" => (false, false),
        "evalsha" => (false, true),
        "eval_ro" => (true, false),
        "evalsha_ro" => (true, true),
        "script" => return parse_script(args.rest()).map(Some),
        _ => return Ok(None),
    };
    let source = args.arg();
    let numkeys = parse_i64(&args.arg()).ok_or_else(|| Frame::error(NOT_INTEGER))?;
    if numkeys < 0 {
        return Err(Frame::error("ERR Number of keys can't be negative"));
    }
    if numkeys as u64 > args.len() as u64 {
        return Err(Frame::error("ERR Number of keys can't be greater than number of args"));
    }
    let mut rest = args.rest();
    let params = rest.split_off(numkeys as usize);
    let script = match by_sha {
        true => Script::Sha(Bytes::from(source.to_ascii_lowercase())),
        false => Script::Body(source),
    };
    Ok(Some(Eval { script, keys: rest, args: params, budget: 0 }.command(read_only)))
}

fn parse_script(rest: Vec<Bytes>) -> Result<Command, Frame> {
    let sub = lower(&rest[0]);
    Ok(match (sub.as_str(), rest.len()) {
        ("load", 2) => Command::Write(WriteOp::ScriptLoad { script: rest[1].clone() }),
        ("exists", n) if n >= 2 => Command::ScriptExists(rest[1..].to_vec()),
        ("flush", 1) => Command::Write(WriteOp::ScriptFlush),
        ("flush", 2) if matches!(lower(&rest[1]).as_str(), "sync" | "async") => {
            Command::Write(WriteOp::ScriptFlush)
        }
        ("flush", _) => return Err(Frame::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")),
        ("kill", 1) => Command::Local(LocalCommand::ScriptKill),
        ("help", 1) => Command::Local(LocalCommand::Help(HELP)),
        ("debug", 2) => {
            return Err(Frame::error("ERR raft-kv has no Lua debugger: SCRIPT DEBUG is not supported"))
        }
        ("load" | "exists" | "kill" | "help" | "debug", _) => {
            return Err(wrong_arity(&format!("script|{sub}")));
        }
        _ => return Err(unknown_subcommand(&rest[0], "SCRIPT")),
    })
}

impl Eval {
    /// Whether the script may write: a log entry, or a read.
    pub fn command(self, read_only: bool) -> Command {
        match read_only {
            true => Command::Read(ReadQuery::Eval(self)),
            false => Command::Write(WriteOp::Eval(self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, Frame> {
        Command::parse(args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect())
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn eval_splits_keys_from_arguments() {
        let eval = |script, keys: &[&str], args: &[&str]| Eval {
            script,
            keys: keys.iter().map(|k| b(k)).collect(),
            args: args.iter().map(|a| b(a)).collect(),
            budget: 0,
        };
        assert_eq!(
            parse(&["EVAL", "return 1", "2", "a", "b", "c"]).unwrap(),
            Command::Write(WriteOp::Eval(eval(Script::Body(b("return 1")), &["a", "b"], &["c"])))
        );
        assert_eq!(
            parse(&["evalsha_ro", "ABCDEF", "0", "x"]).unwrap(),
            Command::Read(ReadQuery::Eval(eval(Script::Sha(b("abcdef")), &[], &["x"])))
        );
        let error = |args: &[&str]| match parse(args) {
            Err(Frame::Error(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(error(&["eval", "s", "-1"]), "ERR Number of keys can't be negative");
        assert_eq!(
            error(&["eval", "s", "2", "a"]),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(error(&["eval", "s", "x"]), NOT_INTEGER);
        assert_eq!(error(&["eval", "s"]), "ERR wrong number of arguments for 'eval' command");
    }

    #[test]
    fn script_subcommands() {
        assert_eq!(
            parse(&["script", "LOAD", "x"]).unwrap(),
            Command::Write(WriteOp::ScriptLoad { script: b("x") })
        );
        assert_eq!(parse(&["script", "flush", "ASYNC"]).unwrap(), Command::Write(WriteOp::ScriptFlush));
        assert_eq!(
            parse(&["script", "exists", "a", "b"]).unwrap(),
            Command::ScriptExists(vec![b("a"), b("b")])
        );
        assert_eq!(parse(&["script", "kill"]).unwrap(), Command::Local(LocalCommand::ScriptKill));
        assert!(parse(&["script", "load"]).is_err());
        assert!(parse(&["script", "flush", "now"]).is_err());
        assert!(parse(&["script", "nope"]).is_err());
    }
}
