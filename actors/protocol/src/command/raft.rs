//! Cluster administration through the Redis port.
//!
//! # Formats
//! - `RAFT.NODE ADD id peer-addr redis-addr`: the node joins as a learner and is promoted to
//!   voter once it has caught up. `RAFT.NODE REMOVE id`.
//! - `RAFT.TRANSFER-LEADER id`: sent to the leader; answers once `id` leads.
//! - `RAFT.INFO`: this node's Raft state and every member with its addresses, role and (on the
//!   leader) match index and lag.
//! - `ROLE`: Redis's replication view of the same state: the leader answers as a master with
//!   the other members as its replicas, the others as replicas of the leader.

use bytes::Bytes;

use super::{lower, parse_i64, syntax_error, unknown_subcommand, wrong_arity, Args, Command};
use crate::membership::Member;
use crate::resp::Frame;

/// A cluster administration command, executed by RaftNode.
#[derive(Debug, Clone, PartialEq)]
pub enum RaftAdmin {
    AddNode(Member),
    RemoveNode(u64),
    TransferLeader(u64),
    Info,
    /// `ROLE`
    Role,
}

/// Parses the `RAFT.*` commands and `ROLE`; `None` for other families.
pub fn parse(name: &'static str, args: &mut Args) -> Result<Option<Command>, Frame> {
    let admin = match name {
        "raft.node" => {
            let sub = lower(&args.arg());
            match (sub.as_str(), args.len()) {
                ("add", 3) => {
                    let id = node_id(&args.arg())?;
                    let peer_addr = address(&args.arg())?;
                    let redis_addr = address(&args.arg())?;
                    RaftAdmin::AddNode(Member { id, peer_addr, redis_addr, store_id: 0 })
                }
                ("remove", 1) => RaftAdmin::RemoveNode(node_id(&args.arg())?),
                ("add" | "remove", _) => return Err(wrong_arity(&format!("raft.node|{sub}"))),
                _ => return Err(unknown_subcommand(&Bytes::from(sub), "RAFT.NODE")),
            }
        }
        "raft.transfer-leader" => RaftAdmin::TransferLeader(node_id(&args.arg())?),
        "raft.info" => RaftAdmin::Info,
        "role" => RaftAdmin::Role,
        _ => return Ok(None),
    };
    Ok(Some(Command::Raft(admin)))
}

fn node_id(arg: &[u8]) -> Result<u64, Frame> {
    match parse_i64(arg) {
        Some(id) if id > 0 => Ok(id as u64),
        _ => Err(Frame::error("ERR node id must be a positive integer")),
    }
}

fn address(arg: &[u8]) -> Result<String, Frame> {
    let text = std::str::from_utf8(arg).map_err(|_| syntax_error())?;
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(text.to_string()),
        _ => Err(Frame::error(format!("ERR invalid address '{text}', expected host:port"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_parse as parse;

    #[test]
    fn raft_node_add_takes_an_id_and_two_addresses() {
        assert_eq!(
            parse(&["RAFT.NODE", "ADD", "4", "127.0.0.1:42379", "127.0.0.1:63794"]).unwrap(),
            Command::Raft(RaftAdmin::AddNode(Member {
                id: 4,
                peer_addr: "127.0.0.1:42379".into(),
                redis_addr: "127.0.0.1:63794".into(),
                store_id: 0,
            }))
        );
        assert!(parse(&["raft.node", "add", "0", "a:1", "b:2"]).is_err());
        assert!(parse(&["raft.node", "add", "4", "nope", "b:2"]).is_err());
        assert_eq!(
            parse(&["raft.node", "add", "4"]).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'raft.node|add' command".into())
        );
    }

    #[test]
    fn raft_node_remove_and_transfer_leader() {
        assert_eq!(parse(&["raft.node", "remove", "2"]).unwrap(), Command::Raft(RaftAdmin::RemoveNode(2)));
        assert_eq!(
            parse(&["RAFT.TRANSFER-LEADER", "3"]).unwrap(),
            Command::Raft(RaftAdmin::TransferLeader(3))
        );
        assert_eq!(parse(&["raft.info"]).unwrap(), Command::Raft(RaftAdmin::Info));
        assert!(parse(&["raft.node", "bogus"]).is_err());
    }
}
