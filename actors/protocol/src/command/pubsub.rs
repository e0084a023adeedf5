//! The pub/sub commands.
//!
//! # Formats
//! - `SUBSCRIBE channel [channel ...]`, `UNSUBSCRIBE [channel ...]`
//! - `PSUBSCRIBE pattern [pattern ...]`, `PUNSUBSCRIBE [pattern ...]`
//! - `PUBLISH channel message`
//! - `PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | HELP`

use bytes::Bytes;

use super::{lower, unknown_subcommand, wrong_arity, Args, Command, LocalCommand, WriteOp};
use crate::resp::Frame;

/// `PUBSUB ...`: what this node's clients are subscribed to, answered by RedisStore.
#[derive(Debug, Clone, PartialEq)]
pub enum PubSubQuery {
    /// `PUBSUB CHANNELS [pattern]`: the channels with at least one subscriber.
    Channels(Option<Bytes>),
    /// `PUBSUB NUMSUB [channel ...]`: each channel and its number of subscribers.
    NumSub(Vec<Bytes>),
    /// `PUBSUB NUMPAT`: how many patterns are subscribed to.
    NumPat,
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "HELP",
    "    Prints this help.",
];

/// Parses the pub/sub commands; `None` for commands of other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let subscription = |subscribe: bool, pattern: bool, names: Vec<Bytes>| {
        Command::Local(match subscribe {
            true => LocalCommand::Subscribe { names, pattern },
            false => LocalCommand::Unsubscribe { names, pattern },
        })
    };
    Ok(Some(match name {
        "subscribe" => subscription(true, false, args.rest()),
        "psubscribe" => subscription(true, true, args.rest()),
        "unsubscribe" => subscription(false, false, args.rest()),
        "punsubscribe" => subscription(false, true, args.rest()),
        "publish" => {
            let channel = args.arg();
            Command::Write(WriteOp::Publish { channel, message: args.arg(), receivers: 0 })
        }
        "pubsub" => {
            let mut rest = args.rest().into_iter();
            let sub = rest.next().expect("arity checked");
            let rest: Vec<Bytes> = rest.collect();
            Command::PubSub(match (lower(&sub).as_str(), rest.len()) {
                ("channels", 0 | 1) => PubSubQuery::Channels(rest.into_iter().next()),
                ("numsub", _) => PubSubQuery::NumSub(rest),
                ("numpat", 0) => PubSubQuery::NumPat,
                ("numpat", _) => return Err(wrong_arity("pubsub|numpat")),
                ("help", 0) => {
                    return Ok(Some(Command::Local(LocalCommand::Help(HELP))));
                }
                ("help", _) => return Err(wrong_arity("pubsub|help")),
                ("channels", _) => {
                    let sub = String::from_utf8_lossy(&sub).replace(['\r', '\n'], " ");
                    return Err(Frame::error(format!(
                        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try PUBSUB HELP."
                    )));
                }
                _ => return Err(unknown_subcommand(&sub, "PUBSUB")),
            })
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_args;

    fn parse(parts: &[&str]) -> Result<Command, Frame> {
        Command::parse(test_args(parts))
    }

    #[test]
    fn pubsub_commands_parse_as_redis_reads_them() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        assert_eq!(
            parse(&["SUBSCRIBE", "a", "b"]).unwrap(),
            Command::Local(LocalCommand::Subscribe { names: vec![b("a"), b("b")], pattern: false })
        );
        assert_eq!(
            parse(&["punsubscribe"]).unwrap(),
            Command::Local(LocalCommand::Unsubscribe { names: vec![], pattern: true })
        );
        assert_eq!(
            parse(&["PUBLISH", "c", "m"]).unwrap(),
            Command::Write(WriteOp::Publish { channel: b("c"), message: b("m"), receivers: 0 })
        );
        assert_eq!(parse(&["PUBSUB", "channels"]).unwrap(), Command::PubSub(PubSubQuery::Channels(None)));
        assert_eq!(parse(&["PUBSUB", "NUMSUB"]).unwrap(), Command::PubSub(PubSubQuery::NumSub(vec![])));
        assert_eq!(parse(&["SUBSCRIBE"]).unwrap_err(), wrong_arity("subscribe"));
        assert_eq!(parse(&["PUBSUB", "NUMPAT", "x"]).unwrap_err(), wrong_arity("pubsub|numpat"));
        assert_eq!(
            parse(&["PUBSUB", "CHANNELS", "a", "b"]).unwrap_err(),
            Frame::error(
                "ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP."
            )
        );
        assert_eq!(
            parse(&["PUBSUB", "FOO"]).unwrap_err(),
            Frame::error("ERR unknown subcommand 'FOO'. Try PUBSUB HELP.")
        );
    }
}
