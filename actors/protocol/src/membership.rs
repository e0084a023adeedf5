//! Cluster membership as the nodes record it: who the members are and where to reach them.
//!
//! raft-rs tracks *which* ids vote (raft-rs's `ConfState`); this module adds *where* they
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

/// The context of a normal log entry whose data is an address record: a [`Member`] telling
/// every node where that member's Redis port listens ([`encode_address`]). The initial
/// members, whom `--cluster` names by peer address only, add their Redis address this way.
/// It is not a configuration change, so it never waits for, or blocks, a membership change.
pub const ADDRESS_CONTEXT: &[u8] = b"member-address";

pub fn encode_address(member: &Member) -> Vec<u8> {
    postcard::to_allocvec(member).expect("a member always serializes")
}

/// The member an entry's `context` and `data` record the address of, if it is an address
/// record ([`ADDRESS_CONTEXT`]) that decodes.
pub fn address_record(context: &[u8], data: &[u8]) -> Option<Member> {
    (context == ADDRESS_CONTEXT).then(|| postcard::from_bytes(data).ok()).flatten()
}

/// The context of a normal log entry recording that the leader refused a membership change a
/// follower forwarded, because another change was pending (raft-rs allows one at a time). Its
/// data is the refused change's [`ConfChangeContext`], so the node that proposed it answers its
/// client `-TRYAGAIN` at once. raft-rs itself would turn the change into an empty entry that
/// names nobody, and the proposer would wait out its timeout.
pub const REFUSED_CHANGE_CONTEXT: &[u8] = b"member-change-refused";

/// The refused change an entry's `context` and `data` record, if it is such a record
/// ([`REFUSED_CHANGE_CONTEXT`]) that decodes.
pub fn refused_change(context: &[u8], data: &[u8]) -> Option<ConfChangeContext> {
    (context == REFUSED_CHANGE_CONTEXT).then(|| ConfChangeContext::decode(data)).flatten()
}

/// Whether a normal entry with this context is a membership record (an address record or a
/// refused change), which RaftNode applies and the keyspace does not.
pub fn is_membership_record(context: &[u8]) -> bool {
    context == ADDRESS_CONTEXT || context == REFUSED_CHANGE_CONTEXT
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_record_is_recognized_by_its_context_only() {
        let member = Member { id: 2, peer_addr: "10.0.0.2:12379".into(), redis_addr: "10.0.0.2:6379".into() };
        let data = encode_address(&member);
        assert_eq!(address_record(ADDRESS_CONTEXT, &data), Some(member));
        assert_eq!(address_record(b"batch", &data), None, "another entry's context");
        assert_eq!(address_record(b"", &data), None);
        assert_eq!(address_record(ADDRESS_CONTEXT, &data[..data.len() - 1]), None, "a truncated record");
    }

    #[test]
    fn a_refused_change_names_its_origin() {
        let change = ConfChangeContext { origin: Some((2, 5, 9)), member: None };
        let data = change.encode();
        assert_eq!(refused_change(REFUSED_CHANGE_CONTEXT, &data), Some(change));
        assert_eq!(refused_change(ADDRESS_CONTEXT, &data), None, "another record");
        assert!(is_membership_record(REFUSED_CHANGE_CONTEXT) && is_membership_record(ADDRESS_CONTEXT));
        assert!(!is_membership_record(b"") && !is_membership_record(b"batch"));
    }
}
