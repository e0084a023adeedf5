//! The list commands.
//!
//! # Formats
//! - `LPUSH key element [element ...]`, `RPUSH ...`, `LPUSHX ...`, `RPUSHX ...`
//! - `LPOP key [count]`, `RPOP key [count]`, `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]`
//! - `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`, `RPOPLPUSH source destination`
//! - blocking: `BLPOP key [key ...] timeout`, `BRPOP ...`,
//!   `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`,
//!   `BRPOPLPUSH source destination timeout`,
//!   `BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]`
//! - `LLEN key`, `LINDEX key index`, `LRANGE key start stop`,
//!   `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
//! - `LSET key index element`, `LINSERT key BEFORE|AFTER pivot element`,
//!   `LREM key count element`, `LTRIM key start stop`

use bytes::Bytes;

use super::{
    int_arg, lower, mpop_args, parse_i64, pop_count, syntax_error, timeout_arg, wrong_arity, Args, Command,
    ReadQuery, ValueType, WriteOp,
};
use crate::resp::Frame;

/// Parses the list commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    let blocking = |op, timeout| Ok(Some(Command::Blocking { op, timeout }));
    match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => {
            let key = args.arg();
            let (left, only_if_exists) = (name.starts_with('l'), name.ends_with('x'));
            write(WriteOp::Push { key, elements: args.rest(), left, only_if_exists })
        }
        "lpop" | "rpop" => {
            let key = args.arg();
            let count = args.try_next().map(|c| pop_count(&c)).transpose()?;
            if !args.is_empty() {
                return Err(wrong_arity(name));
            }
            write(WriteOp::Pop { key, left: name == "lpop", count })
        }
        "lmpop" => {
            let (keys, left, count) = mpop_args(args, "left", "right")?;
            write(WriteOp::LMPop { keys, left, count })
        }
        "blpop" | "brpop" => {
            let mut keys = args.rest();
            let timeout = timeout_arg(&keys.pop().expect("arity was checked"))?;
            blocking(WriteOp::BPop { keys, left: name == "blpop" }, timeout)
        }
        "blmove" => {
            let (from, to) = (args.arg(), args.arg());
            let from_left = side(&args.arg())?;
            let to_left = side(&args.arg())?;
            let timeout = timeout_arg(&args.arg())?;
            blocking(WriteOp::LMove { from, to, from_left, to_left }, timeout)
        }
        "brpoplpush" => {
            let (from, to) = (args.arg(), args.arg());
            let timeout = timeout_arg(&args.arg())?;
            blocking(WriteOp::LMove { from, to, from_left: false, to_left: true }, timeout)
        }
        "blmpop" => {
            let timeout = timeout_arg(&args.arg())?;
            let (keys, left, count) = mpop_args(args, "left", "right")?;
            blocking(WriteOp::LMPop { keys, left, count }, timeout)
        }
        "lmove" => {
            let (from, to) = (args.arg(), args.arg());
            let from_left = side(&args.arg())?;
            let to_left = side(&args.arg())?;
            write(WriteOp::LMove { from, to, from_left, to_left })
        }
        "rpoplpush" => {
            write(WriteOp::LMove { from: args.arg(), to: args.arg(), from_left: false, to_left: true })
        }
        "llen" => read(ReadQuery::LLen(args.arg())),
        "lindex" => {
            let key = args.arg();
            match parse_i64(&args.arg()) {
                Some(index) => read(ReadQuery::LIndex { key, index }),
                // Redis looks the key up first: a missing key answers null.
                None => Ok(Some(not_an_index(key, None))),
            }
        }
        "lrange" => {
            let key = args.arg();
            let start = int_arg(&args.arg())?;
            read(ReadQuery::LRange { key, start, stop: int_arg(&args.arg())? })
        }
        "lpos" => parse_lpos(args),
        "lset" => {
            let key = args.arg();
            match parse_i64(&args.arg()) {
                Some(index) => write(WriteOp::LSet { key, index, element: args.arg() }),
                None => Ok(Some(not_an_index(key, Some("ERR no such key".into())))),
            }
        }
        "linsert" => {
            let key = args.arg();
            let before = match lower(&args.arg()).as_str() {
                "before" => true,
                "after" => false,
                _ => return Err(syntax_error()),
            };
            write(WriteOp::LInsert { key, before, pivot: args.arg(), element: args.arg() })
        }
        "lrem" => {
            let key = args.arg();
            let count = int_arg(&args.arg())?;
            write(WriteOp::LRem { key, count, element: args.arg() })
        }
        "ltrim" => {
            let key = args.arg();
            let start = int_arg(&args.arg())?;
            write(WriteOp::LTrim { key, start, stop: int_arg(&args.arg())? })
        }
        _ => Ok(None),
    }
}

/// LINDEX's and LSET's error for an index that is not a number, answered after the key's type.
fn not_an_index(key: Bytes, if_missing: Option<String>) -> Command {
    Command::Read(ReadQuery::ArgumentError {
        key,
        expects: ValueType::List,
        error: super::NOT_INTEGER.into(),
        if_missing,
    })
}

/// `LEFT` (true) or `RIGHT`.
fn side(arg: &[u8]) -> Result<bool, Frame> {
    match lower(arg).as_str() {
        "left" => Ok(true),
        "right" => Ok(false),
        _ => Err(syntax_error()),
    }
}

fn parse_lpos(args: &mut Args) -> Result<Option<Command>, Frame> {
    let (key, element) = (args.arg(), args.arg());
    let (mut rank, mut count, mut maxlen) = (1, None, 0);
    while let Some(option) = args.try_next() {
        match lower(&option).as_str() {
            "rank" => {
                rank = int_arg(&args.value()?)?;
                if rank == 0 {
                    return Err(Frame::error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    ));
                }
            }
            "count" => {
                let n = int_arg(&args.value()?)?;
                if n < 0 {
                    return Err(Frame::error("ERR COUNT can't be negative"));
                }
                count = Some(n as u64);
            }
            "maxlen" => {
                let n = int_arg(&args.value()?)?;
                if n < 0 {
                    return Err(Frame::error("ERR MAXLEN can't be negative"));
                }
                maxlen = n as u64;
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Some(Command::Read(ReadQuery::LPos { key, element, rank, count, maxlen })))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn pushes_and_pops_name_their_end() {
        assert_eq!(
            parse(&["RPUSHX", "l", "a", "b"]).unwrap(),
            Command::Write(WriteOp::Push {
                key: "l".into(),
                elements: vec!["a".into(), "b".into()],
                left: false,
                only_if_exists: true
            })
        );
        assert_eq!(
            parse(&["lpop", "l", "0"]).unwrap(),
            Command::Write(WriteOp::Pop { key: "l".into(), left: true, count: Some(0) })
        );
        assert_eq!(err(&["lpop", "l", "-1"]), "ERR value is out of range, must be positive");
        assert_eq!(err(&["rpop", "l", "x"]), "ERR value is out of range, must be positive");
        assert_eq!(err(&["lpop", "l", "1", "2"]), "ERR wrong number of arguments for 'lpop' command");
        assert_eq!(
            parse(&["rpoplpush", "a", "b"]).unwrap(),
            Command::Write(WriteOp::LMove {
                from: "a".into(),
                to: "b".into(),
                from_left: false,
                to_left: true
            })
        );
        assert_eq!(err(&["lmove", "a", "b", "left", "middle"]), "ERR syntax error");
    }

    #[test]
    fn lmpop_checks_its_key_count_direction_and_count() {
        assert_eq!(
            parse(&["lmpop", "2", "a", "b", "RIGHT", "COUNT", "3"]).unwrap(),
            Command::Write(WriteOp::LMPop { keys: vec!["a".into(), "b".into()], left: false, count: 3 })
        );
        assert_eq!(err(&["lmpop", "0", "a", "left"]), "ERR numkeys should be greater than 0");
        assert_eq!(err(&["lmpop", "x", "a", "left"]), "ERR numkeys should be greater than 0");
        assert_eq!(err(&["lmpop", "5", "a", "left"]), "ERR syntax error");
        assert_eq!(err(&["lmpop", "2", "a", "left"]), "ERR syntax error");
        assert_eq!(err(&["lmpop", "1", "a", "left", "count", "0"]), "ERR count should be greater than 0");
        assert_eq!(err(&["lmpop", "1", "a", "left", "count", "1", "count", "2"]), "ERR syntax error");
    }

    #[test]
    fn blocking_pops_carry_their_non_blocking_form_and_timeout() {
        let blocking = |op, ms: Option<u64>| Command::Blocking { op, timeout: ms.map(Duration::from_millis) };
        assert_eq!(
            parse(&["BRPOP", "a", "b", "1.5"]).unwrap(),
            blocking(WriteOp::BPop { keys: vec!["a".into(), "b".into()], left: false }, Some(1500))
        );
        assert_eq!(
            parse(&["blmove", "a", "b", "RIGHT", "left", "0"]).unwrap(),
            blocking(
                WriteOp::LMove { from: "a".into(), to: "b".into(), from_left: false, to_left: true },
                None
            )
        );
        assert_eq!(
            parse(&["brpoplpush", "a", "b", "0.0001"]).unwrap(),
            blocking(
                WriteOp::LMove { from: "a".into(), to: "b".into(), from_left: false, to_left: true },
                None
            )
        );
        assert_eq!(
            parse(&["blmpop", "2", "1", "a", "left", "count", "2"]).unwrap(),
            blocking(WriteOp::LMPop { keys: vec!["a".into()], left: true, count: 2 }, Some(2000))
        );
        // Redis's order of checks: BLMOVE's ends before its timeout, BLMPOP's timeout first.
        assert_eq!(err(&["blmove", "a", "b", "up", "left", "x"]), "ERR syntax error");
        assert_eq!(
            err(&["blmove", "a", "b", "left", "left", "x"]),
            "ERR timeout is not a float or out of range"
        );
        assert_eq!(err(&["blmpop", "x", "0", "a", "up"]), "ERR timeout is not a float or out of range");
        assert_eq!(err(&["blmpop", "0", "0", "a", "left"]), "ERR numkeys should be greater than 0");
        assert_eq!(err(&["blpop", "a", "-1"]), "ERR timeout is negative");
        assert_eq!(err(&["blpop", "a", "nan"]), "ERR timeout is not a float or out of range");
        // Beyond Redis's milliseconds: negative once converted, as Redis reports it.
        assert_eq!(err(&["blpop", "a", "1e20"]), "ERR timeout is negative");
        assert_eq!(err(&["blpop", "a", "inf"]), "ERR timeout is negative");
        assert_eq!(err(&["blpop", "a"]), "ERR wrong number of arguments for 'blpop' command");
    }

    #[test]
    fn lpos_options_are_checked_like_redis() {
        assert!(err(&["lpos", "l", "a", "rank", "0"]).starts_with("ERR RANK can't be zero"));
        assert_eq!(err(&["lpos", "l", "a", "count", "-1"]), "ERR COUNT can't be negative");
        assert_eq!(err(&["lpos", "l", "a", "maxlen", "-1"]), "ERR MAXLEN can't be negative");
        assert_eq!(err(&["lpos", "l", "a", "foo"]), "ERR syntax error");
        assert_eq!(
            parse(&["lpos", "l", "a", "RANK", "-2", "COUNT", "0", "MAXLEN", "9"]).unwrap(),
            Command::Read(ReadQuery::LPos {
                key: "l".into(),
                element: "a".into(),
                rank: -2,
                count: Some(0),
                maxlen: 9
            })
        );
    }

    #[test]
    fn a_bad_index_is_answered_after_the_type_check() {
        assert_eq!(
            parse(&["lindex", "l", "x"]).unwrap(),
            Command::Read(ReadQuery::ArgumentError {
                key: "l".into(),
                expects: ValueType::List,
                error: super::super::NOT_INTEGER.into(),
                if_missing: None
            })
        );
        assert!(matches!(
            parse(&["lset", "l", "x", "v"]).unwrap(),
            Command::Read(ReadQuery::ArgumentError { if_missing: Some(e), .. }) if e == "ERR no such key"
        ));
        assert_eq!(err(&["lrange", "l", "x", "1"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["linsert", "l", "middle", "a", "b"]), "ERR syntax error");
    }
}
