//! The command table: arity, flags and key positions (`COMMAND INFO`), and the documentation
//! `COMMAND DOCS` serves (summary, since, group and arguments), which `redis-cli` uses for its
//! interactive hints.
//!
//! Arguments are written in a compact syntax close to Redis's own docs and expanded into
//! `COMMAND DOCS` argument maps by [`docs`]: `key` is a key, `name:type` a value,
//! `TOKEN name:type` a value introduced by a token, `WORD` alone a pure token, `a|b` a choice,
//! `[...]` optional, and a trailing `...` repeats the argument before it.

use crate::resp::Frame;

/// One row of the command table: Redis's arity convention (positive: exact count including the
/// name; negative: at least that many) and the key positions clients read from `COMMAND`.
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub syntax: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    since: &'static str,
    summary: &'static str,
    syntax: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        group,
        since,
        summary,
        syntax,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const TWO_KEYS: (i64, i64, i64) = (1, 2, 1);
const PAIRS: (i64, i64, i64) = (1, -1, 2);
/// Every argument but the last (a blocking command's timeout).
const KEYS_THEN_TIMEOUT: (i64, i64, i64) = (1, -2, 1);
/// The commands a RESP2 client may send while subscribed.
const PUBSUB_MODE: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const BLOCKING_POP: &[&str] = &["write", "noscript", "blocking"];
const BLOCKING_MOVE: &[&str] = &["write", "denyoom", "noscript", "blocking"];
const BLOCKING_MPOP: &[&str] = &["write", "blocking", "movablekeys"];
const READ_MOVABLE: &[&str] = &["readonly", "movablekeys"];
const STORE_MOVABLE: &[&str] = &["write", "denyoom", "movablekeys"];
const COMBINE_STORE_ARGS: &str =
    "destination:key numkeys:integer key... [WEIGHTS weight:integer...] [AGGREGATE SUM|MIN|MAX]";
const R: &[&str] = &["readonly"];
const GEORADIUS_FLAGS: &[&str] = &["write", "denyoom", "movablekeys"];
const SORT_FLAGS: &[&str] = &["write", "denyoom", "movablekeys"];
const EVAL_FLAGS: &[&str] = &["noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"];
const EVAL_RO_FLAGS: &[&str] =
    &["readonly", "noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"];
const RF: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
const WF: &[&str] = &["write", "fast"];
const WD: &[&str] = &["write", "denyoom"];
const WDF: &[&str] = &["write", "denyoom", "fast"];
const CONN: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"];
const LSF: &[&str] = &["loading", "stale", "fast"];
const TX: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const EXPIRE_ARGS: &str = "key $:integer [NX|XX|GT|LT]";

/// Every command raft-kv understands, by group.
pub const COMMAND_TABLE: &[CommandSpec] = &[
    // string
    spec("append", 3, WDF, ONE_KEY, "string", "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.", "key value:string"),
    spec("decr", 2, WDF, ONE_KEY, "string", "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    spec("decrby", 3, WDF, ONE_KEY, "string", "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", "key decrement:integer"),
    spec("get", 2, RF, ONE_KEY, "string", "1.0.0", "Returns the string value of a key.", "key"),
    spec("getdel", 2, WF, ONE_KEY, "string", "6.2.0", "Returns the string value of a key after deleting the key.", "key"),
    spec("getex", -2, WF, ONE_KEY, "string", "6.2.0", "Returns the string value of a key after setting its expiration time.", "key [EX seconds:integer|PX milliseconds:integer|EXAT unix-time-seconds:unix-time|PXAT unix-time-milliseconds:unix-time|PERSIST]"),
    spec("getrange", 4, R, ONE_KEY, "string", "2.4.0", "Returns a substring of the string stored at a key.", "key start:integer end:integer"),
    spec("getset", 3, WDF, ONE_KEY, "string", "1.0.0", "Returns the previous string value of a key after setting it to a new value.", "key value:string"),
    spec("incr", 2, WDF, ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    spec("incrby", 3, WDF, ONE_KEY, "string", "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment:integer"),
    spec("incrbyfloat", 3, WDF, ONE_KEY, "string", "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment:double"),
    spec("lcs", -3, R, TWO_KEYS, "string", "7.0.0", "Finds the longest common substring.", "key1:key key2:key [LEN] [IDX] [MINMATCHLEN min-match-len:integer] [WITHMATCHLEN]"),
    spec("mget", -2, RF, ALL_KEYS, "string", "1.0.0", "Atomically returns the string values of one or more keys.", "key..."),
    spec("mset", -3, WD, PAIRS, "string", "1.0.1", "Atomically creates or modifies the string values of one or more keys.", "data:block(key value:string)..."),
    spec("msetnx", -3, WD, PAIRS, "string", "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.", "data:block(key value:string)..."),
    spec("psetex", 4, WD, ONE_KEY, "string", "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", "key milliseconds:integer value:string"),
    spec("set", -3, WD, ONE_KEY, "string", "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", "key value:string [NX|XX] [GET] [EX seconds:integer|PX milliseconds:integer|EXAT unix-time-seconds:unix-time|PXAT unix-time-milliseconds:unix-time|KEEPTTL]"),
    spec("setex", 4, WD, ONE_KEY, "string", "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", "key seconds:integer value:string"),
    spec("setnx", 3, WDF, ONE_KEY, "string", "1.0.0", "Set the string value of a key only when the key doesn't exist.", "key value:string"),
    spec("setrange", 4, WD, ONE_KEY, "string", "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", "key offset:integer value:string"),
    spec("strlen", 2, RF, ONE_KEY, "string", "2.2.0", "Returns the length of a string value.", "key"),
    spec("substr", 4, R, ONE_KEY, "string", "1.0.0", "Returns a substring from a string value.", "key start:integer end:integer"),
    // hash
    spec("hdel", -3, WF, ONE_KEY, "hash", "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", "key field:string..."),
    spec("hexists", 3, RF, ONE_KEY, "hash", "2.0.0", "Determines whether a field exists in a hash.", "key field:string"),
    spec("hget", 3, RF, ONE_KEY, "hash", "2.0.0", "Returns the value of a field in a hash.", "key field:string"),
    spec("hgetall", 2, R, ONE_KEY, "hash", "2.0.0", "Returns all fields and values in a hash.", "key"),
    spec("hincrby", 4, WDF, ONE_KEY, "hash", "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", "key field:string increment:integer"),
    spec("hincrbyfloat", 4, WDF, ONE_KEY, "hash", "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", "key field:string increment:double"),
    spec("hkeys", 2, R, ONE_KEY, "hash", "2.0.0", "Returns all fields in a hash.", "key"),
    spec("hlen", 2, RF, ONE_KEY, "hash", "2.0.0", "Returns the number of fields in a hash.", "key"),
    spec("hmget", -3, RF, ONE_KEY, "hash", "2.0.0", "Returns the values of all fields in a hash.", "key field:string..."),
    spec("hmset", -4, WDF, ONE_KEY, "hash", "2.0.0", "Sets the values of multiple fields.", "key data:block(field:string value:string)..."),
    spec("hrandfield", -2, R, ONE_KEY, "hash", "6.2.0", "Returns one or more random fields from a hash.", "key [count:integer [WITHVALUES]]"),
    spec("hscan", -3, R, ONE_KEY, "hash", "2.8.0", "Iterates over fields and values of a hash.", "key cursor:integer [MATCH pattern:pattern] [COUNT count:integer] [NOVALUES]"),
    spec("hset", -4, WDF, ONE_KEY, "hash", "2.0.0", "Creates or modifies the value of a field in a hash.", "key data:block(field:string value:string)..."),
    spec("hsetnx", 4, WDF, ONE_KEY, "hash", "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist.", "key field:string value:string"),
    spec("hstrlen", 3, RF, ONE_KEY, "hash", "3.2.0", "Returns the length of the value of a field.", "key field:string"),
    spec("hvals", 2, R, ONE_KEY, "hash", "2.0.0", "Returns all values in a hash.", "key"),
    // bitmap
    spec("bitcount", -2, R, ONE_KEY, "bitmap", "2.6.0", "Counts the number of set bits (population counting) in a string.", "key [start:integer end:integer [BYTE|BIT]]"),
    spec("bitop", -4, WD, (2, -1, 1), "bitmap", "2.6.0", "Performs bitwise operations on multiple strings, and stores the result.", "AND|OR|XOR|NOT destkey:key key..."),
    spec("bitpos", -3, R, ONE_KEY, "bitmap", "2.8.7", "Finds the first set (1) or clear (0) bit in a string.", "key bit:integer [start:integer [end:integer [BYTE|BIT]]]"),
    spec("getbit", 3, RF, ONE_KEY, "bitmap", "2.2.0", "Returns a bit value by offset.", "key offset:integer"),
    spec("setbit", 4, WD, ONE_KEY, "bitmap", "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", "key offset:integer value:integer"),
    // hyperloglog
    spec("pfadd", -2, WDF, ONE_KEY, "hyperloglog", "2.8.9", "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.", "key [element:string...]"),
    spec("pfcount", -2, R, ALL_KEYS, "hyperloglog", "2.8.9", "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).", "key..."),
    spec("pfmerge", -2, WD, ALL_KEYS, "hyperloglog", "2.8.9", "Merges one or more HyperLogLog values into a single key.", "destkey:key [sourcekey:key...]"),
    // list
    spec("blmove", 6, BLOCKING_MOVE, TWO_KEYS, "list", "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", "source:key destination:key LEFT|RIGHT LEFT|RIGHT timeout:double"),
    spec("blmpop", -5, BLOCKING_MPOP, NO_KEYS, "list", "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "timeout:double numkeys:integer key... LEFT|RIGHT [COUNT count:integer]"),
    spec("blpop", -3, BLOCKING_POP, KEYS_THEN_TIMEOUT, "list", "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "key... timeout:double"),
    spec("brpop", -3, BLOCKING_POP, KEYS_THEN_TIMEOUT, "list", "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "key... timeout:double"),
    spec("brpoplpush", 4, BLOCKING_MOVE, TWO_KEYS, "list", "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "source:key destination:key timeout:double"),
    spec("lindex", 3, R, ONE_KEY, "list", "1.0.0", "Returns an element from a list by its index.", "key index:integer"),
    spec("linsert", 5, WD, ONE_KEY, "list", "2.2.0", "Inserts an element before or after another element in a list.", "key BEFORE|AFTER pivot:string element:string"),
    spec("llen", 2, RF, ONE_KEY, "list", "1.0.0", "Returns the length of a list.", "key"),
    spec("lmove", 5, WD, TWO_KEYS, "list", "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", "source:key destination:key LEFT|RIGHT LEFT|RIGHT"),
    spec("lmpop", -4, &["write", "movablekeys"], NO_KEYS, "list", "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", "numkeys:integer key... LEFT|RIGHT [COUNT count:integer]"),
    spec("lpop", -2, WF, ONE_KEY, "list", "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", "key [count:integer]"),
    spec("lpos", -3, R, ONE_KEY, "list", "6.0.6", "Returns the index of matching elements in a list.", "key element:string [RANK rank:integer] [COUNT num-matches:integer] [MAXLEN len:integer]"),
    spec("lpush", -3, WDF, ONE_KEY, "list", "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist.", "key element:string..."),
    spec("lpushx", -3, WDF, ONE_KEY, "list", "2.2.0", "Prepends one or more elements to a list only when the list exists.", "key element:string..."),
    spec("lrange", 4, R, ONE_KEY, "list", "1.0.0", "Returns a range of elements from a list.", "key start:integer stop:integer"),
    spec("lrem", 4, W, ONE_KEY, "list", "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed.", "key count:integer element:string"),
    spec("lset", 4, WD, ONE_KEY, "list", "1.0.0", "Sets the value of an element in a list by its index.", "key index:integer element:string"),
    spec("ltrim", 4, W, ONE_KEY, "list", "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", "key start:integer stop:integer"),
    spec("rpop", -2, WF, ONE_KEY, "list", "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", "key [count:integer]"),
    spec("rpoplpush", 3, WD, TWO_KEYS, "list", "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", "source:key destination:key"),
    spec("rpush", -3, WDF, ONE_KEY, "list", "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist.", "key element:string..."),
    spec("rpushx", -3, WDF, ONE_KEY, "list", "2.2.0", "Appends an element to a list only when the list exists.", "key element:string..."),
    // set
    spec("sadd", -3, WDF, ONE_KEY, "set", "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist.", "key member:string..."),
    spec("scard", 2, RF, ONE_KEY, "set", "1.0.0", "Returns the number of members in a set.", "key"),
    spec("sdiff", -2, R, ALL_KEYS, "set", "1.0.0", "Returns the difference of multiple sets.", "key..."),
    spec("sdiffstore", -3, WD, ALL_KEYS, "set", "1.0.0", "Stores the difference of multiple sets in a key.", "destination:key key..."),
    spec("sinter", -2, R, ALL_KEYS, "set", "1.0.0", "Returns the intersect of multiple sets.", "key..."),
    spec("sintercard", -3, &["readonly", "movablekeys"], NO_KEYS, "set", "7.0.0", "Returns the number of members of the intersect of multiple sets.", "numkeys:integer key... [LIMIT limit:integer]"),
    spec("sinterstore", -3, WD, ALL_KEYS, "set", "1.0.0", "Stores the intersect of multiple sets in a key.", "destination:key key..."),
    spec("sismember", 3, RF, ONE_KEY, "set", "1.0.0", "Determines whether a member belongs to a set.", "key member:string"),
    spec("smembers", 2, R, ONE_KEY, "set", "1.0.0", "Returns all members of a set.", "key"),
    spec("smismember", -3, RF, ONE_KEY, "set", "6.2.0", "Determines whether multiple members belong to a set.", "key member:string..."),
    spec("smove", 4, WF, TWO_KEYS, "set", "1.0.0", "Moves a member from one set to another.", "source:key destination:key member:string"),
    spec("spop", -2, WF, ONE_KEY, "set", "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", "key [count:integer]"),
    spec("srandmember", -2, R, ONE_KEY, "set", "1.0.0", "Get one or multiple random members from a set", "key [count:integer]"),
    spec("srem", -3, WF, ONE_KEY, "set", "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed.", "key member:string..."),
    spec("sscan", -3, R, ONE_KEY, "set", "2.8.0", "Iterates over members of a set.", "key cursor:integer [MATCH pattern:pattern] [COUNT count:integer]"),
    spec("sunion", -2, R, ALL_KEYS, "set", "1.0.0", "Returns the union of multiple sets.", "key..."),
    spec("sunionstore", -3, WD, ALL_KEYS, "set", "1.0.0", "Stores the union of multiple sets in a key.", "destination:key key..."),
    // sorted-set
    spec("bzmpop", -5, BLOCKING_MPOP, NO_KEYS, "sorted-set", "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "timeout:double numkeys:integer key... MIN|MAX [COUNT count:integer]"),
    spec("bzpopmax", -3, &["write", "noscript", "blocking", "fast"], KEYS_THEN_TIMEOUT, "sorted-set", "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "key... timeout:double"),
    spec("bzpopmin", -3, &["write", "noscript", "blocking", "fast"], KEYS_THEN_TIMEOUT, "sorted-set", "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "key... timeout:double"),
    spec("zadd", -4, WDF, ONE_KEY, "sorted-set", "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", "key [NX|XX] [GT|LT] [CH] [INCR] data:block(score:double member:string)..."),
    spec("zcard", 2, RF, ONE_KEY, "sorted-set", "1.2.0", "Returns the number of members in a sorted set.", "key"),
    spec("zcount", 4, RF, ONE_KEY, "sorted-set", "2.0.0", "Returns the count of members in a sorted set that have scores within a range.", "key min:double max:double"),
    spec("zdiff", -3, READ_MOVABLE, NO_KEYS, "sorted-set", "6.2.0", "Returns the difference between multiple sorted sets.", "numkeys:integer key... [WITHSCORES]"),
    spec("zdiffstore", -4, STORE_MOVABLE, ONE_KEY, "sorted-set", "6.2.0", "Stores the difference of multiple sorted sets in a key.", "destination:key numkeys:integer key..."),
    spec("zincrby", 4, WDF, ONE_KEY, "sorted-set", "1.2.0", "Increments the score of a member in a sorted set.", "key increment:double member:string"),
    spec("zinter", -3, READ_MOVABLE, NO_KEYS, "sorted-set", "6.2.0", "Returns the intersect of multiple sorted sets.", "numkeys:integer key... [WEIGHTS weight:integer...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"),
    spec("zintercard", -3, READ_MOVABLE, NO_KEYS, "sorted-set", "7.0.0", "Returns the number of members of the intersect of multiple sorted sets.", "numkeys:integer key... [LIMIT limit:integer]"),
    spec("zinterstore", -4, STORE_MOVABLE, ONE_KEY, "sorted-set", "2.0.0", "Stores the intersect of multiple sorted sets in a key.", COMBINE_STORE_ARGS),
    spec("zlexcount", 4, RF, ONE_KEY, "sorted-set", "2.8.9", "Returns the number of members in a sorted set within a lexicographical range.", "key min:string max:string"),
    spec("zmpop", -4, &["write", "movablekeys"], NO_KEYS, "sorted-set", "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", "numkeys:integer key... MIN|MAX [COUNT count:integer]"),
    spec("zmscore", -3, RF, ONE_KEY, "sorted-set", "6.2.0", "Returns the score of one or more members in a sorted set.", "key member:string..."),
    spec("zpopmax", -2, WF, ONE_KEY, "sorted-set", "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count:integer]"),
    spec("zpopmin", -2, WF, ONE_KEY, "sorted-set", "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count:integer]"),
    spec("zrandmember", -2, R, ONE_KEY, "sorted-set", "6.2.0", "Returns one or more random members from a sorted set.", "key [count:integer [WITHSCORES]]"),
    spec("zrange", -4, R, ONE_KEY, "sorted-set", "1.2.0", "Returns members in a sorted set within a range of indexes.", "key start:string stop:string [BYSCORE|BYLEX] [REV] [LIMIT offset:integer count:integer] [WITHSCORES]"),
    spec("zrangebylex", -4, R, ONE_KEY, "sorted-set", "2.8.9", "Returns members in a sorted set within a lexicographical range.", "key min:string max:string [LIMIT offset:integer count:integer]"),
    spec("zrangebyscore", -4, R, ONE_KEY, "sorted-set", "1.0.5", "Returns members in a sorted set within a range of scores.", "key min:double max:double [WITHSCORES] [LIMIT offset:integer count:integer]"),
    spec("zrangestore", -5, WD, TWO_KEYS, "sorted-set", "6.2.0", "Stores a range of members from sorted set in a key.", "dst:key src:key min:string max:string [BYSCORE|BYLEX] [REV] [LIMIT offset:integer count:integer]"),
    spec("zrank", 3, RF, ONE_KEY, "sorted-set", "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores.", "key member:string"),
    spec("zrem", -3, WF, ONE_KEY, "sorted-set", "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", "key member:string..."),
    spec("zremrangebylex", 4, W, ONE_KEY, "sorted-set", "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", "key min:string max:string"),
    spec("zremrangebyrank", 4, W, ONE_KEY, "sorted-set", "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", "key start:integer stop:integer"),
    spec("zremrangebyscore", 4, W, ONE_KEY, "sorted-set", "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", "key min:double max:double"),
    spec("zrevrange", -4, R, ONE_KEY, "sorted-set", "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order.", "key start:integer stop:integer [WITHSCORES]"),
    spec("zrevrangebylex", -4, R, ONE_KEY, "sorted-set", "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order.", "key max:string min:string [LIMIT offset:integer count:integer]"),
    spec("zrevrangebyscore", -4, R, ONE_KEY, "sorted-set", "2.2.0", "Returns members in a sorted set within a range of scores in reverse order.", "key max:double min:double [WITHSCORES] [LIMIT offset:integer count:integer]"),
    spec("zrevrank", 3, RF, ONE_KEY, "sorted-set", "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores.", "key member:string"),
    spec("zscan", -3, R, ONE_KEY, "sorted-set", "2.8.0", "Iterates over members and scores of a sorted set.", "key cursor:integer [MATCH pattern:pattern] [COUNT count:integer]"),
    spec("zscore", 3, RF, ONE_KEY, "sorted-set", "1.2.0", "Returns the score of a member in a sorted set.", "key member:string"),
    spec("zunion", -3, READ_MOVABLE, NO_KEYS, "sorted-set", "6.2.0", "Returns the union of multiple sorted sets.", "numkeys:integer key... [WEIGHTS weight:integer...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"),
    spec("zunionstore", -4, STORE_MOVABLE, ONE_KEY, "sorted-set", "2.0.0", "Stores the union of multiple sorted sets in a key.", COMBINE_STORE_ARGS),
    // geo
    spec("geoadd", -5, WD, ONE_KEY, "geo", "3.2.0", "Adds one or more members to a geospatial index. The key is created if it doesn't exist.", "key [NX|XX] [CH] data:block(longitude:double latitude:double member:string)..."),
    spec("geodist", -4, R, ONE_KEY, "geo", "3.2.0", "Returns the distance between two members of a geospatial index.", "key member1:string member2:string [M|KM|FT|MI]"),
    spec("geohash", -2, R, ONE_KEY, "geo", "3.2.0", "Returns members from a geospatial index as geohash strings.", "key [member:string...]"),
    spec("geopos", -2, R, ONE_KEY, "geo", "3.2.0", "Returns the longitude and latitude of members from a geospatial index.", "key [member:string...]"),
    spec("georadius", -6, GEORADIUS_FLAGS, ONE_KEY, "geo", "3.2.0", "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result.", "key longitude:double latitude:double radius:double M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count:integer [ANY]] [ASC|DESC] [STORE key|STOREDIST key]"),
    spec("georadius_ro", -6, R, ONE_KEY, "geo", "3.2.10", "Returns members from a geospatial index that are within a distance from a coordinate.", "key longitude:double latitude:double radius:double M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count:integer [ANY]] [ASC|DESC]"),
    spec("georadiusbymember", -5, GEORADIUS_FLAGS, ONE_KEY, "geo", "3.2.0", "Queries a geospatial index for members within a distance from a member, optionally stores the result.", "key member:string radius:double M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count:integer [ANY]] [ASC|DESC] [STORE key|STOREDIST key]"),
    spec("georadiusbymember_ro", -5, R, ONE_KEY, "geo", "3.2.10", "Returns members from a geospatial index that are within a distance from a member.", "key member:string radius:double M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count:integer [ANY]] [ASC|DESC]"),
    spec("geosearch", -7, R, ONE_KEY, "geo", "6.2.0", "Queries a geospatial index for members inside an area of a box or a circle.", "key FROMMEMBER member:string|FROMLONLAT longitude:double latitude:double BYRADIUS radius:double M|KM|FT|MI|BYBOX width:double height:double M|KM|FT|MI [ASC|DESC] [COUNT count:integer [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]"),
    spec("geosearchstore", -8, WD, TWO_KEYS, "geo", "6.2.0", "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.", "destination:key source:key FROMMEMBER member:string|FROMLONLAT longitude:double latitude:double BYRADIUS radius:double M|KM|FT|MI|BYBOX width:double height:double M|KM|FT|MI [ASC|DESC] [COUNT count:integer [ANY]] [STOREDIST]"),
    // generic (keyspace and expiry)
    spec("copy", -3, WD, TWO_KEYS, "generic", "6.2.0", "Copies the value of a key to a new key.", "source:key destination:key [DB destination-db:integer] [REPLACE]"),
    spec("del", -2, W, ALL_KEYS, "generic", "1.0.0", "Deletes one or more keys.", "key..."),
    spec("exists", -2, RF, ALL_KEYS, "generic", "1.0.0", "Determines whether one or more keys exist.", "key..."),
    spec("expire", -3, WF, ONE_KEY, "generic", "1.0.0", "Sets the expiration time of a key in seconds.", EXPIRE_ARGS),
    spec("expireat", -3, WF, ONE_KEY, "generic", "1.2.0", "Sets the expiration time of a key to a Unix timestamp.", "key unix-time-seconds:unix-time [NX|XX|GT|LT]"),
    spec("expiretime", 2, RF, ONE_KEY, "generic", "7.0.0", "Returns the expiration time of a key as a Unix timestamp.", "key"),
    spec("keys", 2, R, NO_KEYS, "generic", "1.0.0", "Returns all key names that match a pattern.", "pattern:pattern"),
    spec("persist", 2, WF, ONE_KEY, "generic", "2.2.0", "Removes the expiration time of a key.", "key"),
    spec("pexpire", -3, WF, ONE_KEY, "generic", "2.6.0", "Sets the expiration time of a key in milliseconds.", "key milliseconds:integer [NX|XX|GT|LT]"),
    spec("pexpireat", -3, WF, ONE_KEY, "generic", "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp.", "key unix-time-milliseconds:unix-time [NX|XX|GT|LT]"),
    spec("pexpiretime", 2, RF, ONE_KEY, "generic", "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp.", "key"),
    spec("pttl", 2, RF, ONE_KEY, "generic", "2.6.0", "Returns the expiration time in milliseconds of a key.", "key"),
    spec("randomkey", 1, R, NO_KEYS, "generic", "1.0.0", "Returns a random key name from the database.", ""),
    spec("sort", -2, SORT_FLAGS, ONE_KEY, "generic", "1.0.0", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.", "key [BY pattern:pattern] [LIMIT offset:integer count:integer] [GET pattern:pattern...] [ASC|DESC] [ALPHA] [STORE destination:key]"),
    spec("sort_ro", -2, R, ONE_KEY, "generic", "7.0.0", "Returns the sorted elements of a list, a set, or a sorted set.", "key [BY pattern:pattern] [LIMIT offset:integer count:integer] [GET pattern:pattern...] [ASC|DESC] [ALPHA]"),
    spec("rename", 3, W, TWO_KEYS, "generic", "1.0.0", "Renames a key and overwrites the destination.", "key newkey:key"),
    spec("renamenx", 3, WF, TWO_KEYS, "generic", "1.0.0", "Renames a key only when the target key name doesn't exist.", "key newkey:key"),
    spec("scan", -2, R, NO_KEYS, "generic", "2.8.0", "Iterates over the key names in the database.", "cursor:integer [MATCH pattern:pattern] [COUNT count:integer] [TYPE type:string]"),
    spec("touch", -2, RF, ALL_KEYS, "generic", "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.", "key..."),
    spec("ttl", 2, RF, ONE_KEY, "generic", "1.0.0", "Returns the expiration time in seconds of a key.", "key"),
    spec("type", 2, RF, ONE_KEY, "generic", "1.0.0", "Determines the type of value stored at a key.", "key"),
    spec("unlink", -2, WF, ALL_KEYS, "generic", "4.0.0", "Asynchronously deletes one or more keys.", "key..."),
    // server
    spec("command", -1, &["loading", "stale"], NO_KEYS, "server", "2.8.13", "Returns detailed information about all commands.", "[COUNT|DOCS command-name:string...|INFO command-name:string...]"),
    spec("config", -2, &["admin", "noscript", "loading", "stale"], NO_KEYS, "server", "2.0.0", "A container for server configuration commands.", "subcommand:string [argument:string...]"),
    spec("dbsize", 1, RF, NO_KEYS, "server", "1.0.0", "Returns the number of keys in the database.", ""),
    spec("flushall", -1, W, NO_KEYS, "server", "1.0.0", "Removes all keys from all databases.", "[ASYNC|SYNC]"),
    spec("flushdb", -1, W, NO_KEYS, "server", "1.0.0", "Remove all keys from the current database.", "[ASYNC|SYNC]"),
    spec("info", -1, &["loading", "stale"], NO_KEYS, "server", "1.0.0", "Returns information and statistics about the server.", "[section:string...]"),
    spec("raft.info", 1, &["admin", "stale"], NO_KEYS, "cluster", "raft-kv", "Returns the Raft state of this node and every member.", ""),
    spec("raft.node", -3, &["admin"], NO_KEYS, "cluster", "raft-kv", "Adds (as a learner, promoted once caught up) or removes a cluster member.", "ADD|REMOVE id:integer [peer-addr:string redis-addr:string]"),
    spec("raft.transfer-leader", 2, &["admin"], NO_KEYS, "cluster", "raft-kv", "Hands Raft leadership to another voter.", "id:integer"),
    spec("role", 1, &["noscript", "loading", "stale", "fast"], NO_KEYS, "server", "2.8.12", "Returns the replication role (the Raft leader is the master, the other members its replicas).", ""),
    spec("shutdown", -1, &["admin", "noscript", "loading", "stale", "no_multi", "allow_busy"], NO_KEYS, "server", "1.0.0", "Stops the node cleanly (as SIGTERM does).", "[NOSAVE|SAVE] [NOW] [FORCE] [ABORT]"),
    spec("time", 1, LSF, NO_KEYS, "server", "2.6.0", "Returns the server time.", ""),
    // scripting: there are no scripts or functions, only their FLUSH
    spec("function", -2, &["noscript"], NO_KEYS, "scripting", "7.0.0", "A container for function commands (only FLUSH: raft-kv has no functions).", "FLUSH [ASYNC|SYNC]"),
    spec("script", -2, &["noscript"], NO_KEYS, "scripting", "2.6.0", "A container for Lua scripts management commands.", "LOAD script:string|EXISTS sha1:string...|FLUSH [ASYNC|SYNC]|KILL|HELP"),
    spec("eval", -3, EVAL_FLAGS, NO_KEYS, "scripting", "2.6.0", "Executes a server-side Lua script.", "script:string numkeys:integer [key...] [arg:string...]"),
    spec("evalsha", -3, EVAL_FLAGS, NO_KEYS, "scripting", "2.6.0", "Executes a server-side Lua script by SHA1 digest.", "sha1:string numkeys:integer [key...] [arg:string...]"),
    spec("eval_ro", -3, EVAL_RO_FLAGS, NO_KEYS, "scripting", "7.0.0", "Executes a read-only server-side Lua script.", "script:string numkeys:integer [key...] [arg:string...]"),
    spec("evalsha_ro", -3, EVAL_RO_FLAGS, NO_KEYS, "scripting", "7.0.0", "Executes a read-only server-side Lua script by SHA1 digest.", "sha1:string numkeys:integer [key...] [arg:string...]"),
    // connection
    spec("auth", -2, CONN, NO_KEYS, "connection", "1.0.0", "Authenticates the connection.", "[username:string] password:string"),
    spec("client", -2, &["noscript", "loading", "stale"], NO_KEYS, "connection", "2.4.0", "A container for client connection commands.", "SETNAME connection-name:string|GETNAME|ID|INFO|LIST|SETINFO attr:string value:string"),
    spec("echo", 2, LSF, NO_KEYS, "connection", "1.0.0", "Returns the given string.", "message:string"),
    spec("hello", -1, CONN, NO_KEYS, "connection", "6.0.0", "Handshakes with the Redis server.", "[protover:integer [AUTH username:string password:string] [SETNAME clientname:string]]"),
    spec("ping", -1, &["fast"], NO_KEYS, "connection", "1.0.0", "Returns the server's liveliness response.", "[message:string]"),
    spec("quit", -1, CONN, NO_KEYS, "connection", "1.0.0", "Closes the connection.", ""),
    spec("reset", 1, CONN, NO_KEYS, "connection", "6.2.0", "Resets the connection.", ""),
    spec("select", 2, LSF, NO_KEYS, "connection", "1.0.0", "Changes the selected database (only 0 exists).", "index:integer"),
    // pubsub
    spec("psubscribe", -2, PUBSUB_MODE, NO_KEYS, "pubsub", "2.0.0", "Listens for messages published to channels that match one or more patterns.", "pattern:pattern..."),
    spec("publish", 3, &["pubsub", "loading", "stale", "fast"], NO_KEYS, "pubsub", "2.0.0", "Posts a message to a channel.", "channel:string message:string"),
    spec("pubsub", -2, &[], NO_KEYS, "pubsub", "2.8.0", "A container for Pub/Sub commands.", "CHANNELS [pattern:pattern]|NUMSUB [channel:string...]|NUMPAT|HELP"),
    spec("punsubscribe", -1, PUBSUB_MODE, NO_KEYS, "pubsub", "2.0.0", "Stops listening to messages published to channels that match one or more patterns.", "[pattern:pattern...]"),
    spec("subscribe", -2, PUBSUB_MODE, NO_KEYS, "pubsub", "2.0.0", "Listens for messages published to channels.", "channel:string..."),
    spec("unsubscribe", -1, PUBSUB_MODE, NO_KEYS, "pubsub", "2.0.0", "Stops listening to messages posted to channels.", "[channel:string...]"),
    // transactions
    spec("discard", 1, TX, NO_KEYS, "transactions", "2.0.0", "Discards a transaction.", ""),
    spec("exec", 1, &["noscript", "loading", "stale", "skip_slowlog"], NO_KEYS, "transactions", "1.2.0", "Executes all commands in a transaction.", ""),
    spec("multi", 1, TX, NO_KEYS, "transactions", "1.2.0", "Starts a transaction.", ""),
    spec("unwatch", 1, TX, NO_KEYS, "transactions", "2.2.0", "Forgets about watched keys of a transaction.", ""),
    spec("watch", -2, TX, ALL_KEYS, "transactions", "2.2.0", "Monitors changes to keys to determine the execution of a transaction.", "key..."),
];

/// Looks a command up by its name, in any case.
pub fn lookup(name: impl AsRef<[u8]>) -> Option<&'static CommandSpec> {
    let name = name.as_ref();
    COMMAND_TABLE.iter().find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// One `COMMAND INFO` entry: name, arity, flags, first key, last key, step, ACL categories,
/// tips, key specs, subcommands.
pub fn info(spec: &CommandSpec) -> Frame {
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(spec.arity),
        Frame::Set(spec.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Integer(spec.first_key),
        Frame::Integer(spec.last_key),
        Frame::Integer(spec.step),
        Frame::Set(vec![Frame::Simple(format!("@{}", category(spec)))]),
        Frame::Set(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

fn category(spec: &CommandSpec) -> &'static str {
    match spec.group {
        "string" => "string",
        "bitmap" => "bitmap",
        "hyperloglog" => "hyperloglog",
        "hash" => "hash",
        "list" => "list",
        "set" => "set",
        "sorted-set" => "sortedset",
        "geo" => "geo",
        "generic" => "keyspace",
        "transactions" => "transaction",
        "connection" => "connection",
        "scripting" => "scripting",
        "pubsub" => "pubsub",
        _ => "slow",
    }
}

/// The `COMMAND DOCS` entry of a command: `name => {summary, since, group, complexity,
/// arguments}`.
pub fn docs(spec: &CommandSpec) -> (Frame, Frame) {
    let mut doc = vec![
        (Frame::bulk("summary"), Frame::bulk(spec.summary)),
        (Frame::bulk("since"), Frame::bulk(spec.since)),
        (Frame::bulk("group"), Frame::bulk(spec.group)),
    ];
    let args = parse_syntax(spec.syntax);
    if !args.is_empty() {
        doc.push((Frame::bulk("arguments"), Frame::Array(args.iter().map(Arg::to_frame).collect())));
    }
    (Frame::bulk(spec.name), Frame::Map(doc))
}

/// One documented argument.
#[derive(Debug, Clone, PartialEq)]
struct Arg {
    name: String,
    kind: &'static str,
    token: Option<String>,
    optional: bool,
    multiple: bool,
    children: Vec<Arg>,
}

impl Arg {
    fn to_frame(&self) -> Frame {
        let mut map = vec![
            (Frame::bulk("name"), Frame::bulk(self.name.clone())),
            (Frame::bulk("type"), Frame::bulk(self.kind)),
        ];
        if self.kind == "key" {
            map.push((Frame::bulk("key_spec_index"), Frame::Integer(0)));
        }
        if let Some(token) = &self.token {
            map.push((Frame::bulk("token"), Frame::bulk(token.clone())));
        }
        let mut flags = Vec::new();
        if self.optional {
            flags.push(Frame::Simple("optional".into()));
        }
        if self.multiple {
            flags.push(Frame::Simple("multiple".into()));
        }
        if !flags.is_empty() {
            map.push((Frame::bulk("flags"), Frame::Set(flags)));
        }
        if !self.children.is_empty() {
            map.push((
                Frame::bulk("arguments"),
                Frame::Array(self.children.iter().map(Arg::to_frame).collect()),
            ));
        }
        Frame::Map(map)
    }
}

/// Splits at top-level spaces (not inside brackets or parentheses).
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn is_token(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_uppercase() || c == '-')
}

fn parse_syntax(s: &str) -> Vec<Arg> {
    // A token followed by its value (`EX seconds:integer`) is one argument.
    let parts = split_top(s, ' ');
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        if is_token(parts[i])
            && i + 1 < parts.len()
            && !parts[i + 1].starts_with('[')
            && parts[i + 1].contains(':')
        {
            let mut arg = parse_one(parts[i + 1]);
            arg.token = Some(parts[i].to_owned());
            out.push(arg);
            i += 2;
        } else {
            out.push(parse_one(parts[i]));
            i += 1;
        }
    }
    out
}

/// One argument: `[...]` optional, `...` repeated, else a group or a leaf.
fn parse_one(part: &str) -> Arg {
    if let Some(p) = part.strip_suffix("...") {
        let mut arg = parse_one(p);
        arg.multiple = true;
        return arg;
    }
    if let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
        let mut arg = parse_group(inner);
        arg.optional = true;
        return arg;
    }
    if split_top(part, ' ').len() == 1 && split_top(part, '|').len() == 1 {
        return leaf(part);
    }
    parse_group(part)
}

/// A choice (`a|b`), several arguments in a row (a block), or one argument.
fn parse_group(s: &str) -> Arg {
    let choices = split_top(s, '|');
    if choices.len() > 1 {
        let children: Vec<Arg> = choices.iter().map(|c| parse_group(c)).collect();
        let name = children.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join("-");
        return Arg { name, kind: "oneof", token: None, optional: false, multiple: false, children };
    }
    let mut parts = parse_syntax(s);
    if parts.len() == 1 {
        return parts.pop().expect("one part");
    }
    let name = parts[0].name.clone();
    Arg { name, kind: "block", token: None, optional: false, multiple: false, children: parts }
}

fn leaf(s: &str) -> Arg {
    let plain = |name: &str, kind| Arg {
        name: name.to_owned(),
        kind,
        token: None,
        optional: false,
        multiple: false,
        children: Vec::new(),
    };
    if is_token(s) {
        let mut arg = plain(&s.to_ascii_lowercase(), "pure-token");
        arg.token = Some(s.to_owned());
        return arg;
    }
    if let Some((name, rest)) = s.split_once(":block(") {
        let children = parse_syntax(rest.trim_end_matches(')'));
        return Arg { children, ..plain(name, "block") };
    }
    match s.split_once(':') {
        Some((name, "key")) => plain(name, "key"),
        Some((name, "integer")) => plain(name, "integer"),
        Some((name, "double")) => plain(name, "double"),
        Some((name, "pattern")) => plain(name, "pattern"),
        Some((name, "unix-time")) => plain(name, "unix-time"),
        Some((name, _)) => plain(name, "string"),
        None if s == "$" => plain("seconds", "integer"),
        None => plain(s, "key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_within_groups_and_names_are_unique() {
        let mut names: Vec<_> = COMMAND_TABLE.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COMMAND_TABLE.len());
    }

    #[test]
    fn set_syntax_expands_into_redis_style_argument_docs() {
        let args = parse_syntax(lookup("set").unwrap().syntax);
        let kinds: Vec<_> = args.iter().map(|a| (a.name.as_str(), a.kind, a.optional)).collect();
        assert_eq!(
            kinds,
            vec![
                ("key", "key", false),
                ("value", "string", false),
                ("nx-xx", "oneof", true),
                ("get", "pure-token", true),
                ("seconds-milliseconds-unix-time-seconds-unix-time-milliseconds-keepttl", "oneof", true),
            ]
        );
        let ex = &args[4].children[0];
        assert_eq!((ex.name.as_str(), ex.kind, ex.token.as_deref()), ("seconds", "integer", Some("EX")));
        let mset = parse_syntax(lookup("mset").unwrap().syntax);
        assert!(mset[0].multiple && mset[0].kind == "block" && mset[0].children.len() == 2);
        assert!(parse_syntax(lookup("mget").unwrap().syntax)[0].multiple);
        let expire = parse_syntax(EXPIRE_ARGS);
        assert_eq!(expire[1].kind, "integer");
    }
}
