//! The set commands.
//!
//! # Formats
//! - `SADD key member [member ...]`, `SREM key member [member ...]`, `SMOVE source destination member`
//! - `SPOP key [count]`, `SRANDMEMBER key [count]`
//! - `SCARD key`, `SMEMBERS key`, `SISMEMBER key member`, `SMISMEMBER key member [member ...]`
//! - `SINTER key [key ...]`, `SUNION ...`, `SDIFF ...`, `SINTERSTORE destination key [key ...]`,
//!   `SUNIONSTORE ...`, `SDIFFSTORE ...`, `SINTERCARD numkeys key [key ...] [LIMIT limit]`
//! - `SSCAN key cursor [MATCH pattern] [COUNT count]`

use super::keys::random_seed;
use super::{collection_scan_options, cursor_arg};
use super::{int_arg, lower, parse_i64, pop_count, syntax_error, Args, Command, ReadQuery, SetOp, WriteOp};
use crate::resp::Frame;

/// Parses the set commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "sadd" | "srem" => {
            let key = args.arg();
            let members = args.rest();
            write(if name == "sadd" {
                WriteOp::SAdd { key, members }
            } else {
                WriteOp::SRem { key, members }
            })
        }
        "smove" => write(WriteOp::SMove { from: args.arg(), to: args.arg(), member: args.arg() }),
        "spop" => {
            let key = args.arg();
            let count = args.try_next().map(|c| pop_count(&c)).transpose()?;
            if !args.is_empty() {
                return Err(syntax_error());
            }
            write(WriteOp::SPop { key, count, seed: random_seed() })
        }
        "srandmember" => {
            let key = args.arg();
            let count = args.try_next().map(|c| int_arg(&c)).transpose()?;
            if !args.is_empty() {
                return Err(syntax_error());
            }
            if count == Some(i64::MIN) {
                return Err(Frame::error(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
            read(ReadQuery::SRandMember { key, count, seed: random_seed() })
        }
        "scard" => read(ReadQuery::SCard(args.arg())),
        "smembers" => read(ReadQuery::SCombine { op: SetOp::Union, keys: vec![args.arg()] }),
        "sismember" => read(ReadQuery::SIsMember { key: args.arg(), members: vec![args.arg()], many: false }),
        "smismember" => {
            let key = args.arg();
            read(ReadQuery::SIsMember { key, members: args.rest(), many: true })
        }
        "sinter" | "sunion" | "sdiff" => read(ReadQuery::SCombine { op: set_op(name), keys: args.rest() }),
        "sinterstore" | "sunionstore" | "sdiffstore" => {
            let destination = args.arg();
            write(WriteOp::SCombineStore { op: set_op(name), destination, keys: args.rest() })
        }
        "sintercard" => parse_sintercard(args),
        "sscan" => parse_sscan(args),
        _ => Ok(None),
    }
}

fn set_op(name: &str) -> SetOp {
    match &name[..5] {
        "sinte" => SetOp::Inter,
        "sunio" => SetOp::Union,
        _ => SetOp::Diff,
    }
}

fn parse_sintercard(args: &mut Args) -> Result<Option<Command>, Frame> {
    let Some(numkeys) = parse_i64(&args.arg()).filter(|&n| n > 0) else {
        return Err(Frame::error("ERR numkeys should be greater than 0"));
    };
    if numkeys as u64 > args.len() as u64 {
        return Err(Frame::error("ERR Number of keys can't be greater than number of args"));
    }
    let keys = (0..numkeys).map(|_| args.arg()).collect();
    let mut limit = 0;
    while let Some(option) = args.try_next() {
        match lower(&option).as_str() {
            "limit" => {
                let n = parse_i64(&args.value()?).filter(|&n| n >= 0);
                limit = n.ok_or_else(|| Frame::error("ERR LIMIT can't be negative"))? as u64;
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok(Some(Command::Read(ReadQuery::SInterCard { keys, limit })))
}

fn parse_sscan(args: &mut Args) -> Result<Option<Command>, Frame> {
    let (key, cursor) = (args.arg(), cursor_arg(&args.arg())?);
    let scan = collection_scan_options(args, false)?;
    Ok(Some(Command::Read(ReadQuery::SScan { key, cursor, scan })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn counts_are_checked_like_redis() {
        assert_eq!(err(&["spop", "s", "-1"]), "ERR value is out of range, must be positive");
        assert_eq!(err(&["spop", "s", "x"]), "ERR value is out of range, must be positive");
        assert_eq!(err(&["spop", "s", "1", "2"]), "ERR syntax error");
        assert!(matches!(
            parse(&["spop", "s", "0"]).unwrap(),
            Command::Write(WriteOp::SPop { count: Some(0), .. })
        ));
        assert_eq!(err(&["srandmember", "s", "x"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["srandmember", "s", "1", "2"]), "ERR syntax error");
        assert!(err(&["srandmember", "s", "-9223372036854775808"]).starts_with("ERR value is out of range, "));
    }

    #[test]
    fn sintercard_checks_its_key_count_and_limit() {
        assert_eq!(err(&["sintercard", "0", "s"]), "ERR numkeys should be greater than 0");
        assert_eq!(err(&["sintercard", "x", "s"]), "ERR numkeys should be greater than 0");
        assert_eq!(err(&["sintercard", "3", "s"]), "ERR Number of keys can't be greater than number of args");
        assert_eq!(err(&["sintercard", "1", "s", "limit", "-1"]), "ERR LIMIT can't be negative");
        assert_eq!(err(&["sintercard", "1", "s", "limit", "x"]), "ERR LIMIT can't be negative");
        assert_eq!(err(&["sintercard", "1", "s", "foo"]), "ERR syntax error");
        assert_eq!(
            parse(&["sintercard", "2", "a", "b", "LIMIT", "1", "limit", "2"]).unwrap(),
            Command::Read(ReadQuery::SInterCard { keys: vec!["a".into(), "b".into()], limit: 2 })
        );
    }

    #[test]
    fn the_combining_commands_name_their_operation() {
        assert_eq!(
            parse(&["SDIFFSTORE", "d", "a", "b"]).unwrap(),
            Command::Write(WriteOp::SCombineStore {
                op: SetOp::Diff,
                destination: "d".into(),
                keys: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            parse(&["sinter", "a"]).unwrap(),
            Command::Read(ReadQuery::SCombine { op: SetOp::Inter, keys: vec!["a".into()] })
        );
        assert_eq!(err(&["sscan", "s", "x"]), "ERR invalid cursor");
        assert_eq!(err(&["sscan", "s", "0", "count", "0"]), "ERR syntax error");
        assert_eq!(err(&["sscan", "s", "0", "type", "x"]), "ERR syntax error");
    }
}
