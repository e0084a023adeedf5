//! Typed commands parsed from a client's argument vector.
//!
//! Parsing happens once, in the Session, into one of the families that decide where a command
//! goes: [`Command::Local`] is answered by the Session itself (connection state, server
//! introspection), [`Command::Transaction`] drives the Session's MULTI/WATCH state,
//! [`Command::Read`] needs a linearizable read of the keyspace, and [`Command::Write`] becomes
//! a Raft proposal whose [`WriteOp`] is what the log stores and every replica applies. Arity and
//! syntax errors use Redis's exact wording, because clients and their test suites match on it.
//!
//! One file per command family: [`strings`] (SET, GET, INCR ...), [`bitmaps`] (SETBIT,
//! BITCOUNT ...), [`hyperloglog`] (PFADD ...), [`hashes`] (HSET, HGET ...),
//! [`lists`] (LPUSH, LRANGE ...), [`sets`] (SADD, SINTER ...), [`zsets`] (ZADD, ZRANGE ...), [`keys`] (DEL, RENAME, SCAN, the expiry commands ...), [`server`] (connection, server and transaction commands), and
//! [`table`], the command table with the documentation `COMMAND DOCS` serves.

pub mod bitmaps;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod lists;
pub mod pubsub;
pub mod raft;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod sort;
pub mod strings;
pub mod table;
pub mod zsets;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::resp::Frame;
use crate::DecodeError;
pub use scripting::{Eval, Script};
pub use table::{lookup, CommandSpec, COMMAND_TABLE};

/// What one client request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answered by the Session without touching the keyspace.
    Local(LocalCommand),
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH: the Session's transaction state.
    Transaction(TxCommand),
    /// A read of the replicated keyspace (linearizable, through ReadIndex).
    Read(ReadQuery),
    /// A mutation, replicated through the Raft log.
    Write(WriteOp),
    /// `INFO [section ...]`: server, clients, stats, keyspace and raft state.
    Info(Vec<String>),
    /// `CLIENT LIST`: every connection of this node.
    ClientList,
    /// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]`: ends a blocking command's wait, as if it
    /// timed out or (`error`) with an error.
    ClientUnblock { id: i64, error: bool },
    /// `CLIENT KILL addr:port` (`old_form`), or `CLIENT KILL <filter> <value> ...`.
    ClientKill(KillFilter),
    /// `RAFT.*`: cluster membership and leadership, executed by RaftNode.
    Raft(raft::RaftAdmin),
    /// A blocking pop (`BLPOP`, `BRPOP`, `BLMOVE`, `BRPOPLPUSH`, `BLMPOP`, `BZPOPMIN`,
    /// `BZPOPMAX`, `BZMPOP`): `op` is its non-blocking form, a write that pops what is there
    /// (see [`WriteOp::blocking_keys`]). Outside MULTI, while `op` finds nothing to pop the
    /// client waits for a write to one of its keys and tries again, for at most `timeout`
    /// (`None`: for ever); inside MULTI, `op` runs once, as in Redis.
    Blocking { op: WriteOp, timeout: Option<std::time::Duration> },
    /// `PUBSUB CHANNELS | NUMSUB | NUMPAT`: this node's subscriptions.
    PubSub(pubsub::PubSubQuery),
    /// `SCRIPT EXISTS sha1 [sha1 ...]`: which of these scripts this node's cache holds.
    ScriptExists(Vec<Bytes>),
}

/// Which connections `CLIENT KILL` closes: those matching every filter given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// `TYPE` or `USER` names no connection raft-kv has (a replica, a pub/sub client, another
    /// user): nothing matches.
    pub none: bool,
    /// `SKIPME yes` (the default of the filter form): not the connection that asks.
    pub skip_me: bool,
    /// The connection that asks, filled in by its Session.
    pub caller: u64,
    /// `CLIENT KILL addr:port`: replies OK or an error rather than a count.
    pub old_form: bool,
}

/// Commands about the connection or the server, answered by the Session.
#[derive(Debug, Clone, PartialEq)]
pub enum LocalCommand {
    /// `PING [message]`
    Ping(Option<Bytes>),
    /// `ECHO message`
    Echo(Bytes),
    /// `QUIT`: reply OK, then close the connection.
    Quit,
    /// `RESET`: the connection's state as a new connection's (no transaction, no watched
    /// keys, RESP2, no name, not authenticated if a password is required).
    Reset,
    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]`: stop the node cleanly (every write is durable
    /// already, so the options change nothing), or, with `ABORT`, cancel a shutdown.
    Shutdown { abort: bool },
    /// `SELECT index`: only database 0 exists.
    Select(Bytes),
    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    Hello { protocol: Option<u8>, auth: Option<(Bytes, Bytes)>, name: Option<Bytes> },
    /// `AUTH [username] password`
    Auth { user: Option<Bytes>, password: Bytes },
    /// `CONFIG GET parameter [parameter ...]` (glob patterns)
    ConfigGet(Vec<Bytes>),
    /// `CONFIG SET parameter value [parameter value ...]`
    ConfigSet(Vec<Bytes>),
    /// `CONFIG RESETSTAT`
    ConfigResetStat,
    /// `COMMAND` with no subcommand: the command table.
    CommandList,
    /// `COMMAND COUNT`
    CommandCount,
    /// `COMMAND DOCS [name ...]`
    CommandDocs(Vec<Bytes>),
    /// `COMMAND INFO [name ...]`
    CommandInfo(Vec<Bytes>),
    /// `CLIENT SETNAME name`
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`
    ClientGetName,
    /// `CLIENT ID`
    ClientId,
    /// `CLIENT INFO`: this connection's line of CLIENT LIST.
    ClientInfo,
    /// `CLIENT SETINFO attr value` (sent by client libraries on connect)
    ClientSetInfo,
    /// `TIME`
    Time,
    /// `FUNCTION FLUSH`: there are no functions to flush.
    FlushScripts,
    /// `UNWATCH` queued inside MULTI (outside it, it is a [`TxCommand`]).
    Unwatch,
    /// `SUBSCRIBE` (`PSUBSCRIBE` with `pattern`): this connection receives what is published to
    /// these channels (channels matching these patterns) on any node.
    Subscribe { names: Vec<Bytes>, pattern: bool },
    /// `UNSUBSCRIBE` / `PUNSUBSCRIBE`; no names: every channel (pattern).
    Unsubscribe { names: Vec<Bytes>, pattern: bool },
    /// A container command's `HELP`: its lines.
    Help(&'static [&'static str]),
    /// `SCRIPT KILL`: scripts run inside the log's entries, bounded by their instruction
    /// budget; none is ever left running to kill.
    ScriptKill,
}

/// The transaction commands, handled by the Session.
#[derive(Debug, Clone, PartialEq)]
pub enum TxCommand {
    Multi,
    Exec,
    Discard,
    Watch(Vec<Bytes>),
    Unwatch,
}

/// A read of the keyspace. Executed by Storage once the node has applied the log up to a read
/// index confirmed by the leader, or inside an EXEC entry at apply time (hence serializable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReadQuery {
    /// `GET key`
    Get(Bytes),
    /// `MGET key [key ...]`
    MGet(Vec<Bytes>),
    /// `STRLEN key`
    StrLen(Bytes),
    /// `GETRANGE key start end` (and `SUBSTR`)
    GetRange { key: Bytes, start: i64, end: i64 },
    /// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]`
    Lcs { a: Bytes, b: Bytes, mode: LcsMode },
    /// `EXISTS key [key ...]`: counts repeated keys repeatedly, like Redis.
    Exists(Vec<Bytes>),
    /// `TOUCH key [key ...]`: how many exist (there is no LRU clock to update).
    Touch(Vec<Bytes>),
    /// `TYPE key`
    Type(Bytes),
    /// `KEYS pattern`
    Keys(Bytes),
    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`. The cursor is a position in the
    /// keyspace's hash order: any node can continue a scan, before or after a restart.
    Scan { cursor: u64, count: usize, pattern: Option<Bytes>, kind: Option<Bytes> },
    /// `RANDOMKEY`
    RandomKey { seed: u64 },
    /// `DBSIZE`
    DbSize,
    /// `TTL key` / `PTTL key`
    Ttl { key: Bytes, millis: bool },
    /// `EXPIRETIME key` / `PEXPIRETIME key`
    ExpireTime { key: Bytes, millis: bool },
    /// WATCH: the version of each key (0 when absent).
    Versions(Vec<Bytes>),
    /// The expiry sweeper: about `limit` stored keys from position `from` on (see SCAN), the
    /// expired ones.
    ExpiredKeys { from: u64, limit: usize },
    /// INFO keyspace: `[keys, keys with an expiry]`.
    KeyspaceStats,
    // Hashes. New variants go last: EXEC entries in the log store their reads by position.
    /// `HGET key field`
    HGet { key: Bytes, field: Bytes },
    /// `HMGET key field [field ...]`
    HMGet { key: Bytes, fields: Vec<Bytes> },
    /// `HEXISTS key field`
    HExists { key: Bytes, field: Bytes },
    /// `HSTRLEN key field`
    HStrLen { key: Bytes, field: Bytes },
    /// `HLEN key`
    HLen(Bytes),
    /// `HGETALL key`, `HKEYS key`, `HVALS key`
    HGetAll { key: Bytes, part: HashPart },
    /// `HRANDFIELD key [count [WITHVALUES]]`; the seed makes the pick the same on every replica
    /// when it runs inside EXEC.
    HRandField { key: Bytes, count: Option<i64>, with_values: bool, seed: u64 },
    /// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`: a small hash is answered
    /// whole, with cursor 0, whatever the cursor (as Redis answers its small hashes); a large
    /// one bucket by bucket, the cursor a position in the order its buckets cover.
    HScan { key: Bytes, cursor: u64, scan: CollectionScan },
    /// A command whose argument is wrong where Redis looks at the key before the argument
    /// (`INCRBYFLOAT key abc`, `GETEX key EX abc`, `LINDEX key abc`): WRONGTYPE if the key
    /// holds another type than `expects`; for a missing key `if_missing`, or null when that is
    /// `None`; else `error`. Changes nothing, so it is a read.
    ArgumentError { key: Bytes, expects: ValueType, error: String, if_missing: Option<String> },
    // Lists.
    /// `LLEN key`
    LLen(Bytes),
    /// `LINDEX key index`
    LIndex { key: Bytes, index: i64 },
    /// `LRANGE key start stop`
    LRange { key: Bytes, start: i64, stop: i64 },
    /// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]` (`maxlen` 0: no limit)
    LPos { key: Bytes, element: Bytes, rank: i64, count: Option<u64>, maxlen: u64 },
    // Sets.
    /// `SCARD key`
    SCard(Bytes),
    /// `SISMEMBER key member` (one integer) and `SMISMEMBER key member [member ...]` (`many`:
    /// an array of them)
    SIsMember { key: Bytes, members: Vec<Bytes>, many: bool },
    /// `SINTER`, `SUNION`, `SDIFF`, and `SMEMBERS` (the union of one set)
    SCombine { op: SetOp, keys: Vec<Bytes> },
    /// `SINTERCARD numkeys key [key ...] [LIMIT limit]` (`limit` 0: none)
    SInterCard { keys: Vec<Bytes>, limit: u64 },
    /// `SRANDMEMBER key [count]`; the seed makes the pick the same on every replica inside EXEC.
    SRandMember { key: Bytes, count: Option<i64>, seed: u64 },
    /// `SSCAN key cursor [MATCH pattern] [COUNT count]`: as HSCAN.
    SScan { key: Bytes, cursor: u64, scan: CollectionScan },
    // Sorted sets.
    /// `ZCARD key`
    ZCard(Bytes),
    /// `ZSCORE key member` (one score) and `ZMSCORE key member [member ...]` (`many`)
    ZScore { key: Bytes, members: Vec<Bytes>, many: bool },
    /// `ZRANK key member`, `ZREVRANK key member`
    ZRank { key: Bytes, member: Bytes, rev: bool },
    /// `ZCOUNT key min max` (by score), `ZLEXCOUNT key min max` (by member)
    ZCount { key: Bytes, by: ZRangeBy },
    /// `ZRANGE` and the older range commands
    ZRange { key: Bytes, spec: ZRangeSpec },
    /// `ZRANDMEMBER key [count [WITHSCORES]]`; the seed makes the pick the same on every replica
    /// inside EXEC.
    ZRandMember { key: Bytes, count: Option<i64>, with_scores: bool, seed: u64 },
    /// `ZSCAN key cursor [MATCH pattern] [COUNT count]`: as HSCAN (a large sorted set by its
    /// buckets of scores).
    ZScan { key: Bytes, cursor: u64, scan: CollectionScan },
    /// `ZUNION`, `ZINTER`, `ZDIFF numkeys key [key ...] [WEIGHTS w ...] [AGGREGATE ...]
    /// [WITHSCORES]`: sets count as sorted sets whose members all score 1. `weights` is empty
    /// without WEIGHTS (every weight 1).
    ZCombine { op: SetOp, keys: Vec<Bytes>, weights: Vec<f64>, aggregate: ZAggregate, with_scores: bool },
    /// `ZINTERCARD numkeys key [key ...] [LIMIT limit]` (`limit` 0: none)
    ZInterCard { keys: Vec<Bytes>, limit: u64 },
    /// ZUNION and the others above (or their STORE forms) with a wrong option: WRONGTYPE if a key
    /// holds neither a sorted set nor a set, else `error`, since Redis reads the keys first.
    ZCombineError { keys: Vec<Bytes>, error: String },
    // Bitmaps.
    /// `GETBIT key offset`
    GetBit { key: Bytes, offset: u64 },
    /// `BITCOUNT key [start end [BYTE|BIT]]` (the whole string without a range); `error`, a
    /// wrong range, is the answer once the key is found to hold a string.
    BitCount { key: Bytes, range: Option<BitRange>, error: Option<String> },
    /// `BITPOS key bit [start [end [BYTE|BIT]]]`; `error` as for BITCOUNT.
    BitPos { key: Bytes, bit: bool, range: Option<BitRange>, error: Option<String> },
    // HyperLogLog.
    /// `PFCOUNT key [key ...]`
    PfCount(Vec<Bytes>),
    // Geospatial.
    /// `GEOPOS key [member ...]`
    GeoPos { key: Bytes, members: Vec<Bytes> },
    /// `GEOHASH key [member ...]`
    GeoHash { key: Bytes, members: Vec<Bytes> },
    /// `GEODIST key member1 member2 [unit]`; `unit` in meters.
    GeoDist { key: Bytes, from: Bytes, to: Bytes, unit: f64 },
    /// `GEOSEARCH`, `GEORADIUS`, `GEORADIUSBYMEMBER` and their read-only forms
    GeoSearch(GeoSearch),
    /// `SORT` without STORE, and `SORT_RO`
    Sort(SortSpec),
    /// `EVAL_RO`, `EVALSHA_RO`: a script that only reads.
    Eval(Eval),
}

/// What SORT sorts and how ([`crate::command::sort`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortSpec {
    /// A list, set or sorted set.
    pub key: Bytes,
    /// `BY pattern`: sort by the strings (or `->field`s of hashes) the pattern names; one
    /// without `*` leaves the elements in their order.
    pub by: Option<Bytes>,
    /// `LIMIT offset count`
    pub limit: Option<(i64, i64)>,
    /// `GET pattern`s (`#`: the element itself)
    pub gets: Vec<Bytes>,
    pub desc: bool,
    /// `ALPHA`: by bytes instead of as numbers
    pub alpha: bool,
}

/// Where a geospatial search is centred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GeoFrom {
    /// `FROMMEMBER member`: where a member of the searched key is.
    Member(Bytes),
    /// `FROMLONLAT longitude latitude`
    LonLat((f64, f64)),
}

/// The area a geospatial search covers, in meters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum GeoShape {
    /// `BYRADIUS radius unit`
    Radius(f64),
    /// `BYBOX width height unit`
    Box { width: f64, height: f64 },
}

/// The order of a search's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GeoSort {
    /// The order the search finds the places in (see [`crate::command::geo`]).
    None,
    Asc,
    Desc,
}

/// A geospatial search: GEOSEARCH's options, and the GEORADIUS forms'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeoSearch {
    pub key: Bytes,
    pub from: GeoFrom,
    pub shape: GeoShape,
    /// How many meters the unit of the search's distances is.
    pub unit: f64,
    pub sort: GeoSort,
    /// `COUNT count`, and `ANY`: stop at the first `count` places found.
    pub count: Option<u64>,
    pub any: bool,
    pub with_coord: bool,
    pub with_dist: bool,
    pub with_hash: bool,
}

/// BITCOUNT's and BITPOS's range, in bytes or (`bits`) in bits; `end` is `None` for BITPOS
/// without one (to the string's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitRange {
    pub start: i64,
    pub end: Option<i64>,
    pub bits: bool,
}

/// BITOP's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitOperation {
    And,
    Or,
    Xor,
    Not,
}

/// How ZUNION and ZINTER combine a member's scores from several inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZAggregate {
    Sum,
    Min,
    Max,
}

/// ZADD's NX and XX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZAddCond {
    Always,
    IfAbsent,
    IfPresent,
}

/// ZADD's GT and LT: an existing member's score changes only this way (new members are added
/// anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ZAddCmp {
    Any,
    Greater,
    Less,
}

/// One end of a score range; `open` (written `(score`) excludes the score itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZScoreBound {
    pub value: f64,
    pub open: bool,
}

/// One end of a range of members (`-`, `+`, `[member`, `(member`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LexBound {
    Min,
    Max,
    Included(Bytes),
    Excluded(Bytes),
}

/// What a sorted-set range selects by: positions (from the top when reversed), scores from
/// low to high, or members from low to high.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ZRangeBy {
    Rank(i64, i64),
    Score(ZScoreBound, ZScoreBound),
    Lex(LexBound, LexBound),
}

/// ZRANGE's selection: the range, the direction, `LIMIT offset count` and `WITHSCORES`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZRangeSpec {
    pub by: ZRangeBy,
    pub rev: bool,
    pub limit: Option<(i64, i64)>,
    pub with_scores: bool,
}

/// How SINTER, SUNION and SDIFF (and their STORE forms) combine their sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp {
    Inter,
    Union,
    Diff,
}

/// The type a command expects its key to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueType {
    String,
    Hash,
    List,
    Set,
    SortedSet,
}

/// What HGETALL, HKEYS and HVALS return of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashPart {
    Pairs,
    Fields,
    Values,
}

/// What LCS answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LcsMode {
    pub len_only: bool,
    pub idx: bool,
    pub min_match_len: usize,
    pub with_match_len: bool,
}

/// A time as a command gave it. Relative times are resolved at apply time against the clock
/// the proposer put in the entry ([`Proposal::now_ms`]), so every replica gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Expiry {
    /// Milliseconds after the entry's clock (EX, PX, EXPIRE, PEXPIRE).
    InMs(i64),
    /// Absolute unix milliseconds (EXAT, PXAT, EXPIREAT, PEXPIREAT).
    AtMs(i64),
}

/// SET's NX / XX.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SetCond {
    Always,
    IfAbsent,
    IfPresent,
}

/// SET's expiry options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum SetExpiry {
    /// No option: the new value has no expiry.
    None,
    KeepTtl,
    At(Expiry),
}

/// EXPIRE's NX / XX / GT / LT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ExpireCond {
    Always,
    IfNoExpiry,
    IfHasExpiry,
    IfGreater,
    IfLess,
    /// XX and LT together: only a key with an expiry, to an earlier one.
    IfHasExpiryAndLess,
}

/// A command queued inside MULTI, executed at apply time as part of the EXEC entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Queued {
    Read(ReadQuery),
    Write(WriteOp),
}

/// A replicated mutation: the payload of a Raft log entry. Applying one must be deterministic on
/// every replica, so it carries everything it needs; the clock is the entry's
/// [`Proposal::now_ms`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `SET key value` without options: the most common write, kept small in the log.
    Set { key: Bytes, value: Bytes },
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`, `SETEX`, `PSETEX`
    SetWith { key: Bytes, value: Bytes, cond: SetCond, expiry: SetExpiry, get: bool },
    /// `SETNX key value`
    SetNx { key: Bytes, value: Bytes },
    /// `GETSET key value`
    GetSet { key: Bytes, value: Bytes },
    /// `GETDEL key`
    GetDel { key: Bytes },
    /// `GETEX key [EX|PX|EXAT|PXAT|PERSIST]`: `None` persists.
    GetEx { key: Bytes, expiry: Option<Expiry> },
    /// `MSET key value [key value ...]`
    MSet { pairs: Vec<(Bytes, Bytes)> },
    /// `MSETNX key value [key value ...]`
    MSetNx { pairs: Vec<(Bytes, Bytes)> },
    /// `APPEND key value`
    Append { key: Bytes, value: Bytes },
    /// `SETRANGE key offset value`
    SetRange { key: Bytes, offset: u64, value: Bytes },
    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`
    IncrBy { key: Bytes, delta: i64 },
    /// `INCRBYFLOAT key increment`
    IncrByFloat { key: Bytes, increment: f64 },
    /// `DEL key [key ...]` and `UNLINK`: replies with how many existed.
    Del { keys: Vec<Bytes> },
    /// `RENAME` / `RENAMENX`
    Rename { from: Bytes, to: Bytes, only_if_absent: bool },
    /// `COPY source destination [DB 0] [REPLACE]`
    Copy { from: Bytes, to: Bytes, replace: bool },
    /// `FLUSHDB` / `FLUSHALL`
    FlushAll,
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`
    Expire { key: Bytes, at: Expiry, cond: ExpireCond },
    /// `PERSIST key`
    Persist { key: Bytes },
    /// The leader's expiry sweeper: deletes those of `keys` that are expired at the entry's time.
    ExpireKeys { keys: Vec<Bytes> },
    /// `EXEC`: aborts (null reply) if a watched key's version changed, else runs every queued
    /// command, reads included, and replies with the array of their replies.
    Exec { watched: Vec<(Bytes, u64)>, commands: Vec<Queued> },
    // Hashes. New variants go last: the log stores a write by its variant's position.
    /// `HSET key field value [field value ...]` (replies how many fields are new) and `HMSET`
    /// (replies OK).
    HSet { key: Bytes, pairs: Vec<(Bytes, Bytes)>, reply_ok: bool },
    /// `HSETNX key field value`
    HSetNx { key: Bytes, field: Bytes, value: Bytes },
    /// `HDEL key field [field ...]`: a hash left without fields is deleted.
    HDel { key: Bytes, fields: Vec<Bytes> },
    /// `HINCRBY key field increment`
    HIncrBy { key: Bytes, field: Bytes, delta: i64 },
    /// `HINCRBYFLOAT key field increment`
    HIncrByFloat { key: Bytes, field: Bytes, increment: f64 },
    // Lists.
    /// `LPUSH`, `RPUSH`, `LPUSHX`, `RPUSHX`: the elements go in one by one at the `left` end or
    /// the right; `only_if_exists` for the X forms.
    Push { key: Bytes, elements: Vec<Bytes>, left: bool, only_if_exists: bool },
    /// `LPOP key [count]`, `RPOP key [count]`
    Pop { key: Bytes, left: bool, count: Option<u64> },
    /// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]`
    LMPop { keys: Vec<Bytes>, left: bool, count: u64 },
    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT` and `RPOPLPUSH`
    LMove { from: Bytes, to: Bytes, from_left: bool, to_left: bool },
    /// `LSET key index element`
    LSet { key: Bytes, index: i64, element: Bytes },
    /// `LINSERT key BEFORE|AFTER pivot element`
    LInsert { key: Bytes, before: bool, pivot: Bytes, element: Bytes },
    /// `LREM key count element`
    LRem { key: Bytes, count: i64, element: Bytes },
    /// `LTRIM key start stop`
    LTrim { key: Bytes, start: i64, stop: i64 },
    // Sets.
    /// `SADD key member [member ...]`
    SAdd { key: Bytes, members: Vec<Bytes> },
    /// `SREM key member [member ...]`: a set left without members is deleted.
    SRem { key: Bytes, members: Vec<Bytes> },
    /// `SMOVE source destination member`
    SMove { from: Bytes, to: Bytes, member: Bytes },
    /// `SPOP key [count]`: the members taken follow `seed`, drawn by the proposer, so every
    /// replica removes the same ones.
    SPop { key: Bytes, count: Option<u64>, seed: u64 },
    /// `SINTERSTORE`, `SUNIONSTORE`, `SDIFFSTORE`: the result replaces `destination`, whatever
    /// it held; an empty result deletes it.
    SCombineStore { op: SetOp, destination: Bytes, keys: Vec<Bytes> },
    // Sorted sets.
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]`, and `ZINCRBY`
    /// (INCR with one pair)
    ZAdd { key: Bytes, pairs: Vec<(f64, Bytes)>, cond: ZAddCond, cmp: ZAddCmp, ch: bool, incr: bool },
    /// `ZREM key member [member ...]`
    ZRem { key: Bytes, members: Vec<Bytes> },
    /// `ZPOPMIN key [count]`, `ZPOPMAX key [count]`
    ZPop { key: Bytes, max: bool, count: Option<u64> },
    /// `ZREMRANGEBYRANK`, `ZREMRANGEBYSCORE`, `ZREMRANGEBYLEX`
    ZRemRange { key: Bytes, by: ZRangeBy },
    // Pops from the first of several keys that holds something: the blocking commands'
    // non-blocking forms, and ZMPOP.
    /// `BLPOP`, `BRPOP`: one element of the first list of `keys`, replied as `[key, element]`.
    BPop { keys: Vec<Bytes>, left: bool },
    /// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]` and `BZMPOP`: replied as
    /// `[key, [[member, score] ...]]`.
    ZMPop { keys: Vec<Bytes>, max: bool, count: u64 },
    /// `BZPOPMIN`, `BZPOPMAX`: one member of the first sorted set of `keys`, replied as
    /// `[key, member, score]`.
    BZPop { keys: Vec<Bytes>, max: bool },
    /// `ZUNIONSTORE`, `ZINTERSTORE`, `ZDIFFSTORE`: the result replaces `destination`, whatever
    /// it held; an empty result deletes it.
    ZCombineStore {
        op: SetOp,
        destination: Bytes,
        keys: Vec<Bytes>,
        weights: Vec<f64>,
        aggregate: ZAggregate,
    },
    /// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`
    ZRangeStore { destination: Bytes, source: Bytes, spec: ZRangeSpec },
    // Bitmaps.
    /// `SETBIT key offset value`: replies the bit's old value.
    SetBit { key: Bytes, offset: u64, on: bool },
    /// `BITOP AND|OR|XOR|NOT destkey key [key ...]`: the result replaces the destination; an
    /// empty one deletes it.
    BitOp { op: BitOperation, destination: Bytes, keys: Vec<Bytes> },
    // HyperLogLog.
    /// `PFADD key [element ...]`: replies 1 if a register changed or the key was created.
    PfAdd { key: Bytes, elements: Vec<Bytes> },
    /// `PFMERGE destkey [sourcekey ...]`: the destination (created if missing) takes the
    /// union of itself and the sources.
    PfMerge { destination: Bytes, keys: Vec<Bytes> },
    // Pub/sub.
    /// `PUBLISH channel message`: every node delivers the message to its subscribers when it
    /// applies the entry. `receivers` is how many subscriptions of the proposing node match,
    /// counted when it proposes (the reply, as Redis Cluster counts only the node's own).
    Publish { channel: Bytes, message: Bytes, receivers: u64 },
    // Geospatial (GEOADD is a ZADD).
    /// `GEOSEARCHSTORE`, and GEORADIUS with `STORE` or `STOREDIST`: the places found replace
    /// `destination` (an empty result deletes it), scored by their geohashes, or by their
    /// distances in the search's unit if `store_dist`; replies how many.
    GeoSearchStore { destination: Bytes, search: GeoSearch, store_dist: bool },
    /// `SORT ... STORE destination`: the result replaces `destination` as a list (an empty
    /// one deletes it); replies its length.
    SortStore { spec: SortSpec, destination: Bytes },
    // Scripts.
    /// `EVAL`, `EVALSHA`: every node runs the script when it applies the entry; its writes are
    /// the entry's. Replies what the script returns.
    Eval(Eval),
    /// `SCRIPT LOAD script`: every node caches the script (for EVALSHA); replies its digest.
    ScriptLoad { script: Bytes },
    /// `SCRIPT FLUSH`: every node empties its script cache.
    ScriptFlush,
}

impl WriteOp {
    /// The keys a blocking command waits on when this write, its non-blocking form, finds
    /// nothing to pop, and the type it pops from. `None` for the writes that never block.
    pub fn blocking_keys(&self) -> Option<(&[Bytes], ValueType)> {
        match self {
            WriteOp::BPop { keys, .. } | WriteOp::LMPop { keys, .. } => Some((keys, ValueType::List)),
            WriteOp::LMove { from, .. } => Some((std::slice::from_ref(from), ValueType::List)),
            WriteOp::BZPop { keys, .. } | WriteOp::ZMPop { keys, .. } => Some((keys, ValueType::SortedSet)),
            _ => None,
        }
    }
}

/// Who proposed a write: the node, its boot incarnation (so ids never repeat across restarts)
/// and a per-boot counter. Only the proposing node has a client waiting for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub node: u64,
    pub incarnation: u64,
    pub seq: u64,
}

/// The payload of a normal Raft log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub origin: RequestId,
    /// The proposer's wall clock (unix ms) when it proposed: the entry's notion of "now" for
    /// expiry decisions and relative times, identical on every replica.
    pub now_ms: i64,
    pub op: WriteOp,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a proposal always serializes")
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        postcard::from_bytes(data).map_err(|e| DecodeError(e.to_string()))
    }

    /// The payload of a log entry that carries several proposals, applied in order: postcard's
    /// encoding of a `Vec<Proposal>`, joined from proposals already encoded (a count, then
    /// each one). Such an entry is marked by [`BATCH_CONTEXT`].
    pub fn encode_batch<'a>(encoded: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
        let count = postcard::to_allocvec(&encoded.len()).expect("a count always serializes");
        let mut out = count;
        for proposal in encoded {
            out.extend_from_slice(proposal);
        }
        out
    }

    /// The proposals of a normal log entry: a batch when `context` starts with
    /// [`BATCH_CONTEXT`], else one proposal (the format of entries written before batches).
    pub fn decode_entry(context: &[u8], data: &[u8]) -> Result<Vec<Self>, DecodeError> {
        if context.starts_with(BATCH_CONTEXT) {
            postcard::from_bytes(data).map_err(|e| DecodeError(e.to_string()))
        } else {
            Ok(vec![Self::decode(data)?])
        }
    }
}

/// The context of a log entry whose data is a batch of proposals ([`Proposal::encode_batch`])
/// starts with this. [`batch_context`] adds who proposed the batch.
pub const BATCH_CONTEXT: &[u8] = b"batch";

/// The context of a batch entry whose first proposal is `first`: [`BATCH_CONTEXT`], then the
/// node, incarnation and sequence number, so the proposer recognizes its batch once committed
/// without decoding the entry.
pub fn batch_context(first: RequestId) -> Vec<u8> {
    let mut context = BATCH_CONTEXT.to_vec();
    for n in [first.node, first.incarnation, first.seq] {
        context.extend_from_slice(&n.to_be_bytes());
    }
    context
}

/// The request id [`batch_context`] put in a context; `None` for any other context.
pub fn batch_origin(context: &[u8]) -> Option<RequestId> {
    let rest = context.strip_prefix(BATCH_CONTEXT)?;
    let n = |i: usize| Some(u64::from_be_bytes(rest.get(i * 8..i * 8 + 8)?.try_into().ok()?));
    (rest.len() == 24).then_some(())?;
    Some(RequestId { node: n(0)?, incarnation: n(1)?, seq: n(2)? })
}

/// The arguments after the command name, with Redis-style accessors.
pub struct Args {
    name: &'static str,
    /// The name as the client wrote it (some of Redis's errors quote it).
    typed: Bytes,
    args: std::vec::IntoIter<Bytes>,
}

impl Args {
    /// The next argument; arity was checked against the table, so callers only ask for
    /// arguments that exist, or use [`Args::try_next`].
    pub fn arg(&mut self) -> Bytes {
        self.args.next().expect("arity was checked")
    }

    pub fn try_next(&mut self) -> Option<Bytes> {
        self.args.next()
    }

    /// The next argument, or a syntax error when there is none (an option missing its value).
    pub fn value(&mut self) -> Result<Bytes, Frame> {
        self.args.next().ok_or_else(syntax_error)
    }

    pub fn rest(&mut self) -> Vec<Bytes> {
        self.args.by_ref().collect()
    }

    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn is_empty(&self) -> bool {
        self.args.len() == 0
    }

    /// The command's name as the client wrote it.
    pub fn typed_name(&self) -> String {
        String::from_utf8_lossy(&self.typed).into_owned()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The rest as `key value` pairs; an odd count is an arity error.
    pub fn pairs(&mut self) -> Result<Vec<(Bytes, Bytes)>, Frame> {
        if !self.len().is_multiple_of(2) {
            return Err(wrong_arity(self.name));
        }
        let mut out = Vec::with_capacity(self.len() / 2);
        while let Some(key) = self.args.next() {
            out.push((key, self.arg()));
        }
        Ok(out)
    }
}

impl Command {
    /// Parses a request's arguments (`args[0]` is the command name, any case).
    /// An `Err` is the complete error reply for the client.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, Frame> {
        Self::parse_checked(args)?
    }

    /// Like [`Command::parse`], but tells apart the two kinds of errors Redis distinguishes
    /// inside MULTI: an unknown command or a wrong argument count (the outer `Err`) is refused
    /// when queued and makes EXEC fail with EXECABORT, while an error found by the command itself
    /// (a bad option or number: the inner `Err`) is queued and becomes that command's reply in
    /// EXEC's array.
    pub fn parse_checked(args: Vec<Bytes>) -> Result<Result<Command, Frame>, Frame> {
        let Some(first) = args.first() else {
            return Err(Frame::error("ERR empty command"));
        };
        let Some(spec) = lookup(first) else {
            return Err(unknown_command(&args));
        };
        let argc = args.len() as i64;
        if (spec.arity > 0 && argc != spec.arity) || (spec.arity < 0 && argc < -spec.arity) {
            return Err(wrong_arity(spec.name));
        }
        let mut rest = args.into_iter();
        let typed = rest.next().expect("a command has a name");
        let mut args = Args { name: spec.name, typed, args: rest };
        Ok(Self::parse_family(spec.name, &mut args))
    }

    fn parse_family(name: &'static str, args: &mut Args) -> Result<Command, Frame> {
        if let Some(cmd) = strings::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = bitmaps::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = hyperloglog::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = hashes::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = lists::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = sets::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = zsets::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = geo::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = sort::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = keys::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = scripting::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = server::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = raft::parse(name, args)? {
            return Ok(cmd);
        }
        if let Some(cmd) = pubsub::parse(name, args)? {
            return Ok(cmd);
        }
        unreachable!("every table entry has a parser: {name}")
    }
}

/// Redis's `string2ll`: an optional `-`, digits without leading zeros, fitting an i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        magnitude = magnitude.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if negative {
        if magnitude == i64::MIN.unsigned_abs() {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Redis's reply to a number argument (or a stored value) that is not an i64.
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

/// An integer argument, or Redis's "not an integer" error.
pub fn int_arg(s: &[u8]) -> Result<i64, Frame> {
    parse_i64(s).ok_or_else(|| Frame::error(NOT_INTEGER))
}

/// A SCAN cursor: an unsigned number.
pub fn cursor_arg(arg: &[u8]) -> Result<u64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Frame::error("ERR invalid cursor"))
}

/// What HSCAN, SSCAN and ZSCAN ask besides the key and the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionScan {
    /// `MATCH pattern`; none for `*`.
    pub pattern: Option<Bytes>,
    /// `COUNT count` (10 if not given): about how many items to look at.
    pub count: usize,
    /// `NOVALUES` (HSCAN only): fields without their values.
    pub novalues: bool,
}

/// The options of HSCAN, SSCAN and ZSCAN; `NOVALUES` only if `novalues_allowed` (HSCAN).
pub(crate) fn collection_scan_options(
    args: &mut Args,
    novalues_allowed: bool,
) -> Result<CollectionScan, Frame> {
    let mut scan = CollectionScan { pattern: None, count: 10, novalues: false };
    while let Some(arg) = args.try_next() {
        match lower(&arg).as_str() {
            "match" => scan.pattern = Some(args.value()?).filter(|p| &p[..] != b"*"),
            "count" => match int_arg(&args.value()?)? {
                count @ 1.. => scan.count = count.try_into().unwrap_or(usize::MAX),
                _ => return Err(syntax_error()),
            },
            "novalues" if novalues_allowed => scan.novalues = true,
            _ => return Err(syntax_error()),
        }
    }
    Ok(scan)
}

/// The count of LPOP, RPOP, SPOP, ZPOPMIN and ZPOPMAX: a non-negative integer.
pub fn pop_count(arg: &[u8]) -> Result<u64, Frame> {
    parse_i64(arg)
        .filter(|&n| n >= 0)
        .map(|n| n as u64)
        .ok_or_else(|| Frame::error("ERR value is out of range, must be positive"))
}

/// A blocking command's timeout, in seconds (a float), as Redis 7.0 reads it: 0 waits for ever
/// (`None`), and so does a negative timeout above -1 ms, which truncates to 0 as in Redis. One
/// too large for Redis's milliseconds is "negative", as Redis's conversion makes it on x86-64.
pub fn timeout_arg(arg: &[u8]) -> Result<Option<std::time::Duration>, Frame> {
    let seconds = strings::parse_float(arg)
        .ok_or_else(|| Frame::error("ERR timeout is not a float or out of range"))?;
    let ms = (seconds * 1000.0).trunc();
    if !(ms.is_finite() && ms < i64::MAX as f64) || ms < 0.0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    let ms = ms as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if ms > i64::MAX as u64 - now_ms {
        return Err(Frame::error("ERR timeout is out of range"));
    }
    Ok((ms > 0).then(|| std::time::Duration::from_millis(ms)))
}

/// `numkeys key [key ...] <end> [COUNT count]`, the arguments of LMPOP and ZMPOP (and of
/// BLMPOP and BZMPOP after their timeout): the keys, whether the end is `first` (LEFT, MIN)
/// rather than `second` (RIGHT, MAX), and the count (1 without COUNT).
pub fn mpop_args(args: &mut Args, first: &str, second: &str) -> Result<(Vec<Bytes>, bool, u64), Frame> {
    let numkeys = parse_i64(&args.arg()).filter(|&n| n > 0);
    let Some(numkeys) = numkeys else {
        return Err(Frame::error("ERR numkeys should be greater than 0"));
    };
    // The keys, then the end.
    if numkeys as u64 >= args.len() as u64 {
        return Err(syntax_error());
    }
    let keys: Vec<Bytes> = (0..numkeys).map(|_| args.arg()).collect();
    let end = lower(&args.arg());
    let at_first = match end.as_str() {
        e if e == first => true,
        e if e == second => false,
        _ => return Err(syntax_error()),
    };
    let mut count = None;
    while let Some(option) = args.try_next() {
        match lower(&option).as_str() {
            "count" if count.is_none() => {
                let n = parse_i64(&args.value()?).filter(|&n| n > 0);
                count = Some(n.ok_or_else(|| Frame::error("ERR count should be greater than 0"))? as u64);
            }
            _ => return Err(syntax_error()),
        }
    }
    Ok((keys, at_first, count.unwrap_or(1)))
}

/// `-ERR wrong number of arguments for 'get' command`
pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// `-ERR syntax error`
pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

/// Redis 7's reply to an unknown command: the name and the first arguments, quoted, each
/// followed by a space, at most 128 bytes of arguments.
fn unknown_command(args: &[Bytes]) -> Frame {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        let text = String::from_utf8_lossy(arg);
        let shown: String = text.chars().take(room).collect();
        quoted.push_str(&format!("'{shown}' "));
    }
    let name: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
    let msg = format!("ERR unknown command '{name}', with args beginning with: {quoted}");
    // Redis keeps error replies on one line.
    Frame::Error(msg.replace(['\r', '\n'], " "))
}

pub(crate) fn unknown_subcommand(sub: &Bytes, command: &str) -> Frame {
    let sub = String::from_utf8_lossy(sub).replace(['\r', '\n'], " ");
    Frame::Error(format!("ERR unknown subcommand '{sub}'. Try {command} HELP."))
}

/// An argument as a lower-case string, for matching names and options case-insensitively.
pub fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

#[cfg(test)]
pub(crate) fn test_args(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
}

/// Parses a command written as words, for the parsers' tests.
#[cfg(test)]
pub(crate) fn test_parse(parts: &[&str]) -> Result<Command, Frame> {
    Command::parse(test_args(parts))
}

/// The text of the error a command written as words is refused with.
#[cfg(test)]
pub(crate) fn test_err(parts: &[&str]) -> String {
    match test_parse(parts).unwrap_err() {
        Frame::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parts: &[&str]) -> Result<Command, Frame> {
        Command::parse(test_args(parts))
    }

    #[test]
    fn command_names_are_case_insensitive() {
        assert_eq!(
            parse(&["sEt", "k", "v"]).unwrap(),
            Command::Write(WriteOp::Set { key: "k".into(), value: "v".into() })
        );
    }

    #[test]
    fn wrong_arity_uses_redis_wording() {
        assert_eq!(
            parse(&["GET"]).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            parse(&["ping", "a", "b"]).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'ping' command".into())
        );
        assert_eq!(
            parse(&["mset", "a", "1", "b"]).unwrap_err(),
            Frame::Error("ERR wrong number of arguments for 'mset' command".into())
        );
    }

    #[test]
    fn unknown_command_quotes_its_first_arguments() {
        assert_eq!(
            parse(&["FOO", "a", "b"]).unwrap_err(),
            Frame::Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into())
        );
        assert_eq!(
            parse(&["nope"]).unwrap_err(),
            Frame::Error("ERR unknown command 'nope', with args beginning with: ".into())
        );
    }

    #[test]
    fn integers_parse_like_redis_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        for bad in [&b"9223372036854775808"[..], b"01", b"-0", b"+1", b" 1", b"1 ", b"", b"-", b"1.0"] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn del_and_exists_take_every_key() {
        assert_eq!(
            parse(&["del", "a", "b"]).unwrap(),
            Command::Write(WriteOp::Del { keys: vec!["a".into(), "b".into()] })
        );
        assert_eq!(
            parse(&["exists", "a", "a"]).unwrap(),
            Command::Read(ReadQuery::Exists(vec!["a".into(), "a".into()]))
        );
    }

    #[test]
    fn every_table_entry_parses_with_its_minimum_arguments_or_answers_an_error() {
        for spec in COMMAND_TABLE {
            let n = spec.arity.unsigned_abs() as usize;
            let mut parts = vec![spec.name];
            parts.extend(std::iter::repeat_n("1", n - 1));
            // Must not panic; errors are fine (e.g. `COMMAND 1`).
            let _ = parse(&parts);
        }
    }

    #[test]
    fn proposals_round_trip_through_the_log_encoding() {
        let op = WriteOp::Exec {
            watched: vec![(Bytes::from_static(b"w"), 7)],
            commands: vec![
                Queued::Write(WriteOp::Set {
                    key: Bytes::from_static(b"\0k\r\n"),
                    value: Bytes::from_static(&[0xff, 0]),
                }),
                Queued::Read(ReadQuery::Get(Bytes::from_static(b"k"))),
                Queued::Write(WriteOp::IncrByFloat { key: "f".into(), increment: 0.1 }),
            ],
        };
        let p =
            Proposal { origin: RequestId { node: 1, incarnation: 2, seq: 3 }, now_ms: 1_700_000_000_000, op };
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn a_batch_entry_decodes_to_its_proposals_in_order_and_an_unmarked_entry_to_one() {
        let proposal = |seq, key: &'static [u8]| Proposal {
            origin: RequestId { node: 2, incarnation: 1, seq },
            now_ms: 5,
            op: WriteOp::Set { key: Bytes::from_static(key), value: Bytes::from(vec![seq as u8; 300]) },
        };
        let batch: Vec<Proposal> = (1..=200).map(|seq| proposal(seq, b"k")).collect();
        let encoded: Vec<Vec<u8>> = batch.iter().map(Proposal::encode).collect();
        // 200 needs a two-byte count.
        let data = Proposal::encode_batch(encoded.iter().map(Vec::as_slice));
        assert_eq!(Proposal::decode_entry(BATCH_CONTEXT, &data).unwrap(), batch);
        let first = RequestId { node: 3, incarnation: 7, seq: u64::MAX - 1 };
        let context = batch_context(first);
        assert_eq!(Proposal::decode_entry(&context, &data).unwrap(), batch, "a context with its proposer");
        assert_eq!(batch_origin(&context), Some(first));
        assert_eq!(batch_origin(BATCH_CONTEXT), None, "a batch from before the proposer was named");
        assert_eq!(batch_origin(&context[..context.len() - 1]), None);
        assert_eq!(batch_origin(b""), None);
        let empty = Proposal::encode_batch(std::iter::empty());
        assert_eq!(Proposal::decode_entry(BATCH_CONTEXT, &empty).unwrap(), vec![]);
        // Entries from before batches existed: no context, one proposal.
        assert_eq!(Proposal::decode_entry(b"", &encoded[0]).unwrap(), vec![batch[0].clone()]);
        // Cut short, a batch is an error, never a shorter list.
        assert!(Proposal::decode_entry(BATCH_CONTEXT, &data[..data.len() - 1]).is_err());
    }
}
