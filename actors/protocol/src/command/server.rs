//! Connection, server and transaction commands.
//!
//! # Formats
//! - `PING [message]`, `ECHO message`, `QUIT`, `RESET`, `SELECT index`, `TIME`
//! - `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`
//! - `HELLO [protover [AUTH username password] [SETNAME clientname]]`, `AUTH [username] password`
//! - `CLIENT SETNAME name | GETNAME | ID | INFO | LIST | SETINFO attr value`
//! - `INFO [section ...]`, `CONFIG GET parameter [...] | SET parameter value [...] | RESETSTAT`
//! - `COMMAND [COUNT | INFO [name ...] | DOCS [name ...]]`
//! - `FUNCTION FLUSH [ASYNC|SYNC]`
//! - `MULTI`, `EXEC`, `DISCARD`, `WATCH key [key ...]`, `UNWATCH`

use bytes::Bytes;

use super::{
    lower, parse_i64, syntax_error, unknown_subcommand, wrong_arity, Args, Command, KillFilter, LocalCommand,
    TxCommand,
};
use crate::resp::Frame;

/// Parses the connection, server and transaction commands; `None` for other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let local = |c| Ok(Some(Command::Local(c)));
    let tx = |c| Ok(Some(Command::Transaction(c)));
    match name {
        "ping" => match args.len() {
            0 => local(LocalCommand::Ping(None)),
            1 => local(LocalCommand::Ping(Some(args.arg()))),
            _ => Err(wrong_arity("ping")),
        },
        "echo" => local(LocalCommand::Echo(args.arg())),
        "quit" => local(LocalCommand::Quit),
        "reset" => local(LocalCommand::Reset),
        "shutdown" => parse_shutdown(&args.rest()),
        "select" => local(LocalCommand::Select(args.arg())),
        "time" => local(LocalCommand::Time),
        "hello" => parse_hello(args),
        "auth" => match args.len() {
            1 => local(LocalCommand::Auth { user: None, password: args.arg() }),
            2 => local(LocalCommand::Auth { user: Some(args.arg()), password: args.arg() }),
            _ => Err(syntax_error()),
        },
        "info" => Ok(Some(Command::Info(args.rest().iter().map(|s| lower(s)).collect()))),
        "config" => parse_config(args.rest()),
        "command" => parse_command(args.rest()),
        "client" => parse_client(args.rest()),
        "function" => {
            let rest = args.rest();
            match (lower(&rest[0]).as_str(), rest.len()) {
                ("flush", 1) => local(LocalCommand::FlushScripts),
                ("flush", 2) if matches!(lower(&rest[1]).as_str(), "sync" | "async") => {
                    local(LocalCommand::FlushScripts)
                }
                ("flush", _) => Err(Frame::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")),
                _ => Err(unknown_subcommand(&rest[0], "FUNCTION")),
            }
        }
        "multi" => tx(TxCommand::Multi),
        "exec" => tx(TxCommand::Exec),
        "discard" => tx(TxCommand::Discard),
        "watch" => tx(TxCommand::Watch(args.rest())),
        "unwatch" => tx(TxCommand::Unwatch),
        _ => Ok(None),
    }
}

/// `SHUTDOWN`'s options, checked as Redis checks them: `ABORT` alone, not both `NOSAVE` and
/// `SAVE`.
fn parse_shutdown(args: &[Bytes]) -> Result<Option<Command>, Frame> {
    let (mut abort, mut save, mut nosave, mut others) = (false, false, false, false);
    for arg in args {
        match lower(arg).as_str() {
            "abort" => abort = true,
            "save" => save = true,
            "nosave" => nosave = true,
            "now" | "force" => others = true,
            _ => return Err(syntax_error()),
        }
    }
    if (abort && (save || nosave || others)) || (save && nosave) {
        return Err(syntax_error());
    }
    Ok(Some(Command::Local(LocalCommand::Shutdown { abort })))
}

fn parse_hello(args: &mut Args) -> Result<Option<Command>, Frame> {
    let mut protocol = None;
    if let Some(version) = args.try_next() {
        let v = super::parse_i64(&version)
            .ok_or_else(|| Frame::error("ERR Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(Frame::error("NOPROTO unsupported protocol version"));
        }
        protocol = Some(v as u8);
    }
    let (mut auth, mut name) = (None, None);
    while let Some(option) = args.try_next() {
        match lower(&option).as_str() {
            "auth" if args.len() >= 2 => auth = Some((args.arg(), args.arg())),
            "setname" if !args.is_empty() => name = Some(args.arg()),
            _ => {
                return Err(Frame::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&option)
                )))
            }
        }
    }
    Ok(Some(Command::Local(LocalCommand::Hello { protocol, auth, name })))
}

fn parse_config(args: Vec<Bytes>) -> Result<Option<Command>, Frame> {
    let sub = lower(&args[0]);
    let cmd = match (sub.as_str(), args.len()) {
        ("get", n) if n >= 2 => LocalCommand::ConfigGet(args[1..].to_vec()),
        ("set", n) if n >= 3 && n % 2 == 1 => LocalCommand::ConfigSet(args[1..].to_vec()),
        ("resetstat", 1) => LocalCommand::ConfigResetStat,
        ("get" | "set" | "resetstat", _) => return Err(wrong_arity(&format!("config|{sub}"))),
        _ => return Err(unknown_subcommand(&args[0], "CONFIG")),
    };
    Ok(Some(Command::Local(cmd)))
}

fn parse_command(args: Vec<Bytes>) -> Result<Option<Command>, Frame> {
    if args.is_empty() {
        return Ok(Some(Command::Local(LocalCommand::CommandList)));
    }
    let sub = lower(&args[0]);
    let cmd = match (sub.as_str(), args.len()) {
        ("count", 1) => LocalCommand::CommandCount,
        ("docs", _) => LocalCommand::CommandDocs(args[1..].to_vec()),
        ("info", _) => LocalCommand::CommandInfo(args[1..].to_vec()),
        ("count", _) => return Err(wrong_arity("command|count")),
        _ => return Err(unknown_subcommand(&args[0], "COMMAND")),
    };
    Ok(Some(Command::Local(cmd)))
}

/// `CLIENT KILL`'s arguments: one address (the old form), or filter-value pairs.
fn parse_kill(args: &[Bytes]) -> Result<KillFilter, Frame> {
    let text = |arg: &Bytes| String::from_utf8_lossy(arg).into_owned();
    if let [addr] = args {
        return Ok(KillFilter { addr: Some(text(addr)), old_form: true, ..KillFilter::default() });
    }
    if !args.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    let mut filter = KillFilter { skip_me: true, ..KillFilter::default() };
    for pair in args.chunks(2) {
        let value = &pair[1];
        match lower(&pair[0]).as_str() {
            "id" => match parse_i64(value).filter(|&id| id > 0) {
                Some(id) => filter.id = Some(id as u64),
                None => return Err(Frame::error("ERR client-id should be greater than 0")),
            },
            "addr" => filter.addr = Some(text(value)),
            "laddr" => filter.laddr = Some(text(value)),
            "type" => match lower(value).as_str() {
                "normal" => {}
                "master" | "slave" | "replica" | "pubsub" => filter.none = true,
                _ => return Err(Frame::error(format!("ERR Unknown client type '{}'", text(value)))),
            },
            "user" if &value[..] == b"default" => {}
            "user" => return Err(Frame::error(format!("ERR No such user '{}'", text(value)))),
            "skipme" => match lower(value).as_str() {
                "yes" => filter.skip_me = true,
                "no" => filter.skip_me = false,
                _ => return Err(syntax_error()),
            },
            _ => return Err(syntax_error()),
        }
    }
    Ok(filter)
}

/// Redis refuses client names with spaces, newlines or other special characters.
pub fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| b > b' ' && b <= b'~')
}

fn parse_client(args: Vec<Bytes>) -> Result<Option<Command>, Frame> {
    let sub = lower(&args[0]);
    let cmd = match (sub.as_str(), args.len()) {
        ("setname", 2) => {
            if !valid_client_name(&args[1]) {
                return Err(Frame::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            LocalCommand::ClientSetName(args[1].clone())
        }
        ("getname", 1) => LocalCommand::ClientGetName,
        ("id", 1) => LocalCommand::ClientId,
        ("info", 1) => LocalCommand::ClientInfo,
        ("list", 1) => return Ok(Some(Command::ClientList)),
        ("unblock", 2 | 3) => {
            let id = parse_i64(&args[1]).ok_or_else(|| Frame::error(super::NOT_INTEGER))?;
            let error = match args.get(2).map(|r| lower(r)).as_deref() {
                None | Some("timeout") => false,
                Some("error") => true,
                Some(_) => return Err(Frame::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
            };
            return Ok(Some(Command::ClientUnblock { id, error }));
        }
        ("unblock", 1) | ("kill", 1) => return Err(wrong_arity(&format!("client|{sub}"))),
        ("unblock", _) => {
            let typed = String::from_utf8_lossy(&args[0]).replace(['\r', '\n'], " ");
            return Err(Frame::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{typed}'. Try CLIENT HELP."
            )));
        }
        ("kill", _) => return parse_kill(&args[1..]).map(|filter| Some(Command::ClientKill(filter))),
        ("list", _) => return Err(syntax_error()),
        ("setinfo", 3) => LocalCommand::ClientSetInfo,
        ("setname" | "getname" | "id" | "info" | "setinfo", _) => {
            return Err(wrong_arity(&format!("client|{sub}")))
        }
        _ => return Err(unknown_subcommand(&args[0], "CLIENT")),
    };
    Ok(Some(Command::Local(cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_parse as parse;

    #[test]
    fn hello_checks_its_version_and_options() {
        assert_eq!(parse(&["hello", "4"]).unwrap_err(), Frame::error("NOPROTO unsupported protocol version"));
        assert_eq!(
            parse(&["hello", "x"]).unwrap_err(),
            Frame::error("ERR Protocol version is not an integer or out of range")
        );
        assert_eq!(
            parse(&["hello", "3", "auth", "u"]).unwrap_err(),
            Frame::error("ERR Syntax error in HELLO option 'auth'")
        );
        assert_eq!(
            parse(&["hello", "3", "AUTH", "default", "pw", "SETNAME", "me"]).unwrap(),
            Command::Local(LocalCommand::Hello {
                protocol: Some(3),
                auth: Some(("default".into(), "pw".into())),
                name: Some("me".into())
            })
        );
    }

    #[test]
    fn client_unblock_and_kill_read_their_arguments_as_redis_does() {
        let err = |words: &[&str]| match parse(words).unwrap_err() {
            Frame::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            parse(&["client", "unblock", "7", "ERROR"]).unwrap(),
            Command::ClientUnblock { id: 7, error: true }
        );
        assert_eq!(
            parse(&["client", "unblock", "7"]).unwrap(),
            Command::ClientUnblock { id: 7, error: false }
        );
        assert_eq!(err(&["client", "unblock", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(
            err(&["client", "unblock", "1", "nope"]),
            "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"
        );
        assert_eq!(err(&["client", "unblock"]), "ERR wrong number of arguments for 'client|unblock' command");
        assert_eq!(err(&["client", "kill"]), "ERR wrong number of arguments for 'client|kill' command");
        assert_eq!(
            parse(&["client", "kill", "1.2.3.4:5"]).unwrap(),
            Command::ClientKill(KillFilter {
                addr: Some("1.2.3.4:5".into()),
                old_form: true,
                ..KillFilter::default()
            })
        );
        assert_eq!(
            parse(&["client", "kill", "ID", "3", "skipme", "no", "type", "normal", "user", "default"])
                .unwrap(),
            Command::ClientKill(KillFilter { id: Some(3), ..KillFilter::default() })
        );
        assert_eq!(
            parse(&["client", "kill", "laddr", "a:1", "type", "pubsub"]).unwrap(),
            Command::ClientKill(KillFilter {
                laddr: Some("a:1".into()),
                none: true,
                skip_me: true,
                ..KillFilter::default()
            })
        );
        assert_eq!(err(&["client", "kill", "id", "0"]), "ERR client-id should be greater than 0");
        assert_eq!(err(&["client", "kill", "type", "x"]), "ERR Unknown client type 'x'");
        assert_eq!(err(&["client", "kill", "user", "x"]), "ERR No such user 'x'");
        assert_eq!(err(&["client", "kill", "id", "1", "addr"]), "ERR syntax error");
        assert_eq!(err(&["client", "kill", "maxage", "1"]), "ERR syntax error");
    }

    #[test]
    fn config_and_command_subcommands() {
        assert_eq!(
            parse(&["CONFIG", "GET", "save"]).unwrap(),
            Command::Local(LocalCommand::ConfigGet(vec!["save".into()]))
        );
        assert_eq!(parse(&["command", "docs"]).unwrap(), Command::Local(LocalCommand::CommandDocs(vec![])));
        assert_eq!(
            parse(&["config", "bogus"]).unwrap_err(),
            Frame::Error("ERR unknown subcommand 'bogus'. Try CONFIG HELP.".into())
        );
        assert_eq!(
            parse(&["function", "FLUSH", "async"]).unwrap(),
            Command::Local(LocalCommand::FlushScripts)
        );
    }

    #[test]
    fn transaction_commands_go_to_the_session() {
        assert_eq!(parse(&["multi"]).unwrap(), Command::Transaction(TxCommand::Multi));
        assert_eq!(
            parse(&["watch", "a", "b"]).unwrap(),
            Command::Transaction(TxCommand::Watch(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse(&["watch"]).unwrap_err(), wrong_arity("watch"));
    }
}
