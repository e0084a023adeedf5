//! The keyspace and expiry commands.
//!
//! # Formats
//! - `DEL key [key ...]`, `UNLINK key [key ...]`, `EXISTS key [key ...]`, `TOUCH key [key ...]`
//! - `TYPE key`, `RENAME key newkey`, `RENAMENX key newkey`,
//!   `COPY source destination [DB destination-db] [REPLACE]`
//! - `KEYS pattern`, `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`, `RANDOMKEY`,
//!   `DBSIZE`, `FLUSHDB [ASYNC|SYNC]`, `FLUSHALL [ASYNC|SYNC]`
//! - `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE key milliseconds [...]`,
//!   `EXPIREAT key unix-time-seconds [...]`, `PEXPIREAT key unix-time-milliseconds [...]`
//! - `TTL key`, `PTTL key`, `EXPIRETIME key`, `PEXPIRETIME key`, `PERSIST key`

use super::{
    cursor_arg, int_arg, lower, syntax_error, Args, Command, ExpireCond, Expiry, ReadQuery, WriteOp,
};
use crate::now_ms;
use crate::resp::Frame;

/// How many keys a SCAN call visits when no COUNT is given (Redis's default).
const DEFAULT_SCAN_COUNT: usize = 10;

/// Parses the keyspace and expiry commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "del" | "unlink" => write(WriteOp::Del { keys: args.rest() }),
        "exists" => read(ReadQuery::Exists(args.rest())),
        "touch" => read(ReadQuery::Touch(args.rest())),
        "type" => read(ReadQuery::Type(args.arg())),
        "rename" | "renamenx" => {
            write(WriteOp::Rename { from: args.arg(), to: args.arg(), only_if_absent: name == "renamenx" })
        }
        "copy" => {
            let (from, to) = (args.arg(), args.arg());
            let mut replace = false;
            while let Some(arg) = args.try_next() {
                match lower(&arg).as_str() {
                    "replace" => replace = true,
                    "db" => {
                        if int_arg(&args.value()?)? != 0 {
                            return Err(Frame::error("ERR DB index is out of range"));
                        }
                    }
                    _ => return Err(syntax_error()),
                }
            }
            write(WriteOp::Copy { from, to, replace })
        }
        "keys" => read(ReadQuery::Keys(args.arg())),
        "scan" => parse_scan(args),
        "randomkey" => read(ReadQuery::RandomKey { seed: random_seed() }),
        "dbsize" => read(ReadQuery::DbSize),
        "flushdb" | "flushall" => {
            match args.try_next().map(|a| lower(&a)).as_deref() {
                None | Some("sync") | Some("async") if args.is_empty() => {}
                _ => return Err(syntax_error()),
            }
            write(WriteOp::FlushAll)
        }
        "expire" | "pexpire" | "expireat" | "pexpireat" => parse_expire(name, args),
        "ttl" | "pttl" => read(ReadQuery::Ttl { key: args.arg(), millis: name == "pttl" }),
        "expiretime" | "pexpiretime" => {
            read(ReadQuery::ExpireTime { key: args.arg(), millis: name == "pexpiretime" })
        }
        "persist" => write(WriteOp::Persist { key: args.arg() }),
        _ => Ok(None),
    }
}

/// A seed for a read that picks at random (RANDOMKEY, HRANDFIELD): carried in the query, so
/// the same query inside EXEC picks the same on every replica.
pub(crate) fn random_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

fn parse_scan(args: &mut Args) -> Result<Option<Command>, Frame> {
    let cursor = cursor_arg(&args.arg())?;
    let (mut pattern, mut kind, mut count) = (None, None, DEFAULT_SCAN_COUNT);
    while let Some(arg) = args.try_next() {
        match lower(&arg).as_str() {
            "match" => pattern = Some(args.value()?).filter(|p| &p[..] != b"*"),
            "type" => kind = Some(args.value()?),
            "count" => {
                let n = int_arg(&args.value()?)?;
                if n < 1 {
                    return Err(syntax_error());
                }
                count = n as usize;
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Some(Command::Read(ReadQuery::Scan { cursor, count, pattern, kind })))
}

fn parse_expire(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let key = args.arg();
    let time = args.arg();
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    while let Some(arg) = args.try_next() {
        match lower(&arg).as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "gt" => gt = true,
            "lt" => lt = true,
            _ => {
                return Err(Frame::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(&arg))))
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(Frame::error("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if gt && lt {
        return Err(Frame::error("ERR GT and LT options at the same time are not compatible"));
    }
    let cond = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCond::IfNoExpiry,
        // GT already requires an expiry (a key without one never expires, nothing is greater).
        (_, _, true, _) => ExpireCond::IfGreater,
        (_, true, _, true) => ExpireCond::IfHasExpiryAndLess,
        (_, _, _, true) => ExpireCond::IfLess,
        (_, true, ..) => ExpireCond::IfHasExpiry,
        _ => ExpireCond::Always,
    };
    let n = int_arg(&time)?;
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    let seconds = name == "expire" || name == "expireat";
    let ms = if seconds { n.checked_mul(1000).ok_or_else(invalid)? } else { n };
    let at = if name.ends_with("at") {
        Expiry::AtMs(ms)
    } else {
        if ms > i64::MAX - now_ms() {
            return Err(invalid());
        }
        Expiry::InMs(ms)
    };
    Ok(Some(Command::Write(WriteOp::Expire { key, at, cond })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn expire_options_combine_like_redis() {
        assert_eq!(
            err(&["expire", "k", "10", "nx", "xx"]),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            err(&["expire", "k", "10", "gt", "lt"]),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(err(&["expire", "k", "10", "Foo"]), "ERR Unsupported option Foo");
        assert_eq!(err(&["expire", "k", "x", "foo"]), "ERR Unsupported option foo");
        assert_eq!(err(&["expire", "k", "99999999999999999"]), "ERR invalid expire time in 'expire' command");
        assert_eq!(
            parse(&["pexpireat", "k", "5", "xx", "lt"]).unwrap(),
            Command::Write(WriteOp::Expire {
                key: "k".into(),
                at: Expiry::AtMs(5),
                cond: ExpireCond::IfHasExpiryAndLess
            })
        );
        assert_eq!(
            parse(&["expire", "k", "-3"]).unwrap(),
            Command::Write(WriteOp::Expire {
                key: "k".into(),
                at: Expiry::InMs(-3000),
                cond: ExpireCond::Always
            })
        );
    }

    #[test]
    fn scan_arguments_are_checked_like_redis() {
        assert_eq!(err(&["scan", "x"]), "ERR invalid cursor");
        assert_eq!(err(&["scan", "0", "count", "0"]), "ERR syntax error");
        assert_eq!(err(&["scan", "0", "count", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["scan", "0", "type"]), "ERR syntax error");
        assert_eq!(
            parse(&["scan", "0", "MATCH", "a*", "COUNT", "5"]).unwrap(),
            Command::Read(ReadQuery::Scan { cursor: 0, count: 5, pattern: Some("a*".into()), kind: None })
        );
    }

    #[test]
    fn flush_takes_only_sync_or_async() {
        assert_eq!(parse(&["flushall", "ASYNC"]).unwrap(), Command::Write(WriteOp::FlushAll));
        assert_eq!(err(&["flushdb", "later"]), "ERR syntax error");
        assert_eq!(err(&["flushdb", "sync", "sync"]), "ERR syntax error");
    }
}
