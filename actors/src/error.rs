//! The one error type of the actor library. Each variant knows the Redis error reply a client
//! sees for it, so a failure deep in Raft or RocksDB reaches the client in Redis's own words.

use crate::resp::Frame;

/// Everything that can go wrong between a client's command and its reply.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No Raft leader is known to this node, so nothing can be proposed or read linearizably.
    /// The command was not applied.
    #[error("CLUSTERDOWN No raft leader")]
    NoLeader,
    /// A write was proposed but neither committed nor refused within the bounded wait: it may or
    /// may not be applied later.
    #[error("TIMEOUT write not confirmed within {0} ms; it may or may not have been applied")]
    WriteTimeout(u64),
    /// A write was proposed in a term that ended before it was committed: an entry of a later
    /// term is committed and the write's is not before it, so it almost certainly never will
    /// be (the proposal was lost with the old leader). Almost: a deposed leader may still have
    /// forwarded it to the new one, so the client is told its outcome is unknown, at once
    /// instead of after the write timeout.
    #[error("TIMEOUT the raft leader changed before this write was committed; it may or may not have been applied")]
    WriteLost,
    /// A membership change was proposed in a term that ended before it was applied: lost with
    /// the old leader, almost certainly, as for [`Error::WriteLost`].
    #[error("TIMEOUT the raft leader changed before this membership change was committed; it may or may not have been applied")]
    ChangeLost,
    /// A linearizable read could not be confirmed by a quorum within the bounded wait.
    #[error("TIMEOUT read not confirmed by a raft quorum within {0} ms")]
    ReadTimeout(u64),
    /// raft-rs dropped the proposal although a leader is known (for example a leadership
    /// transfer is under way). Nothing was applied; the client may retry.
    #[error("TRYAGAIN raft dropped the proposal, retry")]
    ProposalDropped,
    /// A membership change was asked of the leader while an earlier one is not applied yet
    /// (raft-rs takes one at a time, and a new leader counts its first entry as one). Nothing
    /// was changed; the client may retry.
    #[error("TRYAGAIN another membership change is in progress, retry")]
    ChangeInProgress,
    /// RocksDB failed. The node stops after reporting this: it never continues on a broken log.
    #[error("ERR storage failure: {0}")]
    Storage(String),
    /// A log entry could not be decoded: a corrupted or incompatible log.
    #[error("ERR corrupt raft log entry: {0}")]
    Corrupt(String),
    /// A request that cannot be carried out as asked (membership and leadership commands).
    #[error("ERR {0}")]
    Invalid(String),
    /// The actor that should answer has stopped (the node is shutting down).
    #[error("ERR node is shutting down")]
    Stopped,
}

impl Error {
    /// The error reply for a client.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(self.to_string())
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Storage(e.into_string())
    }
}

/// A Raft entry or a member list that does not decode: the log is corrupt or incompatible.
impl From<protocol::DecodeError> for Error {
    fn from(e: protocol::DecodeError) -> Self {
        Error::Corrupt(e.0)
    }
}

impl From<actix::MailboxError> for Error {
    fn from(_: actix::MailboxError) -> Self {
        Error::Stopped
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
