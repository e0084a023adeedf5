//! The sorted set commands.
//!
//! # Formats
//! - `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`,
//!   `ZINCRBY key increment member`, `ZREM key member [member ...]`
//! - `ZCARD key`, `ZSCORE key member`, `ZMSCORE key member [member ...]`, `ZRANK key member`,
//!   `ZREVRANK key member`, `ZCOUNT key min max`, `ZLEXCOUNT key min max`
//! - `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`,
//!   `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]`, `ZREVRANGEBYSCORE key max min ...`,
//!   `ZREVRANGE key start stop [WITHSCORES]`, `ZRANGEBYLEX key min max [LIMIT offset count]`,
//!   `ZREVRANGEBYLEX key max min [LIMIT offset count]`
//! - `ZPOPMIN key [count]`, `ZPOPMAX key [count]`, `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]`,
//!   `ZREMRANGEBYRANK key start stop`,
//!   `ZREMRANGEBYSCORE key min max`, `ZREMRANGEBYLEX key min max`
//! - `ZRANDMEMBER key [count [WITHSCORES]]`, `ZSCAN key cursor [MATCH pattern] [COUNT count]`
//! - `ZUNION numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`,
//!   `ZINTER ...`, `ZDIFF numkeys key [key ...] [WITHSCORES]`, `ZUNIONSTORE destination numkeys
//!   key [key ...] [WEIGHTS ...] [AGGREGATE ...]`, `ZINTERSTORE ...`, `ZDIFFSTORE ...`,
//!   `ZINTERCARD numkeys key [key ...] [LIMIT limit]`,
//!   `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`
//! - blocking: `BZPOPMIN key [key ...] timeout`, `BZPOPMAX ...`,
//!   `BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]`

use bytes::Bytes;

use super::keys::random_seed;
use super::strings::parse_float;
use super::{collection_scan_options, cursor_arg};
use super::{
    int_arg, lower, mpop_args, parse_i64, pop_count, syntax_error, timeout_arg, Args, Command, LexBound,
    ReadQuery, SetOp, WriteOp, ZAddCmp, ZAddCond, ZAggregate, ZRangeBy, ZRangeSpec, ZScoreBound,
};
use crate::resp::Frame;

const NOT_A_FLOAT: &str = "ERR value is not a valid float";

/// Parses the sorted set commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let write = |op| Ok(Some(Command::Write(op)));
    let read = |q| Ok(Some(Command::Read(q)));
    match name {
        "zadd" => parse_zadd(args),
        "zincrby" => {
            let key = args.arg();
            let increment = score(&args.arg())?;
            let pairs = vec![(increment, args.arg())];
            write(WriteOp::ZAdd {
                key,
                pairs,
                cond: ZAddCond::Always,
                cmp: ZAddCmp::Any,
                ch: false,
                incr: true,
            })
        }
        "zrem" => {
            let key = args.arg();
            write(WriteOp::ZRem { key, members: args.rest() })
        }
        "zcard" => read(ReadQuery::ZCard(args.arg())),
        "zscore" => read(ReadQuery::ZScore { key: args.arg(), members: vec![args.arg()], many: false }),
        "zmscore" => {
            let key = args.arg();
            read(ReadQuery::ZScore { key, members: args.rest(), many: true })
        }
        "zrank" | "zrevrank" => {
            read(ReadQuery::ZRank { key: args.arg(), member: args.arg(), rev: name == "zrevrank" })
        }
        "zcount" => {
            let key = args.arg();
            let (min, max) = (score_bound(&args.arg()), score_bound(&args.arg()));
            read(ReadQuery::ZCount { key, by: ZRangeBy::Score(min?, max?) })
        }
        "zlexcount" => {
            let key = args.arg();
            let (min, max) = (lex_bound(&args.arg()), lex_bound(&args.arg()));
            read(ReadQuery::ZCount { key, by: ZRangeBy::Lex(min?, max?) })
        }
        "zrange" | "zrangebyscore" | "zrevrangebyscore" | "zrevrange" | "zrangebylex" | "zrevrangebylex" => {
            let (key, spec) = parse_range(name, args)?;
            read(ReadQuery::ZRange { key, spec })
        }
        "zpopmin" | "zpopmax" => {
            let key = args.arg();
            let count = args.try_next().map(|c| pop_count(&c)).transpose()?;
            if !args.is_empty() {
                return Err(syntax_error());
            }
            write(WriteOp::ZPop { key, max: name == "zpopmax", count })
        }
        "zmpop" => {
            let (keys, min, count) = mpop_args(args, "min", "max")?;
            write(WriteOp::ZMPop { keys, max: !min, count })
        }
        "bzpopmin" | "bzpopmax" => {
            let mut keys = args.rest();
            let timeout = timeout_arg(&keys.pop().expect("arity was checked"))?;
            Ok(Some(Command::Blocking { op: WriteOp::BZPop { keys, max: name == "bzpopmax" }, timeout }))
        }
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore" | "zintercard" => {
            parse_combine(name, args)
        }
        "zrangestore" => {
            let destination = args.arg();
            let (source, spec) = parse_range("zrange", args)?;
            if spec.with_scores {
                return Err(syntax_error());
            }
            write(WriteOp::ZRangeStore { destination, source, spec })
        }
        "bzmpop" => {
            let timeout = timeout_arg(&args.arg())?;
            let (keys, min, count) = mpop_args(args, "min", "max")?;
            Ok(Some(Command::Blocking { op: WriteOp::ZMPop { keys, max: !min, count }, timeout }))
        }
        "zremrangebyrank" => {
            let key = args.arg();
            let start = int_arg(&args.arg())?;
            let by = ZRangeBy::Rank(start, int_arg(&args.arg())?);
            write(WriteOp::ZRemRange { key, by })
        }
        "zremrangebyscore" => {
            let key = args.arg();
            let (min, max) = (score_bound(&args.arg()), score_bound(&args.arg()));
            write(WriteOp::ZRemRange { key, by: ZRangeBy::Score(min?, max?) })
        }
        "zremrangebylex" => {
            let key = args.arg();
            let (min, max) = (lex_bound(&args.arg()), lex_bound(&args.arg()));
            write(WriteOp::ZRemRange { key, by: ZRangeBy::Lex(min?, max?) })
        }
        "zrandmember" => {
            let key = args.arg();
            let count = args.try_next().map(|c| int_arg(&c)).transpose()?;
            let with_scores = match args.try_next() {
                None => false,
                Some(option) if lower(&option) == "withscores" && args.is_empty() => true,
                Some(_) => return Err(syntax_error()),
            };
            if count == Some(i64::MIN) || (with_scores && count.is_some_and(|c| c < -(i64::MAX / 2))) {
                return Err(Frame::error("ERR value is out of range"));
            }
            read(ReadQuery::ZRandMember { key, count, with_scores, seed: random_seed() })
        }
        "zscan" => {
            let (key, cursor) = (args.arg(), cursor_arg(&args.arg())?);
            let scan = collection_scan_options(args, false)?;
            read(ReadQuery::ZScan { key, cursor, scan })
        }
        _ => Ok(None),
    }
}

/// A score argument: a float, `inf`, `+inf` or `-inf`.
fn score(arg: &[u8]) -> Result<f64, Frame> {
    parse_float(arg).ok_or_else(|| Frame::error(NOT_A_FLOAT))
}

/// A score range's end: a score, or `(score` to exclude it.
fn score_bound(arg: &[u8]) -> Result<ZScoreBound, Frame> {
    let (open, text) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    let value = parse_float(text).ok_or_else(|| Frame::error("ERR min or max is not a float"))?;
    Ok(ZScoreBound { value, open })
}

/// A lexicographic range's end: `-`, `+`, `[member` (included) or `(member` (excluded).
fn lex_bound(arg: &Bytes) -> Result<LexBound, Frame> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if arg.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::Included(arg.slice(1..))),
        Some(b'(') => Ok(LexBound::Excluded(arg.slice(1..))),
        _ => Err(Frame::error("ERR min or max not valid string range item")),
    }
}

fn parse_zadd(args: &mut Args) -> Result<Option<Command>, Frame> {
    let key = args.arg();
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, false);
    let mut rest = args.rest().into_iter().peekable();
    while let Some(option) = rest.peek() {
        match lower(option).as_str() {
            "nx" => nx = true,
            "xx" => xx = true,
            "gt" => gt = true,
            "lt" => lt = true,
            "ch" => ch = true,
            "incr" => incr = true,
            _ => break,
        }
        rest.next();
    }
    let rest: Vec<Bytes> = rest.collect();
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(syntax_error());
    }
    if nx && xx {
        return Err(Frame::error("ERR XX and NX options at the same time are not compatible"));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(Frame::error("ERR GT, LT, and/or NX options at the same time are not compatible"));
    }
    if incr && rest.len() > 2 {
        return Err(Frame::error("ERR INCR option supports a single increment-element pair"));
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for pair in rest.chunks(2) {
        pairs.push((score(&pair[0])?, pair[1].clone()));
    }
    let cond = match (nx, xx) {
        (true, _) => ZAddCond::IfAbsent,
        (_, true) => ZAddCond::IfPresent,
        _ => ZAddCond::Always,
    };
    let cmp = match (gt, lt) {
        (true, _) => ZAddCmp::Greater,
        (_, true) => ZAddCmp::Less,
        _ => ZAddCmp::Any,
    };
    Ok(Some(Command::Write(WriteOp::ZAdd { key, pairs, cond, cmp, ch, incr })))
}

/// The range commands: ZRANGE with its options, and the older forms it subsumes.
/// ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD: `[destination] numkeys key [key
/// ...]`, then the options each allows, read as Redis reads them (WEIGHTS only with a weight
/// per key after it). A wrong option is reported after the keys' types
/// ([`ReadQuery::ZCombineError`]).
fn parse_combine(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let store = name.ends_with("store");
    let card = name == "zintercard";
    let op = match &name[1..5] {
        "unio" => SetOp::Union,
        "inte" => SetOp::Inter,
        _ => SetOp::Diff,
    };
    let destination = store.then(|| args.arg());
    let numkeys = int_arg(&args.arg())?;
    if numkeys < 1 {
        return Err(Frame::error(format!("ERR at least 1 input key is needed for '{name}' command")));
    }
    if numkeys as u64 > args.len() as u64 {
        return Err(syntax_error());
    }
    let keys: Vec<Bytes> = (0..numkeys).map(|_| args.arg()).collect();
    let (mut weights, mut aggregate, mut with_scores, mut limit) = (Vec::new(), ZAggregate::Sum, false, 0);
    let mut options = || -> Result<(), Frame> {
        while let Some(option) = args.try_next() {
            let remaining = args.len() + 1;
            match lower(&option).as_str() {
                "weights" if op != SetOp::Diff && !card && remaining > keys.len() => {
                    weights = (0..keys.len())
                        .map(|_| {
                            parse_float(&args.arg())
                                .ok_or_else(|| Frame::error("ERR weight value is not a float"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "aggregate" if op != SetOp::Diff && !card && remaining >= 2 => {
                    aggregate = match lower(&args.arg()).as_str() {
                        "sum" => ZAggregate::Sum,
                        "min" => ZAggregate::Min,
                        "max" => ZAggregate::Max,
                        _ => return Err(syntax_error()),
                    };
                }
                "withscores" if !store && !card => with_scores = true,
                "limit" if card && remaining >= 2 => {
                    let n = parse_i64(&args.arg()).filter(|&n| n >= 0);
                    limit = n.ok_or_else(|| Frame::error("ERR LIMIT can't be negative"))? as u64;
                }
                _ => return Err(syntax_error()),
            }
        }
        Ok(())
    };
    if let Err(error) = options() {
        let Frame::Error(error) = error else { unreachable!("an option's refusal is an error") };
        return Ok(Some(Command::Read(ReadQuery::ZCombineError { keys, error })));
    }
    Ok(Some(match (destination, card) {
        (Some(destination), _) => {
            Command::Write(WriteOp::ZCombineStore { op, destination, keys, weights, aggregate })
        }
        (None, true) => Command::Read(ReadQuery::ZInterCard { keys, limit }),
        (None, false) => Command::Read(ReadQuery::ZCombine { op, keys, weights, aggregate, with_scores }),
    }))
}

fn parse_range(name: &str, args: &mut Args) -> Result<(Bytes, ZRangeSpec), Frame> {
    let key = args.arg();
    let (first, second) = (args.arg(), args.arg());
    let (mut by_score, mut by_lex, mut rev) = (false, false, false);
    match name {
        "zrangebyscore" => by_score = true,
        "zrevrangebyscore" => (by_score, rev) = (true, true),
        "zrevrange" => rev = true,
        "zrangebylex" => by_lex = true,
        "zrevrangebylex" => (by_lex, rev) = (true, true),
        _ => {}
    }
    let (mut limit, mut with_scores) = (None, false);
    while let Some(option) = args.try_next() {
        match lower(&option).as_str() {
            "withscores" => with_scores = true,
            "limit" => {
                let offset = args.try_next().ok_or_else(syntax_error)?;
                let count = args.try_next().ok_or_else(syntax_error)?;
                limit = Some((int_arg(&offset)?, int_arg(&count)?));
            }
            "byscore" if name == "zrange" && !by_lex => by_score = true,
            "bylex" if name == "zrange" && !by_score => by_lex = true,
            "rev" if name == "zrange" => rev = true,
            _ => return Err(syntax_error()),
        }
    }
    if limit.is_some() && !by_score && !by_lex {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && by_lex {
        return Err(Frame::error("ERR syntax error, WITHSCORES not supported in combination with BYLEX"));
    }
    // With REV (and in the REV forms), a score or lex range is given from its top.
    let (low, high) = if rev && (by_score || by_lex) { (second, first) } else { (first, second) };
    let by = if by_score {
        ZRangeBy::Score(score_bound(&low)?, score_bound(&high)?)
    } else if by_lex {
        ZRangeBy::Lex(lex_bound(&low)?, lex_bound(&high)?)
    } else {
        ZRangeBy::Rank(int_arg(&low)?, int_arg(&high)?)
    };
    Ok((key, ZRangeSpec { by, rev, limit, with_scores }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{test_err as err, test_parse as parse};

    #[test]
    fn zadd_options_are_checked_like_redis() {
        assert_eq!(
            err(&["zadd", "z", "nx", "xx", "1", "a"]),
            "ERR XX and NX options at the same time are not compatible"
        );
        assert_eq!(
            err(&["zadd", "z", "gt", "lt", "1", "a"]),
            "ERR GT, LT, and/or NX options at the same time are not compatible"
        );
        assert_eq!(
            err(&["zadd", "z", "nx", "gt", "1", "a"]),
            "ERR GT, LT, and/or NX options at the same time are not compatible"
        );
        assert_eq!(
            err(&["zadd", "z", "incr", "1", "a", "2", "b"]),
            "ERR INCR option supports a single increment-element pair"
        );
        assert_eq!(err(&["zadd", "z", "1", "a", "2"]), "ERR syntax error");
        assert_eq!(err(&["zadd", "z", "x", "a"]), "ERR value is not a valid float");
        assert_eq!(err(&["zadd", "z", "nan", "a"]), "ERR value is not a valid float");
        assert_eq!(
            parse(&["zadd", "z", "GT", "CH", "1.5", "a", "-inf", "b"]).unwrap(),
            Command::Write(WriteOp::ZAdd {
                key: "z".into(),
                pairs: vec![(1.5, "a".into()), (f64::NEG_INFINITY, "b".into())],
                cond: ZAddCond::Always,
                cmp: ZAddCmp::Greater,
                ch: true,
                incr: false
            })
        );
    }

    #[test]
    fn ranges_parse_their_bounds_and_options_like_redis() {
        assert_eq!(
            err(&["zrange", "z", "0", "-1", "limit", "0", "1"]),
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        );
        assert_eq!(
            err(&["zrange", "z", "a", "b", "bylex", "withscores"]),
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
        );
        assert_eq!(err(&["zrange", "z", "0", "-1", "byscore", "bylex"]), "ERR syntax error");
        assert_eq!(err(&["zrange", "z", "(1", "5", "byscore", "limit", "0"]), "ERR syntax error");
        assert_eq!(err(&["zrange", "z", "x", "5"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["zrange", "z", "x", "5", "byscore"]), "ERR min or max is not a float");
        assert_eq!(err(&["zlexcount", "z", "a", "b"]), "ERR min or max not valid string range item");
        assert_eq!(
            parse(&["zrevrangebyscore", "z", "(5", "-inf", "WITHSCORES", "LIMIT", "1", "2"]).unwrap(),
            Command::Read(ReadQuery::ZRange {
                key: "z".into(),
                spec: ZRangeSpec {
                    by: ZRangeBy::Score(
                        ZScoreBound { value: f64::NEG_INFINITY, open: false },
                        ZScoreBound { value: 5.0, open: true }
                    ),
                    rev: true,
                    limit: Some((1, 2)),
                    with_scores: true
                }
            })
        );
        assert_eq!(
            parse(&["zrange", "z", "[b", "-", "BYLEX", "REV"]).unwrap(),
            Command::Read(ReadQuery::ZRange {
                key: "z".into(),
                spec: ZRangeSpec {
                    by: ZRangeBy::Lex(LexBound::Min, LexBound::Included("b".into())),
                    rev: true,
                    limit: None,
                    with_scores: false
                }
            })
        );
    }

    #[test]
    fn pops_and_random_members_check_their_counts() {
        assert_eq!(err(&["zpopmin", "z", "-1"]), "ERR value is out of range, must be positive");
        assert_eq!(err(&["zpopmax", "z", "1", "2"]), "ERR syntax error");
        assert_eq!(err(&["zrandmember", "z", "1", "withscores", "x"]), "ERR syntax error");
        assert_eq!(err(&["zincrby", "z", "x", "a"]), "ERR value is not a valid float");
    }

    #[test]
    fn union_intersection_and_difference_read_their_options_as_redis_does() {
        assert_eq!(
            parse(&["zunion", "2", "a", "b", "WEIGHTS", "2", "0.5", "aggregate", "max", "withscores"])
                .unwrap(),
            Command::Read(ReadQuery::ZCombine {
                op: SetOp::Union,
                keys: vec!["a".into(), "b".into()],
                weights: vec![2.0, 0.5],
                aggregate: ZAggregate::Max,
                with_scores: true
            })
        );
        assert_eq!(
            parse(&["zdiffstore", "d", "1", "a"]).unwrap(),
            Command::Write(WriteOp::ZCombineStore {
                op: SetOp::Diff,
                destination: "d".into(),
                keys: vec!["a".into()],
                weights: vec![],
                aggregate: ZAggregate::Sum
            })
        );
        assert_eq!(
            parse(&["zintercard", "1", "a", "limit", "3"]).unwrap(),
            Command::Read(ReadQuery::ZInterCard { keys: vec!["a".into()], limit: 3 })
        );
        assert_eq!(err(&["zunion", "0", "a"]), "ERR at least 1 input key is needed for 'zunion' command");
        assert_eq!(err(&["zinterstore", "d", "x", "a"]), "ERR value is not an integer or out of range");
        assert_eq!(err(&["zunion", "3", "a", "b"]), "ERR syntax error");
        // A wrong option is answered after the keys' types are checked.
        let refused = |words: &[&str], error: &str| {
            assert_eq!(
                parse(words).unwrap(),
                Command::Read(ReadQuery::ZCombineError {
                    keys: vec!["a".into(), "b".into()],
                    error: error.into()
                }),
                "{words:?}"
            );
        };
        refused(&["zunion", "2", "a", "b", "weights", "1", "x"], "ERR weight value is not a float");
        refused(&["zunion", "2", "a", "b", "weights", "1"], "ERR syntax error");
        refused(&["zinter", "2", "a", "b", "aggregate", "avg"], "ERR syntax error");
        refused(&["zdiff", "2", "a", "b", "weights", "1", "2"], "ERR syntax error");
        refused(&["zunionstore", "d", "2", "a", "b", "withscores"], "ERR syntax error");
        refused(&["zintercard", "2", "a", "b", "limit", "-1"], "ERR LIMIT can't be negative");
        refused(&["zintercard", "2", "a", "b", "limit"], "ERR syntax error");
        assert_eq!(err(&["zrangestore", "d", "a", "0", "1", "withscores"]), "ERR syntax error");
    }

    #[test]
    fn multi_key_pops_name_their_end_count_and_timeout() {
        assert_eq!(
            parse(&["zmpop", "2", "a", "b", "MAX", "count", "5"]).unwrap(),
            Command::Write(WriteOp::ZMPop { keys: vec!["a".into(), "b".into()], max: true, count: 5 })
        );
        assert_eq!(err(&["zmpop", "1", "a", "left"]), "ERR syntax error");
        assert_eq!(err(&["zmpop", "-1", "a", "min"]), "ERR numkeys should be greater than 0");
        assert_eq!(
            parse(&["bzpopmin", "a", "b", "0"]).unwrap(),
            Command::Blocking {
                op: WriteOp::BZPop { keys: vec!["a".into(), "b".into()], max: false },
                timeout: None
            }
        );
        assert_eq!(
            parse(&["bzmpop", "0.25", "1", "a", "min"]).unwrap(),
            Command::Blocking {
                op: WriteOp::ZMPop { keys: vec!["a".into()], max: false, count: 1 },
                timeout: Some(std::time::Duration::from_millis(250))
            }
        );
        assert_eq!(err(&["bzpopmax", "a", "x"]), "ERR timeout is not a float or out of range");
        assert_eq!(err(&["bzmpop", "-2", "1", "a", "min"]), "ERR timeout is negative");
    }
}
