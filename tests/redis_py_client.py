"""redis-py against a raft-kv node: python3 tests/redis_py_client.py PORT

Run by tests/differential.rs. Exits non-zero (an assertion) if any reply is not what Redis
would give. redis-py comes from Debian's python3-redis (`make deps`).
"""
import sys
import threading
import time

import redis

port = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)

assert r.ping() is True
assert r.set("py:k", "v", ex=100) is True
assert r.get("py:k") == b"v"
assert 95 <= r.ttl("py:k") <= 100
assert r.set("py:k", "w", nx=True) is None
assert r.getset("py:k", "x") == b"v"
assert r.incr("py:n") == 1
assert r.incrby("py:n", 9) == 10
assert r.incrbyfloat("py:f", 0.5) == 0.5
assert r.mset({"py:a": "1", "py:b": "2"}) is True
assert r.mget(["py:a", "py:b", "py:none"]) == [b"1", b"2", None]
assert r.append("py:a", "23") == 3
assert r.exists("py:a", "py:b", "py:none") == 2
assert r.type("py:a") == b"string"
assert r.expire("py:a", 50) is True
assert r.persist("py:a") is True
assert r.rename("py:a", "py:c") is True
assert sorted(r.scan_iter(match="py:*")) == sorted([b"py:k", b"py:n", b"py:f", b"py:b", b"py:c"])

# A transaction with WATCH, through redis-py's pipeline.
with r.pipeline() as pipe:
    pipe.watch("py:n")
    current = int(pipe.get("py:n"))
    pipe.multi()
    pipe.set("py:n", current * 2)
    pipe.get("py:n")
    assert pipe.execute() == [True, b"20"]

try:
    r.incr("py:k")
    raise AssertionError("INCR on a non-integer must fail")
except redis.ResponseError as e:
    assert str(e) == "value is not an integer or out of range", str(e)

# Hashes: redis-py's mapping helpers, and its hscan_iter over HSCAN.
assert r.hset("py:h", mapping={"name": "ada", "visits": "1"}) == 2
assert r.hincrby("py:h", "visits", 2) == 3
assert r.hgetall("py:h") == {b"name": b"ada", b"visits": b"3"}
assert r.hmget("py:h", ["name", "none"]) == [b"ada", None]
assert dict(r.hscan_iter("py:h", match="v*")) == {b"visits": b"3"}
assert r.type("py:h") == b"hash"
try:
    r.get("py:h")
    raise AssertionError("GET on a hash must fail")
except redis.ResponseError as e:
    assert str(e).startswith("WRONGTYPE"), str(e)
assert r.hdel("py:h", "name", "visits") == 2
assert r.exists("py:h") == 0

# Lists: a small work queue.
assert r.rpush("py:q", "job1", "job2", "job3") == 3
assert r.lpush("py:q", "urgent") == 4
assert r.lrange("py:q", 0, -1) == [b"urgent", b"job1", b"job2", b"job3"]
assert r.lpop("py:q") == b"urgent"
assert r.lmove("py:q", "py:done", "LEFT", "RIGHT") == b"job1"
assert r.lpos("py:q", "job3") == 1
assert r.rpop("py:q", 5) == [b"job3", b"job2"]
assert r.exists("py:q") == 0
assert r.llen("py:done") == 1
assert r.delete("py:done") == 1

# Sets: redis-py returns Python sets.
assert r.sadd("py:tags:1", "rust", "raft", "redis") == 3
assert r.sadd("py:tags:2", "raft", "paxos") == 2
assert r.smembers("py:tags:1") == {b"rust", b"raft", b"redis"}
assert r.sinter("py:tags:1", "py:tags:2") == {b"raft"}
assert r.sunionstore("py:all", ["py:tags:1", "py:tags:2"]) == 4
assert r.smismember("py:all", ["paxos", "zab"]) == [1, 0]
assert r.spop("py:tags:2") in (b"raft", b"paxos")
assert r.scard("py:tags:2") == 1
assert r.delete("py:tags:1", "py:tags:2", "py:all") == 3

# Sorted sets: a leaderboard.
assert r.zadd("py:board", {"ada": 120, "bob": 95.5, "cy": 130}) == 3
assert r.zincrby("py:board", 20, "bob") == 115.5
assert r.zrevrange("py:board", 0, 1, withscores=True) == [(b"cy", 130.0), (b"ada", 120.0)]
assert r.zrangebyscore("py:board", 100, "(130") == [b"bob", b"ada"]
assert r.zrank("py:board", "cy") == 2
assert r.zscore("py:board", "nobody") is None
assert r.zpopmin("py:board") == [(b"bob", 115.5)]
assert r.zcard("py:board") == 2
assert r.delete("py:board") == 1

# Large collections (raft-kv stores them in parts): redis-py's scan iterators go through them
# in many steps, each item once, and a leaderboard of thousands answers ranks and ranges.
fields = {"f%d" % i: str(i) for i in range(3000)}
assert r.hset("py:bigh", mapping=fields) == 3000
assert r.sadd("py:bigs", *fields) == 3000
assert r.zadd("py:bigz", {f: i for i, f in enumerate(fields)}) == 3000
steps = 0
cursor = 0
while True:
    cursor, found = r.hscan("py:bigh", cursor, count=50)
    steps += 1
    if cursor == 0:
        break
assert steps > 10, steps
seen = list(r.hscan_iter("py:bigh", count=100))
assert len(seen) == 3000 and dict(seen) == {k.encode(): v.encode() for k, v in fields.items()}
members = list(r.sscan_iter("py:bigs", match="f1*"))
assert sorted(members) == sorted(f.encode() for f in fields if f.startswith("f1"))
scored = list(r.zscan_iter("py:bigz"))
assert len(scored) == 3000 and dict(scored) == {f.encode(): float(i) for i, f in enumerate(fields)}
assert r.zrank("py:bigz", "f2500") == 2500
assert r.zrevrange("py:bigz", 0, 2) == [b"f2999", b"f2998", b"f2997"]
assert r.zrangebyscore("py:bigz", 1000, "(1003") == [b"f1000", b"f1001", b"f1002"]
assert r.zremrangebyscore("py:bigz", 0, 999) == 1000
assert r.zcount("py:bigz", "-inf", "+inf") == 2000
assert r.delete("py:bigh", "py:bigs", "py:bigz") == 3

# Blocking pops: a worker waits in BRPOP on its own connection until a job is pushed.
got = []
worker = threading.Thread(
    target=lambda: got.append(redis.Redis(host="127.0.0.1", port=port, socket_timeout=20).brpop("py:jobs", 0))
)
worker.start()
deadline = time.time() + 20
while int(r.info("clients")["blocked_clients"]) < 1:
    assert time.time() < deadline, "the worker never blocked"
    time.sleep(0.01)
assert r.lpush("py:jobs", "job") == 1
worker.join(20)
assert got == [(b"py:jobs", b"job")], got
assert r.blpop(["py:none", "py:jobs"], timeout=0.05) is None
assert r.rpush("py:jobs", "a", "b") == 2
assert r.blmove("py:jobs", "py:done", 0, "LEFT", "RIGHT") == b"a"
assert r.brpoplpush("py:jobs", "py:done", 1) == b"b"
assert r.lrange("py:done", 0, -1) == [b"b", b"a"]
assert r.zadd("py:board", {"ada": 1, "bob": 2}) == 2
assert r.bzpopmax("py:board", 1) == (b"py:board", b"bob", 2.0)
assert r.bzpopmin(["py:none", "py:board"], 1) == (b"py:board", b"ada", 1.0)
assert r.bzpopmin("py:board", 0.05) is None
assert r.delete("py:done") == 1

# Lua scripts: redis-py's registered script sends EVALSHA, and EVAL once the cache is flushed.
take = r.register_script(
    "local n = tonumber(redis.call('get', KEYS[1]) or '0') "
    "if n < tonumber(ARGV[1]) then return redis.error_reply('not enough') end "
    "redis.call('decrby', KEYS[1], ARGV[1]) return n - tonumber(ARGV[1])"
)
assert r.set("py:stock", 10) is True
assert take(keys=["py:stock"], args=[3]) == 7
r.script_flush()
assert take(keys=["py:stock"], args=[7]) == 0
try:
    take(keys=["py:stock"], args=[1])
    raise AssertionError("the script's error reply was not raised")
except redis.ResponseError as e:
    assert "not enough" in str(e), e
assert r.script_exists(take.sha) == [True]
assert r.eval("return {KEYS[1], ARGV[1], cjson.encode({a = 1})}", 1, "k", "v") == [b"k", b"v", b'{"a":1}']
assert r.eval_ro("return redis.call('get', KEYS[1])", 1, "py:stock") == b"0"
assert r.delete("py:stock") == 1

assert r.client_setname("py-client") is True
assert r.client_getname() == "py-client" or r.client_getname() == b"py-client"
assert r.delete("py:k", "py:n", "py:f", "py:b", "py:c") == 5
print("redis-py ok")
