//! Cluster membership as the nodes record it: who the members are and where to reach them.
//!
//! raft-rs tracks *which* ids vote ([`raft::eraftpb::ConfState`]); this module adds *where* they
//! are. Every configuration change carries a [`ConfChangeContext`] naming the member it adds,
//! so each node updates its address book when it applies the change, and a snapshot carries the
//! whole book, so a node that catches up by snapshot learns it too.

use serde::{Deserialize, Serialize};

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// Where its PeerTransport listens.
    pub peer_addr: String,
    /// Where its Redis port listens (empty when unknown, e.g. for the initial members).
    pub redis_addr: String,
}

/// The payload of a configuration change entry's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfChangeContext {
    /// The node and request that proposed the change, to answer its client once applied.
    pub origin: Option<(u64, u64, u64)>,
    /// The member being added (its addresses), if any.
    pub member: Option<Member>,
}

impl ConfChangeContext {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a context always serializes")
    }

    pub fn decode(data: &[u8]) -> Option<Self> {
        postcard::from_bytes(data).ok()
    }
}

pub fn encode_members(members: &[Member]) -> Vec<u8> {
    postcard::to_allocvec(members).expect("members always serialize")
}

pub fn decode_members(data: &[u8]) -> Result<Vec<Member>, crate::DecodeError> {
    postcard::from_bytes(data).map_err(|e| crate::DecodeError(format!("member list: {e}")))
}

/// Adds or replaces `member` in `members`, keeping them ordered by id.
pub fn upsert(members: &mut Vec<Member>, member: Member) {
    members.retain(|m| m.id != member.id);
    members.push(member);
    members.sort_by_key(|m| m.id);
}
